"""The `optimizer` command: contract of `analyze --json`, exit codes, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.scene.demo import build_demo_scene
from engine.scene.gltf import export_gltf


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("optimizer: error")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def demo_glb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_gltf(build_demo_scene(leaf_count=150), tmp_path_factory.mktemp("demo") / "demo.glb")


def test_analyze_json_contract(demo_glb: Path) -> None:
    result = run("analyze", str(demo_glb), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data["features"], dict)
    assert 0.0 <= data["complexity"] <= 1.0
    plan = data["plan"]
    assert plan["pipeline"] == "hybrid"
    assert plan["reasons"]
    for name, entry in plan["objects"].items():
        assert entry["route"] in {"bake", "splat", "keep"}, name
        assert entry["reasons"], name
    assert plan["objects"]["Plant"]["route"] == "splat"
    assert plan["objects"]["CeilingFan"]["route"] == "keep"
    assert data["timings_ms"]["analyze"] >= 0 and data["timings_ms"]["route"] >= 0


def test_analyze_table_output(demo_glb: Path) -> None:
    result = run("analyze", str(demo_glb))
    assert result.returncode == 0, result.stderr
    assert "Pipeline: HYBRID" in result.stdout
    assert "Complexity" in result.stdout and "Plant" in result.stdout


def test_analyze_options(demo_glb: Path) -> None:
    scene_mode = json.loads(run("analyze", str(demo_glb), "--json", "--mode", "scene").stdout)
    assert scene_mode["plan"]["mode"] == "scene" and scene_mode["plan"]["pipeline"] == "splat"
    override = run("analyze", str(demo_glb), "--json", "--set", "keep_animated=false")
    assert json.loads(override.stdout)["plan"]["objects"]["CeilingFan"]["route"] != "keep"
    mm = json.loads(run("analyze", str(demo_glb), "--json", "--unit", "mm").stdout)
    assert mm["features"]["meters_per_unit"] == 0.001


def test_demo_analysis_writes_its_outputs(tmp_path: Path) -> None:
    result = run("demo", "--out", str(tmp_path / "out"), "--analyze-only")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "demo_room.glb").stat().st_size > 0
    report = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert report["plan"]["pipeline"] == "hybrid"
    assert "Pipeline: HYBRID" in result.stdout


OBJ_CASES = {
    "nan.obj": ("o thing\nv 0 0 0\nv 1 0 nan\nv 0 1 0\nf 1 2 3\n", "NaN"),
    "range.obj": ("o thing\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "range"),
    "short_face.obj": ("o thing\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "at least 3"),
    "empty.obj": ("# nothing but vertices\nv 0 0 0\nv 1 0 0\n", "no triangles"),
}


@pytest.mark.parametrize("name", sorted(OBJ_CASES))
def test_bad_obj_files_exit_2_naming_the_file(tmp_path: Path, name: str) -> None:
    text, needle = OBJ_CASES[name]
    path = tmp_path / name
    path.write_text(text)
    assert_clean_failure(run("analyze", str(path)), 2, name, needle)


def test_bad_files_exit_2(tmp_path: Path, demo_glb: Path) -> None:
    assert_clean_failure(run("analyze", str(tmp_path / "missing.glb")), 2, "missing.glb", "does not exist")
    truncated = tmp_path / "truncated.glb"
    truncated.write_bytes(demo_glb.read_bytes()[:5000])
    assert_clean_failure(run("analyze", str(truncated)), 2, "truncated.glb")
    fake = tmp_path / "fake.glb"
    fake.write_text("v 0 0 0\n")
    assert_clean_failure(run("analyze", str(fake)), 2, "fake.glb", "not a .glb")
    binary = tmp_path / "binary.obj"
    binary.write_bytes(bytes(range(256)) * 4)
    assert_clean_failure(run("analyze", str(binary)), 2, "binary.obj")
    other = tmp_path / "scene.fbx"
    other.write_text("x")
    assert_clean_failure(run("analyze", str(other)), 2, "unsupported")


def test_missing_texture_is_a_warning_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "m.mtl").write_text("newmtl paint\nKd 0.5 0.5 0.5\nmap_Kd nowhere.png\n")
    (tmp_path / "t.obj").write_text("mtllib m.mtl\no quad\nv 0 0 0\nv 1 0 0\nv 1 1 0\nusemtl paint\nf 1 2 3\n")
    result = run("analyze", str(tmp_path / "t.obj"), "--json")
    assert result.returncode == 0, result.stderr
    assert "nowhere.png" in result.stderr
    assert any("nowhere.png" in w for w in json.loads(result.stdout)["warnings"])


def test_usage_errors_exit_2(demo_glb: Path) -> None:
    assert_clean_failure(run("frobnicate"), 2, "invalid choice")
    assert_clean_failure(run(), 2, "no command")
    assert_clean_failure(run("analyze", str(demo_glb), "--unit", "furlong"), 2, "furlong")
    assert_clean_failure(run("analyze", str(demo_glb), "--set", "nope=1"), 2, "nope")
    assert_clean_failure(run("analyze", str(demo_glb), "--set", "splat_tiny_fraction=abc"), 2, "abc")
    assert run("--version").returncode == 0


def test_light_layers_import_no_heavy_modules() -> None:
    code = (
        "import sys, engine.scene, engine.analyze, engine.route, engine.scene.wire, engine.scene.demo\n"
        "heavy = {'torch', 'numba', 'gsplat', 'fastapi', 'scipy', 'PIL', 'pygltflib', 'uvicorn'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
