"""The `optimizer` command.

Exit codes for every command: 0 success, 2 bad input or usage (one clear line on stderr, no
traceback), 1 internal error (one line; set OPTIMIZER_DEBUG=1 for the traceback); `verify` exits 3
when the peers did not accept the result (rejected or disputed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from engine import __version__
from engine.errors import ConfigError, InputError, OptimizerError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2
EXIT_REJECTED = 3  # `optimizer verify`: the peers did not accept the result (rejected or disputed)
log = logging.getLogger("engine.cli")


class UsageError(InputError):
    """A command line that does not parse."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="optimizer", description="Analyse, route and optimize 3D scenes for real time.")
    parser.add_argument("--version", action="version", version=f"optimizer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail to stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    analyze = commands.add_parser("analyze", help="analyse a scene file and print features, complexity and plan")
    analyze.add_argument("path", help="scene file: .gltf, .glb or .obj")
    analyze.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    analyze.add_argument("--unit", help="length unit of the file (OBJ carries none): m, cm, mm, in, ft")
    analyze.add_argument("--mode", choices=("object", "scene"), default="object",
                         help="route per object (default) or apply the original rule to the whole scene")
    analyze.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                         help="override a routing threshold, e.g. --set splat_alpha_cut_fraction=0.5")

    demo = commands.add_parser("demo", help="build the bundled demo scene and run the whole pipeline on it (CPU)")
    demo.add_argument("--out", default="optimizer-demo", help="output folder (default: ./optimizer-demo)")
    demo.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a summary")
    demo.add_argument("--analyze-only", action="store_true", help="stop after the analysis (seconds, not minutes)")

    optimize = commands.add_parser("optimize", help="the one-click pipeline: analyze, route, quote, bake/splat, "
                                                    "verify with peers, audit, report")
    optimize.add_argument("path", help="scene file: .gltf, .glb or .obj")
    optimize.add_argument("--out", required=True, help="result folder (assets, verification, audit proof, report.html)")
    optimize.add_argument("--unit", help="length unit of the file (OBJ carries none)")
    optimize.add_argument("--deadline", type=float, default=24.0, metavar="HOURS", help="deadline for the quote")
    optimize.add_argument("--route", action="append", default=[], metavar="OBJECT=ROUTE",
                          help="override an object's route (bake, splat or keep); repeatable")
    optimize.add_argument("--peers", help="comma-separated URLs of enrolled peers (default: local peer processes)")
    optimize.add_argument("--local-peers", type=int, default=3, help="verifier processes to start here (default 3)")
    optimize.add_argument("--no-verify", action="store_true", help="skip peer verification")
    optimize.add_argument("--set", action="append", default=[], metavar="METRIC=VALUE",
                          help="quality target, e.g. psnr_min=30 (default: SSIM ≥ 0.98, PSNR ≥ 35 dB, ...)")
    optimize.add_argument("--samples", type=int, help="bake samples per texel")
    optimize.add_argument("--steps", type=int, help="splat training steps")
    optimize.add_argument("--views", type=int, help="splat reference views")
    optimize.add_argument("--resolution", type=int, help="splat view size in pixels")
    optimize.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    optimize.add_argument("--node", type=Path, help="node data folder (default: OUT/node)")
    optimize.add_argument("--json", action="store_true", help="print the manifest as one JSON object")

    bake = commands.add_parser("bake", help="bake lightmaps for the static objects of a scene file")
    bake.add_argument("path", help="scene file: .gltf, .glb or .obj")
    bake.add_argument("--out", required=True, help="output folder (lightmaps, scene.glb, bake.json)")
    bake.add_argument("--unit", help="length unit of the file (OBJ carries none)")
    bake.add_argument("--texels-per-metre", type=float, help="lightmap density (default: adapts to the scene)")
    bake.add_argument("--atlas-size", type=int, default=1024, help="atlas width and height (512..8192)")
    bake.add_argument("--samples", type=int, default=64, help="samples per texel (default 64)")
    bake.add_argument("--bounces", type=int, default=3, help="indirect bounces (default 3)")
    bake.add_argument("--ao-distance", type=float, default=0.0, help="also bake ambient occlusion to this distance")
    bake.add_argument("--time-budget", type=float, help="stop after this many seconds of integration")
    bake.add_argument("--seed", type=int, default=0)
    bake.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    bake.add_argument("--no-denoise", action="store_true", help="skip Open Image Denoise")
    bake.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    splat = commands.add_parser("splat", help="train 3D Gaussians for a scene file (views path-traced here)")
    splat.add_argument("path", help="scene file: .gltf, .glb or .obj")
    splat.add_argument("--out", required=True, help="output folder (splat.ply, splat.compressed.ply, splat.json)")
    splat.add_argument("--unit", help="length unit of the file (OBJ carries none)")
    splat.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    splat.add_argument("--views", type=int, default=64, help="reference views, every 8th held out (default 64)")
    splat.add_argument("--resolution", type=int, default=128, help="view width and height in pixels (default 128)")
    splat.add_argument("--rig", choices=("auto", "object", "interior"), default="auto",
                       help="cameras around the objects or inside them (auto: inside when they enclose their centre)")
    splat.add_argument("--init", choices=("mesh", "random"), default="mesh", help="initial Gaussians (default mesh)")
    splat.add_argument("--points", type=int, help="initial Gaussians (default 10,000 on CPU, 100,000 on CUDA)")
    splat.add_argument("--samples", type=int, default=32, help="path-tracing samples per reference pixel ray")
    splat.add_argument("--sh-degree", type=int, default=3, help="spherical harmonics degree 0..3 (default 3)")
    splat.add_argument("--strategy", choices=("default", "mcmc"), default="default",
                       help="densification: gsplat's DefaultStrategy or MCMCStrategy (CUDA only)")
    splat.add_argument("--objects", help="comma-separated object names to splat (default: every static object)")
    splat.add_argument("--time-budget", type=float, help="stop training after this many seconds")
    splat.add_argument("--seed", type=int, default=0)
    splat.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    splat.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    serve = commands.add_parser("serve", help="run this machine's engine node (HTTP API, job store, workers)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8770, help="port (default 8770; 0 picks a free one)")
    serve.add_argument("--data", type=Path, help="data folder (default: $OPTIMIZER_DATA or ~/.local/share/optimizer)")
    serve.add_argument("--workers", type=int, default=0, help="worker processes (default: one per CPU core)")
    serve.add_argument("--gpus", type=int, default=0, help="GPUs: one GPU-bound job runs per GPU (default 0 → 1 slot)")
    serve.add_argument("--max-upload", type=int, default=512, metavar="MB", help="largest request body (default 512)")
    serve.add_argument("--tls-cert", type=Path, help="TLS certificate (required to listen beyond loopback)")
    serve.add_argument("--tls-key", type=Path, help="TLS private key")
    serve.add_argument("--economy-prices", type=Path, metavar="FILE",
                       help="price file for this node's hours (default: the design's tariff, in $TZ)")
    serve.add_argument("--economy-clock", metavar="TIME",
                       help="simulate: economy jobs are planned and released on a clock starting at TIME "
                            "(ISO 8601 with offset), for demos and tests")
    serve.add_argument("--economy-clock-speed", type=float, default=1.0, metavar="X",
                       help="the simulated clock runs X times real speed (default 1)")
    serve.add_argument("--no-forward", action="store_true",
                       help="never forward economy jobs to enrolled peers (a cheaper peer is only reported)")

    peer = commands.add_parser("peer", help="run a verifier node: `serve` on port 8771, printing the identity "
                                            "to enrol it with")
    peer.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    peer.add_argument("--port", type=int, default=8771, help="port (default 8771; 0 picks a free one)")
    peer.add_argument("--data", type=Path, help="data folder (default: $OPTIMIZER_DATA/peer or "
                                                "~/.local/share/optimizer/peer)")
    peer.add_argument("--workers", type=int, default=1, help="worker processes for jobs (default 1: verification "
                                                             "tasks run in the API process)")
    peer.add_argument("--max-upload", type=int, default=512, metavar="MB", help="largest task (default 512)")
    peer.add_argument("--tls-cert", type=Path, help="TLS certificate (required to listen beyond loopback)")
    peer.add_argument("--tls-key", type=Path, help="TLS private key")

    verify = commands.add_parser("verify", help="have enrolled peers re-check a result folder and decide by consensus")
    verify.add_argument("result", help="result folder (from `optimizer splat`: splat.ply, cameras.json, references/)")
    verify.add_argument("--peers", help="comma-separated peer URLs (default: every enrolled peer); each must be "
                                        "enrolled (`optimizer peers add`)")
    verify.add_argument("--data", type=Path, help="this node's data folder (identity, allowlist, audit log)")
    verify.add_argument("--min-verifiers", type=int, default=3, help="peers asked at first (default 3)")
    verify.add_argument("--max-verifiers", type=int, help="most peers asked when disputed (default: all)")
    verify.add_argument("--deadline", type=float, default=60.0, help="seconds a peer has to answer (default 60)")
    verify.add_argument("--complexity", type=float, default=0.5, help="scene complexity in [0, 1] (sample size)")
    verify.add_argument("--confidence", type=float, default=0.95, help="confidence in [0.9, 1) (sample size)")
    verify.add_argument("--tile", type=int, default=32, help="tile side in pixels (default 32)")
    verify.add_argument("--set", dest="thresholds", action="append", default=[], metavar="NAME=VALUE",
                        help="quality threshold, e.g. psnr_min=30 (ssim_min, psnr_min, lpips_max, vmaf_min, flip_max)")
    verify.add_argument("--no-vmaf", action="store_true", help="do not measure VMAF")
    verify.add_argument("--no-flip", action="store_true", help="do not measure FLIP")
    verify.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    report = commands.add_parser("report", help="write the self-contained report.html of a result folder")
    report.add_argument("result", help="result folder (analysis.json, bake.json/splat.json, verification.json, "
                                       "references/ and views/, schedule.json, audit_proof.json: what exists)")
    report.add_argument("--out", help="report file (default: RESULT/report.html)")
    report.add_argument("--no-flip", action="store_true", help="do not compute FLIP error maps missing from the folder")

    def remote(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--url", help="engine URL (default: $OPTIMIZER_URL or http://127.0.0.1:8770)")
        sub.add_argument("--token", help="bearer token (default: $OPTIMIZER_TOKEN or the node's token file)")

    submit = commands.add_parser("submit", help="submit a scene file as a job to the engine node")
    submit.add_argument("path", help="scene file: .gltf, .glb or .obj")
    submit.add_argument("--kind", default="analyze", help="job kind (default: analyze)")
    submit.add_argument("--unit", help="length unit of the file (OBJ carries none)")
    submit.add_argument("--priority", choices=("now", "economy"), default="now")
    submit.add_argument("--pipeline", choices=("bake", "splat", "hybrid"), help="override the routed pipeline")
    submit.add_argument("--deadline", help="when the result is needed: 24h, 2d, 90m from now, or ISO 8601 with "
                                           "offset (economy jobs: default 24 h after they are planned)")
    submit.add_argument("--mode", choices=("object", "scene"), default="object")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")
    submit.add_argument("--wait", action="store_true", help="follow the job until it ends")
    submit.add_argument("--json", action="store_true", help="print the job as JSON")
    remote(submit)

    status = commands.add_parser("status", help="list jobs, or show one")
    status.add_argument("job", nargs="?", help="job id (default: list recent jobs)")
    status.add_argument("--json", action="store_true")
    remote(status)

    wait = commands.add_parser("wait", help="follow a job with a progress bar until it ends")
    wait.add_argument("job", help="job id")
    wait.add_argument("--timeout", type=float, help="give up after this many seconds")
    remote(wait)

    cancel = commands.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job", help="job id")
    remote(cancel)

    keys = commands.add_parser("keys", help="manage the node's encryption keys")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=_Parser)
    rotate = key_commands.add_parser("rotate", help="new key-encryption key; re-wrap every data key")
    rotate.add_argument("--data", type=Path, help="the node's data folder")

    peers = commands.add_parser("peers", help="manage the allowlist of peer keys whose votes count")
    peer_commands = peers.add_subparsers(dest="peers_command", metavar="ACTION", parser_class=_Parser)
    peer_add = peer_commands.add_parser("add", help="enrol a peer by its Ed25519 public key or identity JSON")
    peer_add.add_argument("key", help="the peer's public key (base64) or its identity JSON")
    peer_add.add_argument("--url", required=True, help="the peer's engine URL (https:// beyond loopback)")
    peer_add.add_argument("--name", help="a name to recognise it by")
    peer_add.add_argument("--capability", type=float, default=1.0,
                          help="compute capability, a factor of its vote weight (default 1.0)")
    peer_add.add_argument("--special", default="", metavar="KINDS",
                          help="comma-separated job kinds it specialises in, e.g. bake,splat")
    peer_list = peer_commands.add_parser("list", help="list the enrolled peers")
    peer_list.add_argument("--json", action="store_true", help="print one JSON array")
    peer_remove = peer_commands.add_parser("remove", help="take a peer off the allowlist")
    peer_remove.add_argument("node_id", help="the peer's node id (see `optimizer peers list`)")
    for sub in (peer_add, peer_list, peer_remove):
        sub.add_argument("--data", type=Path, help="data folder (default: $OPTIMIZER_DATA or ~/.local/share/optimizer)")

    audit = commands.add_parser("audit", help="check the node's tamper-evident audit log and prove entries in it")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=_Parser)
    audit_verify = audit_commands.add_parser("verify", help="check the whole log; exit 2 naming the first bad entry")
    audit_verify.add_argument("--checkpoint", action="append", default=[], metavar="FILE",
                              help="also check against a checkpoint kept elsewhere (JSON from `audit checkpoint "
                                   "--json`); catches a log rolled back behind it")
    audit_prove = audit_commands.add_parser("prove", help="print the inclusion proof of an entry (checked)")
    audit_prove.add_argument("entry", type=int, help="entry index (0 is the first)")
    audit_commands.add_parser("checkpoint", help="sign and store a checkpoint of the log as it is now")
    audit_show = audit_commands.add_parser("show", help="print one entry")
    audit_show.add_argument("entry", type=int, help="entry index (0 is the first)")
    audit_list = audit_commands.add_parser("list", help="list the most recent entries")
    audit_list.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    for sub in (audit_verify, audit_prove, audit_commands.choices["checkpoint"], audit_show, audit_list):
        sub.add_argument("--data", type=Path, help="data folder (default: $OPTIMIZER_DATA or ~/.local/share/optimizer)")
        sub.add_argument("--json", action="store_true", help="print one JSON value")

    quote = commands.add_parser("quote", help="quote a scene's processing: cheapest nodes and hours that meet a deadline")
    quote.add_argument("path", help="scene file: .gltf, .glb or .obj")
    quote.add_argument("--deadline", required=True, help="when it is needed: 24h, 2d, 90m from now, or ISO 8601 "
                                                          "with offset")
    quote.add_argument("--kind", choices=("auto", "bake", "splat"), default="auto",
                       help="what to quote (default: the routed pipeline; hybrid quotes a bake and a splat job)")
    quote.add_argument("--nodes", type=Path, help="node file (TOML/JSON [[node]] tables; default: this machine)")
    quote.add_argument("--prices", type=Path, help="price file for the default pool (TOML/JSON rules, or CSV series)")
    quote.add_argument("--data", type=Path, help="data folder: calibration, and enrolled peers as extra nodes")
    quote.add_argument("--now", help="quote as if it were this ISO 8601 time (default: now)")
    quote.add_argument("--unit", help="length unit of the file (OBJ carries none)")
    quote.add_argument("--samples", type=int, help="bake samples per texel (default 64)")
    quote.add_argument("--steps", type=int, help="splat training steps (default 3000)")
    quote.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _policy(mode: str, overrides: list[str]) -> Any:
    from engine.route import RoutingPolicy

    return RoutingPolicy(mode=mode).with_overrides(_policy_values(overrides))


def _policy_values(overrides: list[str]) -> dict[str, Any]:
    """NAME=VALUE strings as a dict of numbers and booleans."""
    values: dict[str, Any] = {}
    for item in overrides:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"expected NAME=VALUE, got {item!r}", where="--set")
        if raw.lower() in ("true", "false"):
            values[name.strip()] = raw.lower() == "true"
            continue
        try:
            values[name.strip()] = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
        except ValueError:
            raise ConfigError(f"{raw!r} is not a number", where=f"--set {name}") from None
    return values


