"""The `optimizer` command.

Exit codes for every command: 0 success, 2 bad input or usage (one clear line on stderr, no
traceback), 1 internal error (one line; set OPTIMIZER_DEBUG=1 for the traceback).
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

    demo = commands.add_parser("demo", help="build the bundled demo scene and run the pipeline on it")
    demo.add_argument("--out", default="optimizer-demo", help="output folder (default: ./optimizer-demo)")
    demo.add_argument("--json", action="store_true", help="print the analysis as JSON instead of tables")
    return parser


def _policy(mode: str, overrides: list[str]) -> Any:
    from engine.route import RoutingPolicy

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
    return RoutingPolicy(mode=mode).with_overrides(values)


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
    print(json.dumps(report) if args.json else render_report(report))
    if not args.json:
        print(
            f"\nDemo done in {time.perf_counter() - started:.1f} s. Wrote {glb}, {out / 'analysis.json'} "
            f"and {out / 'plan.optw'}.\nBaking, splatting, verification and the report arrive with the "
            "pipelines that implement them (see README, Roadmap)."
        )
    return EXIT_OK


COMMANDS = {"analyze": cmd_analyze, "demo": cmd_demo}


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
