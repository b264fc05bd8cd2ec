"""The splat pipeline: scene → camera rig → reference views → init → train → evaluate → files.

One function, :func:`splat_scene`, that the CLI (`optimizer splat`), the service (`splat` job
kind) and the one-click pipeline call. It writes, into an output folder:

* ``splat.ply``: the standard 3DGS PLY (INRIA property set, binary little endian);
* ``splat.compressed.ply``: the same as PlayCanvas compressed PLY (SuperSplat, PlayCanvas);
* ``cameras.json``: the rig (Blender and OpenCV conventions, train/test split) and the frame;
* ``views/test_<k>.png``: each held-out view, reference | splat side by side;
* ``references/test_<k>.png``: each held-out reference view as trained against (8-bit sRGB RGBA, straight
  alpha): what peers re-render the splat against (:mod:`engine.trust.verify`);
* ``splat.json``: the summary (Gaussians, steps, held-out PSNR/SSIM, device, timings, warnings);
* ``checkpoint.pt``: the trainer's state, so a run that stopped resumes (removed on success
  unless ``keep_checkpoint``).

The rig: ``object`` puts cameras on a sphere around the objects, ``interior`` inside them
looking around; ``auto`` takes ``interior`` when the objects enclose their centre (see
:func:`enclosure_share`).

Frames: the Scene is Z-up. The files use the frame 3DGS tools expect (COLMAP/OpenCV-like: +Y
down, so the scene's +Z is −Y; x stays), which SuperSplat and the Unity/Blender splat add-ons
show upright. Training itself runs in that frame (cameras and initial Gaussians are rotated
once), so the SH coefficients need no rotation on export. :data:`SCENE_TO_FILE` is that
rotation; the Blender preview applies its inverse.

Reference views come from the engine renderer (:mod:`engine.render.views`, path traced with
the bake's tracer, CPU or CUDA), or are passed in (``references``: the add-on renders them
with Cycles). Targets are sRGB with straight alpha; backgrounds stay transparent.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError
from engine.progress import Progress, no_progress
from engine.scene.model import Scene
from engine.splat.frames import FRAME, init_to_file_frame, viewmats_to_file_frame

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class SplatSettings:
    """What the artist can choose. ``init_points`` None: 10,000 on the CPU, 100,000 on CUDA."""

    steps: int = 3000
    views: int = 64
    resolution: int = 128
    fov_deg: float = 40.0
    test_every: int = 8
    rig: str = "auto"
    init: str = "mesh"
    init_points: int | None = None
    render_samples: int = 32
    render_bounces: int = 2
    render_aa: int = 4
    sh_degree: int = 3
    strategy: str = "default"
    max_gaussians: int = 1_000_000
    device: str = "auto"
    seed: int = 0
    time_budget_s: float | None = None
    objects: tuple[str, ...] | None = None
    keep_checkpoint: bool = False

    def __post_init__(self) -> None:
        where = "splat settings"
        for name, low, high in (("views", 2, 10_000), ("resolution", 16, 4096), ("test_every", 2, 10_000),
                                ("render_samples", 1, 1 << 16), ("render_bounces", 0, 64), ("render_aa", 1, 64)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}", where=where)
        if self.init not in ("mesh", "random"):
            raise ConfigError(f"init is {self.init!r}, expected mesh or random", where=where)
        if self.rig not in ("auto", "object", "interior"):
            raise ConfigError(f"rig is {self.rig!r}, expected auto, object or interior", where=where)
        if self.init_points is not None and (isinstance(self.init_points, bool) or self.init_points < 1):
            raise ConfigError(f"init_points must be at least 1, got {self.init_points!r}", where=where)
        if self.objects is not None:
            object.__setattr__(self, "objects", tuple(self.objects))
        self.train_settings()  # validates the trainer's part (steps, device, strategy, ...)

    def train_settings(self) -> Any:
        from engine.splat.train import TrainSettings

        return TrainSettings(steps=self.steps, sh_degree=self.sh_degree, strategy=self.strategy,
                             max_gaussians=self.max_gaussians, device=self.device, seed=self.seed,
                             time_budget_s=self.time_budget_s, checkpoint_every=max(50, min(500, self.steps // 4)))


def _srgb_straight(rgba_premultiplied: np.ndarray) -> np.ndarray:
    """Linear premultiplied RGBA → sRGB straight-alpha RGBA in [0, 1] (the trainer's targets)."""
    from engine.bake.output import srgb_encode
    from engine.render.views import to_straight

    straight = to_straight(rgba_premultiplied)
    out = np.empty_like(straight, dtype=np.float32)
    out[..., :3] = srgb_encode(np.clip(straight[..., :3], 0.0, 1.0))
    out[..., 3] = np.clip(straight[..., 3], 0.0, 1.0)
    return out


def _select(scene: Scene, objects: tuple[str, ...] | None) -> Scene:
    if objects is None:
        return scene
    names = {o.name for o in scene.objects}
    missing = [name for name in objects if name not in names]
    if missing:
        raise InputError(f"no object named {', '.join(map(repr, missing))}", where=scene.source or scene.name,
                         hint=f"objects are: {', '.join(sorted(names)[:20])}")
    return replace(scene, objects=tuple(o for o in scene.objects if o.name in set(objects)))


ENCLOSED_SHARE = 0.75


def enclosure_share(corners: np.ndarray, directions: int = 512) -> float:
    """Share of directions from the centre of the bounds that meet the *front* of a surface.

    Inside a room nearly every direction sees a wall from its front (the wall faces the
    centre); from inside a closed object one sees back faces, and around an open object most
    rays escape. ``auto`` picks the interior rig when this is at least :data:`ENCLOSED_SHARE`.
    """
    from engine.bake.bvh import build_bvh
    from engine.bake.kernels import trace_closest_cpu
    from engine.splat.rig import fibonacci_directions

    tris = np.asarray(corners, np.float32).reshape(-1, 3, 3)
    points = tris.reshape(-1, 3)
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    dirs = fibonacci_directions(directions).astype(np.float32)
    origins = np.broadcast_to(centre.astype(np.float32), dirs.shape).copy()
    _, tri, _, _ = trace_closest_cpu(origins, dirs, np.inf, build_bvh(tris))
    hit = tri >= 0
    normals = np.cross(tris[tri[hit], 1] - tris[tri[hit], 0], tris[tri[hit], 2] - tris[tri[hit], 0])
    front = np.einsum("ij,ij->i", normals, dirs[hit]) < 0
    return float(front.sum() / directions)


def _side_by_side(reference: np.ndarray, rendered: np.ndarray) -> np.ndarray:
    def over_white(rgba: np.ndarray) -> np.ndarray:
        return rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])

    row = np.concatenate([over_white(reference), rendered[..., :3]], axis=1)
    return (np.clip(row, 0, 1) * 255 + 0.5).astype(np.uint8)


