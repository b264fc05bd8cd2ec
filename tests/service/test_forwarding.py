"""Forwarding of economy jobs to an enrolled peer whose cheap window is now (two real nodes).

Node A runs on a simulated clock at 22:00 UTC (off-peak in the default tariff, so its own window
is now too) and has node B enrolled as 20 × faster at the same hourly price: the pool's cheapest
plan runs the job on B, now. A forwards it with requests signed by its identity key (B has A on
its allowlist; the two nodes have different tokens), follows B's job and copies its artifacts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.scene import wire
from engine.scene.model import MeshObject, Scene
from engine.service.security import load_or_create_identity
from engine.trust.peers import PeerRegistry
from engine.trust.verify import sign_request
from tests.service.conftest import NodeProcess, free_port

OFF_PEAK = "2025-01-15T22:00:00+00:00"
SCENE = wire.to_jsonable(Scene((MeshObject("Chair", [[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]),)))


def _enrol(data: Path, other: Path, url: str, name: str, capability: float = 1.0) -> str:
    """Enrol the node whose data folder is ``other`` in ``data``'s allowlist; returns its node id."""
    identity, _ = load_or_create_identity(other)
    with PeerRegistry(data) as registry:
        registry.add(json.dumps(identity.to_dict()), url, name=name, capability=capability)
    return identity.node_id


@pytest.fixture
def nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "UTC")
    started: list[NodeProcess] = []

    def make(name: str, port: int, *extra: str) -> NodeProcess:
        node = NodeProcess(tmp_path / name / "data", tmp_path / name / "config", port, ["--workers", "1", *extra])
        node.data.mkdir(parents=True)
        started.append(node)
        return node

    yield make
    for node in started:
        node.stop()


def test_economy_job_runs_on_the_peer_whose_window_is_now(nodes) -> None:
    a, b = nodes("a", free_port(), "--economy-clock", OFF_PEAK), nodes("b", free_port())
    b_id = _enrol(a.data, b.data, b.url, "b", capability=20.0)  # 20 × faster, same price: far cheaper
    a_id = _enrol(b.data, a.data, a.url, "a")
    a.start()
    b.start()
    assert a.token != b.token  # A can only reach B by signing

    reply = a.post("/v1/jobs", json={"kind": "analyze", "scene": SCENE, "priority": "economy"})
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["state"] == "running" and job["stage"] == "forwarded"
    assert job["plan"]["mode"] == "forwarded" and job["plan"]["node"] == f"b ({b_id})"
    assert job["plan"]["cost"] < job["plan"]["baseline_cost"]
    done = a.wait_for(job["id"], timeout=30)
    assert done["state"] == "done", done
    texts = [m["text"] for m in done["messages"]]
    forwarded = [t for t in texts if t.startswith(f"forwarded to b ({b_id}) as job ")]
    assert len(forwarded) == 1, texts
    remote_id = forwarded[0].rsplit(" ", 1)[1]

    remote = b.get(f"/v1/jobs/{remote_id}").json()  # B ran it, as a "now" job
    assert remote["state"] == "done" and remote["priority"] == "now" and remote["kind"] == "analyze"
    assert remote_id in [j["id"] for j in b.get("/v1/jobs").json()["jobs"]]
    assert len(a.get("/v1/jobs").json()["jobs"]) == 1  # A ran nothing itself
    names = sorted(x["name"] for x in done["artifacts"])
    assert names == sorted(x["name"] for x in remote["artifacts"]) == ["analysis.json", "analysis.optw"]
    for name in names:
        mine = a.get(f"/v1/jobs/{job['id']}/artifacts/{name}")
        theirs = b.get(f"/v1/jobs/{remote_id}/artifacts/{name}")
        assert mine.status_code == theirs.status_code == 200 and mine.content == theirs.content
    assert json.loads(a.get(f"/v1/jobs/{job['id']}/artifacts/analysis.json").content)["plan"]

    # B accepts A's signature on the job routes, and no one else's
    path = f"/v1/jobs/{remote_id}"
    _, a_key = load_or_create_identity(a.data)
    assert requests.get(b.url + path, headers=sign_request(a_key, a_id, "GET", path, b""), timeout=10).ok
    stranger = sign_request(Ed25519PrivateKey.generate(), a_id, "GET", path, b"")
    assert requests.get(b.url + path, headers=stranger, timeout=10).status_code == 401
    other_path = sign_request(a_key, a_id, "GET", "/v1/jobs/other", b"")  # signed for another route
    assert requests.get(b.url + path, headers=other_path, timeout=10).status_code == 401
    assert requests.get(b.url + "/v1/jobs", headers=sign_request(a_key, a_id, "GET", "/v1/jobs", b""),
                        timeout=10).status_code == 401  # listing B's jobs is not a forwarding route


def test_unreachable_peer_falls_back_to_the_local_plan(nodes) -> None:
    a = nodes("a", free_port(), "--economy-clock", OFF_PEAK)
    gone = free_port()  # nothing listens there
    peer = Path(a.data.parent.parent / "gone")
    peer.mkdir()
    b_id = _enrol(a.data, peer, f"http://127.0.0.1:{gone}", "b", capability=20.0)
    a.start()
    job = a.post("/v1/jobs", json={"kind": "analyze", "scene": SCENE, "priority": "economy"}).json()
    began = time.monotonic()
    done = a.wait_for(job["id"], timeout=30)
    assert done["state"] == "done", done
    assert time.monotonic() - began < 20
    texts = [m["text"] for m in done["messages"]]
    assert any(t.startswith(f"economy: could not forward to b ({b_id})") and t.endswith("it runs here as planned")
               for t in texts), texts
    assert not any(t.startswith("forwarded to") for t in texts)
    assert done["plan"]["node"] == "local" and done["plan"]["elsewhere"]["node"] == f"b ({b_id})"
    assert sorted(x["name"] for x in done["artifacts"]) == ["analysis.json", "analysis.optw"]


def test_no_forward_keeps_the_job_here(nodes) -> None:
    a = nodes("a", free_port(), "--economy-clock", OFF_PEAK, "--no-forward")
    peer = Path(a.data.parent.parent / "other")
    peer.mkdir()
    b_id = _enrol(a.data, peer, "http://127.0.0.1:9", "b", capability=20.0)
    a.start()
    job = a.post("/v1/jobs", json={"kind": "analyze", "scene": SCENE, "priority": "economy"}).json()
    assert job["plan"]["node"] == "local" and job["plan"]["elsewhere"]["node"] == f"b ({b_id})"
    done = a.wait_for(job["id"], timeout=30)
    assert done["state"] == "done"
    assert any("but it is not forwarded there: it runs here" in m["text"] for m in done["messages"])
