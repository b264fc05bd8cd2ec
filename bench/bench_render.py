"""Benchmark: the engine's renderer (``engine.render.views.render_views``) on the demo room.

Scene: ``engine.scene.demo.build_demo_scene()`` (a furnished room lit by a window area light,
a potted plant of alpha-cut leaf cards; the animated fan is left out, as in the bake). Views:
``--views`` cameras at head height in the middle of the room, turning around it, ``--size``²
pixels, ``--aa`` rays a pixel, ``--samples`` lighting samples a ray, ``--bounces`` bounces.

Figures: seconds per view, primary rays per second, lighting paths per second, and an upper
bound on all rays per second (per path one shadow ray, then per bounce one closest-hit and
one shadow ray, as ``engine.bake.pipeline`` counts them). Baseline in the same run: tracing
the very same primary rays with ``trace_closest`` alone (best of ``--repeat``), so
``render / trace`` says what lighting the visible points costs on top of finding them. The
render is timed once after a warm-up render of one small view (compilation is not counted).

    python bench/bench_render.py [--views 8] [--size 128] [--samples 16] [--bounces 2] [--aa 4]
                                 [--device auto] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import best_of

from engine.bake.bvh import build_bvh
from engine.bake.integrate import scene_triangles
from engine.bake.kernels import CudaBVH, explain_device, trace_closest
from engine.render import views
from engine.scene.demo import ROOM, build_demo_scene


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera (+Z forward, +X right, +Y down) in the Z-up world."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    view = np.eye(4)
    view[:3, :3] = np.stack([right, down, forward])
    view[:3, 3] = -view[:3, :3] @ eye
    return view


def room_cameras(count: int, size: int, fov_degrees: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` cameras turning around at head height in the room, pitched 10° down."""
    sx, sy, _ = ROOM
    viewmats = []
    for k in range(count):
        yaw = 2.0 * math.pi * k / count
        eye = np.array([sx / 2 + 0.4 * math.cos(yaw), sy / 2 + 0.4 * math.sin(yaw), 1.5])
        target = eye + np.array([math.cos(yaw), math.sin(yaw), -math.tan(math.radians(10.0))])
        viewmats.append(look_at(eye, target))
    focal = 0.5 * size / math.tan(math.radians(fov_degrees) / 2)
    ks = np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    return np.stack(viewmats), np.repeat(ks[None], count, axis=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--bounces", type=int, default=2)
    parser.add_argument("--aa", type=int, default=4)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the views as PNGs here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    scene = build_demo_scene()
    device, why = explain_device(args.device)
    triangles = scene_triangles(scene)
    start = time.perf_counter()
    bvh = build_bvh(triangles.corners.astype(np.float32))
    bvh_s = time.perf_counter() - start
    traced = CudaBVH(bvh) if device == "cuda" else bvh
    viewmats, ks = room_cameras(args.views, args.size)

    # warm-up: compile (or load) every kernel on a small view
    small_view, small_k = room_cameras(1, 16)
    views.render_views(scene, small_view, small_k, 16, 16, samples=1, bounces=args.bounces, aa=args.aa, device=device,
                       bvh=traced)
    result = views.render_views(scene, viewmats, ks, args.size, args.size, samples=args.samples,
                                bounces=args.bounces, aa=args.aa, device=device, bvh=traced)

    rows = np.arange(args.views * args.size)
    rays = views._pixel_rays(viewmats, ks, args.size, rows, args.size, args.aa, 0)
    trace_s = best_of(lambda: trace_closest(rays.origin, rays.direction, np.inf, traced, device=device), args.repeat)

    primary = args.views * args.size * args.size * args.aa
    all_rays = result.rays + result.paths * (1 + 2 * args.bounces)
    figures = {
        "scene": scene.name,
        "triangles": triangles.count,
        "views": args.views,
        "size": args.size,
        "aa": args.aa,
        "samples": args.samples,
        "bounces": args.bounces,
        "device": result.device,
        "device_reason": why,
        "bvh_build_s": round(bvh_s, 4),
        "render_s": round(result.seconds, 3),
        "seconds_per_view": round(result.seconds / args.views, 4),
        "primary_mrays_per_s": round(primary / result.seconds / 1e6, 3),
        "paths_per_s": round(result.paths / result.seconds, 1),
        "rays_per_s_upper_bound": round(all_rays / result.seconds, 1),
        "coverage": round(float(result.alpha.mean()), 4),
        "baseline_trace_primary_s": round(trace_s, 4),
        "baseline_trace_mrays_per_s": round(primary / trace_s / 1e6, 3),
        "ratio_render_vs_trace": round(result.seconds / trace_s, 1),
    }
    if args.out is not None:
        for k in range(args.views):
            views.save_png(args.out / f"view_{k:03d}.png", result.rgba[k])
    if args.json:
        print(json.dumps(figures))
    else:
        width = max(len(key) for key in figures)
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
