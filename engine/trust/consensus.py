"""Weighted consensus of peer votes, as in the original design. Pure functions, no I/O.

* Node weight = reputation × compute capability × specialisation boost. The boost is
  ``specialisation_boost`` (default 1.2) when the node specialises in the job's kind (``bake``,
  ``splat``, ...), else 1. A revoked node weighs 0, whatever its other numbers.
* Consensus score = the largest total weight behind one verdict / the total weight of the votes
  received. Only votes that arrived (and passed ``engine.trust.votes``) count: a silent peer
  (no vote by the deadline) is simply absent, adding nothing to either side nor to the total, so
  silence can neither block nor sway a verdict. Votes of nodes proven faulty (equivocation) are
  excluded the same way and listed in ``excluded``.
* VALIDATED when the score ≥ ``threshold`` (default 0.67), else DISPUTED. VALIDATED means the
  peers agree: on "pass" (the result is accepted) or on "fail" (it is rejected). A tie, or no
  weight at all (every vote revoked, or none received), is DISPUTED.
* A dispute recruits more verifiers, up to a limit: ``ConsensusResult.needs_more_verifiers``.

Weights are summed and compared exactly (as fractions of the float weights), so the verdict does
not depend on the order of the votes and no rounding can lift a score over the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any

from engine.errors import ConfigError, InputError

VALIDATION_THRESHOLD = 0.67
SPECIALISATION_BOOST = 1.2
VERDICTS = ("pass", "fail")


class Verdict(StrEnum):
    """Whether the peers reached consensus."""

    VALIDATED = "validated"
    DISPUTED = "disputed"


@dataclass(frozen=True)
class Ballot:
    """One received vote with what consensus needs to know about its node."""

    node_id: str
    verdict: str  # "pass" | "fail"
    reputation: float  # [0, 1]
    capability: float = 1.0  # > 0
    specialisations: frozenset[str] = field(default_factory=frozenset)
    revoked: bool = False

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise InputError(f"verdict {self.verdict!r} is not 'pass' or 'fail'", where=f"node {self.node_id}")
        if not (math.isfinite(self.reputation) and 0.0 <= self.reputation <= 1.0):
            raise InputError(f"reputation {self.reputation!r} is outside [0, 1]", where=f"node {self.node_id}")
        if not (math.isfinite(self.capability) and self.capability > 0.0):
            raise InputError(f"capability {self.capability!r} is not a positive number", where=f"node {self.node_id}")
        object.__setattr__(self, "specialisations", frozenset(self.specialisations))


def node_weight(reputation: float, capability: float, *, specialised: bool = False, revoked: bool = False,
                specialisation_boost: float = SPECIALISATION_BOOST) -> float:
    """reputation × capability × (boost if specialised else 1); 0 for a revoked node."""
    if revoked:
        return 0.0
    return reputation * capability * (specialisation_boost if specialised else 1.0)


@dataclass(frozen=True)
class WeightedVote:
    """A counted vote and the weight it carried."""

    node_id: str
    verdict: str
    weight: float
    reputation: float
    capability: float
    boost: float  # the specialisation factor applied (1.0 when none)
    revoked: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"node_id": self.node_id, "verdict": self.verdict, "weight": self.weight,
                "reputation": self.reputation, "capability": self.capability, "boost": self.boost,
                "revoked": self.revoked}


@dataclass(frozen=True)
class ConsensusResult:
    """The outcome of one round of votes."""

    votes: tuple[WeightedVote, ...]
    pass_weight: float
    fail_weight: float
    total_weight: float
    score: float  # largest verdict weight / total weight; 0 when the total is 0
    outcome: str | None  # the verdict with the most weight ("pass" | "fail"), None on a tie or no weight
    verdict: Verdict
    threshold: float
    excluded: tuple[str, ...] = ()  # faulty nodes whose votes were not counted
    job_kind: str | None = None

    @property
    def accepted(self) -> bool:
        """Whether the peers validated the result as good (VALIDATED on "pass")."""
        return self.verdict is Verdict.VALIDATED and self.outcome == "pass"

    def agreed(self, node_id: str) -> bool | None:
        """Whether this node voted the validated outcome; None when it did not vote or nothing was validated."""
        if self.verdict is not Verdict.VALIDATED:
            return None
        for vote in self.votes:
            if vote.node_id == node_id:
                return vote.verdict == self.outcome
        return None

    def needs_more_verifiers(self, limit: int, *, asked: int | None = None) -> int:
        """How many more verifiers to recruit (0: none) so that the verification can still settle.

        0 when VALIDATED, or when ``asked`` (verifiers asked so far, silent ones included; default:
        the votes counted plus the excluded ones) has reached ``limit``. Otherwise the number of
        new verifiers that, each as heavy as the average counted vote and all agreeing with the
        current majority, would lift the score to the threshold: ceil((θ·T − L) / ((1 − θ)·w̄)),
        at least 1, and never past ``limit``.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"the verifier limit must be a non-negative integer, not {limit!r}",
                              where="needs_more_verifiers")
        if self.verdict is Verdict.VALIDATED:
            return 0
        asked = len(self.votes) + len(self.excluded) if asked is None else asked
        room = limit - asked
        if room <= 0:
            return 0
        weights = [v.weight for v in self.votes if v.weight > 0.0]
        mean = math.fsum(weights) / len(weights) if weights else 1.0
        leading = max(self.pass_weight, self.fail_weight)
        needed = math.ceil((self.threshold * self.total_weight - leading) / ((1.0 - self.threshold) * mean)
                           - 1e-9) if self.threshold < 1.0 else room
        return min(room, max(1, needed))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"votes": [v.to_dict() for v in self.votes], "pass_weight": self.pass_weight,
                "fail_weight": self.fail_weight, "total_weight": self.total_weight, "score": self.score,
                "outcome": self.outcome, "verdict": self.verdict.value, "accepted": self.accepted,
                "threshold": self.threshold, "excluded": list(self.excluded), "job_kind": self.job_kind}


