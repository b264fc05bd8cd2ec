"""Tamper-evident audit log: an RFC 6962 Merkle tree over canonical-JSON entries in SQLite, with signed checkpoints.

Hashing (RFC 6962 §2.1, as in Certificate Transparency)
    leaf hash = SHA-256(0x00 ‖ leaf bytes), node hash = SHA-256(0x01 ‖ left ‖ right); the Merkle Tree Hash of n > 1
    leaves splits them at k, the largest power of two below n; the empty tree hashes to SHA-256(""). Inclusion and
    consistency proofs are built as RFC 6962 §2.1.1/§2.1.2 define them and checked with the algorithms of RFC 9162
    §2.1.3.2/§2.1.4.2 (``verify_inclusion``, ``verify_consistency``), which know nothing of how the tree is stored.

Storage (one SQLite file, ``audit.sqlite`` in the node's data folder, WAL)
    ``entries``     index, the entry's canonical JSON bytes, its leaf hash, and a *receipt*: the tree root right after
                    the entry was appended (size index + 1) and the node's Ed25519 signature over (node id, index,
                    leaf hash, that root).
    ``nodes``       the hash of every perfect subtree (2^l leaves starting at a multiple of 2^l, l ≥ 1), written once
                    when its last leaf arrives: about n rows for n entries. Every subtree an RFC 6962 proof names is
                    either such a perfect subtree or lies on the tree's right edge (split into O(log n) perfect ones),
                    so a root costs O(log n) indexed reads and a proof O(log² n) at worst: never a pass over the log.
    ``checkpoints`` signed tree heads (node id, size, root, timestamp): what the node publishes to its peers.
    Triggers refuse UPDATE and DELETE on all three: the engine itself can only append.

Entries are canonical JSON (sorted keys, no whitespace, UTF-8, finite numbers) carrying their own index, so the leaf
bytes are reproducible anywhere and a moved row gives itself away. Appends run in ``BEGIN IMMEDIATE`` transactions,
serialised across threads and processes by SQLite's write lock.

What ``verify`` catches, and where it points
    It streams the log once: every leaf is recomputed from its stored entry and the tree is rebuilt as it goes. Cost:
    2n leaf and subtree hashes, popcount(i + 1) ≤ log₂ n more to recompute each receipt's root (about 7 per entry at
    10k entries), n signature checks (about 0.1 ms each, most of the time) and O(c log² n) reads for the consistency
    proofs between c checkpoints; O(log n) memory. Appending is O(log n); ``prove`` is O(log² n) reads at worst.
    Any change to entry j changes every root from size j + 1 on; the first receipt that no longer verifies is j's,
    even when whoever edited the file recomputed every hash in it, since they cannot sign. Gaps, moved rows,
    non-canonical bytes, wrong leaf hashes, wrong stored subtree hashes, checkpoints whose signature or root is wrong,
    checkpoints that do not extend the previous one, and checkpoints covering entries that are gone are reported, the
    lowest entry index first.

Limits, as for any log kept by one party: whoever holds the node key can rewrite everything; whoever can write the
file can drop the entries newer than the newest checkpoint, or roll the whole file back to an earlier state. A
checkpoint kept somewhere else (a peer, a delivery report) catches that: ``verify(expect=[checkpoint])``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.errors import ConfigError, InputError

log = logging.getLogger(__name__)

LOG_FILE = "audit.sqlite"
FORMAT = "optimizer-audit/1"
HASH_SIZE = 32
SIGNATURE_SIZE = 64
EMPTY_ROOT = hashlib.sha256(b"").digest()
_CHECKPOINT_DOMAIN = b"optimizer audit checkpoint v1\x00"
_RECEIPT_DOMAIN = b"optimizer audit entry receipt v1\x00"
_BUSY_TIMEOUT_S = 60.0


class AuditLogCorrupt(InputError):
    """The stored log does not check out (a proof fails, a subtree hash is missing): run ``optimizer audit verify``."""


# ---------------------------------------------------------------------------------------------
# RFC 6962 hashing and proofs


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def mth(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of leaf *data* exactly as RFC 6962 §2.1 defines it (recursive; a reference, O(n log n))."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hash(leaves[0])
    k = _split(n)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


class _Frontier:
    """The right edge of a tree being built leaf by leaf: the perfect subtrees its leaves decompose into.

    For n leaves it holds one perfect subtree per set bit of n, largest (leftmost) first; O(log n) memory.
    """

    __slots__ = ("hashes", "levels", "size")

    def __init__(self, size: int = 0, levels: list[int] | None = None, hashes: list[bytes] | None = None) -> None:
        self.size = size
        self.levels = levels if levels is not None else []
        self.hashes = hashes if hashes is not None else []

    def copy(self) -> _Frontier:
        return _Frontier(self.size, list(self.levels), list(self.hashes))

    def push(self, leaf: bytes) -> list[tuple[int, bytes]]:
        """Append a leaf hash; returns the perfect subtrees (level ≥ 1, hash) it completed, lowest first."""
        levels, hashes = self.levels, self.hashes
        levels.append(0)
        hashes.append(leaf)
        made: list[tuple[int, bytes]] = []
        while len(levels) > 1 and levels[-1] == levels[-2]:
            right = hashes.pop()
            level = levels.pop() + 1
            hashes[-1] = node_hash(hashes[-1], right)
            levels[-1] = level
            made.append((level, hashes[-1]))
        self.size += 1
        return made

    def root(self) -> bytes:
        """The Merkle Tree Hash of the leaves pushed so far."""
        if not self.hashes:
            return EMPTY_ROOT
        acc = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            acc = node_hash(h, acc)
        return acc


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> bytes:
    """The Merkle Tree Hash of a sequence of leaf hashes, in one pass (O(n) hashes, O(log n) memory)."""
    frontier = _Frontier()
    for h in hashes:
        frontier.push(h)
    return frontier.root()


class MerkleView:
    """RFC 6962 roots and proofs over any store of perfect-subtree hashes.

    A subclass says how many leaves there are (``size``) and gives ``perfect(level, index)``: the hash of leaves
    [index·2^level, (index+1)·2^level) (level 0: a leaf hash). Every subtree of the RFC's recursion starts at a
    multiple of the smallest power of two not below its width, so its perfect parts are always aligned.
    """

    @property
    def size(self) -> int:
        raise NotImplementedError

    def perfect(self, level: int, index: int) -> bytes:
        raise NotImplementedError

    def _check_size(self, size: int | None) -> int:
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise InputError(f"tree size {n} is outside 0..{self.size}", where="Merkle tree")
        return n

    def range_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a subtree of the RFC recursion (lo aligned as described in the class docstring)."""
        width = hi - lo
        if width <= 0:
            return EMPTY_ROOT
        if _is_power_of_two(width):
            level = width.bit_length() - 1
            if lo % width:
                raise ValueError(f"range [{lo}, {hi}) is not an aligned subtree")
            return self.perfect(level, lo >> level)
        k = _split(width)
        return node_hash(self.range_hash(lo, lo + k), self.range_hash(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        """The Merkle Tree Hash of the first ``size`` leaves (default: all)."""
        return self.range_hash(0, self._check_size(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 §2.1.1 PATH(index, D[0:size]): sibling hashes from the leaf up to the root."""
        n = self._check_size(size)
        if not 0 <= index < n:
            raise InputError(f"leaf index {index} is outside 0..{n - 1}", where="Merkle tree")
        path: list[bytes] = []
        lo, hi = 0, n
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self.range_hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.range_hash(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 §2.1.2 PROOF(old_size, D[0:new_size]); empty when old_size is 0 or equals new_size."""
        n = self._check_size(new_size)
        if not 0 <= old_size <= n:
            raise InputError(f"old tree size {old_size} is outside 0..{n}", where="Merkle tree")
        if old_size in (0, n):
            return []
        proof: list[bytes] = []
        lo, hi, m, whole = 0, n, old_size, True  # SUBPROOF(m, D[lo:hi], whole)
        while True:
            if m == hi - lo:
                if not whole:
                    proof.append(self.range_hash(lo, hi))
                break
            k = _split(hi - lo)
            if m <= k:
                proof.append(self.range_hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.range_hash(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        proof.reverse()
        return proof


class MerkleTree(MerkleView):
    """An in-memory RFC 6962 tree (all perfect-subtree hashes kept: about 2n hashes)."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self._frontier = _Frontier()
        for data in leaves:
            self.append(data)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        """Append leaf data; returns its index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, h: bytes) -> int:
        """Append an already computed leaf hash; returns its index."""
        index = self.size
        self._levels[0].append(h)
        for level, made in self._frontier.push(h):
            if level == len(self._levels):
                self._levels.append([])
            self._levels[level].append(made)
        return index

    def perfect(self, level: int, index: int) -> bytes:
        return self._levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        if size is None or size == self.size:
            return self._frontier.root()
        return super().root(size)


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: whether ``path`` proves leaf hash ``leaf`` is entry ``index`` of the tree of ``size``
    with ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: whether ``proof`` shows the tree (old_size, old_root) is a prefix of (new_size, new_root).

    Equal sizes need an empty proof and equal roots; the empty tree (root SHA-256("")) is a prefix of every tree.
    """
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if old_size == 0:
        return not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
    if not proof:
        return False
    path = list(proof)
    if _is_power_of_two(old_size):
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


# ---------------------------------------------------------------------------------------------
# entries, receipts and checkpoints


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8, no NaN or infinity (ValueError/TypeError otherwise)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def utc_timestamp() -> str:
    """Now as ISO 8601 UTC with microseconds, e.g. ``2025-01-31T12:00:00.000001Z``."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AuditEntry:
    """One event in the audit log (what the original design lists, plus free-form ``details``).

    ``result_hash`` is the content hash of the result or artifact the event is about (JSON key ``hash``).
    ``timestamp`` (ISO 8601 UTC) is filled in at append time when empty.
    """

    event: str
    scene_id: str | None = None
    verification_id: str | None = None
    consensus_score: float | None = None
    participating_nodes: tuple[str, ...] = ()
    quality_passed: bool | None = None
    result_hash: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    timestamp: str | None = None

    _KEYS = ("event", "scene_id", "verification_id", "consensus_score", "participating_nodes", "quality_passed",
             "hash", "details", "timestamp")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        """From the JSON form (keys as in ``to_record``; ``index`` is ignored)."""
        unknown = sorted(set(data) - set(cls._KEYS) - {"index"})
        if unknown:
            raise InputError(f"unknown audit entry field(s): {', '.join(unknown)}", where="audit entry",
                             hint=f"known fields: {', '.join(cls._KEYS)}; put anything else under 'details'")
        if "event" not in data:
            raise InputError("an audit entry needs an 'event'", where="audit entry")
        return cls(event=data["event"], scene_id=data.get("scene_id"), verification_id=data.get("verification_id"),
                   consensus_score=data.get("consensus_score"),
                   participating_nodes=data.get("participating_nodes") or (),
                   quality_passed=data.get("quality_passed"), result_hash=data.get("hash"),
                   details=dict(data.get("details") or {}), timestamp=data.get("timestamp"))

    def to_record(self, index: int) -> dict[str, Any]:
        """The JSON object stored as entry ``index`` (validated; InputError says which field is wrong).

        ``timestamp`` stays None when empty: ``AuditLog.append`` stamps it.
        """

        def text(name: str, value: Any, *, required: bool = False) -> str | None:
            if value is None and not required:
                return None
            if not isinstance(value, str) or (required and not value):
                raise InputError(f"'{name}' must be a {'non-empty ' if required else ''}string, got {value!r}",
                                 where="audit entry")
            return value

        score = self.consensus_score
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
                raise InputError(f"'consensus_score' must be a finite number, got {score!r}", where="audit entry")
            if not 0.0 <= score <= 1.0:
                raise InputError(f"'consensus_score' must be in [0, 1], got {score}", where="audit entry")
            score = float(score)
        if self.quality_passed is not None and not isinstance(self.quality_passed, bool):
            raise InputError(f"'quality_passed' must be true, false or null, got {self.quality_passed!r}",
                             where="audit entry")
        if isinstance(self.participating_nodes, str | bytes) or not isinstance(self.participating_nodes, Iterable):
            raise InputError(f"'participating_nodes' must be a list of node ids, got {self.participating_nodes!r}",
                             where="audit entry")
        nodes = [text("participating_nodes[]", n, required=True) for n in self.participating_nodes]
        if not isinstance(self.details, Mapping):
            raise InputError(f"'details' must be an object, got {type(self.details).__name__}", where="audit entry")
        record = {
            "index": index,
            "timestamp": text("timestamp", self.timestamp),
            "event": text("event", self.event, required=True),
            "scene_id": text("scene_id", self.scene_id),
            "verification_id": text("verification_id", self.verification_id),
            "consensus_score": score,
            "participating_nodes": nodes,
            "quality_passed": self.quality_passed,
            "hash": text("hash", self.result_hash),
            "details": dict(self.details),
        }
        try:
            canonical_json(record)
        except (TypeError, ValueError) as exc:
            raise InputError(f"the entry cannot be written as canonical JSON ({exc})", where="audit entry",
                             hint="use strings, finite numbers, booleans, null, lists and objects with string keys") \
                from None
        return record


def receipt_message(node_id: str, index: int, leaf: bytes, root: bytes) -> bytes:
    """The bytes a node signs when it appends entry ``index``: its tree head at size index + 1."""
    body = {"index": index, "leaf_hash": leaf.hex(), "node_id": node_id, "root": root.hex(), "size": index + 1}
    return _RECEIPT_DOMAIN + canonical_json(body)


def checkpoint_message(node_id: str, size: int, root: bytes, timestamp: str) -> bytes:
    """The bytes a checkpoint's signature covers (domain-separated canonical JSON)."""
    return _CHECKPOINT_DOMAIN + canonical_json({"node_id": node_id, "root": root.hex(), "size": size,
                                                "timestamp": timestamp})


def _signature_ok(public_key: Ed25519PublicKey, message: bytes, signature: Any) -> bool:
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    """A public key as standard base64 of its 32 raw bytes (as NodeIdentity carries it)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key(b64: str) -> Ed25519PublicKey:
    """An Ed25519 public key from standard base64 of its raw bytes (InputError if malformed)."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InputError(f"not an Ed25519 public key ({exc})", where="public key") from None


@dataclass(frozen=True)
class SignedCheckpoint:
    """A signed tree head: the node vouches that its log had ``size`` entries with Merkle root ``root``."""

    node_id: str
    size: int
    root: bytes
    timestamp: str
    signature: bytes

    def message(self) -> bytes:
        """The bytes the signature covers."""
        return checkpoint_message(self.node_id, self.size, self.root, self.timestamp)

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """Whether the signature is the node's over these fields."""
        return _signature_ok(public_key, self.message(), self.signature)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (root in hex, signature in base64)."""
        return {"node_id": self.node_id, "size": self.size, "root": self.root.hex(), "timestamp": self.timestamp,
                "signature": base64.b64encode(self.signature).decode("ascii")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedCheckpoint:
        """From ``to_dict``'s form; InputError when a field is missing or malformed."""
        try:
            root = bytes.fromhex(data["root"])
            signature = base64.b64decode(data["signature"], validate=True)
            size = data["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or len(root) != HASH_SIZE:
                raise ValueError("size must be a non-negative integer and root 32 bytes")
            return cls(str(data["node_id"]), size, root, str(data["timestamp"]), signature)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise InputError(f"not a signed audit checkpoint ({exc!r})", where="checkpoint",
                             hint="use the JSON that `optimizer audit checkpoint --json` prints") from None


# ---------------------------------------------------------------------------------------------
# verification report


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a stored log: ``index`` is the entry at fault, ``checkpoint`` the checkpoint's number."""

    kind: str
    message: str
    index: int | None = None
    checkpoint: int | None = None

    def __str__(self) -> str:
        if self.index is not None:
            return f"entry {self.index}: {self.message}"
        if self.checkpoint is not None:
            return f"checkpoint #{self.checkpoint}: {self.message}"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index, "checkpoint": self.checkpoint, "message": str(self)}


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of ``AuditLog.verify``: ``problems`` with a wrong schema or key first, then by lowest entry index,
    then those about checkpoints and stored subtree hashes."""

    path: str
    entries: int
    checkpoints: int
    root: str | None
    problems: tuple[Problem, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "entries": self.entries, "checkpoints": self.checkpoints,
                "root": self.root, "first_problem": self.first_problem.to_dict() if self.first_problem else None,
                "problems": [p.to_dict() for p in self.problems], "seconds": round(self.seconds, 6)}


# ---------------------------------------------------------------------------------------------
# the stored log

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL, leaf_hash BLOB NOT NULL, "
    "tree_root BLOB NOT NULL, signature BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS nodes (end_leaf INTEGER NOT NULL, level INTEGER NOT NULL, hash BLOB NOT NULL, "
    "PRIMARY KEY (end_leaf, level)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS checkpoints (seq INTEGER PRIMARY KEY, node_id TEXT NOT NULL, size INTEGER NOT NULL, "
    "root BLOB NOT NULL, timestamp TEXT NOT NULL, signature BLOB NOT NULL)",
    *(f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
      f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
      for table in ("entries", "nodes", "checkpoints") for op in ("UPDATE", "DELETE")),
)

_TABLES = ("meta", "entries", "nodes", "checkpoints")


class _StoredTree(MerkleView):
    """The Merkle view of the stored log inside one read or write transaction."""

    def __init__(self, conn: sqlite3.Connection, size: int, path: Path) -> None:
        self._conn, self._size, self._path = conn, size, path

    @property
    def size(self) -> int:
        return self._size

    def perfect(self, level: int, index: int) -> bytes:
        if level == 0:
            row = self._conn.execute("SELECT leaf_hash FROM entries WHERE idx = ?", (index,)).fetchone()
            what = f"the leaf hash of entry {index}"
        else:
            row = self._conn.execute("SELECT hash FROM nodes WHERE end_leaf = ? AND level = ?",
                                     ((index + 1) << level, level)).fetchone()
            what = f"the subtree hash of entries {index << level}..{((index + 1) << level) - 1}"
        if row is None or not isinstance(row[0], bytes) or len(row[0]) != HASH_SIZE:
            raise AuditLogCorrupt(f"{what} is missing or malformed", where=str(self._path),
                                  hint="run `optimizer audit verify` to find what was changed")
        return row[0]

    def frontier(self) -> _Frontier:
        """The right edge of the stored tree (one perfect subtree per set bit of its size)."""
        levels, hashes = [], []
        for level in range(self._size.bit_length() - 1, -1, -1):
            if self._size >> level & 1:
                levels.append(level)
                hashes.append(self.perfect(level, (self._size >> level) - 1))
        return _Frontier(self._size, levels, hashes)


def _as_bytes(value: Any) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # someone wrote TEXT into a BLOB column
        return value.encode("utf-8", "surrogatepass")
    return None


class AuditLog:
    """The node's append-only audit log in ``data_dir/audit.sqlite``.

    ``signing_key`` signs receipts and checkpoints; pass ``None`` with ``public_key`` to open a log only to read,
    prove and verify it. Safe to use from many threads (a connection each) and many processes (SQLite locking);
    appends are serialised. With ``durable`` (the default) every append is fsynced before it returns.
    """

    def __init__(self, data_dir: Path | str, signing_key: Ed25519PrivateKey | None, node_id: str, *,
                 public_key: Ed25519PublicKey | None = None, filename: str = LOG_FILE, durable: bool = True) -> None:
        if signing_key is None and public_key is None:
            raise ConfigError("an audit log needs the node's signing key or at least its public key",
                              where="AuditLog")
        if not node_id:
            raise ConfigError("an audit log needs the node id", where="AuditLog")
        self.path = Path(data_dir) / filename
        self.node_id = node_id
        self._key = signing_key
        self.public_key = signing_key.public_key() if signing_key is not None else public_key
        assert self.public_key is not None
        self.public_key_b64 = public_key_b64(self.public_key)
        self.durable = durable
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._pid = os.getpid()
        self._cache_lock = threading.Lock()
        self._cache: _Frontier | None = None
        if signing_key is None:
            if not self.path.is_file():
                raise InputError("there is no audit log here", where=str(self.path))
            return
        if not self.path.exists():
            Path(data_dir).mkdir(parents=True, exist_ok=True)
            # SQLite gives the -wal and -shm files the database file's permissions: make it 0600 first.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
        with self._write() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                 [("format", FORMAT), ("node_id", node_id), ("public_key", self.public_key_b64)])
            else:
                self._check_meta(meta)

    # -- connections and transactions

    def _conn(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # a forked child must not use its parent's connections
            self._pid = os.getpid()
            self._local = threading.local()
            self._conns = []
            self._conns_lock = threading.Lock()
            self._cache = None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA temp_store = MEMORY")
            except sqlite3.Error as exc:
                raise ConfigError(f"cannot open the audit log: {exc}", where=str(self.path)) from exc
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_meta(self, meta: Mapping[str, str]) -> None:
        if meta.get("format") != FORMAT:
            raise ConfigError(f"unknown audit log format {meta.get('format')!r} (this engine knows {FORMAT})",
                              where=str(self.path), hint="use the engine version that wrote it")
        if meta.get("node_id") != self.node_id or meta.get("public_key") != self.public_key_b64:
            raise ConfigError(f"this audit log belongs to node {meta.get('node_id')!r} (key {meta.get('public_key')}),"
                              f" not to node {self.node_id!r}", where=str(self.path),
                              hint="open it with the key of the node that wrote it")

    def _require_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            raise ConfigError("this audit log was opened without the node's signing key", where=str(self.path),
                              hint="open it with the node's key to append or checkpoint")
        return self._key

    @staticmethod
    def _size(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT MAX(idx) FROM entries").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def _frontier(self, conn: sqlite3.Connection, size: int) -> _Frontier:
        with self._cache_lock:
            cached = self._cache
        if cached is not None and cached.size == size:
            return cached.copy()
        return _StoredTree(conn, size, self.path).frontier()

    # -- writing

    def append(self, entry: AuditEntry | Mapping[str, Any]) -> int:
        """Append one entry; returns its index. O(log n) work, one transaction (fsynced when durable)."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[AuditEntry | Mapping[str, Any]]) -> list[int]:
        """Append several entries in one transaction (all or none); returns their indices."""
        key = self._require_key()
        # validated before the write lock is taken; stamped inside it, so timestamps follow the indices
        records = [(e if isinstance(e, AuditEntry) else AuditEntry.from_dict(e)).to_record(0) for e in entries]
        indices: list[int] = []
        with self._write() as conn:
            size = self._size(conn)
            frontier = self._frontier(conn, size)
            now = utc_timestamp()
            entry_rows, node_rows = [], []
            for record in records:
                index = frontier.size
                record["index"] = index
                record["timestamp"] = record["timestamp"] or now
                data = canonical_json(record)
                leaf = leaf_hash(data)
                for level, h in frontier.push(leaf):
                    node_rows.append((index + 1, level, h))
                root = frontier.root()
                signature = key.sign(receipt_message(self.node_id, index, leaf, root))
                entry_rows.append((index, data, leaf, root, signature))
                indices.append(index)
            conn.executemany("INSERT INTO entries (idx, entry, leaf_hash, tree_root, signature) VALUES (?, ?, ?, ?, ?)",
                             entry_rows)
            conn.executemany("INSERT INTO nodes (end_leaf, level, hash) VALUES (?, ?, ?)", node_rows)
        with self._cache_lock:
            self._cache = frontier
        return indices

    def checkpoint(self) -> SignedCheckpoint:
        """Sign and store a tree head for the log as it is now; returns it."""
        key = self._require_key()
        with self._write() as conn:
            size = self._size(conn)
            root = self._frontier(conn, size).root()
            timestamp = utc_timestamp()
            signature = key.sign(checkpoint_message(self.node_id, size, root, timestamp))
            conn.execute("INSERT INTO checkpoints (node_id, size, root, timestamp, signature) VALUES (?, ?, ?, ?, ?)",
                         (self.node_id, size, root, timestamp, signature))
        return SignedCheckpoint(self.node_id, size, root, timestamp, signature)

    # -- reading

    @property
    def size(self) -> int:
        """Number of entries (highest index + 1)."""
        with self._read() as conn:
            return self._size(conn)

    def root(self, size: int | None = None) -> bytes:
        """The Merkle root of the first ``size`` entries (default: all), from the stored subtree hashes."""
        with self._read() as conn:
            tree = _StoredTree(conn, self._size(conn), self.path)
            return tree.root(size)

    def entry(self, index: int) -> dict[str, Any]:
        """Entry ``index`` as stored (parsed JSON); NotFound-style InputError when there is none."""
        with self._read() as conn:
            row = conn.execute("SELECT entry FROM entries WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise InputError(f"there is no entry {index} in the audit log", where=str(self.path))
        return json.loads(_as_bytes(row[0]) or b"null")

    def entries(self, start: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Entries from index ``start`` on (at most ``limit``), parsed."""
        with self._read() as conn:
            rows = conn.execute("SELECT entry FROM entries WHERE idx >= ? ORDER BY idx LIMIT ?",
                                (start, -1 if limit is None else limit)).fetchall()
        return [json.loads(_as_bytes(r[0]) or b"null") for r in rows]

    @staticmethod
    def _checkpoint_from_row(row: Sequence[Any]) -> SignedCheckpoint:
        _, node_id, size, root, timestamp, signature = row
        return SignedCheckpoint(str(node_id), int(size), _as_bytes(root) or b"", str(timestamp),
                                _as_bytes(signature) or b"")

    def checkpoints(self) -> list[SignedCheckpoint]:
        """Every stored checkpoint, oldest first."""
        with self._read() as conn:
            rows = conn.execute("SELECT seq, node_id, size, root, timestamp, signature FROM checkpoints "
                                "ORDER BY seq").fetchall()
        return [self._checkpoint_from_row(r) for r in rows]

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        """The newest stored checkpoint, or None."""
        with self._read() as conn:
            row = conn.execute("SELECT seq, node_id, size, root, timestamp, signature FROM checkpoints "
                               "ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else self._checkpoint_from_row(row)

    def consistency(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 consistency proof between two sizes of the stored log (O(log² n) indexed reads at most)."""
        with self._read() as conn:
            return _StoredTree(conn, self._size(conn), self.path).consistency_proof(old_size, new_size)

    def prove(self, index: int) -> dict[str, Any]:
        """An inclusion proof of entry ``index`` against the newest checkpoint, checked before it is returned.

        The leaf is recomputed from the stored entry; the siblings come from the stored subtree hashes. O(log² n)
        indexed reads at most. InputError when no checkpoint covers the entry; AuditLogCorrupt when the proof or
        the checkpoint's signature does not verify.
        """
        with self._read() as conn:
            row = conn.execute("SELECT seq, node_id, size, root, timestamp, signature FROM checkpoints "
                               "ORDER BY seq DESC LIMIT 1").fetchone()
            if row is None:
                raise InputError("the audit log has no checkpoint to prove against", where=str(self.path),
                                 hint="make one with `optimizer audit checkpoint`")
            seq, checkpoint = int(row[0]), self._checkpoint_from_row(row)
            if not 0 <= index < checkpoint.size:
                raise InputError(f"entry {index} is not covered by the newest checkpoint (#{seq}, "
                                 f"{checkpoint.size} entries)", where=str(self.path),
                                 hint="make a newer one with `optimizer audit checkpoint`"
                                 if index >= checkpoint.size else "entry indices start at 0")
            entry_row = conn.execute("SELECT entry FROM entries WHERE idx = ?", (index,)).fetchone()
            if entry_row is None or _as_bytes(entry_row[0]) is None:
                raise AuditLogCorrupt(f"entry {index} is missing", where=str(self.path),
                                      hint="run `optimizer audit verify`")
            data = _as_bytes(entry_row[0])
            assert data is not None
            path = _StoredTree(conn, checkpoint.size, self.path).inclusion_proof(index, checkpoint.size)
        leaf = leaf_hash(data)
        try:
            entry = json.loads(data)
        except ValueError:
            entry = None
        proof = {
            "algorithm": "RFC 6962 Merkle tree, SHA-256",
            "index": index,
            "entry": entry,
            "leaf_hash": leaf.hex(),
            "tree_size": checkpoint.size,
            "root": checkpoint.root.hex(),
            "audit_path": [h.hex() for h in path],
            "checkpoint": {"seq": seq, **checkpoint.to_dict()},
            "public_key": self.public_key_b64,
        }
        if not verify_proof(proof, self.public_key):
            raise AuditLogCorrupt(f"the inclusion proof of entry {index} does not verify against checkpoint #{seq}",
                                  where=str(self.path), hint="run `optimizer audit verify` to find what was changed")
        proof["verified"] = True
        return proof

    # -- verification

    def verify(self, *, expect: Sequence[SignedCheckpoint] = ()) -> VerifyReport:
        """Check the whole stored log (see the module docstring); never raises for a damaged log, reports it.

        ``expect``: checkpoints kept outside this file (from peers or reports); each must be signed by this node
        and match the log, which catches a log rolled back or cut short behind them.
        """
        started = time.perf_counter()
        checker = _Verifier(self, expect)
        try:
            with self._read() as conn:
                checker.run(conn)
        except sqlite3.DatabaseError as exc:  # not a database, or tables that are not ours any more
            checker.problem("unreadable", f"the log cannot be read as an audit log database ({exc})")
        problems = sorted(checker.problems, key=lambda p: (p.kind not in ("unreadable", "schema", "key"), p.index is None,
                                                           p.index or 0))
        return VerifyReport(str(self.path), checker.entries, checker.checkpoint_count, checker.root_hex,
                            tuple(problems), time.perf_counter() - started)


def verify_proof(proof: Mapping[str, Any], public_key: Ed25519PublicKey | str) -> bool:
    """Check a proof dict from ``AuditLog.prove`` on its own: the entry's leaf hash, the audit path up to the
    checkpoint's root, and the checkpoint's signature by ``public_key`` (an Ed25519 key or its base64)."""
    try:
        key = load_public_key(public_key) if isinstance(public_key, str) else public_key
        checkpoint = SignedCheckpoint.from_dict(proof["checkpoint"])
        leaf = leaf_hash(canonical_json(proof["entry"]))
        path = [bytes.fromhex(h) for h in proof["audit_path"]]
        index = proof["index"]
    except (InputError, KeyError, TypeError, ValueError):
        return False
    if not isinstance(proof["entry"], dict) or proof["entry"].get("index") != index:
        return False
    return (checkpoint.verify(key) and checkpoint.size == proof.get("tree_size")
            and checkpoint.root.hex() == proof.get("root")
            and verify_inclusion(leaf, index, checkpoint.size, path, checkpoint.root))


class _Verifier:
    """One streaming pass over a stored log inside a read transaction (see ``AuditLog.verify``)."""

    def __init__(self, log: AuditLog, expect: Sequence[SignedCheckpoint]) -> None:
        self.log, self.expect = log, expect
        self.conn: sqlite3.Connection
        self.problems: list[Problem] = []
        self.entries = 0
        self.checkpoint_count = 0
        self.root_hex: str | None = None

    def problem(self, kind: str, message: str, *, index: int | None = None, checkpoint: int | None = None) -> None:
        self.problems.append(Problem(kind, message, index, checkpoint))

    def run(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in _TABLES if t not in tables]
        if missing:
            self.problem("schema", f"table(s) {', '.join(missing)} missing from {self.log.path}")
            return
        meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            self.problem("schema", f"unknown format {meta.get('format')!r} (expected {FORMAT})")
        if meta.get("node_id") != self.log.node_id or meta.get("public_key") != self.log.public_key_b64:
            self.problem("key", f"the log names node {meta.get('node_id')!r} with key {meta.get('public_key')}, "
                                f"not this node ({self.log.node_id!r}, {self.log.public_key_b64})")
        checkpoints = self.load_checkpoints()
        due: dict[int, list[tuple[str, int | None, bytes]]] = {}
        for label, seq, cp in checkpoints:
            due.setdefault(cp.size, []).append((label, seq, cp.root))
        complete = self.entry_pass(due)
        if complete:
            self.after_pass(checkpoints)

    def load_checkpoints(self) -> list[tuple[str, int | None, SignedCheckpoint]]:
        """Checkpoints whose signatures verify (stored ones in order, then the expected ones)."""
        good: list[tuple[str, int | None, SignedCheckpoint]] = []
        rows = self.conn.execute("SELECT seq, node_id, size, root, timestamp, signature FROM checkpoints "
                                 "ORDER BY seq").fetchall()
        self.checkpoint_count = len(rows)
        for row in rows:
            seq = row[0]
            if not isinstance(row[2], int) or row[2] < 0 or not isinstance(row[3], bytes) or len(row[3]) != HASH_SIZE:
                self.problem("checkpoint-malformed", "its size or root is malformed", checkpoint=seq)
                continue
            cp = AuditLog._checkpoint_from_row(row)
            if cp.node_id != self.log.node_id:
                self.problem("checkpoint-node", f"it names node {cp.node_id!r}, not {self.log.node_id!r}",
                             checkpoint=seq)
            elif not cp.verify(self.log.public_key):
                self.problem("checkpoint-signature", f"its signature (size {cp.size}, root {cp.root.hex()[:16]}…, "
                                                     f"{cp.timestamp}) is not the node's", checkpoint=seq)
            else:
                good.append((f"checkpoint #{seq}", seq, cp))
        for n, cp in enumerate(self.expect, 1):
            if cp.node_id != self.log.node_id or not cp.verify(self.log.public_key):
                self.problem("expected-checkpoint", f"expected checkpoint {n} (size {cp.size}) is not signed by "
                                                    f"node {self.log.node_id}")
            else:
                good.append((f"expected checkpoint {n}", None, cp))
        return good

    def entry_pass(self, due: Mapping[int, list[tuple[str, int | None, bytes]]]) -> bool:
        """Stream entries and stored subtree hashes; True when every entry checked out."""
        log, key = self.log, self.log.public_key
        frontier = _Frontier()
        for label, seq, root in due.get(0, []):
            if not hmac.compare_digest(root, EMPTY_ROOT):
                self.problem("checkpoint-root", f"{label} (size 0) does not carry the empty tree's root",
                             checkpoint=seq)
        nodes = self.conn.execute("SELECT end_leaf, level, hash FROM nodes ORDER BY end_leaf, level")
        pending = nodes.fetchone()
        node_problem = False
        expected = 0
        for idx, raw_entry, raw_leaf, raw_root, signature in self.conn.execute(
                "SELECT idx, entry, leaf_hash, tree_root, signature FROM entries ORDER BY idx"):
            i = expected
            if idx != i:
                if isinstance(idx, int) and idx > i:
                    gap = f"entries {i}..{idx - 1} are" if idx - 1 > i else f"entry {i} is"
                    self.problem("missing", f"missing: {gap} gone (the stored entries jump to {idx})", index=i)
                else:
                    self.problem("index", f"a row with index {idx!r} is stored where entry {i} belongs", index=i)
                return False
            data = _as_bytes(raw_entry)
            record: Any = None
            if data is not None:
                try:
                    record = json.loads(data)
                except ValueError:
                    record = None
            if record is None or not isinstance(record, dict):
                self.problem("entry-json", "the stored entry is not a JSON object", index=i)
                return False
            assert data is not None
            if canonical_json(record) != data:
                self.problem("entry-not-canonical", "the stored entry is not in canonical JSON form (edited?)",
                             index=i)
                return False
            if record.get("index") != i:
                self.problem("entry-moved", f"the stored entry says it is entry {record.get('index')!r} (rows moved?)",
                             index=i)
                return False
            leaf = leaf_hash(data)
            if not isinstance(raw_leaf, bytes) or not hmac.compare_digest(raw_leaf, leaf):
                self.problem("leaf-hash", "the stored leaf hash does not match the entry (the entry or its hash "
                                          "was changed)", index=i)
                return False
            made = frontier.push(leaf)
            root = frontier.root()
            if not isinstance(raw_root, bytes) or not hmac.compare_digest(raw_root, root):
                self.problem("receipt-root", "the tree root recorded with this entry differs from the one "
                                             f"recomputed from entries 0..{i} (this entry's record was changed)",
                             index=i)
                return False
            if not _signature_ok(key, receipt_message(log.node_id, i, leaf, root), signature):
                self.problem("receipt-signature", "its receipt is not signed by the node over the recomputed tree "
                                                  "head (the entry or its hashes were rewritten)", index=i)
                return False
            for level, h in made:
                while pending is not None and (pending[0], pending[1]) < (i + 1, level):
                    if not node_problem:
                        self.problem("subtree", f"an unexpected subtree hash is stored (end {pending[0]}, "
                                                f"level {pending[1]})")
                        node_problem = True
                    pending = nodes.fetchone()
                if pending is None or (pending[0], pending[1]) != (i + 1, level):
                    if not node_problem:
                        self.problem("subtree", f"the subtree hash of entries {i + 1 - (1 << level)}..{i} is missing")
                        node_problem = True
                    continue
                if not node_problem and (not isinstance(pending[2], bytes)
                                         or not hmac.compare_digest(pending[2], h)):
                    self.problem("subtree", f"the stored subtree hash of entries {i + 1 - (1 << level)}..{i} is "
                                            f"wrong (proofs through it would fail)")
                    node_problem = True
                pending = nodes.fetchone()
            for label, seq, cp_root in due.get(i + 1, []):
                if not hmac.compare_digest(cp_root, root):
                    self.problem("checkpoint-root", f"{label} (size {i + 1}) signs root {cp_root.hex()[:16]}…, but "
                                                    f"entries 0..{i} hash to {root.hex()[:16]}…", checkpoint=seq)
            expected += 1
            self.entries = expected
        if pending is not None and not node_problem:
            self.problem("subtree", f"a subtree hash is stored beyond the last entry (end {pending[0]}, "
                                    f"level {pending[1]})")
        self.root_hex = frontier.root().hex()
        n = expected
        for size in sorted(s for s in due if s > n):
            for label, seq, _ in due[size]:
                gap = f"entries {n}..{size - 1} are" if size - 1 > n else f"entry {n} is"
                self.problem("missing", f"missing: {label} covers {size} entries but the log ends at "
                                        f"{n} ({gap} gone)", index=n, checkpoint=seq)
        return True

    def after_pass(self, checkpoints: Sequence[tuple[str, int | None, SignedCheckpoint]]) -> None:
        """Successive stored checkpoints must extend each other (RFC 6962 consistency proofs)."""
        if any(p.kind in ("subtree", "missing") for p in self.problems):
            return  # proofs from the stored subtree hashes would only repeat those problems
        tree = _StoredTree(self.conn, self.entries, self.log.path)
        stored = [(label, seq, cp) for label, seq, cp in checkpoints if seq is not None]
        for (_, _, a), (label, seq, b) in itertools.pairwise(stored):
            if b.size < a.size:
                self.problem("checkpoint-shrank", f"it covers {b.size} entries, fewer than the {a.size} of the one "
                                                  f"before it", checkpoint=seq)
                continue
            try:
                proof = tree.consistency_proof(a.size, b.size)
            except AuditLogCorrupt as exc:
                self.problem("subtree", str(exc))
                return
            if not verify_consistency(a.size, b.size, a.root, b.root, proof):
                self.problem("checkpoint-inconsistent", f"{label} (size {b.size}) does not extend the checkpoint "
                                                        f"before it (size {a.size})", checkpoint=seq)


__all__ = [
    "EMPTY_ROOT",
    "LOG_FILE",
    "AuditEntry",
    "AuditLog",
    "AuditLogCorrupt",
    "MerkleTree",
    "MerkleView",
    "Problem",
    "SignedCheckpoint",
    "VerifyReport",
    "canonical_json",
    "checkpoint_message",
    "leaf_hash",
    "load_public_key",
    "mth",
    "node_hash",
    "public_key_b64",
    "receipt_message",
    "root_from_leaf_hashes",
    "utc_timestamp",
    "verify_consistency",
    "verify_inclusion",
    "verify_proof",
]
