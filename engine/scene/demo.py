"""The bundled demo scene, generated in code (numpy only).

A 6 × 5 m room with a window in one wall and an area light filling it, static furniture
(baking), a potted plant whose crown is hundreds of thin alpha-cut leaf cards (splatting), and
a ceiling fan that turns (stays live). Small enough to analyse in milliseconds and to process
on a CPU in minutes, and it exercises all three routes.
"""

from __future__ import annotations

import numpy as np

from engine.scene.model import Camera, Light, Material, MeshObject, Scene, Texture

ROOM = (6.0, 5.0, 2.8)  # x, y, z extent in metres
WINDOW = (1.8, 1.2, 0.9)  # width, height, sill height, in the wall at y = ROOM[1]


class _MeshBuilder:
    """Accumulates triangles with normals, UVs and material indices."""

    def __init__(self) -> None:
        self.positions: list[np.ndarray] = []
        self.normals: list[np.ndarray] = []
        self.uvs: list[np.ndarray] = []
        self.triangles: list[np.ndarray] = []
        self.materials: list[np.ndarray] = []
        self.count = 0

    def add(self, positions: np.ndarray, normals: np.ndarray, uvs: np.ndarray, triangles: np.ndarray,
            material: int) -> None:
        self.positions.append(np.asarray(positions, np.float32))
        self.normals.append(np.asarray(normals, np.float32))
        self.uvs.append(np.asarray(uvs, np.float32))
        self.triangles.append(np.asarray(triangles, np.int32) + self.count)
        self.materials.append(np.full(len(triangles), material, np.int32))
        self.count += len(positions)

    def quad(self, corner: np.ndarray, edge_u: np.ndarray, edge_v: np.ndarray, material: int,
             uv_scale: tuple[float, float] = (1.0, 1.0)) -> None:
        """A rectangle from ``corner`` spanning ``edge_u`` and ``edge_v`` (counter-clockwise = front)."""
        corner, edge_u, edge_v = (np.asarray(v, np.float64) for v in (corner, edge_u, edge_v))
        normal = np.cross(edge_u, edge_v)
        normal /= np.linalg.norm(normal)
        positions = [corner, corner + edge_u, corner + edge_u + edge_v, corner + edge_v]
        uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32) * np.float32(uv_scale)
        self.add(np.array(positions), np.tile(normal, (4, 1)), uvs, [[0, 1, 2], [0, 2, 3]], material)

    def box(self, low: tuple[float, float, float], high: tuple[float, float, float], material: int) -> None:
        """An axis-aligned box with outward faces."""
        (x0, y0, z0), (x1, y1, z1) = low, high
        dx, dy, dz = x1 - x0, y1 - y0, z1 - z0
        self.quad((x0, y0, z0), (0, dy, 0), (dx, 0, 0), material)  # bottom (-z)
        self.quad((x0, y0, z1), (dx, 0, 0), (0, dy, 0), material)  # top (+z)
        self.quad((x0, y0, z0), (dx, 0, 0), (0, 0, dz), material)  # front (-y)
        self.quad((x1, y1, z0), (-dx, 0, 0), (0, 0, dz), material)  # back (+y)
        self.quad((x0, y1, z0), (0, -dy, 0), (0, 0, dz), material)  # left (-x)
        self.quad((x1, y0, z0), (0, dy, 0), (0, 0, dz), material)  # right (+x)

    def cylinder(self, centre: tuple[float, float, float], radius: float, height: float, material: int,
                 segments: int = 24) -> None:
        """An open-topped cylinder (a pot) standing on ``centre``."""
        angles = np.linspace(0.0, 2 * np.pi, segments + 1)
        ring = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1)
        base = np.asarray(centre) + ring * radius
        top = base + np.array([0.0, 0.0, height])
        positions = np.concatenate([base, top])
        normals = np.concatenate([ring, ring])
        u = angles / (2 * np.pi)
        uvs = np.concatenate([np.stack([u, np.zeros_like(u)], 1), np.stack([u, np.ones_like(u)], 1)])
        i = np.arange(segments)
        n = segments + 1
        triangles = np.concatenate([np.stack([i, i + 1, i + n + 1], 1), np.stack([i, i + n + 1, i + n], 1)])
        self.add(positions, normals, uvs, triangles, material)

    def build(self, name: str, **kwargs: object) -> MeshObject:
        return MeshObject(
            name=name,
            positions=np.concatenate(self.positions),
            normals=np.concatenate(self.normals),
            uvs={"UVMap": np.concatenate(self.uvs)},
            triangles=np.concatenate(self.triangles),
            material_indices=np.concatenate(self.materials),
            **kwargs,  # type: ignore[arg-type]
        )


