"""The job store: state machine, idempotency, claiming across threads and processes, recovery, cancel,
events, artifacts, and no plaintext on disk (real SQLite files in tmp_path)."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.errors import ConfigError, InputError
from engine.service import store as store_module
from engine.service.store import (
    ALLOWED,
    TERMINAL,
    ArtifactNotFound,
    IdempotencyConflict,
    InvalidTransition,
    Job,
    JobNotFound,
    JobState,
    JobStore,
    StaleAttempt,
)
from engine.service.vault import Keyring, Vault

NODE = "fedcba9876543210"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config"
    monkeypatch.setenv("OPTIMIZER_CONFIG_DIR", str(path))
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def open_store(data: Path) -> JobStore:
    return JobStore(data, Vault(data, Keyring(NODE)))


@pytest.fixture
def store(data: Path) -> JobStore:
    s = open_store(data)
    yield s
    s.close()


def submit(store: JobStore, kind: str = "bake", **kwargs: object) -> Job:
    kwargs.setdefault("options", {})
    kwargs.setdefault("scene_digest", None)
    return store.submit(kind, **kwargs)[0]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- submit and read


def test_submit_get_and_to_dict(store: JobStore) -> None:
    digest = store.store_scene(b"scene bytes")
    job, created = store.submit("bake", options={"samples": 64, "denoise": True}, scene_digest=digest,
                                priority="economy")
    assert created and len(job.id) == 32 and int(job.id, 16) >= 0
    assert job.state is JobState.QUEUED and job.priority == "economy" and job.attempts == 0
    assert job.options == {"samples": 64, "denoise": True} and job.scene_digest == digest
    assert [s for s, _ in job.transitions] == ["queued"] and job.transitions[0][1] == job.created_at
    assert store.get(job.id) == job
    as_dict = json.loads(json.dumps(job.to_dict()))
    assert as_dict["state"] == "queued" and as_dict["timings"] == {"queued": job.created_at}
    assert as_dict["options"] == {"samples": 64, "denoise": True} and as_dict["artifacts"] == []
    assert store.load_scene(digest) == b"scene bytes"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": ""}, "job kind"),
    ({"kind": "bake/../x"}, "job kind"),
    ({"priority": "asap"}, "priority"),
    ({"options": {"x": float("nan")}}, "JSON"),
    ({"options": {"x": object()}}, "JSON"),
    ({"options": [1, 2]}, "object"),
    ({"scene_digest": "nope"}, "scene digest"),
    ({"scene_digest": "ab" * 32}, "upload the scene first"),
    ({"idempotency_key": ""}, "idempotency key"),
])
def test_submit_refuses_bad_requests(store: JobStore, kwargs: dict, match: str) -> None:
    args = {"kind": "bake", "options": {}, "scene_digest": None, **kwargs}
    with pytest.raises(InputError, match=match):
        store.submit(args.pop("kind"), **args)
    assert store.list() == []


def test_unknown_job_ids(store: JobStore) -> None:
    for call in (lambda: store.get("nope"), lambda: store.transition("nope", JobState.RUNNING),
                 lambda: store.progress("nope", "x", 0.5), lambda: store.message("nope", "hi"),
                 lambda: store.events("nope"), lambda: store.request_cancel("nope"),
                 lambda: store.add_artifact("nope", "a.bin", b"x", "application/octet-stream"),
                 lambda: store.artifact("nope", "a.bin")):
        with pytest.raises(JobNotFound, match="nope"):
            call()


def test_list_newest_first_with_filter_and_paging(store: JobStore) -> None:
    jobs = [submit(store, options={"i": i}) for i in range(5)]
    store.transition(jobs[1].id, JobState.RUNNING)
    assert [j.id for j in store.list()] == [j.id for j in reversed(jobs)]
    assert [j.id for j in store.list(limit=2, offset=1)] == [jobs[3].id, jobs[2].id]
    assert [j.id for j in store.list(state=JobState.RUNNING)] == [jobs[1].id]
    assert store.list(state=JobState.DONE) == []


# --------------------------------------------------------------------------- state machine


def job_in(store: JobStore, state: JobState) -> Job:
    """A job brought to ``state`` along allowed transitions."""
    job = submit(store)
    path = {
        JobState.QUEUED: [],
        JobState.SCHEDULED: [JobState.SCHEDULED],
        JobState.RUNNING: [JobState.RUNNING],
        JobState.VERIFYING: [JobState.RUNNING, JobState.VERIFYING],
        JobState.DONE: [JobState.RUNNING, JobState.DONE],
        JobState.FAILED: [JobState.FAILED],
        JobState.CANCELLED: [JobState.CANCELLED],
    }[state]
    for step in path:
        job = store.transition(job.id, step)
    assert job.state is state
    return job


@pytest.mark.parametrize(("current", "target"), list(itertools.product(JobState, JobState)))
def test_state_machine(store: JobStore, current: JobState, target: JobState) -> None:
    job = job_in(store, current)
    allowed = {
        "queued": {"scheduled", "running", "cancelled", "failed"},
        "scheduled": {"queued", "running", "cancelled", "failed"},
        "running": {"verifying", "done", "failed", "cancelled", "queued"},
        "verifying": {"done", "failed", "cancelled", "queued"},
    }.get(current.value, set())
    assert {s.value for s in ALLOWED[current]} == allowed
    if target.value in allowed:
        moved = store.transition(job.id, target, stage="stage-x", message="why")
        assert moved.state is target and moved.stage == "stage-x"
        assert moved.transitions[-1][0] == target.value and moved.messages[-1][1] == "why"
        assert moved.transitions[-1][1] >= job.transitions[-1][1]
    else:
        with pytest.raises(InvalidTransition, match=f"from {current.value} to {target.value}"):
            store.transition(job.id, target)
        assert store.get(job.id) == job  # unchanged
    assert {JobState.DONE, JobState.FAILED, JobState.CANCELLED} == TERMINAL


def test_transitions_record_timings_errors_and_events(store: JobStore) -> None:
    job = submit(store)
    store.transition(job.id, JobState.RUNNING, stage="render")
    store.transition(job.id, JobState.QUEUED, message="worker died")
    store.transition(job.id, JobState.RUNNING)
    failed = store.transition(job.id, JobState.FAILED, error="out of memory")
    assert [s for s, _ in failed.transitions] == ["queued", "running", "queued", "running", "failed"]
    times = [t for _, t in failed.transitions]
    assert times == sorted(times)
    assert failed.error == "out of memory"
    assert failed.to_dict()["timings"]["running"] == times[3]  # the last time it entered the state
    states = [e.data for e in store.events(job.id) if e.type == "state"]
    assert states[-1] == {"state": "failed", "from": "running", "error": "out of memory"}
    with pytest.raises(InputError, match="unknown job state"):
        store.transition(job.id, "finished")  # type: ignore[arg-type]


def test_stale_attempt_cannot_finish_a_reclaimed_job(store: JobStore) -> None:
    job = submit(store)
    first = store.claim_next()
    store.recover()  # the engine restarted; an orphaned worker of attempt 1 may still be running
    second = store.claim_next()
    assert (first.attempts, second.attempts) == (1, 2)
    with pytest.raises(StaleAttempt, match="attempt 1 is stale") as info:
        store.transition(job.id, JobState.DONE, attempt=1)
    assert isinstance(info.value, InvalidTransition)
    assert store.get(job.id).state is JobState.RUNNING
    assert store.transition(job.id, JobState.DONE, attempt=2).state is JobState.DONE


def test_done_sets_progress_to_one(store: JobStore) -> None:
    job = job_in(store, JobState.RUNNING)
    store.progress(job.id, "bake", 0.4)
    assert store.transition(job.id, JobState.DONE).progress == 1.0


# --------------------------------------------------------------------------- idempotency


def test_same_idempotency_key_gives_the_same_job(store: JobStore) -> None:
    digest = store.store_scene(b"scene")
    first, created = store.submit("bake", options={"a": 1, "b": [1, 2]}, scene_digest=digest,
                                  idempotency_key="click-1")
    again, created_again = store.submit("bake", options={"b": [1, 2], "a": 1}, scene_digest=digest,
                                        idempotency_key="click-1")
    assert created and not created_again and again.id == first.id
    assert len(store.list()) == 1
    other, created_other = store.submit("bake", options={"a": 1, "b": [1, 2]}, scene_digest=digest,
                                        idempotency_key="click-2")
    assert created_other and other.id != first.id


@pytest.mark.parametrize(("change", "word"), [
    ({"kind": "splat"}, "kind"), ({"options": {"a": 2}}, "options"), ({"scene": b"other scene"}, "scene"),
])
def test_reused_idempotency_key_with_another_request_conflicts(store: JobStore, change: dict, word: str) -> None:
    digest = store.store_scene(b"scene")
    first, _ = store.submit("bake", options={"a": 1}, scene_digest=digest, idempotency_key="k")
    request = {"kind": "bake", "options": {"a": 1}, "scene_digest": digest}
    if "scene" in change:
        request["scene_digest"] = store.store_scene(change.pop("scene"))
    request.update(change)
    with pytest.raises(IdempotencyConflict, match=word) as info:
        store.submit(request.pop("kind"), idempotency_key="k", **request)
    assert first.id in str(info.value)
    assert isinstance(info.value, InputError)


# --------------------------------------------------------------------------- claiming


def test_claim_order_now_before_economy_then_oldest(store: JobStore) -> None:
    e1 = submit(store, priority="economy")
    n1 = submit(store)
    e2 = submit(store, priority="economy")
    n2 = submit(store)
    order = []
    while (job := store.claim_next()) is not None:
        assert job.state is JobState.RUNNING and job.attempts == 1
        order.append(job.id)
    assert order == [n1.id, n2.id, e1.id, e2.id]
    assert store.claim_next() is None


def test_claim_filters_kinds_and_busy_gpu(store: JobStore) -> None:
    splat = submit(store, "splat")
    bake = submit(store, "bake")
    analyze = submit(store, "analyze")
    assert store.claim_next(kinds=set()) is None
    assert store.claim_next(kinds={"analyze"}).id == analyze.id
    gpu = {"splat"}
    assert store.claim_next(gpu_kinds=gpu, gpu_busy=True).id == bake.id  # splat is older but needs the GPU
    assert store.claim_next(gpu_kinds=gpu, gpu_busy=True) is None
    assert store.claim_next(gpu_kinds=gpu, gpu_busy=False).id == splat.id


def test_claim_counts_attempts_and_skips_scheduled(store: JobStore) -> None:
    job = submit(store)
    scheduled = submit(store)
    store.transition(scheduled.id, JobState.SCHEDULED)
    assert store.claim_next().id == job.id
    store.transition(job.id, JobState.QUEUED, message="retry")
    again = store.claim_next()
    assert again.id == job.id and again.attempts == 2
    assert store.claim_next() is None  # the scheduled job waits for its window


def test_claim_is_atomic_across_threads(store: JobStore) -> None:
    ids = {submit(store, options={"i": i}).id for i in range(60)}
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def claimer() -> None:
        barrier.wait()
        while (job := store.claim_next()) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)


def _claim_all(data_dir: str, config_dir: str, start: object, results: object) -> None:
    """Child process: claim jobs through its own store until none is left; report them."""
    os.environ["OPTIMIZER_CONFIG_DIR"] = config_dir
    store = open_store(Path(data_dir))
    start.wait()  # type: ignore[attr-defined]
    mine = []
    while (job := store.claim_next()) is not None:
        mine.append(job.id)
        store.progress(job.id, "work", 1.0)
    store.close()
    results.put(mine)  # type: ignore[attr-defined]


def test_claim_is_atomic_across_processes(store: JobStore, data: Path, config: Path) -> None:
    ids = {submit(store, options={"i": i}).id for i in range(80)}
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    children = [ctx.Process(target=_claim_all, args=(str(data), str(config), start, results)) for _ in range(3)]
    for child in children:
        child.start()
    start.set()
    lists = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    claimed = [job_id for mine in lists for job_id in mine]
    assert len(claimed) == len(set(claimed)) == len(ids) and set(claimed) == ids
    assert all(store.get(i).attempts == 1 and store.get(i).progress == 1.0 for i in ids)


# --------------------------------------------------------------------------- workers in other processes


def _work_on(data_dir: str, config_dir: str, job_id: str) -> None:
    os.environ["OPTIMIZER_CONFIG_DIR"] = config_dir
    store = open_store(Path(data_dir))
    store.progress(job_id, "bake", 0.5, "half way")
    store.message(job_id, "from the worker")
    store.add_artifact(job_id, "lightmap.bin", b"LIGHTMAP-FROM-WORKER", "application/octet-stream")
    store.transition(job_id, JobState.DONE)
    store.close()


def test_a_worker_process_writes_through_its_own_store(store: JobStore, data: Path, config: Path) -> None:
    job = submit(store)
    store.claim_next()
    child = multiprocessing.get_context("spawn").Process(target=_work_on, args=(str(data), str(config), job.id))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    done = store.get(job.id)
    assert done.state is JobState.DONE and done.messages[-1][1] == "from the worker"
    assert store.artifact(job.id, "lightmap.bin")[1] == b"LIGHTMAP-FROM-WORKER"
    assert [e.type for e in store.events(job.id)] == ["state", "state", "progress", "message", "artifact", "state"]


# --------------------------------------------------------------------------- crashes and recovery

_KILLED_SUBMITTER = """
import os, signal, sys
from pathlib import Path
from engine.service.store import JobStore
from engine.service.vault import Keyring, Vault
data = Path(sys.argv[1])
store = JobStore(data, Vault(data, Keyring(sys.argv[2])))
job, _ = store.submit("bake", options={}, scene_digest=None)
store.claim_next()
print(job.id, flush=True)
for i in range(5):
    print(store.submit("bake", options={"i": i}, scene_digest=None)[0].id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_loses_nothing_and_recover_requeues(data: Path, config: Path) -> None:
    result = subprocess.run([sys.executable, "-c", _KILLED_SUBMITTER, str(data), NODE], capture_output=True,
                            text=True, cwd=ROOT, env={**os.environ, "OPTIMIZER_CONFIG_DIR": str(config)}, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    running, *queued = result.stdout.split()
    store = open_store(data)
    try:
        assert store.get(running).state is JobState.RUNNING  # left running by the dead engine
        assert all(store.get(i).state is JobState.QUEUED for i in queued) and len(queued) == 5
        assert store.recover() == [running]
        job = store.get(running)
        assert job.state is JobState.QUEUED and job.messages[-1][1] == "re-queued after the engine stopped"
        assert store.recover() == []
        assert store.claim_next().id == running  # the oldest again
    finally:
        store.close()


def test_recover_handles_every_unfinished_state(store: JobStore) -> None:
    running = job_in(store, JobState.RUNNING)
    verifying = job_in(store, JobState.VERIFYING)
    scheduled = job_in(store, JobState.SCHEDULED)
    cancelling = job_in(store, JobState.RUNNING)
    store.request_cancel(cancelling.id)
    untouched = [job_in(store, s).id for s in (JobState.QUEUED, JobState.DONE, JobState.FAILED)]
    recovered = store.recover()
    assert sorted(recovered) == sorted([running.id, verifying.id, scheduled.id, cancelling.id])
    for job_id in (running.id, verifying.id, scheduled.id):
        assert store.get(job_id).state is JobState.QUEUED
    assert store.get(cancelling.id).state is JobState.CANCELLED
    assert [store.get(i).state.value for i in untouched] == ["queued", "done", "failed"]


def test_recover_can_fail_jobs_that_keep_killing_the_engine(store: JobStore) -> None:
    job = submit(store)
    for _ in range(3):
        store.claim_next()
        store.recover(max_attempts=3)
    failed = store.get(job.id)
    assert failed.state is JobState.FAILED and "3 times" in failed.error


# --------------------------------------------------------------------------- cancel


def test_cancel_semantics(store: JobStore) -> None:
    queued = submit(store)
    assert store.request_cancel(queued.id).state is JobState.CANCELLED
    scheduled = job_in(store, JobState.SCHEDULED)
    assert store.request_cancel(scheduled.id).state is JobState.CANCELLED

    running = store.claim_next()
    assert running is None
    running = job_in(store, JobState.RUNNING)
    flagged = store.request_cancel(running.id)
    assert flagged.state is JobState.RUNNING and flagged.cancel_requested
    assert store.request_cancel(running.id) == store.get(running.id)  # asking twice changes nothing
    assert store.transition(running.id, JobState.CANCELLED).state is JobState.CANCELLED  # the worker stops

    verifying = job_in(store, JobState.VERIFYING)
    assert store.request_cancel(verifying.id).cancel_requested

    done = job_in(store, JobState.DONE)
    assert store.request_cancel(done.id) == done  # terminal: unchanged


def test_a_cancelled_job_requeued_by_its_worker_is_not_run_again(store: JobStore) -> None:
    job = job_in(store, JobState.RUNNING)
    store.request_cancel(job.id)
    store.transition(job.id, JobState.QUEUED)
    assert store.claim_next() is None
    assert store.get(job.id).state is JobState.CANCELLED


# --------------------------------------------------------------------------- events and progress


def test_events_order_after_and_limit(store: JobStore) -> None:
    job = job_in(store, JobState.RUNNING)
    store.progress(job.id, "render", 0.25, "views")
    store.message(job.id, "rendering 64 views")
    store.progress(job.id, "render", 0.75)
    store.add_artifact(job.id, "a.bin", b"x", "application/octet-stream")
    store.transition(job.id, JobState.DONE)
    events = store.events(job.id)
    assert [e.seq for e in events] == list(range(1, 8))
    assert [e.type for e in events] == ["state", "state", "progress", "message", "progress", "artifact", "state"]
    assert events[2].data == {"stage": "render", "fraction": 0.25, "message": "views"}
    assert events[3].data == {"text": "rendering 64 views"}
    assert events[5].data["name"] == "a.bin" and events[5].data["size"] == 1
    assert all(e.job_id == job.id for e in events)
    assert [e.seq for e in store.events(job.id, after=4)] == [5, 6, 7]
    assert [e.seq for e in store.events(job.id, after=2, limit=2)] == [3, 4]
    assert store.events(job.id, after=7) == []
    ts = [e.ts for e in events]
    assert ts == sorted(ts)
    assert json.loads(json.dumps([e.to_dict() for e in events]))[0]["type"] == "state"


def test_progress_is_clamped_and_coalesced(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    job = job_in(store, JobState.RUNNING)
    clock = [time.time()]
    monkeypatch.setattr(store_module, "time", SimpleNamespace(time=lambda: clock[0]))
    store.progress(job.id, "train", -3)
    for i in range(1, 50):
        clock[0] += 0.001
        store.progress(job.id, "train", i / 10_000)  # tiny steps, quickly: coalesced
    store.progress(job.id, "train", 0.5)  # a big step: recorded
    store.progress(job.id, "densify", 0.5)  # another stage: recorded
    store.progress(job.id, "densify", 7.0)  # clamped to 1.0: always recorded
    store.progress(job.id, "densify", 1.0)
    fractions = [(e.data["stage"], e.data["fraction"]) for e in store.events(job.id) if e.type == "progress"]
    assert fractions == [("train", 0.0), ("train", 0.5), ("densify", 0.5), ("densify", 1.0), ("densify", 1.0)]
    job = store.get(job.id)
    assert job.stage == "densify" and job.progress == 1.0
    store.progress(job.id, "densify", 0.9)
    clock[0] += 0.3
    store.progress(job.id, "densify", 0.905)  # < 1 % and < 0.5 s: skipped
    clock[0] += 0.3
    store.progress(job.id, "densify", 0.906)  # < 1 % but 0.6 s after the last recorded tick: recorded
    assert [e.data["fraction"] for e in store.events(job.id) if e.type == "progress"][-2:] == [0.9, 0.906]
    store.progress(job.id, "densify", float("nan"))  # nonsense from a pipeline never breaks the job
    assert store.get(job.id).progress == 0.0


def test_progress_after_the_job_finished_is_ignored(store: JobStore) -> None:
    job = job_in(store, JobState.CANCELLED)
    store.progress(job.id, "late", 0.9)
    assert [e.type for e in store.events(job.id)] == ["state", "state"]


def test_many_threads_writing_events_get_unique_ordered_seqs(store: JobStore) -> None:
    job = job_in(store, JobState.RUNNING)

    def chatter(n: int) -> None:
        for i in range(25):
            store.message(job.id, f"thread {n} line {i}")

    threads = [threading.Thread(target=chatter, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [e.seq for e in store.events(job.id)]
    assert seqs == list(range(1, 2 + 150 + 1))
    assert len(store.get(job.id).messages) == 150


# --------------------------------------------------------------------------- artifacts


def test_artifacts_round_trip(store: JobStore) -> None:
    job = job_in(store, JobState.RUNNING)
    payload = os.urandom(100_000)
    artifact = store.add_artifact(job.id, "lightmap_0.exr", payload, "image/x-exr")
    assert artifact.size == len(payload) and artifact.content_type == "image/x-exr"
    got, data = store.artifact(job.id, "lightmap_0.exr")
    assert got == artifact and data == payload
    store.add_artifact(job.id, "report.json", b"{}", "application/json")
    assert [a.name for a in store.get(job.id).artifacts] == ["lightmap_0.exr", "report.json"]
    replaced = store.add_artifact(job.id, "report.json", b'{"ok": true}', "application/json")
    assert store.artifact(job.id, "report.json") == (replaced, b'{"ok": true}')
    assert len(store.get(job.id).artifacts) == 2
    with pytest.raises(ArtifactNotFound, match=r"missing\.bin"):
        store.artifact(job.id, "missing.bin")
    assert isinstance(ArtifactNotFound("x"), InputError)


@pytest.mark.parametrize("name", ["", "a/b", "..", "x..y", "../etc", "a\\b", "x" * 129, "tab\there", "."])
def test_bad_artifact_names_are_refused(store: JobStore, name: str) -> None:
    job = submit(store)
    with pytest.raises(InputError):
        store.add_artifact(job.id, name, b"x", "application/octet-stream")
    assert store.get(job.id).artifacts == ()


def test_bad_content_type_is_refused(store: JobStore) -> None:
    job = submit(store)
    with pytest.raises(InputError, match="content type"):
        store.add_artifact(job.id, "a.bin", b"x", "")


# --------------------------------------------------------------------------- at rest


def test_no_plaintext_under_the_data_dir(store: JobStore, data: Path) -> None:
    scene_marker = b"SCENE-MARKER-7f3a9c-do-not-leak" * 3
    artifact_marker = b"ARTIFACT-MARKER-41d2e8-do-not-leak" * 3
    digest = store.store_scene(b"glTF...." + scene_marker + b"....")
    job = store.submit("bake", options={"samples": 8}, scene_digest=digest)[0]
    store.claim_next()
    store.add_artifact(job.id, "out.bin", b"head" + artifact_marker + b"tail", "application/octet-stream")
    store.progress(job.id, "bake", 0.5)

    def scan(open_wal: bool) -> list[Path]:
        files = [p for p in data.rglob("*") if p.is_file()]
        assert {p.name for p in files} >= ({"jobs.sqlite3-wal", "vault.sqlite3-wal"} if open_wal else {"jobs.sqlite3"})
        return [p for p in files if scene_marker[:20] in p.read_bytes() or artifact_marker[:20] in p.read_bytes()]

    assert scan(open_wal=True) == []  # WAL files included, not yet checkpointed
    assert store.load_scene(digest).count(scene_marker) == 1
    assert artifact_marker in store.artifact(job.id, "out.bin")[1]
    store.close()
    assert scan(open_wal=False) == []


def test_a_newer_schema_is_refused(store: JobStore, data: Path) -> None:
    store.close()
    with sqlite3.connect(data / "jobs.sqlite3") as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(ConfigError, match="schema version 99"):
        open_store(data)


def test_reopening_keeps_everything(data: Path) -> None:
    with open_store(data) as first:
        job = submit(first, idempotency_key="k1")
        first.add_artifact(job.id, "x.bin", b"payload", "application/octet-stream")
    with open_store(data) as second:
        assert second.get(job.id).artifacts[0].name == "x.bin"
        assert second.artifact(job.id, "x.bin")[1] == b"payload"
        assert second.submit("bake", options={}, scene_digest=None, idempotency_key="k1") == (second.get(job.id),
                                                                                               False)
