"""Initial Gaussians for splat training: from the scene's surfaces, or random in a box.

From the mesh (:func:`init_from_mesh`)
    * Positions: area-weighted samples on the world triangles of the visible, non-animated
      objects (:func:`engine.bake.integrate.scene_triangles`; ``include`` restricts them to
      named objects). Triangles are picked by systematic sampling of the cumulative area (one
      random offset, then equal steps), so every triangle gets its area's share of the samples
      up to one; the point in the triangle is uniform (folded barycentric coordinates). Units
      are the Scene's world units (scene units, not necessarily metres).
    * Alpha: the sample's alpha is base colour alpha × texture alpha. Samples of MASK materials
      that land in a hole (alpha below the cutoff) are dropped and drawn again (in a few
      vectorised rounds); BLEND materials scale the opacity by alpha.
    * Colours: linear RGB in [0, 1] = material base colour × base colour texture (sRGB texels
      decoded to linear; bilinear, repeating, at the interpolated first UV set; UV V runs up
      and texture row 0 is the image's top, as in :mod:`engine.scene.model` and the baker), plus
      the material's emission (clipped to 1). ``GaussianInit.colors_srgb`` gives them sRGB
      encoded, for a trainer whose targets are sRGB (SH DC = (c − 0.5) / C0).
    * Scales (activated, not log): tangential ``σ = NEIGHBOUR_SCALE ×`` the RMS distance to the
      ``NEIGHBOURS`` (3) nearest samples (as the 3DGS paper's initialisation), clamped to
      [0.2, 2] × the nominal spacing sqrt(total area / count); along the normal ``flatten × σ``.
      Nearest neighbours come from a uniform grid hash (cells of 2 × the nominal spacing, the
      27 surrounding cells searched; numpy only), exact within one cell size.
    * Rotations: wxyz unit quaternions turning local +Z onto the triangle's geometric normal
      (counter-clockwise winding = front), so each Gaussian is a disc lying in its surface.
    * Opacities: ``opacity`` (0.7), times alpha for BLEND materials.

Random (:func:`init_random`), as in the 3DGS paper's synthetic scenes: uniform positions in
the box, isotropic scales from the nearest-neighbour spacing, uniform random colours, identity
rotations, opacity 0.1, zero normals (unknown).

numpy only: the trainer turns the arrays into tensors (and scales to log, opacities to logits).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import ConfigError, InputError
from engine.splat.rig import check_bounds

if TYPE_CHECKING:
    from engine.scene.model import Scene, Texture

log = logging.getLogger(__name__)

#: Tangential scale = this × the RMS distance to the nearest samples.
NEIGHBOUR_SCALE = 1.0
#: How many nearest samples set a Gaussian's scale.
NEIGHBOURS = 3
#: Tangential scales are clamped to this range × the nominal spacing.
SCALE_CLAMP = (0.2, 2.0)
#: Grid-hash cell size in nominal spacings (neighbours within one cell are found exactly).
CELL_SPACINGS = 2.0
#: Cells per axis at most (keeps the int64 cell keys from overflowing).
MAX_CELLS_PER_AXIS = 1 << 20
#: Rounds of redrawing samples that fell into alpha-cut holes.
MASK_ROUNDS = 8
#: Query points per chunk of the neighbour search.
NEIGHBOUR_CHUNK = 1 << 16
RANDOM_OPACITY = 0.1


@dataclass(frozen=True, eq=False)
class GaussianInit:
    """Initial Gaussians, numpy float32 arrays (read-only), world space in scene units.

    ``means`` (N, 3); ``scales`` (N, 3) activated standard deviations along the local axes;
    ``quats`` (N, 4) unit wxyz; ``colors`` (N, 3) linear RGB in [0, 1]; ``opacities`` (N,) in
    (0, 1); ``normals`` (N, 3) unit surface normals (zeros where unknown).
    """

    means: np.ndarray
    scales: np.ndarray
    quats: np.ndarray
    colors: np.ndarray
    opacities: np.ndarray
    normals: np.ndarray

    def __post_init__(self) -> None:
        n = np.asarray(self.means).shape[0]
        shapes = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "colors": (n, 3), "opacities": (n,),
                  "normals": (n, 3)}
        for name, shape in shapes.items():
            array = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            if array.shape != shape:
                raise ValueError(f"GaussianInit.{name} has shape {array.shape}, expected {shape}")
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @property
    def count(self) -> int:
        return int(self.means.shape[0])

    @property
    def colors_srgb(self) -> np.ndarray:
        """``colors`` sRGB-encoded (N, 3) float32 in [0, 1]."""
        return linear_to_srgb(self.colors)


# ---------------------------------------------------------------------------------------------
# From the mesh


def init_from_mesh(
    scene: Scene,
    count: int,
    *,
    seed: int = 0,
    flatten: float = 0.1,
    include: Iterable[str] | None = None,
    opacity: float = 0.7,
) -> GaussianInit:
    """``count`` Gaussians on the surfaces of ``scene`` (see the module docstring)."""
    from engine.bake.integrate import scene_triangles

    where = scene.source or f"scene '{scene.name}'"
    count = _count(count)
    if not (isinstance(flatten, (int, float)) and 0.0 < flatten <= 1.0):
        raise ConfigError(f"flatten = {flatten!r} must be in (0, 1]", where="splat init")
    if not (isinstance(opacity, (int, float)) and 0.0 < opacity < 1.0):
        raise ConfigError(f"opacity = {opacity!r} must be in (0, 1)", where="splat init")

    triangles = scene_triangles(scene)
    corners = triangles.corners
    keep = np.ones(triangles.count, bool)
    if include is not None:
        wanted = {include} if isinstance(include, str) else set(include)
        names = [obj.name for obj in scene.objects]
        unknown = sorted(wanted - set(names))
        if unknown:
            raise ConfigError(f"include names object(s) the scene does not have: {', '.join(unknown)}",
                              where=where, hint=f"objects: {', '.join(names[:20]) or 'none'}")
        included = np.array([name in wanted for name in names], bool)
        keep = included[triangles.object_index] if triangles.count else keep
    edge1 = corners[:, 1] - corners[:, 0]
    edge2 = corners[:, 2] - corners[:, 0]
    cross = np.cross(edge1, edge2)
    areas = 0.5 * np.linalg.norm(cross, axis=1) * keep
    total = float(areas.sum())
    if not total > 0.0:
        what = "the included objects have" if include is not None else "the scene has"
        raise InputError(f"{what} no visible, non-animated triangles with a surface area: nothing to splat",
                         where=where, hint="add visible geometry, or include objects that have some")

    materials = scene.materials
    rng = np.random.default_rng(seed)
    parts: list[tuple[np.ndarray, ...]] = []
    kept = drawn = 0
    request = count
    for _ in range(MASK_ROUNDS):
        sample = _surface_samples(corners, areas, total, triangles.uv0, triangles.material, materials, request, rng)
        parts.append(sample)
        kept += len(sample[0])
        drawn += request
        if kept >= count:
            break
        acceptance = max(kept / drawn, 1.0 / 64.0)  # redraw the shortfall, scaled by the hole fraction so far
        request = min(math.ceil((count - kept) / acceptance * 1.1) + 16, 16 * count + 1024)
    tri, points, rgb, alpha = (np.concatenate(arrays)[:count] for arrays in zip(*parts, strict=True))
    if len(points) == 0:
        raise InputError("every surface sample fell into an alpha-cut hole: the visible surfaces are all "
                         "transparent", where=where, hint="check the materials' alpha textures and cutoffs")
    if len(points) < count:
        log.warning("splat init: only %d of %d samples landed outside alpha-cut holes", len(points), count)

    normals = cross[tri] / np.linalg.norm(cross[tri], axis=1, keepdims=True)
    nominal = math.sqrt(total / len(points))
    tangential = neighbour_spacing(points, k=NEIGHBOURS, spacing=nominal) * NEIGHBOUR_SCALE
    tangential = np.clip(tangential, SCALE_CLAMP[0] * nominal, SCALE_CLAMP[1] * nominal)
    scales = np.stack([tangential, tangential, flatten * tangential], axis=-1)
    blend = np.array([m.alpha_mode == "BLEND" for m in materials], bool)[triangles.material[tri]]
    opacities = np.where(blend, opacity * alpha, opacity)
    opacities = np.clip(opacities, 1e-3, 0.999)
    log.info("splat init: %d Gaussians on %.4g units² of surface, nominal spacing %.4g", len(points), total,
             nominal)
    return GaussianInit(means=points, scales=scales, quats=quats_z_to(normals), colors=rgb,
                        opacities=opacities, normals=normals)


def _surface_samples(
    corners: np.ndarray, areas: np.ndarray, total: float, uv0: np.ndarray, material_index: np.ndarray,
    materials: tuple[Any, ...], n: int, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` area-weighted samples (holes of MASK materials removed): triangle, point, linear RGB, alpha."""
    cumulative = np.cumsum(areas)
    steps = (np.arange(n) + rng.random()) * (total / n)
    last = int(np.flatnonzero(areas > 0)[-1])  # float rounding may push a step past the end
    tri = np.minimum(np.searchsorted(cumulative, steps, side="right"), last)
    tri = tri[rng.permutation(n)]  # random order: truncating a redraw round then keeps an unbiased subset
    r = rng.random((n, 2))
    fold = r.sum(axis=1) > 1.0
    r[fold] = 1.0 - r[fold]
    bary = np.column_stack([1.0 - r[:, 0] - r[:, 1], r[:, 0], r[:, 1]])
    points = np.einsum("nk,nkj->nj", bary, corners[tri])
    uv = np.einsum("nk,nkj->nj", bary, uv0[tri].astype(np.float64))
    rgba = np.empty((n, 4), np.float64)
    mat = material_index[tri]
    for index in np.unique(mat):  # one pass per material, vectorised over its samples
        material = materials[index]
        sel = mat == index
        rgba[sel] = np.asarray(material.base_color, np.float64)
        if material.base_color_texture is not None:
            rgba[sel] *= sample_texture(texture_linear_rgba(material.base_color_texture), uv[sel])
        rgba[sel, :3] += np.asarray(material.emission, np.float64)
    keep = np.ones(n, bool)
    for index in np.unique(mat):
        material = materials[index]
        if material.alpha_mode == "MASK":
            keep &= ~((mat == index) & (rgba[:, 3] < material.alpha_cutoff))
    rgb = np.clip(rgba[keep, :3], 0.0, 1.0)
    return tri[keep], points[keep], rgb, rgba[keep, 3]


