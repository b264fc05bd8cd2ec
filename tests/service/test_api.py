"""The engine node over real HTTP: auth, analyze, jobs, events, artifacts, limits, crashes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import requests

from engine.client import EngineAuthError, EngineClient, EngineError
from engine.route import analyze_and_plan
from engine.scene import MeshObject, Scene, wire
from engine.scene.demo import build_demo_scene
from tests.conftest import unit_box
from tests.service.conftest import ROOT, NodeProcess

MARKER = "PLAINTEXT-MARKER-7f3a9c"


@pytest.fixture(scope="module")
def demo() -> Scene:
    return build_demo_scene(leaf_count=80)


def small_scene(name: str = "crate") -> Scene:
    return Scene((unit_box(name),), name=name)


def test_health_is_quick_and_open_everything_else_needs_the_token(node: NodeProcess) -> None:
    assert node.started_in < 5.0
    health = requests.get(f"{node.url}/v1/health", timeout=5).json()
    assert health["status"] == "ok" and "analyze" in health["kinds"] and len(health["node_id"]) == 16
    assert requests.get(f"{node.url}/v1/jobs", timeout=5).status_code == 401
    wrong = requests.get(f"{node.url}/v1/jobs", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert node.get("/v1/jobs").status_code == 200
    assert oct((node.config / "token").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(EngineAuthError):
        EngineClient(node.url, "wrong").jobs()


def test_serve_prints_where_it_listens_and_keeps_its_token(make_node) -> None:
    node = make_node()
    token = node.token
    assert node.stop() == 0
    out = "".join(node.output)
    assert f"listening on http://127.0.0.1:{node.port}" in out
    assert f"token in {node.config / 'token'}" in out and f"data in {node.data}" in out
    again = make_node()
    assert again.token == token  # created once, reused


def test_analyze_matches_the_cli_result(node: NodeProcess, demo: Scene) -> None:
    expected = analyze_and_plan(demo).to_dict()
    as_json = node.post("/v1/analyze", json={"scene": wire.to_jsonable(demo)})
    assert as_json.status_code == 200, as_json.text
    client = EngineClient(node.url, node.token)
    as_msgpack = client.analyze(demo)
    for result in (as_json.json(), as_msgpack):
        assert result["plan"] == expected["plan"]
        assert result["complexity"] == expected["complexity"]
    scene_mode = client.analyze(demo, mode="scene")
    assert scene_mode["plan"]["mode"] == "scene"


def test_job_life_cycle_with_events_and_artifacts(node: NodeProcess, demo: Scene) -> None:
    client = EngineClient(node.url, node.token)
    job = client.submit(demo, options={"mode": "object"})
    assert job.state in ("queued", "running", "done")
    seen: list[tuple[str, float]] = []
    done = client.wait(job.id, progress=lambda stage, fraction, message: seen.append((stage, fraction)))
    assert done.state == "done", done.error
    assert seen and seen[-1] == ("analyze", 1.0)
    assert list(done.timings)[:3] == ["queued", "running", "done"]
    assert done.timings["queued"] <= done.timings["running"] <= done.timings["done"]
    names = {a.name for a in done.artifacts}
    assert names == {"analysis.json", "analysis.optw"}
    report = json.loads(client.artifact(job.id, "analysis.json"))
    assert report["plan"]["pipeline"] == "hybrid"
    assert wire.decode(client.artifact(job.id, "analysis.optw")).plan.pipeline == "hybrid"
    events = list(client.events(job.id))
    states = [e.data.get("state") for e in events if e.type == "state"]
    assert states[0] == "queued" and states[-1] == "done"
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    listed = [j.id for j in client.jobs()]
    assert job.id in listed


def test_uploaded_scene_reference_and_idempotency(node: NodeProcess) -> None:
    client = EngineClient(node.url, node.token)
    ref = client.upload_scene(small_scene())
    first = client.submit(scene_ref=ref, idempotency_key="click-1")
    again = client.submit(scene_ref=ref, idempotency_key="click-1")
    assert again.id == first.id
    header = node.post("/v1/jobs", json={"scene_ref": ref}, headers={"Idempotency-Key": "click-1"})
    assert header.status_code == 200 and header.json()["id"] == first.id
    with pytest.raises(EngineError) as conflict:
        client.submit(scene_ref=ref, idempotency_key="click-1", options={"mode": "scene"})
    assert conflict.value.status == 409
    assert node.wait_for(first.id)["state"] == "done"
    missing = node.post("/v1/jobs", json={"scene_ref": "0" * 64})
    assert missing.status_code == 422 and "scene_ref" in missing.json()["detail"]


def test_cancel_queued_and_running_jobs(make_node) -> None:
    node = make_node("--workers", "1")
    client = EngineClient(node.url, node.token)
    ref = client.upload_scene(small_scene())
    running = client.submit(scene_ref=ref, kind="slow", options={"params": {"seconds": 20}})
    queued = client.submit(scene_ref=ref, kind="slow", options={"params": {"seconds": 20}})
    node.wait_for(running.id, ("running",))
    assert client.cancel(queued.id).state == "cancelled"
    assert client.cancel(running.id).cancel_requested
    ended = node.wait_for(running.id, timeout=10)
    assert ended["state"] == "cancelled"
    assert client.job(queued.id).state == "cancelled"
    assert node.get("/v1/jobs/nope").status_code == 404


def test_kill_9_and_restart_loses_no_job(make_node, tmp_path: Path) -> None:
    node = make_node("--workers", "1")
    client = EngineClient(node.url, node.token)
    ref = client.upload_scene(small_scene())
    ids = [client.submit(scene_ref=ref, kind="slow", options={"params": {"seconds": s}}).id for s in (4.0, 1.0, 1.0)]
    ids.append(client.submit(scene_ref=ref).id)
    node.wait_for(ids[0], ("running",))
    node.kill()
    restarted = make_node("--workers", "2")
    client = EngineClient(restarted.url, restarted.token)
    listed = {j.id for j in client.jobs()}
    assert set(ids) <= listed
    for job_id in ids:
        assert restarted.wait_for(job_id, timeout=60)["state"] == "done"
    first = client.job(ids[0])
    assert first.attempts == 2 and any("re-queued" in m for m in first.messages)


def test_sigterm_requeues_running_jobs_cleanly(make_node) -> None:
    node = make_node("--workers", "1")
    client = EngineClient(node.url, node.token)
    job = client.submit(small_scene(), kind="slow", options={"params": {"seconds": 30}})
    node.wait_for(job.id, ("running",))
    assert node.stop() == 0
    assert "re-queued" in "".join(node.output)
    again = make_node("--workers", "1")
    assert EngineClient(again.url, again.token).job(job.id).state in ("queued", "running")


def test_bad_requests_get_clear_4xx(make_node) -> None:
    node = make_node("--max-upload", "1")
    cases = [
        (node.post("/v1/jobs", json={"scene_ref": "0" * 64, "priority": "yesterday"}), 422, "priority"),
        (node.post("/v1/jobs", json={"scene_ref": "0" * 64, "options": {"mode": "galaxy"}}), 422, "options.mode"),
        (node.post("/v1/jobs", json={"scene_ref": "0" * 64, "options": {"quality": {"ssim": 3}}}), 422,
         "options.quality.ssim"),
        (node.post("/v1/jobs", json={"scene_ref": "0" * 64, "options": {"overrides": {"nope": 1}}}), 422,
         "options.overrides"),
        (node.post("/v1/jobs", json={"kind": "teleport", "scene_ref": "0" * 64}), 422, "body.kind"),
        (node.post("/v1/jobs", json={"surprise": 1}), 422, "surprise"),
        (node.post("/v1/jobs", json={}), 422, "exactly one of"),
        (node.post("/v1/jobs", json={"scene": {"format": "optimizer-wire", "version": 99, "root": None,
                                               "arrays": []}}), 422, "version 99"),
        (node.post("/v1/jobs", data=b"{not json", headers={"Content-Type": "application/json"}), 400, "JSON"),
        (node.post("/v1/jobs", data=b"\xc1", headers={"Content-Type": "application/msgpack"}), 400, "msgpack"),
        (node.post("/v1/jobs", data=b"x", headers={"Content-Type": "text/plain"}), 415, "Content-Type"),
        (node.post("/v1/analyze", json={"scene": wire.to_jsonable(Scene())}), 422, "no triangles"),
        (node.get("/v1/jobs?limit=0"), 422, "limit"),
        (node.get("/v1/jobs/abc/artifacts/none"), 404, "abc"),
    ]
    for response, status, needle in cases:
        assert response.status_code == status, (needle, response.text)
        assert needle in response.json()["detail"], (needle, response.json())
    big = node.post("/v1/scenes", data=b"\0" * (2 * 1024 * 1024), headers={"Content-Type": "application/msgpack"})
    assert big.status_code == 413 and "limit" in big.json()["detail"]

    def chunks():  # no Content-Length: the server must count
        for _ in range(40):
            yield b"\0" * 65536

    chunked = node.post("/v1/scenes", data=chunks(), headers={"Content-Type": "application/msgpack"})
    assert chunked.status_code == 413
    # a peer-crafted scene whose triangle points past its vertices: the model's check runs again
    envelope = wire.to_jsonable(Scene((MeshObject("Chair", [[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]),)))
    triangles = envelope["root"]["objects"][0]["triangles"]["$array"]
    envelope["arrays"][triangles]["b64"] = base64.b64encode(np.array([[0, 1, 7]], np.int32).tobytes()).decode()
    crafted = node.post("/v1/scenes", json=envelope)
    assert crafted.status_code == 422
    assert "object 'Chair'" in crafted.json()["detail"] and "vertex index 7" in crafted.json()["detail"]
    assert requests.get(f"{node.url}/v1/health", timeout=5).status_code == 200  # still alive


def test_nothing_is_stored_in_plaintext_and_keys_rotate(make_node) -> None:
    node = make_node("--workers", "1")
    client = EngineClient(node.url, node.token)
    job = client.submit(Scene((unit_box(MARKER),), name=MARKER))
    assert client.wait(job.id).state == "done"
    before = client.artifact(job.id, "analysis.json")
    assert MARKER.encode() in before
    for path in node.data.rglob("*"):
        if path.is_file():
            assert MARKER.encode() not in path.read_bytes(), path
    rotate = subprocess.run([sys.executable, "-m", "engine.cli", "keys", "rotate", "--data", str(node.data)],
                            env=node.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert rotate.returncode == 0, rotate.stderr
    assert client.artifact(job.id, "analysis.json") == before  # the running node reads with the new key
    node.stop()
    again = make_node("--workers", "1")
    assert EngineClient(again.url, again.token).artifact(job.id, "analysis.json") == before


def test_cli_submit_status_wait(node: NodeProcess, tmp_path: Path, demo: Scene) -> None:
    from engine.scene.gltf import export_gltf

    path = export_gltf(demo, tmp_path / "demo.glb")
    env = {**node.env, "OPTIMIZER_URL": node.url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    submitted = cli("submit", str(path))
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    waited = cli("wait", job_id)
    assert waited.returncode == 0, waited.stderr
    assert "done" in waited.stdout and "analysis.json" in waited.stdout
    status = cli("status", "--json")
    assert job_id in {j["id"] for j in json.loads(status.stdout)}
    assert cli("submit", str(path), "--wait").returncode == 0
    bad = cli("status", "0123")
    assert bad.returncode == 2 and "0123" in bad.stderr and "Traceback" not in bad.stderr
    unreachable = subprocess.run([sys.executable, "-m", "engine.cli", "status", "--url", "http://127.0.0.1:9"],
                                 env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 1 and "no engine answers" in unreachable.stderr


def test_openapi_describes_every_body(node: NodeProcess) -> None:
    spec = requests.get(f"{node.url}/openapi.json", timeout=5).json()
    schemas = spec["components"]["schemas"]
    for name in ("JobRequest", "JobOptions", "QualityTargets", "AnalyzeRequest", "JobView", "JobList", "Health",
                 "ErrorBody", "SceneUploaded"):
        assert name in schemas, name
    jobs = spec["paths"]["/v1/jobs"]["post"]
    assert set(jobs["requestBody"]["content"]) == {"application/json", "application/msgpack"}


def test_msgpack_responses(node: NodeProcess) -> None:
    response = node.get("/v1/jobs", headers={"Accept": "application/msgpack"})
    assert response.headers["content-type"].startswith("application/msgpack")
    assert "jobs" in msgpack.unpackb(response.content, raw=False)


def test_schemathesis_finds_no_server_errors(node: NodeProcess) -> None:
    """A bounded property-based run over every operation of /openapi.json: zero 5xx."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{node.url}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "25", "-H", f"Authorization: Bearer {node.token}",
         "--phases", "examples,coverage,fuzzing", "--request-timeout", "30", "--generation-deterministic",
         "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=node.env,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert time.monotonic() - started < 600


def test_bake_job_kind(node: NodeProcess, tmp_path: Path) -> None:
    """The service runs the baker as the `bake` kind and returns its files as artifacts."""
    from engine.scene.io import load_scene
    from tests.scene.test_obj import CORNELL_MTL_KE, cornell

    scene = load_scene(cornell(tmp_path, CORNELL_MTL_KE), unit="mm")
    client = EngineClient(node.url, node.token)
    bad = client.submit(scene, kind="bake", options={"params": {"sampels": 4}})
    assert client.wait(bad.id, timeout=300).state == "failed"
    assert "sampels" in client.job(bad.id).error
    job = client.submit(scene, kind="bake", options={"params": {"samples": 4, "bounces": 1, "atlas_size": 512,
                                                                "device": "cpu", "denoise": False}})
    done = client.wait(job.id, timeout=600)
    assert done.state == "done", done.error
    names = {a.name for a in done.artifacts}
    assert {"bake.json", "scene.glb", "lightmaps__atlas_0.exr", "lightmaps__atlas_0.rgbm.png"} <= names
    summary = json.loads(client.artifact(job.id, "bake.json"))
    assert summary["device"] == "cpu" and summary["texels"] > 0
