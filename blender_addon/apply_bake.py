"""Apply a bake result to the open Blender scene: lightmap UVs, images and material wiring.

A bake folder (what ``optimizer bake`` writes, or a ``bake`` job's artifacts) holds
``bake.json``, ``lightmaps/atlas_<k>.exr`` and ``lightmap_uv.npz``: each baked object's
lightmap UV at every triangle corner, in the triangle order of the snapshot the bake was made
from. The snapshot fan-triangulates each polygon from its first corner, so the same
triangulation of the mesh here names the Blender corner (loop) of every triangle corner, and
one numpy scatter puts the UVs on the loops (a polygon's first corner is shared by its fan
triangles and gets the same UV from each: the bake's vertices are split per corner value).

For every applied object:

* a UV map named ``Lightmap`` (the snapshot's lightmap-UV rule, so the next bake reuses it
  instead of unwrapping again) gets the baked UVs; a mesh shared with other objects is made
  single-user first, since each object has its own place in the atlas;
* each material slot gets a lightmapped copy, ``<material>.lightmap<k>``: the original node
  tree plus UV Map → Image (the atlas' EXR, linear) → × base colour → Emission → Material
  Output, so Material Preview and renders show the baked lighting as is. The original
  materials are remembered on the object (``optimizer_lightmap``) and
  :func:`restore_materials` puts them back.

Objects that cannot take the UVs are skipped with a warning that says why and what to do:
instances (they share one mesh: make them real), objects whose modifiers change the
topology (apply them first), objects missing from the file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from engine.errors import InputError

from .snapshot import fan_triangulate

log = logging.getLogger(__name__)

UV_NAME = "Lightmap"
PROPERTY = "optimizer_lightmap"
_NODE_LABEL = "Optimizer lightmap"


@dataclass
class ApplyReport:
    """What :func:`apply_bake` did: objects applied, images loaded, materials made, warnings."""

    objects: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    materials: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"lightmaps applied to {len(self.objects)} object(s), {len(self.images)} image(s)"
        return text + (f"; {len(self.warnings)} warning(s): {self.warnings[0]}" if self.warnings else "")


def _read_corner_uvs(path: Path) -> dict[str, tuple[int, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            names = [str(n) for n in data["names"]]
            return {name: (int(data["atlas"][i]), np.asarray(data[f"uv_{i}"], np.float32))
                    for i, name in enumerate(names)}
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"cannot read the lightmap UVs ({exc})", where=str(path),
                         hint="pick a complete bake folder (with bake.json and lightmap_uv.npz)") from None


def _mesh_triangle_corners(mesh: Any) -> np.ndarray:
    """(T, 3) loop indices of the mesh's triangles in the snapshot's order (fan from corner 0)."""
    n_faces = len(mesh.polygons)
    loop_start = np.empty(n_faces, np.int32)
    mesh.polygons.foreach_get("loop_start", loop_start)
    try:
        corners, _ = fan_triangulate(loop_start, len(mesh.loops))
    except ValueError:  # pragma: no cover - face offsets are monotonic since Blender 3.6
        totals = np.empty(n_faces, np.int32)
        mesh.polygons.foreach_get("loop_total", totals)
        corners, _ = fan_triangulate(loop_start, len(mesh.loops), totals)
    return corners


def _load_image(path: Path, name: str, pack: bool) -> Any:
    image = bpy.data.images.get(name)
    if image is not None and Path(bpy.path.abspath(image.filepath)) == path:
        image.reload()
    else:
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.load(str(path), check_existing=False)
        image.name = name
    if pack:
        image.pack()
    return image


def _base_color_source(material: Any) -> tuple[Any | None, tuple[float, float, float]]:
    """(the socket feeding the surface shader's base colour, or None) and the constant colour."""
    constant = tuple(material.diffuse_color[:3])
    tree = material.node_tree
    if tree is None:
        return None, constant
    output = next((n for n in tree.nodes if n.type == "OUTPUT_MATERIAL" and n.is_active_output), None)
    surface = output.inputs.get("Surface") if output is not None else None
    if surface is None or not surface.is_linked:
        return None, constant
    shader = surface.links[0].from_node
    socket = {"BSDF_PRINCIPLED": "Base Color", "BSDF_DIFFUSE": "Color", "EMISSION": "Color"}.get(shader.type)
    if socket is None or socket not in shader.inputs:
        return None, constant
    color_input = shader.inputs[socket]
    if color_input.is_linked:
        return color_input.links[0].from_socket, constant
    return None, tuple(color_input.default_value[:3])


def _lightmapped_material(original: Any | None, image: Any, atlas: int) -> Any:
    """A copy of ``original`` (or a plain white material) showing ``image`` × base colour as emission."""
    name = f"{original.name if original is not None else 'Material'}.lightmap{atlas}"
    material = bpy.data.materials.get(name)
    if material is not None:
        bpy.data.materials.remove(material)
    if original is not None:
        material = original.copy()
        material.name = name
    else:
        material = bpy.data.materials.new(name)
        material.diffuse_color = (1.0, 1.0, 1.0, 1.0)
    if material.node_tree is None:  # Blender < 5.0: materials made in Python start without nodes
        material.use_nodes = True
    tree = material.node_tree
    source, constant = _base_color_source(material)
    output = next((n for n in tree.nodes if n.type == "OUTPUT_MATERIAL" and n.is_active_output), None)
    if output is None:
        output = tree.nodes.new("ShaderNodeOutputMaterial")
        output.is_active_output = True
    x, y = output.location
    uv_node = tree.nodes.new("ShaderNodeUVMap")
    uv_node.uv_map = UV_NAME
    texture = tree.nodes.new("ShaderNodeTexImage")
    texture.image = image
    texture.interpolation = "Linear"
    texture.extension = "EXTEND"
    multiply = tree.nodes.new("ShaderNodeVectorMath")
    multiply.operation = "MULTIPLY"
    emission = tree.nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    for i, node in enumerate((uv_node, texture, multiply, emission)):
        node.label = _NODE_LABEL
        node.location = (x - 800 + 200 * i, y - 400)
    tree.links.new(uv_node.outputs["UV"], texture.inputs["Vector"])
    tree.links.new(texture.outputs["Color"], multiply.inputs[0])
    if source is not None:
        tree.links.new(source, multiply.inputs[1])
    else:
        multiply.inputs[1].default_value = constant
    tree.links.new(multiply.outputs[0], emission.inputs["Color"])
    tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return material


def _topology_problem(obj: Any, depsgraph: Any, triangles: int) -> str | None:
    mesh = obj.data
    evaluated = obj.evaluated_get(depsgraph).data if depsgraph is not None else mesh
    if (len(evaluated.loops), len(evaluated.polygons)) != (len(mesh.loops), len(mesh.polygons)):
        return "its modifiers change the topology: apply them, then bake again"
    if len(mesh.loops) and _mesh_triangle_corners(mesh).shape[0] != triangles:
        return "its mesh changed since the bake (triangle count differs): bake again"
    return None


def apply_bake(context: Any, bake_dir: str | Path, *, pack_images: bool = False) -> ApplyReport:
    """Apply the bake in ``bake_dir`` to the objects of ``context``'s file; see the module docstring."""
    folder = Path(bpy.path.abspath(str(bake_dir)))
    summary_path = folder / "bake.json"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"not a bake folder: cannot read bake.json ({exc})", where=str(folder),
                         hint="pick the folder `optimizer bake --out` wrote") from None
    corner_uvs = _read_corner_uvs(folder / "lightmap_uv.npz")
    report = ApplyReport()
    images: dict[int, Any] = {}
    stem = Path(summary.get("scene") or "bake").stem
    for atlas in range(int(summary.get("atlas_count", 0))):
        path = folder / "lightmaps" / f"atlas_{atlas}.exr"
        if not path.is_file():
            raise InputError("a lightmap image is missing", where=str(path), hint="bake again")
        images[atlas] = _load_image(path, f"{stem}.lightmap{atlas}", pack_images)
        report.images.append(images[atlas].name)
    depsgraph = context.evaluated_depsgraph_get() if hasattr(context, "evaluated_depsgraph_get") else None
    made: dict[tuple[str, int], Any] = {}
    for name, (atlas, uv) in corner_uvs.items():
        obj = bpy.data.objects.get(name)
        if obj is None or obj.type != "MESH":
            why = ("an instance: instances share one mesh, so make them real (Object ▸ Apply ▸ Make Instances "
                   "Real) to give each its own lightmap") if "." in name else "no mesh object of that name in this file"
            report.warnings.append(f"{name}: skipped, {why}")
            continue
        problem = _topology_problem(obj, depsgraph, uv.shape[0])
        if problem is not None:
            report.warnings.append(f"{name}: skipped, {problem}")
            continue
        if obj.data.users > 1:
            obj.data = obj.data.copy()  # each object has its own place in the atlas
        mesh = obj.data
        corners = _mesh_triangle_corners(mesh)
        loop_uv = np.zeros((len(mesh.loops), 2), np.float32)
        loop_uv[corners.ravel()] = uv.reshape(-1, 2)
        layer = mesh.uv_layers.get(UV_NAME) or mesh.uv_layers.new(name=UV_NAME, do_init=False)
        layer.uv.foreach_set("vector", loop_uv.ravel())
        mesh.update()
        previous = json.loads(obj.get(PROPERTY, "{}") or "{}")
        originals = previous.get("materials") or [slot.material.name if slot.material else ""
                                                   for slot in obj.material_slots]
        if not obj.material_slots:
            obj.data.materials.append(None)
            originals = [""]
        for index, slot in enumerate(obj.material_slots):
            original = bpy.data.materials.get(originals[index]) if index < len(originals) and originals[index] else None
            key = (original.name if original is not None else "", atlas)
            if key not in made:
                made[key] = _lightmapped_material(original, images[atlas], atlas)
                report.materials.append(made[key].name)
            slot.material = made[key]
        obj[PROPERTY] = json.dumps({"materials": originals, "atlas": atlas, "bake": str(folder)})
        report.objects.append(name)
    for warning in report.warnings:
        log.warning(warning)
    return report


def restore_materials(objects: Any) -> int:
    """Put back the materials an applied bake replaced; returns how many objects changed."""
    restored = 0
    for obj in objects:
        if PROPERTY not in obj:
            continue
        originals = json.loads(obj[PROPERTY]).get("materials", [])
        for index, slot in enumerate(obj.material_slots):
            if index < len(originals):
                slot.material = bpy.data.materials.get(originals[index]) if originals[index] else None
        del obj[PROPERTY]
        restored += 1
    return restored