def _leaf_texture(size: int = 64) -> Texture:
    """A green leaf shape with a transparent background (alpha-cut at 0.5)."""
    v, u = np.mgrid[0:size, 0:size] / (size - 1.0)
    x = (u - 0.5) * 2.0
    inside = np.abs(x) < np.sin(np.pi * np.clip(v, 0, 1)) * 0.9  # pointed oval
    vein = np.abs(x) < 0.06
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = np.where(vein, 120, 40 + 40 * v).astype(np.uint8)
    rgba[..., 1] = np.where(vein, 170, 110 + 60 * v).astype(np.uint8)
    rgba[..., 2] = 40
    rgba[..., 3] = np.where(inside, 255, 0)
    return Texture("leaf", rgba, "srgb", "generated")


def _wood_texture(size: int = 64) -> Texture:
    """Floorboards: stripes with a little grain."""
    v, u = np.mgrid[0:size, 0:size] / float(size)
    board = np.floor(u * 8) % 2
    grain = 0.5 + 0.5 * np.sin(v * 40 + board * 3 + np.sin(u * 60))
    value = 0.55 + 0.1 * board + 0.08 * grain
    rgb = np.stack([value, value * 0.72, value * 0.45], -1)
    return Texture("wood", (rgb * 255).astype(np.uint8), "srgb", "generated")


def _room(builder: _MeshBuilder, wall: int, floor: int) -> None:
    sx, sy, sz = ROOM
    w, h, sill = WINDOW
    builder.quad((0, 0, 0), (sx, 0, 0), (0, sy, 0), floor, uv_scale=(sx / 2, sy / 2))  # floor, faces up
    builder.quad((0, 0, sz), (0, sy, 0), (sx, 0, 0), wall)  # ceiling, faces down
    builder.quad((0, 0, 0), (0, 0, sz), (sx, 0, 0), wall)  # y = 0 wall, faces +y
    builder.quad((0, 0, 0), (0, sy, 0), (0, 0, sz), wall)  # x = 0 wall, faces +x
    builder.quad((sx, sy, 0), (0, -sy, 0), (0, 0, sz), wall)  # x = sx wall, faces -x
    # y = sy wall (faces -y, into the room) with the window hole: four panels around the opening
    x0, x1 = (sx - w) / 2, (sx + w) / 2
    builder.quad((x1, sy, 0), (sx - x1, 0, 0), (0, 0, sz), wall)
    builder.quad((0, sy, 0), (x0, 0, 0), (0, 0, sz), wall)
    builder.quad((x0, sy, 0), (w, 0, 0), (0, 0, sill), wall)
    builder.quad((x0, sy, sill + h), (w, 0, 0), (0, 0, sz - sill - h), wall)


def _leaves(rng: np.random.Generator, count: int, centre: np.ndarray, radius: float, material: int,
            builder: _MeshBuilder) -> None:
    """``count`` leaf cards (2 × 4 quads each, slightly bent) scattered over a crown."""
    directions = rng.normal(size=(count, 3))
    directions[:, 2] = np.abs(directions[:, 2]) + 0.3
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    bases = centre + directions * radius * rng.uniform(0.3, 1.0, (count, 1))
    length = rng.uniform(0.16, 0.26, count)
    width = length * 0.45
    cols, rows = 2, 4
    v, u = np.mgrid[0 : rows + 1, 0 : cols + 1] / np.array([rows, cols])[:, None, None]
    u, v = u.ravel(), v.ravel()
    grid = np.arange((rows + 1) * (cols + 1)).reshape(rows + 1, cols + 1)
    a, b = grid[:-1, :-1].ravel(), grid[:-1, 1:].ravel()
    c, d = grid[1:, 1:].ravel(), grid[1:, :-1].ravel()
    cells = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    for k in range(count):
        forward = directions[k]
        side = np.cross(forward, (0.0, 0.0, 1.0))
        side = side / (np.linalg.norm(side) + 1e-9) if np.linalg.norm(side) > 1e-6 else np.array([1.0, 0, 0])
        up = np.cross(side, forward)
        droop = -0.25 * v**2 * length[k]
        positions = (bases[k] + np.outer(v * length[k], forward) + np.outer((u - 0.5) * width[k], side)
                     + np.outer(droop, up))
        normal = np.tile(up, (len(u), 1))
        builder.add(positions, normal, np.stack([u, v], 1), cells, material)


