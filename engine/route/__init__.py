"""Pipeline routing with reasons (numpy only: also runs inside Blender)."""

from engine.route.policy import (
    MODES,
    PIPELINES,
    ROUTES,
    ObjectRoute,
    Plan,
    RoutingPolicy,
    apply_overrides,
    plan_routes,
)
from engine.route.result import AnalysisResult, analyze_and_plan

__all__ = [
    "MODES",
    "PIPELINES",
    "ROUTES",
    "AnalysisResult",
    "ObjectRoute",
    "Plan",
    "RoutingPolicy",
    "analyze_and_plan",
    "apply_overrides",
    "plan_routes",
]
