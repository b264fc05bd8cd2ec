"""Scene analysis: features and the complexity score (numpy only: also runs inside Blender)."""

from engine.analyze.complexity import WEIGHTS, Complexity, ComplexityTerm, complexity_score
from engine.analyze.features import AnalysisConfig, Features, ObjectFeatures, analyze_scene

__all__ = [
    "WEIGHTS",
    "AnalysisConfig",
    "Complexity",
    "ComplexityTerm",
    "Features",
    "ObjectFeatures",
    "analyze_scene",
    "complexity_score",
]
