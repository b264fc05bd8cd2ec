"""Time the wire codec (engine.scene.wire) on a ~1M-triangle scene, both forms.

    python bench/bench_wire.py [--triangles 1000000] [--instances 3] [--repeat 5] [--json]

The scene is one grid mesh (positions, normals, one UV set, material indices) plus
``--instances`` instanced copies that share its arrays. For msgpack and JSON it times encode,
decode and encode+decode (best of ``--repeat``, time.perf_counter), prints the message size,
MB/s (message bytes / time), and each time as a ratio against a baseline measured in the same
process: ``bytes(array)`` + ``np.frombuffer`` over every distinct array of the scene (one copy,
no framing, no validation). Decoding includes the model's validation, as it does in service.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.scene import wire
from engine.scene.model import Material, MeshObject, Scene


def build_scene(triangles: int, instances: int) -> Scene:
    """A grid mesh of about ``triangles`` triangles and ``instances`` copies sharing its arrays."""
    n = int(math.sqrt(triangles / 2)) + 1
    u, w = np.meshgrid(np.linspace(0, 1, n, dtype=np.float32), np.linspace(0, 1, n, dtype=np.float32))
    height = 0.05 * np.sin(8 * u) * np.cos(6 * w)
    positions = np.stack([u * 10, w * 10, height], axis=-1).reshape(-1, 3)
    normals = np.tile(np.array([0, 0, 1], np.float32), (n * n, 1))
    uv = np.stack([u, w], axis=-1).reshape(-1, 2)
    i = np.arange(n * n, dtype=np.int32).reshape(n, n)[:-1, :-1].reshape(-1)
    a, b, c, d = i, i + 1, i + n + 1, i + n
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    material_indices = (np.arange(len(tris)) % 2).astype(np.int32)
    objects = [
        MeshObject("grid", positions, tris, normals=normals, uvs={"UVMap": uv}, material_indices=material_indices)
    ]
    for k in range(instances):
        transform = np.eye(4)
        transform[:3, 3] = (12.0 * (k + 1), 0.0, 0.0)
        objects.append(
            MeshObject(
                f"grid.{k + 1:03d}",
                positions,
                tris,
                normals=normals,
                uvs={"UVMap": uv},
                material_indices=material_indices,
                transform=transform,
                instance_of="grid",
            )
        )
    return Scene(objects=tuple(objects), materials=(Material("a"), Material("b", roughness=0.1)), name="bench")


def distinct_arrays(scene: Scene) -> list[np.ndarray]:
    """Every distinct array buffer of the scene (instances share theirs)."""
    seen: dict[tuple[int, str, tuple[int, ...]], np.ndarray] = {}
    for obj in scene.objects:
        for array in (
            obj.positions,
            obj.triangles,
            obj.normals,
            obj.material_indices,
            obj.transform,
            *obj.uvs.values(),
        ):
            if array is not None:
                seen.setdefault((array.__array_interface__["data"][0], array.dtype.str, array.shape), array)
    return list(seen.values())


def best_of(repeat: int, function: Callable[[], Any]) -> float:
    """The shortest wall time of ``repeat`` calls, in seconds."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def baseline(arrays: list[np.ndarray]) -> None:
    """One plain copy out and a view back in: what any codec must at least do."""
    for array in arrays:
        data = bytes(array)
        np.frombuffer(data, dtype=array.dtype).reshape(array.shape)


def run(triangles: int, instances: int, repeat: int) -> dict[str, Any]:
    scene = build_scene(triangles, instances)
    arrays = distinct_arrays(scene)
    array_bytes = sum(a.nbytes for a in arrays)
    base = best_of(repeat, lambda: baseline(arrays))
    figures: dict[str, Any] = {
        "triangles": scene.objects[0].n_triangles,
        "vertices": scene.objects[0].n_vertices,
        "objects": len(scene.objects),
        "distinct_array_bytes": array_bytes,
        "repeat": repeat,
        "baseline_s": base,
        "baseline_mb_s": array_bytes / base / 1e6,
        "forms": {},
    }
    for form in wire.FORMS:
        message = wire.encode(scene, form=form)
        back = wire.decode(message)
        assert back.n_triangles == scene.n_triangles
        times = {
            "encode": best_of(repeat, lambda form=form: wire.encode(scene, form=form)),
            "decode": best_of(repeat, lambda message=message: wire.decode(message)),
            "encode+decode": best_of(repeat, lambda form=form: wire.decode(wire.encode(scene, form=form))),
        }
        figures["forms"][form] = {
            "message_bytes": len(message),
            **{step: {"s": t, "mb_s": len(message) / t / 1e6, "x_baseline": t / base} for step, t in times.items()},
        }
    return figures


def table(figures: dict[str, Any]) -> str:
    lines = [
        f"wire codec: {figures['triangles']:,} triangles, {figures['vertices']:,} vertices, "
        f"{figures['objects']} objects (instances share arrays), "
        f"{figures['distinct_array_bytes'] / 1e6:.1f} MB of distinct arrays, best of {figures['repeat']}",
        f"baseline bytes(array) + np.frombuffer: {figures['baseline_s'] * 1e3:8.2f} ms  "
        f"{figures['baseline_mb_s']:8.0f} MB/s",
        "",
        f"{'form':<8} {'step':<14} {'message MB':>10} {'time ms':>9} {'MB/s':>8} {'x baseline':>10}",
    ]
    for form, row in figures["forms"].items():
        for step in ("encode", "decode", "encode+decode"):
            cell = row[step]
            lines.append(
                f"{form:<8} {step:<14} {row['message_bytes'] / 1e6:>10.1f} {cell['s'] * 1e3:>9.2f} "
                f"{cell['mb_s']:>8.0f} {cell['x_baseline']:>10.2f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triangles", type=int, default=1_000_000, help="triangles of the grid mesh")
    parser.add_argument("--instances", type=int, default=3, help="instanced copies sharing the arrays")
    parser.add_argument("--repeat", type=int, default=5, help="runs per timing; the best is kept")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    figures = run(args.triangles, args.instances, max(1, args.repeat))
    print(json.dumps(figures) if args.json else table(figures))


if __name__ == "__main__":
    main()
