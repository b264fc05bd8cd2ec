"""Optimize, end to end: one pipeline that the CLI, the service and the Blender add-on all call.

:func:`optimize_scene` runs: analyze → route → quote → bake | splat | hybrid → verify with peers
→ audit → deliver, into one result folder::

    DIR/analysis.json          features, complexity, the plan and every object's route with reasons
    DIR/schedule.json          the quote: node, window, cost, run-now baseline, saving
    DIR/bake/                  lightmaps, scene.glb, bake.json (+ references/ for verification)
    DIR/splat/                 splat.ply, splat.compressed.ply, cameras.json, splat.json, references/
    DIR/<kind>/verification.json   votes, consensus, verdict, metrics not measured and why
    DIR/audit_proof.json       inclusion proofs of the verification entries in the node's audit log
    DIR/manifest.json          which object went where, the files, how to place the splat in the scene
    DIR/report.html            the self-contained report
    DIR/node/                  the node data of the run (identity, allowlist, reputations, audit log)

Hybrid: the objects routed to baking are baked (lit by every light of the scene), the objects
routed to splatting are splatted, animated objects stay live (listed in the manifest). Peers:
the enrolled peers at ``peer_urls``, or ``local_peers`` verifier processes started for the run
(:class:`engine.trust.local.LocalPeers`). Quality targets default to the design's (SSIM ≥ 0.98,
PSNR ≥ 35 dB, ...); a verdict that rejects the result is reported, not hidden, and the assets
are still delivered with it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, InputError
from engine.progress import Progress, no_progress
from engine.scene.model import Scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimizeSettings:
    """What a one-click run does. ``bake`` / ``splat``: settings of those stages (the fields of
    :class:`engine.bake.pipeline.BakeSettings` / :class:`engine.splat.pipeline.SplatSettings`);
    ``routes``: the artist's per-object overrides; ``quality``: threshold overrides for the
    verification; ``verify``: ask peers; ``peer_urls`` (enrolled peers) or ``local_peers``
    processes started for the run; ``deadline_hours`` for the quote."""

    bake: dict[str, Any] = field(default_factory=dict)
    splat: dict[str, Any] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    mode: str = "object"
    quality: dict[str, float] = field(default_factory=dict)
    verify: bool = True
    peer_urls: tuple[str, ...] = ()
    local_peers: int = 3
    min_verifiers: int = 3
    deadline_hours: float = 24.0
    device: str = "auto"

    def __post_init__(self) -> None:
        from engine.bake.pipeline import BakeSettings
        from engine.splat.pipeline import SplatSettings

        for name, cls in (("bake", BakeSettings), ("splat", SplatSettings)):
            unknown = sorted(set(getattr(self, name)) - set(cls.__dataclass_fields__))
            if unknown:
                raise ConfigError(f"unknown {name} setting(s) {', '.join(unknown)}", where=f"optimize settings.{name}",
                                  hint=f"known: {', '.join(sorted(cls.__dataclass_fields__))}")
        if self.local_peers < 0 or self.min_verifiers < 1:
            raise ConfigError("local_peers must be ≥ 0 and min_verifiers ≥ 1", where="optimize settings")
        if not self.deadline_hours > 0:
            raise ConfigError(f"deadline_hours must be above 0, got {self.deadline_hours}", where="optimize settings")


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def _routes(analysis: dict[str, Any]) -> dict[str, list[str]]:
    routes: dict[str, list[str]] = {"bake": [], "splat": [], "keep": []}
    for name, entry in analysis["plan"]["objects"].items():
        routes.setdefault(entry["route"], []).append(name)
    return routes


def _subset(scene: Scene, names: list[str]) -> Scene:
    keep = set(names)
    return replace(scene, objects=tuple(o for o in scene.objects if o.name in keep))


def _verify(folder: Path, node: Path, peers: list[Any], settings: OptimizeSettings, complexity: float) -> dict[str, Any]:
    from engine.trust.verify import verify_result

    summary = verify_result(folder, peers, settings.quality or None, data_dir=node,
                            min_verifiers=min(settings.min_verifiers, len(peers)), deadline_s=120.0,
                            complexity=min(1.0, max(0.0, complexity))).to_dict()
    _write_json(folder / "verification.json", summary)
    return summary


def optimize_scene(scene: Scene, out_dir: str | Path, settings: OptimizeSettings | None = None, *,
                   node_dir: str | Path | None = None, progress: Progress = no_progress) -> dict[str, Any]:
    """Run the whole pipeline on ``scene`` into ``out_dir``; returns the manifest (see the module docstring)."""
    from engine.route import RoutingPolicy, analyze_and_plan
    from engine.splat.frames import SCENE_TO_FILE

    settings = settings or OptimizeSettings()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder ({exc.strerror or exc})", where=str(out)) from None
    node = Path(node_dir) if node_dir is not None else out / "node"
    started = time.perf_counter()
    timings: dict[str, float] = {}
    scene.require_content()

    progress("analyze", 0.0, "features, complexity, routes")
    planned = analyze_and_plan(scene, RoutingPolicy(mode=settings.mode), overrides=settings.routes or None)
    analysis = planned.to_dict()
    _write_json(out / "analysis.json", analysis)
    routes = _routes(analysis)
    timings["analyze_s"] = time.perf_counter() - started

    mark = time.perf_counter()
    schedule = quote_run(planned, settings, node)
    if schedule is not None:
        _write_json(out / "quote.json", schedule)
        _write_json(out / "schedule.json", schedule_for_report(schedule))
    timings["quote_s"] = time.perf_counter() - mark

    results: dict[str, dict[str, Any]] = {}
    if routes["bake"]:
        from engine.bake.pipeline import BakeSettings, bake_scene

        mark = time.perf_counter()
        progress("bake", 0.0, f"{len(routes['bake'])} object(s)")
        params = {"device": settings.device, "reference_views": 8, **settings.bake}
        results["bake"] = bake_scene(_subset(scene, routes["bake"]), out / "bake", BakeSettings(**params),
                                     progress=progress)
        if (out / "bake" / "references" / "cameras.json").is_file():
            progress("bake", 0.9, "the baked result seen from the reference cameras")
            results["bake"]["files"] += bake_result_views(out / "bake")
        timings["bake_s"] = time.perf_counter() - mark
    if routes["splat"]:
        from engine.splat.pipeline import SplatSettings, splat_scene

        mark = time.perf_counter()
        progress("splat", 0.0, f"{len(routes['splat'])} object(s)")
        params = {"device": settings.device, **settings.splat, "objects": tuple(routes["splat"])}
        results["splat"] = splat_scene(scene, out / "splat", SplatSettings(**params), progress=progress)
        timings["splat_s"] = time.perf_counter() - mark

    verifications: dict[str, dict[str, Any]] = {}
    if settings.verify and results:
        mark = time.perf_counter()
        progress("verify", 0.0, "asking peers")
        verifications = verify_results(out, node, results, settings, float(analysis["complexity"]))
        timings["verify_s"] = time.perf_counter() - mark
    proofs = audit_proofs(node, verifications)
    if proofs:
        _write_json(out / "audit_proof.json", proofs)

    timings["total_s"] = time.perf_counter() - started
    manifest = {
        "schema": "optimizer.result/1",
        "scene": scene.name,
        "pipeline": analysis["plan"]["pipeline"],
        "objects": {name: entry["route"] for name, entry in analysis["plan"]["objects"].items()},
        "live": routes["keep"],
        "bake": {"folder": "bake", "files": results["bake"]["files"]} if "bake" in results else None,
        "splat": ({"folder": "splat", "files": results["splat"]["files"], "frame": results["splat"]["frame"],
                   "to_scene": SCENE_TO_FILE.T.tolist()}
                  if "splat" in results else None),
        "verification": {kind: {"verdict": v["verdict"], "accepted": v["accepted"], "score": v.get("consensus_score")}
                         for kind, v in verifications.items()},
        "schedule": schedule,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "settings": asdict(settings),
    }
    _write_json(out / "manifest.json", manifest)
    progress("deliver", 0.5, "report")
    manifest["report"] = write_run_report(out).name
    _write_json(out / "manifest.json", manifest)
    progress("deliver", 1.0, f"result in {out}")
    return manifest


def bake_result_views(folder: Path) -> list[str]:
    """What a real-time engine shows of the bake (scene.glb lit by its lightmaps) from each reference
    camera, as ``views/view_<k>.png`` beside ``references/view_<k>.png`` (for the report)."""
    import numpy as np
    from PIL import Image

    from engine.bake.output import read_exr
    from engine.bake.pipeline import read_corner_uvs
    from engine.scene.io import load_scene
    from engine.splat.rig import CameraRig
    from engine.trust.verify import lightmapped_views

    rig = CameraRig.from_dict(json.loads((folder / "references" / "cameras.json").read_text()))
    corner_uvs = read_corner_uvs(folder / "lightmap_uv.npz")
    atlases = [read_exr(folder / "lightmaps" / f"atlas_{k}.exr")
               for k in range(1 + max((atlas for atlas, _ in corner_uvs.values()), default=-1))]
    shown = lightmapped_views(load_scene(folder / "scene.glb"), corner_uvs, atlases, rig, rig.test)
    (folder / "views").mkdir(exist_ok=True)
    files = []
    for view, image in shown.items():
        path = folder / "views" / f"view_{view}.png"
        Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
        files.append(str(path.relative_to(folder)))
    return files


def verify_results(out: Path, node: Path, results: dict[str, Any], settings: OptimizeSettings,
                   complexity: float) -> dict[str, dict[str, Any]]:
    """Verify every result folder with the enrolled peers at ``peer_urls`` or with local peers."""
    from engine.trust.local import LocalPeers
    from engine.trust.peers import PeerRegistry
    from engine.trust.verify import peers_from_registry

    verifications: dict[str, dict[str, Any]] = {}
    if settings.peer_urls:
        with PeerRegistry(node) as registry:
            peers = peers_from_registry(registry, settings.peer_urls)
        for kind in results:
            verifications[kind] = _verify(out / kind, node, peers, settings, complexity)
        return verifications
    if settings.local_peers == 0:
        raise ConfigError("verification asked for, but no peer: give peer_urls or local_peers ≥ 1",
                          where="optimize settings")
    with LocalPeers(node, node / "local_peers", count=settings.local_peers) as peers:
        for kind in results:
            verifications[kind] = _verify(out / kind, node, peers, settings, complexity)
    return verifications


def audit_proofs(node: Path, verifications: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Inclusion proofs of each verification's audit entry against the latest signed checkpoint."""
    if not verifications:
        return {}
    from engine.service.security import load_or_create_identity
    from engine.trust.audit import AuditLog

    identity, key = load_or_create_identity(node)
    proofs = {}
    with AuditLog(node, key, identity.node_id) as log_:
        for kind, summary in verifications.items():
            entry = (summary.get("audit") or {}).get("entry")
            if entry is not None:
                proofs[kind] = log_.prove(int(entry))
    return proofs


