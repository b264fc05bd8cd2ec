"""Camera rig: Blender ↔ OpenCV conventions, intrinsics, rig planning, split, rays, cameras.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.splat.rig import (
    CameraRig,
    blender_c2w_to_opencv_viewmat,
    camera_rays,
    fibonacci_directions,
    intrinsics,
    look_at,
    opencv_viewmat_to_blender_c2w,
    pixel_rays,
    plan_rig,
)


def project(viewmat: np.ndarray, k_matrix: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV pinhole projection (as gsplat does it): pixel coordinates (N, 2) and depth (N,)."""
    points = np.atleast_2d(np.asarray(points, np.float64))
    cam = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    u = k_matrix[0, 0] * cam[:, 0] / cam[:, 2] + k_matrix[0, 2]
    v = k_matrix[1, 1] * cam[:, 1] / cam[:, 2] + k_matrix[1, 2]
    return np.stack([u, v], -1), cam[:, 2]


def random_rigid(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(count, 3, 3)))
    q *= np.sign(np.linalg.det(q))[:, None, None]  # proper rotations
    c2w = np.tile(np.eye(4), (count, 1, 1))
    c2w[:, :3, :3] = q
    c2w[:, :3, 3] = rng.normal(size=(count, 3)) * 5
    return c2w


# --------------------------------------------------------------------------------------------
# conventions


def test_camera_on_minus_y_sees_x_right_and_z_up() -> None:
    c2w = look_at((0.0, -5.0, 0.0), (0.0, 0.0, 0.0))
    # Blender convention: right = +X, up = +Z, the camera's -Z axis points at the target (+Y)
    np.testing.assert_allclose(c2w[:3, :3], [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)
    viewmat = blender_c2w_to_opencv_viewmat(c2w)
    k_matrix = intrinsics(64, 48, math.radians(50))
    (centre, right, above), depth = project(viewmat, k_matrix, np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1.0]]))
    np.testing.assert_allclose(centre, (32.0, 24.0), atol=1e-9)
    np.testing.assert_allclose(depth, 5.0)  # in front of the camera (OpenCV: +Z forward)
    assert right[0] > 32.0 and right[1] == pytest.approx(24.0)
    assert above[1] < 24.0 and above[0] == pytest.approx(32.0)


def test_intrinsics_pixel_centres_and_fov() -> None:
    k_matrix = intrinsics(128, 96, math.radians(90))
    np.testing.assert_allclose(k_matrix, [[64, 0, 64], [0, 64, 48], [0, 0, 1]], atol=1e-12)  # tan(45°) = 1


def test_conversions_round_trip_vectorised() -> None:
    c2w = random_rigid(10, seed=1)
    viewmats = blender_c2w_to_opencv_viewmat(c2w)
    assert viewmats.shape == (10, 4, 4)
    np.testing.assert_allclose(opencv_viewmat_to_blender_c2w(viewmats), c2w, atol=1e-12)
    # the OpenCV camera's +Z is the Blender camera's -Z, +Y its -Y, and both sit at the same centre
    c2w_cv = np.linalg.inv(viewmats)
    np.testing.assert_allclose(c2w_cv[:, :3, 2], -c2w[:, :3, 2], atol=1e-12)
    np.testing.assert_allclose(c2w_cv[:, :3, 1], -c2w[:, :3, 1], atol=1e-12)
    np.testing.assert_allclose(c2w_cv[:, :3, 0], c2w[:, :3, 0], atol=1e-12)
    np.testing.assert_allclose(c2w_cv[:, :3, 3], c2w[:, :3, 3], atol=1e-12)
    np.testing.assert_allclose(blender_c2w_to_opencv_viewmat(c2w[3]), viewmats[3], atol=1e-12)


