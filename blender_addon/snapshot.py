"""Snapshot of a Blender scene as an engine Scene (bpy → ``engine.scene.Scene``).

The snapshot reads the *evaluated* depsgraph, so modifiers, geometry nodes and every kind of
instancing (collection instances, geometry-node and particle instances, vertex/face
instancing) are applied. Mesh data is read with numpy ``foreach_get`` on the attribute API
(``position``, ``.corner_vert``, UV layers, ``material_index``), polygons are fan-triangulated
in numpy, and no Python loop ever runs per vertex, per corner or per face.

Rules (what the Scene gets, and why):

* **Hidden objects** are left out. What is hidden is Blender's call: the depsgraph only yields
  what is visible in its mode (for ``context.evaluated_depsgraph_get()``: the viewport, which is
  ``obj.visible_get()``), and ``show_self`` hides instancers that do not show themselves.
  Objects disabled for rendering (``hide_render``) are kept with ``visible=False``: they are
  in the viewport, but not part of what is baked or splatted.
* **Split vertices.** The Scene holds per-vertex arrays, Blender per-corner UVs and normals. A
  vertex whose corners all carry the same UVs (every layer) and normal stays one vertex; a
  vertex whose corners disagree (a UV seam, a sharp edge) is split into one vertex per
  distinct combination. Values are compared bit for bit (after folding -0.0 into 0.0).
* **Normals** follow ``mesh.normals_domain``: ``POINT`` (smooth) → vertex normals, no split;
  ``CORNER`` (sharp edges, custom normals, mixed smooth/flat) → corner normals, part of the
  split key; ``FACE`` (all flat) → ``normals=None``: each triangle's own geometric normal is
  exactly its shading normal (as in glTF, where missing normals mean flat shading), and a flat
  mesh is not exploded into one vertex per corner.
* **Lightmap UV**: the first UV layer whose name contains "lightmap" (any case: "Lightmap",
  "UVMap.lightmap", "LightMapUV") is ``lightmap_uv``; without such a layer there is none.
  Every layer is kept in ``uvs`` under its own name.
* **Triangulation**: polygons of n corners become n - 2 triangles fanned from their first
  corner. That is Blender's own split for quads (0-1-2, 0-2-3) and exact for convex n-gons;
  a concave n-gon gets overlapping triangles (triangulate it in Blender if that matters).
* **Instancing**: objects that evaluate to the same mesh (linked duplicates without
  modifiers, collection instances, geometry-node instances) share one set of arrays and name
  the mesh datablock in ``instance_of``. Instances are named ``<object>.<instancer>.<k>``.
* **Animation**: an object is ``animated`` if it, its mesh or its shape keys have an action,
  NLA strips or drivers; if it has a constraint; if it is an active or kinematic rigid body, or
  has cloth, soft-body, fluid-domain, dynamic-paint, ocean or explode modifiers; if a modifier
  reads an animated object (armature, hook, lattice, curve, ...); or if its parent (or an
  instance's instancer) is animated.
* ``selected_only`` keeps only the selected mesh objects and the instances that selected
  objects create; lights, cameras and the world stay (they light the selection).
* Light power is ``energy · 2^exposure`` (W, sun W/m²), colour includes the blackbody
  temperature when used. Cameras: perspective only (orthographic and panoramic ones are left
  out with a warning), intrinsics from sensor fit, lens, shift and the render resolution
  scaled by its percentage; the transform is ``matrix_world`` with scale removed.

Only bpy, numpy, the standard library and ``engine.scene`` are imported (inside Blender the
engine comes from a bundled wheel).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from engine.scene import DEFAULT_MATERIAL, Camera, Light, Material, MeshObject, Scene, Texture

log = logging.getLogger(__name__)

__all__ = ["fan_triangulate", "is_lightmap_layer", "snapshot_scene", "split_vertices"]

LIGHTMAP_TOKEN = "lightmap"
_MESHLIKE = frozenset({"CURVE", "SURFACE", "FONT", "META"})
_SKIPPED_TYPES = frozenset({"CURVES", "POINTCLOUD", "VOLUME", "GPENCIL", "GREASEPENCIL"})
_PHYSICS_MODIFIERS = frozenset({"CLOTH", "SOFT_BODY", "DYNAMIC_PAINT", "OCEAN", "EXPLODE"})
_TARGET_ATTRIBUTES = ("object", "target", "offset_object", "mirror_object", "start_cap", "end_cap",
                      "origin", "object_from", "object_to")
_PASS_THROUGH_NODES = frozenset({"REROUTE", "MIX", "MIX_RGB", "MATH", "GAMMA", "BRIGHTCONTRAST", "HUE_SAT",
                                 "CURVE_RGB", "VALTORGB", "INVERT", "SEPRGB", "SEPARATE_COLOR", "RGBTOBW"})
_QUAD = np.array([[0, 1, 2], [0, 2, 3]], np.int32)  # Blender's own quad split
_UNIT_NAMES = {"METERS": ("m", 1.0), "CENTIMETERS": ("cm", 0.01), "MILLIMETERS": ("mm", 0.001),
               "KILOMETERS": ("km", 1000.0), "MICROMETERS": ("um", 1e-6), "INCHES": ("in", 0.0254),
               "FEET": ("ft", 0.3048), "YARDS": ("yd", 0.9144), "MILES": ("mi", 1609.344),
               "THOU": ("thou", 2.54e-5)}


# --------------------------------------------------------------------------------------------
# numpy helpers (no bpy): triangulation and vertex splitting


def fan_triangulate(
    loop_start: np.ndarray, n_corners: int, loop_total: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fan-triangulate polygons given their first corners (and corner counts).

    Without ``loop_total`` the faces' corners are taken as consecutive (monotonic face offsets,
    Blender 3.6+): face f has corners ``loop_start[f] .. loop_start[f+1] - 1``. Returns (T, 3)
    int32 corner indices and the (F,) int32 number of triangles of each face (n - 2 for n
    corners), so per-face data repeats per triangle with ``np.repeat(x, counts)``.
    """
    starts = np.asarray(loop_start, dtype=np.int32)
    n_faces = starts.size
    if n_faces == 0:
        return np.zeros((0, 3), np.int32), np.zeros(0, np.int32)
    if loop_total is None:
        totals = np.diff(starts, append=np.int32(n_corners))
    else:
        totals = np.asarray(loop_total, dtype=np.int32)
    counts = totals - 2
    if (totals == 4).all():
        return (starts[:, None, None] + _QUAD).reshape(-1, 3), counts
    if (totals == 3).all():
        return starts[:, None] + _QUAD[0], counts
    if int(counts.min()) < 1:
        raise ValueError("a face has fewer than 3 corners (or the face offsets are not monotonic)")
    face = np.repeat(np.arange(n_faces, dtype=np.int32), counts)
    first = np.cumsum(counts, dtype=np.int64) - counts
    k = (np.arange(face.size, dtype=np.int64) - first[face]).astype(np.int32)
    s = starts[face]
    return np.stack([s, s + k + 1, s + k + 2], axis=1), counts


