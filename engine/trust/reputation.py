"""Peer reputations as in the original design, persisted in ``data_dir/trust.sqlite3``.

* A node the book has never seen starts at ``INITIAL_REPUTATION`` = 0.5: half the weight of a
  perfect record, so a newcomer (or a Sybil identity) cannot outvote established peers.
* Success (the node voted the outcome of a VALIDATED verification): reputation += 0.01 ×
  agreement, where agreement is that verification's consensus score (0.67..1): agreeing with a
  near-unanimous verdict earns more than agreeing with a narrow one.
* Failure: reputation −= 0.05. A failure is voting against the outcome of a VALIDATED
  verification, or an equivocation (two different signed answers for one verification). Other
  rejected votes (bad signature, replay, stale, ...) are not the node's provable fault (a third
  party can cause them) and cost nothing; see ``engine.trust.votes``. A DISPUTED verification
  moves nobody's reputation except the equivocators': there is no verdict to agree with.
* Reputation is clamped to [0, 1] and kept to 12 decimals (so ten penalties from 0.5 reach 0 exactly,
  not a float residue). Each success or failure counts one verification.
* Trust is revoked when the success rate (successes / verifications) is below 0.5 after more than
  10 verifications. A revoked node weighs 0 in consensus and stays revoked: later rounds do not
  change its record. Only an operator can give it another chance with ``restore(node_id)``, which
  is a fresh start: reputation back to the initial value and the counts to 0 (the revocation
  stays visible in ``revocations``).

Every update is one ``BEGIN IMMEDIATE`` transaction (read, compute, write), so updates from
several threads and processes never lose each other; ``record_round`` applies a whole round in
one transaction.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, InputError, NotFound
from engine.trust.consensus import Ballot, ConsensusResult, Verdict
from engine.trust.peers import check_node_id, migrate, open_trust_db

log = logging.getLogger(__name__)

INITIAL_REPUTATION = 0.5
REWARD = 0.01
PENALTY = 0.05
REVOKE_SUCCESS_RATE = 0.5
REVOKE_AFTER = 10

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS reputations (
        node_id TEXT PRIMARY KEY,
        reputation REAL NOT NULL,
        verifications INTEGER NOT NULL,
        successes INTEGER NOT NULL,
        revoked_at REAL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS revocations (
        id INTEGER PRIMARY KEY,
        node_id TEXT NOT NULL,
        event TEXT NOT NULL,
        at REAL NOT NULL,
        reputation REAL NOT NULL,
        verifications INTEGER NOT NULL,
        successes INTEGER NOT NULL
    )""",
)


@dataclass(frozen=True)
class Standing:
    """A node's record."""

    node_id: str
    reputation: float
    verifications: int
    successes: int
    revoked_at: float | None = None
    updated_at: float | None = None

    @property
    def revoked(self) -> bool:
        """Whether trust in this node is revoked."""
        return self.revoked_at is not None

    @property
    def success_rate(self) -> float | None:
        """successes / verifications; None before the first verification."""
        return self.successes / self.verifications if self.verifications else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"node_id": self.node_id, "reputation": self.reputation, "verifications": self.verifications,
                "successes": self.successes, "success_rate": self.success_rate, "revoked": self.revoked,
                "revoked_at": self.revoked_at, "updated_at": self.updated_at}


_COLUMNS = "node_id, reputation, verifications, successes, revoked_at, updated_at"


