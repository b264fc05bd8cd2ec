"""The peer allowlist: which Ed25519 public keys may vote, where their nodes listen, what they are good at.

Peers are enrolled by an operator (``optimizer peers add``), never by the network: a vote whose
key is not on this list is rejected (``engine.trust.votes``). Each entry holds the peer's raw
public key (base64), its node id (derived from the key with ``node_id_for``, so a claimed id can
always be re-checked), its URL, an optional name, its compute capability (a positive factor of
its consensus weight, 1.0 for a reference machine) and the job kinds it specialises in (which
boost its weight on jobs of those kinds, see ``engine.trust.consensus``).

Storage: the table ``peers`` in ``data_dir/trust.sqlite3`` (SQLite, WAL, one ``BEGIN IMMEDIATE``
transaction per change; ``engine.service.db``), shared with the vote replay store and the
reputation book. Safe to use from several threads and processes on the same data directory.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.errors import InputError, NotFound
from engine.service.db import Database, check_schema, set_schema
from engine.service.security import ensure_private_dir, is_loopback, node_id_for

TRUST_DB_NAME = "trust.sqlite3"
SCHEMA_VERSION = 1
MAX_CAPABILITY = 1000.0

_NODE_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_MAX_NAME = 64
_MAX_URL = 2048

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS peers (
        node_id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL UNIQUE,
        url TEXT NOT NULL,
        name TEXT,
        capability REAL NOT NULL,
        specialisations TEXT NOT NULL,
        added_at REAL NOT NULL
    )""",
)


def open_trust_db(data_dir: Path) -> Database:
    """The trust database ``data_dir/trust.sqlite3`` (the data folder is created 0700 if missing)."""
    directory = ensure_private_dir(Path(data_dir).expanduser(), tighten=False)
    return Database(directory / TRUST_DB_NAME)


def migrate(db: Database, table: str, version: int, statements: Sequence[str]) -> None:
    """Bring one module's tables in ``db`` to ``version`` (schema version kept in ``table``)."""
    with db.write(durable=True) as conn:
        found = check_schema(conn, table, version, db.path)
        if found < version:
            for statement in statements:
                conn.execute(statement)
            set_schema(conn, table, version)


# ---------------------------------------------------------------------------------------------
# validation


def parse_public_key(key: str, *, where: str = "peer key") -> tuple[str, str]:
    """``(node_id, public_key_b64)`` from a raw Ed25519 public key in base64, or a node identity JSON.

    The identity JSON is what a node prints about itself (``{"node_id": ..., "public_key": ...}``);
    its node id, when present, must be the one the key derives. Raises InputError otherwise.
    """
    if not isinstance(key, str) or not key.strip():
        raise InputError("no public key given", where=where,
                         hint="pass the peer's Ed25519 public key in base64, or its identity JSON")
    text = key.strip()
    claimed: str | None = None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"the identity JSON does not parse ({exc.msg} at character {exc.pos})",
                             where=where) from None
        if not isinstance(data, dict) or not isinstance(data.get("public_key"), str):
            raise InputError("the identity JSON has no \"public_key\" string", where=where,
                             hint='expected {"node_id": "...", "public_key": "<base64>"}')
        text = data["public_key"].strip()
        node = data.get("node_id")
        if node is not None and not isinstance(node, str):
            raise InputError("the identity JSON's \"node_id\" is not a string", where=where)
        claimed = node
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("the public key is not valid base64", where=where,
                         hint="copy the key exactly as the peer printed it") from None
    if len(raw) != 32:
        raise InputError(f"the public key is {len(raw)} bytes long; an Ed25519 public key is 32", where=where,
                         hint="pass the raw public key (base64 of 32 bytes), not a PEM file or a signature")
    node_id = node_id_for(raw)
    if claimed is not None and claimed != node_id:
        raise InputError(f"the identity claims node id {claimed!r} but its key belongs to node {node_id}",
                         where=where, hint="the identity JSON was edited or mixed up with another node's")
    return node_id, base64.b64encode(raw).decode("ascii")


def check_url(url: str) -> str:
    """A peer URL as given (trailing slash removed), or InputError.

    ``http`` is accepted on loopback only: engine nodes refuse to listen beyond loopback without
    TLS (``engine.service.security.check_bind``), so any other peer is reached over ``https``.
    """
    if not isinstance(url, str) or not url.strip():
        raise InputError("no peer URL given", where="--url", hint="e.g. https://gpu-node.example:8770")
    text = url.strip()
    if len(text) > _MAX_URL or any(ord(c) < 33 or ord(c) == 127 for c in text):
        raise InputError("the URL is too long or holds spaces or control characters", where=text[:80])
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"the URL does not parse ({exc})", where=text) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("the URL needs an http:// or https:// scheme and a host", where=text,
                         hint="e.g. https://gpu-node.example:8770")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InputError("the URL must not carry credentials, a query or a fragment", where=text)
    if port == 0:
        raise InputError("port 0 is not a port a peer listens on", where=text)
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise InputError("a peer beyond loopback is reached over TLS, but this URL is plain http", where=text,
                         hint="use https://; engine nodes refuse to listen beyond loopback without TLS")
    return text.rstrip("/")


