"""What a real-time engine shows of a baked scene: primary rays, then a lightmap lookup instead of a path.

A game engine draws a baked object as ``emission + albedo × lightmap``: the lightmap holds E/π
per texel (what :func:`engine.bake.pipeline.bake_scene` writes to ``lightmaps/atlas_<k>.exr``),
sampled at the fragment's lightmap UV (TEXCOORD_1). :func:`render_lightmapped` does exactly that
with the same cameras, primary rays, surfaces and conventions as
:func:`engine.render.views.render_views` (OpenCV cameras, ``aa`` box-filtered rays per pixel,
premultiplied linear RGBA, camera-z depth, alpha cuts, back faces, mirrored objects), so a
lightmapped render and a path-traced one of the same scene agree up to the bake's noise and
resolution. That is how a peer re-checks a bake (:mod:`engine.trust.verify`, kind ``bake``).

Per hit
    * albedo: the material's bounce albedo × its base-colour texture at UV0, as the path tracer
      takes it (:func:`engine.render.views._shade_points`; the back of a single-sided surface is
      black);
    * lightmap UV: the hit triangle's three corner UVs (``corner_uvs``, :func:`read_corner_uvs`'s
      form: per object name the atlas and (T, 3, 2) UVs in the object's own triangle order),
      interpolated with the hit's barycentrics. :func:`engine.bake.integrate.scene_triangles`
      swaps corners 1 and 2 of mirrored objects (negative determinant); their corner UVs are
      swapped the same way, so the barycentrics still address the right corners;
    * lightmap: bilinear lookup of the object's atlas, clamped at its edges, texel centres at
      ((x + 0.5) / S, 1 − (y + 0.5) / S) (V up, row 0 at the top: the bake's texel convention),
      no mip-mapping (the lightmapped glTF's sampler: LINEAR, CLAMP_TO_EDGE).

Objects without a lightmap
    A visible object the bake did not lay out (animated objects are left out unless
    ``include_animated``; flat or unbaked ones) shows only its emission: its lighting is 0
    (black), as a lightmap-only engine would show it. Their names are logged as a warning and
    returned in :attr:`LightmappedResult.unlit`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import ConfigError, InputError
from engine.progress import Progress, no_progress
from engine.render.views import RenderResult

if TYPE_CHECKING:
    from engine.scene.model import Scene

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LightmappedResult(RenderResult):
    """A :class:`~engine.render.views.RenderResult` (``samples`` and ``paths`` are 0: nothing is
    integrated) plus ``unlit``: the visible objects that had no lightmap (rendered black)."""

    unlit: tuple[str, ...] = ()


def _check_atlases(atlases: Sequence[Any]) -> list[np.ndarray]:
    out = []
    for k, atlas in enumerate(atlases):
        image = np.asarray(atlas, np.float32)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
            raise ConfigError(f"lightmap atlas {k} has shape {image.shape}, expected (S, S, 3 or 4)",
                              where="render_lightmapped: atlases")
        if not np.isfinite(image[..., :3]).all():
            raise InputError(f"lightmap atlas {k} holds NaN or Inf", where="render_lightmapped: atlases",
                             hint="bake again: the lightmap file is damaged")
        out.append(np.ascontiguousarray(image[..., :3]))
    return out


def lightmap_corners(scene: Scene, corner_uvs: Mapping[str, tuple[int, np.ndarray]], atlas_count: int, *,
                     include_animated: bool = False) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Per traced triangle (``scene_triangles`` order) its lightmap corner UVs (N, 3, 2) float64
    and atlas (N,) int32 (−1: no lightmap), plus the names of the visible objects without one."""
    from engine.render.views import _traced_objects

    objects = _traced_objects(scene, include_animated)
    total = sum(obj.n_triangles for obj in objects)
    uv = np.zeros((total, 3, 2), np.float64)
    atlas = np.full(total, -1, np.int32)
    unlit: list[str] = []
    start = 0
    for obj in objects:
        stop = start + obj.n_triangles
        entry = corner_uvs.get(obj.name)
        if entry is None:
            unlit.append(obj.name)
            start = stop
            continue
        index, corners = int(entry[0]), np.asarray(entry[1], np.float64)
        where = f"lightmap UVs of object '{obj.name}'"
        if corners.shape != (obj.n_triangles, 3, 2):
            raise InputError(f"they have shape {corners.shape}, the object has {obj.n_triangles} triangles "
                             f"(expected ({obj.n_triangles}, 3, 2))", where=where,
                             hint="render the scene the bake was made of (its scene.glb)")
        if not 0 <= index < atlas_count:
            raise InputError(f"they name atlas {index}, but {atlas_count} atlas(es) were given", where=where,
                             hint="pass every lightmaps/atlas_<k>.exr of the bake")
        if not np.isfinite(corners).all():
            raise InputError("they hold NaN or Inf", where=where, hint="bake again")
        if np.linalg.det(np.asarray(obj.transform, np.float64)[:3, :3]) < 0:
            corners = corners[:, [0, 2, 1]]  # scene_triangles swapped these corners of mirrored objects
        uv[start:stop] = corners
        atlas[start:stop] = index
        start = stop
    known = {obj.name for obj in objects}
    stray = sorted(set(corner_uvs) - known)
    if stray:
        log.warning("lightmap UVs for %d object(s) the scene does not show: %s", len(stray), ", ".join(stray[:10]))
    if unlit:
        log.warning("%d visible object(s) have no lightmap and render black (emission only): %s", len(unlit),
                    ", ".join(unlit[:10]))
    return uv, atlas, tuple(unlit)


