"""OBJ/MTL importer: real files written to tmp_path, read through load_obj and load_scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import ImportFormatError, InputError, SceneError
from engine.scene.io import load_scene
from engine.scene.model import DEFAULT_MATERIAL, Scene
from engine.scene.obj import Y_UP_TO_Z_UP, load_obj
from engine.scene.samples import CORNELL_MTL
from engine.scene.samples import CORNELL_OBJ as SAMPLE_CORNELL_OBJ

# -- the Cornell box (cornell.edu's measured data, millimetres, Y up) ----------------------------

# The Cornell box with a Ke light; the test writes it as cornell.obj / cornell.mtl.
CORNELL_OBJ = SAMPLE_CORNELL_OBJ.replace("mtllib cornell_box.mtl", "mtllib cornell.mtl")
CORNELL_MTL_KE = CORNELL_MTL

# The old convention: the light is the material whose ambient colour is far above 1.
CORNELL_MTL_KA = """\
newmtl white
Ka 0 0 0
Kd 0.725 0.71 0.68
newmtl red
Ka 0 0 0
Kd 0.63 0.065 0.05
newmtl green
Ka 0 0 0
Kd 0.14 0.45 0.091
newmtl light
Ka 20 20 20
Kd 0.78 0.78 0.78
"""

CORNELL_OBJECTS = ["floor", "ceiling", "back_wall", "right_wall", "left_wall", "light", "short_block", "tall_block"]


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def cornell(tmp_path: Path, mtl: str) -> Path:
    write(tmp_path, "cornell.mtl", mtl)
    return write(tmp_path, "cornell.obj", CORNELL_OBJ)


def material_of(scene: Scene, name: str):
    obj = scene.object(name)
    indices = np.unique(obj.material_indices)
    assert indices.size == 1, f"{name} uses several materials"
    return scene.materials[int(indices[0])]


def check_cornell(scene: Scene) -> None:
    assert [o.name for o in scene.objects] == CORNELL_OBJECTS
    assert scene.n_triangles == 6 * 2 + 2 * 5 * 2
    assert [scene.object(n).n_triangles for n in CORNELL_OBJECTS] == [2, 2, 2, 2, 2, 2, 10, 10]
    assert [scene.object(n).n_vertices for n in CORNELL_OBJECTS] == [4, 4, 4, 4, 4, 4, 8, 8]
    assert sorted(m.name for m in scene.materials) == ["green", "light", "red", "white"]
    assert material_of(scene, "floor").name == "white"
    assert material_of(scene, "right_wall").name == "green"
    assert material_of(scene, "left_wall").name == "red"
    assert material_of(scene, "tall_block").name == "white"
    light = scene.object("light")
    assert material_of(scene, "light").name == "light"
    assert material_of(scene, "light").is_emissive
    assert [m.name for m in scene.materials if m.is_emissive] == ["light"]
    # Coordinates as in the file (Y up, millimetres); the transform turns them Z up.
    np.testing.assert_allclose(light.positions[:, 1], 548.8, atol=0.2)
    np.testing.assert_allclose(light.world_positions()[:, 2], 548.8, atol=0.2)
    np.testing.assert_array_equal(light.transform, Y_UP_TO_Z_UP)
    floor = scene.object("floor")
    assert floor.positions.max(axis=0) == pytest.approx([552.8, 0.0, 559.2], abs=1e-3)
    assert floor.normals is None and dict(floor.uvs) == {}


def test_cornell_box_with_ke_in_millimetres(tmp_path: Path) -> None:
    path = cornell(tmp_path, CORNELL_MTL_KE)
    scene = load_obj(path, unit="mm")
    check_cornell(scene)
    assert scene.meters_per_unit == pytest.approx(0.001)
    assert scene.unit_name == "mm"
    assert scene.name == "cornell"
    assert scene.source == str(path)
    light = material_of(scene, "light")
    assert light.emission_color == pytest.approx((17.0, 12.0, 4.0))
    assert light.emission_strength == 1.0
    assert light.base_color == pytest.approx((0.78, 0.78, 0.78, 1.0))
    assert scene.warnings == ()


def test_cornell_box_without_unit_has_none(tmp_path: Path) -> None:
    scene = load_obj(cornell(tmp_path, CORNELL_MTL_KE))
    check_cornell(scene)
    assert scene.meters_per_unit is None
    assert scene.unit_name == "unknown"


def test_cornell_box_light_marked_by_ka(tmp_path: Path) -> None:
    scene = load_obj(cornell(tmp_path, CORNELL_MTL_KA), unit="millimetres")
    check_cornell(scene)
    assert scene.meters_per_unit == pytest.approx(0.001)
    light = material_of(scene, "light")
    assert light.emission_color == pytest.approx((20.0, 20.0, 20.0))
    assert len(scene.warnings) == 1
    warning = scene.warnings[0]
    assert "cornell.mtl" in warning and "'light'" in warning and "Ka" in warning and "inferred" in warning


def test_cornell_box_through_load_scene(tmp_path: Path) -> None:
    path = cornell(tmp_path, CORNELL_MTL_KA)
    scene = load_scene(path, unit="mm")
    check_cornell(scene)
    assert scene.meters_per_unit == pytest.approx(0.001)
    assert load_scene(path).meters_per_unit is None


def test_ka_is_not_emission_when_ke_is_given(tmp_path: Path) -> None:
    write(tmp_path, "m.mtl", "newmtl lamp\nKa 20 20 20\nKe 0 0 0\n")
    path = write(tmp_path, "m.obj", "mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl lamp\nf 1 2 3\n")
    scene = load_obj(path)
    assert not scene.materials[0].is_emissive
    assert scene.warnings == ()


def test_unknown_unit_is_an_input_error(tmp_path: Path) -> None:
    path = cornell(tmp_path, CORNELL_MTL_KE)
    with pytest.raises(InputError, match="unknown length unit"):
        load_obj(path, unit="furlong")


# -- structure: objects, groups, materials ----------------------------------------------------------

TRIANGLE = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"


def test_objects_and_groups_are_named_and_unique(tmp_path: Path) -> None:
    text = TRIANGLE + (
        "f 1 2 3\n"  # before any o/g: the file's stem
        "o body\nf 1 2 3\n"
        "g left\nf 1 2 3\nf 1 3 4\n"
        "g right\nf 1 2 3\n"
        "g left\nf 2 3 4\n"  # the group again: same object
        "o empty\n"  # no faces: no object
        "o arm\ng arm\nf 1 2 3\n"  # group named like its object
        "o\ng only_group\nf 1 2 3\n"
        "o body/left\nf 1 2 3\n"  # collides with body + left
    )
    scene = load_obj(write(tmp_path, "robot.obj", text))
    names = [o.name for o in scene.objects]
    assert names == ["robot", "body", "body/left", "body/right", "arm", "only_group", "body/left.001"]
    assert scene.object("body/left").n_triangles == 3
    assert scene.n_triangles == 9


def test_usemtl_sets_per_triangle_materials(tmp_path: Path) -> None:
    write(tmp_path, "mats.mtl", "newmtl a\nKd 1 0 0\nnewmtl b\nKd 0 1 0\n")
    text = "mtllib mats.mtl\n" + TRIANGLE + (
        "o one\nf 1 2 3\nusemtl a\nf 1 2 3 4\nusemtl b\nf 1 2 3\nusemtl a\nf 2 3 4\n"
        "o two\nf 1 2 3\n"  # the material stays in force across objects
    )
    scene = load_obj(write(tmp_path, "mats.obj", text))
    assert [m.name for m in scene.materials] == ["default", "a", "b"]
    assert scene.materials[0] is DEFAULT_MATERIAL
    assert scene.object("one").material_indices.tolist() == [0, 1, 1, 2, 1]
    assert scene.object("two").material_indices.tolist() == [1]
    assert scene.materials[1].base_color == (1.0, 0.0, 0.0, 1.0)


def test_default_material_shared_with_usemtl_default(tmp_path: Path) -> None:
    write(tmp_path, "d.mtl", "newmtl default\nKd 0 0 1\n")
    path = write(tmp_path, "d.obj", "mtllib d.mtl\n" + TRIANGLE + "f 1 2 3\nusemtl default\nf 1 3 4\n")
    scene = load_obj(path)
    assert [m.name for m in scene.materials] == ["default"]
    assert scene.materials[0].base_color[:3] == (0.0, 0.0, 1.0)
    assert scene.objects[0].material_indices.tolist() == [0, 0]


# -- index forms, negative indices, polygons ----------------------------------------------------------


def test_all_index_forms_and_negative_indices(tmp_path: Path) -> None:
    text = (
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1 0.5\n"
        "vn 0 0 1\nvn 0 1 0\n"
        "o plain\nf 1 2 3\n"
        "o with_uv\nf 1/1 2/2 3/3\n"
        "o with_normal\nf 1//1 2//1 3//1\n"
        "o full\nf 1/1/1 2/2/1 3/3/1 4/4/1\n"
        "o relative\nf -4/-4/-2 -3/-3/-2 -2/-2/-2\n"
    )
    scene = load_obj(write(tmp_path, "forms.obj", text))
    plain, with_uv, with_normal, full, relative = scene.objects
    assert plain.normals is None and dict(plain.uvs) == {}
    assert list(with_uv.uvs) == ["UVMap"] and with_uv.normals is None
    assert with_normal.normals is not None and dict(with_normal.uvs) == {}
    np.testing.assert_array_equal(with_normal.normals, [[0, 0, 1]] * 3)
    assert full.n_triangles == 2 and full.n_vertices == 4
    corners = full.positions[full.triangles]
    np.testing.assert_array_equal(corners[0], [[0, 0, 0], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(corners[1], [[0, 0, 0], [1, 1, 0], [0, 1, 0]])
    # UV of each vertex follows its position (V up as in the file, third component dropped).
    np.testing.assert_array_equal(full.uvs["UVMap"], full.positions[:, :2])
    np.testing.assert_array_equal(relative.positions[relative.triangles[0]], [[0, 0, 0], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(relative.normals, [[0, 0, 1]] * 3)


def test_relative_indices_count_from_the_face_line(tmp_path: Path) -> None:
    text = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\nv 5 5 5\nv 6 5 5\nv 5 6 5\nf -3 -2 -1\n"
    scene = load_obj(write(tmp_path, "rel.obj", text))
    obj = scene.objects[0]
    np.testing.assert_array_equal(obj.positions[obj.triangles[1]], [[5, 5, 5], [6, 5, 5], [5, 6, 5]])


def test_quads_and_ngons_are_fan_triangulated(tmp_path: Path) -> None:
    ring = "".join(f"v {np.cos(a):.6f} {np.sin(a):.6f} 0\n" for a in np.linspace(0, 2 * np.pi, 7)[:-1])
    text = ring + "f 1 2 3\nf 1 2 3 4\nf 1 2 3 4 5\nf 1 2 3 4 5 6\n"
    obj = load_obj(write(tmp_path, "ngon.obj", text)).objects[0]
    assert obj.n_triangles == 1 + 2 + 3 + 4
    hexagon = obj.triangles[-4:]
    first = obj.positions[hexagon[:, 0]]
    np.testing.assert_allclose(first, [[1, 0, 0]] * 4, atol=1e-6)  # fan around the first corner
    np.testing.assert_array_equal(obj.material_indices, np.zeros(10))


def test_objects_get_compact_vertex_arrays(tmp_path: Path) -> None:
    text = "".join(f"v {i} 0 {i % 2}\n" for i in range(10)) + "o a\nf 2 3 4\no b\nf 8 9 10 9\n"
    scene = load_obj(write(tmp_path, "compact.obj", text))
    a, b = scene.objects
    assert a.n_vertices == 3 and b.n_vertices == 3
    np.testing.assert_array_equal(np.sort(b.positions[:, 0]), [7, 8, 9])
    assert scene.n_vertices == 6


def test_shared_position_with_different_uvs_splits_the_vertex(tmp_path: Path) -> None:
    text = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nvt 0.5 0.5\nf 1/1 2/2 3/3\nf 1/4 3/3 2/2\n"
    obj = load_obj(write(tmp_path, "seam.obj", text)).objects[0]
    assert obj.n_vertices == 4
    assert obj.uvs["UVMap"].shape == (4, 2)


def test_uvs_and_normals_need_every_corner(tmp_path: Path) -> None:
    text = TRIANGLE + "vt 0 0\nvn 0 0 1\no partial\nf 1/1/1 2/1/1 3/1/1\nf 1 3 4\n"
    scene = load_obj(write(tmp_path, "partial.obj", text))
    obj = scene.objects[0]
    assert obj.normals is None and dict(obj.uvs) == {}
    assert any("no UV" in w and "'partial'" in w for w in scene.warnings)
    assert any("no normal" in w for w in scene.warnings)


def test_mixed_forms_in_bulk(tmp_path: Path) -> None:
    """Many faces in several corner forms go through the vectorised mixed-form path."""
    n = 400
    lines = ["v 0 0 0", "v 1 0 0", "v 0 1 0", "vt 0 0", "vn 0 0 1"]
    for i in range(n):
        lines.append(f"o part{i % 4}")
        lines.append(["f 1 2 3", "f 1/1 2/1 3/1", "f 1//1 2//1 3//1", "f 1/1/1 -2/-1/-1 3/1/1"][i % 4])
    scene = load_obj(write(tmp_path, "mixed.obj", "\n".join(lines) + "\n"))
    assert [o.n_triangles for o in scene.objects] == [n // 4] * 4
    assert [o.normals is not None for o in scene.objects] == [False, False, True, True]
    assert [bool(o.uvs) for o in scene.objects] == [False, True, False, True]


def test_large_grid_matches_its_definition(tmp_path: Path) -> None:
    """A grid big enough for the bulk paths, mixing triangles and quads, checked corner by corner."""
    n = 60
    idx = np.arange(n * n).reshape(n, n)[:-1, :-1].reshape(-1) + 1
    quads = np.stack([idx, idx + 1, idx + n + 1, idx + n], axis=1)
    rows = [f"v {x} {0.5 * x * y:.4f} {y}" for y in range(n) for x in range(n)]
    rows += [f"vt {x / n:.5f} {y / n:.5f}" for y in range(n) for x in range(n)]
    rows += ["vn 0 1 0"]
    for k, q in enumerate(quads):
        if k % 3:
            rows.append("f " + " ".join(f"{i}/{i}/1" for i in q))
        else:
            rows.append("f " + " ".join(f"{i}/{i}/1" for i in q[:3]))
            rows.append("f " + " ".join(f"{i}/{i}/1" for i in q[[0, 2, 3]]))
    obj = load_obj(write(tmp_path, "grid.obj", "\n".join(rows) + "\n")).objects[0]
    assert obj.n_triangles == 2 * (n - 1) ** 2
    assert obj.n_vertices == n * n
    corners = obj.positions[obj.triangles]
    # Every triangle is half a unit cell with its first corner at a grid point.
    assert np.allclose(np.abs(corners[:, :, 0] - corners[:, :1, 0]).max(axis=1), 1)
    x, y = obj.positions[:, 0], obj.positions[:, 2]
    np.testing.assert_allclose(obj.positions[:, 1], 0.5 * x * y, atol=1e-3)
    np.testing.assert_allclose(obj.uvs["UVMap"], np.stack([x, y], 1) / n, atol=1e-4)


# -- tolerated syntax ---------------------------------------------------------------------------------


def test_tolerated_syntax(tmp_path: Path) -> None:
    text = (
        "\ufeff# bom, CRLF, tabs, indentation, comments, continuations\r\n"
        "v 0 0 0 1.0\r\n"  # w
        "v\t1 0 0 0.5 0.5 0.5\r\n"  # vertex colour
        "   v 1 1 0   # indented, trailing comment\r\n"
        "v 0 1 \\\r\n0\r\n"  # continuation
        "vt 0.5\r\n"  # u only
        "s off\r\nl 1 2\r\np 1\r\nl 2 3\r\n"
        "f 1 2 3 \\\r\n 4 # quad\r\n"
        "f 1 2 3\r\n"
        "bogus 1 2\r\n"
        "f 1/1 2/1 3/1 4/1\r\n"
    )
    path = write(tmp_path, "messy.obj", text.encode("utf-8"))
    scene = load_obj(path)
    obj = scene.objects[0]
    assert obj.n_triangles == 5
    np.testing.assert_array_equal(np.sort(obj.positions, axis=0)[-1], [1, 1, 0])
    elements = [w for w in scene.warnings if "line/point" in w]
    assert len(elements) == 1 and "3 line/point" in elements[0]
    assert any("'bogus'" in w for w in scene.warnings)
    # Line numbers survive the continuations: the appended line is line 17 of the file.
    with pytest.raises(ImportFormatError, match="line 17:"):
        load_obj(write(tmp_path, "messy2.obj", text.encode() + b"f 1 2\r\n"))


def test_comment_ending_in_backslash_does_not_swallow_a_line(tmp_path: Path) -> None:
    text = "# exported from C:\\models\\\n" + TRIANGLE + "f 1 2 3\n"
    obj = load_obj(write(tmp_path, "win.obj", text)).objects[0]
    np.testing.assert_array_equal(obj.positions[obj.triangles[0]], [[0, 0, 0], [1, 0, 0], [1, 1, 0]])


def test_vertices_without_faces_is_an_empty_scene(tmp_path: Path) -> None:
    path = write(tmp_path, "cloud.obj", TRIANGLE)
    scene = load_obj(path)
    assert scene.objects == () and scene.n_triangles == 0
    assert any("no faces" in w for w in scene.warnings)
    assert load_scene(path).objects == ()
    with pytest.raises(SceneError, match="no triangles"):
        scene.require_content()


def test_comments_only_is_an_empty_scene(tmp_path: Path) -> None:
    assert load_obj(write(tmp_path, "c.obj", "# nothing here\n\n")).objects == ()


# -- materials ----------------------------------------------------------------------------------------


def quad_obj(tmp_path: Path, mtl_text: str | None, material: str = "m", mtllib: str = "quad.mtl") -> Path:
    if mtl_text is not None:
        write(tmp_path, mtllib, mtl_text)
    body = "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n" f"usemtl {material}\nf 1/1 2/2 3/3 4/4\n"
    return write(tmp_path, "quad.obj", f"mtllib {mtllib}\n" + TRIANGLE + body)


def png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def test_texture_with_options_and_spaces_in_its_name(tmp_path: Path) -> None:
    pixels = np.zeros((4, 8, 3), dtype=np.uint8)
    pixels[:, :, 0] = 200
    png(tmp_path / "tex" / "brick wall.png", pixels)
    mtl = "newmtl m\nKd 1 1 1\nmap_Kd -s 1 1 1 -bm 0.5 -clamp on tex/brick wall.png\n"
    scene = load_obj(quad_obj(tmp_path, mtl))
    texture = scene.materials[0].base_color_texture
    assert texture is not None
    assert (texture.width, texture.height, texture.channels) == (8, 4, 3)
    assert texture.pixels[0, 0, 0] == 200
    assert scene.materials[0].alpha_mode == "OPAQUE"
    assert scene.warnings == ()


def test_windows_texture_path_found_by_name(tmp_path: Path) -> None:
    png(tmp_path / "wood.png", np.full((2, 2, 3), 90, dtype=np.uint8))
    mtl = "newmtl m\nmap_Kd C:\\Users\\artist\\textures\\wood.png\n"
    scene = load_obj(quad_obj(tmp_path, mtl))
    assert scene.materials[0].base_color_texture is not None


def test_missing_texture_is_a_warning(tmp_path: Path) -> None:
    scene = load_obj(quad_obj(tmp_path, "newmtl m\nKd 0.5 0.5 0.5\nmap_Kd textures/gone.png\n"))
    material = scene.materials[0]
    assert material.base_color_texture is None
    assert material.base_color == (0.5, 0.5, 0.5, 1.0)
    [warning] = scene.warnings
    assert "quad.mtl" in warning and "'m'" in warning and "textures/gone.png" in warning


def test_corrupt_texture_is_a_warning(tmp_path: Path) -> None:
    write(tmp_path, "bad.png", b"not a png at all")
    scene = load_obj(quad_obj(tmp_path, "newmtl m\nmap_Kd bad.png\n"))
    assert scene.materials[0].base_color_texture is None
    assert any("bad.png" in w and "cannot be read" in w for w in scene.warnings)


def test_missing_mtl_is_a_warning_and_materials_keep_their_names(tmp_path: Path) -> None:
    path = quad_obj(tmp_path, None, material="bricks", mtllib="nowhere.mtl")
    scene = load_scene(path)
    assert [m.name for m in scene.materials] == ["bricks"]
    assert scene.materials[0].base_color == DEFAULT_MATERIAL.base_color
    [warning] = scene.warnings
    assert "nowhere.mtl" in warning and "not found" in warning and "quad.obj" in warning


def test_undefined_material_is_a_warning(tmp_path: Path) -> None:
    scene = load_obj(quad_obj(tmp_path, "newmtl other\nKd 1 0 0\n", material="ghost"))
    assert [m.name for m in scene.materials] == ["ghost"]
    [warning] = scene.warnings
    assert "'ghost'" in warning and "no material library defines it" in warning


def test_several_mtllibs_and_names_with_spaces(tmp_path: Path) -> None:
    write(tmp_path, "my materials.mtl", "newmtl a\nKd 1 0 0\n")
    write(tmp_path, "b.mtl", "newmtl b\nKd 0 1 0\n")
    write(tmp_path, "sub/c.mtl", "newmtl c\nKd 0 0 1\n")
    text = "mtllib my materials.mtl b.mtl\nmtllib sub/c.mtl\n" + TRIANGLE
    text += "usemtl a\nf 1 2 3\nusemtl b\nf 1 2 3\nusemtl c\nf 1 2 3\n"
    scene = load_obj(write(tmp_path, "libs.obj", text))
    assert [m.base_color[:3] for m in scene.materials] == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert scene.warnings == ()


def test_dissolve_and_transparency(tmp_path: Path) -> None:
    mtl = "newmtl glass\nKd 1 1 1\nd 0.25\nnewmtl tr\nTr 0.25\nnewmtl solid\nd 1\nTr 0\n"
    text = "mtllib t.mtl\n" + TRIANGLE + "usemtl glass\nf 1 2 3\nusemtl tr\nf 1 2 3\nusemtl solid\nf 1 2 3\n"
    write(tmp_path, "t.mtl", mtl)
    glass, tr, solid = load_obj(write(tmp_path, "t.obj", text)).materials
    assert glass.alpha_mode == "BLEND" and glass.base_color[3] == 0.25 and glass.is_transparent
    assert tr.alpha_mode == "BLEND" and tr.base_color[3] == 0.75
    assert solid.alpha_mode == "OPAQUE" and solid.base_color[3] == 1.0


def test_alpha_map_makes_a_mask_with_the_alpha_in_the_texture(tmp_path: Path) -> None:
    png(tmp_path / "leaf.png", np.full((4, 4, 3), 60, dtype=np.uint8))
    alpha = np.zeros((2, 2), dtype=np.uint8)
    alpha[0, 0] = 255
    png(tmp_path / "leaf_alpha.png", alpha)
    scene = load_obj(quad_obj(tmp_path, "newmtl m\nmap_Kd leaf.png\nmap_d -imfchan l leaf_alpha.png\n"))
    material = scene.materials[0]
    assert material.alpha_mode == "MASK"
    texture = material.base_color_texture
    assert texture is not None and texture.channels == 4 and (texture.width, texture.height) == (4, 4)
    assert texture.pixels[0, 0, 3] == 255 and texture.pixels[3, 3, 3] == 0
    assert texture.pixels[3, 3, 0] == 60
    assert material.is_alpha_cut


def test_alpha_map_without_colour_map(tmp_path: Path) -> None:
    alpha = np.full((2, 3, 4), 255, dtype=np.uint8)
    alpha[0, 0, 3] = 0
    png(tmp_path / "cutout.png", alpha)
    material = load_obj(quad_obj(tmp_path, "newmtl m\nKd 0.2 0.4 0.6\nmap_d cutout.png\n")).materials[0]
    texture = material.base_color_texture
    assert material.alpha_mode == "MASK" and texture is not None
    assert texture.pixels[:, :, :3].min() == 255  # white, times the base colour
    assert texture.pixels[0, 0, 3] == 0 and texture.pixels[1, 2, 3] == 255
    assert material.base_color == (0.2, 0.4, 0.6, 1.0)


def test_alpha_map_same_file_as_colour(tmp_path: Path) -> None:
    rgba = np.full((2, 2, 4), 255, dtype=np.uint8)
    rgba[1, 1, 3] = 0
    png(tmp_path / "fence.png", rgba)
    material = load_obj(quad_obj(tmp_path, "newmtl m\nmap_Kd fence.png\nmap_d fence.png\n")).materials[0]
    assert material.alpha_mode == "MASK" and material.is_alpha_cut


def test_colour_clipping_roughness_and_pbr(tmp_path: Path) -> None:
    mtl = (
        "newmtl bright\nKd 1.5 0.5 -0.1\nNs 0\n"
        "newmtl shiny\nKd 0.2 0.2 0.2\nNs 998\nNi 1.5\nillum 2\nKs 1 1 1\nTf 1 1 1\n"
        "newmtl pbr\nNs 10\nPr 0.3\nPm 1.0\n"
        "newmtl broken\nKd red\nNs lots\n"
    )
    text = "mtllib c.mtl\n" + TRIANGLE
    text += "".join(f"usemtl {m}\nf 1 2 3\n" for m in ("bright", "shiny", "pbr", "broken"))
    write(tmp_path, "c.mtl", mtl)
    scene = load_obj(write(tmp_path, "c.obj", text))
    bright, shiny, pbr, broken = scene.materials
    assert bright.base_color == (1.0, 0.5, 0.0, 1.0)
    assert bright.roughness == 1.0
    assert shiny.roughness == pytest.approx(np.sqrt(2 / 1000))
    assert pbr.roughness == pytest.approx(0.3) and pbr.metallic == 1.0
    assert broken.base_color == DEFAULT_MATERIAL.base_color and broken.roughness == 0.5
    assert any("'bright'" in w and "clipped" in w for w in scene.warnings)
    assert sum("'broken'" in w for w in scene.warnings) == 2


# -- bad input ----------------------------------------------------------------------------------------


def bad(tmp_path: Path, text: str | bytes, name: str = "bad.obj") -> Path:
    return write(tmp_path, name, text)


@pytest.mark.parametrize("loader", [load_obj, load_scene])
def test_non_numeric_coordinate(tmp_path: Path, loader) -> None:
    path = bad(tmp_path, "o crate\nv 0 0 0\nv 1 0 0\nv 1 a 3\nf 1 2 3\n")
    with pytest.raises(ImportFormatError) as info:
        loader(path)
    message = str(info.value)
    assert str(path) in message and "line 4" in message and "'v 1 a 3'" in message
    assert "'crate'" in message and "'a' is not a number" in message


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e999"])
def test_non_finite_vertex(tmp_path: Path, value: str) -> None:
    path = bad(tmp_path, f"o pole\nv 0 0 0\nv 1 0 0\nv 0 {value} 0\nf 1 2 3\n")
    with pytest.raises(SceneError) as info:
        load_obj(path)
    message = str(info.value)
    assert str(path) in message and "line 4" in message and "'pole'" in message and "NaN or infinite" in message


@pytest.mark.parametrize(
    ("face", "problem"),
    [
        ("f 1 2 4", "vertex index 4 is out of range (the file defines 3)"),
        ("f 0 1 2", "vertex index 0 is invalid"),
        ("f 1 2 -4", "relative vertex index -4 reaches before the first vertex"),
        ("f 1/1 2/1 3/2", "texture coordinate index 2 is out of range"),
        ("f 1//0 2//1 3//1", "normal index 0 is invalid"),
        ("f 1 2", "face has 2 vertex(es); a face needs at least 3"),
        ("f", "face has 0 vertex(es)"),
        ("f 1 2 3.5", "'3.5' is not an integer index"),
        ("f 1 2 x", "'x' is not an integer index"),
        ("f 1/1/1/1 2 3", "is not of the form"),
        ("f 1 2 3-", "'3-' is not an integer index"),
        ("f 1 2 -", "'-' is not an integer index"),
    ],
)
def test_bad_faces(tmp_path: Path, face: str, problem: str) -> None:
    text = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvn 0 0 1\no lid\nf 1 2 3\n" + face + "\nf 1 2 3\n"
    path = bad(tmp_path, text)
    with pytest.raises(ImportFormatError) as info:
        load_obj(path)
    message = str(info.value)
    assert str(path) in message and "line 8" in message and "'lid'" in message
    assert problem in message


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("v 1 2", "vertex has 2 value(s)"),
        ("v", "vertex has 0 value(s)"),
        ("v 1 2 3 4 5 6 7 8", "vertex has 8 value(s)"),
        ("vn 0 1", "normal has 2 value(s)"),
        ("vt", "texture coordinate has 0 value(s)"),
        ("v 1 2 3e", "'3e' is not a number"),
        ("v 1,5 2 3", "'1,5' is not a number"),
    ],
)
def test_bad_elements(tmp_path: Path, line: str, problem: str) -> None:
    path = bad(tmp_path, "g panel\nv 0 0 0\nv 1 0 0\nv 0 1 0\n" + line + "\nf 1 2 3\n")
    with pytest.raises(ImportFormatError) as info:
        load_obj(path)
    message = str(info.value)
    assert str(path) in message and "line 5" in message and "'panel'" in message and problem in message


def test_truncated_file(tmp_path: Path) -> None:
    full = "o cut\n" + TRIANGLE + "f 1 2 3\nf 1 3 4\n"
    with pytest.raises(ImportFormatError, match=r"line 7: 'f 1 3' in object 'cut': face has 2 vertex"):
        load_obj(bad(tmp_path, full[:-3]))  # cut after "f 1 3"
    with pytest.raises(ImportFormatError, match=r"line 5: 'v 0 1' .*vertex has 2 value"):
        load_obj(bad(tmp_path, full[: full.index("v 0 1 0") + 5], "cut2.obj"))
    with pytest.raises(ImportFormatError, match=r"line 5: 'v 0 1 2e' .*'2e' is not a number"):
        load_obj(bad(tmp_path, "o cut\n" + TRIANGLE[:-2] + "2e", "cut3.obj"))  # cut inside an exponent


def test_error_deep_in_a_large_file_names_the_right_line(tmp_path: Path) -> None:
    n = 5000
    rows = [f"v {i} {i % 7} 0" for i in range(n)] + [f"f {i + 1} {i + 2} {i + 3}" for i in range(n - 2)]
    rows[n + 4000] = "f 1 2 99999"
    with pytest.raises(ImportFormatError, match=rf"line {n + 4001}: 'f 1 2 99999'.*index 99999 is out of range"):
        load_obj(bad(tmp_path, "\n".join(rows) + "\n"))
    rows[n + 4000] = "f 1 2 3"
    rows[3000] = "v 1 2 nan"
    with pytest.raises(SceneError, match="line 3001: 'v 1 2 nan'"):
        load_obj(bad(tmp_path, "\n".join(rows) + "\n", "nan.obj"))


def test_binary_and_empty_files_through_load_scene(tmp_path: Path) -> None:
    binary = bad(tmp_path, bytes(range(256)) * 8, "blob.obj")
    with pytest.raises(ImportFormatError, match="binary data") as info:
        load_scene(binary)
    assert "blob.obj" in str(info.value)
    empty = bad(tmp_path, b"", "empty.obj")
    with pytest.raises(ImportFormatError, match="empty"):
        load_scene(empty)
    assert load_obj(empty).objects == ()  # load_obj itself: nothing in it, nothing to import


def test_text_that_is_not_obj(tmp_path: Path) -> None:
    path = bad(tmp_path, "Dear diary,\ntoday I renamed a letter to .obj\n", "letter.obj")
    with pytest.raises(ImportFormatError, match=r"letter.obj: is not an OBJ file: line 1 'Dear diary,'"):
        load_scene(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match="cannot read file"):
        load_obj(tmp_path / "absent.obj")
    with pytest.raises(ImportFormatError, match="does not exist"):
        load_scene(tmp_path / "absent.obj")
