"""The bake pipeline: scene → lightmap layout → texels → BVH → integrate → post → files.

One function, :func:`bake_scene`, that the CLI (`optimizer bake`), the service (`bake` job kind)
and later the one-click pipeline call. It writes, into an output folder:

* ``lightmaps/atlas_<k>.exr``: linear float lighting (E/π per texel, what multiplies the albedo),
* ``lightmaps/atlas_<k>.rgbm.png``: the same as 8-bit RGBM (range 8) for engines that want it,
* ``scene.glb``: a glTF copy with TEXCOORD_1 lightmap UVs and ``MOZ_lightmap`` materials,
* ``lightmap_uv.npz``: per baked object its lightmap UV at every triangle corner, in the
  object's own triangle order (``uv_<i>`` (T, 3, 2) float32, V up; ``names``, ``atlas``): what a
  client (the Blender add-on) needs to put the UVs back on its own mesh corners,
* ``bake.json``: the summary (atlases, texels, rays, device, timings, warnings),
* with ``BakeSettings.reference_views`` > 0: ``references/view_<k>.png``, path-traced views of
  the original scene (:func:`engine.render.views.render_views`, 8-bit sRGB RGBA, straight alpha,
  like the splat pipeline's references) from a rig planned over the baked objects' bounds
  (an interior rig when they enclose their centre, :func:`engine.splat.pipeline.enclosure_share`),
  and ``references/cameras.json``, the rig (``CameraRig.to_dict``). The rendered views are the
  rig's ``test`` views; a bake trains on nothing, but the rig format needs ``train`` views, so
  the rig is planned with twice as many cameras and every other one (``train``) is not
  rendered. Peers re-render the bake at these views with
  :func:`engine.render.lightmapped.render_lightmapped` to verify it (:mod:`engine.trust.verify`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError
from engine.progress import Progress, no_progress
from engine.scene.model import Scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BakeSettings:
    """What the artist can choose. ``texels_per_metre`` None adapts to the scene (see uv.py)."""

    texels_per_metre: float | None = None
    atlas_size: int = 1024
    padding: int = 2
    samples: int = 64
    bounces: int = 3
    ao_distance: float = 0.0
    seed: int = 0
    time_budget_s: float | None = None
    device: str = "auto"
    denoise: bool = True
    reference_views: int = 0
    reference_size: int = 128
    reference_samples: int = 64
    reference_rig: str = "auto"

    def __post_init__(self) -> None:
        for name, low, high in (("reference_views", 0, 512), ("reference_size", 8, 4096),
                                ("reference_samples", 1, 1 << 16)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer in {low}..{high}, got {value!r}", where="bake settings")
        if self.reference_rig not in ("auto", "object", "interior"):
            raise ConfigError(f"reference_rig is {self.reference_rig!r}, expected auto, object or interior",
                              where="bake settings")
        if self.texels_per_metre is not None and not self.texels_per_metre > 0:
            raise ConfigError(f"texels_per_metre must be above 0, got {self.texels_per_metre}", where="bake settings")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device is {self.device!r}, expected auto, cpu or cuda", where="bake settings")


def _rays_estimate(texels: int, samples: int, bounces: int, ao: bool) -> int:
    """Rays a bake traces: per sample one shadow ray for direct light, and per bounce one
    closest-hit ray plus one shadow ray (Russian roulette makes this an upper bound)."""
    return texels * samples * (1 + 2 * bounces + (1 if ao else 0))


def write_corner_uvs(path: Path, layout: Any) -> Path:
    """Write each layout entry's lightmap UV per triangle corner (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {
        "names": np.array([e.name for e in layout.entries], dtype=np.str_),
        "atlas": np.array([e.atlas for e in layout.entries], np.int32),
        "generated": np.array([e.generated for e in layout.entries], bool),
    }
    for i, entry in enumerate(layout.entries):
        arrays[f"uv_{i}"] = np.ascontiguousarray(entry.uv[entry.triangles], np.float32)
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def read_corner_uvs(path: str | Path) -> dict[str, tuple[int, np.ndarray]]:
    """``lightmap_uv.npz`` back as {object name: (atlas, (T, 3, 2) corner UVs)}."""
    try:
        with np.load(path, allow_pickle=False) as data:
            names = [str(n) for n in data["names"]]
            return {name: (int(data["atlas"][i]), data[f"uv_{i}"]) for i, name in enumerate(names)}
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"not a readable lightmap UV file ({exc})", where=str(path),
                         hint="bake again: the bake folder is incomplete") from None


