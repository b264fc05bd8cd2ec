"""glTF import/export: round trips, hand-built files, bad input, and the Khronos validator.

Every fixture is written to tmp_path by the test itself (no binary blobs in the repository).
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.errors import ImportFormatError, InputError, SceneError
from engine.scene.gltf import LUMENS_PER_WATT, Y_UP_TO_Z_UP, export_gltf, load_gltf
from engine.scene.io import load_scene
from engine.scene.model import Camera, Light, Material, MeshObject, Scene, Texture
from tests.conftest import khronos_validate

FLOAT, UBYTE, USHORT, UINT = 5126, 5121, 5123, 5125


# --------------------------------------------------------------------------------------------
# a scene with everything the exporter must carry


def _translation(x: float, y: float, z: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = (x, y, z)
    return m


def _rotation_z(angle: float) -> np.ndarray:
    m = np.eye(4)
    c, s = math.cos(angle), math.sin(angle)
    m[:2, :2] = [[c, -s], [s, c]]
    return m


def full_scene(*, unit: str = "m", meters_per_unit: float | None = 1.0) -> Scene:
    rng = np.random.default_rng(7)
    leaf_pixels = rng.integers(0, 256, size=(8, 4, 4), dtype=np.uint8)
    leaf_pixels[0, 0, 3] = 0  # real holes in the alpha channel
    leaf = Texture("leaf_albedo", leaf_pixels)
    materials = (
        Material("stone", base_color=(0.5, 0.4, 0.3, 1.0), metallic=0.1, roughness=0.7,
                 emission_color=(1.0, 0.5, 0.0), emission_strength=4.0),
        Material("leaves", base_color=(1.0, 1.0, 1.0, 0.9), base_color_texture=leaf, alpha_mode="MASK",
                 alpha_cutoff=0.4, double_sided=True, roughness=0.6),
        Material("glass", base_color=(0.9, 0.95, 1.0, 0.3), alpha_mode="BLEND", transmission=0.8, roughness=0.05),
        Material("leaves_again", base_color_texture=leaf, alpha_mode="BLEND"),  # shares the texture
    )
    # a box-ish mesh with interleaved materials (the exporter regroups and restores the order)
    positions = rng.normal(size=(12, 3)).astype(np.float32)
    normals = rng.normal(size=(12, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    triangles = np.array([[0, 1, 2], [2, 3, 0], [4, 5, 6], [6, 7, 4], [8, 9, 10], [10, 11, 8]], np.int32)
    uv = rng.random((12, 2)).astype(np.float32)
    lightmap = rng.random((12, 2)).astype(np.float32) * 0.5
    mat_ids = np.array([1, 0, 1, 0, 2, 3], np.int32)
    statue = MeshObject("Statue", positions, triangles, normals=normals, uvs={"UVMap": uv, "Lightmap": lightmap},
                        lightmap_uv="Lightmap", material_indices=mat_ids,
                        transform=_translation(1.0, 2.0, 3.0) @ _rotation_z(0.3))
    # one mesh shared by two objects (instances): the arrays are the same memory
    quad_pos = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    quad_tri = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    quad_uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    tree_a = MeshObject("Tree", quad_pos, quad_tri, uvs={"TEXCOORD_0": quad_uv}, material_indices=np.array([1, 1]),
                        transform=_translation(-4.0, 0.0, 0.0), instance_of="TreeMesh")
    tree_b = MeshObject("Tree.001", tree_a.positions, tree_a.triangles, uvs=tree_a.uvs,
                        material_indices=tree_a.material_indices,
                        transform=_translation(4.0, 1.0, 0.0) @ np.diag([2.0, 2.0, 2.0, 1.0]), instance_of="TreeMesh")
    door = MeshObject("Door", quad_pos * 2, quad_tri, transform=_translation(0.0, -3.0, 0.0), animated=True,
                      visible=False)
    aim = _translation(0.0, 0.0, 5.0) @ _rotation_z(1.0)
    lights = (
        Light("Lamp", "point", color=(1.0, 0.9, 0.8), power=120.0, transform=_translation(0.0, 0.0, 3.0), size=0.1),
        Light("Spot", "spot", power=400.0, transform=aim, spot_size=1.2, spot_blend=0.25, size=0.05),
        Light("Sun", "sun", color=(1.0, 1.0, 0.95), power=4.5, transform=_rotation_z(0.5), angle=0.009),
        Light("Panel", "area", power=250.0, transform=_translation(2.0, 0.0, 2.5), size=1.5, size_y=0.5,
              shape="rectangle"),
    )
    cameras = (
        Camera("Main", 800, 600, fx=700.0, fy=710.0, cx=395.0, cy=305.0,
               transform=_translation(0.0, -10.0, 1.6) @ _rotation_z(0.1), near=0.05, far=250.0),
    )
    return Scene(
        objects=(statue, tree_a, tree_b, door),
        materials=materials,
        lights=lights,
        cameras=cameras,
        name="full",
        meters_per_unit=meters_per_unit,
        unit_name=unit,
        environment=(0.05, 0.1, 0.2),
    )


def assert_same_scene(a: Scene, b: Scene) -> None:
    assert b.warnings == ()
    assert b.meters_per_unit == a.meters_per_unit
    assert b.unit_name == a.unit_name
    np.testing.assert_allclose(b.environment, a.environment)
    assert [o.name for o in b.objects] == [o.name for o in a.objects]
    for x, y in zip(a.objects, b.objects, strict=True):
        np.testing.assert_array_equal(y.positions, x.positions)
        np.testing.assert_array_equal(y.triangles, x.triangles)
        np.testing.assert_array_equal(y.material_indices, x.material_indices)
        if x.normals is None:
            assert y.normals is None
        else:
            np.testing.assert_allclose(y.normals, x.normals, atol=1e-6)
        assert set(y.uvs) == set(x.uvs)
        for key in x.uvs:
            np.testing.assert_allclose(y.uvs[key], x.uvs[key], atol=1e-6)
        assert y.lightmap_uv == x.lightmap_uv
        np.testing.assert_allclose(y.transform, x.transform, rtol=1e-9, atol=1e-9)
        assert (y.static, y.animated, y.visible, y.instance_of) == (x.static, x.animated, x.visible, x.instance_of)
    assert [m.name for m in b.materials] == [m.name for m in a.materials]
    for x, y in zip(a.materials, b.materials, strict=True):
        for field in ("base_color", "metallic", "roughness", "emission_color", "emission_strength", "alpha_cutoff",
                      "transmission"):
            assert getattr(y, field) == pytest.approx(getattr(x, field), rel=1e-6), (x.name, field)
        assert (y.alpha_mode, y.double_sided) == (x.alpha_mode, x.double_sided)
        if x.base_color_texture is None:
            assert y.base_color_texture is None
        else:
            np.testing.assert_array_equal(y.base_color_texture.pixels, x.base_color_texture.pixels)
            assert y.base_color_texture.name == x.base_color_texture.name
    assert [li.name for li in b.lights] == [li.name for li in a.lights]
    for x, y in zip(a.lights, b.lights, strict=True):
        assert y.kind == x.kind
        for field in ("color", "power", "size", "size_y", "angle", "spot_size", "spot_blend"):
            assert getattr(y, field) == pytest.approx(getattr(x, field), rel=1e-9), (x.name, field)
        assert y.shape == x.shape
        np.testing.assert_allclose(y.transform, x.transform, rtol=1e-9, atol=1e-9)
    assert [c.name for c in b.cameras] == [c.name for c in a.cameras]
    for x, y in zip(a.cameras, b.cameras, strict=True):
        assert (y.width, y.height) == (x.width, x.height)
        for field in ("fx", "fy", "cx", "cy", "near", "far"):
            assert getattr(y, field) == pytest.approx(getattr(x, field), rel=1e-9), (x.name, field)
        np.testing.assert_allclose(y.transform, x.transform, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    scene = full_scene()
    path = export_gltf(scene, tmp_path / f"full{suffix}")
    assert path == tmp_path / f"full{suffix}"
    back = load_gltf(path)
    assert back.name == "full"
    assert back.source == str(path)
    assert_same_scene(scene, back)
    # instances share their arrays, and only they carry instance_of
    tree, tree2 = back.object("Tree"), back.object("Tree.001")
    assert np.shares_memory(tree.positions, tree2.positions)
    assert np.shares_memory(tree.triangles, tree2.triangles)
    assert back.object("Statue").instance_of is None
    # one decoded texture shared by the two materials that use it
    assert back.materials[1].base_color_texture is back.materials[3].base_color_texture
    assert back.materials[1].is_alpha_cut
    door = back.object("Door")
    assert door.animated and not door.static and not door.visible


def test_round_trip_through_load_scene(tmp_path: Path) -> None:
    scene = full_scene()
    assert_same_scene(scene, load_scene(export_gltf(scene, tmp_path / "full.glb")))


def test_export_writes_shared_data_once(tmp_path: Path) -> None:
    doc = json.loads(export_gltf(full_scene(), tmp_path / "s.gltf").read_text())
    assert len(doc["images"]) == 1  # the leaf texture, used by two materials
    assert len(doc["meshes"]) == 3  # Statue, TreeMesh (twice), Door
    tree_nodes = [n for n in doc["nodes"] if n["name"].startswith("Tree")]
    assert len(tree_nodes) == 2 and tree_nodes[0]["mesh"] == tree_nodes[1]["mesh"]
    assert doc["meshes"][tree_nodes[0]["mesh"]]["name"] == "TreeMesh"
    assert set(doc["extensionsUsed"]) == {
        "KHR_lights_punctual", "KHR_materials_emissive_strength", "KHR_materials_transmission"
    }
    assert doc["buffers"][0]["uri"].startswith("data:application/octet-stream;base64,")
    lights = doc["extensions"]["KHR_lights_punctual"]["lights"]
    assert [li["type"] for li in lights] == ["point", "spot", "directional", "point"]
    assert lights[0]["intensity"] == pytest.approx(120.0 * LUMENS_PER_WATT / (4 * math.pi))
    assert lights[2]["intensity"] == pytest.approx(4.5 * LUMENS_PER_WATT)
    assert lights[1]["spot"]["outerConeAngle"] == pytest.approx(0.6)
    assert lights[1]["spot"]["innerConeAngle"] == pytest.approx(0.6 * 0.75)
    panel = next(n for n in doc["nodes"] if n["name"] == "Panel")
    assert panel["extras"]["optimizer"]["light"]["kind"] == "area"
    # Y-up: the Statue's Z-up translation (1, 2, 3) is (1, 3, -2) in glTF
    statue = next(n for n in doc["nodes"] if n["name"] == "Statue")
    assert statue["matrix"][12:15] == pytest.approx([1.0, 3.0, -2.0])
    # V flipped back to glTF's V-down convention
    tree_mesh = doc["meshes"][tree_nodes[0]["mesh"]]
    assert "TEXCOORD_0" in tree_mesh["primitives"][0]["attributes"]


def test_millimetre_scene_is_written_in_metres(tmp_path: Path) -> None:
    scene = full_scene(unit="mm", meters_per_unit=0.001)
    path = export_gltf(scene, tmp_path / "mm.gltf")
    doc = json.loads(path.read_text())
    statue = next(n for n in doc["nodes"] if n["name"] == "Statue")
    # other tools see metres: the node carries the 1/1000 scale and the translation in metres
    assert statue["matrix"][12:15] == pytest.approx([0.001, 0.003, -0.002])
    assert np.linalg.norm(statue["matrix"][0:3]) == pytest.approx(0.001)
    camera = doc["cameras"][0]["perspective"]
    assert camera["znear"] == pytest.approx(0.05 * 0.001)
    assert doc["scenes"][0]["extras"]["optimizer"]["unit_name"] == "mm"
    back = load_gltf(path)
    assert_same_scene(scene, back)
    assert back.unit_name == "mm" and back.meters_per_unit == 0.001


def test_unit_override_keeps_file_coordinates(tmp_path: Path) -> None:
    path = export_gltf(full_scene(), tmp_path / "m.glb")
    back = load_gltf(path, unit="cm")
    assert (back.unit_name, back.meters_per_unit) == ("cm", 0.01)
    np.testing.assert_allclose(back.object("Statue").transform[:3, 3], [1.0, 2.0, 3.0])


def test_unknown_unit_round_trips_as_none(tmp_path: Path) -> None:
    scene = full_scene(unit="unknown", meters_per_unit=None)
    back = load_gltf(export_gltf(scene, tmp_path / "u.glb"))
    assert back.meters_per_unit is None and back.unit_name == "unknown"


def test_export_rejects_other_suffixes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.obj"):
        export_gltf(full_scene(), tmp_path / "scene.obj")


def test_empty_scene(tmp_path: Path) -> None:
    for suffix in (".glb", ".gltf"):
        path = export_gltf(Scene(name="empty"), tmp_path / f"empty{suffix}")
        back = load_gltf(path)
        assert back.objects == () and back.n_triangles == 0
        assert [m.name for m in back.materials] == ["default"]


def test_large_mesh_loads_fast(tmp_path: Path) -> None:
    n = 710  # 709 * 709 * 2 ≈ 1M triangles
    grid = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2)
    positions = np.c_[grid, np.zeros(len(grid))].astype(np.float32)
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    v = (i * n + j).ravel()
    triangles = np.r_[np.c_[v, v + n, v + 1], np.c_[v + 1, v + n, v + n + 1]].astype(np.int32)
    uv = (grid / n).astype(np.float32)
    normals = np.tile(np.float32([0, 0, 1]), (len(positions), 1))
    obj = MeshObject("Terrain", positions, triangles, normals=normals, uvs={"TEXCOORD_0": uv, "TEXCOORD_1": uv},
                     lightmap_uv="TEXCOORD_1")
    path = export_gltf(Scene((obj,)), tmp_path / "big.glb")
    load_gltf(path)  # warm up imports
    start = time.perf_counter()
    back = load_gltf(path)
    elapsed = time.perf_counter() - start
    assert back.n_triangles == obj.n_triangles > 1_000_000
    assert elapsed < 1.0, f"1M-triangle glb took {elapsed:.2f} s"


# --------------------------------------------------------------------------------------------
# hand-built files


class GltfBuilder:
    """Writes glTF documents by hand, one buffer, for the importer tests."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.doc: dict[str, Any] = {"asset": {"version": "2.0"}, "bufferViews": [], "accessors": []}

    def view(self, data: bytes, stride: int | None = None) -> int:
        self.blob += b"\0" * (-len(self.blob) % 4)
        entry = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if stride:
            entry["byteStride"] = stride
        self.blob += data
        self.doc["bufferViews"].append(entry)
        return len(self.doc["bufferViews"]) - 1

    def accessor(self, array: Any, ctype: int, kind: str, *, normalized: bool = False, **extra: Any) -> int:
        dtype = {FLOAT: "<f4", UBYTE: "<u1", USHORT: "<u2", UINT: "<u4"}[ctype]
        array = np.ascontiguousarray(array, dtype=dtype)
        entry = {"bufferView": self.view(array.tobytes()), "componentType": ctype, "count": len(array), "type": kind}
        if normalized:
            entry["normalized"] = True
        if kind == "VEC3" and ctype == FLOAT:
            entry["min"] = array.min(axis=0).tolist()
            entry["max"] = array.max(axis=0).tolist()
        entry.update(extra)
        self.doc["accessors"].append(entry)
        return len(self.doc["accessors"]) - 1

    def mesh(self, positions: Any, indices: Any | None = None, *, name: str = "Mesh", mode: int | None = None,
             material: int | None = None, **attributes: int) -> int:
        prim: dict[str, Any] = {"attributes": {"POSITION": self.accessor(positions, FLOAT, "VEC3"), **attributes}}
        if indices is not None:
            prim["indices"] = self.accessor(np.asarray(indices).reshape(-1), UINT, "SCALAR")
        if mode is not None:
            prim["mode"] = mode
        if material is not None:
            prim["material"] = material
        meshes = self.doc.setdefault("meshes", [])
        meshes.append({"name": name, "primitives": [prim]})
        return len(meshes) - 1

    def node(self, **fields: Any) -> int:
        nodes = self.doc.setdefault("nodes", [])
        nodes.append(fields)
        return len(nodes) - 1

    def scene(self, *roots: int) -> None:
        self.doc["scenes"] = [{"nodes": list(roots)}]
        self.doc["scene"] = 0

    def write_gltf(self, path: Path, *, bin_name: str | None = None) -> Path:
        """Write JSON with the buffer as a data: URI, or as ``bin_name`` next to it."""
        doc = json.loads(json.dumps(self.doc))
        if self.blob:
            if bin_name is None:
                uri = "data:application/octet-stream;base64," + base64.b64encode(bytes(self.blob)).decode()
            else:
                (path.parent / bin_name).write_bytes(bytes(self.blob))
                uri = bin_name
            doc["buffers"] = [{"byteLength": len(self.blob), "uri": uri}]
        path.write_text(json.dumps(doc))
        return path

    def write_glb(self, path: Path) -> Path:
        doc = json.loads(json.dumps(self.doc))
        blob = bytes(self.blob) + b"\0" * (-len(self.blob) % 4)
        doc["buffers"] = [{"byteLength": len(blob)}]
        text = json.dumps(doc).encode()
        text += b" " * (-len(text) % 4)
        body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(blob), 0x004E4942) + blob
        path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
        return path


