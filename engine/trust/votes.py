"""Signed verification votes and the checks every received vote must pass.

A vote is one peer's answer to one verification: the verdict ("pass" or "fail"), the metrics it
measured (``None`` for a metric it could not measure), the sample seed it drew its views and
tiles from (so anybody can redraw the same sample), and the SHA-256 of the artifact it judged.
It also carries a random 128-bit nonce and the time it was made.

Signing: the node's Ed25519 key signs ``VOTE_DOMAIN + canonical JSON`` of the vote: keys sorted,
no spaces, ASCII only, floats in Python's shortest round-trip form (``repr``), integers as
integers. The domain prefix keeps a vote signature from ever being valid for another message
type signed by the same key (audit checkpoints, for example). The receiver re-derives the
canonical bytes from the fields it parsed, so any change of any field breaks the signature.
The vote names the node by id only; the key comes from the operator's allowlist
(``engine.trust.peers``), and ``node_id_for(key)`` is the id.

Checks (``VoteChecker.check``), in this order, each failure a ``VoteRejected`` with a reason code:

* ``malformed``: not a vote (missing, extra or ill-typed fields; bad sizes).
* ``unknown_key``: the node id is not on the allowlist.
* ``bad_signature``: the signature does not verify under the enrolled key.
* ``wrong_verification`` / ``wrong_result``: signed for another verification id or artifact hash
  than the one asked.
* ``future`` / ``stale``: the timestamp is more than ``max_skew_s`` (default 30 s: allowed clock
  skew between nodes) ahead of our clock, or more than ``max_age_s`` (default 300 s: transit
  time plus the peer's clock lag) behind it.
* ``equivocation``: a second vote from the same node for the same verification with a different
  answer (checked before the nonce, so reusing a nonce does not hide it). Both signed votes are
  kept as evidence (``EquivocationEvidence``, checkable by anyone holding the node's public key)
  and the node is counted as faulty for that verification: its first vote must be dropped too
  (``check_all`` does) and the reputation book penalises it.
* ``replayed_nonce``: this node's nonce was seen before (persisted, see below).
* ``duplicate``: a second vote from the same node for the same verification with the same answer
  under a new nonce (a retry; the first one counts, this one is not counted again).

Only ``equivocation`` proves the node itself misbehaved (``VoteRejected.node_at_fault``): the
other rejections can be caused by a third party (forging a signature, replaying or delaying a
genuine vote, sending it to another verification), so they must never cost the node reputation.

Replay store: nonces, first answers and equivocation evidence live in ``data_dir/trust.sqlite3``
(tables ``vote_nonces``, ``vote_answers``, ``vote_equivocations``). Each check commits in one
``BEGIN IMMEDIATE`` transaction with ``synchronous=FULL``, so two processes never both accept one
vote and a restart (even a power cut) does not reopen the replay window. Nonces and answers are
pruned ``retain_s`` (default one day) after their timestamp; that is safe because a vote older
than ``max_age_s`` (which must be below ``retain_s``) is rejected as stale anyway. Evidence is
never pruned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.errors import ConfigError, InputError
from engine.service.security import node_id_for, sign, verify
from engine.trust.peers import migrate, open_trust_db

log = logging.getLogger(__name__)

VOTE_DOMAIN = b"optimizer-vote-v1\x00"
VERDICTS = ("pass", "fail")
DEFAULT_MAX_AGE_S = 300.0
DEFAULT_MAX_SKEW_S = 30.0
DEFAULT_RETAIN_S = 86_400.0
MAX_VOTE_BYTES = 64 * 1024
MAX_METRICS = 64

REASONS = ("malformed", "unknown_key", "bad_signature", "wrong_verification", "wrong_result", "future", "stale",
           "replayed_nonce", "duplicate", "equivocation")
NODE_AT_FAULT = frozenset({"equivocation"})

_VERIFICATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_NODE_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_NONCE_RE = re.compile(r"^[0-9a-f]{32}$")
_METRIC_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_FIELDS = ("verification_id", "node_id", "verdict", "metrics", "sample_seed", "result_hash", "nonce", "timestamp")


class VoteRejected(InputError):
    """A received vote that must not count; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, problem: str, *, node_id: str | None = None, where: str = "",
                 hint: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        self.reason = reason
        self.node_id = node_id
        super().__init__(f"vote rejected ({reason}): {problem}", where=where or (f"node {node_id}" if node_id else "vote"),
                         hint=hint)

    @property
    def node_at_fault(self) -> bool:
        """Whether the rejection proves the signing node misbehaved (only equivocation does)."""
        return self.reason in NODE_AT_FAULT