def test_matches_blenders_own_camera_projection() -> None:
    """Our viewmat + K place points where Blender's camera puts them (bpy's world_to_camera_view)."""
    bpy = pytest.importorskip("bpy")
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix, Vector

    width, height, fov_x = 80, 60, math.radians(55)
    c2w = look_at((2.0, -4.0, 1.5), (0.2, 0.3, 0.4))
    scene = bpy.data.scenes.new("rig_check")
    data = bpy.data.cameras.new("rig_check")
    obj = bpy.data.objects.new("rig_check", data)
    try:
        scene.render.resolution_x, scene.render.resolution_y = width, height
        scene.render.resolution_percentage = 100
        data.sensor_fit = "HORIZONTAL"
        data.angle_x = fov_x
        obj.matrix_world = Matrix(c2w.tolist())
        points = np.random.default_rng(0).uniform(-1, 1, (20, 3))
        blender = np.array([tuple(world_to_camera_view(scene, obj, Vector(p.tolist()))) for p in points])
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.cameras.remove(data)
        bpy.data.scenes.remove(scene)
    uv, depth = project(blender_c2w_to_opencv_viewmat(c2w), intrinsics(width, height, fov_x), points)
    np.testing.assert_allclose(uv[:, 0] / width, blender[:, 0], atol=1e-5)  # Blender: x from the left
    np.testing.assert_allclose(1.0 - uv[:, 1] / height, blender[:, 1], atol=1e-5)  # Blender: y from the bottom
    np.testing.assert_allclose(depth, blender[:, 2], rtol=1e-5)


def test_look_at_straight_down_and_up_stays_a_proper_rotation() -> None:
    eyes = np.array([[0, 0, 5.0], [0, 0, -5.0], [3, 1, 2.0]])
    c2w = look_at(eyes, (0.0, 0.0, 0.0))
    assert np.isfinite(c2w).all()
    rotation = c2w[:, :3, :3]
    np.testing.assert_allclose(rotation.transpose(0, 2, 1) @ rotation, np.tile(np.eye(3), (3, 1, 1)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotation), 1.0)
    forward = -rotation[:, :, 2]
    np.testing.assert_allclose(forward, -eyes / np.linalg.norm(eyes, axis=1, keepdims=True), atol=1e-12)
    with pytest.raises(ConfigError):
        look_at((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))


def test_fibonacci_directions_cover_the_cap_evenly() -> None:
    full = fibonacci_directions(500)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0)
    assert abs(full.mean(axis=0)).max() < 0.01  # balanced over the sphere
    cap = fibonacci_directions(200, z_min=0.2)
    assert cap[:, 2].min() >= 0.2


# --------------------------------------------------------------------------------------------
# rays


def test_pixel_rays_hit_points_that_project_to_their_pixel_centres() -> None:
    width, height = 24, 16
    c2w = look_at((1.0, -3.0, 2.0), (0.1, 0.2, 0.3))
    k_matrix = intrinsics(width, height, math.radians(60))
    origins, directions = pixel_rays(c2w, k_matrix, width, height)
    assert origins.shape == directions.shape == (width * height, 3)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0)
    np.testing.assert_allclose(origins, np.broadcast_to(c2w[:3, 3], origins.shape))
    t = np.random.default_rng(0).uniform(0.5, 20.0, width * height)
    uv, depth = project(blender_c2w_to_opencv_viewmat(c2w), k_matrix, origins + t[:, None] * directions)
    rows, cols = np.divmod(np.arange(width * height), width)
    np.testing.assert_allclose(uv, np.stack([cols + 0.5, rows + 0.5], -1), atol=1e-9)
    assert (depth > 0).all()


def test_pixel_rays_batch_and_camera_rays_agree() -> None:
    rig = plan_rig((-1, -1, -1), (1, 1, 1), views=4, width=16, height=20)
    origins, directions = pixel_rays(rig.c2w_blender, rig.Ks.astype(np.float64), rig.width, rig.height)
    assert directions.shape == (4, 16 * 20, 3)
    one_origins, one_directions = camera_rays(rig, 2)
    np.testing.assert_allclose(one_directions, directions[2], atol=1e-6)
    np.testing.assert_allclose(one_origins, origins[2], atol=1e-6)


# --------------------------------------------------------------------------------------------
# rigs


