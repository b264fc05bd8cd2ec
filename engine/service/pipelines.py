"""Pipeline kinds the node can run, registered by name through one small interface.

A pipeline is a function ``run(ctx: JobContext) -> None`` that reads its scene and options
from the context, reports progress through it (which is also where cancellation is noticed),
and stores what it makes as artifacts. It runs in a worker process, never in the API process.
``analyze`` ships here; bake, splat and verify register themselves in their own issues.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import InputError, OptimizerError

if TYPE_CHECKING:
    from engine.scene.model import Scene
    from engine.service.store import JobStore


class JobCancelled(OptimizerError):
    """Raised inside a pipeline when its job was cancelled; the worker records the cancel."""


@dataclass(frozen=True)
class PipelineSpec:
    """A registered kind: where its run function lives and whether it needs a GPU."""

    kind: str
    target: str  # "package.module:function", imported in the worker process
    gpu: bool = False
    description: str = ""

    def load(self) -> Callable[[JobContext], None]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


REGISTRY: dict[str, PipelineSpec] = {}


def register_pipeline(spec: PipelineSpec) -> PipelineSpec:
    """Make a pipeline kind available to jobs (idempotent for the same spec)."""
    existing = REGISTRY.get(spec.kind)
    if existing is not None and existing != spec:
        raise ValueError(f"pipeline kind {spec.kind!r} is already registered as {existing.target}")
    REGISTRY[spec.kind] = spec
    return spec


def pipeline(kind: str) -> PipelineSpec:
    try:
        return REGISTRY[kind]
    except KeyError:
        raise InputError(f"unknown job kind {kind!r}", where="kind",
                         hint=f"this node runs: {', '.join(sorted(REGISTRY))}") from None


class JobContext:
    """What a running pipeline sees: its options, scene, progress reporting and artifacts."""

    CANCEL_CHECK_SECONDS = 0.25

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        job = store.get(job_id)
        self.kind = job.kind
        self.options: dict[str, Any] = dict(job.options)
        self.scene_digest = job.scene_digest
        self._last_cancel_check = 0.0

    def scene(self) -> Scene:
        """The job's scene, decoded (and validated again) from the encrypted store."""
        from engine.scene import wire
        from engine.scene.model import Scene

        if self.scene_digest is None:
            raise InputError("this job has no scene", where=f"job {self.job_id}")
        return wire.decode(self.store.load_scene(self.scene_digest), expect=Scene)

    def check_cancel(self) -> None:
        """Raise JobCancelled if the job was cancelled (checked at most every 0.25 s)."""
        now = time.monotonic()
        if now - self._last_cancel_check < self.CANCEL_CHECK_SECONDS:
            return
        self._last_cancel_check = now
        if self.store.get(self.job_id).cancel_requested:
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        """Report progress (the engine's Progress callback type) and notice cancellation."""
        self.store.progress(self.job_id, stage, fraction, message)
        self.check_cancel()

    def message(self, text: str) -> None:
        self.store.message(self.job_id, text)

    def add_artifact(self, name: str, data: bytes, content_type: str) -> None:
        self.store.add_artifact(self.job_id, name, data, content_type)


def policy_from_options(options: dict[str, Any]) -> Any:
    """The routing policy a job's options ask for (mode and threshold overrides)."""
    from engine.route import RoutingPolicy

    return RoutingPolicy(mode=options.get("mode", "object")).with_overrides(dict(options.get("overrides") or {}))


def run_analyze(ctx: JobContext) -> None:
    """The `analyze` kind: features, complexity and plan of the job's scene."""
    from engine.route import analyze_and_plan
    from engine.scene import wire

    ctx.progress("analyze", 0.0, "reading the scene")
    scene = ctx.scene()
    ctx.progress("analyze", 0.3, f"{scene.n_triangles:,} triangles in {len(scene.objects)} objects")
    result = analyze_and_plan(scene, policy_from_options(ctx.options), overrides=ctx.options.get("routes") or {})
    ctx.add_artifact("analysis.json", json.dumps(result.to_dict()).encode(), "application/json")
    ctx.add_artifact("analysis.optw", wire.encode(result), "application/x-optimizer-wire")
    ctx.progress("analyze", 1.0, f"pipeline {result.plan.pipeline}")


register_pipeline(PipelineSpec("analyze", "engine.service.pipelines:run_analyze",
                               description="scene features, complexity score and routing plan"))


#: Content types of the files the bake, splat and optimize kinds store as artifacts.
CONTENT_TYPES = {".json": "application/json", ".ply": "application/x-ply", ".png": "image/png", ".exr": "image/x-exr",
                 ".glb": "model/gltf-binary", ".html": "text/html"}