def texture_linear_rgba(texture: Texture) -> np.ndarray:
    """A texture as float64 (H, W, 4): RGB linear (sRGB decoded when ``colorspace`` is srgb), alpha as stored."""
    from engine.bake.integrate import srgb_to_linear

    pixels = texture.pixels
    values = pixels.astype(np.float64) / 255.0 if pixels.dtype == np.uint8 else pixels.astype(np.float64)
    channels = values.shape[2]
    rgb = np.repeat(values[:, :, :1], 3, axis=2) if channels <= 2 else values[:, :, :3]
    alpha = values[:, :, -1:] if channels in (2, 4) else np.ones_like(values[:, :, :1])
    if texture.colorspace == "srgb":
        rgb = srgb_to_linear(np.clip(rgb, 0.0, 1.0)).astype(np.float64)
    return np.concatenate([rgb, alpha], axis=2)


def sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear, repeating lookup of ``image`` (H, W, C) at ``uv`` (N, 2) (V up, row 0 at the top): (N, C)."""
    height, width = image.shape[:2]
    x = uv[:, 0] * width - 0.5
    y = (1.0 - uv[:, 1]) * height - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    ax, ay = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64) % width, y0.astype(np.int64) % height
    x1, y1 = (x0 + 1) % width, (y0 + 1) % height
    return ((1 - ax) * (1 - ay) * image[y0, x0] + ax * (1 - ay) * image[y0, x1]
            + (1 - ax) * ay * image[y1, x0] + ax * ay * image[y1, x1])


# ---------------------------------------------------------------------------------------------
# Random


def init_random(bounds_min: Any, bounds_max: Any, count: int, *, seed: int = 0) -> GaussianInit:
    """``count`` Gaussians uniform in the box (see the module docstring)."""
    lo, hi = check_bounds(bounds_min, bounds_max, where="splat init")
    count = _count(count)
    rng = np.random.default_rng(seed)
    means = lo + rng.random((count, 3)) * (hi - lo)
    extent = hi - lo
    active = extent > 1e-9 * float(extent.max())
    dims = int(active.sum())
    nominal = float(np.prod(extent[active]) / count) ** (1.0 / dims)
    spacing = neighbour_spacing(means, k=NEIGHBOURS, spacing=nominal)
    spacing = np.clip(spacing, SCALE_CLAMP[0] * nominal, SCALE_CLAMP[1] * nominal)
    quats = np.zeros((count, 4))
    quats[:, 0] = 1.0
    return GaussianInit(means=means, scales=np.repeat(spacing[:, None], 3, axis=1), quats=quats,
                        colors=rng.random((count, 3)), opacities=np.full(count, RANDOM_OPACITY),
                        normals=np.zeros((count, 3)))


# ---------------------------------------------------------------------------------------------
# Geometry helpers


def neighbour_spacing(points: np.ndarray, *, k: int = 3, spacing: float | None = None) -> np.ndarray:
    """RMS distance (N,) float64 from each point to its ``k`` nearest other points, capped at one cell.

    Uniform grid hash with cells of ``CELL_SPACINGS × spacing`` (default spacing: the mean
    spacing of the points over their bounding box's volume); the 27 cells around a point are
    searched, so every neighbour closer than one cell is found and the result is exact where
    the k-th neighbour is closer than that; farther (and missing) neighbours count as one cell
    away. Points are processed in chunks so memory stays bounded.
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if n == 0:
        return np.zeros(0)
    lo, hi = points.min(axis=0), points.max(axis=0)
    extent = hi - lo
    if spacing is None:
        active = extent > 1e-12 * max(float(extent.max()), 1e-300)
        dims = max(int(active.sum()), 1)
        spacing = float(np.prod(extent[active]) / n) ** (1.0 / dims) if active.any() else 1.0
    cell = max(CELL_SPACINGS * float(spacing), float(extent.max()) / MAX_CELLS_PER_AXIS, 1e-30)
    cell2 = cell * cell
    coords = np.floor((points - lo) / cell).astype(np.int64)
    dims3 = coords.max(axis=0) + 1
    keys = (coords[:, 0] * dims3[1] + coords[:, 1]) * dims3[2] + coords[:, 2]
    order = np.argsort(keys, kind="stable")
    cells, cell_start, cell_count = np.unique(keys[order], return_index=True, return_counts=True)
    offsets = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij"), -1).reshape(-1, 3)
    # Candidates of query q are encoded as q + d²/scale (d² ≤ cell², so the fraction stays below 1):
    # one float sort then groups them by query with each query's distances in increasing order.
    # Queries go in cell order, so the cell look-ups search with sorted keys and touch nearby memory.
    scale = 2.0 * cell2
    result = np.empty(n)
    for first in range(0, n, NEIGHBOUR_CHUNK):
        query = order[first : first + NEIGHBOUR_CHUNK]
        local = np.arange(len(query), dtype=np.float64)
        encoded = [np.repeat(local + cell2 / scale, k)]  # k "one cell away" stand-ins per query
        query_coords = coords[query]
        for offset in offsets:
            neighbour = query_coords + offset
            valid = ((neighbour >= 0) & (neighbour < dims3)).all(axis=1)
            nkeys = (neighbour[:, 0] * dims3[1] + neighbour[:, 1]) * dims3[2] + neighbour[:, 2]
            slot = np.minimum(np.searchsorted(cells, nkeys), len(cells) - 1)
            counts = np.where(valid & (cells[slot] == nkeys), cell_count[slot], 0)
            total = int(counts.sum())
            if total == 0:
                continue
            i = np.repeat(np.arange(len(query)), counts)
            j = order[np.repeat(cell_start[slot] - (np.cumsum(counts) - counts), counts) + np.arange(total)]
            other = j != query[i]
            i, j = i[other], j[other]
            d2 = np.minimum(((points[query[i]] - points[j]) ** 2).sum(axis=1), cell2)
            encoded.append(i + d2 / scale)
        values = np.sort(np.concatenate(encoded))
        group = np.searchsorted(values, local, side="left")
        nearest = (values[group[:, None] + np.arange(k)] - local[:, None]) * scale
        result[query] = np.sqrt(np.clip(nearest, 0.0, None).mean(axis=1))
    return result


def quats_z_to(normals: np.ndarray) -> np.ndarray:
    """Unit wxyz quaternions (N, 4) float64 rotating +Z onto each unit normal (N, 3).

    The shortest-arc rotation q = normalise(1 + z·n, z × n); for n = -Z (antiparallel) a half
    turn about X.
    """
    n = np.asarray(normals, dtype=np.float64)
    q = np.stack([1.0 + n[:, 2], -n[:, 1], n[:, 0], np.zeros(len(n))], axis=-1)
    norm = np.linalg.norm(q, axis=1)
    flipped = norm < 1e-6
    q[flipped] = (0.0, 1.0, 0.0, 0.0)
    norm[flipped] = 1.0
    return q / norm[:, None]


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """Linear values to sRGB-encoded (IEC 61966-2-1), clipped to [0, 1], float32."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1.0 / 2.4) - 0.055).astype(np.float32)


def _count(count: Any) -> int:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ConfigError(f"count = {count!r} must be a positive integer (Gaussians to create)",
                          where="splat init")
    return int(count)
