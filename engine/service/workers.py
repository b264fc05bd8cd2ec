"""The local worker pool: pipeline stages run in worker processes, never in the API process.

A dispatcher thread in the server claims queued jobs from the store (``claim_next`` moves a
job to running atomically) and hands them to a pool of spawned processes. Each worker opens
its own store on the same data folder (SQLite in WAL mode takes writers from several
processes), runs the pipeline, and records the outcome. At most one GPU-bound job runs per GPU.
A worker that dies takes its job back to the queue (three tries, then the job fails).

``economy`` jobs are deferred: the :class:`EconomyPlanner` plans every waiting economy job with
the economy scheduler (:func:`engine.economy.plan_deferral`) over this node's pool (the local
node, plus the peers enrolled in ``trust.sqlite3``) whenever that set of jobs or the pool
changes, or a job finishes. A job gets a start time (state ``scheduled``; ``claim_next`` does
not hand it out before its ``not_before``) or, when waiting would miss its deadline, goes to run
now with a message saying why. Work is estimated from the job's scene (analysis cached per scene
and routing options); kinds without a work model count as ``DEFAULT_WORK_HOURS``. The
dispatcher plans before it claims, and never claims an economy job the planner has not seen.

When the pool's cheapest plan puts a job on an enrolled peer whose window starts now, the
planner **forwards** it (``forward=True``, the default): the job goes to running (stage
``forwarded``) and a thread uploads its scene and submits the same kind and options to the peer
with priority ``now``, signing each request with this node's identity key (the peer accepts
requests signed by the nodes on its allowlist); it follows the peer's job, copies its artifacts
into the local job, and ends the local job as the peer's ended. The idempotency key
``forwarded-<job id>`` makes a forward repeated after a restart follow the same peer job. A peer
that cannot be reached (or is lost while it runs the job) sends the job back to its local plan,
and it is not forwarded again. A cheaper peer whose window is later, or without a URL, is only
reported in the job's message.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import InputError, OptimizerError
from engine.service.pipelines import REGISTRY, JobCancelled, JobContext, load_pipeline_modules, pipeline

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
WORKER_NICENESS = 10

# ----------------------------------------------------------------------------- worker side

_STORES: dict[str, object] = {}


def open_store(data_dir: Path, node_id: str):
    """A JobStore (with its vault) on ``data_dir`` for this process."""
    from engine.service.store import JobStore
    from engine.service.vault import Keyring, Vault

    return JobStore(data_dir, Vault(data_dir, Keyring(node_id)))


def _worker_store(data_dir: str, node_id: str):
    key = f"{data_dir}|{node_id}"
    if key not in _STORES:
        _STORES[key] = open_store(Path(data_dir), node_id)
    return _STORES[key]


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive its server (a kill -9 of the server leaves no orphans).

    A watchdog thread exits the worker within half a second once its parent process is gone
    (the parent id changes). Linux's PR_SET_PDEATHSIG is not used: it fires when the *thread*
    that started the worker ends, which here is the dispatcher, not the server. Whatever an
    orphan still does in that half second is fenced off by the job's attempt number. The
    server passes its own pid: a worker started as the server dies is already an orphan.
    """
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="optimizer-parent-watch", daemon=True).start()


def _init_worker(config_dir: str, modules: str, server_pid: int) -> None:
    from engine.service.pipelines import load_pipeline_modules

    _die_with_parent(server_pid)
    # Pipelines yield the CPU to the API process: a node busy with jobs still answers at once.
    with contextlib.suppress(AttributeError, OSError):  # no nice() on Windows: only latency suffers
        os.nice(WORKER_NICENESS)
    os.environ["OPTIMIZER_CONFIG_DIR"] = config_dir
    logging.basicConfig(level=logging.WARNING, format="optimizer worker: %(levelname)s: %(message)s")
    load_pipeline_modules(modules)


