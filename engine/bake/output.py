"""Baker outputs: HDR lightmap files (OpenEXR, Radiance .hdr), RGBM PNGs, and a lightmapped glTF copy.

The glTF copy uses the ``MOZ_lightmap`` material extension (Mozilla Hubs: ``{"index",
"texCoord", "intensity"}`` on the material): it is read by the three.js-based engines that
grew out of Hubs (Hubs, Spoke, ir-engine/Ethereal Engine) and has a UnityGLTF extension
factory, and its ``intensity`` scalar lets an 8-bit PNG carry an HDR lightmap (the PNG holds
``lightmap / intensity``, clamped to [0, 1] and sRGB-encoded as those loaders expect: Spoke
assigns the texture with sRGB encoding). ``FB_materials_lightmap`` was the alternative; it has
a draft spec but no loader we know of in the engines we target, and no scalar intensity
(only an RGB factor). Web engines load only PNG/JPEG from glTF, so the float lightmaps stay
separate EXR/HDR files (:func:`write_exr`, :func:`write_hdr`).

Baked objects get TEXCOORD_1 = their lightmap UV (V flipped for glTF by the exporter), with
the layout's remapped vertex arrays when xatlas split vertices; their materials are copied
once per atlas (``<name>.lightmap<k>``) and the copies reference that atlas' texture. The
extension is listed in ``extensionsUsed`` only (never required): viewers that do not know it
still show the scene unlit by the lightmap.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ImportFormatError, InputError
from engine.scene.model import Material, MeshObject, Scene, array_key

log = logging.getLogger(__name__)

EXTENSION = "MOZ_lightmap"
OPENEXR_HINT = "pip install 'optimizer-engine[bake]' (openexr), or write a Radiance .hdr file instead"

_GLB_MAGIC = b"glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_LINEAR = 9729
_CLAMP_TO_EDGE = 33071


def _hdr_image(image: Any, path: Path, channels: tuple[int, ...] = (3, 4)) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] not in channels or min(array.shape[:2]) < 1:
        want = " or ".join(str(c) for c in channels)
        raise InputError(f"image has shape {array.shape}, expected (H, W, {want})", where=str(path))
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InputError("image holds NaN or Inf values", where=str(path), hint="clamp or denoise it first")
    return array


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write file ({exc.strerror or exc})", where=str(path)) from None


# --------------------------------------------------------------------------------------------
# OpenEXR


def write_exr(path: str | Path, image: np.ndarray, *, half: bool = False) -> Path:
    """Write a linear float image (H, W, 3|4) as a ZIP-compressed OpenEXR file (float32, or half)."""
    path = Path(path)
    array = _hdr_image(image, path)
    try:
        import OpenEXR
    except ImportError:  # pragma: no cover - depends on the install
        raise InputError("writing OpenEXR files needs the openexr package", where=str(path),
                         hint=OPENEXR_HINT) from None
    if half:
        array = array.astype(np.float16)
    channels = {"RGB" if array.shape[2] == 3 else "RGBA": array}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    try:
        with OpenEXR.File(header, channels) as exr:
            exr.write(str(path))
    except Exception as exc:  # OpenEXR raises plain exceptions for I/O failures
        raise InputError(f"cannot write OpenEXR file ({exc})", where=str(path)) from None
    return path


def read_exr(path: str | Path) -> np.ndarray:
    """Read an OpenEXR file's RGB(A) channels as float32 (H, W, 3|4)."""
    path = Path(path)
    try:
        import OpenEXR
    except ImportError:  # pragma: no cover - depends on the install
        raise InputError("reading OpenEXR files needs the openexr package", where=str(path),
                         hint=OPENEXR_HINT) from None
    try:
        with OpenEXR.File(str(path)) as exr:
            channels = exr.channels()
            key = "RGBA" if "RGBA" in channels else "RGB" if "RGB" in channels else None
            if key is None:
                raise ImportFormatError(f"no RGB channels (it has: {', '.join(channels)})", where=str(path))
            return np.ascontiguousarray(channels[key].pixels, dtype=np.float32)
    except ImportFormatError:
        raise
    except Exception as exc:
        raise ImportFormatError(f"cannot read OpenEXR file ({exc})", where=str(path)) from None


