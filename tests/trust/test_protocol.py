"""The peer verification protocol end to end: real peer processes on 127.0.0.1, some of them lying.

Seven peers: five honest ones and two whose behaviour the test sets per scenario through
``tests/trust/byzantine.py`` (always pass, always fail, colluding, equivocating, silent, forged signature, replayed
vote). The coordinator is this test process (``verify_result`` on its own data folder, as `optimizer verify` runs).
In every scenario the Byzantine peers hold fewer than a third of the peers asked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.cli import main
from engine.service.security import load_or_create_identity
from engine.trust.audit import AuditLog
from engine.trust.peers import PeerRegistry
from engine.trust.verify import (
    PeerTarget,
    VerificationTask,
    artifact_hash,
    load_result_dir,
    new_verification_id,
    peers_from_registry,
    sign_request,
    verify_result,
)
from tests.service.conftest import NodeProcess, free_port
from tests.trust.splat_result import make_cloud, perturbed, write_result

HONEST = 5
DEADLINE_S = 30.0  # generous: a loaded 2-core machine runs seven peers
SILENT_DEADLINE_S = 6.0


@dataclass
class PeerNode(NodeProcess):
    behaviour_file: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(super().env)
        env["OPTIMIZER_PIPELINE_MODULES"] = "tests.trust.byzantine" if self.behaviour_file else ""
        if self.behaviour_file:
            env["OPTIMIZER_TEST_BEHAVIOUR"] = str(self.behaviour_file)
        return env

    def behave(self, behaviour: str, **extra: object) -> None:
        assert self.behaviour_file is not None
        self.behaviour_file.write_text(json.dumps({"behaviour": behaviour, **extra}))


@dataclass
class Network:
    coordinator: Path
    config: Path
    honest: list[PeerNode]
    byzantine: list[PeerNode]
    node_ids: dict[str, str]  # url → node id
    honest_result: Path
    corrupt_result: Path

    def targets(self, nodes: list[PeerNode]) -> list[PeerTarget]:
        with PeerRegistry(self.coordinator) as registry:
            return peers_from_registry(registry, [n.url for n in nodes])


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("trust-network")
    coordinator = root / "coordinator"
    identity, _ = load_or_create_identity(coordinator)
    nodes: list[PeerNode] = []
    for i in range(HONEST + 2):
        data = root / f"peer{i}"
        with PeerRegistry(data) as registry:  # each peer works for this coordinator (mutual enrolment)
            registry.add(json.dumps(identity.to_dict()), "http://127.0.0.1:1", name="coordinator")
        behaviour = root / f"behaviour{i}.json" if i >= HONEST else None
        nodes.append(PeerNode(data, root / "config", free_port(), ["--workers", "1"], behaviour_file=behaviour))
    with ThreadPoolExecutor(len(nodes)) as pool:
        list(pool.map(lambda n: n.start(timeout=60), nodes))
    node_ids = {}
    try:
        with PeerRegistry(coordinator) as registry:
            for node in nodes:
                health = requests.get(f"{node.url}/v1/health", timeout=5).json()
                registry.add(json.dumps({"node_id": health["node_id"], "public_key": health["public_key"]}), node.url)
                node_ids[node.url] = health["node_id"]
        cloud = make_cloud()
        honest = write_result(root / "honest", cloud)
        corrupt = write_result(root / "corrupt", perturbed(cloud), reference_cloud=cloud)
        _warm_up(nodes, honest)
        yield Network(coordinator, root / "config", nodes[:HONEST], nodes[HONEST:], node_ids, honest, corrupt)
    finally:
        for node in nodes:
            node.kill()


def _warm_up(nodes: list[PeerNode], result: Path) -> None:
    """One task per peer with the node's own token (no vote reaches the coordinator): loads the renderer."""
    artifact = load_result_dir(result)
    body = VerificationTask(new_verification_id(), "splat", artifact.hash, artifact.files, artifact.rig,
                            artifact.references, measure={"flip": True, "vmaf": True}).encode()

    def ask(node: PeerNode) -> None:
        response = requests.post(f"{node.url}/v1/verify", data=body, timeout=120,
                                 headers={**node.headers, "Content-Type": "application/msgpack"})
        assert response.status_code == 200, response.text

    with ThreadPoolExecutor(len(nodes)) as pool:
        list(pool.map(ask, nodes))


def _verify(net: Network, result: Path, nodes: list[PeerNode], **kwargs: object) -> dict:
    peers = net.targets(nodes)
    options: dict = {"deadline_s": DEADLINE_S, **kwargs}
    return verify_result(result, peers, None, data_dir=net.coordinator, min_verifiers=len(peers),
                         **options).to_dict()


