"""Build the Blender extension zips: ``dist/optimizer-<version>-<platform>.zip``.

Each zip holds the add-on (``blender_addon/``), a pure-Python wheel of the engine's light
layers and client (``engine.scene``, ``engine.analyze``, ``engine.route``, ``engine.client``,
``engine.errors``, ``engine.progress``, ``engine.cli`` — what the add-on imports; numpy and
requests come with Blender) and msgpack's binary wheel for Blender's Python 3.11 on that
platform. Every zip is checked with Blender's own validator (``blender_ext.py validate``, which
ships in the ``bpy`` wheel) when ``bpy`` is installed.

    python build_addon.py [--out dist] [--platform linux-x64 ...] [--wheels-from DIR]

``--wheels-from`` (or ``$OPTIMIZER_WHEELS``) takes the msgpack wheels from a folder instead of
downloading them (offline builds; `make` fills ``.wheels/``). Exit codes: 0 built and valid,
2 bad input (no add-on, missing wheels), 1 a build step or the validator failed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# Blender's extension platform → (pip platform tag to download, pattern a wheel name must match)
PLATFORMS = {
    "linux-x64": ("manylinux2014_x86_64", r"manylinux[^-]*x86_64\.whl$"),
    "windows-x64": ("win_amd64", r"-win_amd64\.whl$"),
    "macos-arm64": ("macosx_11_0_arm64", r"-macosx_[^-]*(arm64|universal2)\.whl$"),
}
BUNDLED = ("msgpack",)
# The engine modules the add-on needs (light layers, client, CLI helpers): nothing heavy.
LIGHT = ("engine/__init__.py", "engine/errors.py", "engine/progress.py", "engine/client.py", "engine/cli.py",
         "engine/scene", "engine/analyze", "engine/route", "engine/splat/__init__.py", "engine/splat/frames.py",
         "engine/splat/ply.py", "engine/splat/compressed.py", "engine/splat/rig.py", "engine/splat/references.py")


class BuildError(Exception):
    """Bad input for the build (exit 2)."""


def read_manifest(addon_dir: Path) -> dict:
    manifest = addon_dir / "blender_manifest.toml"
    if not manifest.is_file():
        raise BuildError(f"{manifest}: not found; is this the add-on folder?")
    try:
        return tomllib.loads(manifest.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{manifest}: not valid TOML ({exc})") from None


def with_top_level(manifest_text: str, key: str, values: list[str]) -> str:
    """The manifest text with a top-level ``key = [...]`` list replaced (or added)."""
    entry = f"{key} = [\n" + "".join(f'  "{value}",\n' for value in values) + "]\n"
    pattern = re.compile(rf"^{key}\s*=\s*\[[^\]]*\]\s*\n?", re.MULTILINE)
    if pattern.search(manifest_text):
        return pattern.sub(entry, manifest_text, count=1)
    table = re.search(r"^\[", manifest_text, re.MULTILINE)  # top-level keys go before the first [table]
    cut = table.start() if table else len(manifest_text)
    head = manifest_text[:cut].rstrip("\n") + "\n"
    return head + entry + ("\n" + manifest_text[cut:] if table else "")


def with_wheels(manifest_text: str, wheels: list[str]) -> str:
    return with_top_level(manifest_text, "wheels", [f"./wheels/{name}" for name in sorted(wheels)])


def _engine_version() -> str:
    text = (ROOT / "engine" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'__version__ = "([^"]+)"', text).group(1)  # type: ignore[union-attr]


def build_light_wheel(out_dir: Path) -> Path:
    """A py3-none-any wheel `optimizer_engine_light` holding only the LIGHT modules of `engine`."""
    version = _engine_version()
    name = f"optimizer_engine_light-{version}-py3-none-any.whl"
    dist_info = f"optimizer_engine_light-{version}.dist-info"
    files: list[tuple[str, bytes]] = []
    for entry in LIGHT:
        path = ROOT / entry
        sources = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for source in sources:
            files.append((source.relative_to(ROOT).as_posix(), source.read_bytes()))
    metadata = (f"Metadata-Version: 2.1\nName: optimizer-engine-light\nVersion: {version}\n"
                "Summary: Optimizer engine light layers (scene, analyze, route, client) for the Blender add-on\n"
                "License: GPL-3.0-or-later\nRequires-Python: >=3.11\n"
                "Requires-Dist: numpy\nRequires-Dist: msgpack\nRequires-Dist: requests\n").encode()
    wheel = b"Wheel-Version: 1.0\nGenerator: optimizer build_addon.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files += [(f"{dist_info}/METADATA", metadata), (f"{dist_info}/WHEEL", wheel)]
    record = []
    for arcname, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    target = out_dir / name
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in files:
            archive.writestr(zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0)), data,
                             compress_type=zipfile.ZIP_DEFLATED)
    return target


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True)


def platform_wheels(package: str, platform: str, work: Path, wheels_from: Path | None) -> Path:
    """The cp311 wheel of ``package`` for a Blender platform, from a folder or downloaded by pip."""
    tag, pattern = PLATFORMS[platform]
    if wheels_from is not None:
        found = sorted(p for p in wheels_from.glob(f"{package}-*cp311*.whl") if re.search(pattern, p.name))
        if not found:
            raise BuildError(f"{wheels_from}: no {package} wheel for {platform} (cp311, {tag})")
        return found[-1]
    folder = work / platform
    result = _run([sys.executable, "-m", "pip", "download", package, "--only-binary=:all:", "--no-deps",
                   "--python-version", "3.11", "--platform", tag, "--quiet", "-d", str(folder)])
    found = sorted(folder.glob(f"{package}-*.whl"))
    if result.returncode != 0 or not found:
        raise RuntimeError(f"pip could not download {package} for {platform}:\n{result.stderr[-1500:]}")
    return found[-1]


def validator() -> Path | None:
    """Blender's extension validator from the installed `bpy` wheel, if any."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("bpy")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    return found[-1] if found else None