# --------------------------------------------------------------------------------------------
# Radiance .hdr (RGBE)


def _to_rgbe(rgb: np.ndarray) -> np.ndarray:
    rgb = np.maximum(rgb.astype(np.float64), 0.0)
    peak = rgb.max(axis=2)
    mantissa, exponent = np.frexp(peak)
    visible = peak > 1e-32
    scale = np.where(visible, mantissa * 256.0 / np.where(visible, peak, 1.0), 0.0)
    out = np.zeros((*rgb.shape[:2], 4), np.uint8)
    out[:, :, :3] = np.clip(np.floor(rgb * scale[:, :, None]), 0, 255).astype(np.uint8)
    out[:, :, 3] = np.where(visible, np.clip(exponent + 128, 0, 255), 0).astype(np.uint8)
    return out


def _from_rgbe(rgbe: np.ndarray) -> np.ndarray:
    exponent = rgbe[:, :, 3].astype(np.int32)
    factor = np.where(exponent > 0, np.ldexp(1.0, exponent - 136), 0.0)
    return ((rgbe[:, :, :3].astype(np.float64) + 0.5) * factor[:, :, None]).astype(np.float32)


def write_hdr(path: str | Path, image: np.ndarray) -> Path:
    """Write a linear float image (H, W, 3|4; alpha dropped) as a flat (uncompressed) Radiance RGBE file."""
    path = Path(path)
    array = _hdr_image(image, path)
    height, width = array.shape[:2]
    header = f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\nEXPOSURE=1.0\n\n-Y {height} +X {width}\n".encode("ascii")
    _write(path, header + _to_rgbe(array[:, :, :3]).tobytes())
    return path


