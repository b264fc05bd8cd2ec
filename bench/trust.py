"""Benchmark: randomized Byzantine verification rounds against real peer processes.

Starts seven `optimizer serve` peers on loopback (five honest, two made Byzantine by the test-only module
``tests/trust/byzantine.py``), enrols them with a coordinator data folder (and the coordinator with them), and runs
rounds of ``verify_result`` with every usable peer asked at once:

* the result of a round is, at random, honest (references are its own renders), corrupt (its Gaussians' colours
  perturbed: every unit defective), or defective in a fraction p ∈ {0.05, 0.1} of the units (view × tile). Partial
  defects are injected into the reference side of the comparison, at p·units tiles drawn afresh each round: a
  verifier only measures the difference between its re-render and the reference, so this is the same, for it, as a
  result wrong in exactly those tiles, and it lets p be exact;
* Byzantine peer B1 always lies (the honest verdict flipped); B2 plays a random role each round (always pass,
  always fail, colluding with B1, equivocating, forged signature, replayed vote). Silent peers are covered by the
  tests (each costs a whole deadline). Byzantine weight stays below 1/3 of the weight asked (checked, reported).

Prints ``rounds``, ``false_accepts`` (a result accepted though corrupt, or though most honest verifiers found its
defect), ``false_rejects``, ``detection_rate`` (share of honest votes that failed a result defective in a fraction
p = 0.1 of its units) next to ``predicted_detection_rate`` = 1 − (1 − p)^n (and both for every p), the round at
which the always-lying node was revoked (``revoked_after_rounds``), and ``overhead_ms_p50``: the time of a 3-peer
verification on loopback minus the slowest peer's re-rendering (metrics, signing, checks, consensus, reputation and
the fsynced audit log included), measured on an honest result before the rounds.

    python bench/trust.py [--rounds N | --time-limit 180] [--size 48] [--vmaf] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.service.security import load_or_create_identity  # noqa: E402
from engine.trust.peers import PeerRegistry  # noqa: E402
from engine.trust.reputation import ReputationBook  # noqa: E402
from engine.trust.sampling import TileGrid, detection_probability, sample_size  # noqa: E402
from engine.trust.verify import load_result_dir, peers_from_registry, verify_result  # noqa: E402
from tests.trust.splat_result import make_cloud, perturbed, write_result  # noqa: E402

HONEST = 5
TILE = 12
COMPLEXITY, CONFIDENCE = 0.0, 0.9  # n = 10 units per verifier
DEFECT_FRACTIONS = (0.05, 0.1)
B2_ROLES = ("pass", "fail", "collude", "equivocate", "forge", "replay")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_peer(root: Path, index: int, behaviour: Path | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OPTIMIZER_CONFIG_DIR": str(root / "config"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OPTIMIZER_PIPELINE_MODULES": "tests.trust.byzantine" if behaviour else ""}
    if behaviour:
        env["OPTIMIZER_TEST_BEHAVIOUR"] = str(behaviour)
    process = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--data",
                                str(root / f"peer{index}"), "--workers", "1"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, f"http://127.0.0.1:{port}"


def wait_healthy(url: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = requests.get(f"{url}/v1/health", timeout=1)
            if response.status_code == 200:
                return response.json()
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"peer {url} did not start")


def inject_defects(source: Path, target: Path, fraction: float, rng: random.Random) -> int:
    """Copy ``source`` to ``target`` with ``fraction`` of the (view, tile) units of the references inverted."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    cameras = json.loads((source / "cameras.json").read_text())
    views = sorted(int(v) for v in cameras["test"])
    grid = TileGrid(cameras["height"], cameras["width"], TILE)
    units = len(views) * grid.count
    chosen = rng.sample(range(units), round(fraction * units))
    images = {v: np.asarray(Image.open(target / "references" / f"test_{v}.png")).copy() for v in views}
    unit = np.asarray(chosen, np.int64)
    y0, x0 = grid.origins(unit % grid.count)
    for u, y, x in zip(unit, y0, x0, strict=True):  # one slice per defective tile (a few dozen)
        view = views[int(u) // grid.count]
        tile = images[view][y:y + TILE, x:x + TILE, :3]
        images[view][y:y + TILE, x:x + TILE, :3] = 255 - tile
    for view, image in images.items():
        Image.fromarray(image).save(target / "references" / f"test_{view}.png")
    return units


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=0, help="rounds to run (default: as many as fit the time limit)")
    parser.add_argument("--time-limit", type=float, default=180.0, help="seconds for the rounds when --rounds is 0")
    parser.add_argument("--size", type=int, default=48, help="image side in pixels (default 48)")
    parser.add_argument("--overhead-runs", type=int, default=10)
    parser.add_argument("--vmaf", action="store_true", help="also measure VMAF in every vote (slower)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.getLogger("engine").setLevel(logging.ERROR)  # the rejected votes are expected here
    rng = random.Random(args.seed)
    measure = {"flip": True, "vmaf": args.vmaf}
    root = Path(tempfile.mkdtemp(prefix="optimizer-bench-trust-"))
    processes: list[subprocess.Popen] = []
    try:
        coordinator = root / "coordinator"
        identity, _ = load_or_create_identity(coordinator)
        behaviours = [None] * HONEST + [root / "b1.json", root / "b2.json"]
        urls = []
        for i, behaviour in enumerate(behaviours):
            with PeerRegistry(root / f"peer{i}") as registry:
                registry.add(json.dumps(identity.to_dict()), "http://127.0.0.1:1", name="coordinator")
            process, url = start_peer(root, i, behaviour)
            processes.append(process)
            urls.append(url)
        ids = []
        with PeerRegistry(coordinator) as registry:
            for url in urls:
                health = wait_healthy(url)
                registry.add(json.dumps({"node_id": health["node_id"], "public_key": health["public_key"]}), url)
                ids.append(health["node_id"])
            peers = peers_from_registry(registry)
        honest_ids, b1, b2 = set(ids[:HONEST]), ids[HONEST], ids[HONEST + 1]
        peers_by_id = {p.node_id: p for p in peers}
        cloud = make_cloud(1500)
        views = 80  # 40 held-out views × 16 tiles = 640 units at 48 px
        honest = write_result(root / "honest", cloud, size=args.size, views=views, test_every=2)
        corrupt = write_result(root / "corrupt", perturbed(cloud), size=args.size, views=views, test_every=2,
                               reference_cloud=cloud)
        n = sample_size(COMPLEXITY, CONFIDENCE)

        # overhead: three honest peers, honest result (the first call warms the peers up)
        three = [peers_by_id[i] for i in ids[:3]]
        overheads, overheads_no_metrics, totals = [], [], []
        for run in range(args.overhead_runs + 1):
            summary = verify_result(honest, three, None, data_dir=coordinator, min_verifiers=3,
                                    complexity=COMPLEXITY, confidence=CONFIDENCE, tile=TILE, measure=measure).to_dict()
            if not summary["votes"]:
                raise RuntimeError(f"no votes: {summary['silent']} {summary['rejected']}")
            if run == 0:
                continue
            timings = summary["timings_ms"]
            totals.append(timings["total"])
            overheads.append(timings["overhead_excluding_render"])
            slowest = max((v["timings_ms"].get("render_ms", 0) + v["timings_ms"].get("metrics_ms", 0))
                          for v in summary["votes"])
            overheads_no_metrics.append(timings["total"] - slowest)

        (root / "b1.json").write_text(json.dumps({"behaviour": "collude"}))  # B1 always lies
        counts = {"rounds": 0, "false_accepts": 0, "false_rejects": 0, "disputed": 0}
        detect = {p: [0, 0] for p in DEFECT_FRACTIONS}
        revoked_after = None
        b1_validated = 0  # rounds B1 voted in that reached a verdict (the only ones reputation counts)
        max_byzantine_share = 0.0
        started = time.monotonic()
        book = ReputationBook(coordinator)
        while True:
            if args.rounds and counts["rounds"] >= args.rounds:
                break
            if not args.rounds and time.monotonic() - started > args.time_limit:
                break
            kind = rng.choice(("honest", "corrupt", "defect"))
            fraction = rng.choice(DEFECT_FRACTIONS) if kind == "defect" else None
            role = rng.choice(B2_ROLES)
            extra = {"forward": urls[0]} if role == "replay" else {}
            (root / "b2.json").write_text(json.dumps({"behaviour": role, **extra}))
            if kind == "defect":
                inject_defects(honest, root / "defect", fraction, rng)
                result = root / "defect"
            else:
                result = honest if kind == "honest" else corrupt
            revoked = book.revoked()
            usable = [p for p in peers if p.node_id not in revoked]
            weights = {p.node_id: 0.0 if p.node_id in revoked else book.get(p.node_id).reputation for p in peers}
            total = sum(weights.values())
            max_byzantine_share = max(max_byzantine_share, (weights[b1] + weights[b2]) / total)
            summary = verify_result(result, usable, None, data_dir=coordinator, min_verifiers=len(usable),
                                    deadline_s=30.0, complexity=COMPLEXITY, confidence=CONFIDENCE, tile=TILE,
                                    measure=measure).to_dict()
            counts["rounds"] += 1
            honest_votes = [v for v in summary["votes"] if v["node_id"] in honest_ids]
            honest_fail = sum(v["verdict"] == "fail" for v in honest_votes)
            truth_bad = kind == "corrupt" or (kind == "defect" and honest_fail * 2 > len(honest_votes))
            if summary["accepted"] and truth_bad:
                counts["false_accepts"] += 1
            if summary["outcome"] == "fail" and summary["verdict"] == "validated" and kind == "honest":
                counts["false_rejects"] += 1
            if summary["verdict"] == "disputed":
                counts["disputed"] += 1
            if fraction is not None:
                detect[fraction][0] += honest_fail
                detect[fraction][1] += len(honest_votes)
            if revoked_after is None and summary["verdict"] == "validated" and b1 in {v["node_id"] for v in
                                                                                    summary["votes"]}:
                b1_validated += 1
            if revoked_after is None and book.get(b1).revoked:
                revoked_after = counts["rounds"]
        book.close()
        elapsed = time.monotonic() - started
        per_p = {str(p): {"detection_rate": (d[0] / d[1]) if d[1] else None,
                          "predicted_detection_rate": detection_probability(p, n), "honest_votes": d[1]}
                 for p, d in detect.items()}
        report = {
            "rounds": counts["rounds"], "false_accepts": counts["false_accepts"],
            "false_rejects": counts["false_rejects"], "disputed_rounds": counts["disputed"],
            "detection_rate": per_p["0.1"]["detection_rate"],
            "predicted_detection_rate": per_p["0.1"]["predicted_detection_rate"],
            "detection_by_defect_fraction": per_p, "units_per_verifier": n,
            "revoked_after_rounds": revoked_after, "revoked_after_validated_rounds": b1_validated,
            "max_byzantine_weight_share": round(max_byzantine_share, 4),
            "overhead_ms_p50": round(statistics.median(overheads), 2),
            "overhead_excluding_metrics_ms_p50": round(statistics.median(overheads_no_metrics), 2),
            "verification_ms_p50_3_peers": round(statistics.median(totals), 2),
            "image": f"{args.size}x{args.size}", "tile": TILE, "peers": len(peers), "vmaf": args.vmaf,
            "rounds_seconds": round(elapsed, 1),
            "artifact_bytes": sum(len(b) for b in load_result_dir(honest).files.values()),
        }
        if args.json:
            print(json.dumps(report))
        else:
            for key, value in report.items():
                print(f"{key:36} {value}")
        return 0
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
