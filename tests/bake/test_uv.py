"""Lightmap UV layouts: xatlas charts with padding, kept user UVs, rejected ones, density, errors."""

from __future__ import annotations

import numpy as np
import pytest

from engine.bake.texels import coverage_counts, rasterize_texels
from engine.bake.uv import LightmapLayout, check_lightmap_uv, default_texels_per_metre, lightmap_layout
from engine.errors import ConfigError, InputError
from engine.scene import MeshObject, Scene
from tests.conftest import grid_mesh, unit_box


def uv_sphere(n: int, radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A UV sphere with n rings and 2n segments (poles repeated per segment): 2·(n−1)·2n triangles."""
    theta = np.linspace(0.0, np.pi, n)
    phi = np.linspace(0.0, 2.0 * np.pi, 2 * n, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    positions = radius * np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    m = 2 * n
    i, j = np.meshgrid(np.arange(n - 1), np.arange(m), indexing="ij")
    a, b = i * m + j, i * m + (j + 1) % m
    c, d = (i + 1) * m + j, (i + 1) * m + (j + 1) % m
    triangles = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    return positions.astype(np.float32), triangles.astype(np.int32)


def scale(sx: float, sy: float, sz: float, t: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    m = np.diag([sx, sy, sz, 1.0])
    m[:3, 3] = t
    return m


def quad(name: str, size: float, uv: np.ndarray | None = None, **kwargs: object) -> MeshObject:
    """A square of ``size`` at z = 0 facing +Z, optionally with a lightmap UV 'LM'."""
    positions = np.array([[0, 0, 0], [size, 0, 0], [size, size, 0], [0, size, 0]], np.float32)
    triangles = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    if uv is not None:
        kwargs = {"uvs": {"LM": uv}, "lightmap_uv": "LM", **kwargs}
    return MeshObject(name, positions, triangles, **kwargs)  # type: ignore[arg-type]


def chart_image(layout: LightmapLayout) -> list[np.ndarray]:
    """Per atlas, the chart id of every covered texel (-1 elsewhere); charts = UV-connected triangles."""
    texels = rasterize_texels(layout)
    ids_per_entry = []
    base = 0
    for entry in layout.entries:
        parent = np.arange(entry.n_vertices)

        def find(x: int, parent: np.ndarray = parent) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for a, b, c in entry.triangles.tolist():
            for u, v in ((a, b), (b, c)):
                ru, rv = find(u), find(v)
                if ru != rv:
                    parent[ru] = rv
        ids_per_entry.append(np.array([find(v) for v in entry.triangles[:, 0].tolist()]) + base)
        base += entry.n_vertices
    images = []
    for a in range(layout.atlas_count):
        image = np.full((layout.atlas_size, layout.atlas_size), -1, np.int64)
        pick = texels.atlas == a
        ids = np.array([ids_per_entry[o][t] for o, t in zip(texels.object_index[pick], texels.triangle[pick], strict=True)])
        image[texels.y[pick], texels.x[pick]] = ids
        images.append(image)
    return images


def nearest_foreign_distance(image: np.ndarray, max_distance: int = 8) -> int | None:
    """The smallest Chebyshev distance between texels of two different charts (None if above max_distance)."""
    size = image.shape[0]
    for d in range(1, max_distance + 1):
        for dy in range(-d, d + 1):
            for dx in range(-d, d + 1):
                if max(abs(dx), abs(dy)) != d:
                    continue
                a = image[max(0, dy):size + min(0, dy), max(0, dx):size + min(0, dx)]
                b = image[max(0, -dy):size + min(0, -dy), max(0, -dx):size + min(0, -dx)]
                if ((a >= 0) & (b >= 0) & (a != b)).any():
                    return d
    return None


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [2, 4])
def test_generated_charts_keep_padding_texels_apart(padding: int) -> None:
    sphere_p, sphere_t = uv_sphere(16)
    scene = Scene((
        MeshObject("sphere", sphere_p, sphere_t, transform=scale(1, 1, 1, (3.0, 0.0, 0.0))),
        unit_box("box", transform=scale(2.0, 1.0, 0.5)),
    ))
    layout = lightmap_layout(scene, padding=padding)
    assert layout.atlas_count == 1 and not layout.warnings
    for entry in layout.entries:
        assert entry.generated and "xatlas" in entry.reason
        assert entry.uv.min() >= 0.0 and entry.uv.max() <= 1.0
        obj = scene.object(entry.name)
        # the new vertices are the old ones (world space) and the triangles are the same, in order
        np.testing.assert_allclose(entry.positions, obj.world_positions()[entry.vmapping], atol=1e-6)
        np.testing.assert_array_equal(entry.vmapping[entry.triangles], obj.triangles)
    assert layout.entry("box").n_vertices > 8  # the cube is cut into charts along its edges
    # between two charts' texels (conservative raster) there are at least `padding` empty texels
    distance = nearest_foreign_distance(chart_image(layout)[0])
    assert distance is None or distance - 1 >= padding


def test_padding_zero_lets_charts_touch() -> None:
    """The reason to set xatlas' padding: with 0, chart texels touch (the check above is not vacuous)."""
    layout = lightmap_layout(Scene((unit_box("box"),)), padding=0)
    assert nearest_foreign_distance(chart_image(layout)[0]) == 1


def test_valid_lightmap_uv_is_kept_and_only_scaled_and_moved() -> None:
    positions, triangles = grid_mesh(9)
    uv = positions[:, :2] * 0.5 + 0.25  # a valid layout in the middle of [0, 1]
    obj = MeshObject("floor", positions * 3.0, triangles, uvs={"LM": uv, "UVMap": uv}, lightmap_uv="LM")
    layout = lightmap_layout(Scene((obj,)))
    entry = layout.entry("floor")
    assert not entry.generated and "kept" in entry.reason and not layout.warnings
    np.testing.assert_array_equal(entry.vmapping, np.arange(obj.n_vertices))
    np.testing.assert_array_equal(entry.triangles, obj.triangles)
    # the layout UV is the user's UV under one scale and offset
    fit, *_ = np.linalg.lstsq(np.c_[uv, np.ones(len(uv))], entry.uv, rcond=None)
    np.testing.assert_allclose(np.c_[uv, np.ones(len(uv))] @ fit, entry.uv, atol=1e-6)
    assert fit[0, 1] == pytest.approx(0.0, abs=1e-6) and fit[1, 0] == pytest.approx(0.0, abs=1e-6)
    assert fit[0, 0] == pytest.approx(fit[1, 1], rel=1e-5)
    # and its texel density is the layout's: 9 m² at D texels/m → 9·D² texels
    texels = rasterize_texels(layout)
    assert texels.count == pytest.approx(9.0 * layout.texels_per_metre**2, rel=0.02)


def test_overlapping_user_uv_is_replaced_with_a_warning() -> None:
    # every face of the box mapped onto the same UV square: overlapping
    face_uv = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]], np.float32)
    box = unit_box("crate")
    corners = box.positions[box.triangles]  # unshared vertices: 36
    positions = corners.reshape(-1, 3)
    triangles = np.arange(36, dtype=np.int32).reshape(12, 3)
    uv = np.tile(np.concatenate([face_uv[[0, 1, 2]], face_uv[[0, 2, 3]]]), (6, 1))
    obj = MeshObject("crate", positions, triangles, uvs={"LM": uv}, lightmap_uv="LM")
    layout = lightmap_layout(Scene((obj,)))
    entry = layout.entry("crate")
    assert entry.generated and "overlaps itself" in entry.reason
    assert any("'crate'" in w and "a new lightmap UV was generated" in w for w in layout.warnings)