def execute_job(data_dir: str, node_id: str, job_id: str, attempt: int) -> str:
    """Run one claimed job to its end in this (worker) process; return the final state.

    Every outcome is recorded only if the job is still on ``attempt`` (fencing): a job that was
    re-queued and claimed again meanwhile belongs to its newer attempt.
    """
    from engine.errors import StaleAttempt
    from engine.service.store import JobState

    store = _worker_store(data_dir, node_id)

    def end(state: JobState, **details: str) -> str:
        try:
            return store.transition(job_id, state, attempt=attempt, **details).state.value
        except StaleAttempt:
            log.warning("job %s moved on past attempt %d; its outcome here is dropped", job_id, attempt)
            return "stale"

    try:
        context = JobContext(store, job_id)
        run = pipeline(context.kind).load()
        run(context)
    except JobCancelled:
        return end(JobState.CANCELLED, message="cancelled while running")
    except InputError as exc:
        return end(JobState.FAILED, error=str(exc))
    except Exception as exc:  # a pipeline bug must fail the job, not the worker
        log.exception("job %s failed", job_id)
        return end(JobState.FAILED, error=f"internal error: {type(exc).__name__}: {exc}")
    if store.get(job_id).cancel_requested:
        return end(JobState.CANCELLED, message="cancelled")
    return end(JobState.DONE, stage="done")


# ----------------------------------------------------------------------------- server side


