"""Benchmark: snapshot of a ~1M-triangle Blender scene (bpy → Scene) and its analysis, in real Blender.

Scenes, built with bpy in this process:

* ``grid``: a 708 × 708 grid primitive (1,002,528 triangles, one UV layer) plus a few props
  (a subdivided cube, a smooth sphere with a material, a light, a camera): the goal scene;
* ``grid, per-face UVs``: the same grid with every quad mapped to the whole UV square, so every
  inner vertex splits into 4 (the split-vertex worst case for one UV layer);
* ``1024 instances``: a geometry-nodes scatter of 1,024 instances of a 1,280-triangle
  icosphere (1.3M triangles, one shared mesh): the per-instance cost.

Figures are best-of-N wall times: ``snapshot`` (``snapshot_scene``), ``analyze``
(``engine.route.analyze_and_plan`` on the snapshot) and ``together`` (both, as the Analyze
button runs them). The baseline, measured in the same run on the same evaluated grid mesh, is
the classic way to read a mesh: ``mesh.vertices.foreach_get("co")`` plus
``mesh.loop_triangles.foreach_get("vertices")`` (loop triangles already cached, its most
favourable case). Ratios below 1 mean faster than that classic read alone.

    python bench/bench_blender_analyze.py [--repeat 5] [--json]

Goal: snapshot + analyze ≤ 150 ms for 1M triangles.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bpy
from timing import best_of

from blender_addon.snapshot import snapshot_scene
from engine.route import analyze_and_plan

GRID_CUTS = 708  # 708 × 708 quads → 1,002,528 triangles


def build_grid_scene(*, per_face_uvs: bool = False) -> bpy.types.Object:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=GRID_CUTS, y_subdivisions=GRID_CUTS, size=20.0)
    grid = bpy.context.object
    grid.name = "Terrain"
    if per_face_uvs:
        corners = len(grid.data.loops)
        square = np.tile(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32), (corners // 4, 1))
        grid.data.attributes["UVMap"].data.foreach_set("vector", square.ravel())
    bpy.ops.mesh.primitive_cube_add(location=(0, 0, 2))
    bpy.context.object.modifiers.new("Subdivision", "SUBSURF").levels = 2
    bpy.ops.mesh.primitive_uv_sphere_add(location=(3, 0, 2))
    bpy.context.object.data.shade_smooth()
    material = bpy.data.materials.new("Brass")
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Metallic"].default_value = 1.0
    bpy.context.object.data.materials.append(material)
    bpy.ops.object.light_add(type="SUN", rotation=(0.6, 0.2, 0.0))
    bpy.ops.object.camera_add(location=(0, -15, 6), rotation=(1.2, 0.0, 0.0))
    bpy.context.evaluated_depsgraph_get()
    return grid


def build_instance_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=31, y_subdivisions=31, size=60.0)  # 32 × 32 points
    ground = bpy.context.object
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=4, radius=0.5, location=(0, 0, -10))  # 1,280 triangles
    stone = bpy.context.object
    tree = bpy.data.node_groups.new("Scatter", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    group_in, group_out = tree.nodes.new("NodeGroupInput"), tree.nodes.new("NodeGroupOutput")
    info = tree.nodes.new("GeometryNodeObjectInfo")
    info.inputs["Object"].default_value = stone
    scatter = tree.nodes.new("GeometryNodeInstanceOnPoints")
    tree.links.new(group_in.outputs[0], scatter.inputs["Points"])
    tree.links.new(info.outputs["Geometry"], scatter.inputs["Instance"])
    tree.links.new(scatter.outputs[0], group_out.inputs[0])
    ground.modifiers.new("Scatter", "NODES").node_group = tree
    stone.hide_set(True)
    bpy.context.evaluated_depsgraph_get()


def classic_read(obj: bpy.types.Object) -> Callable[[], None]:
    """The slow classic way on the evaluated mesh: vertex coordinates and loop-triangle indices."""
    mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data

    def read() -> None:
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        tris = np.empty(len(mesh.loop_triangles) * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", tris)

    return read


def measure(name: str, repeat: int, baseline: Callable[[], None] | None) -> dict[str, float | int | str]:
    scene = snapshot_scene()
    result = analyze_and_plan(scene)
    snapshot_s = best_of(snapshot_scene, repeat)
    analyze_s = best_of(lambda: analyze_and_plan(scene), repeat)
    together_s = best_of(lambda: analyze_and_plan(snapshot_scene()), repeat)
    figures: dict[str, float | int | str] = {
        "scene": name,
        "triangles": scene.n_triangles,
        "vertices": scene.n_vertices,
        "objects": len(scene.objects),
        "pipeline": result.plan.pipeline,
        "snapshot_ms": snapshot_s * 1e3,
        "analyze_ms": analyze_s * 1e3,
        "together_ms": together_s * 1e3,
    }
    if baseline is not None:
        baseline_s = best_of(baseline, repeat)
        figures["classic_read_ms"] = baseline_s * 1e3
        figures["snapshot_over_classic"] = snapshot_s / baseline_s
        figures["together_over_classic"] = together_s / baseline_s
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    grid = build_grid_scene()
    rows.append(measure("grid 1M + props", args.repeat, classic_read(grid)))
    grid = build_grid_scene(per_face_uvs=True)
    rows.append(measure("grid 1M, per-face UVs", args.repeat, classic_read(grid)))
    build_instance_scene()
    rows.append(measure("1024 GN instances", args.repeat, None))
    if args.json:
        print(json.dumps({"bpy": bpy.app.version_string, "rows": rows}, indent=2))
        return
    print(f"Blender {bpy.app.version_string}, best of {args.repeat}")
    print(f"{'scene':<24} {'triangles':>10} {'vertices':>10} {'snapshot':>9} {'analyze':>8} {'together':>9} "
          f"{'classic':>8} {'snap/cl':>8} {'tog/cl':>7}")
    for row in rows:
        classic = f"{row['classic_read_ms']:>8.1f} {row['snapshot_over_classic']:>8.2f} " \
                  f"{row['together_over_classic']:>7.2f}" if "classic_read_ms" in row else f"{'-':>8} {'-':>8} {'-':>7}"
        print(f"{row['scene']:<24} {row['triangles']:>10,} {row['vertices']:>10,} {row['snapshot_ms']:>9.1f} "
              f"{row['analyze_ms']:>8.1f} {row['together_ms']:>9.1f} {classic}")
    goal = rows[0]["together_ms"]
    print(f"goal: snapshot + analyze ≤ 150 ms for 1M triangles → {goal:.1f} ms "
          f"({'met' if goal <= 150 else 'NOT met'}); times in ms; classic = vertices 'co' + loop_triangles "
          "'vertices' foreach_get on the same evaluated mesh")


if __name__ == "__main__":
    main()
