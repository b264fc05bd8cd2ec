"""`optimizer serve`: open the node's data, start the workers, serve the API until a signal.

SIGINT and SIGTERM stop the server cleanly: uvicorn finishes open requests, the worker pool
stops claiming, gives running jobs a few seconds, then puts the rest back in the queue, so a
job is never left half-written. After a crash (kill -9) the next start does the same.

Economy options: ``--economy-prices FILE`` prices this node's hours (a price file, see
``engine.economy.prices``; default: the design's tariff in this machine's time zone, $TZ).
``--economy-clock TIME`` (with ``--economy-clock-speed X``) runs the economy planner and the
claiming of scheduled jobs on a simulated clock that starts at TIME and runs X times real speed:
for demonstrations and tests ("a day in a minute"); everything else keeps real time.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

log = logging.getLogger(__name__)
DEFAULT_PORT = 8770


def default_data_dir() -> Path:
    """``$OPTIMIZER_DATA``, else ``$XDG_DATA_HOME/optimizer``, else ``~/.local/share/optimizer``."""
    if os.environ.get("OPTIMIZER_DATA"):
        return Path(os.environ["OPTIMIZER_DATA"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "optimizer"


@dataclass
class Node:
    """An opened node: its store, identity, token and worker pool."""

    data_dir: Path
    store: Any
    pool: Any
    identity: Any
    token: str
    token_path: Path
    requeued: list[str]
    lock: Any = None

    def close(self) -> None:
        self.pool.stop()
        self.store.close()
        if self.lock is not None:
            self.lock.close()


class SimulatedClock:
    """Unix time that starts at ``start`` now and runs ``speed`` times as fast as real time."""

    def __init__(self, start: float, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ConfigError(f"the clock speed must be above 0, got {speed!r}", where="--economy-clock-speed")
        self.start, self.speed, self._began = float(start), float(speed), time.time()

    def __call__(self) -> float:
        return self.start + (time.time() - self._began) * self.speed


def economy_clock(start: str | None, speed: float = 1.0) -> Callable[[], float]:
    """The clock of ``--economy-clock`` (ISO 8601 with offset) and its speed; real time without one."""
    if start is None:
        if speed != 1.0:
            raise ConfigError("--economy-clock-speed needs --economy-clock", where="--economy-clock-speed")
        return time.time
    from datetime import datetime

    try:
        when = datetime.fromisoformat(start.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{start!r} is not an ISO 8601 time", where="--economy-clock",
                          hint="e.g. 2025-01-15T10:00:00+01:00") from None
    if when.utcoffset() is None:
        raise ConfigError("give the time with its UTC offset", where="--economy-clock",
                          hint="e.g. 2025-01-15T10:00:00+01:00")
    return SimulatedClock(when.timestamp(), speed)


def _lock_data_dir(data_dir: Path) -> Any:
    """Hold an exclusive lock on the data folder: two nodes on one folder would steal each other's jobs.

    The lock (flock) is released by the OS when the process ends, kill -9 included.
    """
    handle = open(data_dir / "node.lock", "a+")  # noqa: SIM115 - held for the node's lifetime
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # Windows: no flock; a second node is not detected there
        return handle
    except OSError:
        handle.close()
        raise ConfigError("another engine node is using this data folder", where=str(data_dir),
                          hint="stop it, or give this one its own --data") from None
    return handle


def open_node(data_dir: Path, *, workers: int = 0, gpus: int = 0, clock: Callable[[], float] = time.time,
              economy_prices: Path | None = None, forward: bool = True) -> Node:
    """Open (or create) a node's data folder, identity, keys and token; recover jobs.

    ``clock`` is what the economy planner and the claiming of scheduled jobs take as now;
    ``economy_prices`` a price file for this node's hours; ``forward`` lets the economy planner
    forward jobs to enrolled peers whose cheap window is now."""
    from engine.service.security import load_or_create_identity, load_or_create_token
    from engine.service.store import JobStore
    from engine.service.vault import Keyring, Vault
    from engine.service.workers import EconomyPlanner, WorkerPool

    tariff = None
    if economy_prices is not None:
        from engine.economy import load_tariff

        tariff = load_tariff(economy_prices)
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create the data folder ({exc.strerror or exc})", where=str(data_dir)) from None
    lock = _lock_data_dir(data_dir)
    identity, _ = load_or_create_identity(data_dir)
    store = JobStore(data_dir, Vault(data_dir, Keyring(identity.node_id)), clock=clock)
    requeued = store.recover()
    token, token_path = load_or_create_token()
    planner = EconomyPlanner(store, data_dir, tariff=tariff, gpus=max(1, gpus), clock=clock, forward=forward)
    pool = WorkerPool(store, data_dir, identity.node_id, workers=workers, gpus=gpus, planner=planner)
    return Node(data_dir, store, pool, identity, token, token_path, requeued, lock)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket, or a clear error when the address is taken or invalid."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve host {host!r} ({exc.strerror})", where="--host") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})", where="--port",
                          hint="is another node running? pick another --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    data_dir: Path | None = None,
    *,
    workers: int = 0,
    gpus: int = 0,
    max_upload: int | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    announce: Callable[[str], None] = print,
    clock: Callable[[], float] = time.time,
    economy_prices: Path | None = None,
    forward: bool = True,
) -> int:
    """Run a node until SIGINT/SIGTERM. Returns the exit code."""
    import uvicorn

    from engine.service.app import DEFAULT_MAX_UPLOAD, create_app
    from engine.service.security import check_bind

    check_bind(host, tls_cert, tls_key)
    data_dir = Path(data_dir or default_data_dir()).expanduser().resolve()
    sock = bind_socket(host, port)
    node = open_node(data_dir, workers=workers, gpus=gpus, clock=clock, economy_prices=economy_prices,
                     forward=forward)
    app = create_app(node.store, node.pool, token=node.token, identity=node.identity,
                     max_upload=max_upload or DEFAULT_MAX_UPLOAD)
    scheme = "https" if tls_cert else "http"
    actual_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    announce(f"optimizer: node {node.identity.node_id} listening on {scheme}://{shown_host}:{actual_port}")
    announce(f"optimizer: data in {data_dir}")
    announce(f"optimizer: token in {node.token_path}")
    if node.requeued:
        announce(f"optimizer: re-queued {len(node.requeued)} job(s) left running by the last run")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30,
                            ssl_certfile=str(tls_cert) if tls_cert else None,
                            ssl_keyfile=str(tls_key) if tls_key else None)
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it has shut down; with these handlers
    # in place that lands here instead of killing the process before the workers are stopped
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, frame: received.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    node.pool.start()
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        requeued = node.pool.stop()
        node.store.close()
        node.lock.close()
        sock.close()
        announce(f"optimizer: stopped{f'; {len(requeued)} running job(s) re-queued' if requeued else ''}")
    return 0