# ---------------------------------------------------------------------------- printing


def _table(rows: list[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _size(f: dict[str, Any]) -> str:
    if f["bounding_size_m"] is not None:
        return f"{f['bounding_size_m']:.3g} m across"
    return f"{f['bounding_size']:.3g} units across (unit unknown: pass --unit)"


def render_report(result: dict[str, Any]) -> str:
    """The human-readable form of an analysis result dict (AnalysisResult.to_dict())."""
    f, plan = result["features"], result["plan"]
    out = [
        f"Scene '{result['scene']}': {f['triangles']:,} triangles in {f['object_count']} objects "
        f"({f['instanced_objects']} instanced), {f['material_count']} materials, {f['light_count']} lights, "
        f"{_size(f)}",
        "",
        f"Complexity {result['complexity']:.2f}",
        _table(
            [(name, f"{t['value']:.2f}", f"{t['weight']:.2f}", f"{t['contribution']:.3f}", t["explanation"])
             for name, t in result["complexity_terms"].items()],
            ("term", "value", "weight", "adds", "because"),
        ),
        "",
        f"Pipeline: {plan['pipeline'].upper()}  ({'; '.join(plan['reasons'])})",
        _table(
            [(name, f"{f['objects'][name]['triangles']:,}", o["route"], "; ".join(o["reasons"]))
             for name, o in plan["objects"].items()],
            ("object", "triangles", "route", "why"),
        ),
    ]
    if result["warnings"]:  # each was logged to stderr as the file loaded
        count = len(result["warnings"])
        out += ["", f"{count} warning{'s' if count != 1 else ''} (printed above)"]
    timings = result["timings_ms"]
    out += ["", f"analysed in {timings['analyze']:.1f} ms, routed in {timings['route']:.2f} ms"]
    return "\n".join(out)


# ---------------------------------------------------------------------------- commands


def cmd_analyze(args: argparse.Namespace) -> int:
    from engine.route import analyze_and_plan
    from engine.scene.io import load_scene

    policy = _policy(args.mode, args.overrides)
    scene = load_scene(args.path, unit=args.unit)
    result = analyze_and_plan(scene, policy).to_dict()
    print(json.dumps(result) if args.json else render_report(result))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from engine.progress import ProgressBar
    from engine.route import analyze_and_plan
    from engine.scene import wire
    from engine.scene.demo import build_demo_scene
    from engine.scene.gltf import export_gltf, load_gltf

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder ({exc.strerror or exc})", where=str(out)) from None
    progress = ProgressBar()
    started = time.perf_counter()
    progress("build", 0.0, "generating the demo room")
    scene = build_demo_scene()
    progress("build", 1.0, f"{scene.n_triangles:,} triangles")
    progress("export", 0.0, "writing glTF")
    glb = export_gltf(scene, out / "demo_room.glb")
    progress("export", 1.0, glb.name)
    progress("import", 0.0, "reading the glTF back")
    loaded = load_gltf(glb)
    progress("import", 1.0, f"{loaded.n_triangles:,} triangles")
    progress("analyze", 0.0, "features, complexity, routes")
    result = analyze_and_plan(loaded)
    report = result.to_dict()
    (out / "analysis.json").write_text(json.dumps(report, indent=2))
    (out / "plan.optw").write_bytes(wire.encode(result.plan))
    progress("analyze", 1.0, f"pipeline {result.plan.pipeline}")
    if args.analyze_only:
        print(json.dumps(report) if args.json else render_report(report))
        return EXIT_OK
    if not args.json:
        print(render_report(report))
    from engine.pipeline import OptimizeSettings, optimize_scene

    settings = OptimizeSettings(bake=DEMO_SETTINGS["bake"], splat=DEMO_SETTINGS["splat"],
                                quality=DEMO_SETTINGS["quality"], device="cpu")
    manifest = optimize_scene(loaded, out, settings, progress=progress)
    _print_manifest(manifest, out, args.json)
    if not args.json:
        print(f"\nDemo done in {time.perf_counter() - started:.0f} s (preview quality targets: "
              f"{', '.join(f'{k} {v}' for k, v in DEMO_SETTINGS['quality'].items())}). "
              f"Check the audit log with `optimizer audit verify --data {out / 'node'}`.")
    return EXIT_OK


#: What the demo asks of a 2-core CPU: a quick bake and splat, and preview quality targets (the
#: design's production targets, SSIM ≥ 0.98 and PSNR ≥ 35 dB, need GPU-length training).
DEMO_SETTINGS: dict[str, Any] = {
    "bake": {"samples": 32, "bounces": 2, "atlas_size": 512},
    "splat": {"steps": 400, "views": 24, "resolution": 64, "init_points": 4000, "render_samples": 16},
    # VMAF's model is made for video frames, not 64-px views cut into tiles: not a criterion here
    "quality": {"ssim_min": 0.7, "psnr_min": 20.0, "flip_max": 0.3, "vmaf_min": 0.0, "lpips_max": 0.3},
}


def _print_manifest(manifest: dict[str, Any], out: Path, as_json: bool) -> None:
    if as_json:
        print(json.dumps(manifest, default=str))
        return
    print(f"\nPipeline {manifest['pipeline'].upper()} for {manifest['scene']}:")
    for route in ("bake", "splat", "keep"):
        names = [n for n, r in manifest["objects"].items() if r == route]
        if names:
            print(f"  {route:5s} {len(names):3d} object(s): {', '.join(names[:6])}{' …' if len(names) > 6 else ''}")
    schedule = manifest.get("schedule")
    if schedule:
        total = schedule["total"]
        print(f"  quote: {total['cost']:.4g} {schedule['currency']} instead of {total['baseline_cost']:.4g} now "
              f"({total['saving_percent']:.0f} % saved; the design's fixed formula would claim "
              f"{total['design_formula_saving_percent']:.0f} %)")
    for kind, verdict in manifest["verification"].items():
        state = "accepted" if verdict["accepted"] else "NOT accepted"
        print(f"  {kind}: {verdict['verdict']} ({state}), consensus {verdict['score']}")
    print(f"  in {manifest['timings_s']['total_s']:.0f} s; report: {out / (manifest.get('report') or 'manifest.json')}")


def cmd_optimize(args: argparse.Namespace) -> int:
    from engine.pipeline import OptimizeSettings, optimize_scene
    from engine.progress import ProgressBar
    from engine.scene.io import load_scene

    routes = {}
    for item in args.route:
        name, sep, route = item.partition("=")
        if not sep or route not in ("bake", "splat", "keep"):
            raise UsageError(f"--route {item!r} is not OBJECT=bake|splat|keep")
        routes[name] = route
    bake = {"samples": args.samples} if args.samples else {}
    splat = {k: v for k, v in (("steps", args.steps), ("views", args.views), ("resolution", args.resolution)) if v}
    settings = OptimizeSettings(bake=bake, splat=splat, routes=routes, quality=_threshold_values(args.set),
                                verify=not args.no_verify, local_peers=args.local_peers, device=args.device,
                                peer_urls=tuple(u.strip() for u in args.peers.split(",") if u.strip()) if args.peers
                                else (), deadline_hours=args.deadline)
    scene = load_scene(args.path, unit=args.unit)
    manifest = optimize_scene(scene, args.out, settings, node_dir=args.node, progress=ProgressBar())
    _print_manifest(manifest, Path(args.out), args.json)
    return EXIT_OK


def cmd_bake(args: argparse.Namespace) -> int:
    from engine.bake.pipeline import BakeSettings, bake_scene
    from engine.progress import ProgressBar
    from engine.scene.io import load_scene

    settings = BakeSettings(texels_per_metre=args.texels_per_metre, atlas_size=args.atlas_size,
                            samples=args.samples, bounces=args.bounces, ao_distance=args.ao_distance,
                            seed=args.seed, time_budget_s=args.time_budget, device=args.device,
                            denoise=not args.no_denoise)
    scene = load_scene(args.path, unit=args.unit)
    summary = bake_scene(scene, args.out, settings, progress=ProgressBar())
    if args.json:
        print(json.dumps(summary))
        return EXIT_OK
    print(f"Baked {len(summary['objects'])} objects into {summary['atlas_count']} atlas(es) of "
          f"{summary['atlas_size']}² ({summary['texels']:,} texels, {summary['samples']} samples, "
          f"{summary['bounces']} bounces) on {summary['device']} in {summary['timings_s']['total_s']:.1f} s; "
          f"~{summary['rays_per_second'] / 1e6:.2f} M rays/s")
    for name in summary["files"]:
        print(f"  {Path(args.out) / name}")
    for warning in summary["warnings"]:
        print(f"  warning: {warning}")
    return EXIT_OK


def cmd_splat(args: argparse.Namespace) -> int:
    from engine.progress import ProgressBar
    from engine.scene.io import load_scene
    from engine.splat.pipeline import SplatSettings, splat_scene

    objects = tuple(n.strip() for n in args.objects.split(",") if n.strip()) if args.objects else None
    settings = SplatSettings(steps=args.steps, views=args.views, resolution=args.resolution, rig=args.rig,
                             init=args.init, init_points=args.points, render_samples=args.samples,
                             sh_degree=args.sh_degree, strategy=args.strategy, device=args.device, seed=args.seed,
                             time_budget_s=args.time_budget, objects=objects)
    scene = load_scene(args.path, unit=args.unit)
    summary = splat_scene(scene, args.out, settings, progress=ProgressBar())
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k not in ("history", "per_view")}))
        return EXIT_OK
    print(f"Trained {summary['gaussians']:,} Gaussians in {summary['steps']} steps on {summary['device']} "
          f"({summary['timings_s']['train_s']:.1f} s); held-out views: PSNR {summary['psnr']:.2f} dB, "
          f"SSIM {summary['ssim']:.4f}")
    for name in summary["files"]:
        print(f"  {Path(args.out) / name}")
    for warning in summary["warnings"]:
        print(f"  warning: {warning}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.service.server import serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port number (0..65535)")
    if args.max_upload < 1:
        raise UsageError("--max-upload must be at least 1 MB")
    from engine.service.server import economy_clock

    return serve(args.host, args.port, args.data, workers=args.workers, gpus=args.gpus,
                 max_upload=args.max_upload * 1024 * 1024, tls_cert=args.tls_cert, tls_key=args.tls_key,
                 announce=lambda line: print(line, flush=True),
                 clock=economy_clock(args.economy_clock, args.economy_clock_speed),
                 economy_prices=args.economy_prices, forward=not args.no_forward)


