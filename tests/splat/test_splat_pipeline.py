"""`optimizer splat` end to end on CPU: the contract (files, JSON summary, a PSNR floor on held-out
views), the files read by PlayCanvas splat-transform, the frame, bad input, and the `splat` job kind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gsplat")

from engine.scene import export_gltf
from engine.scene.samples import toy_objects
from engine.splat.frames import cloud_to_scene_frame
from engine.splat.ply import read_ply
from tests.splat.test_ply import read_csv, splat_transform

ROOT = Path(__file__).resolve().parents[2]
#: the floor on held-out views for this small run (200 steps, 48 px, 16 views); measured ~24 dB
PSNR_FLOOR = 21.0


def splat_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", "splat", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=900)


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_gltf(toy_objects(), tmp_path_factory.mktemp("toy") / "toy.glb")


@pytest.fixture(scope="module")
def trained(toy_file: Path) -> tuple[Path, dict]:
    out = toy_file.parent / "out"
    result = splat_cli(str(toy_file), "--out", str(out), "--steps", "200", "--views", "16", "--resolution", "48",
                       "--samples", "8", "--points", "2000", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads(result.stdout)


def test_summary_and_files(trained: tuple[Path, dict]) -> None:
    out, summary = trained
    assert summary["steps"] == 200 and summary["device"] == "cpu" and summary["gaussians"] > 0
    assert summary["views"] == {"total": 16, "train": 14, "test": 2, "width": 48, "height": 48, "rig": "object"}
    assert summary["psnr"] >= PSNR_FLOOR, summary["psnr"]
    assert summary["ssim"] >= 0.7, summary["ssim"]
    assert {"render_s", "init_s", "train_s", "evaluate_s", "export_s", "total_s"} <= set(summary["timings_s"])
    for name in summary["files"]:
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.pt").exists()  # removed after a finished run
    assert (out / "views" / "test_0.png").is_file()
    cloud = read_ply(out / "splat.ply")
    assert cloud.count == summary["gaussians"] and cloud.sh_degree == 3
    assert read_ply(out / "splat.compressed.ply").count == cloud.count


def test_files_are_in_the_3dgs_frame(trained: tuple[Path, dict]) -> None:
    """Back in the scene frame (Z up) the Gaussians sit on the boxes: inside their bounds, z ≥ 0."""
    out, _ = trained
    cloud = read_ply(out / "splat.ply")
    means, _ = cloud_to_scene_frame(cloud.means, cloud.quats)
    weights = cloud.opacities()
    solid = means[weights > 0.5]
    assert solid.shape[0] > 100
    assert np.percentile(solid[:, 2], 2) > -0.1 and np.percentile(solid[:, 2], 98) < 1.2  # scene z ∈ [0, 1.1]
    assert np.median(cloud.means[:, 1]) < 0  # file frame: up is -Y


def test_splat_transform_reads_both_files(trained: tuple[Path, dict], tmp_path: Path) -> None:
    out, summary = trained
    for name in ("splat.ply", "splat.compressed.ply"):
        csv = tmp_path / f"{name}.csv"
        splat_transform(out / name, csv)
        columns = read_csv(csv)
        assert columns["x"].shape[0] == summary["gaussians"], name


def test_bad_input_is_a_clear_error(tmp_path: Path, toy_file: Path) -> None:
    result = splat_cli(str(toy_file), "--out", str(tmp_path / "o"), "--steps", "0")
    assert result.returncode == 2 and "steps must be an integer ≥ 1" in result.stderr
    result = splat_cli(str(toy_file), "--out", str(tmp_path / "o"), "--objects", "nope")
    assert result.returncode == 2 and "no object named 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_splat_job_kind_on_a_node(tmp_path: Path) -> None:
    from engine.client import EngineClient, EngineError
    from tests.service.conftest import NodeProcess, free_port

    node = NodeProcess(tmp_path / "data", tmp_path / "config", free_port(), ["--workers", "1"]).start()
    try:
        client = EngineClient(node.url, node.token)
        params = {"steps": 20, "views": 4, "resolution": 32, "render_samples": 4, "init_points": 500,
                  "device": "cpu", "test_every": 4}
        job = client.submit(toy_objects(), kind="splat", options={"params": params})
        done = client.wait(job.id, timeout=600)
        assert done.state == "done", done.error
        names = {a.name for a in done.artifacts}
        assert {"splat.ply", "splat.compressed.ply", "splat.json", "cameras.json"} <= names
        summary = json.loads(client.artifact(job.id, "splat.json"))
        assert summary["steps"] == 20
        bad = client.submit(toy_objects(), kind="splat", options={"params": {"stepz": 3}})
        failed = client.wait(bad.id, timeout=120)
        assert failed.state == "failed" and "unknown splat setting(s) stepz" in failed.error

        # views rendered by a client: uploaded, named by the job, trained on
        from engine.splat.references import ReferenceViews
        from engine.splat.rig import plan_rig

        rig = plan_rig((-0.6, -0.6, 0.0), (0.6, 0.6, 1.1), kind="object", views=4, width=32, test_every=4)
        rgba = np.zeros((4, 32, 32, 4), np.float32)
        rgba[:, 8:24, 8:24] = (0.3, 0.2, 0.1, 1.0)
        ref = client.upload_views(ReferenceViews.from_views(rig, rgba, source="test client"))
        job = client.submit(toy_objects(), kind="splat", options={"params": params, "references": ref})
        done = client.wait(job.id, timeout=600)
        assert done.state == "done", done.error
        summary = json.loads(client.artifact(job.id, "splat.json"))
        assert summary["references"] == "test client" and summary["views"]["total"] == 4
        with pytest.raises(EngineError, match="422"):
            client._request("POST", "/v1/views", raw=b"not a wire message")
        missing = client.submit(toy_objects(), kind="splat", options={"params": params, "references": "0" * 64})
        failed = client.wait(missing.id, timeout=120)
        assert failed.state == "failed" and "reference views cannot be used" in failed.error
    finally:
        node.stop()


def test_views_that_see_nothing_are_an_error(tmp_path: Path) -> None:
    from engine.errors import InputError
    from engine.splat.pipeline import SplatSettings, splat_scene
    from engine.splat.rig import plan_rig

    rig = plan_rig((-0.6, -0.6, 0.0), (0.6, 0.6, 1.1), kind="object", views=4, width=32, test_every=4)
    empty = np.zeros((4, 32, 32, 4), np.float32)
    with pytest.raises(InputError, match="no camera sees the objects"):
        splat_scene(toy_objects(), tmp_path, SplatSettings(steps=1, device="cpu"), references=(rig, empty))
    assert not (tmp_path / "splat.ply").exists()
