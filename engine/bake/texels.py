"""Lightmap texels: which surface point each atlas texel bakes, and where its rays start.

:func:`rasterize_texels` rasterises every UV triangle of a :class:`~engine.bake.uv.LightmapLayout`
conservatively (every texel whose square overlaps the triangle, so texels on chart edges are
baked too and bilinear filtering never reads an unbaked neighbour) and records, per covered
texel, the surface point it stands for. Where several triangles touch one texel the one that
covers the texel centre wins (the deepest one if several do); otherwise the one with the
largest overlap (estimated on a 4 × 4 sub-grid, the nearest to the centre breaking ties).

Texel coordinates: ``x`` is the column, ``y`` the row from the top of the atlas image; a layout
UV (V up) maps to pixel space as ``(u · S, (1 − v) · S)``.

The kernels are numba ``@njit`` functions compiled on first use (numba is imported lazily, so
importing this module is cheap).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from engine.bake.uv import LightmapLayout

log = logging.getLogger(__name__)

#: Ray origins are pushed off the surface by max(OFFSET_SCENE · scene diagonal, OFFSET_TEXEL · texel size).
OFFSET_SCENE = 1e-5
OFFSET_TEXEL = 0.05
#: A texel centre outside its triangle is clamped onto it, then pulled this many texels inward.
PULL_TEXELS = 0.1


@functools.cache
def _kernels() -> SimpleNamespace:
    """Compile (or load from numba's cache) the rasterisation kernels."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def coverage(tri: np.ndarray, size: int) -> np.ndarray:  # pragma: no cover - compiled
        """Per-pixel count of triangles covering the pixel centre (top-left fill rule)."""
        counts = np.zeros((size, size), np.int32)
        for t in range(tri.shape[0]):
            ax, ay = tri[t, 0, 0], tri[t, 0, 1]
            bx, by = tri[t, 1, 0], tri[t, 1, 1]
            cx, cy = tri[t, 2, 0], tri[t, 2, 1]
            area2 = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
            if area2 == 0.0:
                continue
            if area2 < 0.0:
                bx, by, cx, cy = cx, cy, bx, by
            x0 = max(0, int(np.ceil(min(ax, bx, cx) - 0.5)))
            x1 = min(size - 1, int(np.floor(max(ax, bx, cx) - 0.5)))
            y0 = max(0, int(np.ceil(min(ay, by, cy) - 0.5)))
            y1 = min(size - 1, int(np.floor(max(ay, by, cy) - 0.5)))
            # top-left rule: an edge owns its points when it runs "up" or is a top edge
            b0 = (by - ay) < 0.0 or ((by - ay) == 0.0 and (bx - ax) > 0.0)
            b1 = (cy - by) < 0.0 or ((cy - by) == 0.0 and (cx - bx) > 0.0)
            b2 = (ay - cy) < 0.0 or ((ay - cy) == 0.0 and (ax - cx) > 0.0)
            for iy in range(y0, y1 + 1):
                py = iy + 0.5
                for ix in range(x0, x1 + 1):
                    px = ix + 0.5
                    e0 = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
                    e1 = (cx - bx) * (py - by) - (cy - by) * (px - bx)
                    e2 = (ax - cx) * (py - cy) - (ay - cy) * (px - cx)
                    if e0 < 0.0 or e1 < 0.0 or e2 < 0.0:
                        continue
                    if (e0 == 0.0 and not b0) or (e1 == 0.0 and not b1) or (e2 == 0.0 and not b2):
                        continue
                    counts[iy, ix] += 1
        return counts

    @njit(cache=True, nogil=True)
    def raster(tri: np.ndarray, size: int, score: np.ndarray, owner: np.ndarray) -> None:  # pragma: no cover
        """Conservative rasterisation: each pixel keeps the triangle with the best score."""
        for t in range(tri.shape[0]):
            ax, ay = tri[t, 0, 0], tri[t, 0, 1]
            bx, by = tri[t, 1, 0], tri[t, 1, 1]
            cx, cy = tri[t, 2, 0], tri[t, 2, 1]
            area2 = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
            if abs(area2) < 1e-12:
                continue
            if area2 < 0.0:
                bx, by, cx, cy = cx, cy, bx, by
            l0 = np.hypot(bx - ax, by - ay)
            l1 = np.hypot(cx - bx, cy - by)
            l2 = np.hypot(ax - cx, ay - cy)
            h0 = 0.5 * (abs(bx - ax) + abs(by - ay))  # half the square's extent along each edge normal
            h1 = 0.5 * (abs(cx - bx) + abs(cy - by))
            h2 = 0.5 * (abs(ax - cx) + abs(ay - cy))
            x0 = max(0, int(np.floor(min(ax, bx, cx))))
            x1 = min(size - 1, int(np.ceil(max(ax, bx, cx))) - 1)
            y0 = max(0, int(np.floor(min(ay, by, cy))))
            y1 = min(size - 1, int(np.ceil(max(ay, by, cy))) - 1)
            for iy in range(y0, y1 + 1):
                py = iy + 0.5
                for ix in range(x0, x1 + 1):
                    px = ix + 0.5
                    e0 = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
                    e1 = (cx - bx) * (py - by) - (cy - by) * (px - bx)
                    e2 = (ax - cx) * (py - cy) - (ay - cy) * (px - cx)
                    if e0 + h0 <= 1e-9 * l0 or e1 + h1 <= 1e-9 * l1 or e2 + h2 <= 1e-9 * l2:
                        continue  # the square lies outside one edge (separating axis)
                    d = min(e0 / l0, e1 / l1, e2 / l2)  # signed distance of the centre, px
                    if d >= 0.0:
                        s = 1.0 + d  # covers the centre: the deepest wins
                    else:
                        inside = 0
                        for sy in range(4):
                            qy = iy + (sy + 0.5) * 0.25
                            for sx in range(4):
                                qx = ix + (sx + 0.5) * 0.25
                                f0 = (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)
                                f1 = (cx - bx) * (qy - by) - (cy - by) * (qx - bx)
                                f2 = (ax - cx) * (qy - cy) - (ay - cy) * (qx - cx)
                                if f0 >= 0.0 and f1 >= 0.0 and f2 >= 0.0:
                                    inside += 1
                        s = (inside + 0.999 / (1.0 - d)) / 17.0  # overlap share, nearness breaks ties
                    if s > score[iy, ix]:
                        score[iy, ix] = s
                        owner[iy, ix] = t

    @njit(cache=True, nogil=True)
    def attributes(tri: np.ndarray, corners: np.ndarray, vnormals: np.ndarray, has_normals: np.ndarray,
                   flip: np.ndarray, xs: np.ndarray, ys: np.ndarray, ts: np.ndarray, pull: float):  # pragma: no cover
        """Barycentrics of the (clamped) texel centre, world position, normals and texel size."""
        n = xs.shape[0]
        bary = np.empty((n, 3), np.float32)
        position = np.empty((n, 3), np.float32)
        normal = np.empty((n, 3), np.float32)
        face = np.empty((n, 3), np.float32)
        texel = np.empty(n, np.float32)
        for i in range(n):
            t = ts[i]
            px = xs[i] + 0.5
            py = ys[i] + 0.5
            ax, ay = tri[t, 0, 0], tri[t, 0, 1]
            bx, by = tri[t, 1, 0], tri[t, 1, 1]
            cx, cy = tri[t, 2, 0], tri[t, 2, 1]
            det = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)
            wb = ((px - ax) * (cy - ay) - (cx - ax) * (py - ay)) / det
            wc = ((bx - ax) * (py - ay) - (px - ax) * (by - ay)) / det
            wa = 1.0 - wb - wc
            if wa < 0.0 or wb < 0.0 or wc < 0.0:
                # the nearest point on the triangle's boundary
                best = np.inf
                for e in range(3):
                    p0x, p0y = tri[t, e, 0], tri[t, e, 1]
                    p1x, p1y = tri[t, (e + 1) % 3, 0], tri[t, (e + 1) % 3, 1]
                    dx, dy = p1x - p0x, p1y - p0y
                    ll = dx * dx + dy * dy
                    u = 0.0 if ll == 0.0 else ((px - p0x) * dx + (py - p0y) * dy) / ll
                    u = min(1.0, max(0.0, u))
                    qx, qy = p0x + u * dx - px, p0y + u * dy - py
                    dist = qx * qx + qy * qy
                    if dist < best:
                        best = dist
                        w = np.zeros(3)
                        w[e] = 1.0 - u
                        w[(e + 1) % 3] = u
                        wa, wb, wc = w[0], w[1], w[2]
                # then a little way inward, towards the centroid, so that rays do not start on an edge
                qx = wa * ax + wb * bx + wc * cx
                qy = wa * ay + wb * by + wc * cy
                gx, gy = (ax + bx + cx) / 3.0, (ay + by + cy) / 3.0
                span = np.hypot(qx - gx, qy - gy)
                k = 0.5 if span <= 2.0 * pull else pull / span
                wa = (1.0 - k) * wa + k / 3.0
                wb = (1.0 - k) * wb + k / 3.0
                wc = (1.0 - k) * wc + k / 3.0
            bary[i, 0], bary[i, 1], bary[i, 2] = wa, wb, wc
            for c in range(3):
                position[i, c] = wa * corners[t, 0, c] + wb * corners[t, 1, c] + wc * corners[t, 2, c]
            e1x = corners[t, 1, 0] - corners[t, 0, 0]
            e1y = corners[t, 1, 1] - corners[t, 0, 1]
            e1z = corners[t, 1, 2] - corners[t, 0, 2]
            e2x = corners[t, 2, 0] - corners[t, 0, 0]
            e2y = corners[t, 2, 1] - corners[t, 0, 1]
            e2z = corners[t, 2, 2] - corners[t, 0, 2]
            fx = e1y * e2z - e1z * e2y
            fy = e1z * e2x - e1x * e2z
            fz = e1x * e2y - e1y * e2x
            fl = np.sqrt(fx * fx + fy * fy + fz * fz)
            if fl > 0.0:
                sign = -1.0 if flip[t] else 1.0  # mirrored objects wind clockwise
                fx, fy, fz = sign * fx / fl, sign * fy / fl, sign * fz / fl
            else:
                fx, fy, fz = 0.0, 0.0, 1.0
            face[i, 0], face[i, 1], face[i, 2] = fx, fy, fz
            # world length of one texel edge: sqrt(world area / pixel area)
            texel[i] = np.sqrt(0.5 * fl / max(0.5 * abs(det), 1e-30))
            if has_normals[t]:
                nx = wa * vnormals[t, 0, 0] + wb * vnormals[t, 1, 0] + wc * vnormals[t, 2, 0]
                ny = wa * vnormals[t, 0, 1] + wb * vnormals[t, 1, 1] + wc * vnormals[t, 2, 1]
                nz = wa * vnormals[t, 0, 2] + wb * vnormals[t, 1, 2] + wc * vnormals[t, 2, 2]
                nl = np.sqrt(nx * nx + ny * ny + nz * nz)
                if nl > 1e-12:
                    normal[i, 0], normal[i, 1], normal[i, 2] = nx / nl, ny / nl, nz / nl
                    continue
            normal[i, 0], normal[i, 1], normal[i, 2] = fx, fy, fz
        return bary, position, normal, face, texel

    return SimpleNamespace(coverage=coverage, raster=raster, attributes=attributes)