@pytest.mark.parametrize(("uv_value", "words"), [
    (np.zeros((4, 2), np.float32), "degenerate"),
    (np.array([[0, 0], [1.5, 0], [1.5, 1], [0, 1]], np.float32), "leaves [0, 1]"),
])
def test_degenerate_or_outside_user_uv_is_replaced(uv_value: np.ndarray, words: str) -> None:
    layout = lightmap_layout(Scene((quad("panel", 2.0, uv_value),)))
    entry = layout.entry("panel")
    assert entry.generated and words in entry.reason
    assert any("'panel'" in w and words in w and "a new lightmap UV was generated" in w for w in layout.warnings)


def test_shared_edges_are_not_overlaps() -> None:
    """Grid diagonals run exactly through texel centres: the fill rule counts each centre once."""
    positions, triangles = grid_mesh(33)
    uv = positions[:, :2]
    counts = coverage_counts(uv, triangles, 1024)
    assert counts.max() == 1 and counts.min() == 1
    areas = np.full(len(triangles), 0.5 / 32**2)
    assert check_lightmap_uv(uv, triangles, areas) is None
    folded = uv.copy()
    folded[:, 0] = np.where(folded[:, 0] > 0.5, 1.0 - folded[:, 0], folded[:, 0])  # mirror the right half
    assert "overlaps" in (check_lightmap_uv(folded, triangles, areas) or "")