def write_reference_views(scene: Scene, layout: Any, out: Path, settings: BakeSettings, device: str, *,
                          progress: Progress = no_progress) -> dict[str, Any]:
    """Path-trace ``settings.reference_views`` views of ``scene`` around the baked objects into
    ``out/references`` (see the module docstring); returns what ``bake.json`` records of them."""
    from engine.render.views import render_views, save_png
    from engine.splat.pipeline import ENCLOSED_SHARE, enclosure_share
    from engine.splat.rig import plan_rig

    corners = np.concatenate([e.positions[e.triangles] for e in layout.entries]).astype(np.float64)
    points = corners.reshape(-1, 3)
    lo, hi = points.min(axis=0), points.max(axis=0)
    kind = settings.reference_rig
    if kind == "auto":
        share = enclosure_share(corners)
        kind = "interior" if share >= ENCLOSED_SHARE else "object"
        log.info("reference rig: %s (%.0f %% of directions from the centre see a front face)", kind, 100 * share)
    rig = plan_rig(lo, hi, kind=kind, views=2 * settings.reference_views, width=settings.reference_size,
                   test_every=2, seed=settings.seed, enclosed=kind == "interior")
    views = np.asarray(rig.test, np.int64)
    progress("references", 0.0, f"{len(views)} reference views at {rig.width}×{rig.height}")
    rendered = render_views(scene, rig.viewmats[views], rig.Ks[views], rig.width, rig.height,
                            samples=settings.reference_samples, bounces=settings.bounces, aa=4, seed=settings.seed,
                            device=device, progress=progress)
    folder = out / "references"
    files = []
    for i, view in enumerate(views):
        files.append(save_png(folder / f"view_{int(view)}.png", rendered.rgba[i]).relative_to(out).as_posix())
    (folder / "cameras.json").write_text(json.dumps(rig.to_dict()))
    files.append("references/cameras.json")
    progress("references", 1.0, f"wrote {len(views)} reference views")
    return {"views": [int(v) for v in views], "rig": rig.kind, "width": rig.width, "height": rig.height,
            "samples": settings.reference_samples, "aa": rendered.aa, "bounces": settings.bounces,
            "source": f"engine renderer ({rendered.device})", "seconds": round(rendered.seconds, 3), "files": files}


