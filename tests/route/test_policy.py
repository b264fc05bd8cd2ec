"""Routing decisions, their reasons, and the policy's thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.route import RoutingPolicy, analyze_and_plan
from engine.scene import Material, Scene
from engine.scene.demo import build_demo_scene
from tests.conftest import unit_box


@pytest.fixture(scope="module")
def demo() -> Scene:
    return build_demo_scene(leaf_count=200)


def test_demo_scene_exercises_all_three_routes(demo: Scene) -> None:
    plan = analyze_and_plan(demo).plan
    routes = {o.name: o.route for o in plan.objects}
    assert plan.pipeline == "hybrid"
    assert routes["Plant"] == "splat"
    assert routes["CeilingFan"] == "keep"
    assert {routes[n] for n in ("Room", "Table", "Sofa", "Shelf", "PlantPot")} == {"bake"}
    assert "alpha-cut" in " ".join(plan.route_of("Plant").reasons)
    assert "animated" in " ".join(plan.route_of("CeilingFan").reasons)
    assert all(o.reasons for o in plan.objects) and plan.reasons


def test_static_opaque_scene_bakes() -> None:
    plan = analyze_and_plan(Scene((unit_box("a"), unit_box("b")))).plan
    assert plan.pipeline == "bake"
    assert all(o.route == "bake" for o in plan.objects)


def test_foliage_only_scene_splats(leaf_material: Material) -> None:
    scene = Scene((unit_box("leaves"),), (leaf_material,))
    assert analyze_and_plan(scene).plan.pipeline == "splat"


def test_everything_animated_follows_the_original_rule() -> None:
    plan = analyze_and_plan(Scene((unit_box("a", animated=True),))).plan
    assert plan.pipeline == "splat"
    assert plan.objects[0].route == "keep"
    assert "original rule" in plan.reasons[0]


def test_hidden_objects_are_kept_as_they_are() -> None:
    plan = analyze_and_plan(Scene((unit_box("a"), unit_box("hidden", visible=False)))).plan
    assert plan.route_of("hidden").route == "keep" and plan.pipeline == "bake"


@pytest.mark.parametrize(
    ("material", "reason"),
    [
        (Material("glass", transmission=1.0, roughness=0.5), "transmissive"),
        (Material("chrome", metallic=1.0, roughness=0.1), "glossy"),
    ],
)
def test_appearance_that_lightmaps_cannot_hold_splats(material: Material, reason: str) -> None:
    plan = analyze_and_plan(Scene((unit_box("thing"),), (material,))).plan
    assert plan.objects[0].route == "splat"
    assert reason in plan.objects[0].reasons[0]


def test_dense_layers_splat_by_depth_complexity() -> None:
    box = unit_box()
    # 20 stacked slabs inside one bounding box: a line crosses ~40 surfaces
    positions = np.concatenate([box.positions * (1, 1, 0.01) + (0, 0, k * 0.05) for k in range(20)])
    triangles = np.concatenate([box.triangles + 8 * k for k in range(20)])
    from engine.scene import MeshObject

    plan = analyze_and_plan(Scene((MeshObject("pages", positions, triangles),))).plan
    assert plan.objects[0].route == "splat"
    assert "dense layered geometry" in plan.objects[0].reasons[0]


def test_thresholds_are_overridable(demo: Scene) -> None:
    policy = RoutingPolicy().with_overrides({"keep_animated": False, "splat_alpha_cut_fraction": 1.0})
    plan = analyze_and_plan(demo, policy).plan
    assert plan.route_of("CeilingFan").route != "keep"
    # the plant's cards are 100 % alpha-cut, which still meets a threshold of 1.0
    assert plan.route_of("Plant").route == "splat"


def test_scene_mode_applies_the_original_rule_to_the_whole_scene(demo: Scene) -> None:
    plan = analyze_and_plan(demo, RoutingPolicy(mode="scene")).plan
    assert plan.mode == "scene"
    assert plan.pipeline == "splat"  # dynamic content → splat
    assert plan.route_of("CeilingFan").route == "keep"
    assert plan.route_of("Table").route == "splat"
    static = analyze_and_plan(Scene((unit_box(),)), RoutingPolicy(mode="scene")).plan
    assert static.pipeline == "bake" and "simple lighting" in static.reasons[0]


@pytest.mark.parametrize(
    "overrides",
    [{"no_such_threshold": 1}, {"splat_alpha_cut_fraction": 1.5}, {"mode": "galaxy"},
     {"bake_complexity": 0.9, "splat_complexity": 0.1}, {"splat_depth_complexity": 0}],
)
def test_bad_thresholds_are_clear_errors(overrides: dict) -> None:
    with pytest.raises(ConfigError, match="routing policy"):
        RoutingPolicy().with_overrides(overrides)


def test_plan_dict_matches_the_cli_contract(demo: Scene) -> None:
    data = analyze_and_plan(demo).to_dict()
    assert data["plan"]["pipeline"] in {"bake", "splat", "hybrid"}
    for entry in data["plan"]["objects"].values():
        assert entry["route"] in {"bake", "splat", "keep"} and entry["reasons"]
    assert 0.0 <= data["complexity"] <= 1.0
    assert set(data["timings_ms"]) >= {"analyze", "route"}


@pytest.mark.parametrize("form", ["msgpack", "json"])
def test_analysis_types_round_trip_through_the_wire(demo: Scene, form: str) -> None:
    from engine.scene import wire

    result = analyze_and_plan(demo, RoutingPolicy(mode="scene"))
    back = wire.decode(wire.encode(result, form=form))
    assert back.to_dict() == result.to_dict()
    assert back.plan == result.plan and back.features == result.features
    policy = RoutingPolicy().with_overrides({"splat_depth_complexity": 9.0})
    assert wire.decode(wire.encode(policy, form=form)) == policy


def test_artist_overrides_change_routes_and_pipeline(demo: Scene) -> None:
    result = analyze_and_plan(demo, overrides={"Plant": "bake", "CeilingFan": "keep"})
    plan = result.plan
    assert plan.route_of("Plant").route == "bake" and "set by the artist" in plan.route_of("Plant").reasons[0]
    assert plan.pipeline == "bake"
    assert plan.route_of("CeilingFan").reasons[0].startswith("animated")  # unchanged: same route
    with pytest.raises(ConfigError, match="'Nope'"):
        analyze_and_plan(demo, overrides={"Nope": "bake"})
    with pytest.raises(ConfigError, match="'fly'"):
        analyze_and_plan(demo, overrides={"Plant": "fly"})
