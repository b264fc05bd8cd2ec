"""The lightmapped renderer (what a real-time engine shows of a bake) against the path tracer on the
same scene, its use of the per-object atlas and corner UVs (mirrored objects included), the baked
glTF's round trip, and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.bake.output import read_exr
from engine.bake.pipeline import BakeSettings, bake_scene, read_corner_uvs
from engine.errors import InputError
from engine.render.lightmapped import render_lightmapped
from engine.render.views import render_views
from engine.scene.io import load_scene
from engine.scene.model import Light, Material, MeshObject, Scene
from tests.bake.test_integrate import box, ground
from tests.render.test_views import intrinsics, look_at

SIZE = 48
VIEWS = np.stack([look_at((1.2, -1.0, 1.0), (0.0, 0.0, 0.2)), look_at((-1.0, 1.2, 1.4), (0.2, -0.2, 0.0))])
KS = np.stack([intrinsics(40.0, SIZE, SIZE)] * 2)


def lit_floor_and_box() -> Scene:
    """A sunlit floor with a red box on it, under a blue-grey sky. The floor is mirrored in X (a
    symmetric square, so the same geometry, but its triangles wind the other way: glTF's rule),
    so the box's shadow only lands right if mirrored corner UVs are handled."""
    floor = ground(1.5)
    floor = MeshObject("floor", floor.positions, floor.triangles, material_indices=floor.material_indices,
                       transform=np.diag([-1.0, 1.0, 1.0, 1.0]))
    cube = box("cube", (-0.4, -0.4, 0.0), (0.4, 0.4, 0.8), material=1, inward=False)
    tilt = math.radians(35.0)
    sun = np.eye(4)
    sun[:3, :3] = [[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]]
    return Scene(objects=(floor, cube), materials=(Material("white", (0.8, 0.8, 0.8, 1)),
                                                   Material("red", (0.8, 0.2, 0.1, 1))),
                 lights=(Light("sun", "sun", power=3.0, transform=sun),), environment=(0.2, 0.25, 0.3))


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scene, Path, dict]:
    scene = lit_floor_and_box()
    out = tmp_path_factory.mktemp("lightmapped")
    summary = bake_scene(scene, out, BakeSettings(atlas_size=512, texels_per_metre=40.0, samples=64, bounces=2,
                                                  device="cpu"))
    return scene, out, summary


def lightmaps(out: Path, summary: dict) -> tuple[dict, list[np.ndarray]]:
    atlases = [read_exr(out / "lightmaps" / f"atlas_{k}.exr") for k in range(summary["atlas_count"])]
    return read_corner_uvs(out / "lightmap_uv.npz"), atlases


def lit_relative_error(result: np.ndarray, reference: np.ndarray) -> float:
    """Mean relative error of the pixel brightness over fully covered pixels that are not in deep shadow."""
    covered = (result[..., 3] == 1) & (reference[..., 3] == 1)
    brightness = reference[..., :3].mean(axis=-1)
    lit = covered & (brightness > 0.05)
    assert lit.sum() > 0.3 * lit.size
    return float((np.abs(result[..., :3] - reference[..., :3]).mean(axis=-1)[lit] / brightness[lit]).mean())


def test_lightmapped_render_matches_the_path_tracer(baked: tuple[Scene, Path, dict]) -> None:
    # Tolerance: the bake (64 samples, denoised, 2.5 cm texels) and the reference (4 × 256 paths a
    # pixel) each carry ~1 % noise and the lightmap blurs shadow edges over a texel: measured 1.1 %.
    # A lightmap read at the wrong place (mirrored corners not swapped) measured 33 %, so 3 % tells them apart.
    scene, out, summary = baked
    corner_uvs, atlases = lightmaps(out, summary)
    result = render_lightmapped(scene, corner_uvs, atlases, VIEWS, KS, SIZE, SIZE)
    reference = render_views(scene, VIEWS, KS, SIZE, SIZE, samples=256, bounces=2, device="cpu")
    assert lit_relative_error(result.rgba, reference.rgba) < 0.03
    ratio = result.rgba[..., :3].sum() / reference.rgba[..., :3].sum()
    assert abs(ratio - 1.0) < 0.02  # no bias (units: E/π × albedo)
    np.testing.assert_allclose(result.depth, reference.depth, rtol=1e-5)  # the same primary hits
    np.testing.assert_array_equal(result.alpha, reference.alpha)
    assert result.unlit == () and result.samples == 0


def test_each_object_reads_its_own_atlas(baked: tuple[Scene, Path, dict]) -> None:
    scene, out, summary = baked
    corner_uvs, atlases = lightmaps(out, summary)
    assert summary["atlas_count"] == 1
    normal = render_lightmapped(scene, corner_uvs, atlases, VIEWS, KS, SIZE, SIZE, aa=1)
    # the cube's lightmap moves to a second atlas (a copy) and the first one is zeroed: the floor goes black
    moved = {**corner_uvs, "cube": (1, corner_uvs["cube"][1])}
    split = render_lightmapped(scene, moved, [np.zeros_like(atlases[0]), atlases[0]], VIEWS, KS, SIZE, SIZE, aa=1)
    floor = render_lightmapped(scene, {"floor": corner_uvs["floor"]}, atlases, VIEWS, KS, SIZE, SIZE, aa=1)
    assert floor.unlit == ("cube",)
    cube_pixels = floor.rgba[..., :3].max(axis=-1) == 0  # the cube has no lightmap: black
    assert 0.05 < cube_pixels.mean() < 0.6
    np.testing.assert_array_equal(split.rgba[cube_pixels], normal.rgba[cube_pixels])  # the cube as before
    np.testing.assert_array_equal(split.rgba[~cube_pixels][:, :3], 0.0)  # the floor black
    assert normal.rgba[~cube_pixels][:, :3].max() > 0.3


def test_the_baked_gltf_renders_like_the_scene(baked: tuple[Scene, Path, dict]) -> None:
    scene, out, summary = baked
    corner_uvs, atlases = lightmaps(out, summary)
    loaded = load_scene(out / "scene.glb")
    assert [o.name for o in loaded.objects] == [o.name for o in scene.objects]
    one = render_lightmapped(scene, corner_uvs, atlases, VIEWS, KS, SIZE, SIZE)
    two = render_lightmapped(loaded, corner_uvs, atlases, VIEWS, KS, SIZE, SIZE)
    np.testing.assert_allclose(two.rgba, one.rgba, atol=2e-4)


def test_lightmap_uvs_that_do_not_fit_the_scene_are_input_errors(baked: tuple[Scene, Path, dict]) -> None:
    scene, out, summary = baked
    corner_uvs, atlases = lightmaps(out, summary)
    with pytest.raises(InputError, match="object 'cube'") as caught:
        render_lightmapped(scene, {**corner_uvs, "cube": (0, corner_uvs["cube"][1][:-1])}, atlases, VIEWS, KS,
                           SIZE, SIZE)
    assert "12 triangles" in str(caught.value)
    with pytest.raises(InputError, match="atlas 3"):
        render_lightmapped(scene, {**corner_uvs, "cube": (3, corner_uvs["cube"][1])}, atlases, VIEWS, KS, SIZE, SIZE)
