"""Sample scenes bundled with the engine: the classic Cornell box as OBJ + MTL text.

:func:`toy_objects` is a small object scene for the splat route and its tests: two boxes with
coloured faces, lit by the sun and a grey sky.

The Cornell box's geometry is Cornell's measured data (millimetres, Y up); the MTL gives the ceiling light
its emission with ``Ke`` (the modern convention). :func:`write_cornell_box` writes both files
into a folder, so ``optimizer bake`` / ``optimizer splat`` and the benchmarks can use it::

    path = write_cornell_box(folder)          # folder/cornell_box.obj (+ .mtl beside it)
    scene = load_scene(path, unit="mm")
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

CORNELL_OBJ = """\
# The Cornell box, millimetres, Y up
mtllib cornell_box.mtl

o floor
usemtl white
v 552.8 0.0 0.0
v 0.0 0.0 0.0
v 0.0 0.0 559.2
v 549.6 0.0 559.2
f -4 -3 -2 -1

o ceiling
v 556.0 548.8 0.0
v 556.0 548.8 559.2
v 0.0 548.8 559.2
v 0.0 548.8 0.0
f -4 -3 -2 -1

o back_wall
v 549.6 0.0 559.2
v 0.0 0.0 559.2
v 0.0 548.8 559.2
v 556.0 548.8 559.2
f -4 -3 -2 -1

o right_wall
usemtl green
v 0.0 0.0 559.2
v 0.0 0.0 0.0
v 0.0 548.8 0.0
v 0.0 548.8 559.2
f -4 -3 -2 -1

o left_wall
usemtl red
v 552.8 0.0 0.0
v 549.6 0.0 559.2
v 556.0 548.8 559.2
v 556.0 548.8 0.0
f -4 -3 -2 -1

o light
usemtl light
v 343.0 548.7 227.0
v 343.0 548.7 332.0
v 213.0 548.7 332.0
v 213.0 548.7 227.0
f -4 -3 -2 -1

o short_block
usemtl white
v 130.0 165.0 65.0
v 82.0 165.0 225.0
v 240.0 165.0 272.0
v 290.0 165.0 114.0
v 290.0 0.0 114.0
v 240.0 0.0 272.0
v 130.0 0.0 65.0
v 82.0 0.0 225.0
f 25 26 27 28
f 29 28 27 30
f 31 25 28 29
f 32 26 25 31
f 30 27 26 32

o tall_block
v 423.0 330.0 247.0
v 265.0 330.0 296.0
v 314.0 330.0 456.0
v 472.0 330.0 406.0
v 423.0 0.0 247.0
v 472.0 0.0 406.0
v 314.0 0.0 456.0
v 265.0 0.0 296.0
f 33 34 35 36
f 37 33 36 38
f 38 36 35 39
f 39 35 34 40
f 40 34 33 37
"""

CORNELL_MTL = """\
newmtl white
Kd 0.725 0.71 0.68
newmtl red
Kd 0.63 0.065 0.05
newmtl green
Kd 0.14 0.45 0.091
newmtl light
Kd 0.78 0.78 0.78
Ke 17 12 4
"""


def write_cornell_box(folder: str | Path, name: str = "cornell_box") -> Path:
    """Write ``<name>.obj`` and ``<name>.mtl`` into ``folder``; returns the OBJ's path."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.mtl").write_text(CORNELL_MTL, encoding="utf-8")
    obj = root / f"{name}.obj"
    obj.write_text(CORNELL_OBJ.replace("mtllib cornell_box.mtl", f"mtllib {name}.mtl"), encoding="utf-8")
    return obj


def _box(size: tuple[float, float, float], centre: tuple[float, float, float], turn: float) -> tuple[np.ndarray, ...]:
    """A box as 24 vertices (flat faces), 12 triangles, per-face material slots 0..2, and its transform."""
    corners = np.array([[x, y, z] for z in (0, 1) for y in (0, 1) for x in (0, 1)], np.float32) - 0.5
    faces = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
    positions = corners[np.array(faces).ravel()] * np.asarray(size, np.float32)
    quads = np.arange(24, dtype=np.int32).reshape(6, 4)
    triangles = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    slots = np.tile(np.array([0, 0, 1, 1, 2, 2], np.int32), 2)
    transform = np.eye(4)
    c, s = math.cos(turn), math.sin(turn)
    transform[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    transform[:3, 3] = centre
    return positions, triangles, slots, transform


def toy_objects() -> Any:
    """Two boxes with red, green and white faces on no ground, a sun and a grey sky (metres)."""
    from engine.scene.model import Light, Material, MeshObject, Scene

    materials = (Material("white", base_color=(0.8, 0.8, 0.8, 1.0)), Material("red", base_color=(0.8, 0.1, 0.1, 1.0)),
                 Material("green", base_color=(0.1, 0.6, 0.2, 1.0)), Material("blue", base_color=(0.1, 0.2, 0.8, 1.0)))
    objects = []
    for name, size, centre, turn, first in (("big box", (1.0, 0.8, 0.6), (0.0, 0.0, 0.3), 0.3, 0),
                                             ("small box", (0.4, 0.4, 0.5), (0.2, 0.1, 0.85), -0.5, 1)):
        positions, triangles, slots, transform = _box(size, centre, turn)
        objects.append(MeshObject(name, positions, triangles, material_indices=slots + first, transform=transform))
    sun = np.eye(4)
    sun[:3, :3] = [[1, 0, 0], [0, math.cos(0.6), -math.sin(0.6)], [0, math.sin(0.6), math.cos(0.6)]]
    return Scene(tuple(objects), materials, (Light("sun", "sun", power=3.0, transform=sun, angle=0.05),),
                 name="toy objects", environment=(0.35, 0.35, 0.4))
