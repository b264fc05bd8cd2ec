"""The lightmap integrator against closed-form answers (sun, point, spot, area lights, emitters,
furnace), its face rules, determinism, time budget, and CPU/CUDA-simulator agreement."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from engine.bake.bvh import build_bvh
from engine.bake.integrate import (
    IntegrateResult,
    IntegrateSettings,
    integrate,
    light_row,
    prepare_bake_inputs,
    scene_triangles,
)
from engine.errors import ConfigError
from engine.scene.model import Light, Material, MeshObject, Scene, Texture

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Scene helpers


def quad(name: str, corner, edge_u, edge_v, material: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, triangles, material indices of a rectangle; its front faces edge_u × edge_v."""
    c, u, v = (np.asarray(x, np.float64) for x in (corner, edge_u, edge_v))
    positions = np.array([c, c + u, c + u + v, c + v], np.float32)
    return positions, np.array([[0, 1, 2], [0, 2, 3]], np.int32), np.full(2, material, np.int32)


def mesh(name: str, *quads: tuple[np.ndarray, np.ndarray, np.ndarray]) -> MeshObject:
    positions, triangles, materials, base = [], [], [], 0
    for p, t, m in quads:
        positions.append(p)
        triangles.append(t + base)
        materials.append(m)
        base += len(p)
    return MeshObject(name, np.concatenate(positions), np.concatenate(triangles),
                      material_indices=np.concatenate(materials))


def ground(size: float = 50.0, z: float = 0.0, material: int = 0) -> MeshObject:
    return mesh("ground", quad("g", (-size, -size, z), (2 * size, 0, 0), (0, 2 * size, 0), material))


def box(name: str, low, high, material: int = 0, inward: bool = True) -> MeshObject:
    """An axis-aligned box of six quads facing in (or out)."""
    (x0, y0, z0), (x1, y1, z1) = low, high
    dx, dy, dz = x1 - x0, y1 - y0, z1 - z0
    faces = [  # outward: (corner, u, v) with u × v pointing out
        ((x0, y0, z0), (0, dy, 0), (dx, 0, 0)),
        ((x0, y0, z1), (dx, 0, 0), (0, dy, 0)),
        ((x0, y0, z0), (dx, 0, 0), (0, 0, dz)),
        ((x1, y1, z0), (-dx, 0, 0), (0, 0, dz)),
        ((x0, y1, z0), (0, -dy, 0), (0, 0, dz)),
        ((x1, y0, z0), (0, dy, 0), (0, 0, dz)),
    ]
    quads = [quad(f"{name}{k}", c, v, u, material) if inward else quad(f"{name}{k}", c, u, v, material)
             for k, (c, u, v) in enumerate(faces)]
    return mesh(name, *quads)


