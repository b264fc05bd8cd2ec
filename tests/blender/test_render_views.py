"""render_views: Cycles renders of engine Cameras with exact intrinsics/extrinsics, chunked, leaving nothing behind.

Each test renders a throw-away scene of its own (made with bpy.data, not operators, so the
context's file and preferences stay as they are) at 64×48 pixels; a view takes a few
hundredths of a second on a CPU.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
bmesh = pytest.importorskip("bmesh")

from blender_addon import render_views as rv  # noqa: E402
from blender_addon.render_views import RenderedView, RenderSettings, ViewRenderJob, render_views  # noqa: E402
from engine.errors import ConfigError, SceneError  # noqa: E402
from engine.scene import Camera  # noqa: E402

W, H = 64, 48
# three emitters, one per colour channel, at known points off every axis and plane
POINTS = {0: (0.8, 0.3, 0.2), 1: (-0.5, -0.4, 0.6), 2: (0.1, 0.7, -0.5)}


# --------------------------------------------------------------------------------------------
# helpers


def look_at(eye: tuple[float, float, float], target: tuple[float, float, float] = (0, 0, 0)) -> np.ndarray:
    """Camera-to-world matrix, Blender convention (looks down local -Z, +Y up), world Z up."""
    eye_ = np.asarray(eye, float)
    forward = np.asarray(target, float) - eye_
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, up, -forward, eye_
    return matrix


def project(camera: Camera, point: tuple[float, float, float]) -> tuple[float, float]:
    """Pinhole projection to (u, v) pixels from the top-left corner, v down."""
    rotation = camera.transform[:3, :3] / np.linalg.norm(camera.transform[:3, :3], axis=0)
    x, y, z = rotation.T @ (np.asarray(point, float) - camera.transform[:3, 3])
    return camera.cx + camera.fx * x / -z, camera.cy - camera.fy * y / -z


def centroid(weights: np.ndarray) -> tuple[float, float]:
    """Weighted centroid (u, v) of an (H, W) image, pixel centres at +0.5."""
    rows, cols = np.mgrid[0 : weights.shape[0], 0 : weights.shape[1]] + 0.5
    total = float(weights.sum())
    assert total > 0, "nothing visible"
    return float((weights * cols).sum() / total), float((weights * rows).sum() / total)


def emission_material(name: str, color: tuple[float, float, float], strength: float, *, alpha: float = 1.0):
    """An Emission material; ``alpha`` < 1 mixes in a Transparent BSDF (coverage ``alpha``)."""
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender before 5.0
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Color"].default_value = (*color, 1.0)
    emission.inputs["Strength"].default_value = strength
    output = nodes.new("ShaderNodeOutputMaterial")
    shader = emission.outputs[0]
    if alpha < 1.0:
        mix = nodes.new("ShaderNodeMixShader")
        mix.inputs["Fac"].default_value = alpha
        links.new(nodes.new("ShaderNodeBsdfTransparent").outputs[0], mix.inputs[1])
        links.new(shader, mix.inputs[2])
        shader = mix.outputs[0]
    links.new(shader, output.inputs["Surface"])
    return material


class Stage:
    """A scene of its own (not the context's) with a black world; everything is removed afterwards."""

    def __init__(self) -> None:
        self.scene = bpy.data.scenes.new("render_views_test")
        world = bpy.data.worlds.new("render_views_test")
        if world.node_tree is None:  # Blender before 5.0
            world.use_nodes = True
        world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
        self.scene.world = world
        self.ids: list = [world]

    def add(self, name: str, mesh, material, location=(0.0, 0.0, 0.0)):
        obj = bpy.data.objects.new(name, mesh)
        obj.location = location
        mesh.materials.append(material)
        self.scene.collection.objects.link(obj)
        self.ids += [obj, mesh, material]
        return obj

    def sphere(self, name: str, location, color, strength: float = 1.0, radius: float = 0.15):
        mesh = bpy.data.meshes.new(name)
        bm = bmesh.new()
        bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=radius)
        bm.to_mesh(mesh)
        bm.free()
        return self.add(name, mesh, emission_material(name, color, strength), location)

    def quad(self, name: str, corners, material):
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata([tuple(c) for c in corners], [], [(0, 1, 2, 3)])
        return self.add(name, mesh, material)

    def remove(self) -> None:
        kinds = (
            (bpy.types.Object, bpy.data.objects),
            (bpy.types.Mesh, bpy.data.meshes),
            (bpy.types.Camera, bpy.data.cameras),
            (bpy.types.Material, bpy.data.materials),
            (bpy.types.World, bpy.data.worlds),
        )
        for block in self.ids:
            collection = next(collection for kind, collection in kinds if isinstance(block, kind))
            collection.remove(block)
        bpy.data.scenes.remove(self.scene)


