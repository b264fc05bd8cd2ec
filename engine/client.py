"""HTTP client of the engine node (requests + msgpack; light enough to run inside Blender).

Talks msgpack to the node, retries on connection errors with backoff (submissions carry an
idempotency key, so a retried submit never makes a second job), and returns typed results.
A node talking to an enrolled peer (forwarding a job) signs each request with its identity key
(``signer=(node_id, private_key)``, see :func:`engine.trust.verify.sign_request`) instead of
sending a bearer token.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import requests

from engine.errors import OptimizerError

DEFAULT_URL = "http://127.0.0.1:8770"
MSGPACK = "application/msgpack"
TERMINAL_STATES = ("done", "failed", "cancelled")


class EngineError(OptimizerError):
    """The node answered with an error (``status`` is the HTTP status)."""

    def __init__(self, status: int, detail: str, url: str) -> None:
        self.status, self.detail, self.url = status, detail, url
        super().__init__(f"{url}: {detail} (HTTP {status})")


class EngineUnreachable(OptimizerError):
    """No node answers at the URL."""


class EngineAuthError(EngineError):
    """401: the token is missing or wrong."""


@dataclass(frozen=True)
class Artifact:
    name: str
    digest: str
    size: int
    content_type: str


@dataclass(frozen=True)
class JobInfo:
    """A job as the node reports it."""

    id: str
    kind: str
    state: str
    stage: str
    progress: float
    priority: str
    error: str | None
    attempts: int
    cancel_requested: bool
    timings: dict[str, float]
    messages: tuple[str, ...]
    artifacts: tuple[Artifact, ...]
    options: dict[str, Any] = field(default_factory=dict)
    not_before: float | None = None  # economy jobs: unix time before which a scheduled job waits
    plan: dict[str, Any] | None = None  # economy jobs: node, window, cost, saving

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobInfo:
        return cls(
            id=data["id"], kind=data["kind"], state=data["state"], stage=data.get("stage", ""),
            progress=float(data.get("progress", 0.0)), priority=data.get("priority", "now"),
            error=data.get("error"), attempts=int(data.get("attempts", 0)),
            cancel_requested=bool(data.get("cancel_requested", False)), timings=dict(data.get("timings", {})),
            messages=tuple(m["text"] for m in data.get("messages", [])),
            artifacts=tuple(Artifact(a["name"], a["digest"], int(a["size"]), a["content_type"])
                            for a in data.get("artifacts", [])),
            options=dict(data.get("options", {})),
            not_before=data.get("not_before"), plan=data.get("plan"),
        )


@dataclass(frozen=True)
class JobEvent:
    seq: int
    type: str
    data: dict[str, Any]


def default_token() -> str | None:
    """``$OPTIMIZER_TOKEN``, else the token file `optimizer serve` created in the config dir."""
    if os.environ.get("OPTIMIZER_TOKEN"):
        return os.environ["OPTIMIZER_TOKEN"]
    base = os.environ.get("OPTIMIZER_CONFIG_DIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config"), "optimizer")
    try:
        return Path(base, "token").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


class EngineClient:
    """A client of one engine node."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.25, signer: tuple[str, Any] | None = None) -> None:
        self.url = (url or os.environ.get("OPTIMIZER_URL") or DEFAULT_URL).rstrip("/")
        self.signer = signer  # (node id, Ed25519 private key): sign requests instead of sending a token
        self.token = token if token is not None or signer is not None else default_token()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = requests.Session()

    # transport ---------------------------------------------------------------------------
    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": MSGPACK}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if extra:
            headers.update(extra)
        return headers

    def _request(self, method: str, path: str, *, body: Any = None, raw: bytes | None = None,
                 headers: dict[str, str] | None = None, stream: bool = False,
                 timeout: float | None = None) -> requests.Response:
        data = None
        send_headers = self._headers(headers)
        if body is not None:
            data = msgpack.packb(body, use_bin_type=True)
            send_headers["Content-Type"] = MSGPACK
        elif raw is not None:
            data = raw
            send_headers["Content-Type"] = MSGPACK
        if self.signer is not None:
            from engine.trust.verify import sign_request

            node_id, key = self.signer
            send_headers.update(sign_request(key, node_id, method, path, data or b""))
        url = f"{self.url}{path}"
        for attempt in range(self.retries + 1):
            try:
                response = self.session.request(method, url, data=data, headers=send_headers, stream=stream,
                                                timeout=timeout or self.timeout)
                break
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == self.retries:
                    raise EngineUnreachable(
                        f"no engine answers at {self.url} ({type(exc).__name__}); start one with `optimizer serve`"
                    ) from None
                time.sleep(self.backoff * 2**attempt)
        if response.status_code >= 400:
            detail = _detail(response)
            if response.status_code == 401:
                raise EngineAuthError(401, detail, self.url)
            raise EngineError(response.status_code, detail, self.url)
        return response

    @staticmethod
    def _decode(response: requests.Response) -> Any:
        if response.headers.get("content-type", "").startswith(MSGPACK):
            return msgpack.unpackb(response.content, raw=False)
        return response.json()

    # API -----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._decode(self._request("GET", "/v1/health"))

    def analyze(self, scene: Any, *, mode: str = "object", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Analyse and route a Scene on the node (same result as `optimizer analyze --json`)."""
        from engine.scene import wire

        body = {"scene": wire.encode(scene), "mode": mode, "overrides": overrides or {}}
        return self._decode(self._request("POST", "/v1/analyze", body=body))

    def upload_scene(self, scene: Any) -> str:
        """Upload a Scene (or its wire bytes) once; returns the reference jobs can name."""
        from engine.scene import wire

        raw = bytes(scene) if isinstance(scene, (bytes, bytearray)) else wire.encode(scene)
        return self._decode(self._request("POST", "/v1/scenes", raw=raw))["scene_ref"]

    def upload_views(self, views: Any) -> str:
        """Upload client-rendered reference views (:class:`engine.splat.references.ReferenceViews`);
        returns the ref a ``splat`` job takes as ``options.references``."""
        from engine.scene import wire

        response = self._request("POST", "/v1/views", raw=wire.encode(views))
        return str(self._decode(response)["views_ref"])

    def submit(self, scene: Any = None, *, scene_ref: str | None = None, kind: str = "analyze",
               options: dict[str, Any] | None = None, priority: str = "now",
               idempotency_key: str | None = None) -> JobInfo:
        """Submit a job for a Scene (or an uploaded scene's reference)."""
        from engine.scene import wire

        body: dict[str, Any] = {"kind": kind, "options": options or {}, "priority": priority,
                                "idempotency_key": idempotency_key or uuid.uuid4().hex}
        if scene is not None:
            body["scene"] = wire.encode(scene)
        if scene_ref is not None:
            body["scene_ref"] = scene_ref
        return JobInfo.from_dict(self._decode(self._request("POST", "/v1/jobs", body=body)))

    def job(self, job_id: str) -> JobInfo:
        return JobInfo.from_dict(self._decode(self._request("GET", f"/v1/jobs/{job_id}")))

    def jobs(self, state: str | None = None, limit: int = 100) -> list[JobInfo]:
        query = f"?limit={limit}" + (f"&state={state}" if state else "")
        return [JobInfo.from_dict(j) for j in self._decode(self._request("GET", f"/v1/jobs{query}"))["jobs"]]

    def cancel(self, job_id: str) -> JobInfo:
        return JobInfo.from_dict(self._decode(self._request("DELETE", f"/v1/jobs/{job_id}")))

    def artifact(self, job_id: str, name: str) -> bytes:
        return self._request("GET", f"/v1/jobs/{job_id}/artifacts/{name}").content

    def download_artifacts(self, job_id: str, folder: str | Path) -> list[Path]:
        """Write every artifact of the job under ``folder``; a ``__`` in a name is a folder
        separator (``lightmaps__atlas_0.exr`` → ``lightmaps/atlas_0.exr``). Returns the paths."""
        root = Path(folder).resolve()
        written = []
        for item in self.job(job_id).artifacts:
            relative = Path(*[part for part in item.name.split("__") if part not in ("", ".", "..")])
            path = (root / relative).resolve()
            if root not in path.parents:  # a name that would escape the folder
                raise EngineError(502, f"artifact name {item.name!r} is not a relative path", self.url)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.artifact(job_id, item.name))
            written.append(path)
        return written

    def events(self, job_id: str, after: int = 0) -> Iterator[JobEvent]:
        """The job's server-sent events from ``after`` on, until the job ends."""
        response = self._request("GET", f"/v1/jobs/{job_id}/events?after={after}", stream=True,
                                 headers={"Accept": "text/event-stream"}, timeout=None)
        with response:
            seq, kind, data = 0, "message", ""
            for line in response.iter_lines(decode_unicode=True):
                if line is None:
                    continue
                if line == "":
                    if data:
                        yield JobEvent(seq, kind, json.loads(data))
                    seq, kind, data = 0, "message", ""
                elif line.startswith("id:"):
                    seq = int(line[3:].strip())
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()

    def wait(self, job_id: str, *, progress: Callable[[str, float, str], None] | None = None,
             timeout: float | None = None) -> JobInfo:
        """Follow a job's events until it ends (reconnecting if the stream drops); return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        after = 0
        while True:
            try:
                for event in self.events(job_id, after):
                    after = event.seq
                    if progress is not None and event.type == "progress":
                        progress(event.data.get("stage", ""), float(event.data.get("fraction", 0.0)),
                                 event.data.get("message", ""))
                    if deadline is not None and time.monotonic() > deadline:
                        break
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, EngineUnreachable):
                time.sleep(self.backoff)
            job = self.job(job_id)
            if job.finished:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout} s")


def _detail(response: requests.Response) -> str:
    try:
        if response.headers.get("content-type", "").startswith(MSGPACK):
            return str(msgpack.unpackb(response.content, raw=False).get("detail"))
        return str(response.json().get("detail"))
    except Exception:
        return response.text[:300] or response.reason