def _malformed(problem: str, hint: str = "") -> VoteRejected:
    return VoteRejected("malformed", problem, hint=hint)


# ---------------------------------------------------------------------------------------------
# the vote


def _check_metrics(metrics: object) -> dict[str, float | None]:
    if not isinstance(metrics, Mapping):
        raise _malformed(f"metrics must be an object of name → number or null, not {type(metrics).__name__}")
    if len(metrics) > MAX_METRICS:
        raise _malformed(f"{len(metrics)} metrics (at most {MAX_METRICS})")
    out: dict[str, float | None] = {}
    for name in sorted(metrics, key=str):
        value = metrics[name]
        if not isinstance(name, str) or not _METRIC_RE.match(name):
            raise _malformed(f"metric name {name!r} is not a plain name")
        if value is None:
            out[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _malformed(f"metric {name} must be a finite number or null (not measured), not {value!r}")
        out[name] = float(value)
    return out


@dataclass(frozen=True)
class Vote:
    """One node's answer to one verification (validated on construction; VoteRejected 'malformed' if bad)."""

    verification_id: str
    node_id: str
    verdict: str  # "pass" | "fail"
    metrics: Mapping[str, float | None] = field(hash=False)  # None: not measured
    sample_seed: int
    result_hash: str  # hex SHA-256 of the artifact judged
    nonce: str  # 128 random bits, hex
    timestamp: float  # seconds since the Unix epoch (UTC)

    def __post_init__(self) -> None:
        if not isinstance(self.verification_id, str) or not _VERIFICATION_RE.match(self.verification_id):
            raise _malformed(f"verification id {self.verification_id!r} is not 1..128 letters, digits or _.:-")
        if not isinstance(self.node_id, str) or not _NODE_ID_RE.match(self.node_id):
            raise _malformed(f"node id {self.node_id!r} is not 16 lowercase hex characters")
        if self.verdict not in VERDICTS:
            raise _malformed(f"verdict {self.verdict!r} is not 'pass' or 'fail'")
        object.__setattr__(self, "metrics", _check_metrics(self.metrics))
        seed = self.sample_seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise _malformed(f"sample seed {seed!r} is not an integer in [0, 2^64)")
        if not isinstance(self.result_hash, str) or not _HASH_RE.match(self.result_hash):
            raise _malformed("result hash is not 64 lowercase hex characters (SHA-256)")
        if not isinstance(self.nonce, str) or not _NONCE_RE.match(self.nonce):
            raise _malformed("nonce is not 32 lowercase hex characters (128 bits)")
        ts = self.timestamp
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts) or ts <= 0:
            raise _malformed(f"timestamp {ts!r} is not a positive number of seconds")
        object.__setattr__(self, "timestamp", float(ts))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what is signed, before canonical encoding)."""
        return {"verification_id": self.verification_id, "node_id": self.node_id, "verdict": self.verdict,
                "metrics": dict(self.metrics), "sample_seed": self.sample_seed, "result_hash": self.result_hash,
                "nonce": self.nonce, "timestamp": self.timestamp}

    def canonical_bytes(self) -> bytes:
        """The exact bytes that are signed: ``VOTE_DOMAIN`` + canonical JSON."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        return VOTE_DOMAIN + text.encode("ascii")

    def answer_digest(self) -> str:
        """SHA-256 of the answer (everything but nonce and timestamp): equal for retries, differs for equivocation."""
        answer = {k: v for k, v in self.to_dict().items() if k not in ("nonce", "timestamp")}
        text = json.dumps(answer, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    @classmethod
    def from_dict(cls, data: object) -> Vote:
        """Parse a vote object; exactly the vote's fields, else VoteRejected 'malformed'."""
        if not isinstance(data, Mapping):
            raise _malformed(f"a vote must be an object, not {type(data).__name__}")
        missing = [name for name in _FIELDS if name not in data]
        extra = sorted(str(name) for name in data if name not in _FIELDS)
        if missing or extra:
            raise _malformed(f"missing fields {missing}, unexpected fields {extra}" if missing and extra else
                             f"missing fields {missing}" if missing else f"unexpected fields {extra}")
        return cls(**{name: data[name] for name in _FIELDS})


def new_vote(verification_id: str, node_id: str, verdict: str, metrics: Mapping[str, float | None],
             sample_seed: int, result_hash: str, *, clock: Callable[[], float] = time.time) -> Vote:
    """A vote with a fresh random nonce, stamped now."""
    return Vote(verification_id, node_id, verdict, metrics, sample_seed, result_hash, secrets.token_hex(16),
                clock())


@dataclass(frozen=True)
class SignedVote:
    """A vote and its Ed25519 signature (standard base64 of 64 bytes)."""

    vote: Vote
    signature: str

    def signature_bytes(self) -> bytes:
        """The raw signature (empty when it is not base64)."""
        try:
            return base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            return b""

    def verify_with(self, public_key_b64: str) -> bool:
        """Whether the signature verifies under this key, and the key is the vote's node's."""
        try:
            raw = base64.b64decode(public_key_b64, validate=True)
        except (binascii.Error, ValueError):
            return False
        if node_id_for(raw) != self.vote.node_id:
            return False
        return verify(public_key_b64, self.vote.canonical_bytes(), self.signature_bytes())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"vote": {...}, "signature": "<base64>"}``."""
        return {"vote": self.vote.to_dict(), "signature": self.signature}

    def to_json(self) -> str:
        """Compact JSON text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: object) -> SignedVote:
        """Parse ``{"vote": ..., "signature": ...}``; VoteRejected 'malformed' when it is not that."""
        if not isinstance(data, Mapping) or set(data) != {"vote", "signature"}:
            raise _malformed('a signed vote must be an object with exactly "vote" and "signature"')
        signature = data["signature"]
        if not isinstance(signature, str) or len(signature) > 128:
            raise _malformed("the signature must be a base64 string")
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise _malformed("the signature is not valid base64") from None
        if len(raw) != 64:
            raise _malformed(f"the signature is {len(raw)} bytes long; an Ed25519 signature is 64")
        return cls(Vote.from_dict(data["vote"]), signature)

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedVote:
        """Parse the JSON text of a signed vote (at most 64 KiB); VoteRejected 'malformed' when it is not one."""
        if len(text) > MAX_VOTE_BYTES:
            raise _malformed(f"the vote is {len(text):,} bytes long (at most {MAX_VOTE_BYTES:,})")
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _malformed(f"the vote is not JSON ({exc})") from None
        return cls.from_dict(data)


