"""Weighted consensus: hand-computed examples, silent and faulty peers, recruiting on disputes, and properties."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError, InputError
from engine.trust.consensus import (
    SPECIALISATION_BOOST,
    VALIDATION_THRESHOLD,
    Ballot,
    Verdict,
    decide,
    node_weight,
)


def ids(n: int) -> list[str]:
    return [f"{i:016x}" for i in range(1, n + 1)]


A, B, C, D, E = ids(5)


def test_defaults_are_the_designs() -> None:
    assert VALIDATION_THRESHOLD == 0.67 and SPECIALISATION_BOOST == 1.2


def test_node_weight() -> None:
    assert node_weight(0.8, 2.0) == pytest.approx(1.6)
    assert node_weight(0.8, 2.0, specialised=True) == pytest.approx(1.92)
    assert node_weight(0.8, 2.0, specialised=True, specialisation_boost=1.5) == pytest.approx(2.4)
    assert node_weight(1.0, 100.0, specialised=True, revoked=True) == 0.0


def test_hand_computed_round() -> None:
    ballots = [
        Ballot(A, "pass", 0.9, 1.0, frozenset({"bake"})),  # 0.9 × 1 × 1.2 = 1.08
        Ballot(B, "pass", 0.5, 2.0),  # 1.0
        Ballot(C, "fail", 0.6, 1.0, frozenset({"splat"})),  # 0.6 (not its kind)
        Ballot(D, "fail", 1.0, 10.0, frozenset({"bake"}), revoked=True),  # 0
    ]
    result = decide(ballots, job_kind="bake")
    weights = {v.node_id: v.weight for v in result.votes}
    assert weights == pytest.approx({A: 1.08, B: 1.0, C: 0.6, D: 0.0})
    assert {v.node_id: v.boost for v in result.votes} == {A: 1.2, B: 1.0, C: 1.0, D: 1.2}
    assert result.pass_weight == pytest.approx(2.08) and result.fail_weight == pytest.approx(0.6)
    assert result.total_weight == pytest.approx(2.68)
    assert result.score == pytest.approx(2.08 / 2.68)  # 0.776
    assert result.verdict is Verdict.VALIDATED and result.outcome == "pass" and result.accepted
    assert result.agreed(A) is True and result.agreed(C) is False and result.agreed(E) is None
    # the same votes on a splat job: C gets the boost, A does not: 1.9 / (1.9 + 0.72) = 0.725
    splat = decide(ballots, job_kind="splat")
    assert splat.score == pytest.approx(1.9 / 2.62) and splat.verdict is Verdict.VALIDATED
    # and without the revoked node's zero weight nothing changes
    assert decide(ballots[:3], job_kind="bake").score == pytest.approx(result.score)


def test_threshold_boundary_and_a_validated_fail() -> None:
    at = decide([Ballot(A, "pass", 0.67), Ballot(B, "fail", 1.0 - 0.67)])  # exactly 0.67 of the weight
    assert at.score == pytest.approx(0.67) and at.verdict is Verdict.VALIDATED
    below = decide([Ballot(A, "pass", 0.66), Ballot(B, "fail", 0.34)])
    assert below.verdict is Verdict.DISPUTED and below.outcome == "pass" and not below.accepted
    assert below.agreed(A) is None  # no validated outcome to agree with
    rejected = decide([Ballot(A, "fail", 0.9), Ballot(B, "fail", 0.8), Ballot(C, "pass", 0.1)])
    assert rejected.verdict is Verdict.VALIDATED and rejected.outcome == "fail" and not rejected.accepted
    assert rejected.score == pytest.approx(1.7 / 1.8)


def test_ties_no_weight_and_silence() -> None:
    tie = decide([Ballot(A, "pass", 0.5), Ballot(B, "fail", 0.5)])
    assert tie.verdict is Verdict.DISPUTED and tie.outcome is None and tie.score == 0.5
    revoked = decide([Ballot(A, "pass", 1.0, revoked=True), Ballot(B, "pass", 1.0, revoked=True)])
    assert revoked.verdict is Verdict.DISPUTED and revoked.total_weight == 0.0 and revoked.score == 0.0
    nobody = decide([])
    assert nobody.verdict is Verdict.DISPUTED and nobody.votes == ()
    # five asked, two silent: the three who answered decide alone, the silent add nothing to the total
    answered = [Ballot(A, "pass", 0.5), Ballot(B, "pass", 0.5), Ballot(C, "fail", 0.5)]
    result = decide(answered)
    assert result.total_weight == pytest.approx(1.5) and result.score == pytest.approx(2 / 3)
    assert result.verdict is Verdict.DISPUTED  # 0.667 < 0.67
    assert decide(answered[:2]).verdict is Verdict.VALIDATED  # a silent dissenter does not block


def test_faulty_nodes_are_excluded() -> None:
    result = decide([Ballot(A, "pass", 0.5), Ballot(B, "fail", 1.0), Ballot(C, "pass", 0.5)], faulty={B, E})
    assert [v.node_id for v in result.votes] == [A, C] and result.excluded == (B, E)
    assert result.verdict is Verdict.VALIDATED and result.score == 1.0


def test_needs_more_verifiers() -> None:
    split = decide([Ballot(A, "pass", 0.5), Ballot(B, "pass", 0.5), Ballot(C, "fail", 0.5), Ballot(D, "fail", 0.5)])
    # T = 2, L = 1, mean weight 0.5: ceil((0.67·2 − 1) / (0.33·0.5)) = ceil(2.06) = 3
    assert split.needs_more_verifiers(10) == 3
    assert split.needs_more_verifiers(6) == 2  # capped by the limit
    assert split.needs_more_verifiers(4) == 0  # limit reached
    assert split.needs_more_verifiers(10, asked=9) == 1  # five asked, four answered
    # three agreeing recruits would settle it, two would not
    settle = [Ballot(f"{i:016x}", "pass", 0.5) for i in range(100, 103)]
    assert decide([*_votes(split), *settle]).verdict is Verdict.VALIDATED
    assert decide([*_votes(split), *settle[:2]]).verdict is Verdict.DISPUTED
    validated = decide([Ballot(A, "pass", 0.5)])
    assert validated.needs_more_verifiers(10) == 0
    assert decide([]).needs_more_verifiers(3) == 1  # everyone silent: recruit
    with pytest.raises(ConfigError):
        split.needs_more_verifiers(-1)


def _votes(result: object) -> list[Ballot]:
    return [Ballot(v.node_id, v.verdict, v.reputation, v.capability) for v in result.votes]  # type: ignore[attr-defined]


def test_bad_input() -> None:
    with pytest.raises(InputError, match="two ballots"):
        decide([Ballot(A, "pass", 0.5), Ballot(A, "fail", 0.5)])
    with pytest.raises(ConfigError):
        decide([], threshold=0.5)
    with pytest.raises(ConfigError):
        decide([], specialisation_boost=0.9)
    for kwargs in ({"verdict": "maybe"}, {"reputation": 1.5}, {"reputation": float("nan")}, {"capability": 0.0}):
        with pytest.raises(InputError):
            Ballot(**{"node_id": A, "verdict": "pass", "reputation": 0.5, **kwargs})  # type: ignore[arg-type]


ballot_lists = st.lists(
    st.tuples(st.sampled_from(["pass", "fail"]), st.floats(0.0, 1.0), st.floats(0.01, 10.0), st.booleans(),
              st.booleans()),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(ballot_lists, st.floats(0.51, 1.0), st.randoms(use_true_random=False))
def test_validated_only_with_enough_weight_and_order_free(entries: list[tuple[str, float, float, bool, bool]],
                                                          threshold: float, rng: random.Random) -> None:
    ballots = [Ballot(f"{i:016x}", verdict, rep, cap, frozenset({"bake"}) if spec else frozenset(), revoked)
               for i, (verdict, rep, cap, spec, revoked) in enumerate(entries)]
    result = decide(ballots, job_kind="bake", threshold=threshold)
    total = sum((Fraction(v.weight) for v in result.votes), Fraction(0))
    by = {side: sum((Fraction(v.weight) for v in result.votes if v.verdict == side), Fraction(0))
          for side in ("pass", "fail")}
    assert all(v.weight == 0.0 for v in result.votes if v.revoked)
    assert all(v.weight >= 0.0 for v in result.votes)
    if result.verdict is Verdict.VALIDATED:
        assert total > 0 and max(by.values()) >= Fraction(threshold) * total
        assert by[result.outcome] > by["fail" if result.outcome == "pass" else "pass"]  # type: ignore[index]
    elif total > 0 and by["pass"] != by["fail"]:
        assert max(by.values()) < Fraction(threshold) * total
    shuffled = ballots[:]
    rng.shuffle(shuffled)
    assert decide(shuffled, job_kind="bake", threshold=threshold) == result