def uv_pixels(uv: np.ndarray, triangles: np.ndarray, size: int) -> np.ndarray:
    """UV triangles (V up, [0, 1]) as (T, 3, 2) float64 pixel coordinates (x right, y down) of a size² grid."""
    corners = np.asarray(uv, dtype=np.float64)[np.asarray(triangles)]
    pixels = np.empty_like(corners)
    pixels[..., 0] = corners[..., 0] * size
    pixels[..., 1] = (1.0 - corners[..., 1]) * size
    return pixels


def coverage_counts(uv: np.ndarray, triangles: np.ndarray, size: int) -> np.ndarray:
    """(size, size) int32: how many UV triangles cover each pixel centre.

    Centre sampling with a top-left fill rule: two triangles that only share an edge never
    count the same pixel twice, so a count above 1 is a real overlap.
    """
    return _kernels().coverage(uv_pixels(uv, triangles, size), int(size))


@dataclass(frozen=True, eq=False)
class Texels:
    """Every covered texel of a lightmap layout, as flat arrays of length N (sorted by atlas, row, column).

    ``object_index`` indexes ``layout.entries`` and ``triangle`` that entry's triangles;
    ``barycentric`` are of the texel centre clamped into the triangle; ``position`` (world,
    scene units), ``normal`` (interpolated, or the geometric normal when the object has no
    normals), ``face_normal`` (geometric, from the winding; flipped for mirrored objects);
    ``origin`` is ``position`` pushed along ``face_normal`` by ``offset`` (where rays start);
    ``texel_size`` is the world length of one texel edge there.
    """

    atlas_size: int
    atlas_count: int
    atlas: np.ndarray
    x: np.ndarray
    y: np.ndarray
    object_index: np.ndarray
    triangle: np.ndarray
    barycentric: np.ndarray
    position: np.ndarray
    normal: np.ndarray
    face_normal: np.ndarray
    origin: np.ndarray
    texel_size: np.ndarray
    offset: np.ndarray

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.flags.writeable:
                view = value.view()
                view.flags.writeable = False  # read-only views: shared safely with the integrator
                object.__setattr__(self, name, view)

    @property
    def count(self) -> int:
        return int(self.atlas.shape[0])

    def __len__(self) -> int:
        return self.count

    def mask(self, atlas: int) -> np.ndarray:
        """(S, S) bool: the texels of ``atlas`` that are baked."""
        mask = np.zeros((self.atlas_size, self.atlas_size), bool)
        pick = self.atlas == atlas
        mask[self.y[pick], self.x[pick]] = True
        return mask

    def scatter(self, values: np.ndarray, fill: float = 0.0) -> list[np.ndarray]:
        """Per-texel ``values`` (N,) or (N, C) as one float32 (S, S, C) image per atlas, ``fill`` elsewhere."""
        values = np.asarray(values, dtype=np.float32)
        if values.shape[0] != self.count:
            raise ValueError(f"values have {values.shape[0]} rows, expected one per texel ({self.count})")
        flat = values.reshape(self.count, -1)
        images = []
        for a in range(self.atlas_count):
            image = np.full((self.atlas_size, self.atlas_size, flat.shape[1]), fill, np.float32)
            pick = self.atlas == a
            image[self.y[pick], self.x[pick]] = flat[pick]
            images.append(image)
        return images


