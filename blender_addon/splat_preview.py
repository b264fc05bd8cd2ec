"""Preview a trained splat in Blender: a point cloud with the Gaussians' attributes.

:func:`import_splat` reads a 3DGS PLY (standard or PlayCanvas compressed, with the engine's
numpy reader) and makes one object:

* a mesh of vertices only (one per Gaussian, in the scene frame: the file's +Y-down frame is
  rotated back, see :mod:`engine.splat.frames`), with point attributes ``splat_color`` (linear RGB
  and opacity as alpha, from the SH DC term; not ``color``, which Cycles does not pass to
  point-cloud shaders), ``opacity``, ``scale`` (the three standard
  deviations) and ``rotation`` (quaternion, scene frame);
* a Geometry Nodes modifier, "Optimizer splat display", that turns the vertices into points
  of radius ``size × max(scale)`` and gives them a material showing ``splat_color`` as emission with
  ``opacity`` as alpha: light to draw in the viewport, and it renders in Cycles and EEVEE.

Nothing here depends on torch or numba; only numpy and the engine's light modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from engine.errors import InputError

GROUP_NAME = "Optimizer splat display"
MATERIAL_NAME = "Optimizer splat"
PROPERTY = "optimizer_splat"


def _srgb_to_linear(values: np.ndarray) -> np.ndarray:
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _display_material() -> Any:
    material = bpy.data.materials.get(MATERIAL_NAME)
    if material is not None:
        return material
    material = bpy.data.materials.new(MATERIAL_NAME)
    if material.node_tree is None:  # Blender < 5.0
        material.use_nodes = True
    tree = material.node_tree
    tree.nodes.clear()
    color = tree.nodes.new("ShaderNodeAttribute")
    color.attribute_name = "splat_color"
    opacity = tree.nodes.new("ShaderNodeAttribute")
    opacity.attribute_name = "opacity"
    emission = tree.nodes.new("ShaderNodeEmission")
    transparent = tree.nodes.new("ShaderNodeBsdfTransparent")
    mix = tree.nodes.new("ShaderNodeMixShader")
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    for i, node in enumerate((color, emission, mix, output)):
        node.location = (i * 220, 0)
    opacity.location, transparent.location = (0, 250), (220, 250)
    tree.links.new(color.outputs["Color"], emission.inputs["Color"])
    tree.links.new(opacity.outputs["Fac"], mix.inputs["Fac"])
    tree.links.new(transparent.outputs["BSDF"], mix.inputs[1])
    tree.links.new(emission.outputs["Emission"], mix.inputs[2])
    tree.links.new(mix.outputs["Shader"], output.inputs["Surface"])
    if hasattr(material, "surface_render_method"):
        material.surface_render_method = "BLENDED"
    return material


def _display_group() -> Any:
    group = bpy.data.node_groups.get(GROUP_NAME)
    if group is not None:
        return group
    group = bpy.data.node_groups.new(GROUP_NAME, "GeometryNodeTree")
    group.interface.new_socket(name="Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = group.interface.new_socket(name="Size", in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value = 2.0, 0.0
    group.interface.new_socket(name="Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    inputs, outputs = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    scale = nodes.new("GeometryNodeInputNamedAttribute")
    scale.data_type = "FLOAT_VECTOR"
    scale.inputs["Name"].default_value = "scale"
    split = nodes.new("ShaderNodeSeparateXYZ")
    first, second, times = (nodes.new("ShaderNodeMath") for _ in range(3))
    first.operation = second.operation = "MAXIMUM"
    times.operation = "MULTIPLY"
    to_points = nodes.new("GeometryNodeMeshToPoints")
    set_material = nodes.new("GeometryNodeSetMaterial")
    set_material.inputs["Material"].default_value = _display_material()
    links.new(scale.outputs["Attribute"], split.inputs["Vector"])
    links.new(split.outputs["X"], first.inputs[0])
    links.new(split.outputs["Y"], first.inputs[1])
    links.new(first.outputs["Value"], second.inputs[0])
    links.new(split.outputs["Z"], second.inputs[1])
    links.new(second.outputs["Value"], times.inputs[0])
    links.new(inputs.outputs["Size"], times.inputs[1])
    links.new(inputs.outputs["Geometry"], to_points.inputs["Mesh"])
    links.new(times.outputs["Value"], to_points.inputs["Radius"])
    links.new(to_points.outputs["Points"], set_material.inputs["Geometry"])
    links.new(set_material.outputs["Geometry"], outputs.inputs["Geometry"])
    for i, node in enumerate((inputs, scale, split, first, second, times, to_points, set_material, outputs)):
        node.location = (i * 200, 0)
    return group


def import_splat(context: Any, path: str | Path, *, name: str | None = None, size: float = 2.0) -> Any:
    """Import the splat file at ``path`` as a point-cloud preview object linked to the scene."""
    from engine.splat.frames import cloud_to_scene_frame
    from engine.splat.ply import read_ply

    path = Path(bpy.path.abspath(str(path)))
    if not path.is_file():
        raise InputError("no such splat file", where=str(path), hint="pick the splat.ply a splat job wrote")
    cloud = read_ply(path)  # clear ImportFormatError on a bad file
    means, quats = cloud_to_scene_frame(cloud.means, cloud.quats)
    count = cloud.count
    mesh = bpy.data.meshes.new(name or path.stem)
    mesh.vertices.add(count)
    mesh.attributes["position"].data.foreach_set("vector", means.astype(np.float32).ravel())
    rgba = np.empty((count, 4), np.float32)
    rgba[:, :3] = _srgb_to_linear(np.clip(cloud.colors_rgb(), 0.0, 1.0))
    rgba[:, 3] = cloud.opacities()
    columns = {"splat_color": ("FLOAT_COLOR", "color", rgba), "opacity": ("FLOAT", "value", cloud.opacities()),
               "scale": ("FLOAT_VECTOR", "vector", cloud.scales()), "rotation": ("QUATERNION", "value", quats)}
    for attribute, (kind, field, values) in columns.items():
        mesh.attributes.new(attribute, kind, "POINT").data.foreach_set(field, np.asarray(values, np.float32).ravel())
    mesh.update()
    obj = bpy.data.objects.new(name or path.stem, mesh)
    context.scene.collection.objects.link(obj)
    modifier = obj.modifiers.new("Splat display", "NODES")
    modifier.node_group = _display_group()
    size_key = modifier.node_group.interface.items_tree["Size"].identifier
    modifier[size_key] = float(size)
    obj[PROPERTY] = json.dumps({"source": str(path), "gaussians": count, "sh_degree": cloud.sh_degree})
    return obj
