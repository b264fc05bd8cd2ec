"""Operators: Analyze (in process, fast), Optimize (through the engine, never blocking), Cancel."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import bpy

from . import engine_link
from .properties import engine_settings


def run_analysis(context: bpy.types.Context, *, mode: str = "object", overrides: dict[str, str] | None = None,
                 settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Snapshot the scene and analyse/route it; returns the `optimizer analyze --json` dict."""
    from engine.route import RoutingPolicy, analyze_and_plan

    from .snapshot import snapshot_scene

    state = context.scene.optimizer
    started = time.perf_counter()
    scene = snapshot_scene(context, selected_only=state.selected_only)
    snapshot_ms = (time.perf_counter() - started) * 1e3
    policy = RoutingPolicy(mode=mode).with_overrides(settings or {})
    result = analyze_and_plan(scene, policy, overrides=overrides or None).to_dict()
    result["timings_ms"]["snapshot"] = round(snapshot_ms, 3)
    return result


def store_result(state: Any, result: dict[str, Any]) -> None:
    """Keep the analysis on the scene and refresh the route list, keeping the artist's overrides."""
    kept = {item.name: item.override for item in state.routes}
    state.result_json = json.dumps(result)
    state.routes.clear()
    for name, entry in result["plan"]["objects"].items():
        item = state.routes.add()
        item.name = name
        item.route = entry["route"]
        item.reasons = "; ".join(entry["reasons"])
        item.triangles = int(result["features"]["objects"].get(name, {}).get("triangles", 0))
        item.override = kept.get(name, "AUTO")


class OPTIMIZER_OT_analyze(bpy.types.Operator):
    """Analyse the scene: complexity, features, and the pipeline for each object with reasons"""

    bl_idname = "optimizer.analyze"
    bl_label = "Analyze"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        from engine.errors import InputError

        state = context.scene.optimizer
        try:
            result = run_analysis(context, overrides=state.overrides() or None)
        except InputError as exc:
            self.report({"ERROR"}, str(exc))
            state.status = str(exc)
            return {"CANCELLED"}
        store_result(state, result)
        timings = result["timings_ms"]
        state.status = (f"{result['plan']['pipeline'].upper()}: complexity {result['complexity']:.2f}, "
                        f"analysed in {timings['snapshot'] + timings['analyze'] + timings['route']:.0f} ms")
        self.report({"INFO"}, state.status)
        return {"FINISHED"}


