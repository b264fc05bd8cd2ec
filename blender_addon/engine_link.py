"""Talking to the engine node without ever blocking Blender's UI.

HTTP and other slow work runs in a worker thread that never touches ``bpy``; it reports through
a queue that the main thread drains (a modal operator's timer). ``bpy.app.online_access`` is
respected for any engine address that is not on this machine.
"""

from __future__ import annotations

import ipaddress
import queue
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from engine.errors import OptimizerError

_WORKERS: list[EngineWorker] = []


class EngineLinkError(OptimizerError):
    """The engine cannot be used (unreachable, wrong token, online access off)."""


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_client(url: str, token: str = "", *, online_access: bool = True) -> Any:
    """An EngineClient for ``url``; refuses non-loopback addresses when online access is off."""
    from engine.client import EngineClient

    if not is_loopback(url) and not online_access:
        raise EngineLinkError(
            f"the engine address {url} is not on this machine and Blender's online access is off "
            "(Preferences > System > Network), so Optimizer will not connect to it")
    return EngineClient(url, token or None, timeout=15.0, retries=1)


def ensure_engine(client: Any, start_command: str = "", wait: float = 15.0) -> dict[str, Any]:
    """Health of the engine; if it is not running and a start command is set, start it and wait."""
    from engine.client import EngineAuthError, EngineUnreachable

    try:
        return client.health()
    except EngineUnreachable:
        if not start_command:
            raise EngineLinkError(
                f"no engine answers at {client.url}: start one with `optimizer serve`, or set a start "
                "command in the add-on's preferences") from None
    try:
        subprocess.Popen(shlex.split(start_command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    except OSError as exc:
        raise EngineLinkError(f"the start command `{start_command}` failed: {exc}") from None
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            return client.health()
        except EngineUnreachable:
            time.sleep(0.25)
        except EngineAuthError as exc:
            raise EngineLinkError(str(exc)) from None
    raise EngineLinkError(f"started `{start_command}`, but no engine answered at {client.url} within {wait:.0f} s")


@dataclass
class Update:
    """One message from the worker thread to the main thread."""

    kind: str  # "job" | "progress" | "message" | "done" | "error"
    data: dict[str, Any] = field(default_factory=dict)


class EngineWorker(threading.Thread):
    """Runs ``task(worker)`` in the background; ``task`` posts Updates and checks ``cancelled``."""

    def __init__(self, task: Callable[[EngineWorker], None]) -> None:
        super().__init__(name="optimizer-engine-link", daemon=True)
        self.task = task
        self.updates: queue.Queue[Update] = queue.Queue()
        self._cancel = threading.Event()

    def post(self, kind: str, **data: Any) -> None:
        self.updates.put(Update(kind, data))

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:
        try:
            self.task(self)
        except OptimizerError as exc:
            self.post("error", text=str(exc))
        except Exception as exc:  # never let a thread die silently
            self.post("error", text=f"{type(exc).__name__}: {exc}")
        finally:
            if self in _WORKERS:
                _WORKERS.remove(self)

    def drain(self) -> list[Update]:
        items = []
        while True:
            try:
                items.append(self.updates.get_nowait())
            except queue.Empty:
                return items


def start(task: Callable[[EngineWorker], None]) -> EngineWorker:
    worker = EngineWorker(task)
    _WORKERS.append(worker)
    worker.start()
    return worker


def stop_all() -> None:
    """Ask every worker to stop (on unregister)."""
    for worker in list(_WORKERS):
        worker.cancel()


def submit_and_follow(client: Any, scene: Any, options: dict[str, Any], worker: EngineWorker,
                      kind: str = "analyze") -> None:
    """The Optimize task: submit the scene, then relay the job's events until it ends or is cancelled."""
    job = client.submit(scene, kind=kind, options=options)
    worker.post("job", id=job.id, state=job.state)
    after = 0
    while True:
        if worker.cancelled:
            client.cancel(job.id)
            worker.post("message", text="cancel requested")
            worker.cancel()  # the flag stays; the loop goes on until the job ends
        try:
            for event in client.events(job.id, after):
                after = event.seq
                if event.type == "progress":
                    worker.post("progress", stage=event.data.get("stage", ""),
                                fraction=float(event.data.get("fraction", 0.0)), text=event.data.get("message", ""))
                elif event.type == "state":
                    worker.post("job", id=job.id, state=event.data.get("state", ""))
                elif event.type == "message":
                    worker.post("message", text=str(event.data.get("text", event.data)))
                if worker.cancelled:
                    break
        except OptimizerError:
            time.sleep(0.5)
        final = client.job(job.id)
        if final.finished:
            worker.post("done", state=final.state, error=final.error or "",
                        artifacts=[a.name for a in final.artifacts], messages=list(final.messages))
            return