TRIANGLE = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_trs_hierarchy_world_positions(tmp_path: Path) -> None:
    b = GltfBuilder()
    mesh = b.mesh(TRIANGLE, [0, 1, 2], name="Tri")
    child = b.node(name="Child", mesh=mesh, translation=[1.0, 0.0, 0.0])
    half = math.sqrt(0.5)
    parent = b.node(name="Parent", children=[child], translation=[1.0, 2.0, 3.0], rotation=[0.0, half, 0.0, half],
                    scale=[2.0, 2.0, 2.0])
    b.scene(parent)
    scene = load_gltf(b.write_gltf(tmp_path / "trs.gltf"))
    assert [o.name for o in scene.objects] == ["Child"]
    obj = scene.objects[0]
    np.testing.assert_array_equal(obj.positions, TRIANGLE)  # vertex data stays mesh-local
    # glTF world: T(1,2,3) Ry(90°) S(2) T(1,0,0) p; Ry(90°) maps (x,y,z) to (z,y,-x); Z-up: (x,y,z) → (x,-z,y)
    expected_gltf = np.array([[1, 2, 1], [1, 2, -1], [1, 4, 1]], float)
    expected = expected_gltf[:, [0, 2, 1]] * [1, -1, 1]
    np.testing.assert_allclose(obj.world_positions(), expected, atol=1e-6)
    assert scene.meters_per_unit == 1.0 and scene.unit_name == "m"
    assert scene.materials[0].name == "default"  # the primitive had no material
    assert obj.instance_of is None and obj.uvs == {} and obj.normals is None


