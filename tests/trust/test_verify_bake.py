"""A bake verified by real peer processes: each re-renders the baked scene through the lightmapped
renderer at its own sample of the bake's path-traced reference views.

The bake is a small closed room (an interior reference rig) with a red block and a point light:
samples 64, reference views 4 × 32², 128 paths × 4 rays a pixel. Thresholds are set per job to
what such a small bake reaches against such noisy references. Measured (tiles of 16 px: the 4 views
hold 16 tiles and every peer's sample of 30 covers them all, so the peers agree exactly): honest
PSNR 34.6 dB, FLIP 0.056, SSIM 0.905; lightmap × 1.5: PSNR 20.0 dB, FLIP 0.305, SSIM 0.813. So
PSNR ≥ 28 dB and FLIP ≤ 0.15 separate them with margin on either side; SSIM ≥ 0.7 only catches
gross damage (SSIM of small tiles of a noisy reference stays low); LPIPS (no weights here) and
VMAF (off, to keep the test short) are not measured.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

from engine.bake.output import read_exr, write_exr
from engine.bake.pipeline import BakeSettings, bake_scene
from engine.errors import ConfigError, InputError
from engine.scene.model import Light, Material, Scene
from engine.service.security import load_or_create_identity
from engine.trust.peers import PeerRegistry
from engine.trust.verify import (
    PeerTarget,
    VerificationTask,
    artifact_from_job,
    load_result_dir,
    new_verification_id,
    peers_from_registry,
    verify_result,
)
from tests.bake.test_integrate import box, translate
from tests.service.conftest import NodeProcess, free_port

PEERS = 3
THRESHOLDS = {"psnr_min": 28.0, "flip_max": 0.15, "ssim_min": 0.7}
MEASURE = {"flip": True, "vmaf": False}
TILE = 16


@dataclass
class PeerNode(NodeProcess):
    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "OPTIMIZER_PIPELINE_MODULES": ""}


@dataclass
class Network:
    coordinator: Path
    config: Path
    peers: list[PeerTarget]
    honest: Path
    corrupt: Path


def room() -> Scene:
    walls = box("room", (0.0, 0.0, 0.0), (2.0, 2.0, 1.5), material=0)
    block = box("block", (0.6, 0.7, 0.0), (1.1, 1.2, 0.5), material=1, inward=False)
    return Scene(objects=(walls, block), name="bake-trust-test",
                 materials=(Material("white", (0.7, 0.7, 0.7, 1)), Material("red", (0.8, 0.2, 0.1, 1))),
                 lights=(Light("bulb", "point", power=40.0, size=0.1, transform=translate(1.3, 1.0, 1.3)),))


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("bake-trust")
    coordinator = root / "coordinator"
    identity, _ = load_or_create_identity(coordinator)
    nodes: list[PeerNode] = []
    for i in range(PEERS):
        data = root / f"peer{i}"
        with PeerRegistry(data) as registry:  # each peer works for this coordinator
            registry.add(json.dumps(identity.to_dict()), "http://127.0.0.1:1", name="coordinator")
        nodes.append(PeerNode(data, root / "config", free_port(), ["--workers", "1"]))
    pool = ThreadPoolExecutor(len(nodes))
    started = [pool.submit(n.start, timeout=60) for n in nodes]  # the peers start while this process bakes
    try:
        honest = root / "honest"
        bake_scene(room(), honest, BakeSettings(atlas_size=512, texels_per_metre=20.0, samples=64, bounces=2,
                                                device="cpu", reference_views=4, reference_size=32,
                                                reference_samples=128))
        corrupt = root / "corrupt"
        shutil.copytree(honest, corrupt)
        atlas = corrupt / "lightmaps" / "atlas_0.exr"
        write_exr(atlas, read_exr(atlas) * 1.5)  # a cheating or broken producer: the lighting 50 % too bright
        for future in started:
            future.result()
        with PeerRegistry(coordinator) as registry:
            for node in nodes:
                health = requests.get(f"{node.url}/v1/health", timeout=5).json()
                registry.add(json.dumps({"node_id": health["node_id"], "public_key": health["public_key"]}), node.url)
            peers = peers_from_registry(registry, [n.url for n in nodes])
        _warm_up(nodes, honest)
        yield Network(coordinator, root / "config", peers, honest, corrupt)
    finally:
        pool.shutdown(wait=True)
        for node in nodes:
            node.kill()


def _warm_up(nodes: list[PeerNode], result: Path) -> None:
    """One task per peer with its own token (no vote reaches the coordinator): compiles the tracer there."""
    artifact = load_result_dir(result)
    body = VerificationTask(new_verification_id(), "bake", artifact.hash, artifact.files, artifact.rig,
                            artifact.references, THRESHOLDS, tile=TILE, measure=MEASURE).encode()

    def ask(node: PeerNode) -> None:
        response = requests.post(f"{node.url}/v1/verify", data=body, timeout=120,
                                 headers={**node.headers, "Content-Type": "application/msgpack"})
        assert response.status_code == 200, response.text

    with ThreadPoolExecutor(len(nodes)) as pool:
        list(pool.map(ask, nodes))


def _verify(net: Network, result: Path) -> dict:
    return verify_result(result, net.peers, THRESHOLDS, data_dir=net.coordinator, min_verifiers=PEERS,
                         deadline_s=60.0, tile=TILE, measure=MEASURE).to_dict()


def test_bake_result_folder_is_a_bake_artifact(network: Network) -> None:
    artifact = load_result_dir(network.honest)
    assert artifact.kind == "bake" and artifact.scene_id == "bake-trust-test"
    assert set(artifact.files) == {"scene.glb", "lightmap_uv.npz", "atlas_0.exr"}
    assert sorted(artifact.references) == artifact.rig["test"] == [0, 2, 4, 6]
    assert artifact.rig["kind"] == "interior"  # the room encloses its centre
    summary = json.loads((network.honest / "bake.json").read_text())
    assert "references/view_0.png" in summary["files"] and summary["references"]["views"] == [0, 2, 4, 6]
    assert load_result_dir(network.corrupt).hash != artifact.hash


def test_bake_without_references_cannot_be_verified(network: Network, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(network.honest, plain, ignore=shutil.ignore_patterns("references"))
    with pytest.raises(InputError, match=r"no references/cameras\.json") as caught:
        load_result_dir(plain)
    assert "reference views" in caught.value.hint
    with pytest.raises(ConfigError, match="reference_views"):
        BakeSettings(reference_views=-1)


def test_honest_bake_is_validated_by_peers(network: Network) -> None:
    summary = _verify(network, network.honest)
    assert summary["kind"] == "bake"
    assert summary["verdict"] == "validated" and summary["outcome"] == "pass" and summary["accepted"], \
        [(v["metrics"], v["failures"]) for v in summary["votes"]]
    assert len(summary["votes"]) == PEERS and all(v["verdict"] == "pass" for v in summary["votes"])
    for vote in summary["votes"]:
        assert vote["metrics"]["psnr_db"] > THRESHOLDS["psnr_min"] and vote["metrics"]["flip"] is not None
    assert summary["thresholds"]["psnr_min"] == THRESHOLDS["psnr_min"]


def test_brightened_lightmap_is_rejected_by_peers(network: Network) -> None:
    summary = _verify(network, network.corrupt)
    assert summary["verdict"] == "validated" and summary["outcome"] == "fail" and not summary["accepted"]
    assert all(v["verdict"] == "fail" and v["failures"] for v in summary["votes"])
    assert all(v["metrics"]["psnr_db"] < 25.0 for v in summary["votes"])


def test_stored_bake_job_gives_the_same_artifact(network: Network, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A `bake` job's stored files (paths kept as a__b, as the bake job stores them) make the same artifact."""
    from engine.scene import wire
    from engine.service.store import JobState, JobStore
    from engine.service.vault import Keyring, Vault

    monkeypatch.setenv("OPTIMIZER_CONFIG_DIR", str(tmp_path / "config"))
    identity, _ = load_or_create_identity(tmp_path / "node")
    store = JobStore(tmp_path / "node", Vault(tmp_path / "node", Keyring(identity.node_id)))
    try:
        digest = store.store_scene(wire.encode(room()))
        job, _ = store.submit("bake", options={}, scene_digest=digest)
        store.transition(job.id, JobState.RUNNING)
        for path in sorted(network.honest.rglob("*")):
            if path.is_file():
                name = path.relative_to(network.honest).as_posix().replace("/", "__")
                store.add_artifact(job.id, name, path.read_bytes(), "application/octet-stream")
        store.transition(job.id, JobState.DONE)
        artifact = artifact_from_job(store, job.id)
    finally:
        store.close()
    folder = load_result_dir(network.honest)
    assert artifact.kind == "bake" and artifact.hash == folder.hash
    assert artifact.rig == folder.rig and artifact.references == folder.references
    np.testing.assert_equal(sorted(artifact.files), sorted(folder.files))
