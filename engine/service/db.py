"""SQLite plumbing shared by the job store and the vault: one connection per thread, WAL, explicit transactions.

Every write runs in ``BEGIN IMMEDIATE``: it takes SQLite's write lock up front (waiting up to the
busy timeout for other threads and processes), so read-modify-write sequences are atomic across
processes and never fail half way with SQLITE_BUSY on the lock upgrade.

Durability: WAL with ``synchronous=NORMAL`` survives a killed process (kill -9) without losing a
committed transaction; only a power cut or OS crash can drop the last few. Writes the caller marks
``durable`` (job submissions, state changes, blob keys) run with ``synchronous=FULL`` so that what
the API acknowledged survives a power cut too; progress ticks and messages stay on NORMAL.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from engine.errors import ConfigError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 60.0


class Database:
    """A SQLite database file used from many threads (a connection each) and many processes.

    With ``external``, that one connection is used for everything, serialised by a lock (it must
    have been opened with ``check_same_thread=False`` if several threads use it).
    """

    def __init__(self, path: Path, *, external: sqlite3.Connection | None = None) -> None:
        self.path = Path(path)
        self._external = external
        self._lock = threading.RLock()  # serialises use of an external connection
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        if external is None and not self.path.exists():
            # SQLite gives the -wal and -shm files the database file's permissions: make it 0600 first.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            os.close(fd)

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the database: {exc}", where=str(self.path)) from exc
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("%s: SQLite refused WAL mode (got %s); concurrent access will be slower", self.path, mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")  # no temporary files with our rows in them
        return conn

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        if self._external is not None:
            return self._external
        if self._closed:
            raise ConfigError("the database is closed", where=str(self.path))
        if self._pid != os.getpid():
            # A forked child must not use its parent's connections: forget them (never close them here).
            self._pid = os.getpid()
            self._local = threading.local()
            self._conns = []
            self._conns_lock = threading.Lock()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _guard(self) -> AbstractContextManager[object]:
        return self._lock if self._external is not None else nullcontext()

    @contextmanager
    def write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE), committed on success and rolled back on any error."""
        with self._guard():
            conn = self.conn()
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same snapshot."""
        with self._guard():
            conn = self.conn()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this object opened (an external connection stays open: its owner closes it)."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error as exc:  # pragma: no cover - best effort
                log.debug("%s: closing a connection: %s", self.path, exc)
        self._local = threading.local()


def check_schema(conn: sqlite3.Connection, table: str, known: int, path: Path) -> int:
    """The schema version recorded in ``table`` (0 for a new database); refuses one newer than ``known``.

    Call inside a write transaction.
    """
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
    row = conn.execute(f"SELECT MAX(version) FROM {table}").fetchone()
    found = int(row[0]) if row and row[0] is not None else 0
    if found > known:
        raise ConfigError(
            f"the database has schema version {found}, newer than this engine knows ({known})",
            where=str(path),
            hint="run a newer engine on this data directory, or point --data-dir somewhere else",
        )
    return found


def set_schema(conn: sqlite3.Connection, table: str, version: int) -> None:
    """Record ``version`` as the schema version (inside the same write transaction as the migration)."""
    conn.execute(f"DELETE FROM {table}")
    conn.execute(f"INSERT INTO {table} (version) VALUES (?)", (version,))