def test_matrix_node_and_y_up_conversion(tmp_path: Path) -> None:
    b = GltfBuilder()
    m = np.eye(4)
    m[:3, 3] = (0.0, 5.0, 0.0)  # 5 m up in glTF
    b.scene(b.node(name="Up", mesh=b.mesh(TRIANGLE, [0, 1, 2]), matrix=m.T.ravel().tolist()))
    obj = load_gltf(b.write_glb(tmp_path / "up.glb")).objects[0]
    np.testing.assert_allclose(obj.transform[:3, 3], [0.0, 0.0, 5.0])  # Z is up in the Scene
    np.testing.assert_allclose(obj.transform, Y_UP_TO_Z_UP @ m)


def test_triangle_strip_and_fan(tmp_path: Path) -> None:
    b = GltfBuilder()
    strip_pos = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0]], np.float32)
    strip = b.mesh(strip_pos, [0, 1, 2, 3, 4], name="Strip", mode=5)
    fan = b.mesh(strip_pos[:4], None, name="Fan", mode=6)  # no indices: sequential
    lines = b.mesh(strip_pos[:2], [0, 1], name="Lines", mode=1)
    b.scene(b.node(name="S", mesh=strip), b.node(name="F", mesh=fan), b.node(name="L", mesh=lines))
    scene = load_gltf(b.write_gltf(tmp_path / "strip.gltf"))
    np.testing.assert_array_equal(scene.object("S").triangles, [[0, 1, 2], [1, 3, 2], [2, 3, 4]])
    np.testing.assert_array_equal(scene.object("F").triangles, [[1, 2, 0], [2, 3, 0]])
    assert scene.object("L").n_triangles == 0
    assert any("LINES" in w and "Lines" in w for w in scene.warnings)


