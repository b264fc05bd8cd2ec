"""Benchmark: the CPU twin of gsplat's rasterizer (engine.splat.raster.rasterize_dense).

Times one camera, forward and forward + backward (loss = sum of the image), for 5k / 20k / 50k
Gaussians at 64 and 128 px. Scene: Gaussians uniform in the camera's frustum at depths 2–4,
random rotations, log-normal scales shrinking with N so that every size looks like a trained scene
(the image stays covered, ~3–6 px radii), opacities uniform in [0.05, 0.95], RGB colours.
Figures are best of ``--repeat`` after a warm-up, with ``--threads`` torch threads. On a busy
machine, OpenMP's default spin-waiting makes 2 threads erratic (several times slower); run with
``OMP_WAIT_POLICY=PASSIVE`` or ``--threads 1`` for stable figures (the policy in effect is printed).

Baseline in the same run: a brute-force all-pairs renderer in plain autograd (every Gaussian at
every pixel: what "dense" would naively mean) on the smallest case it can hold in memory
(2,000 Gaussians at 64 px); the ratio is its time over ours on that same case.

    python bench/bench_raster.py [--repeat 3] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import best_of

from engine.splat.raster import ALPHA_MAX, ALPHA_THRESHOLD, TRANSMITTANCE_MIN, project_gaussians, rasterize_dense

GOAL_20K_128_S = 1.0  # forward + backward, 20k Gaussians, 128 px, 2 cores (issue 6, CPU twin)


def bench_scene(n: int, size: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Parameters (requiring grad), viewmats and Ks of the benchmark scene."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=gen) * 2 + 2
    xy = (torch.rand(n, 2, generator=gen) - 0.5) * z[:, None]  # the frustum of a 53° camera
    means = torch.cat([xy, z[:, None]], 1)
    quats = torch.randn(n, 4, generator=gen)
    scales = torch.exp(torch.randn(n, 3, generator=gen) * 0.5 - 3.5 - 0.5 * math.log(n / 5000))
    opacities = torch.rand(n, generator=gen) * 0.9 + 0.05
    colors = torch.rand(n, 3, generator=gen)
    params = [t.requires_grad_() for t in (means, quats, scales, opacities, colors)]
    viewmats = torch.eye(4)[None]
    ks = torch.tensor([[[float(size), 0, size / 2], [0, float(size), size / 2], [0, 0, 1]]])
    return params, viewmats, ks


def brute_force(params: list[torch.Tensor], viewmats: torch.Tensor, ks: torch.Tensor, size: int) -> torch.Tensor:
    """Every Gaussian at every pixel, plain autograd: the baseline (N·H·W tensors)."""
    means, quats, scales, opacities, colors = params
    proj = project_gaussians(means, quats, scales, opacities, viewmats, ks, size, size)
    order = torch.argsort(proj.depths[0].detach())
    order = order[(proj.radii[0, order] > 0).all(-1)]
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    dx = proj.means2d[0, order, 0, None] - xs.reshape(1, -1)
    dy = proj.means2d[0, order, 1, None] - ys.reshape(1, -1)
    a, b, c = proj.conics[0, order].unbind(-1)
    sigma = 0.5 * (a[:, None] * dx * dx + c[:, None] * dy * dy) + b[:, None] * dx * dy
    alpha = torch.clamp(opacities[order, None] * torch.exp(-sigma), max=ALPHA_MAX)
    alpha = torch.where(alpha >= ALPHA_THRESHOLD, alpha, 0.0)
    trans_incl = torch.cumprod(1 - alpha, 0)
    trans = torch.cat([torch.ones_like(trans_incl[:1]), trans_incl[:-1]])
    weights = torch.where(trans_incl > TRANSMITTANCE_MIN, alpha * trans, 0.0)
    return (weights.T @ colors[order]).reshape(size, size, 3)


def time_case(render, params: list[torch.Tensor], repeat: int) -> tuple[float, float]:
    """(forward s, forward + backward s), best of ``repeat``."""

    def forward() -> None:
        with torch.no_grad():
            render()

    def forward_backward() -> None:
        for p in params:
            p.grad = None
        render().sum().backward()

    return best_of(forward, repeat), best_of(forward_backward, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for size in (64, 128):
        for n in (5_000, 20_000, 50_000):
            params, viewmats, ks = bench_scene(n, size)
            fwd, fwd_bwd = time_case(lambda p=params, v=viewmats, k=ks, s=size: rasterize_dense(*p, v, k, s, s)[0],
                                     params, args.repeat)
            with torch.no_grad():
                alpha = rasterize_dense(*params, viewmats, ks, size, size)[1]
            rows.append({"gaussians": n, "size": size, "forward_s": fwd, "forward_backward_s": fwd_bwd,
                         "mean_alpha": float(alpha.mean())})

    n_base, size_base = 2_000, 64
    params, viewmats, ks = bench_scene(n_base, size_base)
    ours = time_case(lambda: rasterize_dense(*params, viewmats, ks, size_base, size_base)[0], params, args.repeat)
    brute = time_case(lambda: brute_force(params, viewmats, ks, size_base), params, args.repeat)
    with torch.no_grad():
        diff = float((rasterize_dense(*params, viewmats, ks, size_base, size_base)[0][0]
                      - brute_force(params, viewmats, ks, size_base)).abs().max())
    baseline = {"gaussians": n_base, "size": size_base, "ours_s": list(ours), "brute_force_s": list(brute),
                "speedup_forward": brute[0] / ours[0], "speedup_forward_backward": brute[1] / ours[1],
                "max_abs_difference": diff}
    goal_case = next(r for r in rows if r["gaussians"] == 20_000 and r["size"] == 128)
    result = {"threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
              "cases": rows, "baseline": baseline,
              "goal_20k_128_forward_backward_s": GOAL_20K_128_S,
              "goal_met": goal_case["forward_backward_s"] <= GOAL_20K_128_S}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"torch threads: {result['threads']}, OMP_WAIT_POLICY {result['omp_wait_policy']}, best of {args.repeat}")
    print(f"{'Gaussians':>10} {'px':>5} {'forward ms':>11} {'fwd+bwd ms':>11} {'mean alpha':>11}")
    for r in rows:
        print(f"{r['gaussians']:>10} {r['size']:>5} {1e3 * r['forward_s']:>11.1f} "
              f"{1e3 * r['forward_backward_s']:>11.1f} {r['mean_alpha']:>11.3f}")
    print(f"baseline ({n_base} Gaussians, {size_base} px): brute force {1e3 * brute[0]:.1f} / {1e3 * brute[1]:.1f} ms, "
          f"ours {1e3 * ours[0]:.1f} / {1e3 * ours[1]:.1f} ms (fwd / fwd+bwd) → ours is "
          f"{baseline['speedup_forward']:.1f}× / {baseline['speedup_forward_backward']:.1f}× faster; "
          f"max |difference| {diff:.1e}")
    print(f"goal: 20k at 128 px fwd+bwd ≤ {GOAL_20K_128_S} s: {'met' if result['goal_met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
