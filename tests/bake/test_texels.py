"""Texel rasterisation: conservative coverage, owners, interpolated positions and normals, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.bake.texels import OFFSET_SCENE, OFFSET_TEXEL, coverage_counts, rasterize_texels, uv_pixels
from engine.bake.uv import LightmapEntry, LightmapLayout, lightmap_layout
from engine.scene import MeshObject, Scene
from tests.bake.test_uv import uv_sphere
from tests.conftest import grid_mesh

SIZE = 512


def hand_layout(pixel_rect: tuple[float, float, float, float], world_rect: tuple[float, float, float, float],
                z: float = 2.0, normals: bool = False) -> LightmapLayout:
    """One quad at height z covering ``world_rect`` (x0, y0, x1, y1), mapped to ``pixel_rect`` of a SIZE² atlas.

    Pixel x grows with world x, pixel row grows with world y (so V runs against y).
    """
    px0, py0, px1, py1 = pixel_rect
    wx0, wy0, wx1, wy1 = world_rect
    positions = np.array([[wx0, wy0, z], [wx1, wy0, z], [wx1, wy1, z], [wx0, wy1, z]], np.float32)
    pixels = np.array([[px0, py0], [px1, py0], [px1, py1], [px0, py1]])
    uv = np.c_[pixels[:, 0] / SIZE, 1.0 - pixels[:, 1] / SIZE].astype(np.float32)
    entry = LightmapEntry(
        name="quad", object_index=0, atlas=0, positions=positions,
        normals=np.tile(np.float32([0.0, 0.6, 0.8]), (4, 1)) if normals else None,
        uv=uv, triangles=np.array([[0, 1, 2], [0, 2, 3]], np.int32), vmapping=np.arange(4, dtype=np.int32),
        generated=False, reason="test", rect=(0, 0, SIZE, SIZE), texels_per_metre=1.0,
    )
    return LightmapLayout(atlas_size=SIZE, atlas_count=1, texels_per_metre=1.0, entries=(entry,))


def test_conservative_coverage_includes_every_touched_texel() -> None:
    # edges between texel centres and texel borders: columns 100..300 and rows 50..150 are touched
    layout = hand_layout((100.7, 50.2, 300.2, 150.9), (10.0, -1.0, 14.0, 1.0))
    texels = rasterize_texels(layout)
    assert texels.count == 201 * 101
    assert (texels.x.min(), texels.x.max(), texels.y.min(), texels.y.max()) == (100, 300, 50, 150)
    mask = texels.mask(0)
    assert mask[50:151, 100:301].all() and mask.sum() == texels.count


def test_positions_interpolate_on_a_known_plane() -> None:
    rect_px = (100.7, 50.2, 300.2, 150.9)
    layout = hand_layout(rect_px, (10.0, -1.0, 14.0, 1.0))
    texels = rasterize_texels(layout)
    px0, py0, px1, py1 = rect_px
    cx, cy = texels.x + 0.5, texels.y + 0.5
    inside = (cx > px0) & (cx < px1) & (cy > py0) & (cy < py1)
    expected_x = 10.0 + (cx - px0) / (px1 - px0) * 4.0
    expected_y = -1.0 + (cy - py0) / (py1 - py0) * 2.0
    np.testing.assert_allclose(texels.position[inside, 0], expected_x[inside], atol=1e-4)
    np.testing.assert_allclose(texels.position[inside, 1], expected_y[inside], atol=1e-4)
    np.testing.assert_allclose(texels.position[:, 2], 2.0, atol=1e-6)
    bary = texels.barycentric
    assert (bary >= -1e-6).all() and np.allclose(bary.sum(axis=1), 1.0, atol=1e-5)
    # edge texels whose centres lie outside are clamped onto the quad and pulled a little inward
    outside = ~inside
    assert outside.sum() == 2 * 101  # columns 100 and 300
    x, y = texels.position[outside, 0], texels.position[outside, 1]
    texel_x = 4.0 / (px1 - px0)
    assert (x >= 10.0).all() and (x <= 14.0).all() and (y >= -1.0).all() and (y <= 1.0).all()
    left = texels.x[outside] == 100
    assert np.all(x[left] - 10.0 <= 0.3 * texel_x) and np.all(x[left] - 10.0 > 0.0)
    assert np.all(14.0 - x[~left] <= 0.3 * texel_x) and np.all(14.0 - x[~left] > 0.0)
    # the plane faces +Z (counter-clockwise in x, y); no vertex normals: the geometric normal
    np.testing.assert_allclose(texels.face_normal, np.tile([0.0, 0.0, 1.0], (texels.count, 1)), atol=1e-6)
    np.testing.assert_array_equal(texels.normal, texels.face_normal)
    np.testing.assert_allclose(texels.texel_size, texel_x, rtol=0.05)
    lift = texels.origin - texels.position
    np.testing.assert_allclose(lift[:, :2], 0.0, atol=1e-7)
    assert (lift[:, 2] > 0).all()
    np.testing.assert_allclose(lift[:, 2], texels.offset, atol=5e-7)  # float32 steps at z = 2
    diagonal = np.hypot(4.0, 2.0)
    np.testing.assert_allclose(texels.offset, np.maximum(OFFSET_TEXEL * texels.texel_size, OFFSET_SCENE * diagonal),
                               rtol=1e-6)


def test_vertex_normals_are_interpolated() -> None:
    texels = rasterize_texels(hand_layout((10.0, 10.0, 60.0, 60.0), (0, 0, 1, 1), normals=True))
    np.testing.assert_allclose(texels.normal, np.tile([0.0, 0.6, 0.8], (texels.count, 1)), atol=1e-6)
    np.testing.assert_allclose(texels.face_normal[:, 2], 1.0, atol=1e-6)


def test_centre_coverer_owns_shared_texels() -> None:
    """On the quad's diagonal, texels are shared: the owner is the triangle that holds the centre."""
    texels = rasterize_texels(hand_layout((10.0, 10.0, 90.3, 90.3), (0, 0, 1, 1)))
    layout_uv = hand_layout((10.0, 10.0, 90.3, 90.3), (0, 0, 1, 1)).entries[0]
    corners = uv_pixels(layout_uv.uv, layout_uv.triangles, SIZE)[texels.triangle]
    cx, cy = texels.x + 0.5, texels.y + 0.5
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]

    def edge(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return (q[:, 0] - p[:, 0]) * (cy - p[:, 1]) - (q[:, 1] - p[:, 1]) * (cx - p[:, 0])

    e = np.stack([edge(a, b), edge(b, c), edge(c, a)], 1)
    holds = (e >= -1e-9).all(axis=1) | (e <= 1e-9).all(axis=1)
    interior = (cx < 90.3) & (cy < 90.3)
    assert holds[interior].all()


def test_generated_layout_area_matches_uv_area() -> None:
    positions, triangles = uv_sphere(24)
    layout = lightmap_layout(Scene((MeshObject("ball", positions, triangles),)), atlas_size=1024)
    entry = layout.entries[0]
    size = layout.atlas_size
    corners = uv_pixels(entry.uv, entry.triangles, size)
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    uv_area_px = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
    centres = int(np.count_nonzero(coverage_counts(entry.uv, entry.triangles, size)))
    texels = rasterize_texels(layout)
    assert centres == pytest.approx(uv_area_px, rel=0.02)
    assert texels.count > centres  # edge texels too
    # every texel touched by any triangle is baked: check a sample against a direct overlap test
    rng = np.random.default_rng(3)
    mask = texels.mask(0)
    for t in rng.choice(len(corners), 200, replace=False):
        tri = corners[t]
        x0, y0 = np.floor(tri.min(axis=0)).astype(int)
        x1, y1 = np.ceil(tri.max(axis=0)).astype(int)
        ys, xs = np.mgrid[y0:y1, x0:x1]
        # sample each texel square densely: any sample inside the triangle means overlap
        s = (np.arange(8) + 0.5) / 8
        sx = xs[..., None, None] + s[None, None, None, :]
        sy = ys[..., None, None] + s[None, None, :, None]
        a, b, c = tri
        d = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        w1 = ((sx - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (sy - a[1])) / d
        w2 = ((b[0] - a[0]) * (sy - a[1]) - (sx - a[0]) * (b[1] - a[1])) / d
        touched = ((w1 >= 0) & (w2 >= 0) & (w1 + w2 <= 1)).any(axis=(2, 3))
        assert mask[ys[touched], xs[touched]].all()


def test_scatter_puts_values_at_their_texels() -> None:
    texels = rasterize_texels(hand_layout((3.0, 4.0, 20.0, 9.0), (0, 0, 1, 1)))
    (image,) = texels.scatter(texels.x.astype(np.float32), fill=-1.0)
    assert image.shape == (SIZE, SIZE, 1)
    assert image[5, 7, 0] == 7 and image[0, 0, 0] == -1
    with pytest.raises(ValueError):
        texels.scatter(np.zeros(3))


def test_rasterisation_speed_100k_triangles() -> None:
    positions, triangles = grid_mesh(225)  # 100 352 triangles
    uv = positions[:, :2] * 0.98 + 0.01
    scene = Scene((MeshObject("terrain", positions, triangles, uvs={"LM": uv}, lightmap_uv="LM"),))
    layout = lightmap_layout(scene, texels_per_metre=1000.0, atlas_size=1024)
    assert layout.entries[0].rect[2] > 990  # the block fills the 1024² atlas
    rasterize_texels(layout)  # compile or load the kernels
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        texels = rasterize_texels(layout)
        best = min(best, time.perf_counter() - start)
    assert texels.count > 0.95 * 1000**2
    assert best < 1.0, f"rasterising 100k triangles took {best:.2f} s"


@pytest.mark.parametrize("mirror", [1.0, -1.0])
def test_face_normals_point_out_of_a_closed_box_even_when_mirrored(mirror: float) -> None:
    from tests.conftest import unit_box

    box = unit_box("box", transform=np.diag([mirror, 1.0, 1.0, 1.0]))
    layout = lightmap_layout(Scene((box,)))
    assert layout.entries[0].mirrored == (mirror < 0)
    texels = rasterize_texels(layout)
    outward = texels.position - np.array([0.5 * mirror, 0.5, 0.5])
    assert (np.einsum("ij,ij->i", outward, texels.face_normal) > 0).all()
    assert (np.einsum("ij,ij->i", texels.origin - texels.position, texels.face_normal) > 0).all()
