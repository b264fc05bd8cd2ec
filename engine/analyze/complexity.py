"""The complexity score: one number in [0, 1] and the terms it is made of.

    complexity = Σ_k  w_k · t_k,        Σ_k w_k = 1,   every t_k in [0, 1]

| term k      | w_k  | t_k (clipped to [0, 1])                                              |
| ----------- | ---- | -------------------------------------------------------------------- |
| geometry    | 0.25 | log10(triangles / 10⁴) / 3  (10 k triangles → 0, 10 M → 1)            |
| thin        | 0.20 | max(alpha-cut triangle fraction, tiny-triangle fraction)             |
| depth       | 0.15 | log2(depth complexity / 2) / 4  (2 crossings → 0, 32 → 1)             |
| materials   | 0.15 | transparent/transmissive fraction + ½ · glossy (view-dependent) fraction |
| lighting    | 0.10 | (lights + emissive objects − 1) / 7  (one source → 0, eight → 1)      |
| dynamic     | 0.15 | fraction of triangles on animated objects                            |

Each term is reported with its value, weight, contribution and a sentence, so a user sees why
a scene scored what it did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.analyze.features import Features
from engine.scene.wire import register

WEIGHTS: dict[str, float] = {
    "geometry": 0.25,
    "thin": 0.20,
    "depth": 0.15,
    "materials": 0.15,
    "lighting": 0.10,
    "dynamic": 0.15,
}


@register
@dataclass(frozen=True)
class ComplexityTerm:
    """One term of the score: t in [0, 1], its weight, and weight × t."""

    name: str
    value: float
    weight: float
    contribution: float
    explanation: str


@register
@dataclass(frozen=True)
class Complexity:
    score: float
    terms: tuple[ComplexityTerm, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "score": round(self.score, 6),
            "terms": {
                t.name: {
                    "value": round(t.value, 6),
                    "weight": t.weight,
                    "contribution": round(t.contribution, 6),
                    "explanation": t.explanation,
                }
                for t in self.terms
            },
        }


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def complexity_score(features: Features) -> Complexity:
    """Score a scene's features (see the module docstring for the formula)."""
    f = features
    sources = f.light_count + f.emissive_objects
    raw = {
        "geometry": (
            _clip(math.log10(max(f.triangles, 1) / 1e4) / 3.0),
            f"{f.triangles:,} triangles ({f.unique_triangles:,} unique)",
        ),
        "thin": (
            _clip(max(f.alpha_cut_fraction, f.tiny_triangle_fraction)),
            f"{f.alpha_cut_fraction:.0%} of triangles alpha-cut, {f.tiny_triangle_fraction:.0%} tiny",
        ),
        "depth": (
            _clip(math.log2(max(f.depth_complexity, 1e-9) / 2.0) / 4.0),
            f"a line through the scene crosses {f.depth_complexity:.1f} surfaces on average",
        ),
        "materials": (
            _clip(f.transparent_fraction + 0.5 * f.glossy_fraction),
            f"{f.transparent_fraction:.0%} of triangles transparent, {f.glossy_fraction:.0%} glossy or metallic",
        ),
        "lighting": (
            _clip((sources - 1) / 7.0),
            f"{f.light_count} lights and {f.emissive_objects} emissive objects",
        ),
        "dynamic": (
            _clip(f.animated_fraction),
            f"{f.animated_objects} animated objects ({f.animated_fraction:.0%} of triangles)",
        ),
    }
    terms = tuple(
        ComplexityTerm(name, value, WEIGHTS[name], WEIGHTS[name] * value, text) for name, (value, text) in raw.items()
    )
    return Complexity(score=_clip(sum(t.contribution for t in terms)), terms=terms)