def sample_lightmap(image: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Bilinear lookup (clamped at the edges) of an (S, S, 3) lightmap at UV (s, t), V up: (N, 3)."""
    h, w = image.shape[:2]
    x = np.asarray(s, np.float64) * w - 0.5
    y = (1.0 - np.asarray(t, np.float64)) * h - 0.5
    fx, fy = np.floor(x), np.floor(y)
    ax, ay = (x - fx)[:, None], (y - fy)[:, None]
    x0 = np.clip(fx.astype(np.int64), 0, w - 1)
    y0 = np.clip(fy.astype(np.int64), 0, h - 1)
    x1 = np.clip(fx.astype(np.int64) + 1, 0, w - 1)
    y1 = np.clip(fy.astype(np.int64) + 1, 0, h - 1)
    return ((1 - ax) * (1 - ay) * image[y0, x0] + ax * (1 - ay) * image[y0, x1]
            + (1 - ax) * ay * image[y1, x0] + ax * ay * image[y1, x1])


def render_lightmapped(
    scene: Scene,
    corner_uvs: Mapping[str, tuple[int, np.ndarray]],
    atlases: Sequence[Any],
    viewmats: Any,
    Ks: Any,  # noqa: N803  (gsplat's name)
    width: int,
    height: int,
    *,
    aa: int = 4,
    seed: int = 0,
    device: str = "cpu",
    backfaces: str = "black",
    include_animated: bool = False,
    progress: Progress = no_progress,
) -> LightmappedResult:
    """Render ``scene`` lit by its baked lightmaps from C OpenCV cameras (see the module docstring).

    ``corner_uvs`` as :func:`engine.bake.pipeline.read_corner_uvs` returns it, ``atlases`` the
    linear (S, S, 3|4) E/π images in atlas order; cameras, ``aa``, ``seed``, ``device``,
    ``backfaces`` and ``include_animated`` as for :func:`engine.render.views.render_views`.
    Returns premultiplied linear RGBA. Raises ConfigError for bad arguments, InputError when the
    lightmap UVs do not fit the scene or nothing is seen.
    """
    from engine.render.views import (
        CHUNK_RAYS,
        _check_cameras,
        _check_settings,
        _pixel_rays,
        _shade_points,
        _surfaces,
        _visible_hits,
    )

    started = time.perf_counter()
    viewmats, Ks, width, height = _check_cameras(viewmats, Ks, width, height)  # noqa: N806
    _check_settings(1, 0, aa, seed, device, backfaces)
    aa, seed = int(aa), int(seed)
    images = _check_atlases(atlases)

    from engine.bake.bvh import build_bvh
    from engine.bake.integrate import scene_triangles
    from engine.bake.kernels import CudaBVH, explain_device

    where = scene.source or f"scene '{scene.name}'"
    triangles = scene_triangles(scene, include_animated=include_animated)
    if triangles.count == 0:
        raise InputError("the scene has no visible triangles to render", where=where,
                         hint="render the scene the bake was made of")
    lm_uv, lm_atlas, unlit = lightmap_corners(scene, corner_uvs, len(images), include_animated=include_animated)
    resolved, why = explain_device(device)
    log.info("lightmapped render device: %s (%s)", resolved, why)
    host_bvh = build_bvh(np.asarray(triangles.corners, np.float32))
    if host_bvh.n_triangles == 0:
        raise InputError("every triangle of the scene is degenerate: nothing to render", where=where)
    trace_bvh = CudaBVH(host_bvh) if resolved == "cuda" else host_bvh
    surf = _surfaces(scene, triangles, include_animated)

    n_views = len(viewmats)
    total_rows = n_views * height
    rows_per_chunk = max(1, CHUNK_RAYS // (width * aa))
    n_chunks = -(-total_rows // rows_per_chunk)
    rgba = np.zeros((total_rows, width, 4), np.float32)
    depth = np.full((total_rows, width), np.inf, np.float32)
    traced = 0
    progress("render", 0.0, f"{n_views} lightmapped views of {width}×{height}")
    for chunk in range(n_chunks):
        r0 = chunk * rows_per_chunk
        rows = np.arange(r0, min(total_rows, r0 + rows_per_chunk))
        rays = _pixel_rays(viewmats, Ks, width, rows, height, aa, seed)
        n_rays = rays.origin.shape[0]
        ray_index = (r0 * width * aa + np.arange(n_rays)).astype(np.int64)
        tri, t, u, v, count = _visible_hits(surf, rays, trace_bvh, resolved, seed, ray_index, backfaces)
        traced += count
        hit = np.flatnonzero(tri >= 0)
        radiance = np.zeros((n_rays, 3))
        if hit.size:
            k = tri[hit]
            sub = SimpleNamespace(direction=rays.direction[hit], spread=rays.spread[hit])
            points = _shade_points(surf, sub, k, t[hit], u[hit], v[hit])
            bu, bv = u[hit].astype(np.float64)[:, None], v[hit].astype(np.float64)[:, None]
            corners = lm_uv[k]
            st = (1.0 - bu - bv) * corners[:, 0] + bu * corners[:, 1] + bv * corners[:, 2]
            lighting = np.zeros((hit.size, 3))
            atlas_of = lm_atlas[k]
            for index in np.unique(atlas_of[atlas_of >= 0]):
                chosen = np.flatnonzero(atlas_of == index)
                lighting[chosen] = sample_lightmap(images[int(index)], st[chosen, 0], st[chosen, 1])
            radiance[hit] = points.emission + points.albedo * lighting
        shape = (len(rows), width, aa)
        covered = (tri >= 0).reshape(shape)
        rgba[rows, :, :3] = radiance.reshape(*shape, 3).sum(axis=2) / aa
        rgba[rows, :, 3] = covered.sum(axis=2) / aa
        z = np.where(tri >= 0, t * rays.zscale, 0.0).reshape(shape).sum(axis=2)
        hits_per_pixel = covered.sum(axis=2)
        depth[rows] = np.where(hits_per_pixel > 0, z / np.maximum(hits_per_pixel, 1), np.inf)
        progress("render", (chunk + 1) / n_chunks, f"chunk {chunk + 1}/{n_chunks} done")

    rgba = rgba.reshape(n_views, height, width, 4)
    depth = depth.reshape(n_views, height, width)
    if not rgba[..., 3].any():
        raise InputError(f"none of the {n_views} cameras sees any of the scene's {triangles.count} triangles",
                         where=where, hint="point the cameras at the scene (viewmats are world-to-camera, "
                         "OpenCV: +Z forward, +Y down)")
    seconds = time.perf_counter() - started
    log.info("rendered %d lightmapped views of %d×%d (%d rays/pixel) on %s in %.2f s", n_views, width, height, aa,
             resolved, seconds)
    return LightmappedResult(rgba=rgba, depth=depth, seconds=seconds, device=resolved, samples=0, aa=aa,
                             rays=int(traced), paths=0, unlit=unlit)


__all__ = ["LightmappedResult", "lightmap_corners", "render_lightmapped", "sample_lightmap"]
