"""Signed votes, the vote checker (every rejection with its reason), the replay store, the peer allowlist and
`optimizer peers`: real Ed25519 keys, real SQLite."""

from __future__ import annotations

import base64
import copy
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.cli import main
from engine.errors import ConfigError, InputError, NotFound
from engine.service.security import load_or_create_identity, node_id_for, sign
from engine.trust.peers import PeerRegistry
from engine.trust.votes import (
    VOTE_DOMAIN,
    Equivocation,
    EquivocationEvidence,
    ReplayStore,
    SignedVote,
    Vote,
    VoteChecker,
    VoteRejected,
    check_all,
    new_vote,
    sign_vote,
)

VID = "verif-0001"
RESULT = "ab" * 32
OTHER_RESULT = "cd" * 32
T0 = 1_800_000_000.0


@dataclass
class Node:
    node_id: str
    public_key: str
    key: Ed25519PrivateKey

    def vote(self, verdict: str = "pass", *, verification_id: str = VID, result_hash: str = RESULT,
             metrics: dict[str, float | None] | None = None, seed: int = 7, at: float = T0) -> SignedVote:
        metrics = {"ssim": 0.991, "psnr": 38.5, "lpips": None} if metrics is None else metrics
        return sign_vote(new_vote(verification_id, self.node_id, verdict, metrics, seed, result_hash,
                                  clock=lambda: at), self.key)


def make_node() -> Node:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Node(node_id_for(raw), base64.b64encode(raw).decode("ascii"), key)