def room(unit_scale: float, meters_per_unit: float | None) -> Scene:
    s = unit_scale
    return Scene((
        unit_box("room", transform=scale(4 * s, 3 * s, 2.5 * s)),
        unit_box("table", transform=scale(1 * s, 0.6 * s, 0.7 * s, (1.5 * s, 1.2 * s, 0.0))),
    ), meters_per_unit=meters_per_unit, unit_name="m" if s == 1 else "mm")


@pytest.mark.parametrize("budget", [{}, {"atlas_size": 512, "max_atlases": 1}])
def test_density_is_independent_of_units(budget: dict[str, int]) -> None:
    metres = lightmap_layout(room(1.0, 1.0), **budget)
    millimetres = lightmap_layout(room(1000.0, 0.001), **budget)
    assert millimetres.texels_per_metre == pytest.approx(metres.texels_per_metre, rel=1e-6)
    count_m = rasterize_texels(metres).count
    count_mm = rasterize_texels(millimetres).count
    assert count_mm == pytest.approx(count_m, rel=0.01)
    # texel count from the formula: area 2·(12 + 10 + 7.5) + 2·(0.42 + 0.7 + 0.42) m²
    area = 2 * (12 + 10 + 7.5) + 2 * (0.6 + 0.7 + 0.42)
    size, count = budget.get("atlas_size", 1024), budget.get("max_atlases", 8)
    assert metres.texels_per_metre == pytest.approx(default_texels_per_metre(area, size, count), rel=1e-6)
    assert count_m == pytest.approx(area * metres.texels_per_metre**2, rel=0.1)


def test_density_formula_bounds() -> None:
    # tiny scene: at least a quarter atlas at 60 % fill; huge scene: at most max_atlases at 60 %
    assert default_texels_per_metre(0.01, 1024, 8) ** 2 * 0.01 == pytest.approx(0.6 * 1024**2 / 4)
    assert default_texels_per_metre(1e6, 1024, 8) ** 2 * 1e6 == pytest.approx(0.6 * 8 * 1024**2)
    assert default_texels_per_metre(500.0, 1024, 8) == pytest.approx(40.0)


def test_objects_that_do_not_pack_are_a_config_error() -> None:
    full = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    scene = Scene((quad("a", 1.0, full), quad("b", 1.0, full, transform=scale(1, 1, 1, (2, 0, 0)))))
    # two 701² blocks: each fits a 1024² atlas, both do not
    with pytest.raises(ConfigError) as error:
        lightmap_layout(scene, texels_per_metre=700.0, max_atlases=1)
    assert "do not pack" in str(error.value) and "texels_per_metre" in str(error.value)
    layout = lightmap_layout(scene, texels_per_metre=700.0, max_atlases=2)
    assert layout.atlas_count == 2 and {e.atlas for e in layout.entries} == {0, 1}
    # far too many texels for the budget: refused before any chart is made
    with pytest.raises(ConfigError, match="more than 1 atlas of 1024"):
        lightmap_layout(scene, texels_per_metre=5000.0, max_atlases=1)