def cmd_peer(args: argparse.Namespace) -> int:
    from engine.service.security import load_or_create_identity
    from engine.service.server import default_data_dir, serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port number (0..65535)")
    if args.max_upload < 1:
        raise UsageError("--max-upload must be at least 1 MB")
    data = Path(args.data or default_data_dir() / "peer").expanduser()
    identity, _ = load_or_create_identity(data)
    print(f"optimizer: peer identity {json.dumps(identity.to_dict())}", flush=True)
    print("optimizer: coordinators enrol it with `optimizer peers add '<identity>' --url <this node's URL>`; "
          "enrol each coordinator here with `optimizer peers add ... --data " + str(data) + "`", flush=True)
    return serve(args.host, args.port, data, workers=args.workers, max_upload=args.max_upload * 1024 * 1024,
                 tls_cert=args.tls_cert, tls_key=args.tls_key, announce=lambda line: print(line, flush=True))


def _threshold_values(items: list[str]) -> dict[str, float]:
    values: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r} is not NAME=VALUE")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--set {item!r}: {value!r} is not a number") from None
    return values


def cmd_verify(args: argparse.Namespace) -> int:
    from engine.service.server import default_data_dir
    from engine.trust.peers import PeerRegistry
    from engine.trust.verify import peers_from_registry, summary_json, verify_result

    data = Path(args.data or default_data_dir()).expanduser()
    urls = [u.strip() for u in args.peers.split(",") if u.strip()] if args.peers else None
    with PeerRegistry(data) as registry:
        peers = peers_from_registry(registry, urls)
    summary = verify_result(args.result, peers, _threshold_values(args.thresholds), data_dir=data,
                            min_verifiers=args.min_verifiers, max_verifiers=args.max_verifiers,
                            deadline_s=args.deadline, complexity=args.complexity, confidence=args.confidence,
                            tile=args.tile, measure={"flip": not args.no_flip, "vmaf": not args.no_vmaf})
    result = summary.to_dict()
    if args.json:
        print(summary_json(summary))
    else:
        print(f"verification {result['verification_id']}: {result['verdict'].upper()} "
              f"({result['outcome'] or 'no majority'}), consensus {result['consensus_score']:.3f} "
              f"(needs {result['threshold']:g})")
        print(_table([(v["node_id"], v["verdict"], f"{v['weight']:.3f}", _metric(v["metrics"].get("psnr_db")),
                       _metric(v["metrics"].get("ssim")), "; ".join(v["failures"])[:60]) for v in result["votes"]],
                     ("node", "vote", "weight", "psnr", "ssim", "failures")))
        for item in result["rejected"]:
            print(f"  rejected vote of {item['node_id'] or '?'} (from {item['url']}): {item['reason']}")
        for item in result["silent"]:
            print(f"  no vote from {item['node_id']} ({item['url']}): {item['reason']}")
        for metric, reason in result["not_measured"].items():
            print(f"  {metric}: not measured ({reason})")
        if "audit" in result:
            print(f"  audit log entry {result['audit']['entry']}")
    return EXIT_OK if result["accepted"] else EXIT_REJECTED