def test_object_rig_sees_the_whole_bounding_sphere_from_every_camera() -> None:
    lo, hi = np.array([-1.0, -0.5, 0.2]), np.array([2.0, 1.5, 1.0])
    rig = plan_rig(lo, hi, kind="object", views=40, width=96, height=64, fov_deg=35.0)
    assert rig.kind == "object" and rig.count == 40
    centre, radius = 0.5 * (lo + hi), 0.5 * np.linalg.norm(hi - lo)
    sphere = centre + radius * fibonacci_directions(400)
    distances = np.linalg.norm(rig.positions - centre, axis=1)
    np.testing.assert_allclose(distances, distances[0])  # all on one sphere
    for viewmat in rig.viewmats.astype(np.float64):
        uv, depth = project(viewmat, rig.K, sphere)
        assert (depth > 0).all()
        assert (uv >= 0).all() and (uv[:, 0] <= rig.width).all() and (uv[:, 1] <= rig.height).all()
        (centre_uv,), _ = project(viewmat, rig.K, centre)
        np.testing.assert_allclose(centre_uv, (48.0, 32.0), atol=1e-3)
        # and it is not tiny: the sphere spans most of the shorter side
        assert np.ptp(uv[:, 1]) > 0.7 * rig.height


def test_object_rig_upper_hemisphere() -> None:
    lo, hi = np.array([-1.0, -1.0, 0.0]), np.array([1.0, 1.0, 2.0])
    auto = plan_rig(lo, hi, views=32)  # bottom at z = 0: stands on the ground
    assert auto.positions[:, 2].min() > 0.0
    full = plan_rig(lo, hi, views=32, upper_hemisphere=False)
    assert full.positions[:, 2].min() < -1.0
    floating = plan_rig(lo + 3.0, hi + 3.0, views=32)  # off the ground: the whole sphere
    assert floating.positions[:, 2].min() < 3.0
    forced = plan_rig(lo + 3.0, hi + 3.0, views=32, upper_hemisphere=True)
    assert forced.positions[:, 2].min() > 3.0