class OPTIMIZER_OT_optimize(bpy.types.Operator):
    """Send the scene to the local Optimizer engine and follow the job (Esc cancels)"""

    bl_idname = "optimizer.optimize"
    bl_label = "Optimize"
    bl_options = {"REGISTER"}

    kind: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Job", default="optimize",
        items=[("optimize", "Optimize", "The whole pipeline on the engine: route, quote, bake/splat, verify with "
                                        "peers, audit; then apply the lightmaps, preview the splats, open the report"),
               ("analyze", "Analyze", "Analyse and route the scene on the engine"),
               ("bake", "Bake lighting", "Bake lightmaps on the engine and apply them to the objects"),
               ("splat", "Splat", "Train 3D Gaussians on the engine and import them as a point-cloud preview")])

    _worker: engine_link.EngineWorker | None = None
    _timer: Any = None
    _render: Any = None
    _pending: Any = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not context.scene.optimizer.running

    def _prepare(self, context: bpy.types.Context) -> tuple[Any, Any, dict[str, Any]]:
        from .snapshot import snapshot_scene

        state = context.scene.optimizer
        url, token, _ = engine_settings(context)
        client = engine_link.make_client(url, token, online_access=bool(getattr(bpy.app, "online_access", True)))
        scene = snapshot_scene(context, selected_only=state.selected_only)
        options: dict[str, Any] = {"routes": state.overrides()}
        if self.kind == "bake":
            options["params"] = state.bake_params()
        elif self.kind == "splat":
            options["params"] = state.splat_params()
        elif self.kind == "optimize":
            options["params"] = state.optimize_params()
        return client, scene, options

    def _reference_render(self, context: bpy.types.Context, scene: Any, options: dict[str, Any]) -> Any:
        """The Cycles render of a splat job's reference views (None when the engine renders them)."""
        from .splat_views import ReferenceRender, plan_views

        state = context.scene.optimizer
        if self.kind != "splat" or not state.splat_cycles_views:
            return None
        params = options["params"]
        names = params.get("objects")
        rig = plan_views(scene, names, views=params["views"], resolution=params["resolution"], kind=params["rig"])
        return ReferenceRender(context, rig, names, samples=state.splat_samples)

    def _reset(self, state: Any) -> None:
        state.job_id = state.job_state = state.job_stage = state.job_messages = state.job_artifacts = ""
        state.job_progress = 0.0
        state.job_kind = self.kind

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Background mode (no timers in -b): submit and wait in this thread."""
        from engine.errors import OptimizerError

        state = context.scene.optimizer
        self._reset(state)
        try:
            client, scene, options = self._prepare(context)
            render = self._reference_render(context, scene, options)
            if render is not None:
                views = render.run()
            engine_link.ensure_engine(client, engine_settings(context)[2])
            if render is not None:
                options["references"] = client.upload_views(views)
            job = client.submit(scene, kind=self.kind, options=options)
            state.job_id = job.id
            done = client.wait(job.id)
        except OptimizerError as exc:
            self.report({"ERROR"}, str(exc))
            state.status = str(exc)
            return {"CANCELLED"}
        self._finish(state, done.state, done.error or "", [a.name for a in done.artifacts], list(done.messages),
                     context)
        return {"FINISHED"} if done.state == "done" else {"CANCELLED"}

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        if bpy.app.background:
            return self.execute(context)
        from engine.errors import OptimizerError

        state = context.scene.optimizer
        self._reset(state)
        try:
            client, scene, options = self._prepare(context)  # bpy is read here, on the main thread
            self._render = self._reference_render(context, scene, options)
        except OptimizerError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._pending = (client, scene, options)
        state.running = True
        if self._render is not None:
            state.status = f"Rendering {self._render.rig.count} reference views with Cycles…"
        else:
            self._start_worker(context)
        self._timer = context.window_manager.event_timer_add(0.1, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _start_worker(self, context: bpy.types.Context, views: Any = None) -> None:
        """Send the job from a worker thread (uploading Cycles reference views first, if any)."""
        client, scene, options = self._pending
        start_command = engine_settings(context)[2]
        kind = self.kind

        def task(worker: engine_link.EngineWorker) -> None:
            worker.post("progress", stage="connect", fraction=0.0, text=f"connecting to {client.url}")
            engine_link.ensure_engine(client, start_command)
            if views is not None:
                worker.post("progress", stage="upload", fraction=0.0, text="uploading the reference views")
                options["references"] = client.upload_views(views)
            engine_link.submit_and_follow(client, scene, options, worker, kind=kind)

        context.scene.optimizer.status = "Optimizing…"
        self._worker = engine_link.start(task)

    def _render_step(self, context: bpy.types.Context, event: Any) -> set[str]:
        """One Cycles reference view per timer tick; then hand over to the worker."""
        from engine.errors import OptimizerError

        state = context.scene.optimizer
        render = self._render
        if event.type == "ESC":
            render.close()
            self._render = None
            state.status = "Cancelled while rendering the reference views"
            return self._end(context)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            if render.step():
                state.job_stage, state.job_progress = "render views", render.fraction
                if context.workspace is not None:
                    context.workspace.status_text_set(
                        f"Optimizer: Cycles reference views {render.fraction:.0%} (Esc cancels)")
                return {"PASS_THROUGH"}
            views = render.finish()
        except OptimizerError as exc:
            render.close()
            self._render = None
            self.report({"ERROR"}, str(exc))
            state.status = str(exc)
            return self._end(context)
        self._render = None
        self._start_worker(context, views)
        return {"PASS_THROUGH"}

    def modal(self, context: bpy.types.Context, event: Any) -> set[str]:
        state = context.scene.optimizer
        if self._render is not None:
            return self._render_step(context, event)
        if event.type == "ESC" and self._worker is not None:
            self._worker.cancel()
            state.status = "Cancelling…"
        if event.type != "TIMER" or self._worker is None:
            return {"PASS_THROUGH"}
        for update in self._worker.drain():
            if update.kind == "job":
                state.job_id = update.data.get("id", state.job_id)
                state.job_state = update.data.get("state", "")
            elif update.kind == "progress":
                state.job_stage = update.data.get("stage", "")
                state.job_progress = float(update.data.get("fraction", 0.0))
                if update.data.get("text"):
                    state.job_messages = update.data["text"]
            elif update.kind == "message":
                state.job_messages = update.data.get("text", "")
            elif update.kind in ("done", "error"):
                if update.kind == "error":
                    self.report({"ERROR"}, update.data.get("text", "error"))
                    state.status = update.data.get("text", "error")
                    state.job_state = "failed"
                else:
                    self._finish(state, update.data["state"], update.data.get("error", ""),
                                 update.data.get("artifacts", []), update.data.get("messages", []), context)
                return self._end(context)
        if context.workspace is not None:
            context.workspace.status_text_set(
                f"Optimizer: {state.job_state or 'starting'} {state.job_stage} {state.job_progress:.0%} (Esc cancels)")
        for area in context.screen.areas if context.screen else ():
            if area.type == "VIEW_3D":
                area.tag_redraw()
        if not self._worker.is_alive() and not self._worker.updates.qsize():
            return self._end(context)
        return {"PASS_THROUGH"}

    def _finish(self, state: Any, job_state: str, error: str, artifacts: list[str], messages: list[str],
                context: bpy.types.Context) -> None:
        state.job_state = job_state
        state.job_artifacts = ", ".join(artifacts)
        if messages:
            state.job_messages = messages[-1]
        if job_state == "done":
            state.job_progress = 1.0
            state.status = f"Done: {len(artifacts)} result(s) from job {state.job_id[:8]}"
            if state.job_kind in ("bake", "splat", "optimize"):
                state.status = _use_job_result(context, state.job_id, state.job_kind)
                self.report({"INFO"}, state.status)
                return
            result = _analysis_from_job(state.job_id)
            if result is not None:
                store_result(state, result)
        else:
            state.status = f"Job {job_state}{': ' + error if error else ''}"

    def _end(self, context: bpy.types.Context) -> set[str]:
        state = context.scene.optimizer
        state.running = False
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        self._worker = None
        return {"FINISHED"}


def _analysis_from_job(job_id: str) -> dict[str, Any] | None:
    """The job's analysis.json artifact, if the engine made one (best effort)."""
    from engine.errors import OptimizerError

    url, token, _ = engine_settings()
    try:
        client = engine_link.make_client(url, token)
        return json.loads(client.artifact(job_id, "analysis.json"))
    except (OptimizerError, ValueError):
        return None


