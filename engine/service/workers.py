"""The local worker pool: pipeline stages run in worker processes, never in the API process.

A dispatcher thread in the server claims queued jobs from the store (``claim_next`` moves a
job to running atomically) and hands them to a pool of spawned processes. Each worker opens
its own store on the same data folder (SQLite in WAL mode takes writers from several
processes), runs the pipeline, and records the outcome. At most one GPU-bound job runs per GPU.
A worker that dies takes its job back to the queue (three tries, then the job fails).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InputError
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


@dataclass
class _Running:
    job_id: str
    gpu: bool
    future: Future = field(repr=False)


class WorkerPool:
    """Claims queued jobs and runs them in ``workers`` processes (``gpus`` GPU slots, at least 1)."""

    def __init__(self, store, data_dir: Path, node_id: str, *, workers: int = 0, gpus: int = 0,
                 config_dir: Path | None = None) -> None:
        from engine.service.security import config_dir as default_config_dir

        self.store = store
        self.data_dir = Path(data_dir)
        self.node_id = node_id
        self.workers = workers or max(1, (os.cpu_count() or 2))
        self.gpu_slots = max(1, gpus)
        self.config_dir = Path(config_dir or default_config_dir())
        self.modules = load_pipeline_modules()
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
        with self._lock:
            if len(self._running) >= self.workers:
                return False
            gpu_busy = sum(r.gpu for r in self._running.values()) >= self.gpu_slots
        gpu_kinds = {kind for kind, spec in REGISTRY.items() if spec.gpu}
        job = self.store.claim_next(kinds=set(REGISTRY), gpu_kinds=gpu_kinds, gpu_busy=gpu_busy)
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