def test_normalized_ubyte_uvs_and_interleaved_stride(tmp_path: Path) -> None:
    b = GltfBuilder()
    uv_bytes = np.array([[0, 0], [255, 0], [0, 255]], np.uint8)
    uv0 = b.accessor(uv_bytes, UBYTE, "VEC2", normalized=True)
    uv1 = b.accessor(np.array([[0, 65535], [32768, 0], [65535, 65535]], np.uint16), USHORT, "VEC2", normalized=True)
    # interleaved normals: position-sized records with a stride of 16 bytes
    normals = np.zeros((3, 4), np.float32)
    normals[:, 2] = 1.0
    view = b.view(normals.tobytes(), stride=16)
    b.doc["accessors"].append({"bufferView": view, "componentType": FLOAT, "count": 3, "type": "VEC3"})
    normal_acc = len(b.doc["accessors"]) - 1
    mesh = b.mesh(TRIANGLE, [0, 1, 2], TEXCOORD_0=uv0, TEXCOORD_1=uv1, NORMAL=normal_acc)
    b.scene(b.node(name="N", mesh=mesh))
    obj = load_gltf(b.write_glb(tmp_path / "norm.glb")).objects[0]
    np.testing.assert_allclose(obj.uvs["TEXCOORD_0"], [[0, 1], [1, 1], [0, 0]], atol=1e-7)  # V flipped up
    np.testing.assert_allclose(obj.uvs["TEXCOORD_1"], [[0, 0], [32768 / 65535, 1], [1, 0]], atol=1e-7)
    assert obj.lightmap_uv == "TEXCOORD_1"
    np.testing.assert_array_equal(obj.normals, [[0, 0, 1]] * 3)