def result_folder(job_id: str, kind: str) -> tuple[Path, bool]:
    """Where a job's results go: ``//optimizer_<kind>/<job>`` beside a saved file, else a
    temporary folder (then images are packed into the file). Returns (folder, pack)."""
    if bpy.data.filepath:
        return Path(bpy.path.abspath(f"//optimizer_{kind}/{job_id[:12]}")), False
    return Path(tempfile.mkdtemp(prefix=f"optimizer-{kind}-{job_id[:8]}-")), True


def _use_job_result(context: bpy.types.Context, job_id: str, kind: str) -> str:
    """Download a finished bake or splat job's files, then apply the bake or import the splat;
    returns the status line."""
    from engine.errors import OptimizerError

    url, token, _ = engine_settings(context)
    folder, pack = result_folder(job_id, kind)
    try:
        engine_link.make_client(url, token).download_artifacts(job_id, folder)
        if kind == "optimize":
            return use_optimize_result(context, folder, pack=pack)
        if kind == "bake":
            from .apply_bake import apply_bake

            return f"Bake applied: {apply_bake(context, folder, pack_images=pack).summary()}"
        from .splat_preview import import_splat

        obj = import_splat(context, folder / "splat.ply", name=f"Splat {job_id[:8]}")
        summary = json.loads((folder / "splat.json").read_text())
        return (f"Splat imported: {len(obj.data.vertices):,} Gaussians, held-out PSNR {summary.get('psnr')} dB "
                f"({folder / 'splat.ply'})")
    except (OptimizerError, OSError, ValueError) as exc:
        return f"The {kind} job is done, but using its result failed: {exc}"


