"""The engine's renderer against closed-form answers (sun on a plane, emitters, depth, coverage),
the bake's integrator at the same point, texture orientation, alpha cuts, faces, determinism,
bad input, 8-bit output, and CUDA (numba's simulator) against the CPU."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.errors import ConfigError, InputError
from engine.render import views
from engine.render.views import (
    composite,
    load_png,
    render_views,
    save_png,
    to_premultiplied,
    to_srgb8,
    to_straight,
)
from engine.scene.model import Light, Material, MeshObject, Scene, Texture
from tests.bake.test_integrate import bake, box, ground, mesh, quad, texels_at, translate

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Cameras and scenes


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV world-to-camera: +Z towards ``target``, +X right, +Y down (image rows)."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    view = np.eye(4)
    view[:3, :3] = np.stack([right, down, forward])
    view[:3, 3] = -view[:3, :3] @ eye
    return view


def intrinsics(focal: float, width: int, height: int) -> np.ndarray:
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])


def top_down(height: float = 2.0, x: float = 0.0, y: float = 0.0) -> np.ndarray:
    """Looking straight down from ``height``: image right = world +X, image down = world −Y."""
    return look_at((x, y, height), (x, y, 0.0), up=(0.0, 1.0, 0.0))


def sunlit(material: Material, *objects: MeshObject, power: float = 3.0, tilt: float = 0.0) -> Scene:
    m = np.eye(4)
    m[:3, :3] = [[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]]
    return Scene(objects=objects or (ground(),), materials=(material,),
                 lights=(Light("sun", "sun", power=power, transform=m),))


def render(scene: Scene, view: np.ndarray, size: int = 16, focal: float = 16.0, **options: object) -> views.RenderResult:
    options.setdefault("device", "cpu")
    return render_views(scene, view[None], intrinsics(focal, size, size)[None], size, size, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Closed forms


@pytest.mark.parametrize("tilt_degrees", [0.0, 40.0])
def test_sunlit_plane_is_albedo_times_e_over_pi(tilt_degrees: float) -> None:
    white = Material("paint", base_color=(0.8, 0.6, 0.4, 1.0))
    tilt = math.radians(tilt_degrees)
    result = render(sunlit(white, tilt=tilt), top_down(2.0), samples=4, bounces=2, aa=4)
    expected = np.array([0.8, 0.6, 0.4]) * 3.0 * math.cos(tilt) / math.pi
    assert result.rgba.shape == (1, 16, 16, 4) and result.rgba.dtype == np.float32
    np.testing.assert_allclose(result.rgba[..., :3].reshape(-1, 3), np.tile(expected, (256, 1)), rtol=1e-4)
    np.testing.assert_array_equal(result.alpha, 1.0)
    assert result.device == "cpu" and result.samples == 4 and result.aa == 4
    assert result.rays == 256 * 4 and result.paths == 256 * 4 * 4


def test_emissive_surface_shows_its_emission() -> None:
    glow = Material("glow", base_color=(0.5, 0.5, 0.5, 1.0), emission_color=(1.0, 0.5, 0.25), emission_strength=2.0)
    scene = Scene(objects=(ground(),), materials=(glow,))  # nothing else lights it: radiance = emission
    result = render(scene, top_down(3.0), samples=8, bounces=3)
    np.testing.assert_allclose(result.rgba[..., :3].reshape(-1, 3), np.tile([2.0, 1.0, 0.5], (256, 1)), rtol=1e-6)


def test_depth_is_camera_z_of_the_hit() -> None:
    # a camera 2 m above the ground, pitched 35° off straight down: depth = z along the optical axis
    eye = np.array([0.3, -0.2, 2.0])
    pitch = math.radians(35.0)
    target = eye + np.array([0.0, math.sin(pitch), -math.cos(pitch)])
    view = look_at(eye, target)
    scene = sunlit(Material("grey"))
    result = render(scene, view, size=16, focal=12.0, aa=1, samples=1, bounces=0)
    ys, xs = np.mgrid[0:16, 0:16] + 0.5
    rays_cam = np.stack([(xs - 8) / 12.0, (ys - 8) / 12.0, np.ones_like(xs)], -1)  # z = 1 per ray
    rays_world = rays_cam @ view[:3, :3]  # Rᵀ d
    scale = -eye[2] / rays_world[..., 2]  # where the ray reaches z = 0, in units of camera z
    np.testing.assert_allclose(result.depth[0], scale, rtol=1e-5)
    head_on = render(scene, top_down(2.5), aa=4, samples=1, bounces=0)
    np.testing.assert_allclose(head_on.depth, 2.5, rtol=1e-6)  # z, not the distance along the ray


def test_background_is_transparent_and_an_edge_half_covers_pixels() -> None:
    # the ground from x = 1/16 on: columns 0-7 see nothing, column 8 is cut through its centre
    half = mesh("half", quad("h", (1 / 16, -50, 0), (50, 0, 0), (0, 100, 0)))
    scene = sunlit(Material("grey", base_color=(0.5, 0.5, 0.5, 1)), half, power=math.pi)
    result = render(scene, top_down(2.0), aa=16, samples=1, bounces=1)  # a pixel is 0.125 m wide
    alpha = result.alpha[0]
    np.testing.assert_array_equal(alpha[:, :8], 0.0)
    np.testing.assert_array_equal(result.rgba[0, :, :8], 0.0)
    assert np.all(np.isinf(result.depth[0, :, :8]))
    np.testing.assert_array_equal(alpha[:, 9:], 1.0)
    assert np.all((alpha[:, 8] > 0.3) & (alpha[:, 8] < 0.7))
    assert alpha[:, 8].mean() == pytest.approx(0.5, abs=0.05)
    assert alpha.mean() == pytest.approx(7.5 / 16, abs=0.005)  # half the view, less half a column
    # premultiplied: rgb = alpha × radiance; straight: the surface's radiance itself
    np.testing.assert_allclose(result.rgba[0, :, 8, 0], alpha[:, 8] * 0.5, rtol=1e-5)
    np.testing.assert_allclose(result.straight[0, :, 8:, :3], 0.5, rtol=1e-5)
    np.testing.assert_allclose(to_premultiplied(result.straight), result.rgba, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(result.depth[0, :, 8:], 2.0, rtol=1e-6)
    over_grey = composite(result.rgba, (0.1, 0.1, 0.1))
    np.testing.assert_allclose(over_grey[0, :, :8], 0.1, rtol=1e-6)


def test_matches_the_bake_at_the_same_point() -> None:
    # a Cornell-like room: the pixel that sees the floor's centre equals albedo × the integrator's E/π
    white = Material("white", (0.7, 0.7, 0.7, 1))
    red = Material("red", (0.7, 0.1, 0.1, 1))
    walls = mesh("walls", *[quad(f"w{k}", c, u, v, 0) for k, (c, u, v) in enumerate([
        ((0, 0, 0), (1, 0, 0), (0, 1, 0)), ((0, 0, 1), (0, 1, 0), (1, 0, 0)), ((0, 1, 0), (1, 0, 0), (0, 0, 1)),
        ((0, 0, 0), (0, 0, 1), (1, 0, 0)), ((1, 0, 0), (0, 0, 1), (0, 1, 0))])])
    left = mesh("left", quad("l", (0, 0, 0), (0, 1, 0), (0, 0, 1), 1))
    light = Light("bulb", "point", power=30.0, size=0.05, transform=translate(0.5, 0.5, 0.8))
    scene = Scene(objects=(walls, left), materials=(white, red), lights=(light,))
    view = top_down(0.9, 0.5, 0.5)
    result = render_views(scene, view[None], intrinsics(100.0, 1, 1)[None], 1, 1, samples=4096, bounces=3, aa=1,
                          device="cpu")
    baked = bake(scene, texels_at([[0.5, 0.5, 0.0]]), samples=4096, bounces=3).lighting[0]
    np.testing.assert_allclose(result.rgba[0, 0, 0, :3], 0.7 * baked, rtol=0.03)
    assert result.rgba[0, 0, 0, 0] > result.rgba[0, 0, 0, 1]  # red bleeds onto the floor
    assert result.depth[0, 0, 0] == pytest.approx(0.9, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Textures, alpha, faces


def uv_quad(name: str, material: int = 0, z: float = 0.0, half: float = 1.0, double: float = 1.0) -> MeshObject:
    """A square [−half, half]² at height z facing +Z; UV (0, 0) at (−half, −half), U along +X, V along +Y."""
    positions = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], np.float32)
    uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32) * np.float32(double)
    return MeshObject(name, positions, np.array([[0, 1, 2], [0, 2, 3]], np.int32), uvs={"UVMap": uvs},
                      material_indices=np.full(2, material, np.int32))


def quadrant_texture() -> Texture:
    """8 × 8, image rows top to bottom: red | green over blue | white, in 4 × 4 blocks."""
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[:4, :4] = (255, 0, 0)
    pixels[:4, 4:] = (0, 255, 0)
    pixels[4:, :4] = (0, 0, 255)
    pixels[4:, 4:] = (255, 255, 255)
    return Texture("quadrants", pixels, "srgb")


def test_texture_appears_upright_like_the_image() -> None:
    material = Material("picture", base_color=(1, 1, 1, 1), base_color_texture=quadrant_texture())
    scene = sunlit(material, uv_quad("picture"), power=math.pi)  # E/π = 1: radiance = texture colour
    # seen from above, image right = +X = +U and image up = +Y = +V: the render looks like the image
    result = render(scene, top_down(2.0), size=32, focal=32.0, aa=4, samples=1, bounces=0)  # the quad fills it
    rgb = result.rgba[0, ..., :3]
    quadrants = {"top_left": rgb[4:12, 4:12], "top_right": rgb[4:12, 20:28], "bottom_left": rgb[20:28, 4:12],
                 "bottom_right": rgb[20:28, 20:28]}
    expected = {"top_left": (1, 0, 0), "top_right": (0, 1, 0), "bottom_left": (0, 0, 1), "bottom_right": (1, 1, 1)}
    for name, block in quadrants.items():
        np.testing.assert_allclose(block.reshape(-1, 3), np.tile(expected[name], (64, 1)), atol=1e-4, err_msg=name)


def test_distant_texture_is_filtered_not_aliased() -> None:
    # a fine checker (1-texel squares) tiled 16 times: far smaller than a pixel, it must average to grey
    checker = np.indices((64, 64)).sum(axis=0) % 2 * 255
    material = Material("checker", base_color=(1, 1, 1, 1),
                        base_color_texture=Texture("checker", checker.astype(np.uint8), "linear"))
    scene = sunlit(material, uv_quad("floor", double=16.0), power=math.pi)
    result = render(scene, top_down(2.0, 0.0123, 0.0371), size=16, focal=7.3, aa=1, samples=1, bounces=0)
    np.testing.assert_array_equal(result.alpha[0, 5:11, 5:11], 1.0)  # the quad spans columns 4..11
    np.testing.assert_allclose(result.rgba[0, 5:11, 5:11, 0], 0.5, atol=0.02)


def test_alpha_mask_lets_rays_through_and_blend_is_partial(leaf_material: Material) -> None:
    # leaf_material: its texture's left half (U < 0.5) is a hole; a grey floor lies 1 m below the card
    floor = Material("floor", base_color=(0.25, 0.25, 0.25, 1))
    card, below = uv_quad("card", 0, z=1.0, half=0.25), uv_quad("floor", 1, z=0.0, half=5.0)
    scene = Scene(objects=(card, below), materials=(leaf_material, floor),
                  lights=(Light("sun", "sun", power=math.pi),))
    result = render(scene, top_down(2.0), size=16, focal=16.0, aa=1, samples=1, bounces=0)
    rgb, depth = result.rgba[0, ..., 0], result.depth[0]
    # the card spans columns 4..11 at 1 m: its right half is opaque (white × 1), the left half shows the floor
    np.testing.assert_allclose(rgb[5:11, 9:11], 0.8, rtol=1e-5)  # the default base colour 0.8
    np.testing.assert_allclose(depth[5:11, 9:11], 1.0, rtol=1e-6)
    np.testing.assert_allclose(depth[5:11, 5:7], 2.0, rtol=1e-6)  # the floor, through the hole
    assert np.all(rgb[5:11, 5:7] <= 0.25 + 1e-6)  # the floor's albedo × E/π at most
    np.testing.assert_array_equal(result.alpha, 1.0)

    glass = Material("glass", base_color=(1, 1, 1, 0.25), alpha_mode="BLEND")
    alone = Scene(objects=(uv_quad("pane", 0, half=5.0),), materials=(glass,), lights=(Light("sun", "sun"),))
    blended = render(alone, top_down(2.0), size=16, aa=16, samples=1, bounces=0)
    assert blended.alpha.mean() == pytest.approx(0.25, abs=0.03)  # stochastic coverage = alpha on average
    assert blended.alpha.std() > 0.05 and blended.alpha.max() < 0.75


@pytest.mark.parametrize("double_sided", [False, True])
def test_back_faces(double_sided: bool) -> None:
    # a quad facing −Z seen from above, the sun shining down on its back
    material = Material("m", base_color=(0.5, 0.5, 0.5, 1), double_sided=double_sided)
    flipped = mesh("flipped", quad("f", (-5, -5, 0), (0, 10, 0), (10, 0, 0)))
    scene = sunlit(material, flipped, power=math.pi)
    black = render(scene, top_down(2.0), samples=2, bounces=1)
    np.testing.assert_array_equal(black.alpha, 1.0)
    if double_sided:  # seen like the front: lit by the sun
        np.testing.assert_allclose(black.rgba[..., :3], 0.5, rtol=1e-5)
    else:  # the bake's rule: the back of a single-sided surface is black; "cull" looks through it
        np.testing.assert_array_equal(black.rgba[..., :3], 0.0)
        with pytest.raises(InputError, match="sees"):
            render(scene, top_down(2.0), samples=1, bounces=0, aa=1, backfaces="cull")


def test_mirrored_object_shows_its_front() -> None:
    # mirrored in X, a quad whose front faces +Z winds clockwise in the world (glTF's rule): still lit from above
    picture = uv_quad("picture")
    material = Material("picture", base_color=(1, 1, 1, 1), base_color_texture=quadrant_texture())
    plain = sunlit(material, picture, power=math.pi)
    mirrored = sunlit(material, MeshObject("mirrored", picture.positions, picture.triangles, uvs=picture.uvs,
                                           transform=np.diag([-1.0, 1.0, 1.0, 1.0])), power=math.pi)
    one = render(plain, top_down(2.0), size=16, focal=16.0, aa=1, samples=1, bounces=0)
    two = render(mirrored, top_down(2.0), size=16, focal=16.0, aa=1, samples=1, bounces=0)
    np.testing.assert_allclose(two.rgba[0, 8:, 4:8], one.rgba[0, 8:, 8:12][:, ::-1], atol=1e-5)  # the image, mirrored
    np.testing.assert_allclose(two.rgba[0, 10, 5], (1, 1, 1, 1), atol=1e-5)  # white (bottom right) now on the left


def test_cull_skips_single_sided_backs_to_what_lies_behind() -> None:
    grey = Material("grey", base_color=(0.5, 0.5, 0.5, 1))
    roof = mesh("roof", quad("r", (-5, -5, 1), (0, 10, 0), (10, 0, 0)))  # at 1 m, facing down, away from the camera
    scene = Scene(objects=(ground(), roof), materials=(grey,), environment=(1.0, 1.0, 1.0))
    black = render(scene, top_down(2.0), aa=1, samples=1, bounces=0)
    culled = render(scene, top_down(2.0), aa=1, samples=64, bounces=0, backfaces="cull")
    np.testing.assert_array_equal(black.rgba[..., :3], 0.0)
    np.testing.assert_allclose(black.depth, 1.0, rtol=1e-6)
    np.testing.assert_allclose(culled.depth, 2.0, rtol=1e-6)  # the ground, under the roof's back
    assert np.all(culled.rgba[..., 0] < 0.5 * 0.5)  # the roof still shades it (only the camera ignores it)


# ---------------------------------------------------------------------------------------------
# Determinism, chunks, progress, inputs


def cornell_scene() -> Scene:
    light = Light("bulb", "point", power=60.0, size=0.1, transform=translate(0.5, 0.5, 0.8))
    glow = Material("glow", (0.5, 0.5, 0.5, 1), emission_color=(1, 0.8, 0.6), emission_strength=0.5)
    lamp = mesh("lamp", quad("l", (0.1, 0.1, 0.95), (0, 0.2, 0), (0.2, 0, 0), 1))
    return Scene(objects=(box("room", (0, 0, 0), (1, 1, 1)), lamp),
                 materials=(Material("white", (0.7, 0.7, 0.7, 1)), glow), lights=(light,))


CORNELL_VIEWS = np.stack([look_at((0.5, 0.1, 0.5), (0.5, 0.9, 0.4)), look_at((0.2, 0.2, 0.8), (0.8, 0.8, 0.1))])


def test_same_seed_same_image_other_seed_other_noise() -> None:
    scene, ks = cornell_scene(), np.stack([intrinsics(10.0, 16, 16)] * 2)
    one = render_views(scene, CORNELL_VIEWS, ks, 16, 16, samples=4, bounces=2, seed=5, device="cpu")
    two = render_views(scene, CORNELL_VIEWS, ks, 16, 16, samples=4, bounces=2, seed=5, device="cpu")
    other = render_views(scene, CORNELL_VIEWS, ks, 16, 16, samples=4, bounces=2, seed=6, device="cpu")
    np.testing.assert_array_equal(one.rgba, two.rgba)
    np.testing.assert_array_equal(one.depth, two.depth)
    assert not np.array_equal(one.rgba, other.rgba)
    assert np.abs(one.rgba - other.rgba).mean() < 0.25 * one.rgba[..., :3].mean()  # noise, not another image
    np.testing.assert_array_equal(one.alpha, 1.0)  # inside a closed room every ray hits


def test_chunks_assemble_the_same_images(monkeypatch: pytest.MonkeyPatch) -> None:
    scene, ks = cornell_scene(), np.stack([intrinsics(10.0, 16, 16)] * 2)
    whole = render_views(scene, CORNELL_VIEWS, ks, 16, 16, samples=2, bounces=0, aa=2, device="cpu")
    monkeypatch.setattr(views, "CHUNK_RAYS", 16 * 2 * 5)  # 5 rows a chunk: chunks straddle the two views
    steps: list[tuple[str, float]] = []
    pieces = render_views(scene, CORNELL_VIEWS, ks, 16, 16, samples=2, bounces=0, aa=2, device="cpu",
                          progress=lambda stage, fraction, message: steps.append((stage, fraction)))
    np.testing.assert_array_equal(pieces.alpha, whole.alpha)
    np.testing.assert_allclose(pieces.depth, whole.depth, rtol=1e-6)
    # other seeds per chunk: the same image up to noise
    assert np.abs(pieces.rgba - whole.rgba).mean() < 0.2 * whole.rgba[..., :3].mean()
    assert {stage for stage, _ in steps} == {"render"}
    fractions = [f for _, f in steps]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions) and len(fractions) > 7


def test_torch_tensors_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    scene = sunlit(Material("grey"))
    result = render_views(scene, torch.tensor(top_down(2.0)[None], dtype=torch.float32),
                          torch.tensor(intrinsics(16.0, 8, 8)[None], dtype=torch.float32), 8, 8, aa=1, samples=1,
                          bounces=0, device="cpu")
    np.testing.assert_allclose(result.depth, 2.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("change", "argument"),
    [
        ({"viewmats": np.eye(4)[:3]}, "viewmats"),
        ({"viewmats": np.zeros((0, 4, 4))}, "viewmats"),
        ({"viewmats": np.diag([2.0, 2.0, 2.0, 1.0])[None]}, "viewmats"),
        ({"viewmats": np.diag([1.0, 1.0, -1.0, 1.0])[None]}, "viewmats"),
        ({"viewmats": np.full((1, 4, 4), np.nan)}, "viewmats"),
        ({"Ks": np.eye(3)[None].repeat(2, 0)}, "Ks"),
        ({"Ks": np.array([[[16, 0, 8], [0, np.inf, 8], [0, 0, 1.0]]])}, "Ks"),
        ({"Ks": np.array([[[-16, 0, 8], [0, 16, 8], [0, 0, 1.0]]])}, "Ks"),
        ({"width": 0}, "width"),
        ({"height": 2.5}, "height"),
        ({"samples": 0}, "samples"),
        ({"aa": 0}, "aa"),
        ({"bounces": -1}, "bounces"),
        ({"seed": -3}, "seed"),
        ({"device": "gpu"}, "device"),
        ({"backfaces": "hide"}, "backfaces"),
    ],
)
def test_bad_arguments_are_config_errors_naming_them(change: dict[str, object], argument: str) -> None:
    call: dict[str, object] = {"viewmats": top_down(2.0)[None], "Ks": intrinsics(16.0, 16, 16)[None], "width": 16,
                               "height": 16, "device": "cpu"}
    call.update(change)
    with pytest.raises(ConfigError, match=f"render_views: {argument}"):
        render_views(sunlit(Material("grey")), **call)  # type: ignore[arg-type]


def test_nothing_to_see_is_an_input_error(caplog: pytest.LogCaptureFixture) -> None:
    k = intrinsics(16.0, 8, 8)[None]
    with pytest.raises(InputError, match="no visible triangles"):
        render_views(Scene(), top_down()[None], k, 8, 8, device="cpu")
    hidden = Scene(objects=(MeshObject("gone", np.eye(3, dtype=np.float32), np.array([[0, 1, 2]]), visible=False),))
    with pytest.raises(InputError, match="no visible triangles"):
        render_views(hidden, top_down()[None], k, 8, 8, device="cpu")
    looking_up = look_at((0, 0, 2), (0, 0, 5), up=(0, 1, 0))
    with pytest.raises(InputError, match="cameras sees any"):
        render_views(sunlit(Material("grey")), looking_up[None], k, 8, 8, device="cpu")
    # one camera of two seeing nothing is a warning, not an error
    with caplog.at_level(logging.WARNING, logger="engine.render.views"):
        result = render_views(sunlit(Material("grey")), np.stack([looking_up, top_down()]), np.repeat(k, 2, 0), 8, 8,
                              aa=1, samples=1, bounces=0, device="cpu")
    assert result.alpha[0].max() == 0.0 and result.alpha[1].min() == 1.0
    assert "1 of 2 views see nothing" in caplog.text


# ---------------------------------------------------------------------------------------------
# 8-bit output


def test_srgb8_png_round_trip(tmp_path: Path) -> None:
    premultiplied = np.array([[[0.25, 0.0, 0.5, 0.5], [0.5, 0.5, 0.5, 1.0], [0.0, 0.0, 0.0, 0.0],
                               [4.0, 0.002, 1.0, 1.0]]], np.float32)  # (1, 4, 4)
    pixels = to_srgb8(premultiplied)
    # straight 0.5 → sRGB 188; alpha stays linear; clipped above 1
    np.testing.assert_array_equal(pixels[0, 0], (188, 0, 255, 128))
    np.testing.assert_array_equal(pixels[0, 1], (188, 188, 188, 255))
    np.testing.assert_array_equal(pixels[0, 2], (0, 0, 0, 0))
    assert pixels[0, 3, 0] == 255 and pixels[0, 3, 1] == round(0.002 * 12.92 * 255)
    np.testing.assert_array_equal(to_srgb8(premultiplied[..., :3] * 0.5, exposure=2.0), to_srgb8(premultiplied[..., :3]))
    path = save_png(tmp_path / "deep" / "view.png", premultiplied)
    back = load_png(path)
    np.testing.assert_allclose(back[..., 3], premultiplied[..., 3], atol=1 / 255)
    np.testing.assert_allclose(to_straight(back)[0, :2, :3], to_straight(premultiplied)[0, :2, :3], atol=0.006)
    np.testing.assert_allclose(back[0, 1], premultiplied[0, 1], atol=0.006)
    with pytest.raises(ConfigError, match="save_png"):
        save_png(tmp_path / "many.png", np.zeros((2, 4, 4, 4), np.float32))


# ---------------------------------------------------------------------------------------------
# CUDA under numba's simulator, against the CPU


CUDA_SCRIPT = textwrap.dedent(
    """
    import json, time
    import numpy as np
    from tests.render.test_views import CORNELL_VIEWS, cornell_scene, intrinsics
    from engine.render.views import render_views

    start = time.perf_counter()
    out = {}
    for device in ("cpu", "cuda"):
        r = render_views(cornell_scene(), CORNELL_VIEWS, np.stack([intrinsics(3.0, 4, 4)] * 2), 4, 4, samples=2,
                         bounces=1, aa=2, seed=11, device=device)
        out[device] = [r.rgba.tolist(), r.depth.tolist(), r.device]
    out["seconds"] = time.perf_counter() - start
    print(json.dumps(out))
    """
)


def test_cuda_simulator_renders_what_the_cpu_renders() -> None:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CUDA_SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    (cpu_rgba, cpu_depth, cpu_device), (cuda_rgba, cuda_depth, cuda_device) = out["cpu"], out["cuda"]
    assert (cpu_device, cuda_device) == ("cpu", "cuda")
    cpu_rgba, cuda_rgba = np.array(cpu_rgba), np.array(cuda_rgba)
    assert cpu_rgba.shape == (2, 4, 4, 4) and cpu_rgba[..., :3].min() > 0
    np.testing.assert_allclose(cuda_rgba, cpu_rgba, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.array(cuda_depth), np.array(cpu_depth), rtol=1e-6)
