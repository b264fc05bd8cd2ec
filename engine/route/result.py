"""Analyze and route in one call, timed: what `optimizer analyze` prints and the service returns."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from engine.analyze import AnalysisConfig, Complexity, Features, analyze_scene, complexity_score
from engine.route.policy import Plan, RoutingPolicy, apply_overrides, plan_routes
from engine.scene.model import Scene
from engine.scene.wire import register


@register
@dataclass(frozen=True)
class AnalysisResult:
    """Features, complexity and plan of a scene, with how long each step took."""

    scene_name: str
    features: Features
    complexity: Complexity
    plan: Plan
    timings_ms: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of `optimizer analyze --json`."""
        return {
            "scene": self.scene_name,
            "features": self.features.to_dict(),
            "complexity": round(self.complexity.score, 6),
            "complexity_terms": self.complexity.to_dict()["terms"],
            "plan": self.plan.to_dict(),
            "warnings": list(self.features.warnings),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }


def analyze_and_plan(
    scene: Scene, policy: RoutingPolicy | None = None, config: AnalysisConfig | None = None,
    overrides: dict[str, str] | None = None,
) -> AnalysisResult:
    """Analyze a scene and route it (with the artist's route ``overrides``), timing both steps."""
    start = time.perf_counter()
    features = analyze_scene(scene, config)
    complexity = complexity_score(features)
    analyzed = time.perf_counter()
    plan = apply_overrides(plan_routes(features, complexity, policy), overrides or {})
    routed = time.perf_counter()
    timings = {"analyze": (analyzed - start) * 1e3, "route": (routed - analyzed) * 1e3}
    return AnalysisResult(scene.name, features, complexity, plan, timings)