class EconomyPlanner:
    """Plans the node's waiting economy jobs (see the module docstring); thread-safe.

    ``clock`` (unix time, default the store's) is what "now" means for planning; ``tariff`` and
    ``timezone`` price the local node (defaults: the design's tariff, this machine's zone);
    ``gpus`` is how many jobs it runs at once in a plan.
    """

    def __init__(self, store: Any, data_dir: Path, *, tariff: Any = None, timezone: str | None = None,
                 gpus: int = 1, clock: Callable[[], float] | None = None, forward: bool = True) -> None:
        from engine.economy import DEFAULT_TARIFF, local_timezone

        self.store = store
        self.data_dir = Path(data_dir)
        self.tariff = tariff or DEFAULT_TARIFF
        self.timezone = timezone or local_timezone()
        self.gpus = max(1, gpus)
        self.clock = clock or getattr(store, "clock", time.time)
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._analyses: dict[str, Any] = {}
        self._registry: Any = None
        self.forward = forward
        self._peers: dict[str, Any] = {}  # pool node name → enrolled Peer
        self._local_only: set[str] = set()  # jobs whose forwarding failed: they run here
        self._forwarding: dict[str, threading.Thread] = {}

    def pool(self) -> Any:
        """The local node and the enrolled peers (when the node has a trust database)."""
        from engine.economy import Node, Pool, nodes_from_peers
        from engine.economy.pool import TIERS

        local = Node("local", self.timezone, TIERS["rtx4090"], gpus=self.gpus, tariff=self.tariff, local=True)
        peers: list[Any] = []
        if (self.data_dir / "trust.sqlite3").exists():
            try:
                if self._registry is None:
                    from engine.trust.peers import PeerRegistry

                    self._registry = PeerRegistry(self.data_dir)
                enrolled = self._registry.list()
                peers = nodes_from_peers(enrolled, self.timezone, self.tariff)
                self._peers = {node.name: peer for node, peer in zip(peers, enrolled, strict=True)}
            except OptimizerError as exc:
                log.warning("economy planning without peers: %s", exc)
        return Pool((local, *peers))

    def plan(self, *, force: bool = False) -> int:
        """Plan the waiting economy jobs if they or the pool changed (always with ``force``); returns
        how many decisions were recorded."""
        with self._lock:
            waiting = self.store.waiting_economy()
            if not waiting:
                self._signature = None
                return 0
            pool = self.pool()
            signature = (tuple(j.id for j in waiting), tuple(n.name for n in pool.nodes))
            if not force and signature == self._signature:
                return 0
            now = datetime.fromtimestamp(self.clock(), UTC)
            try:
                decisions = self._decide(waiting, pool, now)
            except Exception as exc:  # a planning failure must not leave jobs waiting for ever
                log.exception("economy planning failed")
                decisions = None
                for job in waiting:
                    self.store.set_plan(job.id, {"mode": "now", "error": str(exc)}, not_before=None,
                                        message=f"economy: could not be planned ({exc}); it runs now")
            self._signature = signature
            by_id = {job.id: job for job in waiting}
            for decision in decisions or []:
                if self._try_forward(by_id[decision.job_id], decision, now):
                    continue
                not_before = None if decision.run_now else decision.not_before.timestamp()
                details = {k: decision.plan.get(k) for k in ("not_before", "node", "cost", "saving_percent")
                           if k in decision.plan}
                self.store.set_plan(decision.job_id, decision.plan, not_before=not_before,
                                    message=decision.message, details=details)
            return len(waiting)

    def _try_forward(self, job: Any, decision: Any, now: datetime) -> bool:
        """Start forwarding ``job`` if its decision puts it on an enrolled peer whose window is now."""
        other = decision.plan.get("elsewhere")
        if not self.forward or not other or job.id in self._local_only or job.scene_digest is None:
            return False
        peer = self._peers.get(other.get("node"))
        if peer is None or not peer.url or datetime.fromisoformat(other["start"]) > now:
            return False
        name = other["node"]
        plan = {**decision.plan, "mode": "forwarded", "node": name, "cost": other["cost"], "peer_url": peer.url}
        message = (f"economy: forwarding to {name}, whose cheapest window is now ({other['cost']:.2f} "
                   f"{decision.plan.get('currency', '')} against {decision.plan.get('cost', 0.0):.2f} here)")
        if self.store.start_forwarded(job.id, plan, message=message, details={"node": name}) is None:
            return True  # no longer waiting (a worker took it, or it was cancelled)
        thread = threading.Thread(target=self._forward, args=(job, name, peer, decision),
                                  name=f"optimizer-forward-{job.id[:8]}", daemon=True)
        self._forwarding[job.id] = thread
        thread.start()
        return True

    def _forward(self, job: Any, name: str, peer: Any, decision: Any) -> None:
        """Run ``job`` on ``peer`` (signed requests), copy its artifacts here and end the job as it ended there."""
        from engine.client import EngineClient
        from engine.service.security import load_or_create_identity
        from engine.service.store import JobState

        try:
            try:
                identity, key = load_or_create_identity(self.data_dir)
                client = EngineClient(peer.url, signer=(identity.node_id, key), retries=1, backoff=0.2)
                ref = client.upload_scene(self.store.load_scene(job.scene_digest))
                remote = client.submit(scene_ref=ref, kind=job.kind, options=job.options, priority="now",
                                       idempotency_key=f"forwarded-{job.id}")
            except Exception as exc:  # unreachable, refused, or any other failure: run here
                self._fall_back(job.id, decision, f"could not forward to {name} ({exc})")
                return
            self.store.message(job.id, f"forwarded to {name} as job {remote.id}")
            try:
                remote = client.wait(remote.id)
                for item in remote.artifacts:
                    self.store.add_artifact(job.id, item.name, client.artifact(remote.id, item.name),
                                            item.content_type)
            except Exception as exc:
                self._fall_back(job.id, decision, f"lost {name} while it ran the job as {remote.id} ({exc})")
                return
            where = f"on {name} (job {remote.id})"
            if remote.state == "done":
                self.store.transition(job.id, JobState.DONE, stage="done", message=f"done {where}")
            elif remote.state == "cancelled":
                self.store.transition(job.id, JobState.CANCELLED, message=f"cancelled {where}")
            else:
                self.store.transition(job.id, JobState.FAILED, error=f"failed {where}: {remote.error or 'no error given'}")
        except Exception:  # the thread must not die silently with the job left running
            log.exception("forwarding job %s to %s failed", job.id, name)
        finally:
            self._forwarding.pop(job.id, None)

    def _fall_back(self, job_id: str, decision: Any, why: str) -> None:
        """Send a job whose forwarding failed back to its local plan (never forwarded again)."""
        from engine.service.store import JobState

        log.warning("job %s: %s; it runs here", job_id, why)
        self._local_only.add(job_id)
        self.store.transition(job_id, JobState.QUEUED, message=f"economy: {why}; it runs here as planned")
        not_before = None if decision.run_now else decision.not_before.timestamp()
        self.store.set_plan(job_id, decision.plan, not_before=not_before, message=decision.message,
                            details={k: decision.plan.get(k) for k in ("not_before", "node", "cost")
                                     if k in decision.plan})

    def _decide(self, waiting: list[Any], pool: Any, now: datetime) -> list[Any]:
        from engine.economy import DEFAULT_DEADLINE, Waiting, parse_deadline, plan_deferral

        items = []
        for job in waiting:
            deadline = None
            given = (job.plan or {}).get("deadline") or job.options.get("deadline")  # a re-plan keeps the first
            if given:
                try:
                    deadline = parse_deadline(str(given), now, where=f"job {job.id}: deadline")
                except InputError as exc:
                    log.warning("%s; planned with the default deadline", exc)
            items.append(Waiting(job.id, self.work(job), deadline or now + DEFAULT_DEADLINE, job.kind))
        return plan_deferral(items, pool, now)

    def work(self, job: Any) -> float:
        """Reference GPU-hours of a job, from its scene's analysis (``DEFAULT_WORK_HOURS`` without a model)."""
        from engine.economy import DEFAULT_WORK_HOURS, Calibration, estimate_work, jobs_from_analysis
        from engine.economy.work import BAKE_DEFAULTS, SPLAT_DEFAULTS

        if job.kind not in ("bake", "splat", "optimize") or job.scene_digest is None:
            return DEFAULT_WORK_HOURS
        try:
            result = self._analysis(job)
            try:
                calibration = Calibration.open(self.data_dir)
            except OptimizerError:
                calibration = Calibration()
            params = dict(job.options.get("params") or {})

            def settings(raw: Any, defaults: dict[str, Any]) -> dict[str, Any]:
                raw = raw if isinstance(raw, dict) else {}
                return {k: v for k, v in raw.items() if k in defaults and isinstance(v, (int, float))}

            if job.kind == "optimize":
                jobs, _ = jobs_from_analysis(result, datetime.now(UTC), "auto", calibration, 1.0,
                                             {"bake": settings(params.get("bake"), BAKE_DEFAULTS),
                                              "splat": settings(params.get("splat"), SPLAT_DEFAULTS)})
                return float(sum(j.work for j in jobs))
            defaults = BAKE_DEFAULTS if job.kind == "bake" else SPLAT_DEFAULTS
            return estimate_work(result.features, result.plan, job.kind, calibration, 1.0,
                                 **settings(params, defaults)).reference_hours
        except Exception as exc:  # no estimate is no reason to lose the job: plan it as a small one
            log.warning("job %s: no work estimate (%s); planned as %.2f GPU-hours", job.id, exc, DEFAULT_WORK_HOURS)
            return DEFAULT_WORK_HOURS

    def _analysis(self, job: Any) -> Any:
        """The routing analysis of the job's scene, cached per scene digest and routing options."""
        import json

        from engine.route import analyze_and_plan
        from engine.scene import wire
        from engine.scene.model import Scene
        from engine.service.pipelines import policy_from_options

        options = job.options
        key = json.dumps([job.scene_digest, options.get("mode"), options.get("overrides"), options.get("routes")],
                         sort_keys=True)
        if key not in self._analyses:
            if len(self._analyses) > 256:
                self._analyses.clear()
            scene = wire.decode(self.store.load_scene(job.scene_digest), expect=Scene)
            self._analyses[key] = analyze_and_plan(scene, policy_from_options(options),
                                                   overrides=options.get("routes") or {})
        return self._analyses[key]

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None


