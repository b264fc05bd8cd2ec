"""A bake made from a Blender snapshot comes back onto the Blender meshes and materials.

The scene: a floor with a box on it, lit by a point light, plus a linked duplicate of the box
(a shared mesh). It is snapshotted, baked by the engine (tiny atlas, few samples), applied,
and checked: the UVs on the loops are the bake's, the images are the EXRs, the materials show
the lightmap, a Cycles render of the result has the box's shadow on the floor, the next
snapshot picks the UV map up as the lightmap UV, and the materials can be restored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
pytest.importorskip("numba")
pytest.importorskip("xatlas")

from blender_addon.apply_bake import PROPERTY, UV_NAME, apply_bake, restore_materials  # noqa: E402
from blender_addon.snapshot import snapshot_scene  # noqa: E402
from engine.bake.output import read_exr  # noqa: E402
from engine.bake.pipeline import BakeSettings, bake_scene, read_corner_uvs  # noqa: E402
from engine.bake.uv import lightmap_layout  # noqa: E402
from engine.errors import InputError  # noqa: E402


def _box_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    white = bpy.data.materials.new("White")
    red = bpy.data.materials.new("Red")
    red.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.8, 0.1, 0.1, 1.0)
    bpy.ops.mesh.primitive_plane_add(size=4.0)
    floor = bpy.context.active_object
    floor.name = "Floor"
    floor.data.materials.append(white)
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 0.0, 0.5))
    box = bpy.context.active_object
    box.name = "Box"
    box.data.materials.append(red)
    twin = box.copy()  # a linked duplicate: same mesh datablock
    twin.name = "Twin"
    twin.location = (1.4, 1.4, 0.5)
    scene.collection.objects.link(twin)
    light = bpy.data.lights.new("Lamp", "POINT")
    light.energy = 300.0
    light.shadow_soft_size = 0.1
    lamp = bpy.data.objects.new("Lamp", light)
    lamp.location = (-1.2, -1.0, 2.5)
    scene.collection.objects.link(lamp)
    scene.world = bpy.data.worlds.new("World")
    scene.world.color = (0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    _box_scene()
    scene = snapshot_scene(bpy.context)
    out = tmp_path_factory.mktemp("bake")
    summary = bake_scene(scene, out, BakeSettings(atlas_size=512, texels_per_metre=24.0, samples=16, bounces=1,
                                                  device="cpu", denoise=False))
    return out, summary


@pytest.fixture
def applied(baked: tuple[Path, dict]):  # type: ignore[no-untyped-def]
    _box_scene()
    return apply_bake(bpy.context, baked[0])


def _loop_uvs(mesh: bpy.types.Mesh, name: str) -> np.ndarray:
    values = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers[name].uv.foreach_get("vector", values)
    return values.reshape(-1, 2)


def test_uvs_images_and_materials_are_applied(baked: tuple[Path, dict], applied) -> None:  # type: ignore[no-untyped-def]
    out, summary = baked
    assert sorted(applied.objects) == ["Box", "Floor", "Twin"], applied.warnings
    assert applied.warnings == []
    corner_uvs = read_corner_uvs(out / "lightmap_uv.npz")
    for name in applied.objects:
        obj = bpy.data.objects[name]
        mesh = obj.data
        atlas, uv = corner_uvs[name]
        loop_uv = _loop_uvs(mesh, UV_NAME)
        assert ((loop_uv >= 0) & (loop_uv <= 1)).all()
        # each quad's corners: triangle (0, 1, 2) and (0, 2, 3) of loop_start
        starts = np.empty(len(mesh.polygons), np.int32)
        mesh.polygons.foreach_get("loop_start", starts)
        np.testing.assert_array_equal(loop_uv[starts], uv[0::2, 0])
        np.testing.assert_array_equal(loop_uv[starts + 1], uv[0::2, 1])
        np.testing.assert_array_equal(loop_uv[starts + 3], uv[1::2, 2])
        for slot in obj.material_slots:
            assert slot.material.name.endswith(f".lightmap{atlas}")
            tree = slot.material.node_tree
            output = next(n for n in tree.nodes if n.type == "OUTPUT_MATERIAL" and n.is_active_output)
            emission = output.inputs["Surface"].links[0].from_node
            assert emission.type == "EMISSION"
            texture = next(n for n in tree.nodes if n.type == "TEX_IMAGE" and n.image is not None)
            assert texture.inputs["Vector"].links[0].from_node.uv_map == UV_NAME
        assert json.loads(obj[PROPERTY])["materials"] == [("Red" if name != "Floor" else "White")]
    assert bpy.data.objects["Box"].data != bpy.data.objects["Twin"].data  # made single-user
    image = bpy.data.images[applied.images[0]]
    assert tuple(image.size) == (summary["atlas_size"], summary["atlas_size"])
    pixels = np.empty(image.size[0] * image.size[1] * 4, np.float32)
    image.pixels.foreach_get(pixels)
    exr = read_exr(out / "lightmaps" / "atlas_0.exr")
    np.testing.assert_allclose(pixels.reshape(image.size[1], image.size[0], 4)[::-1, :, :3], exr[..., :3],
                               rtol=1e-3, atol=1e-4)


def test_the_next_snapshot_uses_the_applied_lightmap_uv(applied) -> None:  # type: ignore[no-untyped-def]
    scene = snapshot_scene(bpy.context)
    floor = next(o for o in scene.objects if o.name == "Floor")
    assert floor.lightmap_uv == UV_NAME
    layout = lightmap_layout(scene, texels_per_metre=24.0, atlas_size=512)
    assert not layout.entry("Floor").generated, layout.entry("Floor").reason


def test_render_shows_the_baked_shadow(tmp_path: Path, applied) -> None:  # type: ignore[no-untyped-def]
    """The floor's lit side (towards the lamp) renders brighter than its shadowed side."""
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    camera.location = (0.0, 0.0, 9.0)  # straight down
    scene.collection.objects.link(camera)
    scene.camera = camera
    for obj in (bpy.data.objects["Lamp"],):
        obj.hide_render = True  # only the baked emission lights the render
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 4
    scene.cycles.device = "CPU"
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.view_settings.view_transform = "Standard"
    scene.render.filepath = str(tmp_path / "render.png")
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.filepath = str(tmp_path / "render.exr")
    bpy.ops.render.render(write_still=True)
    image = read_exr(tmp_path / "render.exr")[..., :3].mean(axis=-1)
    # camera 9 m up, 50 mm lens on 36 mm: the 4 m floor spans about 32 px; floor corners:
    # (-1.6, -1.6) lit side near the lamp, (+1.6, -1.6)... shadow of the box lies away from the lamp
    lit = image[44:50, 14:20].mean()  # world (-1.5, -1.3): between lamp and box
    shadow = image[22:26, 40:44].mean()  # world (+0.9, +0.7) behind the box, seen from the lamp
    assert lit > 0.05 and lit > 2.0 * shadow, (lit, shadow)


def test_restore_puts_the_originals_back(applied) -> None:  # type: ignore[no-untyped-def]
    assert restore_materials(bpy.data.objects) == 3
    assert bpy.data.objects["Floor"].material_slots[0].material.name == "White"
    assert bpy.data.objects["Box"].material_slots[0].material.name == "Red"
    assert PROPERTY not in bpy.data.objects["Box"]


def test_modified_and_missing_objects_are_skipped_with_reasons(baked: tuple[Path, dict]) -> None:
    _box_scene()
    bpy.data.objects["Box"].modifiers.new("Sub", "SUBSURF")
    bpy.data.objects.remove(bpy.data.objects["Twin"])
    report = apply_bake(bpy.context, baked[0])
    assert report.objects == ["Floor"]
    text = " ".join(report.warnings)
    assert "Box: skipped, its modifiers change the topology" in text
    assert "Twin: skipped" in text


def test_not_a_bake_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"bake\.json"):
        apply_bake(bpy.context, tmp_path)