def check_capability(capability: float, *, where: str = "capability") -> float:
    """A compute capability as a float in (0, 1000], or InputError."""
    if isinstance(capability, bool) or not isinstance(capability, int | float):
        raise InputError(f"the capability must be a number, not {type(capability).__name__}", where=where)
    value = float(capability)
    if not math.isfinite(value) or not 0.0 < value <= MAX_CAPABILITY:
        raise InputError(f"the capability {capability!r} is out of range", where=where,
                         hint=f"a positive factor up to {MAX_CAPABILITY:g}; 1.0 means a reference machine")
    return value


def check_specialisations(kinds: Iterable[str] | str, *, where: str = "specialisations") -> tuple[str, ...]:
    """Job kinds as a sorted tuple without duplicates (a comma-separated string is split), or InputError."""
    if isinstance(kinds, str):
        kinds = kinds.split(",")
    result: set[str] = set()
    for kind in kinds:
        if not isinstance(kind, str):
            raise InputError(f"a specialisation must be a job kind name, not {type(kind).__name__}", where=where)
        name = kind.strip().lower()
        if not name:
            continue
        if not _KIND_RE.match(name):
            raise InputError(f"{kind!r} is not a job kind name", where=where,
                             hint="letters, digits, '_' and '-', starting with a letter, e.g. bake,splat")
        result.add(name)
    return tuple(sorted(result))


def check_node_id(node_id: str, *, where: str = "node id") -> str:
    """A node id (16 lowercase hex characters), or InputError."""
    if not isinstance(node_id, str) or not _NODE_ID_RE.match(node_id.strip().lower()):
        raise InputError(f"{node_id!r} is not a node id", where=where,
                         hint="a node id is 16 hex characters, as `optimizer peers list` shows")
    return node_id.strip().lower()


# ---------------------------------------------------------------------------------------------
# the registry


@dataclass(frozen=True)
class Peer:
    """One enrolled peer."""

    node_id: str
    public_key_b64: str
    url: str
    name: str | None
    capability: float
    specialisations: tuple[str, ...]
    added_at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"node_id": self.node_id, "public_key": self.public_key_b64, "url": self.url, "name": self.name,
                "capability": self.capability, "specialisations": list(self.specialisations),
                "added_at": self.added_at}


def _peer(row: sqlite3.Row | tuple) -> Peer:
    node_id, key, url, name, capability, kinds, added = row
    return Peer(node_id, key, url, name, float(capability), tuple(json.loads(kinds)), float(added))


_COLUMNS = "node_id, public_key, url, name, capability, specialisations, added_at"


class PeerRegistry:
    """The allowlist of peer keys in ``data_dir/trust.sqlite3``."""

    def __init__(self, data_dir: Path) -> None:
        self.db = open_trust_db(data_dir)
        migrate(self.db, "peers_schema", SCHEMA_VERSION, _SCHEMA)

    def add(self, key: str, url: str, *, name: str | None = None, capability: float = 1.0,
            specialisations: Iterable[str] | str = ()) -> Peer:
        """Enrol a peer by its public key (base64) or identity JSON; InputError when invalid or already enrolled."""
        node_id, public_key = parse_public_key(key)
        url = check_url(url)
        capability = check_capability(capability)
        kinds = check_specialisations(specialisations)
        if name is not None:
            name = name.strip() or None
            if name is not None and (len(name) > _MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name)):
                raise InputError(f"the name is longer than {_MAX_NAME} characters or holds control characters",
                                 where=repr(name[:80]))
        peer = Peer(node_id, public_key, url, name, capability, kinds, time.time())
        with self.db.write(durable=True) as conn:
            if conn.execute("SELECT 1 FROM peers WHERE node_id = ?", (node_id,)).fetchone():
                raise InputError("this peer is already enrolled", where=f"node {node_id}",
                                 hint=f"run `optimizer peers remove {node_id}` first to change its entry")
            conn.execute(f"INSERT INTO peers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (node_id, public_key, url, name, capability, json.dumps(list(kinds)), peer.added_at))
        return peer

    def remove(self, node_id: str) -> Peer:
        """Take a peer off the allowlist (its votes are rejected from now on); NotFound when not enrolled."""
        node_id = check_node_id(node_id)
        with self.db.write(durable=True) as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM peers WHERE node_id = ?", (node_id,)).fetchone()
            if row is None:
                raise NotFound("no enrolled peer has this node id", where=f"node {node_id}",
                               hint="`optimizer peers list` shows the enrolled peers")
            conn.execute("DELETE FROM peers WHERE node_id = ?", (node_id,))
        return _peer(row)

    def get(self, node_id: str) -> Peer | None:
        """The enrolled peer with this node id, or None."""
        with self.db.read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM peers WHERE node_id = ?", (node_id,)).fetchone()
        return None if row is None else _peer(row)

    def public_key(self, node_id: str) -> str | None:
        """The enrolled public key (base64) of ``node_id``, or None: what the vote checker asks."""
        peer = self.get(node_id)
        return None if peer is None else peer.public_key_b64

    def list(self) -> list[Peer]:
        """Every enrolled peer, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM peers ORDER BY added_at, node_id").fetchall()
        return [_peer(row) for row in rows]

    def close(self) -> None:
        """Close this registry's database connections."""
        self.db.close()

    def __enter__(self) -> PeerRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["TRUST_DB_NAME", "Peer", "PeerRegistry", "check_url", "open_trust_db", "parse_public_key"]
