"""The splat preview: a PLY written by the engine comes into Blender upright, with its attributes,
and renders its Gaussians' colours where they are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon.splat_preview import PROPERTY, import_splat  # noqa: E402
from engine.bake.output import read_exr  # noqa: E402
from engine.errors import ImportFormatError, InputError  # noqa: E402
from engine.splat.compressed import write_compressed_ply  # noqa: E402
from engine.splat.frames import SCENE_TO_FILE, SCENE_TO_FILE_QUAT, _quat_multiply  # noqa: E402
from engine.splat.ply import SH_C0, GaussianCloud, write_ply  # noqa: E402

# three Gaussians in the scene frame (Z up): red left, green up high, blue right
MEANS = np.array([[-1.2, 0.0, 0.0], [0.0, 0.0, 1.0], [1.2, 0.0, -0.3]])
COLORS = np.eye(3) * 0.9 + 0.05
ROTATION = np.array([[0.9238795, 0.0, 0.0, 0.3826834]] * 3)  # 45° about Z


def _cloud() -> GaussianCloud:
    """The three Gaussians as a trained splat stores them: file frame, log scales, logits, SH DC."""
    return GaussianCloud(
        means=(MEANS @ SCENE_TO_FILE.T).astype(np.float32),
        scales_log=np.log(np.full((3, 3), 0.25, np.float32)),
        quats=_quat_multiply(SCENE_TO_FILE_QUAT, ROTATION).astype(np.float32),
        opacity_logit=np.full(3, 4.0, np.float32),
        sh_dc=((COLORS - 0.5) / SH_C0).astype(np.float32),
        sh_rest=np.zeros((3, 3, 3), np.float32),
    )


@pytest.fixture(autouse=True)
def empty_file() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _attribute(mesh: bpy.types.Mesh, name: str, width: int, field: str) -> np.ndarray:
    values = np.empty(len(mesh.vertices) * width, np.float32)
    mesh.attributes[name].data.foreach_get(field, values)
    return values.reshape(len(mesh.vertices), width) if width > 1 else values


@pytest.mark.parametrize("compressed", [False, True])
def test_import_gives_scene_frame_points_with_attributes(tmp_path: Path, compressed: bool) -> None:
    path = tmp_path / ("s.compressed.ply" if compressed else "s.ply")
    (write_compressed_ply if compressed else write_ply)(path, _cloud())
    obj = import_splat(bpy.context, path)
    mesh = obj.data
    tolerance = 2e-3 if compressed else 1e-5
    positions = _attribute(mesh, "position", 3, "vector")
    # the compressed writer sorts the Gaussians (Morton order): match them up by position
    order = np.linalg.norm(positions[None, :, :] - MEANS[:, None, :], axis=2).argmin(axis=1)
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(positions[order], MEANS, atol=tolerance)
    np.testing.assert_allclose(np.abs(_attribute(mesh, "rotation", 4, "value")[order]), np.abs(ROTATION), atol=5e-3)
    np.testing.assert_allclose(_attribute(mesh, "scale", 3, "vector"), 0.25, rtol=1e-2)
    np.testing.assert_allclose(_attribute(mesh, "opacity", 1, "value"), 1 / (1 + np.exp(-4.0)), atol=5e-3)
    color = _attribute(mesh, "splat_color", 4, "color")[order]
    srgb = np.clip(COLORS, 0, 1)
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    np.testing.assert_allclose(color[:, :3], linear, atol=1e-2)
    assert obj.modifiers[0].type == "NODES"
    assert json.loads(obj[PROPERTY])["gaussians"] == 3


def test_render_shows_each_gaussian_in_its_colour_where_it_is(tmp_path: Path) -> None:
    path = write_ply(tmp_path / "s.ply", _cloud())
    import_splat(bpy.context, path)
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    camera.location = (0.0, -8.0, 0.0)
    camera.rotation_euler = (np.pi / 2, 0.0, 0.0)  # looking along +Y, Z up
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 4
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.filepath = str(tmp_path / "render.exr")
    bpy.ops.render.render(write_still=True)
    image = read_exr(tmp_path / "render.exr")[..., :3]
    focal = 64 * 50 / 36  # 50 mm lens on a 36 mm sensor, in pixels
    for point, channel in zip(MEANS, range(3), strict=True):
        u = 32 + focal * point[0] / (8.0 - point[1])
        v = 32 - focal * point[2] / (8.0 - point[1])
        pixel = image[int(v), int(u)]
        assert pixel.argmax() == channel and pixel[channel] > 0.3, (channel, pixel)
    assert image[2, 2].max() < 0.05  # background stays empty


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such splat file"):
        import_splat(bpy.context, tmp_path / "missing.ply")
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nend_header\n")
    with pytest.raises(ImportFormatError):
        import_splat(bpy.context, bad)
    assert len(bpy.data.objects) == 0  # nothing half-made
