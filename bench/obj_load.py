"""Time engine.scene.obj.load_obj on a generated OBJ grid (default: about 1M triangles).

    python bench/obj_load.py [--triangles 1000000] [--form v/vt/vn|v|v//vn|quads] [--keep DIR]

Prints the file size, the parse time (best of --repeat runs) and the triangle count.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np


def write_grid(path: Path, triangles: int, form: str) -> None:
    """A heightfield grid of ~``triangles`` triangles, written with numpy (no Python loop per line)."""
    n = int(math.sqrt(triangles / 2)) + 1
    u, w = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="xy")
    y = 0.05 * np.sin(8 * u) * np.cos(6 * w)
    pos = np.stack([u * 10, y, w * 10], axis=-1).reshape(-1, 3)
    uv = np.stack([u, w], axis=-1).reshape(-1, 2)
    nrm = np.tile([0.0, 1.0, 0.0], (n * n, 1))
    i = np.arange(n * n).reshape(n, n)[:-1, :-1].reshape(-1) + 1
    a, b, c, d = i, i + 1, i + n + 1, i + n
    with path.open("w") as f:
        f.write("o grid\n")
        np.savetxt(f, pos, fmt="v %.6f %.6f %.6f")
        if form in ("v/vt/vn", "quads"):
            np.savetxt(f, uv, fmt="vt %.6f %.6f")
        if form != "v":
            np.savetxt(f, nrm, fmt="vn %.4f %.4f %.4f")
        if form == "quads":
            q = np.stack([a, b, c, d], axis=1)
            np.savetxt(f, np.repeat(q, 3, axis=1), fmt="f %d/%d/%d %d/%d/%d %d/%d/%d %d/%d/%d")
            return
        tris = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
        if form == "v":
            np.savetxt(f, tris, fmt="f %d %d %d")
        elif form == "v//vn":
            np.savetxt(f, np.repeat(tris, 2, axis=1), fmt="f %d//%d %d//%d %d//%d")
        else:
            np.savetxt(f, np.repeat(tris, 3, axis=1), fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triangles", type=int, default=1_000_000)
    parser.add_argument("--form", default="v/vt/vn", choices=["v/vt/vn", "v", "v//vn", "quads"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the OBJ here instead of a temporary folder")
    args = parser.parse_args()

    from engine.scene.obj import load_obj

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"grid_{args.form.replace('/', '_')}.obj"
        write_grid(path, args.triangles, args.form)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            scene = load_obj(path)
            times.append(time.perf_counter() - start)
        print(
            f"obj_load form={args.form} size={path.stat().st_size / 1e6:.1f} MB "
            f"triangles={scene.n_triangles} vertices={scene.n_vertices} "
            f"best={min(times):.3f} s median={sorted(times)[len(times) // 2]:.3f} s"
        )


if __name__ == "__main__":
    main()
