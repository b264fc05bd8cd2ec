"""Load a scene file of any supported format; the one entry point the CLI and service use."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.errors import ImportFormatError, OptimizerError
from engine.scene.model import Scene

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".gltf", ".glb", ".obj")


def _sniff(path: Path) -> str:
    """Return the format a file's first bytes say it is: 'glb', 'gltf', 'obj' or ''."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if head.startswith(b"glTF"):
        return "glb"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        return "gltf"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        # A cut multi-byte character at the end of the sample is fine; real binary is not.
        try:
            head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return ""
    return "obj"


def load_scene(path: str | Path, *, unit: str | None = None) -> Scene:
    """Read a .gltf, .glb or .obj file into a Scene.

    ``unit`` overrides the file's length unit (OBJ files carry none; glTF is metres by spec).
    Raises :class:`engine.errors.InputError` subclasses with the file named on bad input.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise ImportFormatError("file does not exist", where=where)
    if path.is_dir():
        raise ImportFormatError("is a directory, expected a .gltf, .glb or .obj file", where=where)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ImportFormatError(
            f"unsupported file type '{suffix or '(none)'}'", where=where,
            hint=f"supported: {', '.join(SUPPORTED_SUFFIXES)}",
        )
    try:
        sniffed = _sniff(path)
    except OSError as exc:
        raise ImportFormatError(f"cannot read file ({exc.strerror or exc})", where=where) from None
    claimed = suffix.lstrip(".")
    if path.stat().st_size == 0:
        raise ImportFormatError("file is empty", where=where)
    if sniffed != claimed and not (claimed == "gltf" and sniffed == "glb"):
        described = {"glb": "binary glTF", "gltf": "JSON", "obj": "text", "": "binary data"}[sniffed]
        raise ImportFormatError(f"is not a {suffix} file: its content looks like {described}", where=where)
    try:
        if claimed in ("gltf", "glb"):
            from engine.scene.gltf import load_gltf

            scene = load_gltf(path, unit=unit)
        else:
            from engine.scene.obj import load_obj

            scene = load_obj(path, unit=unit)
    except OptimizerError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, OSError, UnicodeDecodeError) as exc:
        # A parser tripped over malformed content it did not report itself.
        raise ImportFormatError(f"malformed {suffix} file ({type(exc).__name__}: {exc})", where=where) from None
    for warning in scene.warnings:
        log.warning("%s", warning)
    return scene
