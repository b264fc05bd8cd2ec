"""Benchmark: Gaussians initialised from the mesh reach a target PSNR in fewer steps than random init.

Scene: the toy objects (engine.scene.samples.toy_objects), reference views path-traced by the
engine renderer; both runs train on the same views with the same settings and seed, measure the
held-out PSNR every ``--eval-every`` steps, and report the first step at which each reaches
``--target`` dB (the target defaults to 1 dB under what the mesh-initialised run ends at). The
figure is a ratio in the same run: steps(random) / steps(mesh); "never" when the random run does
not get there within the budget (then the ratio is at least budget / steps(mesh)).

    python bench/bench_splat_init.py [--steps 600] [--views 24] [--resolution 64] [--points 3000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine.splat  # noqa: F401  (OpenMP waits passively; before torch)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from engine.bake.integrate import scene_triangles
    from engine.render.views import render_views
    from engine.scene.samples import toy_objects
    from engine.splat.frames import init_to_file_frame, viewmats_to_file_frame
    from engine.splat.init import init_from_mesh, init_random
    from engine.splat.pipeline import _srgb_straight
    from engine.splat.rig import plan_rig
    from engine.splat.train import TrainSettings, train_gaussians

    scene = toy_objects()
    corners = scene_triangles(scene).corners.reshape(-1, 3)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    rig = plan_rig(lo, hi, kind="object", views=args.views, width=args.resolution, test_every=6)
    rendered = render_views(scene, rig.viewmats, rig.Ks, rig.width, rig.height, samples=16, bounces=2, aa=4,
                            device="cpu")
    images = _srgb_straight(rendered.rgba)
    viewmats = viewmats_to_file_frame(rig.viewmats)
    settings = TrainSettings(steps=args.steps, sh_degree=1, device="cpu", seed=0)
    inits = {"mesh": init_from_mesh(scene, args.points, seed=0), "random": init_random(lo, hi, args.points, seed=0)}
    curves: dict[str, list[tuple[int, float]]] = {}
    seconds: dict[str, float] = {}
    for name, init in inits.items():
        result = train_gaussians(init_to_file_frame(init), images, viewmats, rig.Ks, rig.train, settings,
                                 eval_views=rig.test, eval_every=args.eval_every)
        curves[name] = [(int(h["step"]), float(h["eval_psnr"])) for h in result.history if "eval_psnr" in h]
        seconds[name] = result.seconds
    target = args.target if args.target is not None else curves["mesh"][-1][1] - 1.0

    def first(curve: list[tuple[int, float]]) -> int | None:
        return next((step for step, value in curve if value >= target), None)

    reached = {name: first(curve) for name, curve in curves.items()}
    mesh_steps = reached["mesh"]
    random_steps = reached["random"]
    if mesh_steps is None:
        ratio = None
    elif random_steps is None:
        ratio = f">= {args.steps / mesh_steps:.2f}"
    else:
        ratio = round(random_steps / mesh_steps, 2)
    return {
        "target_psnr": round(target, 2),
        "steps_to_target": reached,
        "random_over_mesh_steps": ratio,
        "final_psnr": {name: curve[-1][1] for name, curve in curves.items()},
        "curves": curves,
        "train_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "settings": {"steps": args.steps, "views": args.views, "resolution": args.resolution, "points": args.points},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--points", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--target", type=float, help="PSNR target in dB (default: mesh run's final − 1 dB)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"target held-out PSNR {figures['target_psnr']} dB")
    for name, curve in figures["curves"].items():
        line = " ".join(f"{step}:{value:.1f}" for step, value in curve)
        print(f"  {name:6s} reaches it at step {figures['steps_to_target'][name]}; curve {line}")
    print(f"steps(random) / steps(mesh) = {figures['random_over_mesh_steps']}")
    print(f"final PSNR: {json.dumps(figures['final_psnr'])}; train seconds {json.dumps(figures['train_seconds'])}")


if __name__ == "__main__":
    main()