def settings_from_params(cls: type, params: dict[str, Any], kind: str) -> Any:
    """``cls(**params)`` for a kind's ``options.params``; unknown or ill-typed settings are an
    InputError naming them."""
    known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(set(params) - known)
    if unknown:
        raise InputError(f"unknown {kind} setting(s) {', '.join(unknown)}", where="options.params",
                         hint=f"known: {', '.join(sorted(known))}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise InputError(f"bad {kind} settings ({exc})", where="options.params") from None


def add_folder_artifacts(ctx: JobContext, folder: Any, *, skip: tuple[str, ...] = ()) -> None:
    """Store every file under ``folder`` as an artifact of the job, a ``/`` in its path written as
    ``__`` (``EngineClient.download_artifacts`` restores the folders)."""
    from pathlib import Path

    root = Path(folder)
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in skip:
            ctx.add_artifact(path.relative_to(root).as_posix().replace("/", "__"), path.read_bytes(),
                             CONTENT_TYPES.get(path.suffix, "application/octet-stream"))


def run_bake(ctx: JobContext) -> None:
    """The `bake` kind: lightmaps of the job's scene (settings from ``options.params``)."""
    import tempfile

    from engine.bake.pipeline import BakeSettings, bake_scene

    settings = settings_from_params(BakeSettings, dict(ctx.options.get("params") or {}), "bake")
    scene = ctx.scene()
    with tempfile.TemporaryDirectory(prefix="optimizer-bake-") as tmp:
        bake_scene(scene, tmp, settings, progress=ctx.progress)
        add_folder_artifacts(ctx, tmp)


register_pipeline(PipelineSpec("bake", "engine.service.pipelines:run_bake", gpu=True,
                               description="lightmaps for the static objects (numba tracer, CPU or CUDA)"))

def run_splat(ctx: JobContext) -> None:
    """The `splat` kind: Gaussians for the job's scene (settings from ``options.params``).

    The trainer checkpoints into a folder kept per job under the node's scratch space, so a job
    that a restart interrupts resumes from its last checkpoint when it runs again.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from engine.splat.pipeline import SplatSettings, splat_scene

    params = dict(ctx.options.get("params") or {})
    references_ref = ctx.options.get("references")
    if isinstance(params.get("objects"), list):
        params["objects"] = tuple(params["objects"])
    settings = settings_from_params(SplatSettings, params, "splat")
    scene = ctx.scene()
    references = None
    if references_ref is not None:
        from engine.scene import wire
        from engine.splat.references import ReferenceViews

        try:
            views = wire.decode(ctx.store.load_scene(str(references_ref)), expect=ReferenceViews)
        except InputError as exc:
            raise InputError(f"the reference views cannot be used ({exc})", where="options.references") from None
        references = (views.rig, views.rgba.astype(np.float32), views.source)
    work = Path(tempfile.gettempdir()) / "optimizer-splat" / ctx.job_id
    splat_scene(scene, work, settings, references=references, progress=ctx.progress,
                cancel=lambda: ctx.check_cancel() or False)
    add_folder_artifacts(ctx, work, skip=("checkpoint.pt",))
    shutil.rmtree(work, ignore_errors=True)


register_pipeline(PipelineSpec("splat", "engine.service.pipelines:run_splat", gpu=True,
                               description="3D Gaussians trained on path-traced views (gsplat on CUDA, PyTorch on CPU)"))

PLUGIN_ENV = "OPTIMIZER_PIPELINE_MODULES"


def load_pipeline_modules(names: str | None = None) -> list[str]:
    """Import extra modules that register pipelines (comma-separated; default from the env).

    The server and every worker process call this, so a kind registered by a plugin module
    exists on both sides. An unimportable module is a configuration error naming it.
    """
    from engine.errors import ConfigError

    raw = names if names is not None else os.environ.get(PLUGIN_ENV, "")
    loaded = []
    for name in filter(None, (part.strip() for part in raw.split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"cannot import pipeline module {name!r} ({exc})", where=PLUGIN_ENV) from None
        loaded.append(name)
    return loaded


register_pipeline(PipelineSpec("verify", "engine.trust.verify:run_verify_job",
                               description="peers re-render a finished splat job's result at sampled views and vote "
                                           "(options.params: job, peers?, min_verifiers?, max_verifiers?, ...)"))


def run_optimize(ctx: JobContext) -> None:
    """The `optimize` kind: the one-click pipeline (:func:`engine.pipeline.optimize_scene`) on the
    job's scene, with this node as the coordinator (its identity, peers, reputations and audit log).

    ``options.params`` takes the fields of :class:`engine.pipeline.OptimizeSettings` (``bake`` and
    ``splat`` dicts, ``quality``, ``verify``, ``peer_urls``, ``local_peers``, ``deadline_hours``,
    ``device``); ``options.routes`` the artist's per-object routes. Every file of the result folder
    becomes an artifact (``/`` written as ``__``), ``report.html`` and ``manifest.json`` included.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from engine.pipeline import OptimizeSettings, optimize_scene

    params = dict(ctx.options.get("params") or {})
    if isinstance(params.get("peer_urls"), list):
        params["peer_urls"] = tuple(params["peer_urls"])
    params.setdefault("routes", dict(ctx.options.get("routes") or {}))
    names = {"ssim": "ssim_min", "psnr": "psnr_min", "lpips": "lpips_max", "vmaf": "vmaf_min", "flip": "flip_max"}
    params.setdefault("quality", {names[k]: v for k, v in dict(ctx.options.get("quality") or {}).items()
                                  if v is not None and k in names})
    settings = settings_from_params(OptimizeSettings, params, "optimize")
    scene = ctx.scene()
    work = Path(tempfile.mkdtemp(prefix=f"optimizer-optimize-{ctx.job_id[:8]}-"))
    try:
        optimize_scene(scene, work, settings, node_dir=ctx.store.data_dir, progress=ctx.progress)
        add_folder_artifacts(ctx, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


register_pipeline(PipelineSpec("optimize", "engine.service.pipelines:run_optimize", gpu=True,
                               description="the one-click pipeline: route, quote, bake/splat, verify, audit, report"))
