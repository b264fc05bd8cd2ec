"""The job store: jobs, their state machine, events and artifacts in SQLite (``data_dir/jobs.sqlite3``, WAL).

Scene and artifact bytes never go into the database: they go through the ``Vault`` (encrypted,
content-addressed) and only their digests are recorded here. Job metadata (kind, options,
messages, errors, artifact names) is stored in clear.

Concurrency: every public method may be called from several threads (one SQLite connection per
thread) and several processes on the same data directory (workers write progress and artifacts
through their own ``JobStore``). Every change runs in one ``BEGIN IMMEDIATE`` transaction and is
committed before the method returns, so nothing acknowledged is lost when a process is killed.
Submissions, state changes, cancellations and artifacts commit with ``synchronous=FULL`` (they
also survive a power cut); progress ticks and messages use ``NORMAL`` (they survive kill -9, and
losing the last tick to a power cut costs nothing).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.errors import (
    ArtifactNotFound,
    IdempotencyConflict,
    InputError,
    InvalidTransition,
    JobNotFound,
    StaleAttempt,
)
from engine.service.db import Database, check_schema, set_schema
from engine.service.security import ensure_private_dir
from engine.service.vault import Vault, is_digest

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2


class JobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})

ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.SCHEDULED, JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.SCHEDULED: frozenset({JobState.QUEUED, JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: frozenset({JobState.VERIFYING, JobState.DONE, JobState.FAILED, JobState.CANCELLED,
                                 JobState.QUEUED}),
    JobState.VERIFYING: frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED}),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}

PRIORITIES = ("now", "economy")
EVENT_TYPES = ("state", "progress", "message", "artifact")
REQUEUED_MESSAGE = "re-queued after the engine stopped"

_KIND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_TEXT = 10_000
_MAX_KEY = 200
_PROGRESS_STEP = 0.01
_PROGRESS_INTERVAL_S = 0.5

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        stage TEXT NOT NULL DEFAULT '',
        progress REAL NOT NULL DEFAULT 0,
        priority TEXT NOT NULL,
        options TEXT NOT NULL,
        scene_digest TEXT,
        idempotency_key TEXT UNIQUE,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        last_seq INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, priority, created_at)",
    "CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs(created_at)",
    """CREATE TABLE IF NOT EXISTS events (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        ts REAL NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS events_by_type ON events(job_id, type, seq)",
    """CREATE TABLE IF NOT EXISTS artifacts (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (job_id, name)
    )""",
)

# version → statements that bring the schema from the version before to it (old rows stay readable)
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: _SCHEMA,
    2: ("ALTER TABLE jobs ADD COLUMN not_before REAL",  # economy: unix time before which it is not claimed
        "ALTER TABLE jobs ADD COLUMN plan TEXT"),  # economy: the plan as JSON (node, window, cost, saving)
}

_JOB_COLUMNS = ("id, kind, state, stage, progress, priority, options, scene_digest, idempotency_key, created_at, "
                "updated_at, attempts, error, cancel_requested, not_before, plan")


# ---------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Artifact:
    """A file a job produced, stored encrypted in the vault under its digest."""

    name: str
    digest: str
    size: int
    content_type: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "digest": self.digest, "size": self.size, "content_type": self.content_type,
                "created_at": self.created_at}


@dataclass(frozen=True)
class Event:
    """One entry of a job's event stream; ``seq`` counts from 1 per job."""

    seq: int
    job_id: str
    ts: float
    type: str  # "state" | "progress" | "message" | "artifact"
    data: dict

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"seq": self.seq, "job_id": self.job_id, "ts": self.ts, "type": self.type, "data": self.data}