def sign_vote(vote: Vote, private_key: Ed25519PrivateKey) -> SignedVote:
    """Sign ``vote`` with the node's key; ValueError if the key is not the vote's node's."""
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if node_id_for(raw) != vote.node_id:
        raise ValueError(f"this key belongs to node {node_id_for(raw)}, not to the vote's node {vote.node_id}")
    signature = sign(private_key, vote.canonical_bytes())
    return SignedVote(vote, base64.b64encode(signature).decode("ascii"))


def parse_signed_vote(received: SignedVote | Mapping[str, Any] | str | bytes) -> SignedVote:
    """A SignedVote from what came off the wire (object, JSON text or bytes); VoteRejected 'malformed' if not one."""
    if isinstance(received, SignedVote):
        return received
    if isinstance(received, str | bytes | bytearray):
        return SignedVote.from_json(bytes(received) if isinstance(received, bytearray) else received)
    return SignedVote.from_dict(received)


# ---------------------------------------------------------------------------------------------
# equivocation evidence


@dataclass(frozen=True)
class EquivocationEvidence:
    """Two votes one node signed for one verification with different answers: proof it is faulty."""

    verification_id: str
    node_id: str
    public_key_b64: str
    first: SignedVote
    second: SignedVote
    detected_at: float

    def is_proof(self) -> bool:
        """Re-check the evidence from scratch: both signatures valid under the key, same verification, same node,
        different answers."""
        a, b = self.first.vote, self.second.vote
        return (a.verification_id == b.verification_id == self.verification_id
                and a.node_id == b.node_id == self.node_id
                and a.answer_digest() != b.answer_digest()
                and self.first.verify_with(self.public_key_b64) and self.second.verify_with(self.public_key_b64))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"verification_id": self.verification_id, "node_id": self.node_id, "public_key": self.public_key_b64,
                "first": self.first.to_dict(), "second": self.second.to_dict(), "detected_at": self.detected_at}


