"""Verifier peers on this machine for one run (the demo, the one-click pipeline without a network).

:class:`LocalPeers` starts ``count`` real ``optimizer peer`` processes on free loopback ports,
each with its own data folder (identity key, allowlist, replay store) and token folder under
``root``, enrols them with the coordinator's node and the coordinator with each of them (mutual
enrolment, as for remote peers), waits until they answer, and stops them on exit::

    with LocalPeers(node_dir, root / "peers", count=3) as peers:
        summary = verify_result(result_dir, peers, thresholds, data_dir=node_dir)

They are separate processes with separate keys, so their votes are independent re-renders, but
they run on the same machine as the producer: a demonstration of the protocol, not independence.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine.errors import OptimizerError

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPeers:
    """``count`` verifier processes on 127.0.0.1 working for the node in ``coordinator_data``."""

    def __init__(self, coordinator_data: str | Path, root: str | Path, count: int = 3, *,
                 start_timeout_s: float = 90.0) -> None:
        self.coordinator_data = Path(coordinator_data)
        self.root = Path(root)
        self.count = int(count)
        self.start_timeout_s = start_timeout_s
        self.processes: list[subprocess.Popen[str]] = []
        self.urls: list[str] = []
        self._logs: list[Any] = []

    def __enter__(self) -> list[Any]:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> list[Any]:
        """Start, enrol and wait for the peers; returns their :class:`engine.trust.verify.PeerTarget`s."""
        import requests

        from engine.service.security import load_or_create_identity
        from engine.trust.peers import PeerRegistry
        from engine.trust.verify import peers_from_registry

        coordinator, _ = load_or_create_identity(self.coordinator_data)
        self.root.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parents[2]
        for i in range(self.count):
            data = self.root / f"peer{i}"
            identity, _ = load_or_create_identity(data)
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with PeerRegistry(data) as registry:
                if coordinator.node_id not in {p.node_id for p in registry.list()}:
                    registry.add(json.dumps(coordinator.to_dict()), "http://127.0.0.1:1", name="coordinator")
            with PeerRegistry(self.coordinator_data) as registry:
                for stale in [p for p in registry.list() if p.node_id == identity.node_id]:
                    registry.remove(stale.node_id)  # a previous run's port
                registry.add(json.dumps(identity.to_dict()), url, name=f"local peer {i}")
            env = {**os.environ, "OPTIMIZER_CONFIG_DIR": str(self.root / f"config{i}"),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
            command = [sys.executable, "-m", "engine.cli", "peer", "--port", str(port), "--data", str(data)]
            log_file = (self.root / f"peer{i}.log").open("w")
            self._logs.append(log_file)
            self.processes.append(subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                                   text=True))
            self.urls.append(url)
        deadline = time.monotonic() + self.start_timeout_s
        for process, url in zip(self.processes, self.urls, strict=True):
            while True:
                if process.poll() is not None:
                    raise OptimizerError(f"a local verifier peer exited with {process.returncode} (its log: "
                                         f"{self.root / f'peer{self.processes.index(process)}.log'})")
                try:
                    if requests.get(f"{url}/v1/health", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise OptimizerError(f"a local verifier peer did not answer at {url} within "
                                         f"{self.start_timeout_s:.0f} s")
                time.sleep(0.2)
        with PeerRegistry(self.coordinator_data) as registry:
            return peers_from_registry(registry, self.urls)

    def stop(self) -> None:
        """Stop every peer (SIGTERM, then SIGKILL after 10 s); they stay enrolled (a later run re-enrols them
        at their new ports and their reputations carry over)."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log_file in self._logs:
            log_file.close()
        self.processes.clear()
        self._logs.clear()
