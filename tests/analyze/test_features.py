"""Scene features measured on scenes whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analyze import AnalysisConfig, analyze_scene, complexity_score
from engine.analyze.features import column_bounds
from engine.errors import SceneError
from engine.scene import Light, Material, MeshObject, Scene, Texture
from tests.conftest import grid_mesh, unit_box


def translation(x: float, y: float, z: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = (x, y, z)
    return m


def test_closed_box_area_bounds_and_depth_complexity() -> None:
    features = analyze_scene(Scene((unit_box(),)))
    box = features.objects[0]
    assert box.surface_area == pytest.approx(6.0)
    assert box.bbox_min == (0.0, 0.0, 0.0) and box.bbox_max == (1.0, 1.0, 1.0)
    # a line through a closed convex surface crosses it twice
    assert box.depth_complexity == pytest.approx(2.0)
    assert features.bounding_size == pytest.approx(np.sqrt(3.0))
    assert features.triangles == 12 and features.vertices == 8
    assert not features.sampled


def test_instances_are_measured_once_and_scaled_by_their_transform() -> None:
    base = unit_box("a", instance_of="cube")
    scaled = MeshObject("b", base.positions, base.triangles, transform=np.diag([2.0, 2.0, 2.0, 1.0]) @ translation(3, 0, 0),
                        instance_of="cube")
    stretched = MeshObject("c", base.positions, base.triangles, transform=np.diag([2.0, 1.0, 1.0, 1.0]),
                           instance_of="cube")
    features = analyze_scene(Scene((base, scaled, stretched)))
    areas = {o.name: o.surface_area for o in features.objects}
    assert areas["a"] == pytest.approx(6.0)
    assert areas["b"] == pytest.approx(24.0)  # uniform scale 2: area × 4
    assert areas["c"] == pytest.approx(10.0)  # 2×1 faces ×4 + 1×1 faces ×2
    assert features.objects[1].bbox_min == pytest.approx((6.0, 0.0, 0.0))
    assert features.triangles == 36 and features.unique_triangles == 12
    assert features.instanced_objects == 3


def test_large_meshes_are_sampled_with_an_honest_error_estimate() -> None:
    positions, triangles = grid_mesh(300)
    rng = np.random.default_rng(1)
    bumpy = positions.copy()
    bumpy[:, 2] = rng.normal(scale=0.01, size=len(bumpy))  # unequal triangle areas
    obj = MeshObject("terrain", bumpy, triangles)
    exact = analyze_scene(Scene((obj,)), AnalysisConfig(sample_triangles=10**7)).surface_area
    estimate = analyze_scene(Scene((obj,)), AnalysisConfig(sample_triangles=4096))
    assert estimate.sampled and not analyze_scene(Scene((obj,)), AnalysisConfig(sample_triangles=10**7)).sampled
    assert estimate.surface_area_rel_error > 0
    assert abs(estimate.surface_area - exact) / exact < 4 * estimate.surface_area_rel_error


def test_alpha_cut_transparent_glossy_and_emissive_fractions(leaf_material: Material) -> None:
    opaque_texture = Texture("solid", np.full((4, 4, 4), 255, np.uint8))
    materials = (
        Material("wall"),
        leaf_material,
        Material("masked_but_solid", base_color_texture=opaque_texture, alpha_mode="MASK"),
        Material("glass", transmission=1.0, roughness=0.05),
        Material("lamp", emission_color=(1.0, 0.9, 0.8), emission_strength=5.0),
    )
    box = unit_box("mixed", material_indices=np.array([0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4], np.int32))
    features = analyze_scene(Scene((box,), materials))
    obj = features.objects[0]
    assert obj.alpha_cut_fraction == pytest.approx(4 / 12)  # only the leaf has real holes
    assert obj.transparent_fraction == pytest.approx(2 / 12)
    assert obj.glossy_fraction == pytest.approx(2 / 12)  # the glass is smooth
    assert obj.emissive_fraction == pytest.approx(2 / 12)
    assert obj.emissive_area == pytest.approx(1.0)  # one face of the unit cube
    assert features.alpha_cut_materials == 1 and features.emissive_materials == 1
    assert features.transmissive_materials == 1 and features.emissive_objects == 1


def test_tiny_triangles_are_relative_to_the_scene_size() -> None:
    positions, triangles = grid_mesh(50)
    speck = MeshObject("speck", positions * 1e-3, triangles)  # 1 mm across, triangles ~20 µm
    room = MeshObject("room", unit_box().positions * 10, unit_box().triangles)
    features = analyze_scene(Scene((room, speck)))
    by_name = {o.name: o for o in features.objects}
    assert by_name["speck"].tiny_triangle_fraction == 1.0
    assert by_name["room"].tiny_triangle_fraction == 0.0
    alone = analyze_scene(Scene((speck,)))  # on its own the speck is the whole scene: nothing tiny
    assert alone.objects[0].tiny_triangle_fraction == 0.0


def test_uv_readiness_and_overlap() -> None:
    positions, triangles = grid_mesh(30)
    uv = positions[:, :2].copy()
    flat = MeshObject("flat", positions, triangles, uvs={"UVMap": uv})
    both = np.r_[positions, positions + np.float32([0, 0, 1])]
    two = np.r_[triangles, triangles + len(positions)]
    stacked = MeshObject("stacked", both, two, uvs={"UVMap": np.r_[uv, uv]})
    quarter = MeshObject("quarter", both, two, uvs={"UVMap": np.r_[uv, uv * 0.5]})
    outside = MeshObject("outside", positions, triangles, uvs={"UVMap": uv * 3})
    no_uv = MeshObject("no_uv", positions, triangles)
    lightmapped = MeshObject("lightmapped", both, two, uvs={"UVMap": np.r_[uv, uv], "Lightmap": np.r_[uv * 0.5, uv * 0.5 + 0.5]},
                             lightmap_uv="Lightmap")
    features = analyze_scene(Scene((flat, stacked, quarter, outside, no_uv, lightmapped)))
    f = {o.name: o for o in features.objects}
    assert f["flat"].uv_overlap == 0.0 and f["flat"].lightmap_ready
    assert f["stacked"].uv_overlap == pytest.approx(1.0) and not f["stacked"].lightmap_ready
    # the half-size copy lies on a quarter of the full one: (0.25 + 0.25) / 1.25 of the area
    assert f["quarter"].uv_overlap == pytest.approx(0.4, abs=0.03)
    assert not f["outside"].uv_in_unit_square and not f["outside"].lightmap_ready
    assert f["no_uv"].uv_set is None and f["no_uv"].uv_overlap is None
    assert f["lightmapped"].uv_set == "Lightmap" and f["lightmapped"].lightmap_ready
    assert features.lightmap_uv_objects == 1 and features.uv_objects == 5


def test_lights_animation_and_units() -> None:
    lights = (
        Light("bulb", "point", power=60.0),
        Light("spot", "spot", power=100.0),
        Light("sun", "sun", power=3.0),
        Light("panel", "area", power=200.0, size=1.0),
    )
    fan = unit_box("fan", animated=True)
    scene = Scene((unit_box("a"), fan), lights=lights, meters_per_unit=0.001, unit_name="mm")
    features = analyze_scene(scene)
    assert features.light_types == {"point": 1, "spot": 1, "sun": 1, "area": 1}
    assert features.light_power_watts == pytest.approx(360.0)
    assert features.sun_irradiance == pytest.approx(3.0)
    assert features.animated_objects == 1 and features.animated_fraction == pytest.approx(0.5)
    assert features.bounding_size_m == pytest.approx(np.sqrt(3) * 1e-3)
    assert analyze_scene(Scene((unit_box(),), meters_per_unit=None, unit_name="unknown")).bounding_size_m is None


def test_empty_scene_is_a_clear_error() -> None:
    with pytest.raises(SceneError, match="no triangles"):
        analyze_scene(Scene((), source="empty.obj"))


def test_column_bounds_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 63, 64, 65, 1000):
        array = rng.normal(size=(n, 3)).astype(np.float32)
        lo, hi = column_bounds(array)
        np.testing.assert_array_equal(lo, array.min(axis=0))
        np.testing.assert_array_equal(hi, array.max(axis=0))


def test_features_to_dict_is_json_ready() -> None:
    import json

    features = analyze_scene(Scene((unit_box(),)))
    data = json.loads(json.dumps(features.to_dict()))
    assert data["objects"]["box"]["surface_area"] == pytest.approx(6.0)
    assert data["objects"]["box"]["lightmap_ready"] is False


def test_complexity_terms_sum_to_the_score(leaf_material: Material) -> None:
    from engine.analyze import WEIGHTS

    assert sum(WEIGHTS.values()) == pytest.approx(1.0)
    positions, triangles = grid_mesh(300)  # ~178k triangles
    scene = Scene((MeshObject("g", positions, triangles), unit_box("fan", animated=True)))
    result = complexity_score(analyze_scene(scene))
    assert result.score == pytest.approx(sum(t.contribution for t in result.terms))
    terms = {t.name: t for t in result.terms}
    assert terms["geometry"].value == pytest.approx(np.log10(scene.n_triangles / 1e4) / 3)
    assert 0 < terms["dynamic"].value < 0.01
    assert all(0.0 <= t.value <= 1.0 for t in result.terms)
    assert all(t.explanation for t in result.terms)


def test_complexity_rises_with_foliage_and_animation(leaf_material: Material) -> None:
    plain = complexity_score(analyze_scene(Scene((unit_box(),)))).score
    foliage = Scene((unit_box(), unit_box("leaves", material_indices=np.ones(12, np.int32))),
                    (Material("wall"), leaf_material))
    leafy = complexity_score(analyze_scene(foliage)).score
    animated = complexity_score(analyze_scene(Scene((unit_box(animated=True),)))).score
    assert plain < leafy and plain < animated