def _metric(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def cmd_report(args: argparse.Namespace) -> int:
    from engine.report import collect_result_dir, write_report

    out = Path(args.out) if args.out else Path(args.result) / "report.html"
    data = collect_result_dir(args.result, report_path=out, compute_flip=not args.no_flip)
    path = write_report(out, data)
    print(f"optimizer: wrote {path} ({path.stat().st_size:,} bytes); open it in a browser (it works offline)")
    for item in data.missing:
        print(f"  not included: {item}")
    return EXIT_OK


def _client(args: argparse.Namespace) -> Any:
    from engine.client import EngineClient

    return EngineClient(args.url, args.token)


def _job_line(job: Any) -> tuple[str, ...]:
    return (job.id, job.kind, job.state, job.stage, f"{job.progress:.0%}", job.error or "")


def _print_job(job: Any, as_json: bool) -> None:
    import dataclasses

    if as_json:
        print(json.dumps(dataclasses.asdict(job)))
        return
    print(_table([_job_line(job)], ("job", "kind", "state", "stage", "progress", "error")))
    for text in job.messages:
        print(f"  - {text}")
    for artifact in job.artifacts:
        print(f"  artifact {artifact.name} ({artifact.size:,} bytes, {artifact.content_type})")


def _follow(client: Any, job_id: str, timeout: float | None) -> int:
    from engine.progress import ProgressBar

    job = client.wait(job_id, progress=ProgressBar(), timeout=timeout)
    _print_job(job, as_json=False)
    if job.state == "done":
        return EXIT_OK
    print(f"optimizer: job {job.id} {job.state}{': ' + job.error if job.error else ''}", file=sys.stderr)
    return EXIT_INTERNAL


def cmd_submit(args: argparse.Namespace) -> int:
    from engine.scene.io import load_scene

    policy = _policy(args.mode, args.overrides)  # bad --set fails here, before any upload
    scene = load_scene(args.path, unit=args.unit)
    options: dict[str, Any] = {"mode": policy.mode, "overrides": _policy_values(args.overrides)}
    if args.pipeline:
        options["pipeline"] = args.pipeline
    if args.deadline:
        from datetime import UTC, datetime

        from engine.economy import parse_deadline

        options["deadline"] = parse_deadline(args.deadline, datetime.now(UTC)).isoformat()
    client = _client(args)
    job = client.submit(scene, kind=args.kind, options=options, priority=args.priority)
    if args.json:
        _print_job(job, as_json=True)
    else:
        print(job.id)
        if args.priority == "economy":  # the node planned it before answering: say when and at what cost
            for text in job.messages:
                if text.startswith("economy:"):
                    print(f"  {text}")
    if args.wait:
        return _follow(client, job.id, None)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    import dataclasses

    client = _client(args)
    if args.job:
        _print_job(client.job(args.job), args.json)
        return EXIT_OK
    jobs = client.jobs()
    if args.json:
        print(json.dumps([dataclasses.asdict(j) for j in jobs]))
    else:
        print(_table([_job_line(j) for j in jobs], ("job", "kind", "state", "stage", "progress", "error")))
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    return _follow(_client(args), args.job, args.timeout)


def cmd_cancel(args: argparse.Namespace) -> int:
    _print_job(_client(args).cancel(args.job), as_json=False)
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    from engine.service.security import load_or_create_identity
    from engine.service.server import default_data_dir
    from engine.service.vault import Keyring, Vault

    if args.keys_command != "rotate":
        raise UsageError("keys needs an action: rotate (see 'optimizer keys --help')")
    data_dir = Path(args.data or default_data_dir()).expanduser()
    if not (data_dir / "identity").exists():
        raise InputError("no engine node data here (run `optimizer serve --data` first)", where=str(data_dir))
    identity, _ = load_or_create_identity(data_dir)
    report = Vault(data_dir, Keyring(identity.node_id)).rotate()
    retired = ", ".join(report.retired) or "none"
    print(f"optimizer: re-wrapped {report.rewrapped} data key(s) under the new key {report.new_kid}; retired: {retired}")
    return EXIT_OK


def cmd_peers(args: argparse.Namespace) -> int:
    from engine.service.server import default_data_dir
    from engine.trust.peers import PeerRegistry

    if args.peers_command is None:
        raise UsageError("peers needs an action: add, list or remove (see 'optimizer peers --help')")
    with PeerRegistry(Path(args.data or default_data_dir()).expanduser()) as registry:
        if args.peers_command == "add":
            peer = registry.add(args.key, args.url, name=args.name, capability=args.capability,
                                specialisations=args.special)
            print(f"optimizer: enrolled peer {peer.node_id} at {peer.url}")
        elif args.peers_command == "remove":
            peer = registry.remove(args.node_id)
            print(f"optimizer: removed peer {peer.node_id} ({peer.url}); its votes are rejected from now on")
        elif args.json:
            print(json.dumps([p.to_dict() for p in registry.list()]))
        else:
            print(_table([(p.node_id, p.name or "", p.url, f"{p.capability:g}", ",".join(p.specialisations) or "-")
                          for p in registry.list()], ("node", "name", "url", "capability", "specialises in")))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from engine.service.security import load_or_create_identity
    from engine.service.server import default_data_dir
    from engine.trust.audit import LOG_FILE, AuditLog, SignedCheckpoint

    if args.audit_command is None:
        raise UsageError("audit needs an action: verify, prove, checkpoint, show or list (see 'optimizer audit --help')")
    data_dir = Path(args.data or default_data_dir()).expanduser()
    if not (data_dir / "identity" / "ed25519.pem").is_file():
        raise InputError("no engine node data here (no identity key to check signatures with)", where=str(data_dir),
                         hint="pass the node's data folder with --data")
    if not (data_dir / LOG_FILE).is_file():
        raise InputError("this node has no audit log yet", where=str(data_dir / LOG_FILE))
    identity, key = load_or_create_identity(data_dir)
    signing_key = key if args.audit_command == "checkpoint" else None
    with AuditLog(data_dir, signing_key, identity.node_id, public_key=key.public_key()) as audit_log:
        if args.audit_command == "verify":
            expect = []
            for file in args.checkpoint:
                try:
                    expect.append(SignedCheckpoint.from_dict(json.loads(Path(file).read_text(encoding="utf-8"))))
                except (OSError, ValueError) as exc:
                    raise InputError(f"cannot read the checkpoint ({exc})", where=file) from None
            report = audit_log.verify(expect=expect)
            if args.json:
                print(json.dumps(report.to_dict()))
            elif report.ok:
                print(f"audit log {report.path}: intact: {report.entries} entries, {report.checkpoints} "
                      f"checkpoint(s), root {report.root} (checked in {report.seconds:.2f} s)")
            if report.ok:
                return EXIT_OK
            more = len(report.problems) - 1
            print(f"optimizer: error: audit log {report.path}: {report.first_problem}"
                  + (f" (and {more} more problem(s), listed below)" if more else ""), file=sys.stderr)
            for problem in report.problems[1:]:
                print(f"  also: {problem}", file=sys.stderr)
            return EXIT_INPUT
        if args.audit_command == "prove":
            proof = audit_log.prove(args.entry)
            if args.json:
                print(json.dumps(proof))
                return EXIT_OK
            cp = proof["checkpoint"]
            print(f"entry {proof['index']} ({proof['entry'].get('event')}) is in the audit log of node {cp['node_id']}: "
                  f"checkpoint #{cp['seq']} ({proof['tree_size']} entries, signed {cp['timestamp']})")
            print(f"  leaf hash   {proof['leaf_hash']}")
            print(f"  root        {proof['root']}")
            print(f"  audit path  ({len(proof['audit_path'])} hashes, leaf to root, RFC 6962)")
            for h in proof["audit_path"]:
                print(f"    {h}")
            print("  verified: the path leads to the signed root")
            return EXIT_OK
        if args.audit_command == "checkpoint":
            checkpoint = audit_log.checkpoint()
            print(json.dumps(checkpoint.to_dict()) if args.json else
                  f"checkpoint: {checkpoint.size} entries, root {checkpoint.root.hex()}, signed {checkpoint.timestamp}")
            return EXIT_OK
        if args.audit_command == "show":
            entry = audit_log.entry(args.entry)
            print(json.dumps(entry) if args.json else json.dumps(entry, indent=2, sort_keys=True))
            return EXIT_OK
        if args.limit < 1:
            raise UsageError("--limit must be at least 1")
        entries = audit_log.entries(max(0, audit_log.size - args.limit))
        if args.json:
            print(json.dumps(entries))
            return EXIT_OK
        print(_table([(e.get("index"), e.get("timestamp"), e.get("event"), e.get("scene_id") or "",
                       e.get("verification_id") or "",
                       "" if e.get("consensus_score") is None else f"{e['consensus_score']:.3f}",
                       {True: "yes", False: "no", None: ""}.get(e.get("quality_passed"), "?"))
                      for e in entries], ("entry", "time", "event", "scene", "verification", "consensus", "passed")))
    return EXIT_OK


def cmd_quote(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from engine.economy import (
        Calibration,
        Pool,
        default_pool,
        jobs_from_analysis,
        load_pool,
        load_tariff,
        nodes_from_peers,
        parse_deadline,
        quote,
    )
    from engine.route import analyze_and_plan
    from engine.scene.io import load_scene

    now = datetime.now(UTC) if args.now is None else parse_deadline(args.now, datetime.now(UTC), where="--now")
    deadline = parse_deadline(args.deadline, now)
    if args.nodes and args.prices:
        raise UsageError("--prices applies to the default pool; give prices per node in the --nodes file")
    if args.nodes:
        pool = load_pool(args.nodes)
    else:
        pool = default_pool(tariff=load_tariff(args.prices)) if args.prices else default_pool()
    calibration = Calibration.open(args.data) if args.data else None
    if args.data and (Path(args.data).expanduser() / "trust.sqlite3").is_file():
        from engine.trust.peers import PeerRegistry

        with PeerRegistry(Path(args.data).expanduser()) as registry:
            peers = nodes_from_peers(registry.list(), pool.local.timezone)
        pool = Pool(pool.nodes + tuple(peers))
    settings = {"bake": {"samples": args.samples} if args.samples else {},
                "splat": {"steps": args.steps} if args.steps else {}}
    result = analyze_and_plan(load_scene(args.path, unit=args.unit))
    jobs, estimates = jobs_from_analysis(result, deadline, args.kind, calibration, pool.local.speed, settings)
    answer = quote(jobs, pool, now).to_dict()
    answer["scene"] = result.scene_name
    answer["pipeline"] = result.plan.pipeline
    answer["estimates"] = [e.to_dict() for e in estimates]
    if args.json:
        print(json.dumps(answer))
        return EXIT_OK
    total, cur = answer["total"], answer["currency"]
    print(f"Quote for '{answer['scene']}' ({answer['pipeline']}), now {answer['now']}:")
    print(_table([(j["job"], ",".join(j["nodes"]), j["start"], j["finish"], f"{j['cost']:.4g}",
                   f"{j['baseline']['cost']:.4g}", f"{j['saving_percent']:.1f} %") for j in answer["jobs"]],
                 ("job", "nodes", "start", "finish", f"cost {cur}", "run now", "saving")))
    print(f"total {total['cost']:.4g} {cur} vs {total['baseline_cost']:.4g} run now: saving "
          f"{total['saving_percent']:.1f} % (the design's fixed formula would claim {total['design_formula_saving_percent']:.2f} %)")
    return EXIT_OK


COMMANDS = {
    "analyze": cmd_analyze, "demo": cmd_demo, "optimize": cmd_optimize, "bake": cmd_bake, "splat": cmd_splat, "serve": cmd_serve, "submit": cmd_submit, "status": cmd_status,
    "wait": cmd_wait, "cancel": cmd_cancel, "keys": cmd_keys, "peers": cmd_peers,
    "audit": cmd_audit, "peer": cmd_peer, "verify": cmd_verify, "quote": cmd_quote,
    "report": cmd_report,
}


def _remote_errors() -> tuple[type[Exception], ...]:
    from engine.client import EngineError, EngineUnreachable

    return (EngineError, EngineUnreachable)


def _unreachable(exc: Exception) -> bool:
    from engine.client import EngineUnreachable

    return isinstance(exc, EngineUnreachable)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `optimizer` console script; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="optimizer: warning: %(message)s", stream=sys.stderr)
    try:
        args = _build_parser().parse_args(argv)
        if args.verbose:
            logging.getLogger("engine").setLevel(logging.INFO)
        if args.command is None:
            raise UsageError("no command given (see 'optimizer --help')")
        return COMMANDS[args.command](args)
    except InputError as exc:
        print(f"optimizer: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except _remote_errors() as exc:
        print(f"optimizer: error: {exc}", file=sys.stderr)
        return EXIT_INPUT if getattr(exc, "status", 500) < 500 and not _unreachable(exc) else EXIT_INTERNAL
    except OptimizerError as exc:
        print(f"optimizer: error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print("optimizer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("OPTIMIZER_DEBUG"):
            traceback.print_exc()
        print(f"optimizer: internal error: {type(exc).__name__}: {exc} (set OPTIMIZER_DEBUG=1 for the traceback; "
              "please report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
