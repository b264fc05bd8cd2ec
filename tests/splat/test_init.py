"""Gaussian initialisation: surface samples, area weighting, texture colours, scales, rotations, random init."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.bake.integrate import srgb_to_linear
from engine.errors import ConfigError, InputError
from engine.scene import Material, MeshObject, Scene, Texture
from engine.splat.init import (
    GaussianInit,
    init_from_mesh,
    init_random,
    neighbour_spacing,
    quats_z_to,
)
from tests.conftest import grid_mesh, unit_box


def rotate(quats: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Rotate vectors (N, 3) by unit wxyz quaternions (N, 4): v' = v + 2w(q×v) + 2q×(q×v)."""
    w, q = quats[:, :1], quats[:, 1:]
    t = 2.0 * np.cross(q, vectors)
    return vectors + w * t + np.cross(q, t)


def quad(name: str, size: float = 1.0, *, offset: tuple[float, float, float] = (0, 0, 0), material: int = 0,
         flip: bool = False, **kwargs: object) -> MeshObject:
    """A square [0, size]² at z = 0 (moved by ``offset``), facing +Z (or -Z when ``flip``), UVs = x/size, y/size."""
    positions = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32) * size + np.float32(offset)
    triangles = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    if flip:
        triangles = triangles[:, ::-1].copy()
    uv = (positions[:, :2] - np.float32(offset[:2])) / size
    return MeshObject(name, positions, triangles, uvs={"UVMap": uv},
                      material_indices=np.full(2, material, np.int32), **kwargs)  # type: ignore[arg-type]


def checker() -> Texture:
    """8×8 sRGB texture, one colour per 4×4 quadrant; row 0 is the image's top (V = 1)."""
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4, :4] = (128, 0, 0)  # top left: red
    rgb[:4, 4:] = (0, 128, 0)  # top right: green
    rgb[4:, :4] = (0, 0, 128)  # bottom left: blue
    rgb[4:, 4:] = (128, 128, 128)  # bottom right: grey
    return Texture("checker", rgb)


# --------------------------------------------------------------------------------------------
# from the mesh


def test_samples_lie_on_a_transformed_plane_and_face_its_normal() -> None:
    positions, triangles = grid_mesh(5)
    angle = math.radians(30)
    transform = np.eye(4)
    transform[:3, :3] = 2.0 * np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)],
                                        [0, math.sin(angle), math.cos(angle)]])
    transform[:3, 3] = (1.0, -2.0, 0.5)
    scene = Scene(objects=(MeshObject("plane", positions, triangles, transform=transform),))
    init = init_from_mesh(scene, 3000, seed=1)
    assert isinstance(init, GaussianInit) and init.count == 3000
    normal = transform[:3, :3] @ (0, 0, 1) / 2.0
    local = (init.means - transform[:3, 3]) @ transform[:3, :3] / 4.0  # back to the unit square
    assert np.abs((init.means - transform[:3, 3]) @ normal).max() < 1e-5
    assert local[:, :2].min() >= -1e-6 and local[:, :2].max() <= 1 + 1e-6
    # spread over the whole square, not clumped
    counts = np.histogram2d(local[:, 0], local[:, 1], bins=4, range=((0, 1), (0, 1)))[0]
    assert counts.min() > 0.6 * 3000 / 16
    np.testing.assert_allclose(init.normals, np.broadcast_to(normal, init.normals.shape), atol=1e-6)
    np.testing.assert_allclose(rotate(init.quats.astype(np.float64), np.tile((0.0, 0, 1), (3000, 1))),
                               init.normals, atol=1e-5)
    for array in (init.means, init.scales, init.quats, init.colors, init.opacities, init.normals):
        assert array.dtype == np.float32 and not array.flags.writeable


def test_samples_follow_surface_area() -> None:
    scene = Scene(objects=(quad("small", 1.0), quad("big", math.sqrt(3.0), offset=(5, 0, 0))))
    init = init_from_mesh(scene, 4000, seed=2)
    on_big = init.means[:, 0] > 4.0
    assert on_big.mean() == pytest.approx(0.75, abs=0.02)  # areas 1 : 3


def test_include_restricts_to_named_objects_and_animated_objects_are_left_out() -> None:
    scene = Scene(objects=(quad("a"), quad("b", offset=(5, 0, 0)), quad("fan", offset=(0, 5, 0), animated=True)))
    only_b = init_from_mesh(scene, 500, include=["b"])
    assert (only_b.means[:, 0] > 4.0).all()
    everything = init_from_mesh(scene, 500)
    assert (everything.means[:, 1] < 2.0).all()  # nothing on the animated fan
    assert (everything.means[:, 0] > 4.0).any() and (everything.means[:, 0] < 2.0).any()


