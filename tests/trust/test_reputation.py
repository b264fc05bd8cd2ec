"""Reputation: the design's rule, revocation and restore, persistence, concurrent updates, a simulated liar
caught with the real classes, and a Hypothesis state machine for the invariants."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from engine.errors import NotFound
from engine.service.security import node_id_for
from engine.trust.consensus import Verdict, decide
from engine.trust.peers import PeerRegistry
from engine.trust.reputation import INITIAL_REPUTATION, PENALTY, REWARD, ReputationBook
from engine.trust.votes import ReplayStore, VoteChecker, check_all, new_vote, sign_vote

ROOT = Path(__file__).resolve().parents[2]
N1, N2, N3 = (f"{i:016x}" for i in (1, 2, 3))


def test_the_rule(tmp_path: Path) -> None:
    assert (INITIAL_REPUTATION, REWARD, PENALTY) == (0.5, 0.01, 0.05)
    book = ReputationBook(tmp_path)
    fresh = book.get(N1)
    assert (fresh.reputation, fresh.verifications, fresh.successes, fresh.revoked) == (0.5, 0, 0, False)
    assert book.record_success(N1, 0.8).reputation == pytest.approx(0.508)  # +0.01 × agreement
    after = book.record_failure(N1)
    assert after.reputation == pytest.approx(0.458) and (after.verifications, after.successes) == (2, 1)
    assert after.success_rate == 0.5
    # persisted
    assert ReputationBook(tmp_path).get(N1) == after
    assert [s.node_id for s in book.standings()] == [N1]


def test_clamped_to_the_unit_interval(tmp_path: Path) -> None:
    high = ReputationBook(tmp_path / "a", initial=0.995)
    assert high.record_success(N1, 1.0).reputation == 1.0
    low = ReputationBook(tmp_path / "b", initial=0.02)
    assert low.record_failure(N1).reputation == 0.0


def test_revoked_after_more_than_ten_below_half(tmp_path: Path) -> None:
    book = ReputationBook(tmp_path)
    for _ in range(10):
        standing = book.record_failure(N1)
    assert standing.verifications == 10 and standing.success_rate == 0.0 and not standing.revoked  # not yet: > 10
    assert standing.reputation == 0.0
    assert book.record_failure(N1).revoked
    # a node at exactly half is not revoked: 6 successes, 6 failures
    for _ in range(6):
        book.record_success(N2, 1.0)
        book.record_failure(N2)
    assert not book.get(N2).revoked and book.get(N2).success_rate == 0.5
    assert book.revoked() == {N1}


def test_revoked_stays_revoked_until_restored(tmp_path: Path) -> None:
    book = ReputationBook(tmp_path)
    for _ in range(11):
        book.record_failure(N1)
    revoked = book.get(N1)
    assert revoked.revoked
    for _ in range(30):
        book.record_success(N1, 1.0)
    assert ReputationBook(tmp_path).get(N1) == revoked  # no longer moves, also after reopening
    assert book.ballot(N1, "pass", capability=5.0).revoked
    assert decide([book.ballot(N1, "pass", capability=5.0)]).votes[0].weight == 0.0
    with pytest.raises(NotFound):
        book.restore(N2)
    restored = book.restore(N1)
    assert (restored.reputation, restored.verifications, restored.successes, restored.revoked) == (0.5, 0, 0, False)
    assert [e["event"] for e in book.revocations(N1)] == ["revoked", "restored"]
    assert book.record_success(N1, 1.0).reputation == pytest.approx(0.51)


def test_record_round(tmp_path: Path) -> None:
    book = ReputationBook(tmp_path)
    result = decide([book.ballot(N1, "pass"), book.ballot(N2, "pass"), book.ballot(N3, "pass")])
    new = book.record_round(result)
    assert new[N1].reputation == pytest.approx(0.5 + 0.01 * 1.0)
    split = decide([book.ballot(N1, "pass", capability=3.0), book.ballot(N2, "fail")])  # 0.51·3 vs 0.51: 0.75
    assert split.verdict is Verdict.VALIDATED and split.score == pytest.approx(0.75)
    new = book.record_round(split)
    assert new[N1].reputation == pytest.approx(0.51 + 0.01 * 0.75)
    assert new[N2].reputation == pytest.approx(0.51 - 0.05)
    disputed = decide([book.ballot(N1, "pass"), book.ballot(N2, "fail")], faulty={N3})
    assert disputed.verdict is Verdict.DISPUTED
    before = {n: book.get(n) for n in (N1, N2)}
    new = book.record_round(disputed)
    assert set(new) == {N3} and new[N3].reputation == pytest.approx(0.51 - 0.05)  # only the equivocator pays
    assert {n: book.get(n) for n in (N1, N2)} == before


def test_concurrent_updates_from_threads_and_processes(tmp_path: Path) -> None:
    ReputationBook(tmp_path)  # create the schema once
    script = ("import sys; from engine.trust.reputation import ReputationBook\n"
              "book = ReputationBook(sys.argv[1])\n"
              "for _ in range(40): book.record_success(sys.argv[2], 0.1)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), N1], cwd=ROOT) for _ in range(2)]

    def work() -> None:
        book = ReputationBook(tmp_path)
        for _ in range(40):
            book.record_success(N1, 0.1)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(p.wait(timeout=60) == 0 for p in procs)
    standing = ReputationBook(tmp_path).get(N1)
    assert standing.verifications == 200 and standing.successes == 200  # no update lost
    assert standing.reputation == pytest.approx(0.5 + 200 * 0.001)


# ---------------------------------------------------------------------------------------------
# rounds with the real classes


@dataclass
class SimNode:
    node_id: str
    key: Ed25519PrivateKey

    @classmethod
    def make(cls) -> SimNode:
        key = Ed25519PrivateKey.generate()
        return cls(node_id_for(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                             serialization.PublicFormat.Raw)), key)

    @property
    def public_key(self) -> str:
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")


def test_an_always_lying_node_is_revoked_within_15_rounds(tmp_path: Path) -> None:
    honest = [SimNode.make() for _ in range(5)]
    liar, equivocator = SimNode.make(), SimNode.make()
    registry = PeerRegistry(tmp_path)
    for i, node in enumerate([*honest, liar, equivocator]):
        registry.add(node.public_key, f"http://127.0.0.1:{9100 + i}", capability=1.0 + (i % 3),
                     specialisations=["bake"] if i % 2 else [])
    checker = VoteChecker(registry, replay_store=ReplayStore(tmp_path))
    book = ReputationBook(tmp_path)
    revoked_after = None
    for round_no in range(1, 16):
        good = round_no % 3 != 0  # the artifact is good in two rounds of three, corrupted otherwise
        result_hash = f"{round_no:064x}"
        verification_id = f"round-{round_no}"
        truth = "pass" if good else "fail"
        lie = "fail" if good else "pass"
        received = [sign_vote(new_vote(verification_id, n.node_id, truth, {"ssim": 0.99 if good else 0.7}, round_no,
                                       result_hash), n.key) for n in honest]
        received.append(sign_vote(new_vote(verification_id, liar.node_id, lie, {"ssim": 0.5}, round_no,
                                           result_hash), liar.key))
        if round_no <= 3:  # answers both ways to the same verification
            for verdict in ("pass", "fail"):
                received.append(sign_vote(new_vote(verification_id, equivocator.node_id, verdict, {}, round_no,
                                                   result_hash), equivocator.key))
        checked = check_all(checker, received, verification_id=verification_id, result_hash=result_hash)
        ballots = []
        for signed in checked.accepted:
            peer = registry.get(signed.vote.node_id)
            assert peer is not None
            ballots.append(book.ballot(peer.node_id, signed.vote.verdict, capability=peer.capability,
                                       specialisations=peer.specialisations))
        result = decide(ballots, job_kind="bake", faulty=checked.faulty)
        assert result.verdict is Verdict.VALIDATED and result.outcome == truth  # no false accept, no false reject
        book.record_round(result)
        if revoked_after is None and book.get(liar.node_id).revoked:
            revoked_after = round_no
        if revoked_after is not None and round_no > revoked_after:
            assert next(v for v in result.votes if v.node_id == liar.node_id).weight == 0.0
    assert revoked_after is not None and revoked_after <= 15
    assert revoked_after == 11  # 11 failures: more than 10 verifications, success rate 0
    for node in honest:
        standing = book.get(node.node_id)
        assert not standing.revoked and standing.successes == 15 and standing.reputation > 0.6
    caught = book.get(equivocator.node_id)
    assert caught.verifications == 3 and caught.successes == 0 and caught.reputation == pytest.approx(0.35)


# ---------------------------------------------------------------------------------------------
# invariants (Hypothesis stateful)

NODES = [f"{i:016x}" for i in range(100, 106)]


class TrustMachine(RuleBasedStateMachine):
    """Random rounds of votes on a real book: reputations bounded, revocation sticky, revoked weigh 0,
    no VALIDATED without 0.67 of the received weight."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="trust-machine-"))
        self.revoked: set[str] = set()

    @initialize(initial=st.floats(0.0, 1.0), reward=st.floats(0.0, 1.0), penalty=st.floats(0.0, 1.0),
                revoke_after=st.integers(0, 12))
    def open_book(self, initial: float, reward: float, penalty: float, revoke_after: int) -> None:
        # the design's numbers move slowly; drawn ones also reach the clamps and revocations in a short run
        self.book = ReputationBook(self.dir, initial=initial, reward=reward, penalty=penalty,
                                   revoke_after=revoke_after)

    @rule(votes=st.lists(st.tuples(st.sampled_from(NODES), st.sampled_from(["pass", "fail"]),
                                   st.floats(0.1, 5.0), st.booleans()),
                         max_size=len(NODES), unique_by=lambda t: t[0]),
          faulty=st.sets(st.sampled_from(NODES), max_size=2))
    def round(self, votes: list[tuple[str, str, float, bool]], faulty: set[str]) -> None:
        ballots = [self.book.ballot(node, verdict, capability=cap, specialisations={"bake"} if spec else set())
                   for node, verdict, cap, spec in votes]
        result = decide(ballots, job_kind="bake", faulty=faulty)
        for vote in result.votes:
            assert vote.revoked == (vote.node_id in self.revoked)
            if vote.revoked:
                assert vote.weight == 0.0  # whatever its capability and boost
        total = sum((Fraction(v.weight) for v in result.votes), Fraction(0))
        if result.verdict is Verdict.VALIDATED:
            leading = sum((Fraction(v.weight) for v in result.votes if v.verdict == result.outcome), Fraction(0))
            assert leading >= Fraction(67, 100) * total > 0
        self.book.record_round(result)

    @rule(node=st.sampled_from(NODES))
    def restore(self, node: str) -> None:
        if node in self.revoked:
            assert not self.book.restore(node).revoked
            self.revoked.discard(node)
        else:
            with pytest.raises(NotFound):
                self.book.restore(node)

    @invariant()
    def bounded_and_sticky(self) -> None:
        if not hasattr(self, "book"):
            return
        now_revoked = self.book.revoked()
        assert self.revoked <= now_revoked  # revoked nodes stay revoked unless restored
        self.revoked = now_revoked
        for standing in self.book.standings():
            assert 0.0 <= standing.reputation <= 1.0
            assert 0 <= standing.successes <= standing.verifications

    def teardown(self) -> None:
        if hasattr(self, "book"):
            self.book.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TrustMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
test_trust_invariants = TrustMachine.TestCase