def quote_run(planned: Any, settings: OptimizeSettings, node: Path) -> dict[str, Any] | None:
    """The schedule quote for the run: the local node's price windows (and its time zone) up to the
    deadline, with the hourly prices over the horizon for the report's chart. None when nothing is
    baked or splatted."""
    from datetime import UTC, datetime, timedelta

    from engine.economy import Calibration, default_pool, jobs_from_analysis, quote
    from engine.economy.prices import slot_prices

    if planned.plan.pipeline not in ("bake", "splat", "hybrid"):
        return None
    now = datetime.now(UTC)
    deadline = now + timedelta(hours=settings.deadline_hours)
    pool = default_pool()
    stage_settings = {"bake": {k: v for k, v in settings.bake.items() if k in ("samples", "bounces")},
                      "splat": {k: v for k, v in settings.splat.items() if k in ("steps",)}}
    jobs, estimates = jobs_from_analysis(planned, deadline, "auto", Calibration.open(node), pool.local.speed,
                                         stage_settings)
    answer = quote(jobs, pool, now).to_dict()
    answer["estimates"] = [e.to_dict() for e in estimates]
    start = now.replace(minute=0, second=0, microsecond=0)
    hours = int(min(answer["horizon_hours"], max(24, settings.deadline_hours + 6)))
    answer["price_curve"] = {
        "start": start.isoformat(), "slot_hours": 1.0,
        "nodes": {n.name: [round(float(x), 4) for x in slot_prices(n.tariff, n.timezone, start, hours)]
                  for n in pool.nodes},
    }
    return answer