def test_sparse_accessor(tmp_path: Path) -> None:
    b = GltfBuilder()
    mesh = b.mesh(TRIANGLE, [0, 1, 2])
    pos_acc = b.doc["meshes"][mesh]["primitives"][0]["attributes"]["POSITION"]
    idx_view = b.view(np.array([2], np.uint32).tobytes())
    val_view = b.view(np.array([[0, 7, 0]], np.float32).tobytes())
    b.doc["accessors"][pos_acc]["sparse"] = {
        "count": 1, "indices": {"bufferView": idx_view, "componentType": UINT}, "values": {"bufferView": val_view}
    }
    b.doc["accessors"][pos_acc]["max"] = [1, 7, 0]
    b.scene(b.node(name="Sparse", mesh=mesh))
    obj = load_gltf(b.write_gltf(tmp_path / "sparse.gltf")).objects[0]
    np.testing.assert_array_equal(obj.positions[2], [0, 7, 0])


def test_data_uris_and_materials(tmp_path: Path) -> None:
    b = GltfBuilder()
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[..., 0] = 255
    pixels[0, 0, 3] = 10
    png_uri = "data:image/png;base64," + base64.b64encode(_png(pixels)).decode()
    b.doc["images"] = [{"uri": png_uri, "name": "red"}]
    b.doc["textures"] = [{"source": 0}]
    b.doc["materials"] = [
        {"name": "Leaf", "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0,
                                                  "roughnessFactor": 0.25, "baseColorFactor": [1, 1, 1, 1]},
         "alphaMode": "MASK", "alphaCutoff": 0.3, "doubleSided": True},
        {"name": "Lamp", "emissiveFactor": [1.0, 0.5, 0.25],
         "extensions": {"KHR_materials_emissive_strength": {"emissiveStrength": 5.0},
                        "KHR_materials_transmission": {"transmissionFactor": 0.5}}},
        {"name": "Lamp"},  # a duplicate name: made unique
    ]
    b.doc["extensionsUsed"] = ["KHR_materials_emissive_strength", "KHR_materials_transmission"]
    mesh = b.mesh(TRIANGLE, [0, 1, 2], material=0)
    second = b.mesh(TRIANGLE, [0, 1, 2], material=1)
    b.scene(b.node(name="A", mesh=mesh), b.node(name="A", mesh=second))  # duplicate node names too
    scene = load_gltf(b.write_gltf(tmp_path / "datauri.gltf"))
    assert [o.name for o in scene.objects] == ["A", "A.001"]
    assert [m.name for m in scene.materials] == ["Leaf", "Lamp", "Lamp.001"]  # no default: all primitives had one
    leaf, lamp, bare = scene.materials
    assert leaf.base_color_texture is not None and leaf.base_color_texture.name == "red"
    np.testing.assert_array_equal(leaf.base_color_texture.pixels, pixels)
    assert (leaf.alpha_mode, leaf.alpha_cutoff, leaf.double_sided, leaf.roughness) == ("MASK", 0.3, True, 0.25)
    assert leaf.is_alpha_cut
    assert lamp.emission_color == (1.0, 0.5, 0.25) and lamp.emission_strength == 5.0 and lamp.transmission == 0.5
    # glTF's defaults, not the Scene's: white, fully metallic and rough
    assert bare.base_color == (1.0, 1.0, 1.0, 1.0) and bare.metallic == 1.0 and bare.roughness == 1.0
    np.testing.assert_array_equal(scene.objects[1].material_indices, [1])


