"""Benchmark: scene analysis and routing of 1M-triangle scenes against a plain numpy pass.

The baseline, measured in the same process on the same arrays, is one plain numpy pass of
per-triangle areas and normals over every triangle (gather corners, cross product, norms,
normalise): the brute-force way to start an analysis. Figures are best-of-N wall times and
the ratio analysis / baseline (below 1 means faster than brute force).

    python bench/bench_analyze.py [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import best_of

from engine.analyze import analyze_scene, complexity_score
from engine.route import plan_routes
from engine.scene import Material, MeshObject, Scene


def grid(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An n × n vertex height-field grid with UVs: 2·(n−1)² triangles."""
    rng = np.random.default_rng(0)
    g = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2) / (n - 1)
    positions = np.c_[g * 10.0, rng.normal(scale=0.02, size=len(g))].astype(np.float32)
    i = (np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]).ravel()
    triangles = np.concatenate([np.c_[i, i + n, i + 1], np.c_[i + 1, i + n, i + n + 1]]).astype(np.int32)
    return positions, triangles, g.astype(np.float32)


def one_mesh_scene() -> Scene:
    positions, triangles, uv = grid(708)  # 999,698 triangles
    return Scene((MeshObject("terrain", positions, triangles, uvs={"UVMap": uv}),))


def many_objects_scene() -> Scene:
    """1,000 objects of ~1,000 triangles each (unique geometry), 3 materials, one animated."""
    positions, triangles, uv = grid(23)  # 968 triangles
    materials = (Material("a"), Material("b", metallic=1.0, roughness=0.2), Material("c", alpha_mode="BLEND"))
    objects = []
    for k in range(1000):
        transform = np.eye(4)
        transform[:3, 3] = (k % 40, k // 40, 0.0)
        objects.append(MeshObject(f"o{k}", positions + np.float32(k * 1e-4), triangles.copy(), uvs={"UVMap": uv.copy()},
                                  material_indices=np.full(len(triangles), k % 3, np.int32), transform=transform,
                                  animated=k == 0))
    return Scene(tuple(objects), materials)


def instanced_scene() -> Scene:
    """1,000 instances of one 1,000-triangle mesh (a forest of the same tree)."""
    positions, triangles, uv = grid(23)
    objects = []
    for k in range(1000):
        transform = np.diag([1.0 + (k % 5) * 0.1] * 3 + [1.0])
        transform[:3, 3] = (k % 40, k // 40, 0.0)
        objects.append(MeshObject(f"tree{k}", positions, triangles, uvs={"UVMap": uv}, transform=transform,
                                  instance_of="tree"))
    return Scene(tuple(objects))


def baseline_pass(scene: Scene) -> None:
    """Plain numpy: per-triangle world-space areas and unit normals of every triangle."""
    for obj in scene.objects:
        corners = obj.world_positions()[obj.triangles]
        cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        length = np.linalg.norm(cross, axis=1)
        _ = length * 0.5, cross / np.maximum(length, 1e-30)[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = {}
    for name, build in (("1 mesh, 1M triangles", one_mesh_scene), ("1000 objects, 968k triangles", many_objects_scene),
                        ("1000 instances, 968k triangles", instanced_scene)):
        scene = build()
        features = analyze_scene(scene)
        complexity = complexity_score(features)
        analyze_s = best_of(lambda s=scene: complexity_score(analyze_scene(s)), args.repeat)
        route_s = best_of(lambda f=features, c=complexity: plan_routes(f, c), args.repeat)
        baseline_s = best_of(lambda s=scene: baseline_pass(s), args.repeat)
        figures[name] = {
            "triangles": scene.n_triangles,
            "analyze_ms": analyze_s * 1e3,
            "route_ms": route_s * 1e3,
            "baseline_numpy_pass_ms": baseline_s * 1e3,
            "analyze_over_baseline": analyze_s / baseline_s,
        }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{'scene':<32} {'triangles':>10} {'analyze ms':>11} {'route ms':>9} {'numpy pass ms':>14} {'ratio':>6}")
    for name, f in figures.items():
        print(f"{name:<32} {f['triangles']:>10,} {f['analyze_ms']:>11.1f} {f['route_ms']:>9.3f} "
              f"{f['baseline_numpy_pass_ms']:>14.1f} {f['analyze_over_baseline']:>6.2f}")
    print("targets: analyze ≤ 50 ms for 1M triangles on 2 cores, route ≤ 1 ms; ratio = analyze / plain numpy pass")


if __name__ == "__main__":
    main()