def _translation(x: float, y: float, z: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = (x, y, z)
    return m


def _look_at(eye: tuple[float, float, float], target: tuple[float, float, float]) -> np.ndarray:
    """Camera/light-to-world matrix looking from ``eye`` to ``target`` down local -Z, +Z world up."""
    eye_v, target_v = np.asarray(eye, float), np.asarray(target, float)
    back = eye_v - target_v
    back /= np.linalg.norm(back)
    right = np.cross((0.0, 0.0, 1.0), back)
    if np.linalg.norm(right) < 1e-6:
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, eye_v
    return m


def build_demo_scene(leaf_count: int = 600, seed: int = 7) -> Scene:
    """The demo room (see the module docstring). Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    materials = (
        Material("plaster", base_color=(0.8, 0.78, 0.74, 1.0), roughness=0.9),
        Material("floorboards", base_color=(1.0, 1.0, 1.0, 1.0), base_color_texture=_wood_texture(), roughness=0.6),
        Material("oak", base_color=(0.45, 0.3, 0.18, 1.0), roughness=0.55),
        Material("fabric", base_color=(0.2, 0.3, 0.5, 1.0), roughness=1.0),
        Material("terracotta", base_color=(0.6, 0.3, 0.2, 1.0), roughness=0.8),
        Material("leaf", base_color=(1.0, 1.0, 1.0, 1.0), base_color_texture=_leaf_texture(), roughness=0.5,
                 alpha_mode="MASK", alpha_cutoff=0.5, double_sided=True),
        Material("brushed_steel", base_color=(0.7, 0.7, 0.72, 1.0), metallic=1.0, roughness=0.3),
    )
    plaster, floorboards, oak, fabric, terracotta, leaf, steel = range(len(materials))
    sx, sy, sz = ROOM

    room = _MeshBuilder()
    _room(room, plaster, floorboards)

    table = _MeshBuilder()
    table.box((-0.7, -0.45, 0.72), (0.7, 0.45, 0.76), oak)
    for lx in (-0.62, 0.58):
        for ly in (-0.37, 0.33):
            table.box((lx, ly, 0.0), (lx + 0.04, ly + 0.04, 0.72), oak)

    sofa = _MeshBuilder()
    sofa.box((0.0, 0.0, 0.0), (2.0, 0.9, 0.45), fabric)
    sofa.box((0.0, 0.7, 0.45), (2.0, 0.9, 0.9), fabric)
    sofa.box((0.0, 0.0, 0.45), (0.2, 0.7, 0.65), fabric)
    sofa.box((1.8, 0.0, 0.45), (2.0, 0.7, 0.65), fabric)

    shelf = _MeshBuilder()
    for level in range(4):
        shelf.box((0.0, 0.0, 0.02 + level * 0.5), (1.2, 0.35, 0.05 + level * 0.5), oak)
    shelf.box((0.0, 0.0, 0.0), (0.03, 0.35, 1.6), oak)
    shelf.box((1.17, 0.0, 0.0), (1.2, 0.35, 1.6), oak)

    pot = _MeshBuilder()
    pot.cylinder((0.0, 0.0, 0.0), 0.22, 0.4, terracotta)
    pot.quad((-0.2, -0.2, 0.35), (0.4, 0.0, 0.0), (0.0, 0.4, 0.0), terracotta)  # soil

    plant = _MeshBuilder()
    _leaves(rng, leaf_count, np.array([0.0, 0.0, 1.05]), 0.55, leaf, plant)

    fan = _MeshBuilder()
    fan.box((-0.08, -0.08, -0.12), (0.08, 0.08, 0.0), steel)
    for angle in (0.0, np.pi / 2, np.pi, 3 * np.pi / 2):
        c, s = np.cos(angle), np.sin(angle)
        start = _MeshBuilder()
        start.box((0.08, -0.06, -0.1), (0.7, 0.06, -0.09), steel)
        rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        fan.add(np.concatenate(start.positions) @ rotation.T, np.concatenate(start.normals) @ rotation.T,
                np.concatenate(start.uvs), np.concatenate(start.triangles), steel)

    w, h, sill = WINDOW
    window_light = Light(
        "window", "area", color=(1.0, 0.96, 0.9), power=400.0, size=w, size_y=h, shape="rectangle",
        transform=_look_at((sx / 2, sy - 0.01, sill + h / 2), (sx / 2, 0.0, sill + h / 2)),
    )
    camera = Camera.from_fov("main", 640, 400, np.radians(60.0), _look_at((0.6, 0.5, 1.6), (3.6, 3.6, 0.9)))
    objects = (
        room.build("Room"),
        table.build("Table", transform=_translation(3.0, 2.2, 0.0)),
        sofa.build("Sofa", transform=_translation(0.4, 0.3, 0.0)),
        shelf.build("Shelf", transform=_translation(4.5, 0.05, 0.0)),
        pot.build("PlantPot", transform=_translation(5.2, 4.3, 0.0)),
        plant.build("Plant", transform=_translation(5.2, 4.3, 0.0)),
        fan.build("CeilingFan", transform=_translation(3.0, 2.5, sz), animated=True),
    )
    return Scene(
        objects=objects, materials=materials, lights=(window_light,), cameras=(camera,), name="demo_room",
        meters_per_unit=1.0, unit_name="m", environment=(0.05, 0.06, 0.08), source="generated: demo room",
    )
