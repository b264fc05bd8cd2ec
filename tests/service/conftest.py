"""A real engine node (`optimizer serve` in a subprocess) on a free loopback port."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class NodeProcess:
    """A running `optimizer serve` and what a test needs to talk to it."""

    data: Path
    config: Path
    port: int
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    output: list[str] = field(default_factory=list)
    started_in: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "OPTIMIZER_CONFIG_DIR": str(self.config),
            "OPTIMIZER_PIPELINE_MODULES": "tests.service.slow_pipeline",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }

    @property
    def token(self) -> str:
        return (self.config / "token").read_text().strip()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, timeout: float = 20.0) -> NodeProcess:
        command = [sys.executable, "-m", "engine.cli", "serve", "--port", str(self.port), "--data", str(self.data),
                   *self.extra_args]
        began = time.monotonic()
        self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"optimizer serve exited with {self.process.returncode}:\n{self.process.stdout.read()}")
            try:
                if requests.get(f"{self.url}/v1/health", timeout=0.5).status_code == 200:
                    self.started_in = time.monotonic() - began
                    return self
            except requests.RequestException:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"optimizer serve did not answer /v1/health within {timeout} s")

    def kill(self) -> None:
        """kill -9: no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._collect()

    def stop(self) -> int:
        """SIGTERM, as a service manager would; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._collect()
        return self.process.returncode

    def _collect(self, timeout: float = 5.0) -> None:
        """Read what the server printed; never block on a pipe some orphan might still hold."""
        stream = self.process.stdout if self.process is not None else None
        if stream is None or stream.closed:
            return
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        fd = stream.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        self.output.append(b"".join(chunks).decode(errors="replace"))
        stream.close()

    def get(self, path: str, **kwargs: object) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return requests.get(f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: object) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return requests.post(f"{self.url}{path}", headers=headers, timeout=60, **kwargs)

    def wait_for(self, job_id: str, states: tuple[str, ...] = ("done", "failed", "cancelled"),
                 timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator:
    """Factory: make_node(*extra_args) starts a node on its own data and config folders."""
    nodes: list[NodeProcess] = []

    def factory(*extra_args: str, data: Path | None = None) -> NodeProcess:
        node = NodeProcess(data or tmp_path / "data", tmp_path / "config", free_port(), list(extra_args))
        nodes.append(node)
        return node.start()

    yield factory
    for node in nodes:
        node.stop()


@pytest.fixture
def node(make_node) -> NodeProcess:
    return make_node("--workers", "2")
