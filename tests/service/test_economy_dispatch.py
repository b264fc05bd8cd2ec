"""Real deferral of economy jobs: the planner, the store's gating of scheduled jobs, a real node.

The clock is a fake one passed to the store and the planner (no environment hooks); times are
UTC (the planner's time zone is given), prices the design's default tariff: peak 09–17 $2.00/h,
standard 17–21 $1.00/h, off-peak 21–06 $0.60/h. 2025-01-15 is a Wednesday.
"""

from __future__ import annotations

import base64
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engine.scene import wire
from engine.scene.model import MeshObject, Scene
from engine.service.db import set_schema
from engine.service.store import _MIGRATIONS, JobState, JobStore
from engine.service.vault import Keyring, Vault
from engine.service.workers import EconomyPlanner
from engine.trust.peers import PeerRegistry

NODE = "0123456789abcdef"
WEDNESDAY_10 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)


class FakeClock:
    """Unix time that moves only when a test says so."""

    def __init__(self, when: datetime) -> None:
        self.t = when.timestamp()

    def __call__(self) -> float:
        return self.t

    def set(self, when: datetime) -> None:
        self.t = when.timestamp()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(WEDNESDAY_10)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock):
    with JobStore(tmp_path, Vault(tmp_path, Keyring(NODE)), clock=clock) as opened:
        yield opened


@pytest.fixture
def planner(store: JobStore, tmp_path: Path, clock: FakeClock) -> EconomyPlanner:
    return EconomyPlanner(store, tmp_path, timezone="UTC", clock=clock)


def economy(store: JobStore, deadline: datetime | None = None, kind: str = "analyze"):
    options = {} if deadline is None else {"deadline": deadline.isoformat()}
    return store.submit(kind, options=options, scene_digest=None, priority="economy")[0]


def claim(store: JobStore):
    return store.claim_next(planned_economy_only=True)


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_peak_job_waits_for_off_peak_while_now_jobs_run(store: JobStore, planner: EconomyPlanner,
                                                        clock: FakeClock) -> None:
    job = economy(store)
    assert claim(store) is None  # not planned yet: the planner must see it first
    assert planner.plan() == 1
    job = store.get(job.id)
    off_peak = datetime(2025, 1, 15, 21, 0, tzinfo=UTC)
    assert job.state is JobState.SCHEDULED and job.not_before == off_peak.timestamp()
    plan = job.plan
    assert plan["mode"] == "deferred" and plan["node"] == "local" and at(plan["not_before"]) == off_peak.timestamp()
    assert at(plan["deadline"]) == (WEDNESDAY_10 + timedelta(hours=24)).timestamp()  # the default deadline
    assert 0 < plan["cost"] < plan["baseline_cost"] and plan["saving_percent"] == pytest.approx(70.0, abs=0.1)
    event = [e for e in store.events(job.id) if e.type == "state"][-1].data
    assert event["state"] == "scheduled" and event["node"] == "local" and event["cost"] == plan["cost"]
    assert at(event["not_before"]) == off_peak.timestamp() and event["saving_percent"] == plan["saving_percent"]
    assert job.messages[-1][1].startswith("economy: scheduled to start at 2025-01-15T21:00:00+00:00")

    now_job = store.submit("analyze", options={}, scene_digest=None, priority="now")[0]
    assert claim(store).id == now_job.id  # a now job runs at once
    clock.set(off_peak - timedelta(seconds=1))
    assert claim(store) is None
    assert planner.plan() == 0  # nothing changed: no re-plan
    clock.set(off_peak)
    claimed = claim(store)
    assert claimed.id == job.id and claimed.state is JobState.RUNNING


def test_new_job_replans_and_keeps_both_deadlines(store: JobStore, planner: EconomyPlanner,
                                                  clock: FakeClock) -> None:
    first = economy(store, WEDNESDAY_10 + timedelta(hours=24), kind="slow")
    planner.plan()
    assert store.get(first.id).not_before == at("2025-01-15T21:00:00+00:00")
    clock.set(WEDNESDAY_10 + timedelta(minutes=20))
    second = economy(store, datetime(2025, 1, 15, 22, 0, tzinfo=UTC), kind="slow")  # due at 22:00
    assert planner.plan() == 2
    one, two = store.get(first.id), store.get(second.id)
    assert two.not_before == at("2025-01-15T21:00:00+00:00")  # only 21-22 is off-peak before its deadline
    assert one.not_before == at("2025-01-15T22:00:00+00:00")  # one GPU: the first moves an hour on
    for job, deadline in ((one, "2025-01-16T10:00:00+00:00"), (two, "2025-01-15T22:00:00+00:00")):
        assert job.state is JobState.SCHEDULED and at(job.plan["deadline"]) == at(deadline)
        assert at(job.plan["finish"]) <= at(deadline)
    moved = [e.data for e in store.events(first.id) if e.type == "state"]
    assert [d["state"] for d in moved] == ["queued", "scheduled", "scheduled"]
    assert at(moved[-1]["not_before"]) == at("2025-01-15T22:00:00+00:00")