def test_an_object_larger_than_an_atlas_gets_a_lower_density() -> None:
    full = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    layout = lightmap_layout(Scene((quad("wall", 1.0, full),)), texels_per_metre=2000.0)
    entry = layout.entry("wall")
    assert entry.rect[2] <= 1024 - 2 and entry.texels_per_metre < 2000.0
    assert any("'wall'" in w and "larger than one" in w for w in layout.warnings)


def test_memory_limit_is_a_config_error() -> None:
    big = Scene((unit_box("hall", transform=scale(500, 500, 50)),))
    with pytest.raises(ConfigError) as error:
        lightmap_layout(big, atlas_size=8192, max_atlases=8)
    message = str(error.value)
    assert "GiB" in message and "8192" in message and "lower atlas_size" in message


@pytest.mark.parametrize("options", [{"atlas_size": 1000}, {"atlas_size": 256}, {"atlas_size": 16384},
                                     {"padding": -1}, {"max_atlases": 0}, {"texels_per_metre": -3.0},
                                     {"texels_per_metre": float("nan")}])
def test_bad_options_are_config_errors(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        lightmap_layout(Scene((unit_box(),)), **options)  # type: ignore[arg-type]


def test_no_bakeable_objects_is_an_input_error() -> None:
    scene = Scene((unit_box("spinner", animated=True), unit_box("ghost", visible=False)))
    with pytest.raises(InputError, match="no bakeable objects"):
        lightmap_layout(scene)
    with pytest.raises(InputError, match="no bakeable objects"):
        lightmap_layout(scene, ["spinner"])
    with pytest.raises(InputError, match="no object named 'nope'"):
        lightmap_layout(Scene((unit_box(),)), ["nope"])


def test_chosen_objects_and_instances() -> None:
    base = unit_box("chair", instance_of="Chair")
    copy = MeshObject("chair.001", base.positions, base.triangles, transform=scale(1, 1, 1, (3, 0, 0)),
                      instance_of="Chair")
    moving = unit_box("fan", animated=True)
    layout = lightmap_layout(Scene((base, copy, moving)), ["chair", "chair.001", "fan"])
    assert layout.names == ("chair", "chair.001")
    assert any("'fan'" in w and "animated" in w for w in layout.warnings)
    a, b = layout.entries
    assert a.rect[2:] == b.rect[2:] and a.rect[:2] != b.rect[:2]  # same charts, own place
    texels = rasterize_texels(layout)
    counts = np.bincount(texels.object_index)
    assert counts[0] == counts[1]


def test_many_objects_pack_into_disjoint_padded_blocks() -> None:
    rng = np.random.default_rng(11)
    padding = 3
    objects = tuple(
        unit_box(f"crate{i}", transform=scale(*rng.uniform(0.2, 2.5, 3), t=(3.0 * i, 0.0, 0.0))) for i in range(60)
    )
    layout = lightmap_layout(Scene(objects), atlas_size=512, padding=padding, max_atlases=8)
    assert layout.atlas_count >= 2 and not layout.warnings
    for a in range(layout.atlas_count):
        rects = [e.rect for e in layout.entries if e.atlas == a]
        for x, y, w, h in rects:
            assert min(x, y) >= 0 and x + w <= 512 and y + h <= 512
        for i, (x0, y0, w0, h0) in enumerate(rects):
            for x1, y1, w1, h1 in rects[i + 1:]:
                apart_x = x0 + w0 + padding <= x1 or x1 + w1 + padding <= x0
                apart_y = y0 + h0 + padding <= y1 or y1 + h1 + padding <= y0
                assert apart_x or apart_y
    # and each object's texels stay inside its block
    texels = rasterize_texels(layout)
    rects = np.array([e.rect for e in layout.entries])[texels.object_index]
    assert ((texels.x >= rects[:, 0]) & (texels.x < rects[:, 0] + rects[:, 2])).all()
    assert ((texels.y >= rects[:, 1]) & (texels.y < rects[:, 1] + rects[:, 3])).all()