@pytest.fixture
def stage() -> Iterator[Stage]:
    made = Stage()
    yield made
    made.remove()


@pytest.fixture
def spheres(stage: Stage) -> Stage:
    for channel, point in POINTS.items():
        color = [0.0, 0.0, 0.0]
        color[channel] = 1.0
        stage.sphere(f"emitter{channel}", point, tuple(color))
    return stage


def datablock_counts() -> dict[str, int]:
    return {
        name: len(getattr(bpy.data, name))
        for name in ("objects", "cameras", "images", "meshes", "materials", "worlds", "scenes", "collections")
    }


RENDER_SETTINGS = (
    ("render", "engine"),
    ("render", "resolution_x"),
    ("render", "resolution_y"),
    ("render", "resolution_percentage"),
    ("render", "pixel_aspect_x"),
    ("render", "pixel_aspect_y"),
    ("render", "film_transparent"),
    ("render", "filepath"),
    ("render", "use_compositing"),
    ("render", "use_sequencer"),
    ("render", "use_motion_blur"),
    ("render.image_settings", "file_format"),
    ("render.image_settings", "color_depth"),
    ("render.image_settings", "color_mode"),
    ("render.image_settings", "exr_codec"),
    ("cycles", "samples"),
    ("cycles", "seed"),
    ("cycles", "max_bounces"),
    ("cycles", "use_denoising"),
    ("cycles", "device"),
    ("cycles", "film_exposure"),
    ("cycles", "filter_width"),
    ("cycles", "use_adaptive_sampling"),
    ("view_settings", "view_transform"),
    ("view_settings", "look"),
    ("view_settings", "exposure"),
)


def render_state(scene) -> dict[str, object]:
    state: dict[str, object] = {"camera": scene.camera}
    for path, attr in RENDER_SETTINGS:
        owner = scene
        for part in path.split("."):
            owner = getattr(owner, part)
        state[f"{path}.{attr}"] = getattr(owner, attr)
    return state


def customise(scene) -> None:
    """Settings unlike everything render_views uses, to see that they come back."""
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 320, 200, 50
    scene.render.pixel_aspect_x = 2.0
    scene.render.film_transparent = False
    scene.render.filepath = "//user/output_"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_depth = "16"
    scene.render.image_settings.color_mode = "RGB"
    scene.cycles.samples, scene.cycles.seed, scene.cycles.max_bounces = 77, 5, 9
    scene.cycles.film_exposure = 0.7
    scene.view_settings.view_transform = "AgX"
    scene.view_settings.exposure = 1.5


def temp_leftovers() -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), "optimizer-view-*"))


# --------------------------------------------------------------------------------------------
# geometry


T = look_at((3.0, -4.0, 2.0))
SCALED = T @ np.diag([2.0, 2.0, 2.0, 1.0])
CAMERAS = {
    "centred": Camera("centred", W, H, 60.0, 60.0, W / 2, H / 2, T),
    "off_centre": Camera("off_centre", W, H, 60.0, 60.0, 40.0, 18.0, T),
    "fx_lt_fy": Camera("fx_lt_fy", W, H, 55.0, 75.0, 30.0, 26.0, T),
    "fx_gt_fy": Camera("fx_gt_fy", W, H, 75.0, 55.0, 33.0, 22.0, T),
    "portrait": Camera("portrait", H, W, 70.0, 70.0, 20.0, 35.0, T),
    "scaled_transform": Camera("scaled_transform", W, H, 60.0, 60.0, 28.0, 27.0, SCALED),
}


@pytest.mark.parametrize("name", list(CAMERAS))
def test_emitters_land_on_their_pinhole_projection(spheres: Stage, name: str) -> None:
    camera = CAMERAS[name]
    (view,) = render_views([camera], scene=spheres.scene)
    assert view.camera is camera
    assert view.rgba.shape == (camera.height, camera.width, 4) and view.rgba.dtype == np.float32
    for channel, point in POINTS.items():
        u, v = project(camera, point)
        assert 2 < u < camera.width - 2 and 2 < v < camera.height - 2  # the test itself: inside the image
        cu, cv = centroid(view.rgba[..., channel])
        assert abs(cu - u) < 0.3 and abs(cv - v) < 0.3, f"channel {channel}: centroid {(cu, cv)}, projection {(u, v)}"


