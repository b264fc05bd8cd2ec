"""LocalPeers: real verifier processes on this machine, mutually enrolled, for one run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("skimage")

from engine.trust.local import LocalPeers
from engine.trust.peers import PeerRegistry
from engine.trust.verify import verify_result
from tests.trust.splat_result import make_cloud, perturbed, write_result


def test_local_peers_verify_and_stop(tmp_path: Path) -> None:
    node = tmp_path / "node"
    cloud = make_cloud(800)
    honest = write_result(tmp_path / "honest", cloud, size=32, views=4)
    corrupt = write_result(tmp_path / "corrupt", perturbed(cloud), size=32, views=4, reference_cloud=cloud)
    peers_root = tmp_path / "peers"
    runner = LocalPeers(node, peers_root, count=3)
    with runner as peers:
        assert len(peers) == 3 and len({p.node_id for p in peers}) == 3
        good = verify_result(honest, peers, None, data_dir=node, deadline_s=60, measure={"vmaf": False}).to_dict()
        bad = verify_result(corrupt, peers, None, data_dir=node, deadline_s=60, measure={"vmaf": False}).to_dict()
        processes = list(runner.processes)
    assert good["verdict"] == "validated" and good["accepted"], good
    assert not bad["accepted"], bad
    assert all(p.poll() is not None for p in processes)  # stopped on exit
    with PeerRegistry(node) as registry:  # enrolled once each, even across runs
        assert len(registry.list()) == 3
    with LocalPeers(node, peers_root, count=3) as again:
        assert {p.node_id for p in again} == {p.node_id for p in peers}
    with PeerRegistry(node) as registry:
        assert len(registry.list()) == 3
