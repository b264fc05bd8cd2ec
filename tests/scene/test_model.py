"""The Scene model validates on construction and names the object at fault."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SceneError
from engine.scene import Camera, Light, Material, MeshObject, Scene, Texture
from tests.conftest import unit_box

TRI = np.array([[0, 1, 2]], np.int32)
POS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"positions": np.zeros((3, 2))}, r"positions has shape \(3, 2\), expected \(N, 3\)"),
        ({"positions": [[0, 0, 0], [1, 0, np.inf], [0, 1, 0]]}, r"non-finite .* at index \(1, 2\)"),
        ({"positions": [["a", 0, 0]] * 3}, "not numeric"),
        ({"triangles": [[0, 1, 3]]}, "triangle 0 uses vertex index 3, but the object has 3 vertices"),
        ({"triangles": [[0, -1, 2]]}, "vertex index -1"),
        ({"triangles": [[0.0, 1.0, 2.0]]}, "expected integers"),
        ({"triangles": [[0, 1]]}, r"triangles has shape \(1, 2\)"),
        ({"normals": np.zeros((2, 3))}, r"normals has shape \(2, 3\)"),
        ({"uvs": {"UVMap": np.full((3, 2), np.nan)}}, "UV set 'UVMap' holds a non-finite"),
        ({"lightmap_uv": "Lightmap"}, "lightmap_uv names UV set 'Lightmap'"),
        ({"material_indices": [-1]}, "negative"),
        ({"material_indices": [0, 0]}, r"material_indices has shape \(2,\)"),
        ({"transform": np.zeros((4, 4))}, "last row"),
        ({"transform": np.diag([1.0, 0.0, 1.0, 1.0])}, "singular"),
    ],
)
def test_mesh_object_validation_names_the_object(kwargs: dict, message: str) -> None:
    args = {"name": "Chair", "positions": POS, "triangles": TRI, **kwargs}
    with pytest.raises(SceneError, match=message) as info:
        MeshObject(**args)
    assert "object 'Chair'" in str(info.value)


def test_arrays_are_read_only_and_typed() -> None:
    obj = MeshObject("a", POS.astype(np.float64), TRI.astype(np.int64))
    assert obj.positions.dtype == np.float32 and obj.triangles.dtype == np.int32
    with pytest.raises(ValueError):
        obj.positions[0, 0] = 5.0
    own = POS.copy()
    MeshObject("b", own, TRI)
    own[0, 0] = 1.0  # the caller's own array stays writable


def test_instances_share_arrays() -> None:
    a = unit_box("a")
    b = MeshObject("b", a.positions, a.triangles, instance_of="box")
    assert b.positions is a.positions and b.triangles is a.triangles


def test_animated_objects_are_not_static() -> None:
    assert not unit_box(animated=True).static


def test_scene_checks_names_and_material_indices() -> None:
    with pytest.raises(SceneError, match="two objects are named 'a'"):
        Scene((unit_box("a"), unit_box("a")))
    with pytest.raises(SceneError, match=r"object 'a'.*material index 3 is out of range \(the scene has 1"):
        Scene((unit_box("a", material_indices=np.full(12, 3, np.int32)),), source="room.glb")
    with pytest.raises(SceneError, match="at least one material"):
        Scene((), ())
    with pytest.raises(SceneError, match="holds a Material"):
        Scene((Material("x"),))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: Material("m", base_color=(1, 1, 1)), r"base_color has shape \(3,\)"),
        (lambda: Material("m", roughness=2.0), r"roughness = 2.0 is outside \[0, 1\]"),
        (lambda: Material("m", alpha_mode="CLIP"), "alpha_mode is 'CLIP'"),
        (lambda: Material("m", emission_color=(-1, 0, 0)), "negative"),
        (lambda: Light("l", "laser"), "kind is 'laser'"),
        (lambda: Light("l", "area", size=0.0), "area light needs a size"),
        (lambda: Light("l", "point", power=float("nan")), "power must be finite"),
        (lambda: Camera("c", 0, 10, 1, 1, 0, 0), "width must be a positive integer"),
        (lambda: Camera("c", 10, 10, 0, 1, 0, 0), r"fx = 0.0 is outside"),
        (lambda: Texture("t", np.zeros((4, 4, 5), np.uint8)), r"expected \(H, W, 1..4\)"),
        (lambda: Texture("t", np.zeros((4, 4), np.int16)), "expected uint8 or float32"),
    ],
)
def test_other_types_validate(factory, message: str) -> None:
    with pytest.raises(SceneError, match=message):
        factory()


def test_material_flags() -> None:
    holes = np.full((4, 4, 4), 255, np.uint8)
    holes[0, 0, 3] = 0
    assert Material("leaf", base_color_texture=Texture("t", holes), alpha_mode="MASK").is_alpha_cut
    assert not Material("leaf", base_color_texture=Texture("t", holes)).is_alpha_cut  # OPAQUE ignores alpha
    assert Material("veil", base_color=(1, 1, 1, 0.3), alpha_mode="BLEND").is_alpha_cut
    assert Material("lamp", emission_color=(1, 1, 1), emission_strength=3).emission == (3.0, 3.0, 3.0)
    assert not Material("dark", emission_color=(1, 1, 1), emission_strength=0).is_emissive


def test_light_and_camera_geometry() -> None:
    panel = Light("panel", "area", size=2.0, size_y=0.5, shape="rectangle", transform=np.diag([2.0, 1.0, 1.0, 1.0]))
    assert panel.area == pytest.approx(2.0)
    disk = Light("disk", "area", size=1.0, shape="disk")
    assert disk.area == pytest.approx(np.pi / 4)
    assert np.allclose(Light("sun", "sun").direction, (0, 0, -1))
    camera = Camera.from_fov("cam", 640, 480, np.radians(60))
    assert camera.fov_y == pytest.approx(np.radians(60))
    assert camera.cx == 320 and camera.cy == 240


def test_empty_scene_is_refused_where_content_is_required() -> None:
    with pytest.raises(SceneError, match="no triangles"):
        Scene(source="empty.glb").require_content()