def _row_keys(bits: np.ndarray) -> np.ndarray:
    """One uint64 per row of (N, k) uint32: the row's own bits for k ≤ 2, else a multiply-xor hash."""
    k = bits.shape[1]
    if k == 2:
        return np.ascontiguousarray(bits).view(np.uint64).ravel()
    if k == 1:
        return bits[:, 0].astype(np.uint64)
    key = bits[:, 0].astype(np.uint64)
    for j in range(1, k):
        key *= np.uint64(0x100000001B3)
        key ^= bits[:, j].astype(np.uint64) << np.uint64(7 * j % 32)
    return key


def _split_exact(corner_vert: np.ndarray, n_vertices: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The slow exact split (sorting whole rows): only after a 64-bit hash collision."""
    rows = np.concatenate([corner_vert[:, None].view(np.uint32), values.view(np.uint32)], axis=1)
    _, first, inverse = np.unique(np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1] * 4))).ravel(),
                                  return_index=True, return_inverse=True)
    # keep input vertices first: the first copy of each vertex takes its number, the others follow
    owner = corner_vert[first]
    is_first = np.ones(first.size, bool)
    order = np.argsort(owner, kind="stable")
    is_first[order[1:]] = owner[order[1:]] != owner[order[:-1]]
    ids = np.empty(first.size, np.int32)
    ids[is_first] = owner[is_first]
    ids[~is_first] = n_vertices + np.arange(int((~is_first).sum()), dtype=np.int32)
    representative = np.full(n_vertices + int((~is_first).sum()), -1, np.int32)
    representative[ids] = first
    return ids[inverse.ravel()], representative


def split_vertices(
    corner_vert: np.ndarray, n_vertices: int, corner_values: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Turn per-corner values into per-vertex values, splitting vertices whose corners disagree.

    ``corner_values`` is (C, k) float32 (UVs, corner normals side by side). Returns
    ``corner_to_vertex`` (C,) int32, ``source_vertex`` (V',) int32 (the input vertex each output
    vertex copies; ``None`` when nothing was split, i.e. the identity) and ``vertex_values``
    (V', k) float32. Output vertices 0..V-1 are the input vertices; split-off copies follow.

    Values are compared bit for bit (-0.0 folded into 0.0). Round 0 scatters every corner's
    values onto its vertex (the last write wins) and keeps the corners that agree with it; each
    further round does the same among the corners still unresolved, giving every vertex one new
    copy per round: rounds = the largest number of distinct values at one vertex, no sorting.
    More than two columns are compared through a 64-bit hash and the result is checked exactly
    (a collision falls back to sorting whole rows).
    """
    corner_vert = np.ascontiguousarray(corner_vert, dtype=np.int32)
    values = np.ascontiguousarray(corner_values, dtype=np.float32) + np.float32(0.0)  # -0.0 → 0.0
    k = values.shape[1]
    key = _row_keys(values.view(np.uint32))
    vertex_key = np.zeros(n_vertices, np.uint64)
    vertex_key[corner_vert] = key  # the last write wins
    if k <= 2:
        first_values = vertex_key.view(np.float32).reshape(n_vertices, 2)[:, :k].copy()
    else:
        first_values = np.zeros((n_vertices, k), np.float32)
        first_values[corner_vert] = values  # same order, so the same corner wins as for the key
    pending = np.flatnonzero(vertex_key[corner_vert] != key).astype(np.int32)
    if pending.size == 0:
        if k > 2 and not (first_values[corner_vert] == values).all():  # pragma: no cover - hash collision
            return _finish(*_split_exact(corner_vert, n_vertices, values), corner_vert, n_vertices, values)
        return corner_vert, None, first_values

    corner_to_vertex = corner_vert.copy()
    representatives = []
    next_id = n_vertices
    scratch = np.empty(n_vertices, np.int32)
    while pending.size:
        v = corner_vert[pending]
        w = key[pending]
        local = np.arange(pending.size, dtype=np.int32)
        scratch[v] = local  # one representative corner per vertex and round
        rep = scratch[v]
        matched = np.flatnonzero(w[rep] == w)
        is_rep = rep == local
        ids = np.cumsum(is_rep, dtype=np.int32)
        ids += next_id - 1
        corner_to_vertex[pending[matched]] = ids[rep[matched]]
        representatives.append(pending[is_rep])
        next_id = int(ids[-1]) + 1
        keep = np.ones(pending.size, bool)
        keep[matched] = False
        pending = pending[keep]
    extra = np.concatenate(representatives)
    vertex_values = np.concatenate([first_values, values[extra]])
    if k > 2 and not (vertex_values[corner_to_vertex] == values).all():  # pragma: no cover - hash collision
        return _finish(*_split_exact(corner_vert, n_vertices, values), corner_vert, n_vertices, values)
    source = np.concatenate([np.arange(n_vertices, dtype=np.int32), corner_vert[extra]])
    return corner_to_vertex, source, vertex_values


def _finish(corner_to_vertex: np.ndarray, representative: np.ndarray, corner_vert: np.ndarray, n_vertices: int,
            values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    has = representative >= 0
    vertex_values = np.zeros((representative.size, values.shape[1]), np.float32)
    vertex_values[has] = values[representative[has]]
    source = np.arange(representative.size, dtype=np.int32)
    source[n_vertices:] = corner_vert[representative[n_vertices:]]
    return corner_to_vertex, (None if representative.size == n_vertices else source), vertex_values


def is_lightmap_layer(name: str) -> bool:
    """The lightmap-UV rule: a UV layer whose name contains "lightmap" in any case."""
    return LIGHTMAP_TOKEN in name.lower()


# --------------------------------------------------------------------------------------------
# mesh extraction


@dataclass
class _MeshData:
    """One evaluated mesh's arrays (read-only), shared by every object that shows it."""

    name: str
    positions: np.ndarray
    triangles: np.ndarray
    normals: np.ndarray | None
    uvs: dict[str, np.ndarray]
    lightmap_uv: str | None
    slot_indices: np.ndarray | None  # per-triangle material slot (local), None = all slot 0
    users: int = 0


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _read_attribute(mesh: Any, name: str, size: int, width: int, dtype: type, field: str) -> np.ndarray | None:
    attribute = mesh.attributes.get(name)
    if attribute is None:
        return None
    out = np.empty(size * width, dtype)
    attribute.data.foreach_get(field, out)
    return out.reshape(size, width) if width > 1 else out


def read_mesh(mesh: Any, name: str) -> _MeshData | None:
    """Read an (evaluated) ``bpy.types.Mesh`` into triangle arrays; None if it has no faces."""
    n_vertices, n_corners, n_faces = len(mesh.vertices), len(mesh.loops), len(mesh.polygons)
    if n_faces == 0 or n_vertices == 0:
        return None
    positions = _read_attribute(mesh, "position", n_vertices, 3, np.float32, "vector")
    if positions is None:  # pragma: no cover - every mesh has positions since Blender 3.5
        positions = np.empty(n_vertices * 3, np.float32)
        mesh.vertices.foreach_get("co", positions)
        positions = positions.reshape(-1, 3)
    corner_vert = _read_attribute(mesh, ".corner_vert", n_corners, 1, np.int32, "value")
    if corner_vert is None:  # pragma: no cover - Blender < 3.6
        corner_vert = np.empty(n_corners, np.int32)
        mesh.loops.foreach_get("vertex_index", corner_vert)
    loop_start = np.empty(n_faces, np.int32)
    mesh.polygons.foreach_get("loop_start", loop_start)
    try:
        tri_corners, counts = fan_triangulate(loop_start, n_corners)
    except ValueError:  # pragma: no cover - face offsets are monotonic since Blender 3.6
        totals = np.empty(n_faces, np.int32)
        mesh.polygons.foreach_get("loop_total", totals)
        tri_corners, counts = fan_triangulate(loop_start, n_corners, totals)

    # per-corner values: every UV layer, then corner normals when the mesh needs them
    columns: list[np.ndarray] = []
    uv_names = [layer.name for layer in mesh.uv_layers]
    for uv_name in uv_names:
        uv = _read_attribute(mesh, uv_name, n_corners, 2, np.float32, "vector")
        if uv is None:  # pragma: no cover - UV layers are attributes since Blender 3.5
            uv = np.empty(n_corners * 2, np.float32)
            mesh.uv_layers[uv_name].uv.foreach_get("vector", uv)
            uv = uv.reshape(-1, 2)
        columns.append(uv)
    domain = getattr(mesh, "normals_domain", "CORNER")
    vertex_normals = None
    if domain == "CORNER":
        corner_normals = np.empty(n_corners * 3, np.float32)
        mesh.corner_normals.foreach_get("vector", corner_normals)
        columns.append(corner_normals.reshape(-1, 3))
    elif domain == "POINT":
        vertex_normals = np.empty(n_vertices * 3, np.float32)
        mesh.vertex_normals.foreach_get("vector", vertex_normals)
        vertex_normals = vertex_normals.reshape(-1, 3)

    uvs: dict[str, np.ndarray] = {}
    normals = vertex_normals
    if columns:
        corner_values = np.concatenate(columns, axis=1) if len(columns) > 1 else columns[0]
        corner_to_vertex, source, vertex_values = split_vertices(corner_vert, n_vertices, corner_values)
        if source is not None:
            positions = positions[source]
            if vertex_normals is not None:
                normals = vertex_normals[source]
        for j, uv_name in enumerate(uv_names):
            uvs[uv_name] = _readonly(np.ascontiguousarray(vertex_values[:, 2 * j:2 * j + 2]))
        if domain == "CORNER":
            normals = np.ascontiguousarray(vertex_values[:, 2 * len(uv_names):])
        triangles = corner_to_vertex[tri_corners]
    else:
        triangles = corner_vert[tri_corners]

    slot_indices = None
    material_index = _read_attribute(mesh, "material_index", n_faces, 1, np.int32, "value")
    if material_index is not None and material_index.any():
        slot_indices = _readonly(np.repeat(material_index, counts))
    lightmap = next((n for n in uv_names if is_lightmap_layer(n)), None)
    return _MeshData(
        name=name,
        positions=_readonly(np.ascontiguousarray(positions)),
        triangles=_readonly(np.ascontiguousarray(triangles, dtype=np.int32)),
        normals=None if normals is None else _readonly(np.ascontiguousarray(normals)),
        uvs=uvs,
        lightmap_uv=lightmap,
        slot_indices=slot_indices,
    )


# --------------------------------------------------------------------------------------------
# materials and textures


def _socket(node: Any, *names: str) -> Any:
    """The first input of ``node`` with one of ``names`` (sockets were renamed across versions)."""
    for name in names:
        socket = node.inputs.get(name)
        if socket is not None:
            return socket
    return None


def _linked_from(socket: Any) -> tuple[Any, Any] | None:
    if socket is None or not socket.is_linked or not socket.links:
        return None
    link = socket.links[0]
    if getattr(link, "is_muted", False) or not getattr(link, "is_valid", True):
        return None
    return link.from_node, link.from_socket


def _trace_image(socket: Any, depth: int = 6) -> tuple[Any, str] | None:
    """Follow links up from ``socket`` through simple colour nodes to an Image Texture node."""
    source = _linked_from(socket)
    if source is None or depth == 0:
        return None
    node, out = source
    if node.type == "TEX_IMAGE":
        return (node, out.name) if node.image is not None else None
    if node.type in _PASS_THROUGH_NODES:
        for inp in node.inputs:
            found = _trace_image(inp, depth - 1)
            if found is not None:
                return found
    return None


def _alpha_clip(socket: Any) -> float | None:
    """The cutoff of an alpha-clip node setup on ``socket`` (Math Round / Greater Than / 1 - Less Than)."""
    source = _linked_from(socket)
    if source is None or source[0].type != "MATH":
        return None
    node = source[0]
    op = node.operation
    if op == "ROUND":
        return 0.5
    if op == "GREATER_THAN" and not node.inputs[1].is_linked:
        return float(node.inputs[1].default_value)
    if op == "SUBTRACT" and not node.inputs[0].is_linked and float(node.inputs[0].default_value) == 1.0:
        inner = _linked_from(node.inputs[1])
        if inner is not None and inner[0].type == "MATH" and inner[0].operation == "LESS_THAN" \
                and not inner[0].inputs[1].is_linked:
            return float(inner[0].inputs[1].default_value)
    return None


def _shader_node(tree: Any) -> Any:
    """The shader on the active Material Output's Surface, looking into Mix/Add shaders for a Principled BSDF."""
    outputs = [n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"]
    if not outputs:
        return None
    output = next((n for n in outputs if n.is_active_output), outputs[0])
    source = _linked_from(output.inputs.get("Surface"))
    if source is None:
        return None
    first = source[0]
    queue, seen = [first], set()
    while queue:
        node = queue.pop(0)
        if node.name in seen:
            continue
        seen.add(node.name)
        if node.type == "BSDF_PRINCIPLED":
            return node
        if node.type in ("MIX_SHADER", "ADD_SHADER", "REROUTE"):
            queue.extend(s[0] for s in (_linked_from(i) for i in node.inputs) if s is not None)
    return first


def _clamp01(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)


def _color(value: Iterable[float], size: int) -> tuple[float, ...]:
    return tuple(max(float(v), 0.0) for v in list(value)[:size])


def _is_srgb(name: str) -> bool:
    lowered = name.lower()
    return "srgb" in lowered and not lowered.startswith("linear")


class _Builder:
    """State of one snapshot: caches (meshes, materials, textures), names, warnings."""

    def __init__(self, scene: Any, depsgraph: Any, selected_only: bool) -> None:
        self.scene = scene
        self.depsgraph = depsgraph
        self.view_layer = depsgraph.view_layer
        self.selected_only = selected_only
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self.meshes: dict[tuple[Any, ...], _MeshData | None] = {}
        self.materials: list[Material] = []
        self.material_ids: dict[Any, int] = {}
        self.textures: dict[str, Texture | None] = {}
        self.animated_memo: dict[int, bool] = {}
        self.slot_cache: dict[tuple[Any, ...], np.ndarray] = {}
        self.object_slots: dict[tuple[Any, ...], tuple[int, ...]] = {}
        self.records: list[dict[str, Any]] = []
        self.lights: list[tuple[str, bool, Light]] = []
        self.cameras: list[tuple[str, bool, Camera]] = []
        self.instance_counts: dict[tuple[str, str], int] = {}

    def warn(self, message: str) -> None:
        if message in self._warned:
            return
        self._warned.add(message)
        log.warning("%s", message)
        self.warnings.append(message)

    # ---- textures and materials

    def texture(self, image: Any) -> Texture | None:
        """The pixels of a Blender image: uint8 (sRGB or linear as colour-managed) or float32 linear; cached."""
        image = image.original if image.original is not None else image
        key = image.name_full
        if key in self.textures:
            return self.textures[key]
        texture = None
        try:
            width, height = (int(s) for s in image.size)
            channels = int(image.channels)
            if width * height == 0 or channels < 1:
                raise ValueError("it has no pixels (missing or unreadable file)")
            buffer = np.empty(width * height * channels, np.float32)
            image.pixels.foreach_get(buffer)
            pixels = buffer.reshape(height, width, channels)[::-1]  # Blender stores rows bottom-up
            keep = channels
            if channels == 4 and (image.alpha_mode == "NONE" or image.depth in (24, 48, 96)):
                keep = 3
            pixels = pixels[:, :, :keep]
            if image.source == "GENERATED":
                source = "generated"
            elif image.packed_file is not None:
                source = "packed"
            else:
                source = bpy.path.abspath(image.filepath) if image.filepath else image.name
            if image.is_float:
                texture = Texture(image.name, np.ascontiguousarray(pixels), colorspace="linear", source=source)
            else:
                colorspace = "srgb" if _is_srgb(image.colorspace_settings.name) else "linear"
                as_bytes = np.clip(pixels * np.float32(255.0) + np.float32(0.5), 0, 255).astype(np.uint8)
                texture = Texture(image.name, as_bytes, colorspace=colorspace, source=source)
        except (ValueError, RuntimeError) as exc:
            self.warn(f"image '{image.name}': {exc}; texture left out")
        self.textures[key] = texture
        return texture

    def _alpha_texture(self, base: Texture | None, image: Any, output: str, material_name: str) -> Texture | None:
        """A texture carrying the alpha that the Alpha socket reads (image alpha, or a mask's red channel)."""
        mask = self.texture(image)
        if mask is None:
            return base
        if base is not None and mask is base and output == "Alpha":
            return base
        if output == "Alpha" and mask.channels in (2, 4):
            alpha = mask.pixels[:, :, -1]
        else:  # a greyscale mask's Color output: Blender hands the shader linear values
            alpha = mask.pixels[:, :, 0]
            if alpha.dtype == np.uint8 and mask.colorspace == "srgb":
                a = alpha / np.float32(255.0)
                alpha = np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4).astype(np.float32)
        if alpha.dtype != np.uint8:
            alpha = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if base is None:
            rgb = np.full((*alpha.shape, 3), 255, np.uint8)
            name, colorspace = f"{mask.name}.alpha", "srgb"
        else:
            h, w = base.height, base.width
            if alpha.shape != (h, w):  # nearest-neighbour resample onto the base colour texture
                rows = (np.arange(h) * alpha.shape[0]) // h
                cols = (np.arange(w) * alpha.shape[1]) // w
                alpha = alpha[rows][:, cols]
            rgb = base.pixels[:, :, :3] if base.channels >= 3 else np.repeat(base.pixels[:, :, :1], 3, axis=2)
            if rgb.dtype != np.uint8:
                rgb = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
                self.warn(f"material '{material_name}': float base colour combined with a separate alpha "
                          "image; stored as 8-bit")
            name, colorspace = f"{base.name}+{mask.name}.alpha", base.colorspace
        return Texture(name, np.concatenate([rgb, alpha[:, :, None]], axis=2), colorspace=colorspace,
                       source=mask.source)

    def material_index(self, material: Any) -> int:
        """Index into the scene's materials of a Blender material (None → the default material)."""
        key = None if material is None else material.original.as_pointer()
        if key not in self.material_ids:
            self.material_ids[key] = len(self.materials)
            self.materials.append(self._material(material))
        return self.material_ids[key]

    def _material(self, material: Any) -> Material:
        if material is None:
            return DEFAULT_MATERIAL
        name = material.name
        use_nodes = True if bpy.app.version >= (5, 0, 0) else material.use_nodes
        tree = material.node_tree if use_nodes else None
        node = _shader_node(tree) if tree is not None else None
        fields: dict[str, Any] = {"double_sided": not material.use_backface_culling}
        if node is None or node.type not in ("BSDF_PRINCIPLED", "EMISSION", "BSDF_DIFFUSE", "BSDF_GLASS"):
            if node is not None:
                self.warn(f"material '{name}': surface shader '{node.bl_idname}' is not read; its viewport "
                          "display colour, metallic and roughness are used")
            return Material(name=name, base_color=_color(material.diffuse_color, 4),
                            metallic=_clamp01(material.metallic), roughness=_clamp01(material.roughness), **fields)
        if node.type == "EMISSION":
            color = _socket(node, "Color")
            strength = _socket(node, "Strength")
            return Material(name=name, base_color=(0.0, 0.0, 0.0, 1.0),
                            emission_color=_color(color.default_value, 3) if color else (1.0, 1.0, 1.0),
                            emission_strength=max(float(strength.default_value), 0.0) if strength else 1.0,
                            **fields)

        base = _socket(node, "Base Color", "Color")
        texture = None
        base_color = [0.8, 0.8, 0.8, 1.0]
        if base is not None:
            traced = _trace_image(base)
            if traced is not None:
                texture = self.texture(traced[0].image)
                if texture is not None:
                    base_color = [1.0, 1.0, 1.0, 1.0]
            else:
                base_color = [*_color(base.default_value, 3), 1.0]
                if base.is_linked:
                    self.warn(f"material '{name}': base colour comes from nodes other than an image texture; "
                              "its socket value is used")
        if node.type == "BSDF_GLASS":
            fields["transmission"] = 1.0
            rough = _socket(node, "Roughness")
            fields["roughness"] = _clamp01(rough.default_value) if rough else 0.0
            return Material(name=name, base_color=tuple(base_color), base_color_texture=texture, **fields)
        if node.type == "BSDF_DIFFUSE":
            return Material(name=name, base_color=tuple(base_color), base_color_texture=texture, roughness=1.0,
                            **fields)

        for attr, names in (("metallic", ("Metallic",)), ("roughness", ("Roughness",)),
                            ("transmission", ("Transmission Weight", "Transmission"))):
            socket = _socket(node, *names)
            if socket is not None:
                fields[attr] = _clamp01(socket.default_value)
        emission = _socket(node, "Emission Color", "Emission")
        strength = _socket(node, "Emission Strength")
        fields["emission_strength"] = max(float(strength.default_value), 0.0) if strength is not None else 1.0
        if emission is not None:
            if emission.is_linked:
                fields["emission_color"] = (1.0, 1.0, 1.0)
                if fields["emission_strength"] > 0:
                    self.warn(f"material '{name}': emission colour comes from nodes; taken as white")
            else:
                fields["emission_color"] = _color(emission.default_value, 3)

        alpha_mode, cutoff = "OPAQUE", 0.5
        blended = getattr(material, "surface_render_method", None) == "BLENDED" or (
            getattr(material, "surface_render_method", None) is None and getattr(material, "blend_method", "") == "BLEND")
        alpha = _socket(node, "Alpha")
        if alpha is not None and alpha.is_linked:
            clip = _alpha_clip(alpha)
            traced = _trace_image(alpha)
            if traced is not None:
                texture = self._alpha_texture(texture, traced[0].image, traced[1], name)
            else:
                self.warn(f"material '{name}': alpha comes from nodes other than an image texture; not read")
            if blended:
                alpha_mode = "BLEND"
            else:
                alpha_mode = "MASK"
                if clip is not None:
                    cutoff = clip
                elif getattr(material, "blend_method", "") == "CLIP":
                    cutoff = float(getattr(material, "alpha_threshold", 0.5))
        elif alpha is not None and float(alpha.default_value) < 1.0:
            base_color[3] = _clamp01(alpha.default_value)
            alpha_mode = "BLEND"
        return Material(name=name, base_color=tuple(base_color), base_color_texture=texture,
                        alpha_mode=alpha_mode, alpha_cutoff=_clamp01(cutoff), **fields)

    def slot_map(self, obj: Any, mesh: Any) -> tuple[int, ...]:
        """Scene-global material index of each material slot of an evaluated object."""
        slots = [slot.material for slot in obj.material_slots]
        if not slots and mesh is not None:
            slots = list(mesh.materials)
        if not slots:
            return (self.material_index(None),)
        return tuple(self.material_index(m) for m in slots)

    # ---- animation

    def animated(self, obj: Any, depth: int = 0) -> bool:
        """Whether an (original) object moves or deforms over time; see the module docstring."""
        if obj is None or depth > 64:
            return False
        key = obj.as_pointer()
        if key in self.animated_memo:
            return self.animated_memo[key]
        self.animated_memo[key] = False  # guards against dependency cycles
        result = self._animated(obj, depth)
        self.animated_memo[key] = result
        return result

    def _animated(self, obj: Any, depth: int) -> bool:
        if _has_animation(obj) or len(obj.constraints) > 0:
            return True
        data = obj.data
        if data is not None and _has_animation(data):
            return True
        shape_keys = getattr(data, "shape_keys", None)
        if shape_keys is not None and _has_animation(shape_keys):
            return True
        body = obj.rigid_body
        if body is not None and (body.type == "ACTIVE" or body.kinematic):
            return True
        for modifier in obj.modifiers:
            if not (modifier.show_viewport or modifier.show_render):
                continue
            if modifier.type in _PHYSICS_MODIFIERS:
                return True
            if modifier.type == "FLUID" and modifier.fluid_type == "DOMAIN":
                return True
            for attr in _TARGET_ATTRIBUTES:
                target = getattr(modifier, attr, None)
                if isinstance(target, bpy.types.Object) and target != obj and self.animated(target, depth + 1):
                    return True
        return obj.parent is not None and self.animated(obj.parent, depth + 1)

    # ---- the walk over the depsgraph

    def run(self) -> None:
        for inst in self.depsgraph.object_instances:
            obj = inst.object
            kind = obj.type
            if kind in _SKIPPED_TYPES:
                self.warn(f"object '{obj.original.name}' is a {kind.lower()} object, not a mesh; left out")
                continue
            if kind not in ("MESH", "LIGHT", "CAMERA") and kind not in _MESHLIKE:
                continue
            if inst.is_instance:
                instancer = inst.parent.original
                source = obj.original
                if source == instancer:  # geometry-node geometry without an object of its own
                    base = obj.data.name if obj.data is not None else instancer.name
                else:
                    base = source.name
                counter = (base, instancer.name)
                k = self.instance_counts.get(counter, 0)
                self.instance_counts[counter] = k + 1
                name, real = f"{base}.{instancer.name}.{k}", False
                selected = instancer.select_get(view_layer=self.view_layer) if self.selected_only else True
                animated = self.animated(source) or self.animated(instancer)
                visible = not (source.hide_render or instancer.hide_render)
            else:
                if not inst.show_self:
                    continue
                source = obj.original
                name, real = source.name, True
                selected = source.select_get(view_layer=self.view_layer) if self.selected_only else True
                animated = self.animated(source)
                visible = not source.hide_render
            matrix = np.array(inst.matrix_world, dtype=np.float64)
            if kind == "LIGHT":
                self.lights.append((name, real, self.light(name, obj.data, matrix)))
            elif kind == "CAMERA":
                camera = self.camera(name, obj.data, matrix)
                if camera is not None:
                    self.cameras.append((name, real, camera))
            elif selected:
                self.mesh_object(inst, obj, name, real, matrix, animated, visible)

    def mesh_object(self, inst: Any, obj: Any, name: str, real: bool, matrix: np.ndarray, animated: bool,
                    visible: bool) -> None:
        if obj.type == "MESH":
            mesh = obj.data
            key: tuple[Any, ...] = ("mesh", mesh.as_pointer(), len(mesh.vertices), len(mesh.loops))
            if key not in self.meshes:
                original = mesh.original
                if original is not None and original != mesh and original.name in bpy.data.meshes:
                    data_name = original.name  # no modifiers: the datablock itself
                elif inst.is_instance and obj.original == inst.parent.original:
                    data_name = mesh.name  # geometry-node geometry
                else:
                    data_name = obj.original.data.name  # modifier result of this object's mesh
                self.meshes[key] = read_mesh(mesh, data_name)
        else:  # curves, surfaces, text, metaballs: their evaluated mesh
            key = ("object", obj.original.as_pointer(), obj.data.as_pointer() if obj.data is not None else 0)
            if key not in self.meshes:
                self.meshes[key] = None
                try:
                    temporary = obj.to_mesh()
                except RuntimeError:
                    temporary = None
                if temporary is not None:
                    try:
                        self.meshes[key] = read_mesh(temporary, obj.original.data.name)
                    finally:
                        obj.to_mesh_clear()
        data = self.meshes[key]
        if data is None:
            return
        slot_key = (obj.as_pointer(), key)
        slots = self.object_slots.get(slot_key)
        if slots is None:
            slots = self.object_slots[slot_key] = self.slot_map(obj, obj.data)
        self.records.append({"name": name, "real": real, "key": key, "slots": slots, "matrix": matrix,
                             "animated": animated, "visible": visible})

    def material_indices(self, key: tuple[Any, ...], slots: tuple[int, ...]) -> np.ndarray | None:
        data = self.meshes[key]
        assert data is not None
        if len(slots) == 1 or data.slot_indices is None:
            if slots[0] == 0:
                return None
            cache_key = (key, slots[0])
            if cache_key not in self.slot_cache:
                self.slot_cache[cache_key] = _readonly(np.full(data.triangles.shape[0], slots[0], np.int32))
            return self.slot_cache[cache_key]
        cache_key = (key, slots)
        if cache_key not in self.slot_cache:
            table = np.asarray(slots, np.int32)
            local = np.clip(data.slot_indices, 0, len(slots) - 1)
            self.slot_cache[cache_key] = _readonly(table[local])
        return self.slot_cache[cache_key]

    # ---- lights and cameras

    def light(self, name: str, light: Any, matrix: np.ndarray) -> Light:
        kind = light.type.lower()
        color = np.array(light.color[:3], np.float64)
        if getattr(light, "use_temperature", False):
            color = color * np.array(light.temperature_color[:3], np.float64)
        power = float(light.energy) * 2.0 ** float(getattr(light, "exposure", 0.0))
        if power < 0:
            self.warn(f"light '{name}' has a negative power ({power:g}); taken as 0")
            power = 0.0
        fields: dict[str, Any] = {}
        if kind in ("point", "spot"):
            fields["size"] = max(float(light.shadow_soft_size), 0.0)
        if kind == "spot":
            fields["spot_size"] = min(max(float(light.spot_size), 0.0), math.pi)
            fields["spot_blend"] = _clamp01(light.spot_blend)
        elif kind == "sun":
            fields["angle"] = min(max(float(light.angle), 0.0), math.pi)
        elif kind == "area":
            fields["shape"] = light.shape.lower()
            fields["size"] = float(light.size)
            fields["size_y"] = max(float(light.size_y), 0.0)
            if fields["size"] <= 0:
                self.warn(f"light '{name}' is an area light of size 0; given a size of 1 mm")
                fields["size"] = 1e-3
        return Light(name, kind, color=tuple(np.maximum(color, 0.0)), power=power, transform=matrix, **fields)

    def camera(self, name: str, camera: Any, matrix: np.ndarray) -> Camera | None:
        if camera.type != "PERSP":
            kind = {"ORTHO": "orthographic", "PANO": "panoramic"}.get(camera.type, camera.type.lower())
            self.warn(f"camera '{name}' is {kind}, not perspective: the Scene holds pinhole cameras; left out")
            return None
        render = self.scene.render
        # Blender's own rounding (BKE_render_resolution): integer percentage, truncated
        width = max(render.resolution_x * render.resolution_percentage // 100, 1)
        height = max(render.resolution_y * render.resolution_percentage // 100, 1)
        aspect_x, aspect_y = float(render.pixel_aspect_x), float(render.pixel_aspect_y)
        pixel_aspect = aspect_y / aspect_x
        fit = camera.sensor_fit
        if fit == "AUTO":
            sensor = camera.sensor_width
            fit = "HORIZONTAL" if width * aspect_x >= height * aspect_y else "VERTICAL"
        else:
            sensor = camera.sensor_width if fit == "HORIZONTAL" else camera.sensor_height
        view = width if fit == "HORIZONTAL" else pixel_aspect * height
        fx = camera.lens / sensor * view
        fy = fx / pixel_aspect
        cx = width / 2.0 - camera.shift_x * view
        cy = height / 2.0 + camera.shift_y * view / pixel_aspect
        rigid = matrix.copy()
        norms = np.linalg.norm(rigid[:3, :3], axis=0)
        rigid[:3, :3] /= np.where(norms > 0, norms, 1.0)
        return Camera(name, width, height, fx, fy, cx, cy, rigid, near=max(float(camera.clip_start), 1e-6),
                      far=max(float(camera.clip_end), float(camera.clip_start), 1e-6))

    # ---- world and units

    def environment(self) -> tuple[float, float, float]:
        world = self.scene.world
        if world is None:
            return (0.0, 0.0, 0.0)
        use_nodes = True if bpy.app.version >= (5, 0, 0) else world.use_nodes
        tree = world.node_tree if use_nodes else None
        if tree is None:
            return _color(world.color, 3)  # type: ignore[return-value]
        outputs = [n for n in tree.nodes if n.type == "OUTPUT_WORLD"]
        output = next((n for n in outputs if n.is_active_output), outputs[0] if outputs else None)
        source = _linked_from(output.inputs.get("Surface")) if output is not None else None
        if source is None or source[0].type != "BACKGROUND":
            if source is not None:
                self.warn(f"world '{world.name}': surface is not a Background node; environment taken as black")
            return (0.0, 0.0, 0.0)
        node = source[0]
        color, strength = node.inputs["Color"], node.inputs["Strength"]
        if color.is_linked:
            self.warn(f"world '{world.name}': background colour comes from nodes (a sky or HDRI); "
                      "the constant environment uses its socket value")
        s = max(float(strength.default_value), 0.0)
        return tuple(c * s for c in _color(color.default_value, 3))  # type: ignore[return-value]

    def units(self) -> tuple[float | None, str]:
        settings = self.scene.unit_settings
        if settings.system == "NONE":
            return None, "BU"
        scale = float(settings.scale_length)
        known = _UNIT_NAMES.get(settings.length_unit)
        if known is not None and math.isclose(known[1], scale, rel_tol=1e-6):
            return scale, known[0]
        for short, length in _UNIT_NAMES.values():
            if math.isclose(length, scale, rel_tol=1e-6):
                return scale, short
        return scale, f"{scale:g} m"

    # ---- assembly

    def build(self, name: str, source: str) -> Scene:
        records = self.records
        if records:  # a zero scale makes a singular transform: leave such objects out, as the glTF reader does
            dets = np.linalg.det(np.stack([r["matrix"][:3, :3] for r in records]))
            for r in (r for r, d in zip(records, dets, strict=True) if abs(d) < 1e-18):
                self.warn(f"object '{r['name']}' has a zero scale; it was left out")
            records = [r for r, d in zip(records, dets, strict=True) if abs(d) >= 1e-18]
        for r in records:
            self.meshes[r["key"]].users += 1  # type: ignore[union-attr]
        names = _Namer()
        real_names = {id(r): names(r["name"]) for r in records if r["real"]}  # objects keep their names first
        shared = _Namer()
        instance_names = {key: shared(data.name) for key, data in self.meshes.items()
                          if data is not None and data.users > 1}
        objects = []
        for record in records:
            data = self.meshes[record["key"]]
            assert data is not None
            object_name = real_names[id(record)] if record["real"] else names(record["name"])
            objects.append(MeshObject(
                object_name, data.positions, data.triangles, normals=data.normals, uvs=data.uvs,
                lightmap_uv=data.lightmap_uv, material_indices=self.material_indices(record["key"], record["slots"]),
                transform=record["matrix"], animated=record["animated"], visible=record["visible"],
                instance_of=instance_names.get(record["key"]),
            ))
        materials = _unique_names(self.materials) if self.materials else [DEFAULT_MATERIAL]
        lights = _unique_items(self.lights)
        cameras = _unique_items(self.cameras)
        meters_per_unit, unit_name = self.units()
        return Scene(tuple(objects), tuple(materials), tuple(lights), tuple(cameras), name=name,
                     meters_per_unit=meters_per_unit, unit_name=unit_name, environment=self.environment(),
                     source=source, warnings=tuple(self.warnings))


def _has_animation(owner: Any) -> bool:
    data = getattr(owner, "animation_data", None)
    if data is None:
        return False
    if data.action is not None or len(data.drivers) > 0:
        return True
    return any(len(track.strips) > 0 and not track.mute for track in data.nla_tracks)


class _Namer:
    """Unique names: a taken name gets '.1', '.2', ... appended."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self.used = set(taken)

    def __call__(self, name: str) -> str:
        if name not in self.used:
            self.used.add(name)
            return name
        k = 1
        while f"{name}.{k}" in self.used:
            k += 1
        self.used.add(f"{name}.{k}")
        return f"{name}.{k}"


def _unique_names(materials: list[Material]) -> list[Material]:
    namer = _Namer()
    out = []
    for material in materials:
        unique = namer(material.name)
        if unique != material.name:
            from dataclasses import replace

            material = replace(material, name=unique)
        out.append(material)
    return out


def _unique_items(items: list[tuple[str, bool, Any]]) -> list[Any]:
    namer = _Namer()
    taken = {id(item): namer(name) for name, real, item in items if real}
    out = []
    for name, _real, item in items:
        unique = taken[id(item)] if id(item) in taken else namer(name)
        if unique != item.name:
            from dataclasses import replace

            item = replace(item, name=unique)
        out.append(item)
    return out


def snapshot_scene(
    context: Any = None,
    *,
    scene: Any = None,
    depsgraph: Any = None,
    selected_only: bool = False,
    name: str | None = None,
) -> Scene:
    """Snapshot the evaluated Blender scene as an engine ``Scene`` (see the module docstring for the rules).

    ``context`` defaults to ``bpy.context``; ``depsgraph`` to ``context.evaluated_depsgraph_get()``
    (the viewport evaluation) or, for another ``scene``, that of its first view layer.
    """
    context = context if context is not None else bpy.context
    if depsgraph is None:
        if scene is None or scene == context.scene:
            depsgraph = context.evaluated_depsgraph_get()
        else:  # another scene: evaluate its first view layer
            with context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
                depsgraph = bpy.context.evaluated_depsgraph_get()
    if scene is None:
        scene = depsgraph.scene_eval
    builder = _Builder(scene, depsgraph, selected_only)
    builder.run()
    return builder.build(name or scene.name, bpy.data.filepath or "blender")