def rasterize_texels(layout: LightmapLayout, *, pull_texels: float = PULL_TEXELS) -> Texels:
    """Rasterise every UV triangle of ``layout`` into its atlas and describe each covered texel.

    Conservative coverage (texel squares that overlap a triangle); where triangles share a
    texel, the one covering its centre wins, else the largest overlap. A texel centre outside
    its triangle is clamped onto the triangle and pulled ``pull_texels`` inward. Ray origins
    are offset along the geometric normal by max(1e-5 · scene diagonal, 0.05 · texel size).
    """
    kernels = _kernels()
    size = int(layout.atlas_size)
    entries = layout.entries
    if entries:
        lows = np.min([e.positions.min(axis=0) for e in entries if len(e.positions)], axis=0)
        highs = np.max([e.positions.max(axis=0) for e in entries if len(e.positions)], axis=0)
        diagonal = float(np.linalg.norm(highs.astype(np.float64) - lows))
    else:
        diagonal = 0.0

    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "atlas", "x", "y", "object", "triangle", "bary", "position", "normal", "face", "texel")}
    for a in range(layout.atlas_count):
        members = [i for i, e in enumerate(entries) if e.atlas == a and len(e.triangles)]
        if not members:
            continue
        tri = np.concatenate([uv_pixels(entries[i].uv, entries[i].triangles, size) for i in members])
        corners = np.concatenate([entries[i].positions[entries[i].triangles] for i in members]).astype(np.float64)
        vnormals = np.concatenate([
            entries[i].normals[entries[i].triangles] if entries[i].normals is not None
            else np.zeros((len(entries[i].triangles), 3, 3), np.float32)
            for i in members
        ]).astype(np.float32)
        has_normals = np.concatenate([
            np.full(len(entries[i].triangles), entries[i].normals is not None) for i in members
        ])
        flip = np.concatenate([np.full(len(entries[i].triangles), entries[i].mirrored) for i in members])
        owner_object = np.concatenate([np.full(len(entries[i].triangles), i, np.int32) for i in members])
        owner_triangle = np.concatenate([np.arange(len(entries[i].triangles), dtype=np.int32) for i in members])

        score = np.full((size, size), -1.0, np.float32)
        owner = np.full((size, size), -1, np.int32)
        kernels.raster(tri, size, score, owner)
        ys, xs = np.nonzero(owner >= 0)
        ts = owner[ys, xs]
        xs, ys = xs.astype(np.int32), ys.astype(np.int32)
        bary, position, normal, face, texel = kernels.attributes(
            tri, corners, vnormals, has_normals, flip, xs, ys, ts, float(pull_texels))
        parts["atlas"].append(np.full(len(xs), a, np.int32))
        parts["x"].append(xs)
        parts["y"].append(ys)
        parts["object"].append(owner_object[ts])
        parts["triangle"].append(owner_triangle[ts])
        parts["bary"].append(bary)
        parts["position"].append(position)
        parts["normal"].append(normal)
        parts["face"].append(face)
        parts["texel"].append(texel)

    def join(key: str, dtype: Any, width: int | None = None) -> np.ndarray:
        if parts[key]:
            return np.ascontiguousarray(np.concatenate(parts[key]), dtype=dtype)
        return np.zeros((0,) if width is None else (0, width), dtype)

    texel_size = join("texel", np.float32)
    face_normal = join("face", np.float32, 3)
    position = join("position", np.float32, 3)
    offset = np.maximum(OFFSET_SCENE * diagonal, OFFSET_TEXEL * texel_size).astype(np.float32)
    origin = (position + face_normal * offset[:, None]).astype(np.float32)
    texels = Texels(
        atlas_size=size,
        atlas_count=int(layout.atlas_count),
        atlas=join("atlas", np.int32),
        x=join("x", np.int32),
        y=join("y", np.int32),
        object_index=join("object", np.int32),
        triangle=join("triangle", np.int32),
        barycentric=join("bary", np.float32, 3),
        position=position,
        normal=join("normal", np.float32, 3),
        face_normal=face_normal,
        origin=origin,
        texel_size=texel_size,
        offset=offset,
    )
    log.debug("rasterised %d texels in %d atlases of %d²", texels.count, layout.atlas_count, size)
    return texels
