"""Build the Blender extension zip: ``blender_addon/`` plus the wheels it runs on.

The add-on imports only the engine's light layers (scene, analyze, route, client), so it ships
the engine as a pure-Python wheel and msgpack's binary wheels for every platform Blender runs
on; Blender installs them from the manifest's ``wheels`` list. Requests and numpy come with
Blender.

    python build_addon.py [--out dist] [--wheels-from DIR] [--addon-dir blender_addon]

``--wheels-from`` takes the msgpack wheels from a folder instead of downloading them (offline
builds). Exit codes: 0 built, 2 bad input (no add-on, missing wheels), 1 a build step failed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# Blender's extension platforms: the pip platform tag to download for each (CPython 3.11) and
# the pattern a wheel's file name must match to serve it.
PLATFORMS = {
    "windows-x64": ("win_amd64", r"-win_amd64\.whl$"),
    "linux-x64": ("manylinux2014_x86_64", r"manylinux[^-]*x86_64\.whl$"),
    "macos-arm64": ("macosx_11_0_arm64", r"-macosx_[^-]*(arm64|universal2)\.whl$"),
    "macos-x64": ("macosx_10_9_x86_64", r"-macosx_[^-]*(x86_64|universal2)\.whl$"),
}
BUNDLED = ("msgpack",)


class BuildError(Exception):
    """Bad input for the build (exit 2)."""


def read_manifest(addon_dir: Path) -> dict:
    manifest = addon_dir / "blender_manifest.toml"
    if not manifest.is_file():
        raise BuildError(
            f"{manifest}: not found; the add-on is not in this tree yet (blender_addon/README.md)"
        )
    try:
        return tomllib.loads(manifest.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{manifest}: not valid TOML ({exc})") from None


def with_wheels(manifest_text: str, wheels: list[str]) -> str:
    """The manifest text with its top-level ``wheels = [...]`` replaced (or added)."""
    entry = "wheels = [\n" + "".join(f'  "./wheels/{name}",\n' for name in sorted(wheels)) + "]\n"
    pattern = re.compile(r"^wheels\s*=\s*\[[^\]]*\]\s*\n?", re.MULTILINE)
    if pattern.search(manifest_text):
        return pattern.sub(entry, manifest_text, count=1)
    # top-level keys must come before the first [table]
    table = re.search(r"^\[", manifest_text, re.MULTILINE)
    cut = table.start() if table else len(manifest_text)
    head = manifest_text[:cut].rstrip("\n") + "\n"
    return head + entry + ("\n" + manifest_text[cut:] if table else "")


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed:\n{result.stderr[-2000:]}")


def collect_wheels(work: Path, wheels_from: Path | None) -> list[Path]:
    """The engine wheel (built here) and msgpack wheels for every Blender platform."""
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work), str(ROOT)])
    wheels = sorted(work.glob("optimizer_engine-*.whl"))
    for package in BUNDLED:
        for platform, (tag, pattern) in PLATFORMS.items():
            if wheels_from is not None:
                found = [p for p in wheels_from.glob(f"{package}-*cp311*.whl") if re.search(pattern, p.name)]
                if not found:
                    raise BuildError(f"{wheels_from}: no {package} wheel for {platform} (cp311, {tag})")
                wheels.append(found[0])
                continue
            _run([sys.executable, "-m", "pip", "download", package, "--only-binary=:all:", "--no-deps",
                  "--python-version", "3.11", "--platform", tag, "--quiet", "-d", str(work / platform)])
            wheels += sorted((work / platform).glob(f"{package}-*.whl"))
    return wheels


def build(addon_dir: Path, out_dir: Path, wheels_from: Path | None) -> Path:
    manifest = read_manifest(addon_dir)
    for key in ("id", "version"):
        if key not in manifest:
            raise BuildError(f"{addon_dir / 'blender_manifest.toml'}: missing '{key}'")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        wheels = collect_wheels(Path(tmp), wheels_from)
        text = with_wheels((addon_dir / "blender_manifest.toml").read_text(encoding="utf-8"),
                           [w.name for w in wheels])
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(addon_dir.rglob("*")):
                relative = path.relative_to(addon_dir)
                if path.is_dir() or "__pycache__" in relative.parts or relative.name == "blender_manifest.toml":
                    continue
                archive.write(path, str(relative))
            archive.writestr("blender_manifest.toml", text)
            for wheel in wheels:
                archive.write(wheel, f"wheels/{wheel.name}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addon-dir", type=Path, default=ROOT / "blender_addon")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--wheels-from", type=Path)
    args = parser.parse_args(argv)
    try:
        target = build(args.addon_dir, args.out, args.wheels_from)
    except BuildError as exc:
        print(f"build_addon: error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"build_addon: build failed: {exc}", file=sys.stderr)
        return 1
    print(f"built {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