def splat_scene(
    scene: Scene,
    out_dir: str | Path,
    settings: SplatSettings | None = None,
    *,
    references: tuple[Any, np.ndarray] | None = None,
    progress: Progress = no_progress,
    cancel: Any = None,
) -> dict[str, Any]:
    """Train Gaussians for ``scene`` (or ``settings.objects`` of it) and write the files under ``out_dir``.

    ``references``: optional (rig, rgba[, source]) with rgba (C, H, W, 4) linear premultiplied
    (as :func:`engine.render.views.render_views` and the add-on's Cycles renderer make them) to
    use instead of rendering.
    """
    from PIL import Image

    from engine.bake.integrate import scene_triangles
    from engine.splat.compressed import write_compressed_ply
    from engine.splat.init import init_from_mesh, init_random
    from engine.splat.ply import write_ply
    from engine.splat.rig import plan_rig
    from engine.splat.train import evaluate, resolve_device, train_gaussians

    settings = settings or SplatSettings()
    out = Path(out_dir)
    try:
        (out / "views").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder ({exc.strerror or exc})", where=str(out)) from None
    scene.require_content()
    chosen = _select(scene, settings.objects)
    timings: dict[str, float] = {}
    warnings: list[str] = []
    started = time.perf_counter()
    triangles = scene_triangles(chosen)
    if triangles.count == 0:
        raise InputError("nothing to splat: no visible, static triangles", where=scene.source or scene.name,
                         hint="splat static, visible objects (animated ones stay live)")
    corners = triangles.corners.reshape(-1, 3)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    device = resolve_device(settings.device)

    # the rig and the reference views
    if references is not None:
        rig, rgba = references[:2]
        source = references[2] if len(references) > 2 else "given"
        rgba = np.asarray(rgba, np.float32)
        if rgba.shape != (rig.count, rig.height, rig.width, 4):
            raise ConfigError(f"reference views have shape {rgba.shape}, expected "
                              f"({rig.count}, {rig.height}, {rig.width}, 4)", where="references")
    else:
        from engine.render.views import render_views

        kind = settings.rig
        if kind == "auto":
            share = enclosure_share(triangles.corners)
            kind = "interior" if share >= ENCLOSED_SHARE else "object"
            log.info("rig: %s (%.0f %% of directions from the centre see a front face)", kind, 100 * share)
        rig = plan_rig(lo, hi, kind=kind, views=settings.views, width=settings.resolution, fov_deg=settings.fov_deg,
                       test_every=settings.test_every, seed=settings.seed, enclosed=kind == "interior")
        progress("render", 0.0, f"{rig.count} reference views at {rig.width}×{rig.height}")
        rendered = render_views(chosen, rig.viewmats, rig.Ks, rig.width, rig.height, samples=settings.render_samples,
                                bounces=settings.render_bounces, aa=settings.render_aa, seed=settings.seed,
                                device="cuda" if device == "cuda" else "cpu", progress=progress)
        rgba = rendered.rgba
        source = f"engine renderer ({rendered.device}, {settings.render_samples} samples × {settings.render_aa} rays)"
    timings["render_s"] = time.perf_counter() - started
    coverage = rgba[..., 3].reshape(rgba.shape[0], -1).mean(axis=1)
    blind = np.flatnonzero(coverage <= 0)
    if blind.size == rgba.shape[0]:
        raise InputError("no camera sees the objects to splat", where=scene.source or scene.name,
                         hint="check the rig (--rig object|interior) and the objects' visibility")
    if blind.size:
        warnings.append(f"{blind.size} view(s) see nothing: {', '.join(map(str, blind[:10]))}")
    targets = _srgb_straight(rgba)
    viewmats = viewmats_to_file_frame(rig.viewmats)

    # init
    mark = time.perf_counter()
    count = settings.init_points or (100_000 if device == "cuda" else 10_000)
    if settings.init == "mesh":
        init = init_from_mesh(chosen, count, seed=settings.seed)
    else:
        init = init_random(lo, hi, count, seed=settings.seed)
    init = init_to_file_frame(init)
    timings["init_s"] = time.perf_counter() - mark

    # train
    mark = time.perf_counter()
    checkpoint = out / "checkpoint.pt"
    result = train_gaussians(init, targets, viewmats, rig.Ks, rig.train, settings.train_settings(),
                             checkpoint=checkpoint, progress=progress, cancel=cancel)
    timings["train_s"] = time.perf_counter() - mark

    # evaluate and export
    mark = time.perf_counter()
    progress("evaluate", 0.0, f"{len(rig.test)} held-out views")
    held_out = evaluate(result, targets, viewmats, rig.Ks, rig.test, device=device)
    train_eval = evaluate(result, targets, viewmats, rig.Ks, np.asarray(rig.train)[:8], device=device)
    files = []
    for i, view in enumerate(np.asarray(rig.test)):
        path = out / "views" / f"test_{int(view)}.png"
        Image.fromarray(_side_by_side(targets[view], held_out["rendered"][i])).save(path)
        files.append(str(path.relative_to(out)))
    (out / "references").mkdir(exist_ok=True)
    for view in np.asarray(rig.test):
        path = out / "references" / f"test_{int(view)}.png"
        Image.fromarray((np.clip(targets[view], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)).save(path)
        files.append(path.relative_to(out).as_posix())
    timings["evaluate_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    cloud = result.cloud()
    write_ply(out / "splat.ply", cloud)
    write_compressed_ply(out / "splat.compressed.ply", cloud)
    rig_dict = rig.to_dict()
    rig_dict["frame"] = FRAME
    rig_dict["viewmats_file_frame"] = viewmats.tolist()
    (out / "cameras.json").write_text(json.dumps(rig_dict))
    files = ["splat.ply", "splat.compressed.ply", "cameras.json", *files]
    timings["export_s"] = time.perf_counter() - mark
    if not settings.keep_checkpoint:
        checkpoint.unlink(missing_ok=True)
    else:
        files.append("checkpoint.pt")
    timings["total_s"] = time.perf_counter() - started
    sizes = {name: (out / name).stat().st_size for name in ("splat.ply", "splat.compressed.ply")}
    summary = {
        "scene": scene.name,
        "objects": [o.name for o in chosen.objects if o.visible and not o.animated],
        "gaussians": result.count,
        "initial_gaussians": init.count,
        "init": settings.init,
        "steps": result.steps,
        "stopped_by": result.stopped_by,
        "resumed_from": result.resumed_from,
        "views": {"total": rig.count, "train": len(rig.train), "test": len(rig.test), "width": rig.width,
                  "height": rig.height, "rig": rig.kind},
        "references": source,
        "psnr": held_out["psnr"],
        "ssim": held_out["ssim"],
        "train_psnr": train_eval["psnr"],
        "per_view": held_out["per_view"],
        "metric_background": "white",
        "device": result.device,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "train_steps_per_s": round(max(result.steps - result.resumed_from, 0) / max(result.seconds, 1e-9), 3),
        "bytes": sizes,
        "compressed_bytes_per_gaussian": round(sizes["splat.compressed.ply"] / max(result.count, 1), 2),
        "frame": FRAME,
        "files": files,
        "history": result.history[-20:],
        "settings": asdict(settings),
        "warnings": warnings,
    }
    (out / "splat.json").write_text(json.dumps(summary, indent=2))
    progress("export", 1.0, f"{result.count} Gaussians, held-out PSNR {held_out['psnr']} dB")
    return summary