def test_interior_rig_stays_inside_and_sees_every_direction() -> None:
    lo, hi = np.array([-2.0, -3.0, 0.0]), np.array([4.0, 3.0, 2.5])
    rig = plan_rig(lo, hi, kind="auto", enclosed=True, views=64, width=64, fov_deg=40.0, seed=3)
    assert rig.kind == "interior"
    positions = rig.positions
    margin = 0.1 * (hi - lo)
    assert (positions > lo + margin).all() and (positions < hi - margin).all()
    # spread out, not clumped: they span most of the inner box on every axis
    assert (np.ptp(positions, axis=0) > 0.5 * (hi - lo)).all()
    directions = np.random.default_rng(1).normal(size=(5000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    seen = np.zeros(len(directions), bool)
    for viewmat in rig.viewmats.astype(np.float64):
        cam = directions @ viewmat[:3, :3].T  # a direction is a point at infinity
        with np.errstate(divide="ignore", invalid="ignore"):
            u = rig.K[0, 0] * cam[:, 0] / cam[:, 2] + rig.K[0, 2]
            v = rig.K[1, 1] * cam[:, 1] / cam[:, 2] + rig.K[1, 2]
        seen |= (cam[:, 2] > 0) & (u >= 0) & (u <= rig.width) & (v >= 0) & (v <= rig.height)
    assert seen.all(), f"{(~seen).sum()} directions fall outside every view"


def test_split_every_nth_view_is_held_out() -> None:
    rig = plan_rig((0, 0, 0), (1, 1, 1), views=20, test_every=8)
    assert rig.test == (0, 8, 16)
    assert set(rig.train) | set(rig.test) == set(range(20)) and not set(rig.train) & set(rig.test)
    two = plan_rig((0, 0, 0), (1, 1, 1), views=2, test_every=8)
    assert two.test == (0,) and two.train == (1,)


def test_rig_is_deterministic_and_seeded() -> None:
    kwargs = {"kind": "interior", "views": 16}
    a = plan_rig((0, 0, 0), (3, 4, 2.5), seed=5, **kwargs)
    b = plan_rig((0, 0, 0), (3, 4, 2.5), seed=5, **kwargs)
    c = plan_rig((0, 0, 0), (3, 4, 2.5), seed=6, **kwargs)
    np.testing.assert_array_equal(a.c2w_blender, b.c2w_blender)
    assert not np.allclose(a.c2w_blender, c.c2w_blender)


def test_gsplat_inputs_and_cameras() -> None:
    rig = plan_rig((0, 0, 0), (1, 1, 1), views=6, width=32, height=24)
    assert rig.viewmats.shape == (6, 4, 4) and rig.viewmats.dtype == np.float32
    assert rig.Ks.shape == (6, 3, 3) and rig.Ks.dtype == np.float32
    assert rig.fov_y < rig.fov_x
    cameras = rig.cameras()
    assert [c.name for c in cameras] == list(rig.names)
    assert cameras[0].fx == pytest.approx(rig.K[0, 0]) and cameras[0].cx == 16.0 and cameras[0].cy == 12.0
    np.testing.assert_array_equal(cameras[3].transform, rig.c2w_blender[3])
    far_point = np.linalg.norm(rig.positions - 0.5, axis=1).max() + 0.5 * math.sqrt(3)
    assert cameras[0].near < 0.01 and cameras[0].far > far_point


def test_to_dict_from_dict_round_trip_through_json() -> None:
    rig = plan_rig((-1, 0, 0), (1, 2, 3), views=9, width=48, height=32, fov_deg=30.0, test_every=4)
    text = json.dumps(rig.to_dict())
    back = CameraRig.from_dict(json.loads(text))
    assert (back.width, back.height, back.kind, back.names) == (48, 32, "object", rig.names)
    assert back.fov_x == pytest.approx(math.radians(30.0))
    assert back.train == rig.train and back.test == rig.test == (0, 4, 8)
    np.testing.assert_array_equal(back.c2w_blender, rig.c2w_blender)
    assert back.bounds_min == (-1.0, 0.0, 0.0)
    data = json.loads(text)
    np.testing.assert_allclose(data["viewmats_opencv"], rig.viewmats, atol=1e-5)


@pytest.mark.parametrize(
    "change",
    [{"version": 99}, {"width": 5}, {"c2w_blender": [[1, 2]]}, {"names": ["a"]}, {"test": [1]}, {"train": [0, 99]},
     {"kind": "orbit"}, {"fov_x": math.radians(179)}],
)
def test_from_dict_rejects_bad_fields(change: dict) -> None:
    data = plan_rig((0, 0, 0), (1, 1, 1), views=3, width=16).to_dict()
    data.update(change)
    with pytest.raises(ConfigError):
        CameraRig.from_dict(data)
    del data["version"]
    with pytest.raises(ConfigError, match="version"):
        CameraRig.from_dict(data)


@pytest.mark.parametrize(
    ("bounds", "kwargs", "message"),
    [
        (((0, 0, 0), (1, 1, 1)), {"views": 1}, "views"),
        (((0, 0, 0), (1, 1, 1)), {"width": 8}, "width"),
        (((0, 0, 0), (1, 1, 1)), {"width": 64, "height": 5000}, "height"),
        (((0, 0, 0), (1, 1, 1)), {"fov_deg": 0.5}, "fov"),
        (((0, 0, 0), (1, 1, 1)), {"fov_deg": 175.0}, "fov"),
        (((0, 0, 0), (1, 1, 1)), {"test_every": 1}, "test_every"),
        (((0, 0, 0), (1, 1, 1)), {"kind": "orbit"}, "kind"),
        (((0, 0, 0), (1, np.nan, 1)), {}, "not finite"),
        (((0, 0, 0), (1, np.inf, 1)), {}, "not finite"),
        (((0, 0, 0), (1, -1, 1)), {}, "empty"),
        (((2, 2, 2), (2, 2, 2)), {}, "empty"),
    ],
)
def test_bad_settings_raise_config_errors(bounds: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_rig(*bounds, **kwargs)