class Equivocation(VoteRejected):
    """The node signed two different answers for one verification; ``evidence`` holds both."""

    def __init__(self, evidence: EquivocationEvidence) -> None:
        self.evidence = evidence
        first, second = evidence.first.vote, evidence.second.vote
        super().__init__("equivocation", f"this node already answered {first.verdict!r} for verification "
                         f"{first.verification_id} and now answers {second.verdict!r} with different metrics or seed"
                         if first.verdict == second.verdict else
                         f"this node already answered {first.verdict!r} for verification {first.verification_id} "
                         f"and now answers {second.verdict!r}", node_id=evidence.node_id,
                         hint="both signed votes are kept as evidence; the node counts as faulty")


# ---------------------------------------------------------------------------------------------
# the replay store


_STORE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS vote_nonces (
        node_id TEXT NOT NULL,
        nonce TEXT NOT NULL,
        timestamp REAL NOT NULL,
        PRIMARY KEY (node_id, nonce)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS vote_nonces_by_time ON vote_nonces(timestamp)",
    """CREATE TABLE IF NOT EXISTS vote_answers (
        verification_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        answer TEXT NOT NULL,
        signed TEXT NOT NULL,
        timestamp REAL NOT NULL,
        PRIMARY KEY (verification_id, node_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS vote_answers_by_time ON vote_answers(timestamp)",
    """CREATE TABLE IF NOT EXISTS vote_equivocations (
        id INTEGER PRIMARY KEY,
        verification_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        public_key TEXT NOT NULL,
        first TEXT NOT NULL,
        second TEXT NOT NULL,
        detected_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS vote_equivocations_by_verification ON vote_equivocations(verification_id)",
)


class ReplayStore:
    """Seen nonces, first answers and equivocation evidence in ``data_dir/trust.sqlite3``."""

    def __init__(self, data_dir: Path, *, retain_s: float = DEFAULT_RETAIN_S) -> None:
        if not math.isfinite(retain_s) or retain_s <= 0:
            raise ConfigError(f"retain_s must be a positive number of seconds, not {retain_s!r}", where="ReplayStore")
        self.retain_s = float(retain_s)
        self.db = open_trust_db(data_dir)
        migrate(self.db, "votes_schema", 1, _STORE_SCHEMA)

    def admit(self, signed: SignedVote, public_key_b64: str, *, now: float) -> None:
        """Record an authenticated, in-window vote, or raise VoteRejected (equivocation, replayed_nonce, duplicate).

        One durable transaction: of two processes admitting the same vote, exactly one succeeds.
        A different answer is equivocation even when the node reused its nonce for it.
        """
        vote = signed.vote
        answer = vote.answer_digest()
        text = signed.to_json()
        rejection: VoteRejected
        with self.db.write(durable=True) as conn:
            cutoff = now - self.retain_s
            conn.execute("DELETE FROM vote_nonces WHERE timestamp < ?", (cutoff,))
            conn.execute("DELETE FROM vote_answers WHERE timestamp < ?", (cutoff,))
            seen = conn.execute("SELECT 1 FROM vote_nonces WHERE node_id = ? AND nonce = ?",
                                (vote.node_id, vote.nonce)).fetchone() is not None
            row = conn.execute("SELECT answer, signed FROM vote_answers WHERE verification_id = ? AND node_id = ?",
                               (vote.verification_id, vote.node_id)).fetchone()
            if row is not None and row[0] != answer:
                reported = conn.execute("SELECT 1 FROM vote_equivocations WHERE verification_id = ? AND node_id = ? "
                                        "AND second = ?", (vote.verification_id, vote.node_id, text)).fetchone()
                if reported:
                    raise VoteRejected("replayed_nonce", "this equivocating vote was already received and reported",
                                       node_id=vote.node_id)
                conn.execute("INSERT OR IGNORE INTO vote_nonces (node_id, nonce, timestamp) VALUES (?, ?, ?)",
                             (vote.node_id, vote.nonce, vote.timestamp))
                conn.execute("INSERT INTO vote_equivocations (verification_id, node_id, public_key, first, second, "
                             "detected_at) VALUES (?, ?, ?, ?, ?, ?)",
                             (vote.verification_id, vote.node_id, public_key_b64, row[1], text, now))
                rejection = Equivocation(EquivocationEvidence(vote.verification_id, vote.node_id, public_key_b64,
                                                              SignedVote.from_json(row[1]), signed, now))
            elif seen:
                raise VoteRejected("replayed_nonce", f"nonce {vote.nonce} was already used by this node",
                                   node_id=vote.node_id, hint="a vote is accepted once; the peer must sign a new one")
            else:
                conn.execute("INSERT INTO vote_nonces (node_id, nonce, timestamp) VALUES (?, ?, ?)",
                             (vote.node_id, vote.nonce, vote.timestamp))
                if row is None:
                    conn.execute("INSERT INTO vote_answers (verification_id, node_id, answer, signed, timestamp) "
                                 "VALUES (?, ?, ?, ?, ?)", (vote.verification_id, vote.node_id, answer, text,
                                                            vote.timestamp))
                    return
                # the same answer again under a new nonce: a retry. Its nonce stays recorded.
                rejection = VoteRejected("duplicate", "this node already voted the same answer for verification "
                                         f"{vote.verification_id}", node_id=vote.node_id,
                                         hint="the first vote counts; retries are not counted twice")
        if rejection.node_at_fault:
            log.warning("%s", rejection)
        else:
            log.info("%s", rejection)
        raise rejection

    def evidence(self, verification_id: str | None = None) -> list[EquivocationEvidence]:
        """Stored equivocation evidence, for one verification or all, oldest first."""
        query = "SELECT verification_id, node_id, public_key, first, second, detected_at FROM vote_equivocations"
        params: tuple[str, ...] = ()
        if verification_id is not None:
            query += " WHERE verification_id = ?"
            params = (verification_id,)
        with self.db.read() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [EquivocationEvidence(v, n, k, SignedVote.from_json(a), SignedVote.from_json(b), float(t))
                for v, n, k, a, b, t in rows]

    def faulty(self, verification_id: str) -> set[str]:
        """Nodes proven to have equivocated in this verification."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT DISTINCT node_id FROM vote_equivocations WHERE verification_id = ?",
                                (verification_id,)).fetchall()
        return {row[0] for row in rows}

    def close(self) -> None:
        """Close the database connections."""
        self.db.close()


# ---------------------------------------------------------------------------------------------
# the checker


class Allowlist(Protocol):
    """Where the checker looks up a node's enrolled key (``PeerRegistry`` is one)."""

    def public_key(self, node_id: str) -> str | None: ...


class _MappingAllowlist:
    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = dict(keys)

    def public_key(self, node_id: str) -> str | None:
        return self._keys.get(node_id)


class VoteChecker:
    """Checks received votes against the allowlist, the clock and the replay store (see the module docstring).

    ``allowlist`` is a ``PeerRegistry`` (or anything with ``public_key(node_id)``) or a mapping
    node id → base64 public key.
    """

    def __init__(self, allowlist: Allowlist | Mapping[str, str], *, replay_store: ReplayStore,
                 max_age_s: float = DEFAULT_MAX_AGE_S, max_skew_s: float = DEFAULT_MAX_SKEW_S,
                 clock: Callable[[], float] = time.time) -> None:
        for name, value in (("max_age_s", max_age_s), ("max_skew_s", max_skew_s)):
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a non-negative number of seconds, not {value!r}",
                                  where="VoteChecker")
        if max_age_s + max_skew_s >= replay_store.retain_s:
            raise ConfigError(f"max_age_s + max_skew_s ({max_age_s + max_skew_s:g} s) must be below the replay "
                              f"store's retention ({replay_store.retain_s:g} s)", where="VoteChecker",
                              hint="otherwise a replayed vote could outlive its recorded nonce")
        self.allowlist: Allowlist = (_MappingAllowlist(allowlist) if isinstance(allowlist, Mapping) else allowlist)
        self.replay_store = replay_store
        self.max_age_s = float(max_age_s)
        self.max_skew_s = float(max_skew_s)
        self.clock = clock

    def check(self, received: SignedVote | Mapping[str, Any] | str | bytes, *, verification_id: str,
              result_hash: str) -> SignedVote:
        """The vote if it passes every check for this verification and artifact; VoteRejected otherwise."""
        signed = parse_signed_vote(received)
        vote = signed.vote
        key = self.allowlist.public_key(vote.node_id)
        if key is None:
            raise VoteRejected("unknown_key", "this node is not on the allowlist", node_id=vote.node_id,
                               hint="enrol it with `optimizer peers add KEY --url URL` if it should vote")
        if not signed.verify_with(key):
            raise VoteRejected("bad_signature", "the signature does not verify under the node's enrolled key",
                               node_id=vote.node_id, hint="forged or altered in transit; it is not counted")
        if vote.verification_id != verification_id:
            raise VoteRejected("wrong_verification", f"the vote is for verification {vote.verification_id}, "
                               f"not {verification_id}", node_id=vote.node_id)
        if vote.result_hash != result_hash:
            raise VoteRejected("wrong_result", f"the vote judged artifact {vote.result_hash[:16]}…, not the one "
                               f"asked ({result_hash[:16]}…)", node_id=vote.node_id)
        now = float(self.clock())
        if vote.timestamp > now + self.max_skew_s:
            raise VoteRejected("future", f"the vote is stamped {vote.timestamp - now:.1f} s in the future "
                               f"(allowed clock skew {self.max_skew_s:g} s)", node_id=vote.node_id,
                               hint="check the peer's clock (NTP)")
        if vote.timestamp < now - self.max_age_s:
            raise VoteRejected("stale", f"the vote is {now - vote.timestamp:.1f} s old (at most "
                               f"{self.max_age_s:g} s)", node_id=vote.node_id,
                               hint="a delayed or replayed vote; check the peer's clock if it keeps happening")
        self.replay_store.admit(signed, key, now=now)
        return signed

    def faulty(self, verification_id: str) -> set[str]:
        """Nodes proven to have equivocated in this verification (their votes must not count)."""
        return self.replay_store.faulty(verification_id)

    def evidence(self, verification_id: str | None = None) -> list[EquivocationEvidence]:
        """Stored equivocation evidence."""
        return self.replay_store.evidence(verification_id)