class ReputationBook:
    """Reputations of peer nodes, persisted; the rule's numbers are parameters with the design's defaults."""

    def __init__(self, data_dir: Path, *, initial: float = INITIAL_REPUTATION, reward: float = REWARD,
                 penalty: float = PENALTY, revoke_below: float = REVOKE_SUCCESS_RATE,
                 revoke_after: int = REVOKE_AFTER) -> None:
        for name, value in (("initial", initial), ("reward", reward), ("penalty", penalty),
                            ("revoke_below", revoke_below)):
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"{name} must be in [0, 1], not {value!r}", where="ReputationBook")
        if isinstance(revoke_after, bool) or not isinstance(revoke_after, int) or revoke_after < 0:
            raise ConfigError(f"revoke_after must be a non-negative integer, not {revoke_after!r}",
                              where="ReputationBook")
        self.initial, self.reward, self.penalty = float(initial), float(reward), float(penalty)
        self.revoke_below, self.revoke_after = float(revoke_below), revoke_after
        self.db = open_trust_db(data_dir)
        migrate(self.db, "reputation_schema", 1, _SCHEMA)

    # -- reading

    def _fresh(self, node_id: str) -> Standing:
        return Standing(node_id, self.initial, 0, 0)

    def get(self, node_id: str) -> Standing:
        """This node's standing (the initial one if the book has never seen it)."""
        node_id = check_node_id(node_id)
        with self.db.read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM reputations WHERE node_id = ?", (node_id,)).fetchone()
        return self._fresh(node_id) if row is None else Standing(*row)

    def standings(self) -> list[Standing]:
        """Every node the book has a record of, by node id."""
        with self.db.read() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM reputations ORDER BY node_id").fetchall()
        return [Standing(*row) for row in rows]

    def revoked(self) -> set[str]:
        """Node ids whose trust is revoked."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT node_id FROM reputations WHERE revoked_at IS NOT NULL").fetchall()
        return {row[0] for row in rows}

    def revocations(self, node_id: str | None = None) -> list[dict[str, Any]]:
        """The history of revocations and restorations, oldest first."""
        query = "SELECT node_id, event, at, reputation, verifications, successes FROM revocations"
        params: tuple[str, ...] = ()
        if node_id is not None:
            query, params = query + " WHERE node_id = ?", (check_node_id(node_id),)
        with self.db.read() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        keys = ("node_id", "event", "at", "reputation", "verifications", "successes")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def ballot(self, node_id: str, verdict: str, *, capability: float = 1.0,
               specialisations: Iterable[str] = ()) -> Ballot:
        """A consensus ballot for this node's vote, with its current reputation and revocation."""
        standing = self.get(node_id)
        return Ballot(standing.node_id, verdict, standing.reputation, capability, frozenset(specialisations),
                      standing.revoked)

    # -- writing

    def _apply(self, conn: Any, node_id: str, success: bool, agreement: float, now: float) -> Standing:
        row = conn.execute(f"SELECT {_COLUMNS} FROM reputations WHERE node_id = ?", (node_id,)).fetchone()
        old = self._fresh(node_id) if row is None else Standing(*row)
        if old.revoked:
            return old  # revoked nodes stay revoked; their record no longer moves
        change = self.reward * agreement if success else -self.penalty
        reputation = round(min(1.0, max(0.0, old.reputation + change)), 12)  # no float drift: 0.5 − 10 × 0.05 is 0
        verifications = old.verifications + 1
        successes = old.successes + (1 if success else 0)
        revoked_at = None
        if verifications > self.revoke_after and successes / verifications < self.revoke_below:
            revoked_at = now
            conn.execute("INSERT INTO revocations (node_id, event, at, reputation, verifications, successes) "
                         "VALUES (?, 'revoked', ?, ?, ?, ?)", (node_id, now, reputation, verifications, successes))
            log.warning("node %s: trust revoked (success rate %.2f after %d verifications)", node_id,
                        successes / verifications, verifications)
        conn.execute("INSERT OR REPLACE INTO reputations (node_id, reputation, verifications, successes, revoked_at, "
                     "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                     (node_id, reputation, verifications, successes, revoked_at, now))
        return Standing(node_id, reputation, verifications, successes, revoked_at, now)

    def record_success(self, node_id: str, agreement: float) -> Standing:
        """The node agreed with a validated verdict whose consensus score was ``agreement`` (in [0, 1])."""
        node_id = check_node_id(node_id)
        if not (math.isfinite(agreement) and 0.0 <= agreement <= 1.0):
            raise InputError(f"agreement {agreement!r} is not a consensus score in [0, 1]", where=f"node {node_id}")
        with self.db.write() as conn:
            return self._apply(conn, node_id, True, agreement, time.time())

    def record_failure(self, node_id: str) -> Standing:
        """The node disagreed with a validated verdict, or equivocated."""
        node_id = check_node_id(node_id)
        with self.db.write() as conn:
            return self._apply(conn, node_id, False, 0.0, time.time())

    def record_round(self, result: ConsensusResult) -> dict[str, Standing]:
        """Apply one verification's outcome to every node in it, in one transaction.

        VALIDATED: voters of the outcome succeed (agreement = the score), the others fail.
        Either way, the excluded (equivocating) nodes fail. Returns the new standings by node id.
        """
        updates: list[tuple[str, bool]] = [(node, False) for node in result.excluded]
        if result.verdict is Verdict.VALIDATED:
            updates += [(v.node_id, v.verdict == result.outcome) for v in result.votes]
        out: dict[str, Standing] = {}
        now = time.time()
        with self.db.write() as conn:
            for node_id, success in updates:
                out[node_id] = self._apply(conn, check_node_id(node_id), success, result.score, now)
        return out

    def restore(self, node_id: str) -> Standing:
        """Operator action: lift a revocation with a fresh start (initial reputation, counts 0).

        NotFound when the node is not revoked.
        """
        node_id = check_node_id(node_id)
        now = time.time()
        with self.db.write(durable=True) as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM reputations WHERE node_id = ?", (node_id,)).fetchone()
            if row is None or row[4] is None:
                raise NotFound("this node's trust is not revoked", where=f"node {node_id}")
            old = Standing(*row)
            conn.execute("INSERT INTO revocations (node_id, event, at, reputation, verifications, successes) "
                         "VALUES (?, 'restored', ?, ?, ?, ?)",
                         (node_id, now, old.reputation, old.verifications, old.successes))
            conn.execute("UPDATE reputations SET reputation = ?, verifications = 0, successes = 0, revoked_at = NULL, "
                         "updated_at = ? WHERE node_id = ?", (self.initial, now, node_id))
        log.warning("node %s: trust restored by the operator (fresh start at %.2f)", node_id, self.initial)
        return Standing(node_id, self.initial, 0, 0, None, now)

    def close(self) -> None:
        """Close the database connections."""
        self.db.close()


__all__ = [
    "INITIAL_REPUTATION",
    "PENALTY",
    "REVOKE_AFTER",
    "REVOKE_SUCCESS_RATE",
    "REWARD",
    "ReputationBook",
    "Standing",
]
