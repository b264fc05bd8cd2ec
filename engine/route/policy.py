"""Pipeline routing: which objects are baked, which are splatted, which stay live, and why.

The original design's rule is the default, applied per object so that one scene can mix:

* animated objects stay live ("keep"): neither lightmaps nor a static splat can follow them;
* static objects with complex geometry or appearance (alpha-cut foliage, dense thin layers,
  swarms of tiny triangles, refraction/blending, mostly view-dependent shading) are splatted;
* the remaining static, opaque, UV-able objects are baked.

The scene's pipeline follows from its objects: only baking → "bake", only splatting →
"splat", both → "hybrid". A scene with nothing static to process follows the original rule
(dynamic content → "splat"). ``RoutingPolicy(mode="scene")`` applies the original rule to the
scene as a whole instead: complexity ≥ ``splat_complexity`` or dynamic content → splat,
complexity ≤ ``bake_complexity`` with simple lighting → bake, otherwise per-object hybrid.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from engine.analyze.complexity import Complexity
from engine.analyze.features import Features, ObjectFeatures
from engine.errors import ConfigError
from engine.scene.wire import register

ROUTES = ("bake", "splat", "keep")
PIPELINES = ("bake", "splat", "hybrid")
MODES = ("object", "scene")


@register
@dataclass(frozen=True)
class RoutingPolicy:
    """Thresholds of the routing rule, in one place. Override any with ``with_overrides``."""

    mode: str = "object"
    splat_alpha_cut_fraction: float = 0.25  # share of an object's triangles with alpha-cut materials
    splat_depth_complexity: float = 6.0  # mean surface crossings through the object's bounds
    splat_tiny_fraction: float = 0.5  # share of triangles below the tiny-triangle size
    splat_transparent_fraction: float = 0.5  # share of blended / transmissive triangles
    splat_glossy_fraction: float = 0.75  # share of view-dependent (glossy, metallic) triangles
    keep_animated: bool = True
    bake_complexity: float = 0.35  # scene mode: at or below this (and simple lighting) → bake
    splat_complexity: float = 0.65  # scene mode: at or above this → splat
    simple_lighting_sources: int = 4  # scene mode: lights + emissive objects for "simple"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"routing mode {self.mode!r} is unknown", where="routing policy",
                              hint=f"use one of {', '.join(MODES)}")
        for f in fields(self):
            value = getattr(self, f.name)
            bounded = f.name.endswith("fraction") or (
                f.name.endswith("complexity") and f.name != "splat_depth_complexity"
            )
            if bounded and (not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0):
                raise ConfigError(f"{f.name} = {value!r} must be a number in [0, 1]", where="routing policy")
        if not self.splat_depth_complexity > 0:
            raise ConfigError("splat_depth_complexity must be above 0", where="routing policy")
        if self.bake_complexity > self.splat_complexity:
            raise ConfigError("bake_complexity must not exceed splat_complexity", where="routing policy")

    def with_overrides(self, overrides: dict[str, Any]) -> RoutingPolicy:
        """A copy with some thresholds changed; unknown names are an error."""
        known = {f.name: f.type for f in fields(self)}
        for key in overrides:
            if key not in known:
                raise ConfigError(f"unknown routing threshold {key!r}", where="routing policy",
                                  hint=f"known: {', '.join(known)}")
        return replace(self, **overrides)


@register
@dataclass(frozen=True)
class ObjectRoute:
    name: str
    route: str
    reasons: tuple[str, ...]


@register
@dataclass(frozen=True)
class Plan:
    """The routing decision: the scene's pipeline, each object's route, and why."""

    pipeline: str
    objects: tuple[ObjectRoute, ...]
    reasons: tuple[str, ...]
    complexity: float
    mode: str = "object"

    def route_of(self, name: str) -> ObjectRoute:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "mode": self.mode,
            "complexity": round(self.complexity, 6),
            "reasons": list(self.reasons),
            "objects": {o.name: {"route": o.route, "reasons": list(o.reasons)} for o in self.objects},
        }


def _object_route(obj: ObjectFeatures, policy: RoutingPolicy) -> ObjectRoute:
    """Route one object by the per-object rule."""
    if obj.animated and policy.keep_animated:
        return ObjectRoute(obj.name, "keep", ("animated: stays live (lightmaps and static splats cannot follow it)",))
    if not obj.visible:
        return ObjectRoute(obj.name, "keep", ("hidden: not processed, kept as it is",))
    splat: list[str] = []
    if obj.alpha_cut_fraction >= policy.splat_alpha_cut_fraction:
        splat.append(f"alpha-cut materials on {obj.alpha_cut_fraction:.0%} of its triangles "
                     f"(≥ {policy.splat_alpha_cut_fraction:.0%}): thin cut-outs bake poorly")
    if obj.depth_complexity >= policy.splat_depth_complexity:
        splat.append(f"dense layered geometry: {obj.depth_complexity:.1f} surfaces per line through it "
                     f"(≥ {policy.splat_depth_complexity:g})")
    if obj.tiny_triangle_fraction >= policy.splat_tiny_fraction:
        splat.append(f"{obj.tiny_triangle_fraction:.0%} tiny triangles (≥ {policy.splat_tiny_fraction:.0%}): "
                     "too fine for lightmap texels")
    if obj.transparent_fraction >= policy.splat_transparent_fraction:
        splat.append(f"{obj.transparent_fraction:.0%} of triangles blended or transmissive "
                     f"(≥ {policy.splat_transparent_fraction:.0%}): lightmaps hold no refraction")
    if obj.glossy_fraction >= policy.splat_glossy_fraction:
        splat.append(f"{obj.glossy_fraction:.0%} of triangles glossy or metallic "
                     f"(≥ {policy.splat_glossy_fraction:.0%}): view-dependent shading")
    if splat:
        return ObjectRoute(obj.name, "splat", tuple(splat))
    reasons = ["static and opaque"]
    if obj.emissive_fraction > 0:
        reasons.append("emissive: a light source of the bake")
    if obj.lightmap_ready:
        reasons.append(f"has a usable lightmap UV ('{obj.uv_set}')")
    elif obj.uv_set is None:
        reasons.append("no UVs yet: a lightmap UV will be generated")
    elif not obj.uv_in_unit_square:
        reasons.append(f"UV set '{obj.uv_set}' leaves [0, 1]: a lightmap UV will be generated")
    else:
        reasons.append(f"UV set '{obj.uv_set}' overlaps itself (~{(obj.uv_overlap or 0):.0%}): "
                       "a lightmap UV will be generated")
    return ObjectRoute(obj.name, "bake", tuple(reasons))


def _summary(routes: list[ObjectRoute]) -> str:
    counts = {r: sum(o.route == r for o in routes) for r in ROUTES}
    return f"{counts['bake']} objects bake, {counts['splat']} splat, {counts['keep']} stay live"


def plan_routes(features: Features, complexity: Complexity, policy: RoutingPolicy | None = None) -> Plan:
    """Decide the pipeline for a scene and a route for each object, with reasons."""
    policy = policy or RoutingPolicy()
    routes = [_object_route(obj, policy) for obj in features.objects]
    score = complexity.score
    if policy.mode == "scene":
        return _scene_mode(features, score, routes, policy)
    processed = {o.route for o in routes if o.route != "keep"}
    if processed == {"bake"}:
        pipeline = "bake"
        why = "every static object is opaque with simple geometry: baking covers the scene"
    elif processed == {"splat"}:
        pipeline = "splat"
        why = "every static object has complex geometry or appearance: splatting covers the scene"
    elif processed:
        pipeline = "hybrid"
        why = "static objects split between baking and splatting"
    else:
        pipeline = "splat"
        why = "nothing static to bake; dynamic content routes to splatting (original rule), animated objects stay live"
    return Plan(pipeline, tuple(routes), (why, _summary(routes), f"complexity {score:.2f}"), score, policy.mode)


def _scene_mode(features: Features, score: float, routes: list[ObjectRoute], policy: RoutingPolicy) -> Plan:
    """The original rule applied to the whole scene."""
    sources = features.light_count + features.emissive_objects
    dynamic = features.animated_objects > 0
    static_route = None
    if score >= policy.splat_complexity or dynamic:
        pipeline, static_route = "splat", "splat"
        why = (f"complexity {score:.2f} ≥ {policy.splat_complexity}" if score >= policy.splat_complexity
               else f"dynamic content ({features.animated_objects} animated objects)") + ": splat (original rule)"
    elif score <= policy.bake_complexity and sources <= policy.simple_lighting_sources:
        pipeline, static_route = "bake", "bake"
        why = (f"complexity {score:.2f} ≤ {policy.bake_complexity} with simple lighting "
               f"({sources} sources): bake (original rule)")
    else:
        processed = {o.route for o in routes if o.route != "keep"}
        pipeline = "hybrid" if len(processed) != 1 else processed.pop()
        why = f"complexity {score:.2f} between the bake and splat thresholds: per-object hybrid (original rule)"
    if static_route is not None:
        routes = [
            o if o.route == "keep" or o.route == static_route
            else ObjectRoute(o.name, static_route, (f"scene routed to {static_route}", *o.reasons))
            for o in routes
        ]
    return Plan(pipeline, tuple(routes), (why, _summary(routes)), score, "scene")


def apply_overrides(plan: Plan, overrides: dict[str, str]) -> Plan:
    """The plan with some objects' routes set by the artist; the pipeline follows again.

    ``overrides`` maps object names to bake | splat | keep. An unknown object or route is a
    ConfigError naming it.
    """
    if not overrides:
        return plan
    names = {o.name for o in plan.objects}
    for name, route in overrides.items():
        if name not in names:
            raise ConfigError(f"route override names object '{name}', which the scene does not have",
                              where="routes")
        if route not in ROUTES:
            raise ConfigError(f"route '{route}' for object '{name}' is not one of {', '.join(ROUTES)}",
                              where="routes")
    routes = [
        ObjectRoute(o.name, overrides[o.name], (f"set by the artist (analysis said {o.route})",))
        if o.name in overrides and overrides[o.name] != o.route else o
        for o in plan.objects
    ]
    processed = {o.route for o in routes if o.route != "keep"}
    pipeline = "hybrid" if len(processed) > 1 else (processed.pop() if processed else "splat")
    why = f"{len(overrides)} route(s) set by the artist"
    return Plan(pipeline, tuple(routes), (why, _summary(routes), *plan.reasons[-1:]), plan.complexity, plan.mode)
