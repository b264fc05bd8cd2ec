"""Headless batch: analyse or optimize a .blend without the UI.

Two doors to the same code, with the `optimizer` CLI's exit codes (0 ok, 2 bad input or usage,
1 internal error):

    blender --background scene.blend --command optimizer analyze [--json] [--selected] [--mode M] [--set K=V]
    python -m blender_addon.batch scene.blend analyze [--json] ...     (Blender as the `bpy` module)

``optimize`` submits the scene to the engine node and waits for the job (``--url``, ``--token``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _parser(with_blend: bool) -> argparse.ArgumentParser:
    prog = "python -m blender_addon.batch" if with_blend else "blender -b FILE --command optimizer"
    parser = _Parser(prog=prog, description="Analyse or optimize a Blender scene headlessly.")
    if with_blend:
        parser.add_argument("blend", help="the .blend file")
    parser.add_argument("action", choices=("analyze", "optimize"))
    parser.add_argument("--json", action="store_true", help="print one JSON object (analyze)")
    parser.add_argument("--selected", action="store_true", help="only the selected objects")
    parser.add_argument("--mode", choices=("object", "scene"), default="object")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--url", help="engine URL (optimize)")
    parser.add_argument("--token", help="engine token (optimize)")
    return parser


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what C code prints on stdout (file descriptor 1) to stderr for a while."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _open_blend(path: str) -> None:
    import bpy

    from engine.errors import InputError

    blend = Path(path)
    if not blend.is_file():
        raise InputError("file does not exist" if not blend.exists() else "is not a file", where=str(blend))
    try:
        with _stdout_to_stderr():  # Blender prints "Read blend: ..." on stdout; keep stdout for results
            bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
    except RuntimeError as exc:
        raise InputError(f"Blender cannot open it ({str(exc).strip().splitlines()[-1]})", where=str(blend)) from None


def _run(args: argparse.Namespace) -> int:
    import bpy

    from engine.cli import _policy_values, render_report

    context = bpy.context
    state = getattr(context.scene, "optimizer", None)
    if state is not None:
        state.selected_only = args.selected
    if args.action == "analyze":
        from .operators import run_analysis
        from .snapshot import snapshot_scene

        if state is not None:
            result = run_analysis(context, mode=args.mode, settings=_policy_values(args.overrides))
        else:  # the add-on is not registered (python -m): same steps without the scene state
            from engine.route import RoutingPolicy, analyze_and_plan

            scene = snapshot_scene(context, selected_only=args.selected)
            policy = RoutingPolicy(mode=args.mode).with_overrides(_policy_values(args.overrides))
            result = analyze_and_plan(scene, policy).to_dict()
        print(json.dumps(result) if args.json else render_report(result))
        return EXIT_OK

    from engine.client import EngineClient

    from .snapshot import snapshot_scene

    scene = snapshot_scene(context, selected_only=args.selected)
    client = EngineClient(args.url, args.token)
    job = client.submit(scene, options={"mode": args.mode, "overrides": _policy_values(args.overrides)})
    print(f"optimizer: job {job.id} submitted to {client.url}", file=sys.stderr)
    done = client.wait(job.id)
    print(json.dumps({"job": done.id, "state": done.state, "error": done.error,
                      "artifacts": [a.name for a in done.artifacts]}))
    return EXIT_OK if done.state == "done" else EXIT_INTERNAL


def _guarded(run: callable) -> int:  # type: ignore[valid-type]
    from engine.client import EngineError, EngineUnreachable
    from engine.errors import InputError, OptimizerError

    try:
        return run()
    except _UsageError as exc:
        print(f"optimizer: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except InputError as exc:
        print(f"optimizer: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except EngineError as exc:
        print(f"optimizer: error: {exc}", file=sys.stderr)
        return EXIT_INPUT if exc.status < 500 else EXIT_INTERNAL
    except (EngineUnreachable, OptimizerError) as exc:
        print(f"optimizer: error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:
        print(f"optimizer: internal error: {type(exc).__name__}: {exc} (please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def cli_command(argv: Sequence[str]) -> int:
    """`blender -b scene.blend --command optimizer ...`: the file is already open."""
    return _guarded(lambda: _run(_parser(with_blend=False).parse_args(list(argv))))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m blender_addon.batch scene.blend ...` (Blender as the bpy module)."""

    def run() -> int:
        args = _parser(with_blend=True).parse_args(list(sys.argv[1:] if argv is None else argv))
        _open_blend(args.blend)
        return _run(args)

    return _guarded(run)


if __name__ == "__main__":
    sys.exit(main())