def validate(zip_path: Path) -> str | None:
    """Run Blender's validator on a zip; returns its complaint, or None when valid (or unavailable)."""
    script = validator()
    if script is None:
        return None
    result = _run([sys.executable, str(script), "validate", str(zip_path)])
    return None if result.returncode == 0 else (result.stdout + result.stderr).strip()


def build(addon_dir: Path, out_dir: Path, platforms: list[str], wheels_from: Path | None) -> list[Path]:
    manifest = read_manifest(addon_dir)
    for key in ("id", "version"):
        if key not in manifest:
            raise BuildError(f"{addon_dir / 'blender_manifest.toml'}: missing '{key}'")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_text = (addon_dir / "blender_manifest.toml").read_text(encoding="utf-8")
    built = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        light = build_light_wheel(work)
        for platform in platforms:
            wheels = [light] + [platform_wheels(package, platform, work, wheels_from) for package in BUNDLED]
            text = with_wheels(manifest_text, [w.name for w in wheels])
            text = with_top_level(text, "platforms", [platform])
            target = out_dir / f"{manifest['id']}-{manifest['version']}-{platform}.zip"
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(addon_dir.rglob("*")):
                    relative = path.relative_to(addon_dir)
                    if (path.is_dir() or "__pycache__" in relative.parts or relative.name == "blender_manifest.toml"
                            or relative.suffix == ".zip"):
                        continue
                    archive.write(path, relative.as_posix())
                archive.writestr("blender_manifest.toml", text)
                for wheel in wheels:
                    archive.write(wheel, f"wheels/{wheel.name}")
            complaint = validate(target)
            if complaint:
                raise RuntimeError(f"Blender's validator rejects {target.name}:\n{complaint}")
            built.append(target)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addon-dir", type=Path, default=ROOT / "blender_addon")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORMS), dest="platforms")
    parser.add_argument("--wheels-from", type=Path, default=os.environ.get("OPTIMIZER_WHEELS") or None)
    args = parser.parse_args(argv)
    try:
        built = build(args.addon_dir, args.out, args.platforms or list(PLATFORMS), args.wheels_from)
    except BuildError as exc:
        print(f"build_addon: error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"build_addon: build failed: {exc}", file=sys.stderr)
        return 1
    checked = "validated with Blender's validator" if validator() else "not validated (bpy is not installed)"
    for target in built:
        print(f"built {target} ({checked})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