def test_honest_result_validated_despite_always_fail_and_equivocation(network: Network) -> None:
    always_fail, equivocator = network.byzantine
    always_fail.behave("fail")
    equivocator.behave("equivocate")
    summary = _verify(network, network.honest_result, network.honest + network.byzantine)
    assert summary["verdict"] == "validated" and summary["outcome"] == "pass" and summary["accepted"], [v["failures"] for v in summary["votes"]]
    honest_ids = {network.node_ids[n.url] for n in network.honest}
    counted = {v["node_id"]: v for v in summary["votes"] if v["counted"]}
    assert {n for n, v in counted.items() if v["verdict"] == "pass"} == honest_ids
    assert counted[network.node_ids[always_fail.url]]["verdict"] == "fail"
    equivocator_id = network.node_ids[equivocator.url]
    assert summary["excluded"] == [equivocator_id]
    assert [r["reason"] for r in summary["rejected"] if r["node_id"] == equivocator_id] == ["equivocation"]
    assert summary["equivocation_evidence"][0]["node_id"] == equivocator_id
    assert 5 / 6 - 0.05 <= summary["consensus_score"] <= 1.0
    # each honest vote discloses its seed and carries the metrics; LPIPS has no weights here: not measured
    for vote in counted.values():
        assert vote["result_hash"] == summary["result_hash"] and vote["sample_seed"] >= 0
    assert summary["votes"][0]["weight"] > 0 and "lpips" in summary["not_measured"]
    honest_vote = counted[next(iter(honest_ids))]
    assert honest_vote["metrics"]["ssim"] > 0.98 and honest_vote["metrics"]["vmaf"] is not None
    # reputations: the always-fail node and the equivocator lost, the honest ones gained
    assert summary["reputation"][network.node_ids[always_fail.url]]["reputation"] < 0.5
    assert summary["reputation"][equivocator_id]["reputation"] < 0.5
    assert all(summary["reputation"][n]["reputation"] > 0.5 for n in honest_ids)


def test_corrupted_result_rejected_despite_colluders(network: Network) -> None:
    for node in network.byzantine:
        node.behave("collude")
    summary = _verify(network, network.corrupt_result, network.honest + network.byzantine)
    assert summary["verdict"] == "validated" and summary["outcome"] == "fail" and not summary["accepted"]
    colluders = {network.node_ids[n.url] for n in network.byzantine}
    assert {v["node_id"] for v in summary["votes"] if v["verdict"] == "pass"} == colluders
    honest_votes = [v for v in summary["votes"] if v["node_id"] not in colluders]
    assert len(honest_votes) == HONEST and all(v["failures"] for v in honest_votes)


def test_corrupted_result_rejected_despite_always_pass_and_forgery(network: Network) -> None:
    always_pass, forger = network.byzantine
    always_pass.behave("pass")
    forger.behave("forge")
    summary = _verify(network, network.corrupt_result, network.honest + network.byzantine)
    assert summary["outcome"] == "fail" and summary["verdict"] == "validated" and not summary["accepted"]
    forged = [r for r in summary["rejected"] if r["reason"] == "bad_signature"]
    assert [r["node_id"] for r in forged] == [network.node_ids[forger.url]]
    assert network.node_ids[forger.url] not in {v["node_id"] for v in summary["votes"]}


def test_silent_peer_does_not_block_and_replayed_vote_is_rejected(network: Network) -> None:
    silent, replayer = network.byzantine
    silent.behave("silent", sleep_s=SILENT_DEADLINE_S + 4)
    replayer.behave("replay", forward=network.honest[0].url)
    started = time.monotonic()
    summary = _verify(network, network.honest_result, network.honest + network.byzantine,
                      deadline_s=SILENT_DEADLINE_S)
    elapsed = time.monotonic() - started
    assert summary["verdict"] == "validated" and summary["accepted"], summary["silent"]
    assert elapsed < SILENT_DEADLINE_S + 3, elapsed  # the silent peer cost the deadline, not more
    assert [s["node_id"] for s in summary["silent"]] == [network.node_ids[silent.url]]
    assert "within the deadline" in summary["silent"][0]["reason"]
    replays = [r for r in summary["rejected"] if r["reason"] == "replayed_nonce"]
    assert [r["node_id"] for r in replays] == [network.node_ids[network.honest[0].url]]
    assert sum(1 for v in summary["votes"] if v["node_id"] == replays[0]["node_id"]) == 1  # counted once
    assert summary["timings_ms"]["overhead_excluding_render"] > 0