@dataclass
class _Running:
    job_id: str
    gpu: bool
    future: Future = field(repr=False)


class WorkerPool:
    """Claims queued jobs and runs them in ``workers`` processes (``gpus`` GPU slots, at least 1)."""

    def __init__(self, store, data_dir: Path, node_id: str, *, workers: int = 0, gpus: int = 0,
                 config_dir: Path | None = None, planner: EconomyPlanner | None = None) -> None:
        from engine.service.security import config_dir as default_config_dir

        self.store = store
        self.data_dir = Path(data_dir)
        self.node_id = node_id
        self.workers = workers or max(1, (os.cpu_count() or 2))
        self.gpu_slots = max(1, gpus)
        self.config_dir = Path(config_dir or default_config_dir())
        self.modules = load_pipeline_modules()
        self.planner = planner or EconomyPlanner(store, self.data_dir, gpus=self.gpu_slots)
        self._replan = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    # lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._executor = self._new_executor()
        self._thread = threading.Thread(target=self._loop, name="optimizer-dispatcher", daemon=True)
        self._thread.start()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(str(self.config_dir), ",".join(self.modules), os.getpid()),
        )

    def wake(self) -> None:
        """Tell the dispatcher that a job may be waiting."""
        self._wake.set()

    def stop(self, grace: float = 5.0) -> list[str]:
        """Stop claiming, give running jobs ``grace`` seconds, then stop the workers.

        Jobs still running are put back in the queue (never left half-written): they run again
        at the next start. Returns their ids.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        deadline = time.monotonic() + grace
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
        executor, self._executor = self._executor, None
        if executor is not None:
            processes = list((executor._processes or {}).values())
            executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=5)
        requeued = self.store.recover()
        if requeued:
            log.warning("re-queued %d running job(s) at shutdown: %s", len(requeued), ", ".join(requeued))
        self.planner.close()
        return requeued

    @property
    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    # dispatching ------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                dispatched = self._dispatch_one()
            except Exception:  # the dispatcher must survive anything (a locked DB, say)
                log.exception("dispatcher error; retrying")
                dispatched = False
            if not dispatched:
                self._wake.wait(0.5)
                self._wake.clear()

    def _dispatch_one(self) -> bool:
        force = self._replan.is_set()
        self._replan.clear()
        self.planner.plan(force=force)
        with self._lock:
            if len(self._running) >= self.workers:
                return False
            gpu_busy = sum(r.gpu for r in self._running.values()) >= self.gpu_slots
        gpu_kinds = {kind for kind, spec in REGISTRY.items() if spec.gpu}
        job = self.store.claim_next(kinds=set(REGISTRY), gpu_kinds=gpu_kinds, gpu_busy=gpu_busy,
                                    planned_economy_only=True)
        if job is None:
            return False
        executor = self._executor
        if executor is None:
            self.store.recover()
            return False
        future = executor.submit(execute_job, str(self.data_dir), self.node_id, job.id, job.attempts)
        with self._lock:
            self._running[job.id] = _Running(job.id, REGISTRY[job.kind].gpu, future)
        future.add_done_callback(lambda f, job_id=job.id: self._finished(job_id, f))
        return True

    def _finished(self, job_id: str, future: Future) -> None:
        with self._lock:
            self._running.pop(job_id, None)
        self._replan.set()  # a finished job may free the node earlier than planned: plan again
        self._wake.set()
        if future.cancelled() or self._stopping.is_set():
            return
        error = future.exception()
        if error is None:
            return
        self._worker_died(job_id, error)

    def _worker_died(self, job_id: str, error: BaseException) -> None:
        from engine.service.store import JobState

        log.error("worker for job %s died: %s", job_id, error)
        if isinstance(error, BrokenProcessPool):
            self._executor = self._new_executor()
        try:
            job = self.store.get(job_id)
            if job.state.value != "running":
                return
            if job.cancel_requested:
                self.store.transition(job_id, JobState.CANCELLED, message="cancelled (worker stopped)")
            elif job.attempts >= MAX_ATTEMPTS:
                self.store.transition(job_id, JobState.FAILED,
                                      error=f"the worker process died {job.attempts} times running this job")
            else:
                self.store.transition(job_id, JobState.QUEUED, message="re-queued: the worker process died")
        except Exception:
            log.exception("could not record the end of job %s", job_id)
