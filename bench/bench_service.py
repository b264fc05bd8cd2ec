"""Benchmark: many concurrent clients submitting and polling analyze jobs on one node.

Starts `optimizer serve` on a free loopback port (its own data and config folders), uploads a
small scene once, then runs CLIENTS clients (threads spread over PROCESSES load processes, so
the clients' own Python does not become the bottleneck); each submits JOBS analyze jobs in turn
and polls each every POLL seconds until it ends (the add-on polls once a second). Bounded in
count and time. Prints p50/p99 latency of submits and status
calls, jobs/s and jobs/hour, and the errors (there should be none). The baseline, measured in
the same run before the load, is the latency of one client's sequential GET /v1/health calls;
latencies are also printed as ratios against it.

    python bench/bench_service.py [--clients 500] [--jobs 2] [--poll 1.0] [--processes 4] [--workers 2]
                                  [--time-limit 180] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.client import EngineClient  # noqa: E402
from engine.scene import MeshObject, Scene  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def small_scene() -> Scene:
    positions = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    return Scene((MeshObject("tile", positions, [[0, 1, 2], [0, 2, 3]]),), name="tile")


def start_node(folder: Path, workers: int) -> tuple[subprocess.Popen, str, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OPTIMIZER_CONFIG_DIR": str(folder / "config")}
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--data", str(folder / "data"),
         "--workers", str(workers)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            if requests.get(f"{url}/v1/health", timeout=0.5).ok:
                break
        except requests.RequestException:
            time.sleep(0.05)
    else:
        process.kill()
        raise SystemExit("the node did not start")
    return process, url, (folder / "config" / "token").read_text().strip()


def _server_ms(response: requests.Response) -> float:
    """The node's own handling time from its Server-Timing header (NaN when absent)."""
    timing = response.headers.get("server-timing", "")
    try:
        return float(timing.split("dur=")[1])
    except (IndexError, ValueError):
        return float("nan")