def test_cli_verify_and_audit_log(network: Network, capsys: pytest.CaptureFixture[str]) -> None:
    for node in network.byzantine:
        node.behave("honest")
    urls = ",".join(n.url for n in network.honest[:3])
    code = main(["verify", str(network.honest_result), "--peers", urls, "--data", str(network.coordinator),
                 "--json", "--no-vmaf"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["accepted"] and len(out["votes"]) == 3
    assert out["not_measured"]["vmaf"].startswith("disabled")
    assert {"node_id", "verdict", "metrics", "weight", "sample_seed"} <= set(out["votes"][0])
    code = main(["verify", str(network.corrupt_result), "--peers", urls, "--data", str(network.coordinator),
                 "--no-vmaf", "--no-flip"])
    assert code == 3 and "VALIDATED (fail)" in capsys.readouterr().out
    identity, key = load_or_create_identity(network.coordinator)
    with AuditLog(network.coordinator, key, identity.node_id) as audit_log:
        entries = audit_log.entries()
        assert audit_log.verify().ok
    last = entries[-1]
    assert last["event"] == "verification" and last["quality_passed"] is False
    assert last["hash"] == load_result_dir(network.corrupt_result).hash and len(last["participating_nodes"]) == 3
    assert entries[-2]["verification_id"] == out["verification_id"] and entries[-2]["quality_passed"] is True
    assert main(["audit", "verify", "--data", str(network.coordinator)]) == 0
    # a peer URL that is not enrolled is refused, not trusted on first use
    assert main(["verify", str(network.honest_result), "--peers", "http://127.0.0.1:9", "--data",
                 str(network.coordinator)]) == 2
    assert "not enrolled" in capsys.readouterr().err


def test_verify_endpoint_refuses_strangers_and_altered_artifacts(network: Network) -> None:
    artifact = load_result_dir(network.honest_result)
    task = VerificationTask(new_verification_id(), "splat", artifact.hash, artifact.files, artifact.rig,
                            artifact.references)
    body = task.encode()
    url = f"{network.honest[0].url}/v1/verify"
    headers = {"Content-Type": "application/msgpack"}
    assert requests.post(url, data=body, headers=headers, timeout=30).status_code == 401
    stranger = Ed25519PrivateKey.generate()  # a key the peer has not enrolled
    signed = sign_request(stranger, "0123456789abcdef", "POST", "/v1/verify", body)
    assert requests.post(url, data=body, headers={**headers, **signed}, timeout=30).status_code == 401
    identity, key = load_or_create_identity(network.coordinator)
    good = sign_request(key, identity.node_id, "POST", "/v1/verify", body)
    tampered = requests.post(url, data=body + b"\0", headers={**headers, **good}, timeout=30)
    assert tampered.status_code == 401  # the signature covers the body
    altered = VerificationTask(task.verification_id, "splat", artifact_hash({**artifact.files, "x.txt": b"1"}),
                               artifact.files, artifact.rig, artifact.references).encode()
    response = requests.post(url, data=altered,
                             headers={**headers, **sign_request(key, identity.node_id, "POST", "/v1/verify", altered)},
                             timeout=30)
    assert response.status_code == 422 and "do not hash" in response.json()["detail"]
    ok = requests.post(url, data=body, headers={**headers, **good}, timeout=60)
    assert ok.status_code == 200 and len(ok.json()["votes"]) == 1
    again = requests.post(url, data=body, headers={**headers, **sign_request(key, identity.node_id, "POST",
                                                                             "/v1/verify", body)}, timeout=60)
    assert again.json()["votes"] == ok.json()["votes"]  # asked twice: the same signed vote, not a second one


def test_verify_job_kind_on_a_node(network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    """The coordinator as a running node: a `verify` job checks a finished splat job's stored result."""
    from engine.scene import MeshObject, Scene, wire
    from engine.service.store import JobState, JobStore
    from engine.service.vault import Keyring, Vault

    for node in network.byzantine:
        node.behave("honest")
    monkeypatch.setenv("OPTIMIZER_CONFIG_DIR", str(network.config))
    identity, _ = load_or_create_identity(network.coordinator)
    store = JobStore(network.coordinator, Vault(network.coordinator, Keyring(identity.node_id)))
    try:
        scene = Scene((MeshObject("tile", [[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]),), name="tile")
        digest = store.store_scene(wire.encode(scene))
        job, _ = store.submit("splat", options={"quality": {"psnr": 30.0}}, scene_digest=digest)
        store.transition(job.id, JobState.RUNNING)
        folder = network.honest_result
        store.add_artifact(job.id, "splat.ply", (folder / "splat.ply").read_bytes(), "application/x-ply")
        store.add_artifact(job.id, "cameras.json", (folder / "cameras.json").read_bytes(), "application/json")
        for png in sorted((folder / "references").glob("*.png")):
            store.add_artifact(job.id, f"references__{png.name}", png.read_bytes(), "image/png")
        store.transition(job.id, JobState.DONE)
    finally:
        store.close()
    node = NodeProcess(network.coordinator, network.config, free_port(), ["--workers", "1"]).start()
    try:
        response = node.post("/v1/jobs", json={"kind": "verify", "scene_ref": digest, "options": {
            "params": {"job": job.id, "peers": [n.url for n in network.honest[:3]], "vmaf": False}}})
        assert response.status_code == 201, response.text
        finished = node.wait_for(response.json()["id"], timeout=90)
        assert finished["state"] == "done", finished["error"]
        summary = node.get(f"/v1/jobs/{finished['id']}/artifacts/verification.json").json()
        assert summary["accepted"] and summary["thresholds"]["psnr_min"] == 30.0
        assert summary["scene_id"] == digest and len(summary["votes"]) == 3
        assert summary["result_hash"] == load_result_dir(folder).hash
        bad = node.post("/v1/jobs", json={"kind": "verify", "scene_ref": digest,
                                          "options": {"params": {"job": response.json()["id"]}}}).json()
        failed = node.wait_for(bad["id"], timeout=60)
        assert failed["state"] == "failed" and "cannot be verified" in failed["error"]
    finally:
        node.stop()