def decide(ballots: Iterable[Ballot], *, job_kind: str | None = None, threshold: float = VALIDATION_THRESHOLD,
           specialisation_boost: float = SPECIALISATION_BOOST, faulty: Iterable[str] = ()) -> ConsensusResult:
    """Weigh the received ballots and decide (see the module docstring). One ballot per node."""
    if not (math.isfinite(threshold) and 0.5 < threshold <= 1.0):
        raise ConfigError(f"the consensus threshold must be in (0.5, 1], not {threshold!r}", where="threshold",
                          hint="at 0.5 or below both verdicts of a tie would pass it")
    if not (math.isfinite(specialisation_boost) and specialisation_boost >= 1.0):
        raise ConfigError(f"the specialisation boost must be a number ≥ 1, not {specialisation_boost!r}",
                          where="specialisation_boost")
    excluded = set(faulty)
    votes: list[WeightedVote] = []
    seen: set[str] = set()
    for ballot in ballots:
        if ballot.node_id in seen:
            raise InputError("two ballots from one node", where=f"node {ballot.node_id}",
                             hint="check the votes with engine.trust.votes first: it keeps one per node")
        seen.add(ballot.node_id)
        if ballot.node_id in excluded:
            continue
        specialised = job_kind is not None and job_kind in ballot.specialisations
        boost = specialisation_boost if specialised else 1.0
        weight = node_weight(ballot.reputation, ballot.capability, specialised=specialised, revoked=ballot.revoked,
                             specialisation_boost=specialisation_boost)
        votes.append(WeightedVote(ballot.node_id, ballot.verdict, weight, ballot.reputation, ballot.capability,
                                  boost, ballot.revoked))
    # Exact sums and comparison (each float weight taken exactly): no rounding can tip a verdict.
    exact_pass = sum((Fraction(v.weight) for v in votes if v.verdict == "pass"), Fraction(0))
    exact_fail = sum((Fraction(v.weight) for v in votes if v.verdict == "fail"), Fraction(0))
    exact_total = exact_pass + exact_fail
    leading = max(exact_pass, exact_fail)
    outcome = None if exact_pass == exact_fail else ("pass" if exact_pass > exact_fail else "fail")
    validated = outcome is not None and exact_total > 0 and leading >= Fraction(threshold) * exact_total
    score = float(leading / exact_total) if exact_total > 0 else 0.0
    return ConsensusResult(tuple(sorted(votes, key=lambda v: v.node_id)), float(exact_pass), float(exact_fail),
                           float(exact_total), score, outcome, Verdict.VALIDATED if validated else Verdict.DISPUTED,
                           threshold, tuple(sorted(excluded)), job_kind)


__all__ = [
    "SPECIALISATION_BOOST",
    "VALIDATION_THRESHOLD",
    "Ballot",
    "ConsensusResult",
    "Verdict",
    "WeightedVote",
    "decide",
    "node_weight",
]