def use_optimize_result(context: bpy.types.Context, folder: Path, *, pack: bool = False,
                        open_report: bool = True) -> str:
    """Apply a one-click result folder: lightmaps wired into the baked objects, the splat previewed,
    the verdict, cost and window in the status line, the report opened (not in background mode)."""
    from .apply_bake import apply_bake
    from .splat_preview import import_splat

    manifest = json.loads((folder / "manifest.json").read_text())
    done = []
    if (folder / "bake" / "bake.json").is_file():
        done.append(f"lightmaps: {apply_bake(context, folder / 'bake', pack_images=pack).summary()}")
    if (folder / "splat" / "splat.ply").is_file():
        obj = import_splat(context, folder / "splat" / "splat.ply", name="Optimizer splat")
        done.append(f"splat: {len(obj.data.vertices):,} Gaussians")
    verdicts = ", ".join(f"{k} {'accepted' if v['accepted'] else 'NOT accepted'}"
                         for k, v in manifest.get("verification", {}).items()) or "not verified"
    schedule = manifest.get("schedule") or {}
    total = schedule.get("total") or {}
    cost = (f"; cost {total['cost']:.4g} {schedule.get('currency', '')} vs {total['baseline_cost']:.4g} now "
            f"({total['saving_percent']:.0f} % saved)") if total else ""
    window = ""
    if schedule.get("jobs"):
        window = f"; window {schedule['jobs'][0]['start']} → {schedule['jobs'][-1]['finish']}"
    state = getattr(context.scene, "optimizer", None)  # None in batch mode: the add-on is not registered
    if state is not None:
        state.report_path = str(folder / "report.html")
    if open_report and not bpy.app.background and (folder / "report.html").is_file():
        bpy.ops.wm.url_open(url=(folder / "report.html").as_uri())
    return f"{manifest['pipeline'].upper()}: {verdicts}{cost}{window}; " + "; ".join(done)


class OPTIMIZER_OT_open_report(bpy.types.Operator):
    """Open the last Optimize report in the web browser"""

    bl_idname = "optimizer.open_report"
    bl_label = "Open Report"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(context.scene.optimizer.report_path)

    def execute(self, context: bpy.types.Context) -> set[str]:
        path = Path(context.scene.optimizer.report_path)
        if not path.is_file():
            self.report({"ERROR"}, f"no report at {path}")
            return {"CANCELLED"}
        bpy.ops.wm.url_open(url=path.as_uri())
        return {"FINISHED"}


class OPTIMIZER_OT_import_splat(bpy.types.Operator):
    """Import a trained splat (3DGS .ply or .compressed.ply) as a point-cloud preview"""

    bl_idname = "optimizer.import_splat"
    bl_label = "Import Splat"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")  # type: ignore[valid-type]
    filter_glob: bpy.props.StringProperty(default="*.ply", options={"HIDDEN"})  # type: ignore[valid-type]
    size: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Point size", default=2.0, min=0.0, description="Point radius in standard deviations of each Gaussian")

    def execute(self, context: bpy.types.Context) -> set[str]:
        from engine.errors import InputError

        from .splat_preview import import_splat

        try:
            obj = import_splat(context, self.filepath, size=self.size)
        except InputError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"imported {len(obj.data.vertices):,} Gaussians as {obj.name}")
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


class OPTIMIZER_OT_apply_bake(bpy.types.Operator):
    """Apply a bake folder (from `optimizer bake --out DIR`): lightmap UVs, images, lightmapped materials"""

    bl_idname = "optimizer.apply_bake"
    bl_label = "Apply Bake"
    bl_options = {"REGISTER", "UNDO"}

    directory: bpy.props.StringProperty(subtype="DIR_PATH")  # type: ignore[valid-type]
    pack_images: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Pack images", default=False, description="Store the lightmap images inside the .blend file")

    def execute(self, context: bpy.types.Context) -> set[str]:
        from engine.errors import InputError

        from .apply_bake import apply_bake

        try:
            report = apply_bake(context, self.directory, pack_images=self.pack_images)
        except InputError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for warning in report.warnings:
            self.report({"WARNING"}, warning)
        context.scene.optimizer.status = f"Bake applied: {report.summary()}"
        self.report({"INFO"}, context.scene.optimizer.status)
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


class OPTIMIZER_OT_restore_materials(bpy.types.Operator):
    """Put back the materials that Apply Bake replaced with lightmapped copies"""

    bl_idname = "optimizer.restore_materials"
    bl_label = "Restore Materials"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .apply_bake import restore_materials

        count = restore_materials(context.scene.objects)
        self.report({"INFO"}, f"restored the materials of {count} object(s)")
        return {"FINISHED"}


class OPTIMIZER_OT_cancel(bpy.types.Operator):
    """Cancel the running Optimize job"""

    bl_idname = "optimizer.cancel"
    bl_label = "Cancel"

    def execute(self, context: bpy.types.Context) -> set[str]:
        engine_link.stop_all()
        context.scene.optimizer.status = "Cancelling…"
        return {"FINISHED"}


class OPTIMIZER_OT_clear(bpy.types.Operator):
    """Forget the last analysis and route overrides"""

    bl_idname = "optimizer.clear"
    bl_label = "Clear"

    def execute(self, context: bpy.types.Context) -> set[str]:
        state = context.scene.optimizer
        state.result_json = ""
        state.routes.clear()
        state.status = ""
        return {"FINISHED"}
