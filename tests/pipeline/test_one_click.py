"""The one-click pipeline end to end: `optimizer demo` (the README's first command), the `optimize`
job kind on a real node, and `python -m blender_addon.batch scene.blend optimize --out DIR` through
real bpy — each with real verifier peer processes, an audit log that verifies, and the report
loaded in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("skimage")

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


def screenshot(report: Path, tmp_path: Path) -> np.ndarray:
    """The report rendered by headless Chromium (1000×1600), as an array."""
    from PIL import Image

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (make install-dev does it)")
    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", "--window-size=1000,1600", f"--screenshot={shot}",
                        report.as_uri()], capture_output=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.is_file(), "chromium took no screenshot"
    return np.asarray(Image.open(shot).convert("RGB"))


def check_result(out: Path, node: Path, tmp_path: Path, *, kinds: tuple[str, ...] = ("bake", "splat")) -> dict:
    """What every one-click run leaves: assets, verification per kind, audit proof, a report that opens."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pipeline"] == "hybrid"
    assert (out / "bake" / "scene.glb").is_file() and (out / "splat" / "splat.ply").is_file()
    for kind in kinds:
        summary = json.loads((out / kind / "verification.json").read_text())
        assert summary["verdict"] == "validated" and len(summary["votes"]) >= 3, summary["verdict"]
        assert manifest["verification"][kind]["accepted"] is summary["accepted"]
    proofs = json.loads((out / "audit_proof.json").read_text())
    assert set(proofs) == set(kinds)
    audit = cli("audit", "verify", "--data", str(node))
    assert audit.returncode == 0, audit.stderr
    html = (out / "report.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "<script" not in html
    image = screenshot(out / "report.html", tmp_path)
    assert image.shape == (1600, 1000, 3) and image.std() > 20  # something was drawn
    return manifest


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = cli("demo", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = check_result(out, out / "node", tmp_path)
    assert manifest["objects"]["CeilingFan"] == "keep" and manifest["objects"]["Plant"] == "splat"
    assert all(v["accepted"] for v in manifest["verification"].values())  # with the demo's preview targets
    assert manifest["schedule"]["total"]["saving_percent"] >= 0
    assert f"report: {out / 'report.html'}" in result.stdout
    assert f"optimizer audit verify --data {out / 'node'}" in result.stdout


@pytest.mark.slow
def test_optimize_job_kind_on_a_node(tmp_path: Path) -> None:
    from engine.cli import DEMO_SETTINGS
    from engine.client import EngineClient
    from engine.scene.demo import build_demo_scene
    from tests.service.conftest import NodeProcess, free_port

    node = NodeProcess(tmp_path / "data", tmp_path / "config", free_port(), ["--workers", "1"]).start(timeout=60)
    try:
        client = EngineClient(node.url, node.token)
        params = {"bake": {**DEMO_SETTINGS["bake"], "samples": 8},
                  "splat": {**DEMO_SETTINGS["splat"], "steps": 60, "views": 8, "resolution": 32},
                  "quality": {**DEMO_SETTINGS["quality"], "psnr_min": 12.0, "ssim_min": 0.3}}
        job = client.submit(build_demo_scene(leaf_count=150), kind="optimize", options={"params": params})
        done = client.wait(job.id, timeout=900)
        assert done.state == "done", done.error
        out = tmp_path / "result"
        client.download_artifacts(job.id, out)
    finally:
        node.stop()
    assert not (out / "node").exists()  # node keys never leave the node
    check_result(out, tmp_path / "data", tmp_path)


@pytest.mark.slow
def test_blender_batch_optimize_to_a_folder(tmp_path: Path) -> None:
    from tests.blender.test_addon import BUILD_SCENE, blender_python

    made = blender_python(BUILD_SCENE, tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    out = tmp_path / "result"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender_user"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-m", "blender_addon.batch", str(tmp_path / "scene.blend"), "optimize",
                          "--out", str(out), "--preview", "--quality", "psnr_min=12", "--quality", "ssim_min=0.3"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = json.loads(run.stdout.strip().splitlines()[-1])
    assert "lightmaps applied to" in printed["status"] and "splat:" in printed["status"]
    assert (out / "optimized.blend").is_file()
    check_result(out, out / "node", tmp_path)