def bake_scene(scene: Scene, out_dir: str | Path, settings: BakeSettings | None = None, *,
               progress: Progress = no_progress) -> dict[str, Any]:
    """Bake every static, visible object of ``scene`` into lightmaps under ``out_dir``; return the summary."""
    from engine.bake.bvh import build_bvh
    from engine.bake.integrate import IntegrateSettings, integrate, prepare_bake_inputs, scene_triangles
    from engine.bake.kernels import explain_device
    from engine.bake.output import export_lightmapped_gltf, write_exr, write_png_rgbm
    from engine.bake.post import denoise_lightmap, dilate
    from engine.bake.texels import rasterize_texels
    from engine.bake.uv import lightmap_layout

    settings = settings or BakeSettings()
    out = Path(out_dir)
    try:
        (out / "lightmaps").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder ({exc.strerror or exc})", where=str(out)) from None
    scene.require_content()
    if not scene.lights and not any(m.is_emissive for m in scene.materials) and max(scene.environment) <= 0:
        raise InputError("the scene has no lights, no emissive materials and a black environment: "
                         "a bake would be black", where=scene.source or scene.name,
                         hint="add a light or an emissive material")
    timings: dict[str, float] = {}
    started = time.perf_counter()

    progress("layout", 0.0, "lightmap UVs")
    layout = lightmap_layout(scene, texels_per_metre=settings.texels_per_metre, atlas_size=settings.atlas_size,
                             padding=settings.padding)
    timings["layout_s"] = time.perf_counter() - started
    progress("layout", 1.0, f"{layout.atlas_count} atlas(es) of {layout.atlas_size}²")

    mark = time.perf_counter()
    texels = rasterize_texels(layout)
    if texels.count == 0:
        raise InputError("no texel is covered by any lightmap UV", where=scene.source or scene.name,
                         hint="raise --texels-per-metre")
    timings["texels_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    triangles = scene_triangles(scene)
    bvh = build_bvh(np.asarray(triangles.corners, np.float32))
    timings["bvh_s"] = time.perf_counter() - mark

    device, why = explain_device(settings.device)
    inputs = prepare_bake_inputs(scene, texels, triangles=triangles)
    mark = time.perf_counter()
    result = integrate(
        inputs, bvh,
        IntegrateSettings(samples=settings.samples, bounces=settings.bounces, ao_distance=settings.ao_distance,
                          seed=settings.seed, time_budget_s=settings.time_budget_s, device=device),
        progress=progress,
    )
    timings["integrate_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    progress("post", 0.0, "dilate, denoise, write")
    files: list[str] = []
    lightmaps: list[np.ndarray] = []
    for atlas in range(layout.atlas_count):
        mask = texels.mask(atlas)
        image = np.zeros((layout.atlas_size, layout.atlas_size, 3), np.float32)
        chosen = texels.atlas == atlas
        image[texels.y[chosen], texels.x[chosen]] = result.lighting[chosen]
        if settings.denoise:
            image = denoise_lightmap(image, mask=mask)
        image = dilate(image, mask, max(2, settings.padding))
        lightmaps.append(image)
        exr = out / "lightmaps" / f"atlas_{atlas}.exr"
        png = out / "lightmaps" / f"atlas_{atlas}.rgbm.png"
        write_exr(exr, image)
        write_png_rgbm(png, image)
        files += [str(exr.relative_to(out)), str(png.relative_to(out))]
    gltf = export_lightmapped_gltf(scene, layout, lightmaps, out / "scene.glb")
    files.append(str(gltf.relative_to(out)))
    files.append(write_corner_uvs(out / "lightmap_uv.npz", layout).name)
    timings["post_s"] = time.perf_counter() - mark
    references = None
    if settings.reference_views > 0:
        mark = time.perf_counter()
        references = write_reference_views(scene, layout, out, settings, device, progress=progress)
        files += references["files"]
        timings["references_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    rays = _rays_estimate(texels.count, result.samples, settings.bounces, settings.ao_distance > 0)
    summary = {
        "scene": scene.name,
        "objects": [e.name for e in layout.entries],
        "entries": [{"name": e.name, "atlas": e.atlas, "triangles": e.n_triangles, "generated": e.generated,
                     "reason": e.reason, "texels_per_metre": round(e.texels_per_metre, 4)} for e in layout.entries],
        "atlas_size": layout.atlas_size,
        "atlas_count": layout.atlas_count,
        "texels_per_metre": layout.texels_per_metre,
        "texels": int(texels.count),
        "samples": result.samples,
        "bounces": settings.bounces,
        "rays_traced": rays,
        "rays_traced_is_upper_bound": True,
        "rays_per_second": rays / max(result.seconds, 1e-9),
        "device": result.device,
        "device_reason": why,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "files": files,
        "settings": asdict(settings),
        "warnings": list(layout.warnings),
    }
    if references is not None:
        summary["references"] = references
    (out / "bake.json").write_text(json.dumps(summary, indent=2))
    progress("post", 1.0, f"wrote {len(files)} files")
    return summary
