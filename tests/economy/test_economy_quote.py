"""`optimizer quote` (subprocess) and POST /v1/quote (a real node): the JSON contract and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from engine.economy.quote import DESIGN_FACTOR
from engine.economy.work import Calibration, bake_texels, bake_units
from engine.scene import wire
from engine.scene.demo import build_demo_scene
from engine.scene.gltf import export_gltf
from tests.service.conftest import NodeProcess, free_port

FRIDAY_4PM_BERLIN = "2025-03-28T16:00:00+01:00"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TZ": "Europe/Berlin"})


@pytest.fixture(scope="module")
def demo_glb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_gltf(build_demo_scene(leaf_count=150), tmp_path_factory.mktemp("quote") / "demo.glb")


def test_quote_json_contract(demo_glb: Path, tmp_path: Path) -> None:
    result = run("quote", str(demo_glb), "--deadline", "24h", "--now", FRIDAY_4PM_BERLIN, "--kind", "bake",
                 "--samples", "4096", "--json")
    assert result.returncode == 0, result.stderr
    quote = json.loads(result.stdout)
    job = quote["jobs"][0]
    assert quote["now"] == "2025-03-28T16:00:00+01:00" and job["nodes"] == ["local"]
    assert job["deadline"] == "2025-03-29T16:00:00+01:00"
    start, finish = datetime.fromisoformat(job["start"]), datetime.fromisoformat(job["finish"])
    assert start.utcoffset() is not None and finish <= datetime.fromisoformat(job["deadline"])
    # 4096 samples: run now lands in Friday's peak (2.00/h); the quote waits for Saturday (0.40/h)
    assert start.weekday() == 5 and job["windows"][0]["cost"] == pytest.approx(job["cost"])
    assert job["saving_percent"] == pytest.approx(80.0, abs=0.01)
    assert job["baseline"]["cost"] == pytest.approx(job["cost"] * 5, rel=1e-3)
    assert job["design_formula"]["cost"] == pytest.approx(job["baseline"]["cost"] * DESIGN_FACTOR, rel=1e-3)
    estimate = quote["estimates"][0]
    units = bake_units(bake_texels(estimate["basis"]["area_m2"]), 4096, 3)
    assert estimate["units"] == pytest.approx(units)
    assert job["work_reference_gpu_hours"] == pytest.approx(units / 5e8 / 3600, rel=1e-4)
    # a calibration in the data folder changes the estimate: twice the measured rate, half the hours
    Calibration.open(tmp_path).observe("bake", 1e9, 1.0)
    again = json.loads(run("quote", str(demo_glb), "--deadline", "24h", "--now", FRIDAY_4PM_BERLIN, "--kind", "bake",
                           "--samples", "4096", "--data", str(tmp_path), "--json").stdout)
    assert again["jobs"][0]["work_reference_gpu_hours"] == pytest.approx(job["work_reference_gpu_hours"] / 2, rel=1e-3)


def test_quote_with_a_pool_and_table_output(demo_glb: Path, tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.toml"
    nodes.write_text('[[node]]\nname = "berlin"\ntimezone = "Europe/Berlin"\nlocal = true\n'
                     '[[node]]\nname = "tokyo"\ntimezone = "Asia/Tokyo"\ntier = "h100"\nsurcharge = 0.1\n')
    result = run("quote", str(demo_glb), "--deadline", "6h", "--now", "2025-03-26T10:00:00+01:00", "--kind", "bake",
                 "--samples", "65536", "--nodes", str(nodes), "--json")
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)["jobs"][0]
    # Wednesday 10:00 Berlin is peak there and 18:00 in Tokyo: the H100 is faster and in its evening
    assert job["nodes"] == ["tokyo"] and job["windows"][0]["start"].endswith("+09:00")
    table = run("quote", str(demo_glb), "--deadline", "6h", "--now", "2025-03-26T10:00:00+01:00", "--nodes", str(nodes))
    assert table.returncode == 0 and "saving" in table.stdout and "51.55 %" in table.stdout


@pytest.mark.parametrize(("args", "needles"), [
    (["--deadline", "soon"], ["--deadline", "soon"]),
    (["--deadline", "2025-03-30T10:00:00"], ["no UTC offset"]),
    (["--deadline", "1m", "--kind", "bake", "--samples", "100000"], ["earliest possible finish"]),
    (["--deadline", "24h", "--prices", "/nonexistent/p.toml"], ["/nonexistent/p.toml"]),
])
def test_quote_errors_exit_2_with_one_line(demo_glb: Path, args: list[str], needles: list[str]) -> None:
    result = run("quote", str(demo_glb), "--now", FRIDAY_4PM_BERLIN, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("optimizer: error")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_post_quote_on_a_real_node(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "data", tmp_path / "config", free_port(), ["--workers", "1"]).start()
    try:
        envelope = wire.to_jsonable(build_demo_scene(leaf_count=60))
        body = {"scene": envelope, "deadline": "24h", "now": FRIDAY_4PM_BERLIN, "kind": "bake",
                "timezone": "Europe/Berlin", "settings": {"bake": {"samples": 4096}}}
        reply = node.post("/v1/quote", json=body)
        assert reply.status_code == 200, reply.text
        quote = reply.json()
        assert quote["jobs"][0]["saving_percent"] == pytest.approx(80.0, abs=0.01)
        assert quote["total"]["design_formula_saving_percent"] == pytest.approx(51.55)
        pool = [{"name": "night", "timezone": "Asia/Tokyo", "local": True, "available": ["daily 00-06"]}]
        reply = node.post("/v1/quote", json={**body, "nodes": pool})
        assert reply.status_code == 200, reply.text
        window = reply.json()["jobs"][0]["windows"][0]  # Saturday in Tokyo: 0.40/h, but only 00-06 is free
        start, end = datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])
        assert window["start"].startswith("2025-03-29T0") and window["start"].endswith("+09:00")
        assert start.hour < 6 and (end.hour, end.minute) <= (6, 0)
        bad = node.post("/v1/quote", json={**body, "deadline": "1m", "settings": {"bake": {"samples": 1e6}}})
        assert bad.status_code == 422 and "earliest possible finish" in bad.json()["detail"]
        bad = node.post("/v1/quote", json={**body, "nodes": [{"name": "x", "tier": "gtx480"}]})
        assert bad.status_code == 422 and "body.nodes[0].tier" in bad.json()["detail"]
        assert node.post("/v1/quote", json={k: v for k, v in body.items() if k != "scene"}).status_code == 422
        assert node.post("/v1/quote", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    finally:
        node.stop()