def test_colours_come_from_base_colour_times_texture() -> None:
    material = Material("checker", base_color=(0.5, 1.0, 1.0, 1.0), base_color_texture=checker())
    scene = Scene(objects=(quad("card"),), materials=(material,))
    init = init_from_mesh(scene, 4000, seed=3)
    x, y = init.means[:, 0], init.means[:, 1]
    level = float(srgb_to_linear(np.float32(128 / 255)))
    inner = lambda a: ((a > 0.13) & (a < 0.37)) | ((a > 0.63) & (a < 0.87))  # noqa: E731 - away from texel blends
    chosen = inner(x) & inner(y)
    assert chosen.sum() > 500
    expected = _quadrant_colours(x, y, level)
    np.testing.assert_allclose(init.colors[chosen], expected[chosen], atol=1e-5)
    grey = chosen & (x > 0.5) & (y < 0.5)
    np.testing.assert_allclose(init.colors_srgb[grey][:, 1:], 128 / 255, atol=1e-3)


def _quadrant_colours(x: np.ndarray, y: np.ndarray, level: float) -> np.ndarray:
    """Expected linear colour of the checker quad with base colour (0.5, 1, 1)."""
    colours = np.empty((len(x), 3))
    colours[(x < 0.5) & (y > 0.5)] = (0.5 * level, 0, 0)
    colours[(x > 0.5) & (y > 0.5)] = (0, level, 0)
    colours[(x < 0.5) & (y < 0.5)] = (0, 0, level)
    colours[(x > 0.5) & (y < 0.5)] = (0.5 * level, level, level)
    return colours


def test_untextured_colour_emission_and_blend_opacity() -> None:
    materials = (Material("paint", base_color=(0.2, 0.4, 0.6, 1.0)),
                 Material("lamp", base_color=(0.5, 0.5, 0.5, 1.0), emission_color=(1.0, 0.2, 0.0)),
                 Material("glass", base_color=(0.9, 0.9, 0.9, 0.5), alpha_mode="BLEND"))
    scene = Scene(objects=(quad("paint"), quad("lamp", offset=(5, 0, 0), material=1),
                           quad("glass", offset=(10, 0, 0), material=2)), materials=materials)
    init = init_from_mesh(scene, 900, opacity=0.8)
    which = (init.means[:, 0] // 5).astype(int)
    np.testing.assert_allclose(init.colors[which == 0], np.broadcast_to((0.2, 0.4, 0.6), ((which == 0).sum(), 3)),
                               atol=1e-6)
    np.testing.assert_allclose(init.colors[which == 1], np.broadcast_to((1.0, 0.7, 0.5), ((which == 1).sum(), 3)),
                               atol=1e-6)
    np.testing.assert_allclose(init.opacities[which < 2], 0.8, atol=1e-6)
    np.testing.assert_allclose(init.opacities[which == 2], 0.4, atol=1e-6)


def test_alpha_cut_holes_get_no_gaussians(leaf_material: Material) -> None:
    scene = Scene(objects=(quad("leaf"),), materials=(leaf_material,))
    init = init_from_mesh(scene, 2000, seed=4)
    assert init.count == 2000  # the samples that fell into the hole were drawn again
    x = init.means[:, 0]
    # texture columns 0-3 (u < 0.5) are holes; within 1/16 of u = 0 the repeat wrap blends in the opaque side
    assert not ((x > 1 / 16 + 1e-3) & (x < 0.5 - 1e-3)).any()
    assert (x > 0.5).mean() > 0.85


def test_scales_follow_sample_spacing_and_are_flat_along_the_normal() -> None:
    scene = Scene(objects=(unit_box(),))
    for count in (600, 6000):
        init = init_from_mesh(scene, count, flatten=0.2)
        nominal = math.sqrt(6.0 / count)
        np.testing.assert_allclose(init.scales[:, 1], init.scales[:, 0])
        np.testing.assert_allclose(init.scales[:, 2], 0.2 * init.scales[:, 0], rtol=1e-6)
        assert 0.5 * nominal < np.median(init.scales[:, 0]) < 1.2 * nominal
        assert init.scales.min() >= 0.2 * 0.2 * nominal * (1 - 1e-6)
    # every sample on a box face, the normals pointing out of the box
    centred = init.means - 0.5
    face_axis = np.argmax(np.abs(centred), axis=1)
    assert np.abs(np.abs(centred[np.arange(init.count), face_axis]) - 0.5).max() < 1e-5
    outward = np.zeros_like(centred)
    outward[np.arange(init.count), face_axis] = np.sign(centred[np.arange(init.count), face_axis])
    np.testing.assert_allclose(init.normals, outward, atol=1e-6)


def test_quaternions_turn_z_onto_any_normal_including_straight_down() -> None:
    rng = np.random.default_rng(5)
    normals = rng.normal(size=(200, 3))
    normals = np.concatenate([normals, [[0, 0, 1.0], [0, 0, -1.0], [0, 1e-9, -1.0]]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    quats = quats_z_to(normals)
    np.testing.assert_allclose(np.linalg.norm(quats, axis=1), 1.0)
    np.testing.assert_allclose(rotate(quats, np.tile((0.0, 0, 1), (len(normals), 1))), normals, atol=1e-9)
    down = Scene(objects=(quad("ceiling", flip=True),))
    init = init_from_mesh(down, 50)
    np.testing.assert_allclose(init.normals, np.tile((0, 0, -1.0), (50, 1)), atol=1e-6)
    np.testing.assert_allclose(rotate(init.quats.astype(np.float64), np.tile((0.0, 0, 1), (50, 1))), init.normals,
                               atol=1e-6)


def test_neighbour_spacing_matches_brute_force() -> None:
    points = np.random.default_rng(6).random((1500, 3)) * (1.0, 1.0, 0.05)
    spacing = 0.03
    found = neighbour_spacing(points, k=3, spacing=spacing)
    d2 = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    cell = 2.0 * spacing  # neighbours beyond one cell count as one cell away
    expected = np.sqrt(np.minimum(np.sort(d2, axis=1)[:, :3], cell * cell).mean(axis=1))
    np.testing.assert_allclose(found, expected, rtol=1e-9)


def test_mesh_init_is_deterministic_per_seed() -> None:
    scene = Scene(objects=(unit_box(),))
    a, b, c = init_from_mesh(scene, 300, seed=7), init_from_mesh(scene, 300, seed=7), init_from_mesh(scene, 300, seed=8)
    for name in ("means", "scales", "quats", "colors", "opacities"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(a.means, c.means)


def test_mesh_init_errors() -> None:
    with pytest.raises(InputError, match="nothing to splat"):
        init_from_mesh(Scene(name="empty"), 10)
    with pytest.raises(InputError, match="nothing to splat"):
        init_from_mesh(Scene(objects=(quad("hidden", visible=False),)), 10)
    flat = MeshObject("sliver", np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], np.float32), np.array([[0, 1, 2]]))
    with pytest.raises(InputError, match="surface area") as info:
        init_from_mesh(Scene(objects=(flat,), name="slivers"), 10)
    assert "slivers" in str(info.value)
    scene = Scene(objects=(quad("a"),))
    for count in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="count"):
            init_from_mesh(scene, count)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="flatten"):
        init_from_mesh(scene, 10, flatten=0.0)
    with pytest.raises(ConfigError, match="nope"):
        init_from_mesh(scene, 10, include=["nope"])