class Clock:
    """A settable clock (the checker takes any callable returning seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    data: Path
    nodes: list[Node]
    registry: PeerRegistry
    clock: Clock
    checker: VoteChecker

    def reopen(self) -> VoteChecker:
        """A new checker on the same data folder, as after a restart."""
        return VoteChecker(PeerRegistry(self.data), replay_store=ReplayStore(self.data), clock=self.clock)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    nodes = [make_node() for _ in range(3)]
    registry = PeerRegistry(tmp_path)
    for i, node in enumerate(nodes):
        registry.add(node.public_key, f"http://127.0.0.1:{9000 + i}", name=f"peer{i}")
    clock = Clock(T0)
    return Setup(tmp_path, nodes, registry, clock, VoteChecker(registry, replay_store=ReplayStore(tmp_path),
                                                               clock=clock))


def rejection(checker: VoteChecker, received: Any, *, verification_id: str = VID,
              result_hash: str = RESULT) -> VoteRejected:
    with pytest.raises(VoteRejected) as info:
        checker.check(received, verification_id=verification_id, result_hash=result_hash)
    assert isinstance(info.value, InputError)
    return info.value


# ---------------------------------------------------------------------------------------------
# format


def test_vote_round_trip_and_canonical_bytes(setup: Setup) -> None:
    signed = setup.nodes[0].vote()
    back = SignedVote.from_json(signed.to_json())
    assert back == signed
    assert back.vote.metrics == {"lpips": None, "psnr": 38.5, "ssim": 0.991}
    data = signed.vote.canonical_bytes()
    assert data.startswith(VOTE_DOMAIN)
    body = data[len(VOTE_DOMAIN):].decode("ascii")
    assert list(json.loads(body)) == sorted(json.loads(body))  # keys sorted
    assert " " not in body
    assert signed.verify_with(setup.nodes[0].public_key)
    assert not signed.verify_with(setup.nodes[1].public_key)
    assert len(signed.vote.nonce) == 32 and signed.vote.nonce != setup.nodes[0].vote().vote.nonce


def test_sign_vote_refuses_another_nodes_key(setup: Setup) -> None:
    vote = new_vote(VID, setup.nodes[0].node_id, "pass", {}, 1, RESULT)
    with pytest.raises(ValueError, match="belongs to node"):
        sign_vote(vote, setup.nodes[1].key)


@pytest.mark.parametrize("edit", [
    lambda d: d["vote"].pop("nonce"),
    lambda d: d["vote"].__setitem__("extra", 1),
    lambda d: d["vote"].__setitem__("verdict", "maybe"),
    lambda d: d["vote"].__setitem__("sample_seed", True),
    lambda d: d["vote"].__setitem__("sample_seed", -1),
    lambda d: d["vote"].__setitem__("result_hash", "ab" * 31),
    lambda d: d["vote"]["metrics"].__setitem__("ssim", "high"),
    lambda d: d["vote"].__setitem__("timestamp", "now"),
    lambda d: d["vote"].__setitem__("node_id", "not-a-node"),
    lambda d: d.__setitem__("signature", base64.b64encode(b"x" * 63).decode()),
    lambda d: d.__setitem__("extra", 1),
])
def test_malformed_votes_are_rejected(setup: Setup, edit: Any) -> None:
    data = setup.nodes[0].vote().to_dict()
    edit(data)
    assert rejection(setup.checker, data).reason == "malformed"


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"vote": 1, "signature": "AA=="}',
                                  '{"vote":{"metrics":{"ssim":NaN}}}'])
def test_garbage_is_malformed(setup: Setup, text: str) -> None:
    assert rejection(setup.checker, text).reason == "malformed"


def test_metric_values_must_be_finite_or_null() -> None:
    for bad in (float("nan"), float("inf"), True):
        with pytest.raises(VoteRejected, match="finite number or null"):
            Vote(VID, "0" * 16, "pass", {"ssim": bad}, 1, RESULT, "0" * 32, T0)


# ---------------------------------------------------------------------------------------------
# each rejection with its reason


def test_an_honest_vote_is_accepted(setup: Setup) -> None:
    signed = setup.nodes[0].vote()
    assert setup.checker.check(signed.to_json(), verification_id=VID, result_hash=RESULT) == signed


def test_unknown_key(setup: Setup) -> None:
    stranger = make_node()
    error = rejection(setup.checker, stranger.vote())
    assert error.reason == "unknown_key" and error.node_id == stranger.node_id and not error.node_at_fault
    # a peer taken off the allowlist is a stranger from then on
    setup.registry.remove(setup.nodes[2].node_id)
    assert rejection(setup.checker, setup.nodes[2].vote()).reason == "unknown_key"


@pytest.mark.parametrize("field,value", [
    ("verdict", "fail"), ("sample_seed", 8), ("nonce", "0" * 32), ("timestamp", T0 + 1.0),
    ("result_hash", OTHER_RESULT), ("verification_id", "verif-0002"), ("metrics", {"ssim": 0.5}),
])
def test_any_edit_breaks_the_signature(setup: Setup, field: str, value: Any) -> None:
    data = setup.nodes[0].vote().to_dict()
    data["vote"][field] = value
    error = rejection(setup.checker, data)
    assert error.reason == "bad_signature" and not error.node_at_fault


def test_forged_signatures(setup: Setup) -> None:
    victim, forger = setup.nodes[0], setup.nodes[1]
    vote = new_vote(VID, victim.node_id, "fail", {}, 1, RESULT, clock=lambda: T0)
    # signed with another enrolled node's key, claiming the victim's id
    forged = SignedVote(vote, base64.b64encode(sign(forger.key, vote.canonical_bytes())).decode())
    assert rejection(setup.checker, forged).reason == "bad_signature"
    # the victim's own key, but without the domain prefix: a signature made for another message type
    body = vote.canonical_bytes()[len(VOTE_DOMAIN):]
    undomained = SignedVote(vote, base64.b64encode(sign(victim.key, body)).decode())
    assert rejection(setup.checker, undomained).reason == "bad_signature"
    # the victim's honest vote still counts afterwards: forgeries burn nothing
    assert setup.checker.check(victim.vote("pass"), verification_id=VID, result_hash=RESULT)


def test_wrong_verification_and_wrong_result(setup: Setup) -> None:
    node = setup.nodes[0]
    assert rejection(setup.checker, node.vote(verification_id="verif-0002")).reason == "wrong_verification"
    assert rejection(setup.checker, node.vote(result_hash=OTHER_RESULT)).reason == "wrong_result"


def test_timestamps_stale_and_future_with_documented_skew(setup: Setup) -> None:
    node = setup.nodes[0]
    assert setup.checker.max_age_s == 300 and setup.checker.max_skew_s == 30
    assert rejection(setup.checker, node.vote(at=T0 - 301)).reason == "stale"
    assert rejection(setup.checker, node.vote(at=T0 + 31)).reason == "future"
    # inside the window on both sides
    setup.checker.check(node.vote(at=T0 - 299), verification_id=VID, result_hash=RESULT)
    setup.checker.check(setup.nodes[1].vote(at=T0 + 29), verification_id=VID, result_hash=RESULT)


def test_replayed_nonce_also_after_a_restart(setup: Setup) -> None:
    signed = setup.nodes[0].vote()
    setup.checker.check(signed, verification_id=VID, result_hash=RESULT)
    assert rejection(setup.checker, signed.to_json()).reason == "replayed_nonce"
    setup.clock.now += 200  # still inside the 300 s window
    restarted = setup.reopen()
    error = rejection(restarted, signed.to_json())
    assert error.reason == "replayed_nonce" and not error.node_at_fault
    # the same vote re-signed for another verification is not a replay there (nonces are per message)
    other = setup.nodes[0].vote(verification_id="verif-0002", at=setup.clock.now)
    restarted.check(other, verification_id="verif-0002", result_hash=RESULT)


def test_retry_with_the_same_answer_is_a_harmless_duplicate(setup: Setup) -> None:
    node = setup.nodes[0]
    setup.checker.check(node.vote("pass"), verification_id=VID, result_hash=RESULT)
    error = rejection(setup.checker, node.vote("pass", at=T0 + 5))
    assert error.reason == "duplicate" and not error.node_at_fault
    assert setup.checker.faulty(VID) == set()


def test_equivocation_is_detected_reported_and_persisted(setup: Setup) -> None:
    node = setup.nodes[0]
    first, second = node.vote("pass"), node.vote("fail", at=T0 + 1)
    setup.checker.check(first, verification_id=VID, result_hash=RESULT)
    with pytest.raises(Equivocation) as info:
        setup.checker.check(second, verification_id=VID, result_hash=RESULT)
    error = info.value
    assert error.reason == "equivocation" and error.node_at_fault and error.node_id == node.node_id
    evidence = error.evidence
    assert (evidence.first, evidence.second) == (first, second)
    assert evidence.is_proof()
    assert setup.checker.faulty(VID) == {node.node_id} and setup.checker.faulty("verif-0002") == set()
    # kept across a restart, and still a proof anybody with the public key can check
    restarted = setup.reopen()
    [stored] = restarted.evidence(VID)
    assert stored.first == first and stored.second == second and stored.public_key_b64 == node.public_key
    assert stored.is_proof()
    # the same two answers with an edited metric are not a proof (the signature fails)
    edited = copy.deepcopy(stored.second.to_dict())
    edited["vote"]["metrics"]["ssim"] = 0.1
    forged = EquivocationEvidence(VID, node.node_id, node.public_key, first, SignedVote.from_dict(edited), T0)
    assert not forged.is_proof()
    # two identical answers are not equivocation either
    assert not EquivocationEvidence(VID, node.node_id, node.public_key, first, first, T0).is_proof()


def test_equivocation_hidden_behind_a_reused_nonce_is_still_caught(setup: Setup) -> None:
    node = setup.nodes[1]
    first = node.vote("pass")
    setup.checker.check(first, verification_id=VID, result_hash=RESULT)
    twin = sign_vote(Vote(VID, node.node_id, "fail", {}, 7, RESULT, first.vote.nonce, T0), node.key)
    assert rejection(setup.checker, twin).reason == "equivocation"
    # replaying that second message is not reported twice
    assert rejection(setup.checker, twin).reason == "replayed_nonce"
    assert len(setup.checker.evidence(VID)) == 1


def test_check_all_drops_the_equivocators_votes(setup: Setup) -> None:
    a, b, c = setup.nodes
    stranger = make_node()
    received = [a.vote("pass"), b.vote("pass"), c.vote("pass"), c.vote("fail", at=T0 + 1), stranger.vote(),
                "garbage", b.vote("pass").to_json()]
    checked = check_all(setup.checker, received, verification_id=VID, result_hash=RESULT)
    assert sorted(v.vote.node_id for v in checked.accepted) == sorted([a.node_id, b.node_id])
    assert checked.faulty == {c.node_id}
    assert sorted(r.reason for r in checked.rejected) == ["duplicate", "equivocation", "malformed", "unknown_key"]
    assert len(checked.evidence) == 1 and checked.evidence[0].is_proof()


def test_old_nonces_are_pruned_and_their_votes_stay_rejected(tmp_path: Path) -> None:
    node = make_node()
    registry = PeerRegistry(tmp_path)
    registry.add(node.public_key, "http://127.0.0.1:9000")
    clock = Clock(T0)
    store = ReplayStore(tmp_path, retain_s=100.0)
    checker = VoteChecker(registry, replay_store=store, max_age_s=60.0, max_skew_s=10.0, clock=clock)
    old = node.vote(at=T0)
    checker.check(old, verification_id=VID, result_hash=RESULT)
    clock.now = T0 + 150
    checker.check(node.vote(verification_id="verif-0002", at=clock.now), verification_id="verif-0002",
                  result_hash=RESULT)
    count = store.db.conn().execute("SELECT COUNT(*) FROM vote_nonces").fetchone()[0]
    assert count == 1  # the first nonce was pruned ...
    assert rejection(checker, old).reason == "stale"  # ... and replaying it still fails
    with pytest.raises(ConfigError, match="retention"):
        VoteChecker(registry, replay_store=store, max_age_s=95.0, max_skew_s=10.0)


def test_concurrent_checkers_accept_a_vote_once(setup: Setup) -> None:
    signed = setup.nodes[0].vote().to_json()
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        checker = setup.reopen()  # its own connections, like another process
        try:
            checker.check(signed, verification_id=VID, result_hash=RESULT)
            outcome = "accepted"
        except VoteRejected as exc:
            outcome = exc.reason
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["accepted"] + ["replayed_nonce"] * 5


# ---------------------------------------------------------------------------------------------
# the allowlist


def test_registry_add_from_key_or_identity_json(tmp_path: Path) -> None:
    identity, _ = load_or_create_identity(tmp_path / "peer")
    registry = PeerRegistry(tmp_path / "me")
    peer = registry.add(json.dumps(identity.to_dict()), "https://gpu.example:8770/", name="gpu",
                        capability=2.5, specialisations="Splat, bake,splat")
    assert peer.node_id == identity.node_id and peer.public_key_b64 == identity.public_key_b64
    assert peer.url == "https://gpu.example:8770" and peer.specialisations == ("bake", "splat")
    other = make_node()
    registry.add(other.public_key, "http://localhost:9000")
    reopened = PeerRegistry(tmp_path / "me")
    assert [p.node_id for p in reopened.list()] == [identity.node_id, other.node_id]
    assert reopened.get(identity.node_id) == peer
    assert reopened.public_key(other.node_id) == other.public_key
    assert reopened.remove(other.node_id).node_id == other.node_id
    assert reopened.get(other.node_id) is None and reopened.public_key(other.node_id) is None


@pytest.mark.parametrize("key,url,kwargs,needle", [
    ("not base64!", "http://127.0.0.1:1", {}, "not valid base64"),
    (base64.b64encode(b"x" * 31).decode(), "http://127.0.0.1:1", {}, "31 bytes"),
    ('{"node_id": "0000000000000000", "public_key": "%s"}', "http://127.0.0.1:1", {}, "belongs to node"),
    ('{"public_key": 5}', "http://127.0.0.1:1", {}, "no \"public_key\""),
    ("KEY", "http://gpu.example:8770", {}, "plain http"),
    ("KEY", "ftp://127.0.0.1", {}, "scheme"),
    ("KEY", "https://user:pw@gpu.example", {}, "credentials"),
    ("KEY", "http://127.0.0.1:1", {"capability": 0.0}, "out of range"),
    ("KEY", "http://127.0.0.1:1", {"capability": float("nan")}, "out of range"),
    ("KEY", "http://127.0.0.1:1", {"specialisations": "bake,../x"}, "not a job kind"),
])
def test_registry_rejects_bad_entries(tmp_path: Path, key: str, url: str, kwargs: dict[str, Any],
                                      needle: str) -> None:
    node = make_node()
    key = key.replace("KEY", node.public_key).replace("%s", node.public_key)
    with pytest.raises(InputError, match=needle):
        PeerRegistry(tmp_path).add(key, url, **kwargs)
    assert PeerRegistry(tmp_path).list() == []


def test_registry_duplicate_and_unknown(tmp_path: Path) -> None:
    node = make_node()
    registry = PeerRegistry(tmp_path)
    registry.add(node.public_key, "http://127.0.0.1:1")
    with pytest.raises(InputError, match="already enrolled"):
        registry.add(node.public_key, "http://127.0.0.1:2")
    with pytest.raises(NotFound, match="no enrolled peer"):
        registry.remove(make_node().node_id)
    with pytest.raises(InputError, match="not a node id"):
        registry.remove("nope")


def test_cli_peers_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = make_node()
    data = str(tmp_path)
    assert main(["peers", "add", node.public_key, "--url", "http://127.0.0.1:8771", "--name", "lab",
                 "--capability", "2", "--special", "bake,splat", "--data", data]) == 0
    assert node.node_id in capsys.readouterr().out
    assert main(["peers", "list", "--data", data]) == 0
    table = capsys.readouterr().out
    assert node.node_id in table and "lab" in table and "bake,splat" in table
    assert main(["peers", "list", "--json", "--data", data]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry == {**entry, "node_id": node.node_id, "public_key": node.public_key, "capability": 2.0,
                     "specialisations": ["bake", "splat"], "url": "http://127.0.0.1:8771", "name": "lab"}
    # errors: one line, exit 2
    assert main(["peers", "add", node.public_key, "--url", "http://127.0.0.1:8771", "--data", data]) == 2
    assert "already enrolled" in capsys.readouterr().err
    assert main(["peers", "add", "AAAA", "--url", "http://127.0.0.1:8771", "--data", data]) == 2
    assert "32" in capsys.readouterr().err
    assert main(["peers", "--data", data]) == 2
    capsys.readouterr()
    assert main(["peers", "remove", node.node_id, "--data", data]) == 0
    assert main(["peers", "list", "--json", "--data", data]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == []
    assert main(["peers", "remove", node.node_id, "--data", data]) == 2
    assert "no enrolled peer" in capsys.readouterr().err