def read_hdr(path: str | Path) -> np.ndarray:
    """Read a Radiance .hdr file (flat or new-style run-length encoded, -Y H +X W) as float32 (H, W, 3)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"cannot read file ({exc.strerror or exc})", where=str(path)) from None
    if not data.startswith((b"#?RADIANCE", b"#?RGBE")):
        raise ImportFormatError("not a Radiance .hdr file (no #?RADIANCE signature)", where=str(path))
    end = data.find(b"\n\n")
    if end < 0:
        raise ImportFormatError("the header never ends", where=str(path))
    header = data[:end].decode("ascii", "replace")
    if "FORMAT=" in header and "32-bit_rle_rgbe" not in header:
        raise ImportFormatError("only the 32-bit_rle_rgbe format is supported", where=str(path))
    line_end = data.find(b"\n", end + 2)
    match = re.fullmatch(rb"-Y (\d+) \+X (\d+)", data[end + 2:line_end].strip())
    if line_end < 0 or match is None:
        raise ImportFormatError("unsupported resolution line (expected '-Y H +X W')", where=str(path))
    height, width = int(match.group(1)), int(match.group(2))
    body = memoryview(data)[line_end + 1:]
    if len(body) == height * width * 4:  # flat: what write_hdr writes
        return _from_rgbe(np.frombuffer(body, np.uint8).reshape(height, width, 4))
    rgbe = np.empty((height, width, 4), np.uint8)
    run_start = bytes([2, 2, width >> 8, width & 0xFF])
    pos = 0
    try:
        for row in range(height):
            if not 8 <= width < 32768 or bytes(body[pos:pos + 4]) != run_start:  # a flat scanline
                rgbe[row] = np.frombuffer(body[pos:pos + width * 4], np.uint8).reshape(width, 4)
                pos += width * 4
                continue
            pos += 4
            for channel in range(4):
                x = 0
                while x < width:
                    count = body[pos]
                    pos += 1
                    if count > 128:
                        count -= 128
                        rgbe[row, x:x + count, channel] = body[pos]
                        pos += 1
                    else:
                        rgbe[row, x:x + count, channel] = np.frombuffer(body[pos:pos + count], np.uint8)
                        pos += count
                    x += count
    except (IndexError, ValueError):
        raise ImportFormatError("the pixel data is truncated or corrupt", where=str(path)) from None
    return _from_rgbe(rgbe)


def write_lightmap_hdr(path: str | Path, image: np.ndarray) -> Path:
    """Write an HDR lightmap as OpenEXR, or as Radiance .hdr (same stem) when openexr is not installed."""
    path = Path(path)
    if path.suffix.lower() == ".hdr":
        return write_hdr(path, image)
    try:
        import OpenEXR  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the install
        log.warning("openexr is not installed: writing %s as Radiance .hdr", path)
        return write_hdr(path.with_suffix(".hdr"), image)
    return write_exr(path, image)


# --------------------------------------------------------------------------------------------
# PNG


def _png_bytes(pixels: np.ndarray) -> bytes:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the install
        raise InputError("writing PNG files needs Pillow", hint="pip install 'optimizer-engine[io]'") from None
    mode = {3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png_rgbm(path: str | Path, hdr: np.ndarray, max_range: float = 8.0) -> Path:
    """Write an HDR lightmap as an RGBM PNG (see :func:`engine.bake.post.encode_rgbm`)."""
    from engine.bake.post import encode_rgbm

    path = Path(path)
    _write(path, _png_bytes(encode_rgbm(_hdr_image(hdr, path), max_range)))
    return path


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] → sRGB-encoded [0, 1] (IEC 61966-2-1)."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] → linear [0, 1]."""
    x = np.clip(encoded, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def lightmap_png(hdr: np.ndarray, *, percentile: float = 99.9) -> tuple[bytes, float]:
    """An 8-bit sRGB PNG of ``hdr / intensity`` and that intensity (the ``percentile`` of the texel peaks).

    Texels above the intensity clip; a viewer reconstructs ``png · intensity``.
    """
    rgb = np.maximum(np.nan_to_num(np.asarray(hdr, np.float32)[:, :, :3], nan=0.0), 0.0)
    peaks = rgb.max(axis=2)
    lit = peaks[peaks > 0]
    intensity = float(np.percentile(lit, percentile)) if lit.size else 1.0
    intensity = float(f"{max(intensity, 1e-6):.6g}")
    pixels = np.rint(srgb_encode(rgb / intensity) * 255.0).astype(np.uint8)
    return _png_bytes(pixels), intensity


# --------------------------------------------------------------------------------------------
# lightmapped glTF


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 1
    while candidate in taken:
        candidate = f"{name}.{k:03d}"
        k += 1
    taken.add(candidate)
    return candidate


def _lightmapped_scene(scene: Scene, layout: Any) -> tuple[Scene, dict[int, int]]:
    """The scene with baked objects remapped to their layout vertices, and {material index: atlas}."""
    by_object = {e.object_index: e for e in layout.entries}
    for entry in layout.entries:
        if not 0 <= entry.object_index < len(scene.objects) or scene.objects[entry.object_index].name != entry.name:
            raise InputError(f"the layout's object '{entry.name}' is not object {entry.object_index} of this scene",
                             where=f"scene '{scene.name}'", hint="export with the scene the layout was made for")
    used_unbaked = {int(m) for i, obj in enumerate(scene.objects) if i not in by_object
                    for m in np.unique(obj.material_indices)}
    used_baked = {int(m) for i in by_object for m in np.unique(scene.objects[i].material_indices)}
    # originals stay for unbaked objects (and unused ones); baked-only ones are replaced by their copies
    kept = [m for m in range(len(scene.materials)) if m in used_unbaked or m not in used_baked]
    new_index = {m: k for k, m in enumerate(kept)}
    materials: list[Material] = [scene.materials[m] for m in kept]
    taken = {m.name for m in scene.materials}
    copies: dict[tuple[int, int], int] = {}
    atlas_of: dict[int, int] = {}
    for entry in sorted(layout.entries, key=lambda e: e.atlas):
        for m in np.unique(scene.objects[entry.object_index].material_indices).tolist():
            if (m, entry.atlas) not in copies:
                original = scene.materials[m]
                materials.append(dataclasses.replace(original, name=_unique(f"{original.name}.lightmap{entry.atlas}",
                                                                           taken)))
                copies[(m, entry.atlas)] = len(materials) - 1
                atlas_of[len(materials) - 1] = entry.atlas

    remapped: dict[tuple[Any, ...], np.ndarray] = {}
    objects: list[MeshObject] = []
    for i, obj in enumerate(scene.objects):
        entry = by_object.get(i)
        if entry is None:
            key = array_key(obj.material_indices)
            if key not in remapped:  # instances keep sharing one array
                lookup = np.zeros(len(scene.materials), np.int32)
                for m, k in new_index.items():
                    lookup[m] = k
                remapped[key] = lookup[obj.material_indices]
            objects.append(dataclasses.replace(obj, material_indices=remapped[key]))
            continue
        vm = entry.vmapping
        uvs = {name: uv[vm] for name, uv in obj.uvs.items() if name != obj.lightmap_uv}
        taken_uv = set(obj.uvs)
        lightmap_name = obj.lightmap_uv or _unique("lightmap", taken_uv)
        if not uvs:  # the lightmap goes to TEXCOORD_1: give TEXCOORD_0 a copy
            uvs[_unique("UVMap", taken_uv)] = entry.uv
        uvs[lightmap_name] = entry.uv
        lookup = np.zeros(len(scene.materials), np.int32)
        for m in np.unique(obj.material_indices).tolist():
            lookup[m] = copies[(m, entry.atlas)]
        objects.append(MeshObject(
            name=obj.name,
            positions=obj.positions[vm],
            triangles=entry.triangles,
            normals=None if obj.normals is None else obj.normals[vm],
            uvs=uvs,
            lightmap_uv=lightmap_name,
            material_indices=lookup[obj.material_indices],
            transform=obj.transform,
            static=obj.static,
            animated=obj.animated,
            visible=obj.visible,
            instance_of=None,  # each baked copy has its own lightmap UV: no shared mesh
        ))
    return dataclasses.replace(scene, objects=tuple(objects), materials=tuple(materials)), atlas_of


def _read_gltf(path: Path) -> tuple[dict[str, Any], bytearray]:
    data = path.read_bytes()
    if data[:4] == _GLB_MAGIC:
        json_length, _ = struct.unpack_from("<II", data, 12)
        doc = json.loads(data[20:20 + json_length])
        blob = bytearray()
        offset = 20 + json_length
        if offset + 8 <= len(data):
            bin_length, kind = struct.unpack_from("<II", data, offset)
            if kind == _CHUNK_BIN:
                blob = bytearray(data[offset + 8:offset + 8 + bin_length])
        return doc, blob
    doc = json.loads(data)
    blob = bytearray()
    buffers = doc.get("buffers") or []
    if buffers and str(buffers[0].get("uri", "")).startswith("data:"):
        blob = bytearray(base64.b64decode(buffers[0]["uri"].split(",", 1)[1]))
    return doc, blob


def _write_gltf(path: Path, doc: dict[str, Any], blob: bytearray) -> None:
    blob += b"\0" * (-len(blob) % 4)
    doc["buffers"] = [{"byteLength": len(blob)}]
    if path.suffix.lower() == ".glb":
        json_bytes = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        json_bytes += b" " * (-len(json_bytes) % 4)
        body = struct.pack("<II", len(json_bytes), _CHUNK_JSON) + json_bytes
        body += struct.pack("<II", len(blob), _CHUNK_BIN) + bytes(blob)
        data = struct.pack("<4sII", _GLB_MAGIC, 2, 12 + len(body)) + body
    else:
        doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(bytes(blob)).decode()
        data = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    _write(path, data)


def export_lightmapped_gltf(scene: Scene, layout: Any, lightmaps: Sequence[np.ndarray], path: str | Path) -> Path:
    """Write a glTF 2.0 copy of ``scene`` (.glb or .gltf, self-contained) lit by baked ``lightmaps``.

    ``lightmaps`` holds one linear float (S, S, 3|4) image per atlas of ``layout`` (dilate them
    first: the PNGs are sampled bilinearly). Baked objects carry TEXCOORD_1 = their lightmap
    UV and their materials (copied per atlas) a ``MOZ_lightmap`` extension naming the atlas'
    PNG texture, with ``intensity`` undoing the PNG's normalisation. Returns the path.
    """
    from engine.scene.gltf import export_gltf

    path = Path(path)
    if path.suffix.lower() not in (".glb", ".gltf"):
        raise InputError(f"cannot export to '{path.suffix or '(none)'}'", where=str(path),
                         hint="use a .glb or .gltf path")
    if len(lightmaps) != layout.atlas_count:
        raise InputError(f"{len(lightmaps)} lightmaps given for a layout of {layout.atlas_count} atlases",
                         where=str(path), hint="pass one image per atlas, in atlas order")
    images = []
    for k, image in enumerate(lightmaps):
        array = _hdr_image(image, path)
        if array.shape[:2] != (layout.atlas_size, layout.atlas_size):
            raise InputError(f"lightmap {k} is {array.shape[1]}×{array.shape[0]}, expected the atlas size "
                             f"{layout.atlas_size}²", where=str(path))
        images.append(array)

    lit_scene, atlas_of = _lightmapped_scene(scene, layout)
    export_gltf(lit_scene, path)
    doc, blob = _read_gltf(path)

    gltf_images = doc.setdefault("images", [])
    textures = doc.setdefault("textures", [])
    samplers = doc.setdefault("samplers", [])
    samplers.append({"magFilter": _LINEAR, "minFilter": _LINEAR, "wrapS": _CLAMP_TO_EDGE, "wrapT": _CLAMP_TO_EDGE})
    sampler = len(samplers) - 1
    views = doc.setdefault("bufferViews", [])
    texture_of: list[int] = []
    intensities: list[float] = []
    for k, image in enumerate(images):
        png, intensity = lightmap_png(image)
        blob += b"\0" * (-len(blob) % 4)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(png)})
        blob += png
        gltf_images.append({"name": f"lightmap{k}", "mimeType": "image/png", "bufferView": len(views) - 1})
        textures.append({"name": f"lightmap{k}", "sampler": sampler, "source": len(gltf_images) - 1})
        texture_of.append(len(textures) - 1)
        intensities.append(intensity)
    for m, atlas in atlas_of.items():
        material = doc["materials"][m]
        material.setdefault("extensions", {})[EXTENSION] = {
            "index": texture_of[atlas], "texCoord": 1, "intensity": intensities[atlas],
        }
        extras = material.setdefault("extras", {}).setdefault("optimizer", {})
        extras["lightmap"] = {"atlas": atlas, "encoding": "srgb", "intensity": intensities[atlas]}
    doc["extensionsUsed"] = sorted({*doc.get("extensionsUsed", []), EXTENSION})
    scene_extras = doc["scenes"][0].setdefault("extras", {}).setdefault("optimizer", {})
    scene_extras["lightmaps"] = {
        "extension": EXTENSION,
        "atlas_size": layout.atlas_size,
        "atlas_count": layout.atlas_count,
        "texels_per_metre": layout.texels_per_metre,
        "intensities": intensities,
    }
    _write_gltf(path, doc, blob)
    log.info("wrote %s with %d lightmap atlases (%s)", path, len(images), EXTENSION)
    return path
