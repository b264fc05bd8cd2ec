"""Lightmap UV layouts: one or more square atlases, each baked object in one of them.

:func:`lightmap_layout` gives every bakeable object a lightmap UV in [0, 1] of one atlas:

* An object keeps its own lightmap UV (``MeshObject.lightmap_uv``) when it is valid: inside
  [0, 1], not degenerate (no more than 1 % of the surface on zero-UV-area triangles) and not
  overlapping itself (below 1 % of the covered texels are covered twice, counted by
  rasterising texel centres with a fill rule at the atlas resolution, so shared edges are not
  overlaps). The layout is kept as drawn and only scaled and moved into its atlas (like
  Unity's lightmap scale/offset), at the scale that gives the layout's mean texel density.
* Otherwise xatlas generates one from the world-scaled positions (metres), so texel density is
  uniform in world space. xatlas may split vertices along chart seams: the entry keeps the new
  vertex arrays and ``vmapping`` to the object's original vertices. Triangle ``i`` of an entry
  is always triangle ``i`` of the object (xatlas keeps the order), so per-triangle data
  (materials) stays valid.

Each object is laid out on its own (xatlas with ``resolution=0`` packs its charts into one
rectangle of texels) and the rectangles are then packed into atlases (skyline, bottom-left),
``padding`` texels apart, so that an object never spans two atlases: one material per atlas is
enough to reference the lightmap in glTF and in game engines.

Texel density (``texels_per_metre``), when not given:

    T = clamp(A · D², FILL · S² / 4, FILL · N · S²)        texels wanted
    texels_per_metre = sqrt(T / A)

with A the total world surface area of the baked objects in m² (scene units × ``meters_per_unit``,
or the scene's own unit when that is None), D = :data:`PREFERRED_TEXELS_PER_METRE` (40, Unity's
default lightmap resolution), S = ``atlas_size``, N = ``max_atlases`` and FILL = 0.6 (the share of
an atlas that charts fill after padding and packing losses). Small scenes get at least a quarter
atlas of texels, large ones no more than N atlases can hold. T depends only on areas in metres,
so the same scene in millimetres and in metres gets the same texel count.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError
from engine.scene.model import MeshObject, Scene, array_key

log = logging.getLogger(__name__)

ATLAS_SIZES = (512, 1024, 2048, 4096, 8192)
PREFERRED_TEXELS_PER_METRE = 40.0
FILL = 0.6
#: Memory budget of the atlases: size² × atlases × 16 bytes (RGBA float32) × 4 buffers.
MEMORY_LIMIT_BYTES = 4 << 30
BYTES_PER_TEXEL = 16 * 4
#: A user UV is rejected when this share of its texels is covered twice (or of its surface has no UV area).
OVERLAP_LIMIT = 0.01
DEGENERATE_LIMIT = 0.01
#: Resolution of the coverage grid used to check user UVs for overlaps (capped for speed).
OVERLAP_GRID_MAX = 2048


@dataclass(frozen=True, eq=False)
class LightmapEntry:
    """One baked object's place in the layout.

    ``positions`` (K, 3) float32 are world space in scene units, ``normals`` (K, 3) float32
    world space unit vectors or None when the object has none, ``uv`` (K, 2) float32 the
    lightmap UV in [0, 1] of atlas ``atlas`` (V up), ``triangles`` (T, 3) int32 index them and
    are the object's triangles in its order, ``vmapping`` (K,) int32 maps each vertex to the
    object's original vertex. ``generated`` says whether xatlas made the UV; ``reason`` why.
    ``rect`` is the (x, y, width, height) block of texels it occupies (y from the top) and
    ``texels_per_metre`` the density it got (the layout's, unless it had to shrink to fit).
    ``mirrored`` is True when the object's transform has a negative determinant: its front
    faces then wind clockwise in world space (glTF's rule), so geometric normals flip.
    """

    name: str
    object_index: int
    atlas: int
    positions: np.ndarray
    normals: np.ndarray | None
    uv: np.ndarray
    triangles: np.ndarray
    vmapping: np.ndarray
    generated: bool
    reason: str
    rect: tuple[int, int, int, int]
    texels_per_metre: float
    mirrored: bool = False

    def __post_init__(self) -> None:
        for name in ("positions", "normals", "uv", "triangles", "vmapping"):
            array = getattr(self, name)
            if array is not None and array.flags.writeable:
                view = array.view()
                view.flags.writeable = False  # a built layout cannot change under a later stage
                object.__setattr__(self, name, view)

    @property
    def n_vertices(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_triangles(self) -> int:
        return int(self.triangles.shape[0])


@dataclass(frozen=True, eq=False)
class LightmapLayout:
    """Where each baked object lies in the lightmap atlases (``atlas_count`` squares of ``atlas_size``)."""

    atlas_size: int
    atlas_count: int
    texels_per_metre: float
    entries: tuple[LightmapEntry, ...]
    warnings: tuple[str, ...] = ()
    meters_per_unit: float = 1.0

    def entry(self, name: str) -> LightmapEntry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    @property
    def memory_bytes(self) -> int:
        """Bytes the bake's buffers need: size² × atlases × 16 bytes × 4 buffers."""
        return self.atlas_size**2 * self.atlas_count * BYTES_PER_TEXEL


# --------------------------------------------------------------------------------------------
# geometry helpers


def _world_normals(obj: MeshObject) -> np.ndarray | None:
    if obj.normals is None:
        return None
    linear = obj.transform[:3, :3]
    normals = obj.normals.astype(np.float64) @ np.linalg.inv(linear)  # n' = M^-T n, rows
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 1e-12, normals / np.where(length > 1e-12, length, 1.0), (0.0, 0.0, 1.0))
    return normals.astype(np.float32)


def _triangle_areas(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    p = positions.astype(np.float64)[triangles]
    return 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)


def _uv_areas(uv: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    c = uv.astype(np.float64)[triangles]
    e1, e2 = c[:, 1] - c[:, 0], c[:, 2] - c[:, 0]
    return 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def _is_bakeable(obj: MeshObject) -> bool:
    return obj.visible and obj.static and not obj.animated and obj.n_triangles > 0


def check_lightmap_uv(uv: np.ndarray, triangles: np.ndarray, world_areas: np.ndarray, *,
                      grid: int = 1024) -> str | None:
    """Why a user lightmap UV cannot be used (None when it can): outside [0, 1], degenerate, overlapping.

    Overlap is counted on a ``grid``² raster of texel centres (fill rule: shared edges are
    not overlaps); more than 1 % of the covered texels covered twice is an overlap.
    """
    from engine.bake.texels import coverage_counts

    if len(triangles) == 0:
        return "it has no triangles"
    used = uv[np.unique(triangles)]
    low, high = float(used.min()), float(used.max())
    if low < -1e-4 or high > 1.0 + 1e-4:
        return f"it leaves [0, 1] (UVs span {low:.3g} to {high:.3g})"
    uv_area = _uv_areas(uv, triangles)
    total_world = float(world_areas.sum())
    if uv_area.sum() <= 1e-12:
        return "it is degenerate (zero UV area)"
    flat = uv_area <= 1e-12 * max(float(uv_area.max()), 1e-30)
    flat_share = float(world_areas[flat].sum()) / total_world if total_world > 0 else float(flat.mean())
    if flat_share > DEGENERATE_LIMIT:
        return f"it is degenerate: {flat_share:.0%} of the surface has zero UV area"
    counts = coverage_counts(np.clip(uv, 0.0, 1.0), triangles, grid)
    covered = int(np.count_nonzero(counts))
    twice = int(np.count_nonzero(counts >= 2))
    if covered and twice / covered > OVERLAP_LIMIT:
        return f"it overlaps itself ({twice / covered:.1%} of its texels are covered more than once)"
    return None


# --------------------------------------------------------------------------------------------
# packing


class _Skyline:
    """Bottom-left skyline packer for one square atlas (y grows downwards, from the top row)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.segments: list[list[int]] = [[0, 0, size]]  # x, height used, width

    def _fit(self, index: int, width: int, height: int) -> int | None:
        x = self.segments[index][0]
        if x + width > self.size:
            return None
        top, remaining, i = 0, width, index
        while remaining > 0:
            if i >= len(self.segments):
                return None
            top = max(top, self.segments[i][1])
            if top + height > self.size:
                return None
            remaining -= self.segments[i][2]
            i += 1
        return top

    def insert(self, width: int, height: int) -> tuple[int, int] | None:
        best: tuple[int, int, int] | None = None  # (bottom, x, index)
        for i in range(len(self.segments)):
            top = self._fit(i, width, height)
            if top is not None and (best is None or (top + height, self.segments[i][0]) < best[:2]):
                best = (top + height, self.segments[i][0], i)
        if best is None:
            return None
        bottom, x, index = best
        y = bottom - height
        self.segments.insert(index, [x, bottom, width])
        i = index + 1
        while i < len(self.segments):  # trim the segments the new one shadows
            seg = self.segments[i]
            prev_end = self.segments[i - 1][0] + self.segments[i - 1][2]
            if seg[0] >= prev_end:
                break
            shrink = prev_end - seg[0]
            seg[0] += shrink
            seg[2] -= shrink
            if seg[2] > 0:
                break
            del self.segments[i]
        merged: list[list[int]] = []
        for seg in self.segments:
            if merged and merged[-1][1] == seg[1]:
                merged[-1][2] += seg[2]
            else:
                merged.append(seg)
        self.segments = merged
        return x, y


def _pack(sizes: list[tuple[int, int]], atlas_size: int, padding: int, max_atlases: int
          ) -> list[tuple[int, int, int]] | None:
    """(atlas, x, y) for each (width, height) block, ``padding`` texels apart; None if they do not fit."""
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i][1], -sizes[i][0], i))
    atlases: list[_Skyline] = []
    places: list[tuple[int, int, int] | None] = [None] * len(sizes)
    for i in order:
        w, h = sizes[i]
        cell = (min(w + padding, atlas_size), min(h + padding, atlas_size))
        for a, skyline in enumerate(atlases):
            spot = skyline.insert(*cell)
            if spot is not None:
                places[i] = (a, *spot)
                break
        else:
            if len(atlases) == max_atlases:
                return None
            atlases.append(_Skyline(atlas_size))
            spot = atlases[-1].insert(*cell)
            if spot is None:
                return None
            places[i] = (len(atlases) - 1, *spot)
    return places  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# per-object charts


@dataclass
class _Charts:
    """One object's lightmap UV in local texel coordinates (x right, y down) of a width × height block."""

    texel_xy: np.ndarray  # (K, 2) float64
    triangles: np.ndarray  # (T, 3) int32
    vmapping: np.ndarray  # (K,) int32
    width: int
    height: int
    density: float  # texels per metre


def _xatlas_charts(positions_m: np.ndarray, triangles: np.ndarray, normals: np.ndarray | None,
                   density: float, padding: int) -> _Charts:
    import xatlas

    atlas = xatlas.Atlas()
    if normals is not None:
        atlas.add_mesh(np.ascontiguousarray(positions_m, np.float32), np.ascontiguousarray(triangles, np.uint32),
                       np.ascontiguousarray(normals, np.float32))
    else:
        atlas.add_mesh(np.ascontiguousarray(positions_m, np.float32), np.ascontiguousarray(triangles, np.uint32))
    chart_options = xatlas.ChartOptions()
    pack_options = xatlas.PackOptions()
    pack_options.padding = int(padding)  # xatlas defaults to 0: charts would touch
    pack_options.resolution = 0  # one block sized by the density (we pack the blocks ourselves)
    pack_options.texels_per_unit = float(density)
    pack_options.bilinear = True
    pack_options.create_image = False
    atlas.generate(chart_options, pack_options)
    vmapping, indices, uvs = atlas[0]
    width, height = int(atlas.width), int(atlas.height)
    texel_xy = uvs.astype(np.float64) * (width, height)
    return _Charts(texel_xy, indices.astype(np.int32), vmapping.astype(np.int32), width, height, density)


def _user_charts(uv: np.ndarray, triangles: np.ndarray, world_area_m2: float, density: float) -> _Charts:
    used = np.unique(triangles)
    low = uv[used].min(axis=0).astype(np.float64)
    high = uv[used].max(axis=0).astype(np.float64)
    uv_area = float(_uv_areas(uv, triangles).sum())
    scale = density * math.sqrt(world_area_m2 / uv_area)  # texels per UV unit: the mean density matches
    texel_xy = np.empty((len(uv), 2))
    texel_xy[:, 0] = (uv[:, 0] - low[0]) * scale + 0.5
    texel_xy[:, 1] = (high[1] - uv[:, 1]) * scale + 0.5
    width = max(1, math.ceil((high[0] - low[0]) * scale + 1.0))
    height = max(1, math.ceil((high[1] - low[1]) * scale + 1.0))
    return _Charts(texel_xy, triangles.astype(np.int32), np.arange(len(uv), dtype=np.int32), width, height, density)


# --------------------------------------------------------------------------------------------
# the layout


def _check_options(atlas_size: Any, padding: Any, max_atlases: Any, texels_per_metre: Any) -> None:
    where = "lightmap layout"
    if isinstance(atlas_size, bool) or not isinstance(atlas_size, (int, np.integer)) or atlas_size not in ATLAS_SIZES:
        raise ConfigError(f"atlas_size {atlas_size!r} is not supported", where=where,
                          hint=f"use one of {', '.join(map(str, ATLAS_SIZES))}")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or not 0 <= padding <= 64:
        raise ConfigError(f"padding {padding!r} must be a whole number of texels in 0..64", where=where)
    if isinstance(max_atlases, bool) or not isinstance(max_atlases, (int, np.integer)) or max_atlases < 1:
        raise ConfigError(f"max_atlases {max_atlases!r} must be a positive whole number", where=where)
    if texels_per_metre is not None:
        try:
            value = float(texels_per_metre)
        except (TypeError, ValueError):
            value = float("nan")
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"texels_per_metre {texels_per_metre!r} must be a positive number", where=where)


def _memory_error(atlas_size: int, atlases: int, limit: int, what: str) -> ConfigError:
    need = atlas_size**2 * atlases * BYTES_PER_TEXEL
    return ConfigError(
        f"{what} {atlases} atlas{'es' if atlases != 1 else ''} of {atlas_size}² texels, whose bake buffers "
        f"need {need / 2**30:.1f} GiB ({atlas_size}² × {atlases} × 16 bytes × 4 buffers), above the "
        f"{limit / 2**30:.1f} GiB limit",
        where="lightmap layout",
        hint="lower atlas_size, max_atlases or texels_per_metre",
    )


def default_texels_per_metre(area_m2: float, atlas_size: int, max_atlases: int) -> float:
    """The density formula of the module docstring: texels per metre for ``area_m2`` of surface."""
    if area_m2 <= 0:
        return PREFERRED_TEXELS_PER_METRE
    wanted = area_m2 * PREFERRED_TEXELS_PER_METRE**2
    texels = min(max(wanted, FILL * atlas_size**2 / 4), FILL * max_atlases * atlas_size**2)
    return math.sqrt(texels / area_m2)


def lightmap_layout(
    scene: Scene,
    objects: Sequence[str] | None = None,
    *,
    texels_per_metre: float | None = None,
    atlas_size: int = 1024,
    padding: int = 2,
    max_atlases: int = 8,
    memory_limit: int = MEMORY_LIMIT_BYTES,
) -> LightmapLayout:
    """Lay out lightmap UVs for ``objects`` (names; default: every static, visible object with triangles).

    Keeps each object's valid lightmap UV, generates one with xatlas otherwise (warning when a
    user UV was rejected), picks the texel density (see the module docstring) and packs the
    objects into at most ``max_atlases`` atlases of ``atlas_size``² texels, ``padding`` texels
    apart. Raises InputError when nothing can be baked, ConfigError for bad options, for a
    layout that does not fit ``max_atlases`` or whose buffers exceed ``memory_limit`` bytes.
    """
    _check_options(atlas_size, padding, max_atlases, texels_per_metre)
    atlas_size, padding, max_atlases = int(atlas_size), int(padding), int(max_atlases)
    where = scene.source or f"scene '{scene.name}'"
    warnings: list[str] = []

    if objects is None:
        chosen = [i for i, obj in enumerate(scene.objects) if _is_bakeable(obj)]
    else:
        objects = [objects] if isinstance(objects, str) else list(objects)
        names = {obj.name: i for i, obj in enumerate(scene.objects)}
        unknown = [n for n in objects if n not in names]
        if unknown:
            raise InputError(f"no object named {', '.join(repr(n) for n in unknown)} to bake", where=where,
                             hint=f"the scene has: {', '.join(list(names)[:20]) or 'no objects'}")
        chosen = []
        for n in dict.fromkeys(objects):
            obj = scene.objects[names[n]]
            if _is_bakeable(obj):
                chosen.append(names[n])
            else:
                why = ("it has no triangles" if obj.n_triangles == 0 else "it is hidden" if not obj.visible
                       else "it is animated (not static)")
                warnings.append(f"object '{n}' is not baked: {why}")
    mpu = scene.meters_per_unit or 1.0

    # world geometry and areas of each chosen object
    world: dict[int, np.ndarray] = {}
    areas: dict[int, np.ndarray] = {}
    for i in chosen:
        obj = scene.objects[i]
        world[i] = obj.world_positions()
        areas[i] = _triangle_areas(world[i], obj.triangles) * mpu**2
    flat = [i for i in chosen if areas[i].sum() <= 0]
    for i in flat:
        warnings.append(f"object '{scene.objects[i].name}' is not baked: its triangles have no area")
    chosen = [i for i in chosen if i not in flat]
    if not chosen:
        raise InputError("the scene has no bakeable objects (static, visible, with triangles of some area)",
                         where=where, hint="mark objects static and visible, or route the scene to splatting")

    total_area = float(sum(areas[i].sum() for i in chosen))
    explicit = texels_per_metre is not None
    density = float(texels_per_metre) if explicit else default_texels_per_metre(total_area, atlas_size, max_atlases)

    # an early answer for layouts that cannot fit, before any chart is computed
    wanted = total_area * density**2
    if wanted > max_atlases * atlas_size**2:
        raise ConfigError(
            f"{total_area:.4g} m² of surface at {density:.4g} texels/m needs {wanted:,.0f} texels, more than "
            f"{max_atlases} atlas{'es' if max_atlases != 1 else ''} of {atlas_size}² hold",
            where="lightmap layout", hint="lower texels_per_metre, or raise atlas_size or max_atlases")
    estimate = min(max_atlases, max(1, math.ceil(wanted / (FILL * atlas_size**2))))
    if atlas_size**2 * estimate * BYTES_PER_TEXEL > memory_limit:
        raise _memory_error(atlas_size, estimate, memory_limit, "the layout would use about")

    # user UVs: keep the valid ones
    grid = min(atlas_size, OVERLAP_GRID_MAX)
    keep: dict[int, str] = {}
    reasons: dict[int, str] = {}
    checked: dict[tuple[Any, ...], str | None] = {}
    for i in chosen:
        obj = scene.objects[i]
        if obj.lightmap_uv is None:
            reasons[i] = "no lightmap UV: generated with xatlas"
            continue
        uv = obj.uvs[obj.lightmap_uv]
        key = (array_key(uv), array_key(obj.triangles))
        if key not in checked:
            checked[key] = check_lightmap_uv(uv, obj.triangles, areas[i], grid=grid)
        problem = checked[key]
        if problem is None:
            keep[i] = obj.lightmap_uv
            reasons[i] = f"kept its lightmap UV '{obj.lightmap_uv}'"
        else:
            reasons[i] = f"lightmap UV '{obj.lightmap_uv}' rejected: {problem}; a new lightmap UV was generated"
            warnings.append(f"object '{obj.name}': {reasons[i]}")

    # charts of every object, shrinking the density until the blocks pack
    cache: dict[tuple[Any, ...], _Charts] = {}
    limit = atlas_size - padding

    def charts_of(i: int, d: float) -> _Charts:
        obj = scene.objects[i]
        if i in keep:
            return _user_charts(obj.uvs[keep[i]], obj.triangles, float(areas[i].sum()), d)
        linear = obj.transform[:3, :3]
        key = (array_key(obj.positions), array_key(obj.triangles), linear.tobytes(), d)
        if key not in cache:  # instances with the same linear transform share their charts
            local = (obj.positions.astype(np.float64) @ linear.T) * mpu
            cache[key] = _xatlas_charts(local, obj.triangles, _world_normals(obj), d, padding)
        return cache[key]

    def fitted(i: int, d: float) -> _Charts:
        charts = charts_of(i, d)
        for _ in range(6):  # an object larger than one atlas gets a lower density of its own
            extent = max(charts.width, charts.height)
            if extent <= limit:
                return charts
            d_i = charts.density * 0.97 * limit / extent
            charts = charts_of(i, d_i)
        if max(charts.width, charts.height) > limit:
            raise ConfigError(f"object '{scene.objects[i].name}' does not fit one {atlas_size}² atlas",
                              where="lightmap layout", hint="raise atlas_size or lower texels_per_metre")
        return charts

    for _attempt in range(8):
        blocks = {i: fitted(i, density) for i in chosen}
        sizes = [(blocks[i].width, blocks[i].height) for i in chosen]
        used = sum((w + padding) * (h + padding) for w, h in sizes)
        capacity = max_atlases * atlas_size**2
        places = _pack(sizes, atlas_size, padding, max_atlases) if used <= capacity else None
        if places is not None:
            break
        if explicit:
            raise ConfigError(
                f"at {density:.4g} texels/m the objects need {used:,} texels, which do not pack into "
                f"{max_atlases} atlas{'es' if max_atlases != 1 else ''} of {atlas_size}²",
                where="lightmap layout", hint="lower texels_per_metre, or raise atlas_size or max_atlases")
        shrink = min(0.9, math.sqrt(0.85 * capacity / used)) if used > capacity else 0.9
        log.info("lightmap blocks do not pack at %.4g texels/m; retrying at %.4g", density, density * shrink)
        density *= shrink
    else:  # pragma: no cover - the density shrinks geometrically, so this needs absurd input
        raise ConfigError("the lightmap blocks do not pack into the atlases", where="lightmap layout",
                          hint="raise atlas_size or max_atlases")

    atlas_count = 1 + max(p[0] for p in places)
    if atlas_size**2 * atlas_count * BYTES_PER_TEXEL > memory_limit:
        raise _memory_error(atlas_size, atlas_count, memory_limit, "the layout uses")

    entries = []
    for i, place in zip(chosen, places, strict=True):
        obj = scene.objects[i]
        charts = blocks[i]
        a, x, y = place
        vmapping = charts.vmapping
        uv = np.empty((len(vmapping), 2), np.float32)
        uv[:, 0] = (x + charts.texel_xy[:, 0]) / atlas_size
        uv[:, 1] = 1.0 - (y + charts.texel_xy[:, 1]) / atlas_size
        np.clip(uv, 0.0, 1.0, out=uv)  # only vertices no triangle uses can stray outside
        normals = _world_normals(obj)
        if charts.density < density * 0.999:
            warnings.append(f"object '{obj.name}' is larger than one {atlas_size}² atlas at {density:.4g} texels/m: "
                            f"it gets {charts.density:.4g} texels/m (raise atlas_size for more)")
        entries.append(LightmapEntry(
            name=obj.name,
            object_index=i,
            atlas=int(a),
            positions=np.ascontiguousarray(world[i][vmapping], np.float32),
            normals=None if normals is None else np.ascontiguousarray(normals[vmapping]),
            uv=uv,
            triangles=np.ascontiguousarray(charts.triangles, np.int32),
            vmapping=np.ascontiguousarray(vmapping, np.int32),
            generated=i not in keep,
            reason=reasons[i],
            rect=(int(x), int(y), int(charts.width), int(charts.height)),
            texels_per_metre=float(charts.density),
            mirrored=bool(np.linalg.det(obj.transform[:3, :3]) < 0),
        ))
    for w in warnings:
        log.warning("%s", w)
    return LightmapLayout(
        atlas_size=atlas_size,
        atlas_count=int(atlas_count),
        texels_per_metre=float(density),
        entries=tuple(entries),
        warnings=tuple(warnings),
        meters_per_unit=float(mpu),
    )