def schedule_for_report(quoted: dict[str, Any]) -> dict[str, Any]:
    """The quote in the report's schedule schema (:data:`engine.report.SCHEDULE_SCHEMA`): each node's
    hourly prices over the horizon and the windows chosen on it."""
    curve = quoted["price_curve"]
    zones = {n["name"]: n.get("timezone", "") for n in quoted.get("pool", [])}
    chosen: dict[str, list[list[str]]] = {name: [] for name in curve["nodes"]}
    deadlines = []
    for job in quoted["jobs"]:
        deadlines.append(job["deadline"])
        for window in job["windows"]:
            chosen.setdefault(window["node"], []).append([window["start"], window["end"]])
    total = quoted["total"]
    return {
        "nodes": [{"name": name, "tz": zones.get(name, ""), "prices": prices, "chosen": chosen.get(name, [])}
                  for name, prices in curve["nodes"].items()],
        "horizon_start_iso": curve["start"],
        "slot_hours": curve["slot_hours"],
        "deadline_iso": min(deadlines) if deadlines else None,
        "cost": total["cost"],
        "baseline_cost": total["baseline_cost"],
        "saving_pct": total["saving_percent"],
        "formula_claim": total["design_formula_saving_percent"],
        "currency": quoted["currency"],
    }


def write_run_report(out: Path) -> Path:
    """``report.html`` for the run, from what the result folder holds."""
    from engine.report import collect_result_dir, write_report

    return write_report(out / "report.html", collect_result_dir(out))