@dataclass(frozen=True)
class CheckedVotes:
    """What ``check_all`` made of the votes received for one verification."""

    accepted: tuple[SignedVote, ...]  # one per node, faulty nodes removed
    rejected: tuple[VoteRejected, ...]
    faulty: frozenset[str]  # nodes proven to have equivocated: penalise, do not count
    evidence: tuple[EquivocationEvidence, ...]


def check_all(checker: VoteChecker, received: Iterable[SignedVote | Mapping[str, Any] | str | bytes], *,
              verification_id: str, result_hash: str) -> CheckedVotes:
    """Check every received vote; the accepted ones of nodes that equivocated (now or before) are dropped."""
    accepted: dict[str, SignedVote] = {}
    rejected: list[VoteRejected] = []
    for item in received:
        try:
            signed = checker.check(item, verification_id=verification_id, result_hash=result_hash)
        except VoteRejected as exc:
            rejected.append(exc)
            continue
        accepted[signed.vote.node_id] = signed
    faulty = checker.faulty(verification_id)
    kept = tuple(v for node, v in accepted.items() if node not in faulty)
    return CheckedVotes(kept, tuple(rejected), frozenset(faulty), tuple(checker.evidence(verification_id)))


__all__ = [
    "DEFAULT_MAX_AGE_S",
    "DEFAULT_MAX_SKEW_S",
    "NODE_AT_FAULT",
    "REASONS",
    "VERDICTS",
    "VOTE_DOMAIN",
    "Allowlist",
    "CheckedVotes",
    "Equivocation",
    "EquivocationEvidence",
    "ReplayStore",
    "SignedVote",
    "Vote",
    "VoteChecker",
    "VoteRejected",
    "check_all",
    "new_vote",
    "parse_signed_vote",
    "sign_vote",
]