def translate(x: float, y: float, z: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = (x, y, z)
    return m


def texels_at(points, normals=(0.0, 0.0, 1.0), offset: float = 1e-4) -> SimpleNamespace:
    """Texels (what the integrator reads of :class:`~engine.bake.texels.Texels`) at points."""
    p = np.atleast_2d(np.asarray(points, np.float32))
    n = np.broadcast_to(np.asarray(normals, np.float32), p.shape).copy()
    return SimpleNamespace(origin=p + n * np.float32(offset), normal=n, face_normal=n, count=len(p))


def bake(scene: Scene, texels: SimpleNamespace, **settings: object) -> IntegrateResult:
    """Integrate ``texels`` of ``scene`` on the CPU (unless ``device`` says otherwise)."""
    triangles = scene_triangles(scene)
    inputs = prepare_bake_inputs(scene, texels, triangles=triangles)  # type: ignore[arg-type]
    settings.setdefault("device", "cpu")
    return integrate(inputs, build_bvh(triangles.corners.astype(np.float32)), IntegrateSettings(**settings))  # type: ignore[arg-type]


def irradiance_square(radiance: float, side: float, h: float) -> float:
    """Irradiance under the centre of a Lambertian square (side, radiance) parallel at height h."""
    x = side / (2 * h)
    s = math.sqrt(1 + x * x)
    form = (4 / math.pi) * (x / s) * math.atan(x / s)
    return math.pi * radiance * form


# ---------------------------------------------------------------------------------------------
# Lights


def test_sun_at_normal_incidence_gives_e_over_pi() -> None:
    scene = Scene(objects=(ground(),), lights=(Light("sun", "sun", power=3.0, color=(1.0, 0.5, 0.25)),))
    result = bake(scene, texels_at([[0, 0, 0], [3, -2, 0]]), samples=16, bounces=2)
    expected = 3.0 / math.pi * np.array([1.0, 0.5, 0.25])
    np.testing.assert_allclose(result.lighting, np.tile(expected, (2, 1)), rtol=1e-5)
    assert result.samples == 16


def test_sun_with_angle_and_tilt() -> None:
    tilt = math.radians(30.0)
    m = np.eye(4)
    m[:3, :3] = [[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]]
    sun = Light("sun", "sun", power=5.0, angle=math.radians(10.0), transform=m)
    result = bake(Scene(objects=(ground(),), lights=(sun,)), texels_at([[0, 0, 0]]), samples=256, bounces=0)
    # a uniform cone of half-angle a around the axis at tilt t: mean cos = cos t · (1 + cos a) / 2
    a = math.radians(5.0)
    expected = 5.0 * math.cos(tilt) * (1 + math.cos(a)) / 2 / math.pi
    assert result.lighting[0, 0] == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("radius", [0.0, 0.2])
def test_point_light_inverse_square_cosine(radius: float) -> None:
    power, h = 100.0, 2.0
    light = Light("bulb", "point", power=power, size=radius, transform=translate(0, 0, h))
    xs = np.array([0.0, 1.0, 2.0, 4.0])
    points = np.c_[xs, np.zeros(4), np.zeros(4)]
    result = bake(Scene(objects=(ground(),), lights=(light,)), texels_at(points), samples=256, bounces=0)
    r = np.hypot(xs, h)
    expected = power / (4 * math.pi) * (h / r) / r**2 / math.pi
    np.testing.assert_allclose(result.lighting[:, 1], expected, rtol=0.01 if radius else 5e-4)  # origins sit 1e-4 above


def test_spot_light_cone_and_blend() -> None:
    power, h = 100.0, 2.0
    size, blend = math.radians(60.0), 0.5
    spot = Light("spot", "spot", power=power, spot_size=size, spot_blend=blend, transform=translate(0, 0, h))
    angles = np.radians([0.0, 20.0, 28.0, 40.0])
    xs = h * np.tan(angles)
    points = np.c_[xs, np.zeros(4), np.zeros(4)]
    result = bake(Scene(objects=(ground(),), lights=(spot,)), texels_at(points), samples=4, bounces=0)
    r = np.hypot(xs, h)
    point = power / (4 * math.pi) * (h / r) / r**2 / math.pi
    cos_half = math.cos(size / 2)
    x = np.clip((np.cos(angles) - cos_half) / ((1 - cos_half) * blend), 0, 1)
    smooth = x * x * (3 - 2 * x)
    np.testing.assert_allclose(result.lighting[:, 0], point * smooth, rtol=3e-3, atol=1e-9)  # origins 1e-4 up
    assert result.lighting[0, 0] == pytest.approx(point[0], rel=5e-4)  # the axis: a point light's I = P/4π
    assert 0 < result.lighting[2, 0] < point[2]  # in the blend
    assert result.lighting[3, 0] == 0.0  # outside the cone


@pytest.mark.parametrize("shape", ["square", "disk"])
def test_area_light_on_axis(shape: str) -> None:
    power, side, h = 50.0, 1.0, 1.5
    light = Light("panel", "area", power=power, size=side, shape=shape, transform=translate(0, 0, h))
    result = bake(Scene(objects=(ground(),), lights=(light,)), texels_at([[0, 0, 0]]), samples=1024, bounces=0)
    radiance = power / (math.pi * light.area)
    if shape == "square":
        expected = irradiance_square(radiance, side, h)
    else:
        rad = side / 2
        expected = math.pi * radiance * rad**2 / (rad**2 + h**2)
    assert result.lighting[0, 0] == pytest.approx(expected / math.pi, rel=0.01)


def test_area_light_is_one_sided() -> None:
    up = np.eye(4)
    up[:3, :3] = np.diag([1.0, -1.0, -1.0])  # local −Z now points up, away from the ground
    up[:3, 3] = (0, 0, 1.0)
    light = Light("panel", "area", power=50.0, size=1.0, transform=up)
    result = bake(Scene(objects=(ground(),), lights=(light,)), texels_at([[0, 0, 0]]), samples=16, bounces=0)
    assert result.lighting[0, 0] == 0.0


def test_occluder_casts_a_shadow() -> None:
    light = Light("bulb", "point", power=100.0, transform=translate(0, 0, 3.0))
    blocker = mesh("blocker", quad("b", (-0.5, -0.5, 1.5), (1, 0, 0), (0, 1, 0)))
    scene = Scene(objects=(ground(), blocker), lights=(light,))
    result = bake(scene, texels_at([[0, 0, 0], [3, 0, 0]]), samples=8, bounces=0)
    assert result.lighting[0, 0] == 0.0
    assert result.lighting[1, 0] > 0.0


def test_area_light_penumbra_is_soft_and_monotone() -> None:
    # a wall edge at x = 0 (blocking x < 0 at height 1) under a 1 m wide square light at height 2:
    # umbra for x < −0.5, penumbra over [−0.5, 0.5], fully lit from 0.5 on
    light = Light("panel", "area", power=200.0, size=1.0, transform=translate(0, 0, 2.0))
    blocker = mesh("blocker", quad("b", (-5.0, -5.0, 1.0), (5.0, 0, 0), (0, 10.0, 0)))
    xs = np.linspace(-0.7, 0.5, 13)
    scene = Scene(objects=(ground(), blocker), lights=(light,))
    result = bake(scene, texels_at(np.c_[xs, np.zeros_like(xs), np.zeros_like(xs)]), samples=2048, bounces=0)
    values = result.lighting[:, 0]
    assert values[0] == values[1] == 0.0  # umbra: the whole light is hidden
    lit = values[-1]
    penumbra = values[(xs > -0.45) & (xs < 0.45)]
    assert len(penumbra) == 9 and np.all((penumbra > 0.01 * lit) & (penumbra < 0.99 * lit))  # gradual, no step
    assert np.all(np.diff(values) >= -0.01 * lit)  # monotone up to noise
    assert np.all(np.diff(values[2:]) > 0)


# ---------------------------------------------------------------------------------------------
# Emitters, furnace, faces


def test_emissive_square_matches_closed_form_and_area_light() -> None:
    side, h, radiance = 1.0, 1.5, 2.0
    emitter_material = Material("glow", base_color=(0, 0, 0, 1), emission_color=(1, 1, 1), emission_strength=radiance)
    panel = mesh("panel", quad("p", (-0.5, -0.5, h), (0, side, 0), (side, 0, 0), 1))  # faces down
    scene = Scene(objects=(ground(), panel), materials=(Material("floor"), emitter_material))
    result = bake(scene, texels_at([[0, 0, 0]]), samples=2048, bounces=0)
    expected = irradiance_square(radiance, side, h) / math.pi
    assert result.lighting[0, 0] == pytest.approx(expected, rel=0.01)
    # the same power as an area light of the same size gives the same answer
    light = Light("panel", "area", power=radiance * math.pi * side * side, size=side, transform=translate(0, 0, h))
    as_light = bake(Scene(objects=(ground(),), lights=(light,)), texels_at([[0, 0, 0]]), samples=2048, bounces=0)
    assert as_light.lighting[0, 0] == pytest.approx(result.lighting[0, 0], rel=0.01)


def test_constant_environment_on_an_open_plane() -> None:
    scene = Scene(objects=(ground(),), environment=(0.3, 0.2, 0.1))
    result = bake(scene, texels_at([[0, 0, 0]]), samples=16, bounces=3)
    np.testing.assert_allclose(result.lighting[0], (0.3, 0.2, 0.1), rtol=1e-6)


FURNACE_POINTS = [[0.3, 0.4, 0.0], [0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.5, 0.5, 1.0]]
FURNACE_NORMALS = [[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, -1]]


def furnace(albedo: float, emission: float, *, inward: bool = True, double_sided: bool = False,
            texture: Texture | None = None) -> Scene:
    material = Material("furnace", base_color=(albedo, albedo, albedo, 1.0), base_color_texture=texture,
                        emission_color=(1, 1, 1), emission_strength=emission, double_sided=double_sided)
    return Scene(objects=(box("box", (0, 0, 0), (1, 1, 1), inward=inward),), materials=(material,))


@pytest.mark.parametrize("bounces", [0, 2, 6])
def test_white_furnace_partial_geometric_series(bounces: int) -> None:
    a, e = 0.6, 0.5
    result = bake(furnace(a, e), texels_at(FURNACE_POINTS, FURNACE_NORMALS), samples=4096, bounces=bounces,
                  rr_start=2)
    expected = e * sum(a**k for k in range(bounces + 1))
    np.testing.assert_allclose(result.lighting, expected, rtol=0.02)
    assert result.lighting.mean() == pytest.approx(expected, rel=0.01)


def test_furnace_converges_to_the_full_series() -> None:
    a, e = 0.5, 1.0
    result = bake(furnace(a, e), texels_at(FURNACE_POINTS, FURNACE_NORMALS), samples=4096, bounces=24, rr_start=1)
    assert result.lighting.mean() == pytest.approx(e / (1 - a), rel=0.01)


def test_textured_albedo_in_the_furnace() -> None:
    grey = Texture("grey", np.full((4, 4, 3), 128, np.uint8), "srgb")  # sRGB 128 → linear 0.2158605
    a = ((128 / 255 + 0.055) / 1.055) ** 2.4
    result = bake(furnace(1.0, 1.0, texture=grey), texels_at(FURNACE_POINTS, FURNACE_NORMALS), samples=4096, bounces=4)
    assert result.lighting.mean() == pytest.approx(sum(a**k for k in range(5)), rel=0.01)


def test_backfaces_are_black_unless_double_sided() -> None:
    points = texels_at(FURNACE_POINTS, FURNACE_NORMALS)
    outward = bake(furnace(0.5, 1.0, inward=False), points, samples=64, bounces=3)
    np.testing.assert_array_equal(outward.lighting, 0.0)  # only backs of single-sided faces in sight
    two_sided = bake(furnace(0.5, 1.0, inward=False, double_sided=True), points, samples=4096, bounces=3)
    assert two_sided.lighting.mean() == pytest.approx(1 + 0.5 + 0.25 + 0.125, rel=0.02)


def test_cornell_box_indirect_is_positive_bounded_and_coloured() -> None:
    white, red, green = Material("white", (0.75, 0.75, 0.75, 1)), Material("red", (0.7, 0.1, 0.1, 1)), \
        Material("green", (0.1, 0.7, 0.1, 1))
    down = np.eye(4)
    down[:3, 3] = (0.5, 0.5, 0.99)
    light = Light("ceiling", "area", power=20.0, size=0.3, transform=down)
    room = mesh(
        "room",
        quad("floor", (0, 0, 0), (1, 0, 0), (0, 1, 0), 0),
        quad("ceiling", (0, 0, 1), (0, 1, 0), (1, 0, 0), 0),
        quad("back", (0, 1, 0), (1, 0, 0), (0, 0, 1), 0),
        quad("front", (0, 0, 0), (0, 0, 1), (1, 0, 0), 0),
        quad("left", (0, 0, 0), (0, 1, 0), (0, 0, 1), 1),  # x = 0, faces +x
        quad("right", (1, 0, 0), (0, 0, 1), (0, 1, 0), 2),  # x = 1, faces −x
    )
    scene = Scene(objects=(room,), materials=(white, red, green), lights=(light,))
    points = texels_at([[0.5, 0.5, 0.0], [0.05, 0.5, 0.0], [0.95, 0.5, 0.0], [0.5, 0.5, 1.0]],
                       [[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, -1]])
    direct = bake(scene, points, samples=256, bounces=0).lighting
    full = bake(scene, points, samples=256, bounces=4).lighting
    indirect = full - direct
    assert direct[3].max() == 0.0  # the ceiling sees no direct light (the panel faces down)
    assert np.all(indirect > 0.0)
    # reflected radiance after k bounces is at most 0.75^k × the brightest direct lighting
    assert np.all(indirect < direct.max() * sum(0.75**k for k in range(1, 5)))
    assert indirect[1, 0] > indirect[1, 1]  # next to the red wall: red bounce
    assert indirect[2, 1] > indirect[2, 0]  # next to the green wall: green bounce
    assert np.all(np.isfinite(full))


# ---------------------------------------------------------------------------------------------
# AO, determinism, budget, settings


def test_ambient_occlusion() -> None:
    lid = mesh("lid", quad("lid", (-20, -20, 0.5), (0, 40, 0), (40, 0, 0)))  # a wide lid 0.5 up, facing down
    scene = Scene(objects=(ground(), lid))
    # under the lid a ray at zenith angle θ travels 0.5 / cos θ: it is open within d = 1 when cos θ < 0.5,
    # a share (0.5 / d)² = 1/4 of cosine-weighted rays; with d = 0.4 every ray is open
    result = bake(scene, texels_at([[0, 0, 0], [30, 0, 0]]), samples=4096, bounces=0, ao_distance=1.0)
    assert result.ao is not None
    assert result.ao[0] == pytest.approx(0.25, abs=0.025)
    assert result.ao[1] == 1.0
    assert bake(scene, texels_at([[0, 0, 0]]), samples=64, ao_distance=0.4).ao[0] == 1.0  # type: ignore[index]
    inside = bake(furnace(0.5, 0.0), texels_at(FURNACE_POINTS, FURNACE_NORMALS), samples=64, ao_distance=5.0)
    np.testing.assert_array_equal(inside.ao, 0.0)
    assert bake(scene, texels_at([[0, 0, 0]]), samples=4).ao is None


def cornell_like() -> tuple[Scene, SimpleNamespace]:
    light = Light("bulb", "point", power=80.0, size=0.1, transform=translate(0.5, 0.5, 0.8))
    glow = Material("glow", (0.5, 0.5, 0.5, 1), emission_color=(1, 0.8, 0.6), emission_strength=0.5)
    room = box("room", (0, 0, 0), (1, 1, 1))
    lamp = mesh("lamp", quad("l", (0.1, 0.1, 0.95), (0, 0.2, 0), (0.2, 0, 0), 1))
    scene = Scene(objects=(room, lamp), materials=(Material("white", (0.7, 0.7, 0.7, 1)), glow), lights=(light,),
                  environment=(0.1, 0.1, 0.1))
    rng = np.random.default_rng(1)
    points = np.c_[rng.uniform(0.05, 0.95, (16, 2)), np.zeros(16)]
    return scene, texels_at(points)


def test_same_seed_same_result_other_seed_other_result() -> None:
    scene, texels = cornell_like()
    one = bake(scene, texels, samples=8, bounces=3, seed=7, ao_distance=0.3)
    two = bake(scene, texels, samples=8, bounces=3, seed=7, ao_distance=0.3)
    other = bake(scene, texels, samples=8, bounces=3, seed=8, ao_distance=0.3)
    np.testing.assert_array_equal(one.lighting, two.lighting)
    np.testing.assert_array_equal(one.ao, two.ao)
    assert not np.array_equal(one.lighting, other.lighting)
    # passes do not change the samples: 8 in one pass or in passes of 3
    split = bake(scene, texels, samples=8, bounces=3, seed=7, ao_distance=0.3, pass_samples=3)
    assert split.passes == 3
    np.testing.assert_allclose(split.lighting, one.lighting, rtol=1e-6)


def test_time_budget_stops_between_passes() -> None:
    scene, texels = cornell_like()
    progress: list[float] = []
    triangles = scene_triangles(scene)
    result = integrate(prepare_bake_inputs(scene, texels, triangles=triangles),  # type: ignore[arg-type]
                       build_bvh(triangles.corners.astype(np.float32)),
                       IntegrateSettings(samples=10**6, pass_samples=4, bounces=2, time_budget_s=0.3, device="cpu"),
                       progress=lambda stage, fraction, message: progress.append(fraction))
    assert progress[-1] == 1.0 and progress == sorted(progress)
    assert 4 <= result.samples < 10**6
    assert result.samples % 4 == 0 and result.passes == result.samples // 4
    assert np.all(np.isfinite(result.lighting)) and np.all(result.lighting > 0)


@pytest.mark.parametrize(
    "changes",
    [{"samples": 0}, {"bounces": -1}, {"seed": -1}, {"ao_distance": float("nan")}, {"device": "tpu"},
     {"time_budget_s": 0}, {"samples": True}, {"sampler": "halton"}],
)
def test_bad_settings_are_refused(changes: dict) -> None:
    with pytest.raises(ConfigError):
        IntegrateSettings(**changes)


def test_light_table_units() -> None:
    point = light_row(Light("p", "point", power=4 * math.pi, color=(1, 0.5, 0)))
    np.testing.assert_allclose(point[13:16], (1, 0.5, 0))  # I = P / 4π
    sun = light_row(Light("s", "sun", power=7.0))
    np.testing.assert_allclose(sun[13:16], 7.0)  # E = strength
    area = light_row(Light("a", "area", power=math.pi * 6, size=2.0, size_y=3.0, shape="rectangle"))
    np.testing.assert_allclose(area[13:16], 1.0)  # L = P / (π A)
    assert area[19] == pytest.approx(6.0)


# ---------------------------------------------------------------------------------------------
# Sampling: Owen-scrambled Sobol' points against independent random numbers


def penumbra_scene(kind: str) -> Scene:
    """A wall edge at x = 0, height 1 (blocking x < 0) under a 1 m square at height 2: an area
    light (``kind`` "light") or an emissive quad of two triangles ("emitter"), radiance 2."""
    blocker = mesh("blocker", quad("b", (-5.0, -5.0, 1.0), (5.0, 0, 0), (0, 10.0, 0)))
    if kind == "light":
        light = Light("panel", "area", power=2.0 * math.pi, size=1.0, transform=translate(0, 0, 2.0))
        return Scene(objects=(ground(), blocker), lights=(light,))
    glow = Material("glow", base_color=(0, 0, 0, 1), emission_color=(1, 1, 1), emission_strength=2.0)
    panel = mesh("panel", quad("p", (-0.5, -0.5, 2.0), (0, 1.0, 0), (1.0, 0, 0), 1))  # faces down
    return Scene(objects=(ground(), blocker, panel), materials=(Material("floor"), glow))


#: Texel positions (x) under the penumbra scene: umbra edge, penumbra, fully lit; 64 copies of each.
SAMPLING_XS = np.array([-0.45, -0.3, -0.1, 0.0, 0.15, 0.3, 0.45, 0.6, 1.0, 2.0])
COPIES = 64


@pytest.mark.parametrize("kind", ["light", "emitter"])
def test_sobol_lowers_the_variance_of_direct_light_without_bias(kind: str) -> None:
    """Copies of a texel are independent estimates (each texel index scrambles its own points):
    their spread at 16 samples is the estimator's noise. Owen-scrambled Sobol' points must cut
    the variance summed over penumbra and lit positions by a clear factor (measured over three
    seeds: 17–19× for the light, ≈ 7× for the emitter, whose light is also found by the
    MIS-weighted bounce ray; the penumbra's visibility edge limits it) against
    independent random numbers, and their mean must match a 65,536-sample-per-position
    reference within a few standard errors."""
    scene = penumbra_scene(kind)
    p = len(SAMPLING_XS)
    texels = texels_at(np.c_[np.repeat(SAMPLING_XS, COPIES), np.zeros(p * COPIES), np.zeros(p * COPIES)])
    sobol = bake(scene, texels, samples=16, bounces=0, seed=5).lighting[:, 0].astype(np.float64).reshape(p, COPIES)
    iid = bake(scene, texels, samples=16, bounces=0, seed=5, sampler="random").lighting[:, 0]
    iid = iid.astype(np.float64).reshape(p, COPIES)
    ratio = iid.var(axis=1, ddof=1).sum() / sobol.var(axis=1, ddof=1).sum()
    assert ratio > 4.0, f"variance ratio random / sobol = {ratio:.2f}"
    assert np.all(iid.var(axis=1) >= sobol.var(axis=1))  # at every position (0 in the umbra for both)
    reference = bake(scene, texels, samples=1024, bounces=0, seed=9, sampler="random").lighting[:, 0]
    reference = reference.astype(np.float64).reshape(p, COPIES)
    error = np.sqrt(sobol.var(axis=1, ddof=1) / COPIES + reference.var(axis=1, ddof=1) / COPIES)
    lit = reference.mean(axis=1)
    assert 0 < lit[0] < lit[3] < lit[6]  # the positions span the penumbra
    np.testing.assert_array_less(np.abs(sobol.mean(axis=1) - lit), 4.0 * error + 1e-6 * lit)
    # and the random sampler, as a check of the check
    np.testing.assert_array_less(np.abs(iid.mean(axis=1) - lit), 4.5 * np.sqrt(iid.var(axis=1, ddof=1) / COPIES
                                                                             + reference.var(axis=1, ddof=1) / COPIES))


def test_sobol_first_bounce_is_unbiased_and_less_noisy() -> None:
    """The first bounce direction (Sobol' pair 0): an open plane under a lid that covers part of
    the sky, constant environment: the lighting is the open share of the cosine-weighted sky."""
    lid = mesh("lid", quad("lid", (-20, -20, 0.5), (0, 40, 0), (20.0, 0, 0)))  # covers x < 0, facing down
    scene = Scene(objects=(ground(), lid), environment=(1.0, 1.0, 1.0))
    texels = texels_at(np.c_[np.repeat([0.0, 0.3], 256), np.zeros(512), np.zeros(512)])
    sobol = bake(scene, texels, samples=16, bounces=0).lighting[:, 0].astype(np.float64).reshape(2, 256)
    iid = bake(scene, texels, samples=16, bounces=0, sampler="random").lighting[:, 0].astype(np.float64)
    iid = iid.reshape(2, 256)
    # a cosine-weighted direction misses the half-plane lid 0.5 up over x < 0 from (x0, 0) with x0 ≥ 0 when
    # it goes towards +x, or towards −x but reaching height 0.5 before x = 0: closed form below
    expected = []
    for x0 in (0.0, 0.3):
        # P(open) = 1/2 + P(dx < 0 and r·tanθ·|cos φ| < x0), r = 0.5: integrate over the disk of the cosine map
        n = 2000
        a = (np.arange(n) + 0.5) / n
        sin_t = np.sqrt(a)[:, None]
        cos_phi = np.cos(np.pi * a)[None, :]  # φ ∈ [0, π): |cos φ| covers the −x half evenly
        tan_t = sin_t / np.sqrt(1 - sin_t**2)
        expected.append(0.5 + 0.5 * np.mean(0.5 * tan_t * np.abs(cos_phi) < x0))
    expected = np.array(expected)
    for est in (sobol, iid):
        np.testing.assert_allclose(est.mean(axis=1), expected, atol=4 * est.std(axis=1).max() / 16 + 2e-3)
    assert iid.var(axis=1).sum() > 2.0 * sobol.var(axis=1).sum()


# ---------------------------------------------------------------------------------------------
# CUDA (numba's simulator) against the CPU


CUDA_SCRIPT = textwrap.dedent(
    """
    import json
    from tests.bake.test_integrate import bake, cornell_like

    scene, texels = cornell_like()
    out = {}
    for device in ("cpu", "cuda"):
        result = bake(scene, texels, samples=4, bounces=2, seed=3, ao_distance=0.3, device=device)
        out[device] = [result.lighting.tolist(), result.ao.tolist(), result.samples, result.device]
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_cuda_simulator_agrees_with_cpu() -> None:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(ROOT)}
    script = CUDA_SCRIPT
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    cpu, cuda = out["cpu"], out["cuda"]
    assert cpu[2] == cuda[2] == 4 and (cpu[3], cuda[3]) == ("cpu", "cuda")
    np.testing.assert_allclose(np.array(cuda[0]), np.array(cpu[0]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.array(cuda[1]), np.array(cpu[1]), rtol=0, atol=1e-7)
    assert np.array(cpu[0]).min() > 0


# ---------------------------------------------------------------------------------------------
# The whole chain: layout, texels, BVH, integrator


def test_bake_lighting_on_real_texels() -> None:
    from engine.bake.integrate import bake_lighting
    from engine.bake.texels import rasterize_texels
    from engine.bake.uv import lightmap_layout

    tilt = math.radians(40.0)
    m = np.eye(4)
    m[:3, :3] = [[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]]
    floor = mesh("floor", quad("f", (-2, -2, 0), (4, 0, 0), (0, 4, 0)))
    block = box("block", (-0.5, -0.5, 0.0), (0.5, 0.5, 1.0), inward=False)
    fan = MeshObject("fan", *quad("fan", (-2, -2, 0.5), (4, 0, 0), (0, 4, 0))[:2], animated=True)
    scene = Scene(objects=(floor, block, fan), lights=(Light("sun", "sun", power=4.0, transform=m),))
    texels = rasterize_texels(lightmap_layout(scene, atlas_size=512, texels_per_metre=20.0))
    progress: list[float] = []
    result = bake_lighting(scene, texels, IntegrateSettings(samples=8, bounces=0, device="cpu"),
                           progress=lambda stage, fraction, message: progress.append(fraction))
    assert result.lighting.shape == (texels.count, 3) and progress[-1] == 1.0
    lit = 4.0 / math.pi * math.cos(tilt)  # the floor and the block's top, where the sun reaches them
    on_floor = texels.object_index == 0
    x, y = texels.position[:, 0], texels.position[:, 1]
    # the sun travels along (0, sin 40°, −cos 40°): the block's shadow reaches tan 40° m beyond it towards +y
    shadow = on_floor & (np.abs(x) < 0.45) & (y > 0.55) & (y < 0.5 + 0.9 * math.tan(tilt))
    open_floor = on_floor & ((np.abs(x) > 0.6) | (y < -0.6))
    assert shadow.sum() > 20 and open_floor.sum() > 1000
    np.testing.assert_allclose(result.lighting[open_floor, 0], lit, rtol=1e-4)  # the animated fan casts nothing
    np.testing.assert_array_equal(result.lighting[shadow], 0.0)
    top = (texels.object_index == 1) & (texels.normal[:, 2] > 0.99)
    np.testing.assert_allclose(result.lighting[top, 0], lit, rtol=1e-4)