def client_process(url: str, headers: dict[str, str], scene_ref: str, indices: range, jobs: int, poll: float,
                   start_at: float, deadline_at: float, results: object, niceness: int) -> None:
    """One load process: a thread per client; each submits ``jobs`` jobs in turn and polls each to its end."""
    if niceness:
        os.nice(niceness)
    submit_lat: list[float] = []
    status_lat: list[float] = []
    server_lat: list[float] = []
    errors: list[str] = []
    finished = [0]
    lock = threading.Lock()

    def client(index: int) -> None:
        http = requests.Session()
        time.sleep(max(0.0, start_at - time.time()) + (index % 100) * poll / 100)  # spread the polls
        for k in range(jobs):
            try:
                start = time.perf_counter()
                response = http.post(f"{url}/v1/jobs", json={"scene_ref": scene_ref,
                                     "idempotency_key": f"bench-{index}-{k}"}, headers=headers, timeout=60)
                elapsed = time.perf_counter() - start
                if response.status_code != 201:
                    raise RuntimeError(f"submit: HTTP {response.status_code} {response.text[:120]}")
                job_id = response.json()["id"]
                with lock:
                    submit_lat.append(elapsed)
                while True:
                    if time.time() > deadline_at:
                        raise RuntimeError("time limit reached")
                    time.sleep(poll)
                    start = time.perf_counter()
                    response = http.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=60)
                    elapsed = time.perf_counter() - start
                    if response.status_code != 200:
                        raise RuntimeError(f"status: HTTP {response.status_code}")
                    with lock:
                        status_lat.append(elapsed)
                        server_lat.append(_server_ms(response) / 1e3)
                    state = response.json()["state"]
                    if state in ("done", "failed", "cancelled"):
                        if state != "done":
                            raise RuntimeError(f"job {job_id} {state}")
                        with lock:
                            finished[0] += 1
                        break
            except Exception as exc:  # counted and reported
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in indices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline_at - time.time()) + 30)
    results.put({"submit": submit_lat, "status": status_lat, "server": server_lat, "errors": errors,
                 "finished": finished[0]})  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2, help="jobs per client")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status calls of one client")
    parser.add_argument("--processes", type=int, default=4, help="client processes the clients are spread over")
    parser.add_argument("--time-limit", type=float, default=180.0)
    parser.add_argument("--client-nice", type=int, default=0,
                        help="run the load generator at this niceness, to approximate clients on other machines")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        process, url, token = start_node(Path(tmp), args.workers)
        try:
            headers = {"Authorization": f"Bearer {token}"}
            session = requests.Session()
            baseline = []
            for _ in range(200):
                start = time.perf_counter()
                session.get(f"{url}/v1/health", timeout=5).raise_for_status()
                baseline.append(time.perf_counter() - start)
            scene_ref = EngineClient(url, token).upload_scene(small_scene())

            deadline_at = time.time() + args.time_limit
            per_process = [args.clients // args.processes + (i < args.clients % args.processes)
                           for i in range(args.processes)]
            context = multiprocessing.get_context("spawn")
            results = context.Queue()
            start_at = time.time() + 5.0  # every client process starts the load at the same moment
            procs = []
            first = 0
            for count in per_process:
                procs.append(context.Process(target=client_process, args=(
                    url, headers, scene_ref, range(first, first + count), args.jobs, args.poll, start_at,
                    deadline_at, results, args.client_nice)))
                first += count
            for proc in procs:
                proc.start()
            submit_lat: list[float] = []
            status_lat: list[float] = []
            server_lat: list[float] = []
            errors: list[str] = []
            finished = 0
            for _ in procs:
                part = results.get(timeout=args.time_limit + 60)
                submit_lat += part["submit"]
                status_lat += part["status"]
                server_lat += part["server"]
                errors += part["errors"]
                finished += part["finished"]
            for proc in procs:
                proc.join(timeout=30)
            wall = max(time.time() - start_at, 1e-9)
        finally:
            process.terminate()
            process.wait(timeout=30)

    base = statistics.median(baseline)
    figures = {
        "clients": args.clients, "jobs_per_client": args.jobs, "workers": args.workers,
        "jobs_done": finished, "errors": len(errors), "wall_s": wall,
        "jobs_per_s": finished / wall, "jobs_per_hour": finished / wall * 3600,
        "baseline_health_p50_ms": base * 1e3,
        "submit_p50_ms": percentile(submit_lat, 50) * 1e3, "submit_p99_ms": percentile(submit_lat, 99) * 1e3,
        "status_p50_ms": percentile(status_lat, 50) * 1e3, "status_p99_ms": percentile(status_lat, 99) * 1e3,
        "status_calls": len(status_lat),
        "status_server_p50_ms": percentile(server_lat, 50) * 1e3,
        "status_server_p99_ms": percentile(server_lat, 99) * 1e3,
        "status_p99_over_baseline": percentile(status_lat, 99) / base,
        "first_errors": errors[:5],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{args.clients} clients x {args.jobs} analyze jobs, {args.workers} workers: {finished} done, "
          f"{len(errors)} errors in {wall:.1f} s")
    print(f"  throughput   {figures['jobs_per_s']:.1f} jobs/s = {figures['jobs_per_hour']:,.0f} jobs/hour "
          "(goal >= 10,000/hour)")
    print(f"  submit       p50 {figures['submit_p50_ms']:.1f} ms  p99 {figures['submit_p99_ms']:.1f} ms")
    print(f"  status       p50 {figures['status_p50_ms']:.1f} ms  p99 {figures['status_p99_ms']:.1f} ms "
          f"over {len(status_lat):,} calls (goal p99 <= 100 ms)")
    print(f"  in the node  p50 {figures['status_server_p50_ms']:.1f} ms  p99 {figures['status_server_p99_ms']:.1f} ms "
          "(Server-Timing: the rest is the way there and back, and the load generator sharing the cores)")
    print(f"  baseline     one client's GET /v1/health p50 {base * 1e3:.2f} ms; status p99 is "
          f"{figures['status_p99_over_baseline']:.0f}x that")
    for error in errors[:5]:
        print(f"  error: {error}")


if __name__ == "__main__":
    main()