def test_infeasible_deadline_runs_now_with_the_earliest_finish(store: JobStore, planner: EconomyPlanner) -> None:
    job = economy(store, WEDNESDAY_10 + timedelta(minutes=1))  # 3 GPU-minutes of work cannot end in 1
    planner.plan()
    job = store.get(job.id)
    assert job.state is JobState.QUEUED and job.not_before is None
    assert job.plan["mode"] == "now" and at(job.plan["earliest_finish"]) == at("2025-01-15T10:03:00+00:00")
    assert job.plan["earliest_cost"] == pytest.approx(0.1)  # 0.05 h at the peak $2.00
    text = job.messages[-1][1]
    assert "cannot be met" in text and "earliest possible finish is 2025-01-15T10:03:00+00:00" in text
    assert "0.10 USD" in text and text.endswith("it runs now")
    assert claim(store).id == job.id  # at once


def _enrol(data: Path, capability: float) -> str:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with PeerRegistry(data) as registry:
        return registry.add(base64.b64encode(raw).decode(), "http://127.0.0.1:9", name="fast",
                            capability=capability).node_id


def test_cheaper_peer_is_reported_not_used_and_its_loss_replans(store: JobStore, planner: EconomyPlanner,
                                                                 tmp_path: Path) -> None:
    node_id = _enrol(tmp_path, capability=20.0)  # 20 × faster at the same hourly price: far cheaper
    job = economy(store)
    planner.plan()
    job = store.get(job.id)
    assert job.state is JobState.SCHEDULED and job.plan["node"] == "local"  # it still runs here
    assert job.plan["elsewhere"]["node"] == f"fast ({node_id})"
    assert job.plan["elsewhere"]["cost"] < job.plan["cost"]
    assert f"would run on fast ({node_id}) at" in job.messages[-1][1]
    with PeerRegistry(tmp_path) as registry:
        registry.remove(node_id)
    assert planner.plan() == 1  # the pool changed: planned again
    assert "elsewhere" not in store.get(job.id).plan
    assert store.get(job.id).not_before == at("2025-01-15T21:00:00+00:00")


def test_restart_replans_and_old_databases_stay_readable(tmp_path: Path, clock: FakeClock) -> None:
    data = tmp_path / "old"
    data.mkdir()
    conn = sqlite3.connect(data / "jobs.sqlite3")
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in _MIGRATIONS[1]:
        conn.execute(statement)
    set_schema(conn, "schema_version", 1)
    conn.execute("INSERT INTO jobs (id, kind, state, priority, options, created_at, updated_at) "
                 "VALUES ('old', 'analyze', 'done', 'now', '{}', 1, 1)")
    conn.commit()
    conn.close()
    with JobStore(data, Vault(data, Keyring(NODE)), clock=clock) as store:
        old = store.get("old")
        assert old.state is JobState.DONE and old.plan is None and old.not_before is None
        job = economy(store)
        EconomyPlanner(store, data, timezone="UTC", clock=clock).plan()
        assert store.get(job.id).state is JobState.SCHEDULED
        assert store.recover() == [job.id]  # a restart: the plan is made again
        assert store.get(job.id).plan is None
        assert store.claim_next(planned_economy_only=True) is None
        EconomyPlanner(store, data, timezone="UTC", clock=clock).plan()
        assert store.get(job.id).state is JobState.SCHEDULED


def test_node_defers_economy_job_until_its_window(make_node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    # a simulated clock 30 s before off-peak, running 10 × real time: the window opens 3 s from now
    node = make_node("--workers", "2", "--economy-clock", "2025-01-15T20:59:30+00:00",
                     "--economy-clock-speed", "10")
    scene = wire.to_jsonable(Scene((MeshObject("Chair", [[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]),)))
    submitted = time.time()
    body = {"kind": "slow", "scene": scene, "priority": "economy", "options": {"params": {"seconds": 0.1}}}
    reply = node.post("/v1/jobs", json=body)
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["state"] == "scheduled" and job["plan"]["not_before"] == "2025-01-15T21:00:00+00:00"
    assert job["plan"]["cost"] > 0 and job["not_before"] == at("2025-01-15T21:00:00+00:00")
    assert node.get(f"/v1/jobs/{job['id']}").json()["state"] == "scheduled"
    now_job = node.post("/v1/jobs", json={**body, "priority": "now"}).json()
    assert node.wait_for(now_job["id"], timeout=30)["state"] == "done"
    done = node.wait_for(job["id"], timeout=30)
    assert done["state"] == "done"
    assert done["timings"]["running"] - submitted >= 2.0  # not before the simulated clock reached 21:00
    assert done["timings"]["running"] > now_job["created_at"]