def test_external_bin_and_missing_image_is_a_warning(tmp_path: Path) -> None:
    b = GltfBuilder()
    b.doc["images"] = [{"uri": "textures/bark%20color.png"}]
    b.doc["textures"] = [{"source": 0}]
    b.doc["materials"] = [{"name": "Bark", "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
    mesh = b.mesh(TRIANGLE, [0, 1, 2], material=0)
    b.scene(b.node(name="Trunk", mesh=mesh))
    path = b.write_gltf(tmp_path / "ext.gltf", bin_name="ext data.bin")
    scene = load_gltf(path)
    assert scene.object("Trunk").n_triangles == 1
    assert scene.materials[0].base_color_texture is None
    assert len(scene.warnings) == 1
    assert "bark color.png" in scene.warnings[0] and "Bark" in scene.warnings[0] and str(path) in scene.warnings[0]
    # the image, once there, is read relative to the .gltf
    (tmp_path / "textures").mkdir()
    (tmp_path / "textures" / "bark color.png").write_bytes(_png(np.full((2, 2, 3), 90, np.uint8)))
    scene = load_gltf(path)
    assert scene.warnings == ()
    assert scene.materials[0].base_color_texture.pixels.shape == (2, 2, 3)


def test_undecodable_image_is_a_warning(tmp_path: Path) -> None:
    b = GltfBuilder()
    b.doc["images"] = [{"uri": "broken.png"}]
    b.doc["textures"] = [{"source": 0}]
    b.doc["materials"] = [{"name": "Broken", "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
    b.scene(b.node(name="X", mesh=b.mesh(TRIANGLE, [0, 1, 2], material=0)))
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    scene = load_gltf(b.write_gltf(tmp_path / "broken.gltf"))
    assert scene.materials[0].base_color_texture is None
    assert any("broken.png" in w and "Broken" in w for w in scene.warnings)


def test_instancing_shares_arrays(tmp_path: Path) -> None:
    b = GltfBuilder()
    mesh = b.mesh(TRIANGLE, [0, 1, 2], name="Rock")
    single = b.mesh(TRIANGLE, [0, 1, 2], name="Single")
    b.scene(b.node(name="R1", mesh=mesh), b.node(name="R2", mesh=mesh, translation=[3, 0, 0]),
            b.node(name="S", mesh=single))
    scene = load_gltf(b.write_glb(tmp_path / "inst.glb"))
    r1, r2, s = scene.objects
    assert r1.instance_of == r2.instance_of == "Rock" and s.instance_of is None
    assert np.shares_memory(r1.positions, r2.positions) and np.shares_memory(r1.triangles, r2.triangles)
    np.testing.assert_allclose(r2.transform[:3, 3], [3, 0, 0])


def test_ext_mesh_gpu_instancing(tmp_path: Path) -> None:
    b = GltfBuilder()
    mesh = b.mesh(TRIANGLE, [0, 1, 2], name="Grass")
    translations = b.accessor(np.array([[0, 0, 0], [2, 0, 0], [0, 0, 2]], np.float32), FLOAT, "VEC3")
    scales = b.accessor(np.array([[1, 1, 1], [2, 2, 2], [1, 1, 1]], np.float32), FLOAT, "VEC3")
    b.doc["extensionsUsed"] = ["EXT_mesh_gpu_instancing"]
    b.scene(b.node(name="Field", mesh=mesh, translation=[0, 1, 0],
                   extensions={"EXT_mesh_gpu_instancing": {"attributes": {"TRANSLATION": translations,
                                                                          "SCALE": scales}}}))
    scene = load_gltf(b.write_gltf(tmp_path / "gpu.gltf"))
    assert [o.name for o in scene.objects] == ["Field.inst0", "Field.inst1", "Field.inst2"]
    assert all(o.instance_of == "Grass" for o in scene.objects)
    assert np.shares_memory(scene.objects[0].positions, scene.objects[2].positions)
    # instance 2: glTF (0, 1, 2) → Z-up (0, -2, 1)
    np.testing.assert_allclose(scene.objects[2].transform[:3, 3], [0, -2, 1])
    np.testing.assert_allclose(np.linalg.det(scene.objects[1].transform[:3, :3]), 8.0)


def test_animation_and_skin_mark_objects_animated(tmp_path: Path) -> None:
    b = GltfBuilder()
    mesh = b.mesh(TRIANGLE, [0, 1, 2])
    child = b.node(name="Wheel", mesh=mesh)
    car = b.node(name="Car", mesh=mesh, children=[child])
    house = b.node(name="House", mesh=mesh)
    skinned = b.node(name="Body", mesh=mesh, skin=0)
    flagged = b.node(name="Prop", mesh=mesh, extras={"optimizer": {"static": False, "visible": False}})
    times = b.accessor(np.array([[0.0], [1.0]], np.float32), FLOAT, "SCALAR", min=[0.0], max=[1.0])
    values = b.accessor(np.array([[0, 0, 0], [1, 0, 0]], np.float32), FLOAT, "VEC3")
    b.doc["animations"] = [{"samplers": [{"input": times, "output": values}],
                            "channels": [{"sampler": 0, "target": {"node": car, "path": "translation"}}]}]
    b.doc["skins"] = [{"joints": [house]}]
    b.scene(car, house, skinned, flagged)
    scene = load_gltf(b.write_gltf(tmp_path / "anim.gltf"))
    flags = {o.name: (o.animated, o.static, o.visible) for o in scene.objects}
    assert flags == {
        "Car": (True, False, True),
        "Wheel": (True, False, True),  # a descendant of an animated node
        "House": (False, True, True),
        "Body": (True, False, True),  # skinned
        "Prop": (False, False, False),  # our exporter's extras
    }


def test_punctual_lights_and_cameras_from_foreign_file(tmp_path: Path) -> None:
    b = GltfBuilder()
    b.doc["extensionsUsed"] = ["KHR_lights_punctual"]
    b.doc["extensions"] = {"KHR_lights_punctual": {"lights": [
        {"type": "point", "intensity": 683.0 / (4 * math.pi) * 100, "color": [1, 0.5, 0.5]},
        {"type": "spot", "intensity": 10.0, "spot": {"innerConeAngle": 0.2, "outerConeAngle": 0.4}},
        {"type": "directional", "intensity": 683.0 * 3},
    ]}}
    b.doc["cameras"] = [
        {"type": "perspective", "perspective": {"yfov": 0.8, "aspectRatio": 1.5, "znear": 0.1, "zfar": 50.0}},
        {"type": "perspective", "perspective": {"yfov": 1.0, "znear": 0.2}},
        {"type": "orthographic", "orthographic": {"xmag": 1, "ymag": 1, "znear": 0.1, "zfar": 10}},
    ]
    nodes = [
        b.node(name="Bulb", translation=[0, 3, 0], extensions={"KHR_lights_punctual": {"light": 0}}),
        b.node(name="Cone", extensions={"KHR_lights_punctual": {"light": 1}}),
        b.node(name="Sky", extensions={"KHR_lights_punctual": {"light": 2}}),
        b.node(name="Cam", camera=0, translation=[0, 1, 5]),
        b.node(camera=1),
        b.node(name="Ortho", camera=2),
    ]
    b.scene(*nodes)
    scene = load_gltf(b.write_gltf(tmp_path / "lights.gltf"))
    bulb, cone, sky = scene.lights
    assert (bulb.kind, cone.kind, sky.kind) == ("point", "spot", "sun")
    assert bulb.power == pytest.approx(100.0) and bulb.color == (1.0, 0.5, 0.5)
    np.testing.assert_allclose(bulb.position, [0, 0, 3])
    assert cone.power == pytest.approx(10.0 * 4 * math.pi / 683.0)
    assert cone.spot_size == pytest.approx(0.8) and cone.spot_blend == pytest.approx(0.5)
    assert sky.power == pytest.approx(3.0)
    # lights and cameras look down -Z in both conventions: an unrotated glTF node looks along -Z_gltf = +Y here
    np.testing.assert_allclose(sky.direction, [0, 1, 0], atol=1e-12)
    cam, unnamed = scene.cameras
    assert (cam.width, cam.height) == (1920, 1280) and cam.fov_y == pytest.approx(0.8)
    assert cam.cx == 960 and cam.cy == 640 and (cam.near, cam.far) == (0.1, 50.0)
    np.testing.assert_allclose(cam.transform[:3, 3], [0, -5, 1])
    assert unnamed.name == "Node_4" and (unnamed.width, unnamed.height) == (1920, 1080)
    assert any("Ortho" in w and "orthographic" in w for w in scene.warnings)


def test_scene_without_scenes_uses_root_nodes(tmp_path: Path) -> None:
    b = GltfBuilder()
    mesh = b.mesh(TRIANGLE, [0, 1, 2])
    child = b.node(mesh=mesh)
    b.node(name="Root", children=[child])
    b.node(name="Loose", mesh=mesh)
    scene = load_gltf(b.write_gltf(tmp_path / "noscene.gltf"))
    assert [o.name for o in scene.objects] == ["Node_0", "Loose"]


def test_no_meshes_loads_empty(tmp_path: Path) -> None:
    b = GltfBuilder()
    b.scene(b.node(name="Empty"))
    scene = load_gltf(b.write_gltf(tmp_path / "nothing.gltf"))
    assert scene.objects == () and scene.name == "nothing"


# --------------------------------------------------------------------------------------------
# bad input: every case is an InputError naming the file and what is wrong


def _raises(path: Path, error: type[InputError], *fragments: str, loader: Any = load_gltf) -> InputError:
    with pytest.raises(error) as info:
        loader(path)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    _raises(tmp_path / "nope.glb", ImportFormatError, "cannot read file")
    _raises(tmp_path / "nope.glb", ImportFormatError, "does not exist", loader=load_scene)
    folder = tmp_path / "folder.gltf"
    folder.mkdir()
    _raises(folder, ImportFormatError, "cannot read file")


def test_truncated_glb(tmp_path: Path) -> None:
    data = export_gltf(full_scene(), tmp_path / "whole.glb").read_bytes()
    cut = tmp_path / "cut.glb"
    cut.write_bytes(data[: len(data) // 2])
    _raises(cut, ImportFormatError, "truncated GLB")
    _raises(cut, ImportFormatError, "truncated GLB", loader=load_scene)
    # the header's total length is right but a chunk claims more than there is
    json_length = struct.unpack_from("<I", data, 12)[0]
    lying = bytearray(data)
    struct.pack_into("<I", lying, 12 + 8 + json_length, len(data))
    (tmp_path / "lying.glb").write_bytes(bytes(lying))
    _raises(tmp_path / "lying.glb", ImportFormatError, "truncated GLB", "chunk 1")
    (tmp_path / "tiny.glb").write_bytes(b"glTF\x02\x00")
    _raises(tmp_path / "tiny.glb", ImportFormatError, "header")


def test_json_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.gltf"
    path.write_text('{"asset": {"version": "2.0"},\n "nodes": [ }')
    _raises(path, ImportFormatError, "JSON syntax error", "line 2")
    _raises(path, ImportFormatError, "JSON syntax error", loader=load_scene)
    path.write_text('{"asset": {"version": "2.0"}, "nodes": 5}')
    _raises(path, ImportFormatError, "not a valid glTF document")


def test_accessor_outside_its_buffer(tmp_path: Path) -> None:
    b = GltfBuilder()
    mesh = b.mesh(TRIANGLE, [0, 1, 2], name="Wall")
    pos = b.doc["meshes"][mesh]["primitives"][0]["attributes"]["POSITION"]
    b.doc["accessors"][pos]["count"] = 300
    b.scene(b.node(name="W", mesh=mesh))
    _raises(b.write_glb(tmp_path / "outside.glb"), ImportFormatError, f"accessor {pos}", "POSITION of mesh 'Wall'",
            "outside its buffer")
    b.doc["accessors"][pos]["count"] = 3
    b.doc["bufferViews"][0]["byteLength"] = 10_000
    _raises(b.write_gltf(tmp_path / "view.gltf"), ImportFormatError, "bufferView 0", "holds only")


def test_index_out_of_range_names_the_object(tmp_path: Path) -> None:
    b = GltfBuilder()
    mesh = b.mesh(TRIANGLE, [0, 1, 7], name="Roof")
    b.scene(b.node(name="House", mesh=mesh))
    error = _raises(b.write_gltf(tmp_path / "index.gltf"), SceneError, "object 'House'", "vertex index 7",
                    "3 vertices", "mesh 'Roof'")
    assert isinstance(error, InputError)
    _raises(tmp_path / "index.gltf", SceneError, "object 'House'", loader=load_scene)


def test_missing_buffer_file(tmp_path: Path) -> None:
    b = GltfBuilder()
    b.scene(b.node(name="X", mesh=b.mesh(TRIANGLE, [0, 1, 2])))
    path = b.write_gltf(tmp_path / "lost.gltf", bin_name="lost.bin")
    (tmp_path / "lost.bin").unlink()
    _raises(path, ImportFormatError, "buffer 0", "'lost.bin'")
    # a buffer file shorter than it says
    (tmp_path / "lost.bin").write_bytes(b"\0" * 8)
    _raises(path, ImportFormatError, "buffer 0", "byteLength")


def test_nan_positions(tmp_path: Path) -> None:
    b = GltfBuilder()
    bad = TRIANGLE.copy()
    bad[1, 2] = np.nan
    b.scene(b.node(name="Ghost", mesh=b.mesh(bad, [0, 1, 2], name="GhostMesh")))
    path = b.write_glb(tmp_path / "nan.glb")
    _raises(path, SceneError, "object 'Ghost'", "POSITION of mesh 'GhostMesh'", "NaN")


def test_bad_references(tmp_path: Path) -> None:
    b = GltfBuilder()
    b.scene(b.node(name="X", mesh=4))
    _raises(b.write_gltf(tmp_path / "ref.gltf"), ImportFormatError, "meshes[4]", "'X'")
    b = GltfBuilder()
    mesh = b.mesh(TRIANGLE, [0, 1, 2], material=3)
    b.scene(b.node(name="Y", mesh=mesh))
    _raises(b.write_gltf(tmp_path / "mat.gltf"), ImportFormatError, "material 3")
    b = GltfBuilder()
    a = b.node(name="A")
    b.doc["nodes"][a]["children"] = [a]
    b.scene(a)
    _raises(b.write_gltf(tmp_path / "cycle.gltf"), ImportFormatError, "cycle")


def test_invalid_material_values_name_the_material(tmp_path: Path) -> None:
    b = GltfBuilder()
    b.doc["materials"] = [{"name": "Chrome", "pbrMetallicRoughness": {"metallicFactor": 1.5}}]
    b.scene(b.node(name="X", mesh=b.mesh(TRIANGLE, [0, 1, 2], material=0)))
    _raises(b.write_gltf(tmp_path / "chrome.gltf"), SceneError, "material 'Chrome'", "metallic")


def test_unsupported_required_extension(tmp_path: Path) -> None:
    b = GltfBuilder()
    b.doc["extensionsUsed"] = b.doc["extensionsRequired"] = ["KHR_draco_mesh_compression"]
    b.scene(b.node(name="X"))
    _raises(b.write_gltf(tmp_path / "draco.gltf"), ImportFormatError, "KHR_draco_mesh_compression")


def test_gltf_1_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "old.gltf"
    path.write_text(json.dumps({"asset": {"version": "1.0"}}))
    _raises(path, ImportFormatError, "version 1.0")


# --------------------------------------------------------------------------------------------
# the Khronos glTF validator on our exports


@pytest.mark.external
@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
@pytest.mark.parametrize("unit", ["m", "mm"])
def test_khronos_validator_accepts_export(tmp_path: Path, suffix: str, unit: str) -> None:
    scene = full_scene(unit=unit, meters_per_unit=1.0 if unit == "m" else 0.001)
    report = khronos_validate(export_gltf(scene, tmp_path / f"scene{suffix}"))
    issues = report["issues"]
    problems = [m for m in issues["messages"] if m["severity"] <= 1]
    assert issues["numErrors"] == 0, problems
    assert issues["numWarnings"] == 0, problems
    info = report["info"]
    assert info["materialCount"] == 4 and info["hasTextures"]