@dataclass(frozen=True)
class Job:
    """A job as stored: what to do, where it is, and what happened to it."""

    id: str
    kind: str
    state: JobState
    stage: str
    progress: float
    priority: str  # "now" | "economy"
    options: dict
    scene_digest: str | None
    idempotency_key: str | None
    created_at: float
    updated_at: float
    attempts: int
    error: str | None
    cancel_requested: bool
    transitions: tuple[tuple[str, float], ...]  # (state, unix time), in order, starting with "queued"
    messages: tuple[tuple[float, str], ...]
    artifacts: tuple[Artifact, ...]
    not_before: float | None = None  # economy jobs: not claimed before this unix time (while scheduled)
    plan: dict | None = None  # economy jobs: the economy plan (see ``JobStore.set_plan``)

    @property
    def terminal(self) -> bool:
        """Whether the job is finished (done, failed or cancelled)."""
        return self.state in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``timings`` maps each state to the last time the job entered it."""
        timings: dict[str, float] = {}
        for state, at in self.transitions:
            timings[state] = at
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state.value,
            "terminal": self.terminal,
            "stage": self.stage,
            "progress": self.progress,
            "priority": self.priority,
            "options": self.options,
            "scene_digest": self.scene_digest,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "attempts": self.attempts,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "timings": timings,
            "transitions": [{"state": state, "at": at} for state, at in self.transitions],
            "messages": [{"at": at, "text": text} for at, text in self.messages],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "not_before": self.not_before,
            "plan": self.plan,
        }


# ---------------------------------------------------------------------------------------------
# validation helpers


def _canonical_options(options: object) -> str:
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InputError(f"job options must be an object, not {type(options).__name__}", where="options")
    try:
        return json.dumps(options, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"job options must be plain JSON ({exc})", where="options") from None


def _clip(text: object) -> str:
    text = str(text)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def check_artifact_name(name: object) -> str:
    """An artifact name as given, or InputError: 1..128 characters, no slashes, no '..', no control characters."""
    if not isinstance(name, str) or not name:
        raise InputError("an artifact name must be a non-empty string", where=repr(name))
    problem = ""
    if len(name) > 128:
        problem = f"is {len(name)} characters long (at most 128)"
    elif "/" in name or "\\" in name:
        problem = "contains a slash"
    elif ".." in name or name == ".":
        problem = "contains '..' or is '.'"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "contains control characters"
    if problem:
        raise InputError(f"artifact name {problem}", where=repr(name[:140]),
                         hint="use a plain file name such as 'lightmap.exr'")
    return name


def _check_content_type(content_type: object) -> str:
    if (not isinstance(content_type, str) or not content_type or len(content_type) > 255
            or any(ord(c) < 32 or ord(c) == 127 for c in content_type)):
        raise InputError("a content type must be a short printable string such as 'application/octet-stream'",
                         where=repr(content_type))
    return content_type


# ---------------------------------------------------------------------------------------------
# the store


@dataclass
class _LastProgress:
    stage: str
    fraction: float
    at: float


class JobStore:
    """Jobs in ``data_dir/jobs.sqlite3``; scene and artifact bytes in ``vault`` (encrypted)."""

    def __init__(self, data_dir: Path, vault: Vault, *, clock: Callable[[], float] = time.time) -> None:
        self.data_dir = ensure_private_dir(Path(data_dir), tighten=False)
        self.vault = vault
        self.clock = clock  # unix time against which scheduled jobs' ``not_before`` is checked
        self._db = Database(self.data_dir / "jobs.sqlite3")
        self._last_progress: dict[str, _LastProgress] = {}
        self._progress_lock = threading.Lock()
        with self._db.write(durable=True) as conn:
            found = check_schema(conn, "schema_version", SCHEMA_VERSION, self._db.path)
            if found < SCHEMA_VERSION:
                for version in range(found + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[version]:
                        conn.execute(statement)
                set_schema(conn, "schema_version", SCHEMA_VERSION)

    # -- reading --------------------------------------------------------------------------------

    @staticmethod
    def _jobs_from_rows(conn: sqlite3.Connection, rows: list[tuple]) -> list[Job]:
        if not rows:
            return []
        ids = [r[0] for r in rows]
        transitions: dict[str, list[tuple[str, float]]] = {i: [] for i in ids}
        messages: dict[str, list[tuple[float, str]]] = {i: [] for i in ids}
        artifacts: dict[str, list[Artifact]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for job_id, ts, kind, data in conn.execute(
                f"SELECT job_id, ts, type, data FROM events WHERE job_id IN ({marks}) AND type IN ('state', 'message')"
                " ORDER BY job_id, seq", chunk,
            ):
                payload = json.loads(data)
                if kind == "state":
                    transitions[job_id].append((payload["state"], ts))
                else:
                    messages[job_id].append((ts, payload.get("text", "")))
            for job_id, name, digest, size, content_type, created_at in conn.execute(
                f"SELECT job_id, name, digest, size, content_type, created_at FROM artifacts WHERE job_id IN ({marks})"
                " ORDER BY job_id, created_at, name", chunk,
            ):
                artifacts[job_id].append(Artifact(name, digest, size, content_type, created_at))
        jobs = []
        for (job_id, kind, state, stage, progress, priority, options, scene_digest, idem, created_at, updated_at,
             attempts, error, cancel_requested, not_before, plan) in rows:
            jobs.append(Job(
                id=job_id, kind=kind, state=JobState(state), stage=stage, progress=float(progress), priority=priority,
                options=json.loads(options), scene_digest=scene_digest, idempotency_key=idem,
                created_at=created_at, updated_at=updated_at, attempts=int(attempts), error=error,
                cancel_requested=bool(cancel_requested), transitions=tuple(transitions[job_id]),
                messages=tuple(messages[job_id]), artifacts=tuple(artifacts[job_id]),
                not_before=None if not_before is None else float(not_before),
                plan=None if plan is None else json.loads(plan),
            ))
        return jobs

    def _load(self, conn: sqlite3.Connection, job_id: str) -> Job:
        row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}", where=str(job_id)[:80], hint="list jobs to see their ids")
        return self._jobs_from_rows(conn, [row])[0]

    @staticmethod
    def _state(conn: sqlite3.Connection, job_id: str) -> tuple[JobState, bool]:
        row = conn.execute("SELECT state, cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}", where=str(job_id)[:80], hint="list jobs to see their ids")
        return JobState(row[0]), bool(row[1])

    def get(self, job_id: str) -> Job:
        """Job ``job_id``; JobNotFound naming the id."""
        with self._db.read() as conn:
            return self._load(conn, job_id)

    def list(self, *, state: JobState | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
        """Jobs, newest first, optionally only those in ``state``."""
        limit = max(0, min(int(limit), 10_000))
        offset = max(0, int(offset))
        where, args = "", []
        if state is not None:
            where, args = "WHERE state = ?", [JobState(state).value]
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
            return self._jobs_from_rows(conn, rows)

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """Job ``job_id``'s events with ``seq > after``, in order (at most ``limit``)."""
        limit = max(0, min(int(limit), 10_000))
        with self._db.read() as conn:
            self._state(conn, job_id)
            rows = conn.execute(
                "SELECT seq, ts, type, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, int(after), limit),
            ).fetchall()
        return [Event(seq, job_id, ts, kind, json.loads(data)) for seq, ts, kind, data in rows]

    # -- writing helpers ------------------------------------------------------------------------

    @staticmethod
    def _event(conn: sqlite3.Connection, job_id: str, kind: str, data: dict, now: float) -> int:
        conn.execute("UPDATE jobs SET last_seq = last_seq + 1 WHERE id = ?", (job_id,))  # no RETURNING: SQLite < 3.35
        seq = conn.execute("SELECT last_seq FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        conn.execute("INSERT INTO events (job_id, seq, ts, type, data) VALUES (?, ?, ?, ?, ?)",
                     (job_id, seq, now, kind, json.dumps(data, ensure_ascii=False, allow_nan=False)))
        return int(seq)

    def _move(self, conn: sqlite3.Connection, job_id: str, current: JobState, state: JobState, now: float, *,
              stage: str | None = None, error: str | None = None, message: str | None = None,
              claim: bool = False, details: dict[str, Any] | None = None) -> None:
        """Change state (already validated) and record the "state" event (and a "message" one)."""
        sets = ["state = ?", "updated_at = ?"]
        args: list[Any] = [state.value, now]
        if stage is not None:
            sets.append("stage = ?")
            args.append(_clip(stage))
        if error is not None:
            sets.append("error = ?")
            args.append(_clip(error))
        if state is JobState.DONE:
            sets.append("progress = 1.0")
        if claim:
            sets.append("attempts = attempts + 1")
        conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*args, job_id])
        data: dict[str, Any] = {"state": state.value, "from": current.value}
        if stage is not None:
            data["stage"] = _clip(stage)
        if error is not None:
            data["error"] = _clip(error)
        data.update(details or {})
        self._event(conn, job_id, "state", data, now)
        if message:
            self._event(conn, job_id, "message", {"text": _clip(message)}, now)
        if state in TERMINAL:
            with self._progress_lock:
                self._last_progress.pop(job_id, None)

    # -- submitting -----------------------------------------------------------------------------

    def submit(self, kind: str, *, options: dict, scene_digest: str | None, priority: str = "now",
               idempotency_key: str | None = None) -> tuple[Job, bool]:
        """Queue a new job; returns ``(job, created)``.

        The same ``idempotency_key`` again returns the existing job with ``created`` False; the same
        key with another kind, options or scene raises IdempotencyConflict.
        """
        if not isinstance(kind, str) or not _KIND_RE.match(kind):
            raise InputError(f"{kind!r} is not a job kind", where="kind",
                             hint="letters, digits, '_', '.', '-'; at most 64 characters")
        if priority not in PRIORITIES:
            raise InputError(f"unknown priority {priority!r}", where="priority", hint="use 'now' or 'economy'")
        options_json = _canonical_options(options)
        if scene_digest is not None:
            if not is_digest(scene_digest):
                raise InputError(f"{scene_digest!r} is not a scene digest", where="scene_digest",
                                 hint="64 lowercase hex characters, as returned when the scene was uploaded")
            if not self.vault.has(scene_digest):
                raise InputError(f"no stored scene {scene_digest}", where="scene_digest",
                                 hint="upload the scene first")
        if idempotency_key is not None and (not isinstance(idempotency_key, str) or not idempotency_key
                                            or len(idempotency_key) > _MAX_KEY):
            raise InputError(f"an idempotency key must be 1 to {_MAX_KEY} characters", where="idempotency_key")
        now = time.time()
        job_id = uuid.uuid4().hex
        with self._db.write(durable=True) as conn:
            if idempotency_key is not None:
                row = conn.execute("SELECT id, kind, options, scene_digest FROM jobs WHERE idempotency_key = ?",
                                   (idempotency_key,)).fetchone()
                if row is not None:
                    if (row[1], row[2], row[3]) != (kind, options_json, scene_digest):
                        differs = [name for name, a, b in (("kind", row[1], kind), ("options", row[2], options_json),
                                                            ("scene", row[3], scene_digest)) if a != b]
                        raise IdempotencyConflict(
                            f"idempotency key already used by job {row[0]} with a different {' and '.join(differs)}",
                            where="idempotency_key", hint="use a new key for a different request",
                        )
                    return self._load(conn, row[0]), False
            conn.execute(
                "INSERT INTO jobs (id, kind, state, stage, progress, priority, options, scene_digest, idempotency_key,"
                " created_at, updated_at, attempts, cancel_requested) VALUES (?, ?, ?, '', 0, ?, ?, ?, ?, ?, ?, 0, 0)",
                (job_id, kind, JobState.QUEUED.value, priority, options_json, scene_digest, idempotency_key, now, now),
            )
            self._event(conn, job_id, "state", {"state": JobState.QUEUED.value, "from": None}, now)
            job = self._load(conn, job_id)
        log.info("job %s (%s, %s) queued", job_id, kind, priority)
        return job, True

    # -- state changes --------------------------------------------------------------------------

    def transition(self, job_id: str, state: JobState, *, stage: str | None = None, error: str | None = None,
                   message: str | None = None, attempt: int | None = None) -> Job:
        """Move job ``job_id`` to ``state`` if the state machine allows it (else InvalidTransition).

        ``attempt`` (optional fencing): refuse with StaleAttempt unless the job is still on that
        attempt, so a worker left over from an earlier attempt (say, orphaned by a killed engine)
        cannot finish a job that was re-queued and claimed again.
        """
        try:
            state = JobState(state)
        except ValueError:
            raise InputError(f"unknown job state {state!r}", where="state",
                             hint=", ".join(s.value for s in JobState)) from None
        now = time.time()
        with self._db.write(durable=True) as conn:
            current, _ = self._state(conn, job_id)
            if attempt is not None:
                attempts = conn.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
                if attempts != attempt:
                    raise StaleAttempt(job_id, attempt, int(attempts))
            if state not in ALLOWED[current]:
                raise InvalidTransition(job_id, current.value, state.value,
                                        sorted(s.value for s in ALLOWED[current]))
            self._move(conn, job_id, current, state, now, stage=stage, error=error, message=message)
            job = self._load(conn, job_id)
        log.info("job %s: %s → %s%s", job_id, current.value, state.value, f" ({error})" if error else "")
        return job

    def claim_next(self, *, kinds: set[str] | None = None, gpu_kinds: set[str] = frozenset(),
                   gpu_busy: bool = False, planned_economy_only: bool = False) -> Job | None:
        """Atomically take the next queued job and move it to running (attempts + 1); None if there is none.

        "now" jobs before "economy" ones, oldest first; ``kinds`` limits the kinds taken (None: all),
        and ``gpu_kinds`` are skipped while ``gpu_busy``. A scheduled job is taken only once its
        ``not_before`` has passed on the store's clock (never when it has none); with
        ``planned_economy_only``, a queued economy job only once it has a plan (the economy planner
        has seen it). Safe across threads and processes: each job is claimed exactly once.
        """
        if kinds is not None and not kinds:
            return None
        now = time.time()
        queued = "state = ?" + (" AND (priority <> 'economy' OR plan IS NOT NULL)" if planned_economy_only else "")
        clauses = [f"(({queued}) OR (state = ? AND not_before IS NOT NULL AND not_before <= ?))"]
        args: list[Any] = [JobState.QUEUED.value, JobState.SCHEDULED.value, float(self.clock())]
        if kinds is not None:
            clauses.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(sorted(kinds))
        if gpu_busy and gpu_kinds:
            clauses.append(f"kind NOT IN ({','.join('?' * len(gpu_kinds))})")
            args.extend(sorted(gpu_kinds))
        query = (f"SELECT id, state, cancel_requested FROM jobs WHERE {' AND '.join(clauses)} "
                 "ORDER BY CASE priority WHEN 'now' THEN 0 ELSE 1 END, created_at, rowid LIMIT 1")
        with self._db.write(durable=True) as conn:
            while True:
                row = conn.execute(query, args).fetchone()
                if row is None:
                    return None
                job_id, state, cancel_requested = row
                if cancel_requested:  # re-queued after a cancel was asked for: finish the cancel instead
                    self._move(conn, job_id, JobState(state), JobState.CANCELLED, now, message="cancelled")
                    continue
                self._move(conn, job_id, JobState(state), JobState.RUNNING, now, claim=True)
                job = self._load(conn, job_id)
                break
        log.info("job %s (%s) claimed, attempt %d", job.id, job.kind, job.attempts)
        return job

    def set_plan(self, job_id: str, plan: dict[str, Any], *, not_before: float | None, message: str,
                 details: dict[str, Any] | None = None) -> Job | None:
        """Record an economy plan for a waiting job; None (nothing changed) if it is no longer waiting.

        With ``not_before`` the job becomes (or stays) scheduled: not claimed before that unix time.
        Without, it is (or goes back to) queued, to run as soon as a worker is free. A state event
        (with ``details``: not_before, node, cost, ...) and ``message`` are recorded whenever the
        state, the start time or the node changes; a plan that only re-prices the same window is
        stored silently.
        """
        now = time.time()
        plan_json = json.dumps(plan, sort_keys=True, allow_nan=False, ensure_ascii=False)
        with self._db.write(durable=True) as conn:
            row = conn.execute("SELECT state, not_before, plan FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}", where=str(job_id)[:80])
            current = JobState(row[0])
            if current not in (JobState.QUEUED, JobState.SCHEDULED):
                return None
            state = JobState.QUEUED if not_before is None else JobState.SCHEDULED
            old_node = json.loads(row[2]).get("node") if row[2] else None
            same = (state is current and row[1] == not_before and old_node == plan.get("node")
                    and row[2] is not None)
            conn.execute("UPDATE jobs SET not_before = ?, plan = ?, updated_at = ? WHERE id = ?",
                         (not_before, plan_json, now, job_id))
            if not same:
                if state is current and state is JobState.QUEUED:
                    self._event(conn, job_id, "message", {"text": _clip(message)}, now)
                else:
                    self._move(conn, job_id, current, state, now, message=message, details=details)
            job = self._load(conn, job_id)
        if not same:
            log.info("job %s: %s", job_id, message)
        return job

    def start_forwarded(self, job_id: str, plan: dict[str, Any], *, message: str,
                        details: dict[str, Any] | None = None) -> Job | None:
        """Move a waiting economy job straight to running (stage ``forwarded``) with its ``plan``, for a
        job that a peer runs; None if it is no longer waiting (a worker took it first)."""
        now = time.time()
        plan_json = json.dumps(plan, sort_keys=True, allow_nan=False, ensure_ascii=False)
        with self._db.write(durable=True) as conn:
            current, cancel_requested = self._state(conn, job_id)
            if current not in (JobState.QUEUED, JobState.SCHEDULED) or cancel_requested:
                return None
            conn.execute("UPDATE jobs SET not_before = NULL, plan = ? WHERE id = ?", (plan_json, job_id))
            self._move(conn, job_id, current, JobState.RUNNING, now, stage="forwarded", message=message,
                       details=details)
            job = self._load(conn, job_id)
        log.info("job %s: %s", job_id, message)
        return job

    def waiting_economy(self) -> list[Job]:
        """Economy jobs that wait for the planner: scheduled ones, and queued ones it has not planned yet."""
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE priority = 'economy' AND cancel_requested = 0 AND "
                "(state = ? OR (state = ? AND plan IS NULL)) ORDER BY created_at, rowid",
                (JobState.SCHEDULED.value, JobState.QUEUED.value)).fetchall()
            return self._jobs_from_rows(conn, rows)

    def request_cancel(self, job_id: str) -> Job:
        """Cancel a job: queued or scheduled ones at once; running or verifying ones are flagged
        (``cancel_requested``) for their worker to stop; finished ones are left as they are."""
        now = time.time()
        with self._db.write(durable=True) as conn:
            current, already = self._state(conn, job_id)
            if current in (JobState.QUEUED, JobState.SCHEDULED):
                conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
                self._move(conn, job_id, current, JobState.CANCELLED, now, message="cancelled before it ran")
            elif current in (JobState.RUNNING, JobState.VERIFYING) and not already:
                conn.execute("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?", (now, job_id))
                self._event(conn, job_id, "message", {"text": "cancel requested"}, now)
            job = self._load(conn, job_id)
        log.info("job %s: cancel requested while %s", job_id, current.value)
        return job

    def recover(self, *, max_attempts: int | None = None) -> list[str]:
        """At startup: put jobs left running, verifying or scheduled back in the queue; returns their ids.

        Those with a cancel pending become cancelled; with ``max_attempts``, those already tried that
        often fail instead of looping on a job that keeps killing the engine.
        """
        now = time.time()
        touched = []
        with self._db.write(durable=True) as conn:
            rows = conn.execute(
                "SELECT id, state, cancel_requested, attempts FROM jobs WHERE state IN (?, ?, ?) ORDER BY created_at",
                (JobState.RUNNING.value, JobState.VERIFYING.value, JobState.SCHEDULED.value),
            ).fetchall()
            for job_id, state, cancel_requested, attempts in rows:
                current = JobState(state)
                if cancel_requested:
                    self._move(conn, job_id, current, JobState.CANCELLED, now,
                               message="cancelled: the engine stopped while the cancel was pending")
                elif max_attempts is not None and attempts >= max_attempts:
                    self._move(conn, job_id, current, JobState.FAILED, now,
                               error=f"the engine stopped {attempts} times while running this job")
                else:
                    if current is JobState.SCHEDULED:  # its plan is re-made by the economy planner
                        conn.execute("UPDATE jobs SET not_before = NULL, plan = NULL WHERE id = ?", (job_id,))
                    self._move(conn, job_id, current, JobState.QUEUED, now, message=REQUEUED_MESSAGE)
                touched.append(job_id)
        if touched:
            log.warning("recovered %d job(s) left unfinished: %s", len(touched), ", ".join(touched))
        return touched

    # -- progress and messages ------------------------------------------------------------------

    def progress(self, job_id: str, stage: str, fraction: float, message: str = "") -> None:
        """Record progress (``fraction`` clamped to 0..1) of a stage; ignored once the job is finished.

        Coalesced: skipped when the stage is the same, the fraction moved < 1 % and < 0.5 s passed
        since the last recorded tick (1.0 is always recorded).
        """
        try:
            fraction = float(fraction)
        except (TypeError, ValueError):
            fraction = 0.0
        fraction = 0.0 if math.isnan(fraction) else min(1.0, max(0.0, fraction))
        stage = _clip(stage)
        now = time.time()
        with self._progress_lock:
            last = self._last_progress.get(job_id)
        if (last is not None and fraction < 1.0 and last.stage == stage
                and abs(fraction - last.fraction) < _PROGRESS_STEP and now - last.at < _PROGRESS_INTERVAL_S):
            return
        with self._db.write() as conn:
            current, _ = self._state(conn, job_id)
            if current in TERMINAL:
                log.debug("job %s: progress after it finished (%s) ignored", job_id, current.value)
                return
            conn.execute("UPDATE jobs SET stage = ?, progress = ?, updated_at = ? WHERE id = ?",
                         (stage, fraction, now, job_id))
            data: dict[str, Any] = {"stage": stage, "fraction": fraction}
            if message:
                data["message"] = _clip(message)
            self._event(conn, job_id, "progress", data, now)
        with self._progress_lock:
            if len(self._last_progress) > 10_000:
                self._last_progress.clear()
            self._last_progress[job_id] = _LastProgress(stage, fraction, now)

    def message(self, job_id: str, text: str) -> None:
        """Add a line to the job's messages (and its event stream)."""
        now = time.time()
        with self._db.write() as conn:
            self._state(conn, job_id)
            conn.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (now, job_id))
            self._event(conn, job_id, "message", {"text": _clip(text)}, now)

    # -- artifacts and scenes -------------------------------------------------------------------

    def add_artifact(self, job_id: str, name: str, data: bytes, content_type: str) -> Artifact:
        """Store ``data`` (encrypted, in the vault) as artifact ``name`` of the job; replaces one of the same name."""
        check_artifact_name(name)
        _check_content_type(content_type)
        self.get(job_id)  # JobNotFound before storing any bytes
        digest = self.vault.put(data)
        now = time.time()
        artifact = Artifact(name, digest, len(memoryview(data).cast("B")), content_type, now)
        with self._db.write(durable=True) as conn:
            self._state(conn, job_id)
            conn.execute(
                "INSERT OR REPLACE INTO artifacts (job_id, name, digest, size, content_type, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)", (job_id, name, digest, artifact.size, content_type, now),
            )
            conn.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (now, job_id))
            self._event(conn, job_id, "artifact", artifact.to_dict(), now)
        log.debug("job %s: artifact %s (%d bytes)", job_id, name, artifact.size)
        return artifact

    def artifact(self, job_id: str, name: str) -> tuple[Artifact, bytes]:
        """Artifact ``name`` of the job and its bytes (decrypted and integrity-checked)."""
        with self._db.read() as conn:
            self._state(conn, job_id)
            row = conn.execute(
                "SELECT name, digest, size, content_type, created_at FROM artifacts WHERE job_id = ? AND name = ?",
                (job_id, name),
            ).fetchone()
        if row is None:
            raise ArtifactNotFound(f"job {job_id} has no artifact {name!r}", where=f"{job_id}/{str(name)[:140]}",
                                   hint="the job lists its artifacts")
        artifact = Artifact(*row)
        return artifact, self.vault.get(artifact.digest)

    def store_scene(self, data: bytes) -> str:
        """Store scene bytes (encrypted); returns their digest for ``submit``."""
        return self.vault.put(data)

    def load_scene(self, digest: str) -> bytes:
        """The scene bytes stored under ``digest``."""
        return self.vault.get(digest)

    # -- closing --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database connections of this store and of its vault."""
        self._db.close()
        self.vault.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "ALLOWED",
    "PRIORITIES",
    "TERMINAL",
    "Artifact",
    "ArtifactNotFound",
    "Event",
    "IdempotencyConflict",
    "InvalidTransition",
    "Job",
    "JobNotFound",
    "JobState",
    "JobStore",
    "StaleAttempt",
    "check_artifact_name",
]