def test_row_zero_is_the_top_and_column_zero_the_left(stage: Stage) -> None:
    stage.sphere("up_right", (1.0, 0.0, 0.8), (1.0, 1.0, 1.0))
    camera = Camera.from_fov("front", W, H, np.radians(50), look_at((0.0, -6.0, 0.0), (0.0, 0.0, 0.0)))
    (view,) = render_views([camera], scene=stage.scene)
    u, v = centroid(view.rgba[..., 3])
    assert u > W / 2 + 5 and v < H / 2 - 5  # world +X is right, world +Z (up) is near row 0


# --------------------------------------------------------------------------------------------
# radiance and alpha


def test_linear_radiance_and_transparent_background(stage: Stage) -> None:
    # an emitter of strength 2.5 over the left half of the view; the scene's display settings
    # (AgX, +1.5 stops of view exposure) must not touch the output
    stage.quad("wall", [(-5, 0, -5), (0, 0, -5), (0, 0, 5), (-5, 0, 5)], emission_material("wall", (1, 1, 1), 2.5))
    stage.scene.view_settings.view_transform = "AgX"
    stage.scene.view_settings.exposure = 1.5
    camera = Camera.from_fov("front", W, H, np.radians(40), look_at((0.0, -6.0, 0.0)))
    (view,) = render_views([camera], scene=stage.scene)
    left, right = view.rgba[:, : W // 2 - 3], view.rgba[:, W // 2 + 3 :]
    np.testing.assert_allclose(left, np.broadcast_to([2.5, 2.5, 2.5, 1.0], left.shape), atol=1e-4)
    np.testing.assert_array_equal(right, 0.0)

    (brighter,) = render_views([camera], scene=stage.scene, settings=RenderSettings(exposure=1.0))
    np.testing.assert_allclose(brighter.rgba[..., :3], 2.0 * view.rgba[..., :3], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(brighter.rgba[..., 3], view.rgba[..., 3])


def test_alpha_is_coverage_and_rgb_premultiplied(stage: Stage) -> None:
    half = emission_material("half", (0.2, 0.6, 1.0), 2.0, alpha=0.5)
    stage.quad("glass", [(-5, 0, -5), (5, 0, -5), (5, 0, 5), (-5, 0, 5)], half)
    camera = Camera.from_fov("front", W, H, np.radians(40), look_at((0.0, -6.0, 0.0)))
    (view,) = render_views([camera], scene=stage.scene, settings=RenderSettings(samples=4))
    np.testing.assert_allclose(view.rgba[..., 3], 0.5, atol=1e-4)
    np.testing.assert_allclose(view.rgba[..., :3], np.broadcast_to([0.2, 0.6, 1.0], (H, W, 3)), atol=1e-4)
    composite = view.over((1.0, 1.0, 1.0))
    np.testing.assert_allclose(composite, np.broadcast_to([0.7, 1.1, 1.5], (H, W, 3)), atol=1e-4)


def test_opaque_film_shows_the_world(stage: Stage) -> None:
    background = stage.scene.world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (0.5, 0.25, 1.0, 1.0)
    background.inputs["Strength"].default_value = 0.5
    camera = Camera.from_fov("sky", W, H, np.radians(40), look_at((0.0, -6.0, 0.0)))
    (view,) = render_views([camera], scene=stage.scene, settings=RenderSettings(samples=1, film_transparent=False))
    np.testing.assert_allclose(view.rgba, np.broadcast_to([0.25, 0.125, 0.5, 1.0], (H, W, 4)), atol=1e-5)


# --------------------------------------------------------------------------------------------
# progress, steps, cancel


def small_cameras(n: int) -> list[Camera]:
    return [
        Camera.from_fov(f"cam{i}", W, H, np.radians(50), look_at((4.0 * np.cos(i), 4.0 * np.sin(i), 1.0)))
        for i in range(n)
    ]


def test_progress_rises_to_one(spheres: Stage) -> None:
    calls: list[tuple[str, float, str]] = []
    views = render_views(small_cameras(3), scene=spheres.scene, progress=lambda *call: calls.append(call))
    assert [v.camera.name for v in views] == ["cam0", "cam1", "cam2"]
    fractions = [fraction for _, fraction, _ in calls]
    assert fractions == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert {stage for stage, _, _ in calls} == {"render"}
    assert "cam2" in calls[-1][2]

    empty: list[tuple[str, float, str]] = []
    assert render_views([], scene=spheres.scene, progress=lambda *call: empty.append(call)) == []
    assert [fraction for _, fraction, _ in empty] == [1.0]


def test_job_renders_one_view_per_step(spheres: Stage) -> None:
    cameras = small_cameras(3)
    job = ViewRenderJob(cameras, scene=spheres.scene)
    assert job.results == [] and not job.done and job.total == 3
    assert job.step() is True and len(job.results) == 1
    assert job.step() is True and len(job.results) == 2
    assert job.step() is False and len(job.results) == 3 and job.done
    assert job.step() is False and len(job.results) == 3
    assert [v.camera for v in job.results] == cameras
    # the same view from the one-call function is the same image (same seed and samples)
    (again,) = render_views(cameras[1:2], scene=spheres.scene)
    np.testing.assert_array_equal(again.rgba, job.results[1].rgba)
    assert not job.results[0].rgba.flags.writeable


def test_cancel_stops(spheres: Stage) -> None:
    job = ViewRenderJob(small_cameras(3), scene=spheres.scene)
    assert job.step() is True
    job.cancel()
    assert job.cancelled and job.done
    assert job.step() is False and len(job.results) == 1

    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 2  # let two views through, then stop

    calls: list[float] = []
    views = render_views(small_cameras(5), scene=spheres.scene, cancel=cancel, progress=lambda s, f, m: calls.append(f))
    assert len(views) == 2 and len(asked) == 3
    assert calls[-1] == pytest.approx(0.4)


# --------------------------------------------------------------------------------------------
# nothing left behind


def test_nothing_left_behind(spheres: Stage) -> None:
    scene = spheres.scene
    user_camera = bpy.data.objects.new("user_camera", bpy.data.cameras.new("user_camera"))
    scene.collection.objects.link(user_camera)
    scene.camera = user_camera
    spheres.ids += [user_camera, user_camera.data]
    customise(scene)
    before_state, before_counts, before_names = render_state(scene), datablock_counts(), set(bpy.data.objects.keys())
    before_temp = temp_leftovers()

    views = render_views(small_cameras(2), scene=scene)
    assert len(views) == 2 and (views[0].rgba[..., 3] > 0).any()

    assert render_state(scene) == before_state
    assert datablock_counts() == before_counts
    assert set(bpy.data.objects.keys()) == before_names
    assert temp_leftovers() == before_temp
    assert list(scene.collection.objects) == [o for o in scene.collection.objects if o.name in before_names]


def test_context_scene_by_default() -> None:
    scene = bpy.context.scene
    before_state, before_counts = render_state(scene), datablock_counts()
    (view,) = render_views(small_cameras(1), settings=RenderSettings(samples=1))
    assert view.rgba.shape == (H, W, 4) and np.isfinite(view.rgba).all()
    assert render_state(scene) == before_state
    assert datablock_counts() == before_counts


def test_settings_restored_when_a_render_fails(spheres: Stage, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = spheres.scene
    customise(scene)
    before_state, before_counts, before_temp = render_state(scene), datablock_counts(), temp_leftovers()

    def broken(path: str, width: int, height: int) -> np.ndarray:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rv, "_read_exr", broken)
    job = ViewRenderJob(small_cameras(2), scene=scene)
    with pytest.raises(RuntimeError, match="disk on fire"):
        job.step()
    assert job.results == [] and not job.done
    assert render_state(scene) == before_state
    assert datablock_counts() == before_counts
    assert temp_leftovers() == before_temp


# --------------------------------------------------------------------------------------------
# bad input


def test_bad_settings_and_cameras_are_refused() -> None:
    with pytest.raises(ConfigError, match="samples"):
        RenderSettings(samples=0)
    with pytest.raises(ConfigError, match="device"):
        RenderSettings(device="TPU")
    with pytest.raises(SceneError, match="minimum"):
        ViewRenderJob([Camera("tiny", 2, 2, 2.0, 2.0, 1.0, 1.0)])
    with pytest.raises(SceneError, match="mirrors"):
        ViewRenderJob([Camera("mirror", W, H, 50.0, 50.0, 32.0, 24.0, np.diag([-1.0, 1.0, 1.0, 1.0]))])
    with pytest.raises(SceneError, match="Camera"):
        ViewRenderJob(["not a camera"])  # type: ignore[list-item]


def test_rendered_view_over_per_pixel_background() -> None:
    rgba = np.zeros((2, 2, 4), np.float32)
    rgba[0, 0] = (0.25, 0.5, 0.75, 0.5)
    view = RenderedView(Camera("c", 4, 4, 2.0, 2.0, 2.0, 2.0), rgba)
    background = np.full((2, 2, 3), 2.0, np.float32)
    out = view.over(background)
    np.testing.assert_allclose(out[0, 0], (1.25, 1.5, 1.75))
    np.testing.assert_allclose(out[1, 1], (2.0, 2.0, 2.0))
