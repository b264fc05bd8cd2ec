"""`optimizer bake` end to end on the classic Cornell box (OBJ in millimetres, emissive ceiling light)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import khronos_validate
from tests.scene.test_obj import CORNELL_MTL_KE, cornell

ROOT = Path(__file__).resolve().parents[2]


def bake_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", "bake", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=900)


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("cornell")
    obj = cornell(folder, CORNELL_MTL_KE)
    out = folder / "out"
    result = bake_cli(str(obj), "--unit", "mm", "--out", str(out), "--json", "--samples", "16", "--bounces", "2",
                      "--atlas-size", "512", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads(result.stdout)


def test_bake_summary_and_files(baked: tuple[Path, dict]) -> None:
    out, summary = baked
    assert summary["atlas_size"] == 512 and summary["atlas_count"] >= 1
    assert summary["texels"] > 1000 and summary["rays_traced"] > 0 and summary["rays_per_second"] > 0
    assert summary["device"] == "cpu"
    assert {"layout_s", "integrate_s", "total_s"} <= set(summary["timings_s"])
    for name in summary["files"]:
        assert (out / name).stat().st_size > 0, name
    assert (out / "bake.json").is_file() and (out / "scene.glb").is_file()


def test_baked_lighting_is_plausible(baked: tuple[Path, dict]) -> None:
    from engine.bake.output import read_exr

    out, _ = baked
    image = read_exr(out / "lightmaps" / "atlas_0.exr")
    lit = image[..., :3].max(axis=-1)
    assert np.isfinite(image).all() and (image >= 0).all()
    assert (lit > 0).mean() > 0.05  # the room is lit
    assert lit.max() < 1e4


def test_baked_gltf_passes_the_khronos_validator(baked: tuple[Path, dict]) -> None:
    out, _ = baked
    report = khronos_validate(out / "scene.glb")
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"][:5]


def test_bake_refuses_a_scene_without_light(tmp_path: Path) -> None:
    (tmp_path / "dark.obj").write_text("o quad\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
    result = bake_cli(str(tmp_path / "dark.obj"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "no lights" in result.stderr and "Traceback" not in result.stderr