# --------------------------------------------------------------------------------------------
# random


def test_random_init_fills_the_box() -> None:
    lo, hi = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 3.0, 2.5])
    init = init_random(lo, hi, 4000, seed=9)
    assert init.count == 4000
    assert (init.means >= lo).all() and (init.means <= hi).all()
    assert (np.ptp(init.means, axis=0) > 0.95 * (hi - lo)).all()
    np.testing.assert_allclose(init.opacities, 0.1, atol=1e-7)
    np.testing.assert_allclose(init.scales, np.repeat(init.scales[:, :1], 3, axis=1))  # isotropic
    nominal = (np.prod(hi - lo) / 4000) ** (1 / 3)
    assert 0.4 * nominal < np.median(init.scales[:, 0]) < 1.5 * nominal
    np.testing.assert_allclose(init.quats, np.tile((1.0, 0, 0, 0), (4000, 1)))
    assert init.colors.min() >= 0 and init.colors.max() <= 1 and init.colors.std() > 0.2
    np.testing.assert_array_equal(init_random(lo, hi, 50, seed=1).means, init_random(lo, hi, 50, seed=1).means)
    flat = init_random((0, 0, 0), (1, 1, 0), 100)  # a flat box works too
    assert np.isfinite(flat.scales).all() and (flat.scales > 0).all()


def test_random_init_errors() -> None:
    with pytest.raises(ConfigError, match="count"):
        init_random((0, 0, 0), (1, 1, 1), 0)
    with pytest.raises(ConfigError, match="empty"):
        init_random((0, 0, 0), (0, 0, 0), 10)
    with pytest.raises(ConfigError, match="not finite"):
        init_random((0, 0, 0), (1, np.nan, 1), 10)
