"""build_addon.py: refusal without an add-on, and the manifest's wheel list."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import build_addon

ROOT = Path(__file__).resolve().parents[2]


def test_refuses_clearly_without_an_addon(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "build_addon.py"), "--addon-dir", str(tmp_path),
                             "--out", str(tmp_path / "dist")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "blender_manifest.toml: not found" in result.stderr and "Traceback" not in result.stderr


def test_wheel_list_is_written_before_the_first_table() -> None:
    text = 'schema_version = "1.0.0"\nid = "optimizer"\nversion = "0.1.0"\n\n[permissions]\nnetwork = "engine"\n'
    updated = build_addon.with_wheels(text, ["msgpack-1.1.0-cp311-cp311-win_amd64.whl", "a.whl"])
    data = tomllib.loads(updated)
    assert data["wheels"] == ["./wheels/a.whl", "./wheels/msgpack-1.1.0-cp311-cp311-win_amd64.whl"]
    assert data["permissions"] == {"network": "engine"}
    # an existing list is replaced, not duplicated
    again = tomllib.loads(build_addon.with_wheels(updated, ["b.whl"]))
    assert again["wheels"] == ["./wheels/b.whl"]


def matches(name: str, platform: str) -> bool:
    return re.search(build_addon.PLATFORMS[platform][1], name) is not None


def test_platform_patterns_match_wheel_names() -> None:
    assert matches("msgpack-1.1.0-cp311-cp311-win_amd64.whl", "windows-x64")
    assert matches("msgpack-1.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "linux-x64")
    assert not matches("msgpack-1.1.0-cp311-cp311-manylinux_2_17_aarch64.whl", "linux-x64")
    assert matches("msgpack-1.1.0-cp311-cp311-macosx_11_0_arm64.whl", "macos-arm64")
    assert not matches("msgpack-1.1.0-cp311-cp311-macosx_10_9_x86_64.whl", "macos-arm64")
    assert matches("msgpack-1.1.0-cp311-cp311-macosx_10_9_universal2.whl", "macos-arm64")


def test_light_wheel_holds_only_the_light_layers(tmp_path: Path) -> None:
    import zipfile

    wheel = build_addon.build_light_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "engine/scene/model.py" in names and "engine/client.py" in names and "engine/route/policy.py" in names
    assert not any(n.startswith(("engine/service/", "engine/bake/", "engine/render/")) for n in names)
    # of the splat package only the numpy-only file readers and frames (the Blender preview)
    splat = sorted(n for n in names if n.startswith("engine/splat/"))
    assert splat == ["engine/splat/__init__.py", "engine/splat/compressed.py", "engine/splat/frames.py",
                     "engine/splat/ply.py", "engine/splat/references.py", "engine/splat/rig.py"]
    check = ("import sys; sys.path.insert(0, sys.argv[1]); import engine.splat.ply, engine.splat.frames, "
             "engine.splat.compressed, engine.splat.rig, engine.splat.references, engine.route, engine.client; "
             "heavy = {'torch', 'numba', 'gsplat', 'fastapi', 'PIL'} & set(sys.modules); print(sorted(heavy))")
    import subprocess
    import sys

    ran = subprocess.run([sys.executable, "-c", check, str(wheel)], capture_output=True, text=True, cwd=tmp_path,
                         check=False)
    assert ran.returncode == 0 and ran.stdout.strip() == "[]", ran.stdout + ran.stderr
    record = next(n for n in names if n.endswith("/RECORD"))
    assert "engine/analyze/features.py,sha256=" in zipfile.ZipFile(wheel).read(record).decode()
