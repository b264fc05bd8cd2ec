"""Scene features: what a scene holds, measured fast enough to run on every click.

numpy only (this runs inside Blender). Counts, bounds, material and light tallies are exact.
Per-triangle quantities (surface area, tiny triangles, emissive area, UV overlap) are exact for
objects up to ``AnalysisConfig.sample_triangles`` triangles and estimated from a fixed-seed
uniform sample of that many triangles above it; the estimate's relative standard error is
reported (``surface_area_rel_error``). Instanced geometry is measured once and reused.

Depth complexity is estimated without tracing rays: averaged over all directions, a surface
of area A projects to A/2 (the mean of |cos|), and a box of surface area B to B/4 (Cauchy), so
a random line through an object's bounding box crosses its surface 2·A/B times on average (a
closed box gives 2: in and out). Dense foliage and stacked thin layers score high.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.scene.model import Material, MeshObject, Scene, array_key
from engine.scene.wire import register

GLOSSY_ROUGHNESS = 0.25
GLOSSY_METALLIC = 0.5


@register
@dataclass(frozen=True)
class AnalysisConfig:
    """Knobs of the analysis. Defaults scale with the scene, so units do not matter."""

    sample_triangles: int = 32768
    tiny_edge_fraction: float = 1e-3  # a triangle is tiny below (fraction × scene diagonal)² / 2
    seed: int = 0x5EED


@register
@dataclass(frozen=True)
class ObjectFeatures:
    """What one object holds. Lengths and areas are in scene units (see Features.meters_per_unit)."""

    name: str
    triangles: int
    vertices: int
    instance_of: str | None
    animated: bool
    static: bool
    visible: bool
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    surface_area: float
    depth_complexity: float
    tiny_triangle_fraction: float
    alpha_cut_fraction: float
    transparent_fraction: float
    glossy_fraction: float
    emissive_fraction: float
    emissive_area: float
    uv_set: str | None
    has_lightmap_uv: bool
    uv_in_unit_square: bool
    uv_overlap: float | None
    sampled: bool

    @property
    def size(self) -> float:
        return float(np.linalg.norm(np.subtract(self.bbox_max, self.bbox_min)))

    @property
    def lightmap_ready(self) -> bool:
        """A UV set exists, lies in [0, 1] and barely overlaps itself (< 5 % of its area)."""
        return self.uv_set is not None and self.uv_in_unit_square and (self.uv_overlap or 0.0) < 0.05


@register
@dataclass(frozen=True)
class Features:
    """Scene-wide features plus one ObjectFeatures per object."""

    objects: tuple[ObjectFeatures, ...]
    triangles: int
    unique_triangles: int
    vertices: int
    object_count: int
    instanced_objects: int
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    bounding_size: float
    meters_per_unit: float | None
    unit_name: str
    surface_area: float
    surface_area_rel_error: float
    triangle_density: float
    tiny_triangle_fraction: float
    alpha_cut_fraction: float
    transparent_fraction: float
    glossy_fraction: float
    depth_complexity: float
    material_count: int
    alpha_cut_materials: int
    transparent_materials: int
    transmissive_materials: int
    emissive_materials: int
    texture_count: int
    texture_bytes: int
    light_count: int
    light_types: dict[str, int]
    light_power_watts: float
    sun_irradiance: float
    emissive_area: float
    emissive_objects: int
    animated_objects: int
    animated_fraction: float
    uv_objects: int
    lightmap_uv_objects: int
    lightmap_ready_objects: int
    sampled: bool
    warnings: tuple[str, ...] = field(default=())

    @property
    def bounding_size_m(self) -> float | None:
        """Bounding box diagonal in metres, when the unit is known."""
        return None if self.meters_per_unit is None else self.bounding_size * self.meters_per_unit

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (objects keyed by name)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "objects":
                continue
            out[name] = _jsonable(getattr(self, name))
        out["bounding_size_m"] = self.bounding_size_m
        out["objects"] = {
            obj.name: {**{k: _jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__ if k != "name"},
                       "lightmap_ready": obj.lightmap_ready}
            for obj in self.objects
        }
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 6) if np.isfinite(value) else None
    return value


@dataclass(frozen=True)
class _MaterialTable:
    alpha_cut: np.ndarray
    transparent: np.ndarray
    glossy: np.ndarray
    emissive: np.ndarray


def _material_table(materials: tuple[Material, ...]) -> _MaterialTable:
    return _MaterialTable(
        alpha_cut=np.array([m.is_alpha_cut for m in materials], dtype=bool),
        transparent=np.array([m.is_transparent for m in materials], dtype=bool),
        glossy=np.array(
            [m.metallic >= GLOSSY_METALLIC or m.roughness <= GLOSSY_ROUGHNESS for m in materials], dtype=bool
        ),
        emissive=np.array([m.is_emissive for m in materials], dtype=bool),
    )


def column_bounds(array: np.ndarray, block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per-column min and max of an (N, C) array.

    ``array.min(axis=0)`` on a narrow (N, 3) array reduces along a strided axis and runs
    ~20× slower than reducing (N/64, 64·C) rows, which vectorises; the tail is done apart.
    """
    n, c = array.shape
    whole = (n // block) * block
    if whole:
        rows = array[:whole].reshape(-1, block * c)
        lo = rows.min(axis=0).reshape(block, c).min(axis=0)
        hi = rows.max(axis=0).reshape(block, c).max(axis=0)
        if whole < n:
            lo = np.minimum(lo, array[whole:].min(axis=0))
            hi = np.maximum(hi, array[whole:].max(axis=0))
        return lo, hi
    return array.min(axis=0), array.max(axis=0)


def segment_bounds(arrays: list[np.ndarray], columns: int, big: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-column min and max of each (N_i, C) array in a list: two (len, C) arrays.

    Large arrays go through :func:`column_bounds`; the small ones are concatenated and reduced
    with one ``reduceat`` per bound, so a scene of many small objects costs a few numpy calls
    instead of a few per object. Empty arrays get zeros.
    """
    count = len(arrays)
    lo = np.zeros((count, columns))
    hi = np.zeros((count, columns))
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    small = np.flatnonzero((lengths > 0) & (lengths < big))
    for i in np.flatnonzero(lengths >= big):
        lo[i], hi[i] = column_bounds(arrays[i])
    if len(small):
        starts = np.concatenate([[0], np.cumsum(lengths[small])[:-1]])
        joined = np.concatenate([arrays[i] for i in small])
        lo[small] = np.minimum.reduceat(joined, starts, axis=0)
        hi[small] = np.maximum.reduceat(joined, starts, axis=0)
    return lo, hi


@dataclass
class _Geometries:
    """The unique meshes of a scene (instances share one) and the triangles measured on each."""

    meshes: list[MeshObject]
    object_geometry: np.ndarray  # (objects,) index into meshes
    populations: np.ndarray  # (G,) triangles of each mesh
    sizes: np.ndarray  # (G,) measured triangles of each mesh
    measured: list[np.ndarray]  # per mesh, indices of its measured triangles (ascending)
    local_min: np.ndarray  # (G, 3)
    local_max: np.ndarray  # (G, 3)
    uv_names: list[str | None]
    uv_in_unit_square: np.ndarray  # (G,) bool


def _geometries(scene: Scene, config: AnalysisConfig, rng: np.random.Generator) -> _Geometries:
    """Find the unique meshes, measure their bounds, and choose the triangles to measure.

    Meshes up to the scene-wide budget are measured whole. Above it each mesh gets a share
    of ``sample_triangles`` proportional to its size (at least 32 triangles), drawn by
    stratified sampling: one uniform draw in each of ``quota`` equal runs of its triangles,
    which never repeats a triangle and needs no per-mesh random calls.
    """
    by_key: dict[tuple, int] = {}
    meshes: list[MeshObject] = []
    uv_names: list[str | None] = []
    object_geometry = np.empty(len(scene.objects), dtype=np.int64)
    for i, obj in enumerate(scene.objects):
        uv_name = obj.lightmap_uv or next(iter(obj.uvs), None)
        key = (
            array_key(obj.positions),
            array_key(obj.triangles),
            array_key(obj.material_indices),
            None if uv_name is None else array_key(obj.uvs[uv_name]),
        )
        if key not in by_key:
            by_key[key] = len(meshes)
            meshes.append(obj)
            uv_names.append(uv_name)
        object_geometry[i] = by_key[key]

    populations = np.array([obj.n_triangles for obj in meshes], dtype=np.int64)
    total = int(populations.sum())
    budget = config.sample_triangles
    if total <= budget:
        sizes = populations.copy()
    else:
        sizes = np.maximum(np.minimum(populations, 32), np.round(budget * populations / total).astype(np.int64))
        sizes = np.minimum(sizes, populations)
    segment = np.repeat(np.arange(len(meshes)), sizes)
    rank = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    stride = populations[segment] / np.maximum(sizes[segment], 1)
    jitter = np.where(sizes[segment] < populations[segment], rng.random(len(segment)), 0.0)
    picks = np.minimum(((rank + jitter) * stride).astype(np.int64), populations[segment] - 1)
    measured = np.split(picks, np.cumsum(sizes)[:-1])

    local_min, local_max = segment_bounds([obj.positions for obj in meshes], 3)
    with_uv = [g for g, name in enumerate(uv_names) if name is not None]
    in_square = np.zeros(len(meshes), dtype=bool)
    if with_uv:
        uv_lo, uv_hi = segment_bounds([meshes[g].uvs[uv_names[g]] for g in with_uv], 2)  # type: ignore[index]
        in_square[with_uv] = (uv_lo >= -1e-4).all(axis=1) & (uv_hi <= 1.0 + 1e-4).all(axis=1)
        in_square &= populations > 0
    return _Geometries(meshes, object_geometry, populations, sizes, measured, local_min, local_max, uv_names,
                       in_square)


def _uv_overlap(
    uv_corners: np.ndarray, segment: np.ndarray, populations: np.ndarray, rng: np.random.Generator,
    max_pairs: int = 250_000,
) -> np.ndarray:
    """Estimated fraction of each UV layout's area that lies on top of other UV area of it.

    ``uv_corners`` (T, 3, 2) are the measured triangles of several layouts, ``segment`` (T,)
    says which layout each belongs to, ``populations`` how many triangles each layout really
    has. One random point is drawn inside each triangle; the area-weighted share of points
    that fall strictly inside another triangle of the same layout is the overlapping share.
    A layout without overlaps gives exactly 0 (no false positives from noise). When a layout's
    triangles are a sample, a covering triangle is in it with probability sampled/population,
    so the measured share is scaled up by population/sampled. Each layout gets its own uniform
    grid (about one triangle a cell) to find the candidate triangles of each point.
    """
    n_layouts = len(populations)
    count = len(uv_corners)
    if count == 0:
        return np.zeros(n_layouts)
    a, b, c = (uv_corners[:, k].astype(np.float64) for k in range(3))
    e1, e2 = b - a, c - a
    signed = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    areas = 0.5 * np.abs(signed)
    valid = areas > 0
    r1, r2 = rng.random(count), rng.random(count)
    flip = r1 + r2 > 1.0
    r1[flip], r2[flip] = 1.0 - r1[flip], 1.0 - r2[flip]
    points = a + e1 * r1[:, None] + e2 * r2[:, None]

    # per-layout grids, laid end to end in one cell index space
    measured_per_layout = np.bincount(segment, minlength=n_layouts)
    tmin = np.minimum(np.minimum(a, b), c)
    tmax = np.maximum(np.maximum(a, b), c)
    lo = np.full((n_layouts, 2), np.inf)
    hi = np.full((n_layouts, 2), -np.inf)
    np.minimum.at(lo, segment, tmin)
    np.maximum.at(hi, segment, tmax)
    lo, extent = lo[segment], np.maximum(hi - lo, 1e-12)[segment]
    # cells about the size of a typical triangle (geometric mean of the relative extents),
    # and no more cells than triangles, so that a triangle covers a few cells at most
    relative = np.maximum(((tmax - tmin) / extent).max(axis=1), 1e-6)
    typical = np.exp(np.bincount(segment, weights=np.log(relative), minlength=n_layouts)
                     / np.maximum(measured_per_layout, 1))
    cells = np.clip(np.minimum(np.sqrt(measured_per_layout), 1.0 / typical), 1, 512).astype(np.int64)
    cell_base = np.concatenate([[0], np.cumsum(cells * cells)])
    n = cells[segment]
    c0 = np.clip(((tmin - lo) / extent * n[:, None]).astype(np.int64), 0, n[:, None] - 1)
    c1 = np.clip(((tmax - lo) / extent * n[:, None]).astype(np.int64), 0, n[:, None] - 1)
    span = c1 - c0 + 1
    per_triangle = np.where(valid, span[:, 0] * span[:, 1], 0)
    # Cap the work per layout. Dropping coverers lowers the chance to detect an overlap by
    # the kept share (scaled back below, like sampling); dropping points just measures fewer.
    share_of_budget = max_pairs * measured_per_layout / count + 20_000
    entries = np.bincount(segment, weights=per_triangle, minlength=n_layouts)
    coverer_kept = np.minimum(1.0, share_of_budget / np.maximum(entries, 1.0))
    per_triangle = np.where(rng.random(count) < coverer_kept[segment], per_triangle, 0)
    owners = np.repeat(np.arange(count), per_triangle)
    local = np.arange(len(owners)) - np.repeat(np.cumsum(per_triangle) - per_triangle, per_triangle)
    width = span[owners, 1]
    entry_cell = (
        cell_base[segment[owners]] + (c0[owners, 0] + local // width) * n[owners] + c0[owners, 1] + local % width
    )
    order = np.argsort(entry_cell, kind="stable")
    entry_cell, entry_tri = entry_cell[order], owners[order]
    all_cells = np.arange(cell_base[-1])
    starts = np.searchsorted(entry_cell, all_cells, side="left")
    ends = np.searchsorted(entry_cell, all_cells, side="right")

    pc = np.clip(((points - lo) / extent * n[:, None]).astype(np.int64), 0, n[:, None] - 1)
    point_cell = cell_base[segment] + pc[:, 0] * n + pc[:, 1]
    lengths = np.where(valid, ends[point_cell] - starts[point_cell], 0)
    pairs = np.bincount(segment, weights=lengths, minlength=n_layouts)
    point_kept = np.minimum(1.0, share_of_budget / np.maximum(pairs, 1.0))
    valid = valid & (rng.random(count) < point_kept[segment])
    lengths = np.where(valid, lengths, 0)
    pair_point = np.repeat(np.arange(count), lengths)
    offsets = np.arange(len(pair_point)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    pair_tri = entry_tri[starts[point_cell[pair_point]] + offsets]
    other = pair_tri != pair_point
    pair_point, pair_tri = pair_point[other], pair_tri[other]
    # edge functions as rows (A, B, C): edge(q) = A·qx + B·qy + C, positive inside and
    # divided by twice the area so that the margin is relative to the triangle's size
    coefficients = np.empty((count, 3, 3))
    for k, (p0, p1) in enumerate(((a, b), (b, c), (c, a))):
        coefficients[:, k, 0] = p0[:, 1] - p1[:, 1]
        coefficients[:, k, 1] = p1[:, 0] - p0[:, 0]
        coefficients[:, k, 2] = -(coefficients[:, k, 0] * p0[:, 0] + coefficients[:, k, 1] * p0[:, 1])
    coefficients *= (np.sign(signed) / np.maximum(np.abs(signed), 1e-300))[:, None, None]
    gathered = coefficients[pair_tri]
    edges = np.einsum("pkj,pj->pk", gathered[:, :, :2], points[pair_point]) + gathered[:, :, 2]
    covered = np.zeros(count, dtype=bool)
    covered[pair_point[(edges > 1e-9).all(axis=1)]] = True

    weights = np.where(valid, areas, 0.0)
    measured_area = np.bincount(segment, weights=weights, minlength=n_layouts)
    covered_area = np.bincount(segment, weights=np.where(covered, weights, 0.0), minlength=n_layouts)
    share = np.divide(covered_area, measured_area, out=np.zeros(n_layouts), where=measured_area > 0)
    scale = populations / np.maximum(measured_per_layout, 1) / coverer_kept
    return np.minimum(1.0, share * scale)


def _box_area(extent: np.ndarray) -> np.ndarray:
    """Surface area of boxes with the given (..., 3) extents."""
    d = np.maximum(extent, 0.0)
    return 2.0 * (d[..., 0] * d[..., 1] + d[..., 1] * d[..., 2] + d[..., 0] * d[..., 2])


def analyze_scene(scene: Scene, config: AnalysisConfig | None = None) -> Features:
    """Measure a scene's features. Raises SceneError if it has no triangles.

    Work is batched over the whole scene: each unique geometry is measured once (exactly
    when small, from a share of a scene-wide triangle sample when large), and per-object
    figures come from segment sums scaled by each instance's transform.
    """
    config = config or AnalysisConfig()
    scene.require_content()
    rng = np.random.default_rng(config.seed)
    table = _material_table(scene.materials)
    n_materials = len(scene.materials)
    geo = _geometries(scene, config, rng)
    object_geometry, sizes = geo.object_geometry, geo.sizes
    n_geo = len(geo.meshes)

    # --- one pass over every measured triangle of every unique geometry -----------------
    populations = geo.populations.astype(np.float64)
    segment = np.repeat(np.arange(n_geo), sizes)
    measured_rows = [mesh.triangles[rows] for mesh, rows in zip(geo.meshes, geo.measured, strict=True)]
    corners = np.concatenate([mesh.positions[rows] for mesh, rows in zip(geo.meshes, measured_rows, strict=True)])
    materials = np.concatenate([mesh.material_indices[rows] for mesh, rows in zip(geo.meshes, geo.measured, strict=True)])
    local_cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).astype(np.float64)
    local_area = 0.5 * np.sqrt(np.einsum("ij,ij->i", local_cross, local_cross))
    area_sum = np.bincount(segment, weights=local_area, minlength=n_geo)
    area_sq_sum = np.bincount(segment, weights=local_area * local_area, minlength=n_geo)
    emissive_sum = np.bincount(segment, weights=np.where(table.emissive[materials], local_area, 0.0), minlength=n_geo)
    scale_up = populations / np.maximum(sizes, 1)  # measured → whole geometry
    # exact per-material triangle counts of every geometry, in one bincount
    if n_geo <= 64:  # few geometries: one bincount each, no index arithmetic over all triangles
        counts = np.stack([np.bincount(mesh.material_indices, minlength=n_materials) for mesh in geo.meshes])
    else:
        all_materials = np.concatenate([mesh.material_indices for mesh in geo.meshes])
        geometry_of_triangle = np.repeat(np.arange(n_geo), populations.astype(np.int64))
        counts = np.bincount(geometry_of_triangle * n_materials + all_materials, minlength=n_geo * n_materials)
        counts = counts.reshape(n_geo, n_materials)
    counts = counts.astype(np.float64)
    denominator = np.maximum(populations, 1.0)
    alpha_cut = counts[:, table.alpha_cut].sum(axis=1) / denominator
    transparent = counts[:, table.transparent].sum(axis=1) / denominator
    glossy = counts[:, table.glossy].sum(axis=1) / denominator
    emissive_fraction = counts[:, table.emissive].sum(axis=1) / denominator

    uv_geometries = [g for g in range(n_geo) if geo.uv_names[g] is not None and sizes[g]]
    overlap = np.full(n_geo, np.nan)
    if uv_geometries:
        uv_corners = np.concatenate(
            [geo.meshes[g].uvs[geo.uv_names[g]][measured_rows[g]] for g in uv_geometries]  # type: ignore[index]
        )
        uv_segment = np.repeat(np.arange(len(uv_geometries)), sizes[uv_geometries])
        overlap[uv_geometries] = _uv_overlap(uv_corners, uv_segment, populations[uv_geometries], rng)

    # --- per object: world bounds and the area scale of its transform --------------------
    transforms = np.stack([obj.transform for obj in scene.objects])
    linear = transforms[:, :3, :3]
    lows, highs = geo.local_min[object_geometry], geo.local_max[object_geometry]
    centre, half = (lows + highs) / 2, (highs - lows) / 2
    world_centre = np.einsum("oij,oj->oi", linear, centre) + transforms[:, :3, 3]
    world_half = np.einsum("oij,oj->oi", np.abs(linear), half)
    world_min, world_max = world_centre - world_half, world_centre + world_half
    scene_min, scene_max = world_min.min(axis=0), world_max.max(axis=0)
    diagonal = float(np.linalg.norm(scene_max - scene_min))
    tiny_area = 0.5 * (config.tiny_edge_fraction * diagonal) ** 2

    gram = np.einsum("oij,okj->oik", linear, linear)
    area_scale = gram[:, 0, 0]  # s² for rotation × uniform scale s
    uniform = np.all(np.abs(gram - area_scale[:, None, None] * np.eye(3)) <= 1e-9 * area_scale[:, None, None], axis=(1, 2))
    geometry_start = np.concatenate([[0], np.cumsum(sizes)])
    # areas sorted within each geometry, for counting tiny triangles by binary search
    sorted_area = local_area[np.lexsort((local_area, segment))]

    object_area = area_sum[object_geometry] * area_scale * scale_up[object_geometry]
    object_emissive = emissive_sum[object_geometry] * area_scale * scale_up[object_geometry]
    object_tiny = np.zeros(len(scene.objects))
    # tiny triangles: one binary search per distinct (geometry, scale), shared by its instances
    pairs, inverse = np.unique(np.stack([object_geometry, area_scale]), axis=1, return_inverse=True)
    fractions = np.zeros(pairs.shape[1])
    for k, (g_value, scale) in enumerate(pairs.T):
        g = int(g_value)
        lo_g, hi_g = geometry_start[g], geometry_start[g + 1]
        if hi_g > lo_g:
            fractions[k] = np.searchsorted(sorted_area[lo_g:hi_g], tiny_area / scale) / (hi_g - lo_g)
    object_tiny[:] = fractions[inverse.ravel()]
    for i in np.flatnonzero(~uniform):
        g = object_geometry[i]
        lo_g, hi_g = geometry_start[g], geometry_start[g + 1]
        if hi_g == lo_g:
            continue
        # non-uniform scale: cross products map by the cofactor matrix det(M)·M^-T
        cofactor = np.linalg.det(linear[i]) * np.linalg.inv(linear[i]).T
        world = local_cross[lo_g:hi_g] @ cofactor.T
        world_area = 0.5 * np.sqrt(np.einsum("ij,ij->i", world, world))
        object_area[i] = world_area.sum() * scale_up[g]
        object_emissive[i] = world_area[table.emissive[materials[lo_g:hi_g]]].sum() * scale_up[g]
        object_tiny[i] = float((world_area < tiny_area).mean())

    # standard error of the sampled area: instances of a geometry share its sampling error
    sampled = sizes < populations
    variance_local = np.where(
        sampled & (sizes > 1),
        populations**2 * (area_sq_sum / np.maximum(sizes, 1) - (area_sum / np.maximum(sizes, 1)) ** 2)
        / np.maximum(sizes, 1) * (1 - sizes / np.maximum(populations, 1)),
        0.0,
    )
    instance_scale = np.bincount(object_geometry, weights=np.abs(np.linalg.det(linear)) ** (2 / 3), minlength=n_geo)
    area_variance = float((variance_local * instance_scale**2).sum())

    depth = 2.0 * object_area / np.maximum(_box_area(world_max - world_min), 1e-30)
    objects = [
        ObjectFeatures(
            name=obj.name,
            triangles=obj.n_triangles,
            vertices=obj.n_vertices,
            instance_of=obj.instance_of,
            animated=obj.animated,
            static=obj.static,
            visible=obj.visible,
            bbox_min=tuple(world_min[i].tolist()),
            bbox_max=tuple(world_max[i].tolist()),
            surface_area=float(object_area[i]),
            depth_complexity=float(depth[i]),
            tiny_triangle_fraction=float(object_tiny[i]),
            alpha_cut_fraction=float(alpha_cut[g]),
            transparent_fraction=float(transparent[g]),
            glossy_fraction=float(glossy[g]),
            emissive_fraction=float(emissive_fraction[g]),
            emissive_area=float(object_emissive[i]),
            uv_set=geo.uv_names[g],
            has_lightmap_uv=obj.lightmap_uv is not None,
            uv_in_unit_square=bool(geo.uv_in_unit_square[g]),
            uv_overlap=None if np.isnan(overlap[g]) else float(overlap[g]),
            sampled=bool(sampled[g]),
        )
        for i, (obj, g) in enumerate(zip(scene.objects, object_geometry, strict=True))
    ]
    return _summarise(scene, objects, scene_min, scene_max, diagonal, area_variance, bool(sampled.any()), table)


def _summarise(
    scene: Scene,
    objects: list[ObjectFeatures],
    scene_min: np.ndarray,
    scene_max: np.ndarray,
    diagonal: float,
    area_variance: float,
    any_sampled: bool,
    table: _MaterialTable,
) -> Features:
    visible = [o for o in objects if o.visible]
    triangles = sum(o.triangles for o in objects)
    seen: set[str] = set()
    unique = 0
    for obj in objects:
        if obj.instance_of is None or obj.instance_of not in seen:
            unique += obj.triangles
        if obj.instance_of is not None:
            seen.add(obj.instance_of)
    weights = np.array([o.triangles for o in objects], dtype=np.float64)
    total = max(weights.sum(), 1.0)

    def weighted(attr: str) -> float:
        return float(np.dot(weights, [getattr(o, attr) for o in objects]) / total)

    surface_area = sum(o.surface_area for o in objects)
    visible_area = sum(o.surface_area for o in visible)
    textures: dict[int, int] = {}
    for material in scene.materials:
        texture = material.base_color_texture
        if texture is not None:
            textures[id(texture)] = texture.nbytes
    light_types: dict[str, int] = {}
    for light in scene.lights:
        light_types[light.kind] = light_types.get(light.kind, 0) + 1
    return Features(
        objects=tuple(objects),
        triangles=triangles,
        unique_triangles=unique,
        vertices=sum(o.vertices for o in objects),
        object_count=len(objects),
        instanced_objects=sum(o.instance_of is not None for o in objects),
        bbox_min=tuple(float(v) for v in scene_min),
        bbox_max=tuple(float(v) for v in scene_max),
        bounding_size=diagonal,
        meters_per_unit=scene.meters_per_unit,
        unit_name=scene.unit_name,
        surface_area=surface_area,
        surface_area_rel_error=float(np.sqrt(area_variance) / surface_area) if surface_area > 0 else 0.0,
        triangle_density=triangles / surface_area if surface_area > 0 else 0.0,
        tiny_triangle_fraction=weighted("tiny_triangle_fraction"),
        alpha_cut_fraction=weighted("alpha_cut_fraction"),
        transparent_fraction=weighted("transparent_fraction"),
        glossy_fraction=weighted("glossy_fraction"),
        depth_complexity=2.0 * visible_area / max(float(_box_area(scene_max - scene_min)), 1e-30),
        material_count=len(scene.materials),
        alpha_cut_materials=int(table.alpha_cut.sum()),
        transparent_materials=sum(m.alpha_mode == "BLEND" for m in scene.materials),
        transmissive_materials=sum(m.transmission > 0 for m in scene.materials),
        emissive_materials=int(table.emissive.sum()),
        texture_count=len(textures),
        # GPU memory of the textures with a full mip chain (4/3 of the base level)
        texture_bytes=int(sum(textures.values()) * 4 // 3),
        light_count=len(scene.lights),
        light_types=light_types,
        light_power_watts=float(sum(light.power for light in scene.lights if light.kind != "sun")),
        sun_irradiance=float(sum(light.power for light in scene.lights if light.kind == "sun")),
        emissive_area=float(sum(o.emissive_area for o in objects)),
        emissive_objects=sum(o.emissive_fraction > 0 for o in objects),
        animated_objects=sum(o.animated for o in objects),
        animated_fraction=float(sum(o.triangles for o in objects if o.animated) / total),
        uv_objects=sum(o.uv_set is not None for o in objects),
        lightmap_uv_objects=sum(o.has_lightmap_uv for o in objects),
        lightmap_ready_objects=sum(o.lightmap_ready for o in objects),
        sampled=any_sampled,
        warnings=scene.warnings,
    )
