"""Headless batch: analyse or optimize a .blend without the UI.

Two doors to the same code, with the `optimizer` CLI's exit codes (0 ok, 2 bad input or usage,
1 internal error):

    blender --background scene.blend --command optimizer analyze [--json] [--selected] [--mode M] [--set K=V]
    python -m blender_addon.batch scene.blend analyze [--json] ...     (Blender as the `bpy` module)

``optimize`` submits the scene to the engine node and waits for the job (``--url``, ``--token``).
With ``--out DIR`` it runs the one-click pipeline (the ``optimize`` job kind): on the node at
``--url``, or on a node started for the run with its data in ``DIR/node`` (local verifier peers
included); the result folder lands in ``DIR`` (assets, verification, audit proof, report.html),
the lightmaps and the splat preview are applied to the scene, which is saved as
``DIR/optimized.blend``, and the manifest is printed as JSON. ``--preview`` uses the demo's quick
settings and relaxed quality targets; ``--quality METRIC=VALUE`` sets a target.
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
    parser.add_argument("--out", help="optimize: run the whole pipeline and put the result folder here")
    parser.add_argument("--preview", action="store_true", help="optimize --out: quick settings, relaxed targets")
    parser.add_argument("--quality", action="append", default=[], metavar="METRIC=VALUE",
                        help="optimize --out: a quality target, e.g. psnr_min=30")
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
    if args.out:
        return _optimize_to_folder(context, scene, args)
    client = EngineClient(args.url, args.token)
    job = client.submit(scene, options={"mode": args.mode, "overrides": _policy_values(args.overrides)})
    print(f"optimizer: job {job.id} submitted to {client.url}", file=sys.stderr)
    done = client.wait(job.id)
    print(json.dumps({"job": done.id, "state": done.state, "error": done.error,
                      "artifacts": [a.name for a in done.artifacts]}))
    return EXIT_OK if done.state == "done" else EXIT_INTERNAL


def _optimize_to_folder(context: object, scene: object, args: argparse.Namespace) -> int:
    """`optimize --out DIR`: the one-click pipeline on a node (started here unless --url), applied."""
    import subprocess
    import time

    import bpy

    from engine.cli import DEMO_SETTINGS, _threshold_values
    from engine.client import EngineClient
    from engine.errors import OptimizerError

    from .operators import use_optimize_result

    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    params: dict = {"quality": _threshold_values(args.quality)}
    if args.preview:
        params = {"bake": dict(DEMO_SETTINGS["bake"]), "splat": dict(DEMO_SETTINGS["splat"]),
                  "quality": {**DEMO_SETTINGS["quality"], **params["quality"]}}
    server = None
    url, token = args.url, args.token
    if url is None:  # a node for this run, its data in OUT/node
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        config = out / "node" / "config"
        os.environ["OPTIMIZER_CONFIG_DIR"] = str(config)
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        log = (out / "node.log").open("w")
        server = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--data",
                                   str(out / "node"), "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
    try:
        client = EngineClient(url, token)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.health()
                break
            except OptimizerError:
                if time.monotonic() > deadline or (server is not None and server.poll() is not None):
                    raise OptimizerError(f"the engine node did not start (see {out / 'node.log'})") from None
                time.sleep(0.3)
        client = EngineClient(url, token)  # the token file exists now
        job = client.submit(scene, kind="optimize", options={"params": params})
        print(f"optimizer: job {job.id} submitted to {client.url}", file=sys.stderr)
        done = client.wait(job.id)
        if done.state != "done":
            print(f"optimizer: error: the optimize job {done.state}: {done.error}", file=sys.stderr)
            return EXIT_INTERNAL
        client.download_artifacts(job.id, out)
        status = use_optimize_result(context, out, pack=True, open_report=False)  # type: ignore[arg-type]
        bpy.ops.wm.save_as_mainfile(filepath=str(out / "optimized.blend"), copy=True)
        manifest = json.loads((out / "manifest.json").read_text())
        print(json.dumps({"job": job.id, "status": status, "report": str(out / "report.html"), **manifest}))
        return EXIT_OK
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


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
