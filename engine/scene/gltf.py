"""glTF 2.0 import and export (.gltf with external or embedded data, .glb).

Import parses the JSON with pygltflib (imported lazily, it is an ``[io]`` extra) and decodes
accessors with numpy straight from the buffers: no per-vertex Python loops. glTF is Y-up and
right-handed; the Scene is Z-up, so every world transform is left-multiplied by
:data:`Y_UP_TO_Z_UP` ((x, y, z) → (x, -z, y)) and vertex data stays in mesh-local space. glTF
texture coordinates run V down; the Scene stores V up (v' = 1 - v), and export flips back.

Export writes one self-contained file: ``.glb`` (binary) or ``.gltf`` (JSON with the buffer
embedded as a base64 data URI). What glTF cannot say (area lights, camera intrinsics beyond a
vertical field of view, object flags, UV set names, the scene's original length unit and
environment colour) travels in ``extras.optimizer`` objects, which the importer restores, so a
round trip is exact up to float32. A scene in another unit than metres is written in metres
(node transforms scaled) so other tools see the right size.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import struct
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ImportFormatError, InputError, SceneError
from engine.scene.model import (
    AREA_SHAPES,
    Camera,
    Light,
    Material,
    MeshObject,
    Scene,
    Texture,
)
from engine.scene.units import parse_unit

log = logging.getLogger(__name__)

#: glTF world (Y-up) to Scene world (Z-up): (x, y, z) → (x, -z, y).
Y_UP_TO_Z_UP = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
Y_UP_TO_Z_UP.flags.writeable = False
#: Scene world (Z-up) to glTF world (Y-up), the inverse (a rotation: the transpose).
Z_UP_TO_Y_UP = np.ascontiguousarray(Y_UP_TO_Z_UP.T)
Z_UP_TO_Y_UP.flags.writeable = False

#: Luminous efficacy used to convert photometric glTF light units to radiometric watts.
LUMENS_PER_WATT = 683.0

IO_HINT = "pip install 'optimizer-engine[io]'"

_GLB_MAGIC = b"glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942

_COMPONENT_DTYPES = {
    5120: np.dtype("<i1"),
    5121: np.dtype("<u1"),
    5122: np.dtype("<i2"),
    5123: np.dtype("<u2"),
    5125: np.dtype("<u4"),
    5126: np.dtype("<f4"),
}
_COMPONENT_NAMES = {5120: "BYTE", 5121: "UNSIGNED_BYTE", 5122: "SHORT", 5123: "UNSIGNED_SHORT",
                    5125: "UNSIGNED_INT", 5126: "FLOAT"}
_NORMALIZED_MAX = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0}
_TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}

_MODE_NAMES = {0: "POINTS", 1: "LINES", 2: "LINE_LOOP", 3: "LINE_STRIP", 4: "TRIANGLES",
               5: "TRIANGLE_STRIP", 6: "TRIANGLE_FAN"}

# Extensions whose absence from our reader would make the geometry or images unreadable.
_SUPPORTED_REQUIRED = {
    "KHR_lights_punctual",
    "KHR_materials_emissive_strength",
    "KHR_materials_transmission",
    "KHR_mesh_quantization",  # integer attributes: decoded like any other accessor
    "EXT_mesh_gpu_instancing",
    "KHR_materials_unlit",
    "KHR_texture_transform",  # ignored with a warning when used
}

_DEFAULT_FLAGS = {"animated": False, "static": True, "visible": True}


# --------------------------------------------------------------------------------------------
# small helpers


def _trs_matrix(translation: Any, rotation: Any, scale: Any) -> np.ndarray:
    """Batch T @ R @ S: translation (K, 3), rotation quaternions xyzw (K, 4), scale (K, 3)."""
    t = np.asarray(translation, dtype=np.float64).reshape(-1, 3)
    q = np.asarray(rotation, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scale, dtype=np.float64).reshape(-1, 3)
    k = max(len(t), len(q), len(s))
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1.0), np.array([0.0, 0.0, 0.0, 1.0]))
    x, y, z, w = (q[:, i] for i in range(4))
    r = np.empty((len(q), 3, 3))
    r[:, 0, 0] = 1 - 2 * (y * y + z * z)
    r[:, 0, 1] = 2 * (x * y - z * w)
    r[:, 0, 2] = 2 * (x * z + y * w)
    r[:, 1, 0] = 2 * (x * y + z * w)
    r[:, 1, 1] = 1 - 2 * (x * x + z * z)
    r[:, 1, 2] = 2 * (y * z - x * w)
    r[:, 2, 0] = 2 * (x * z - y * w)
    r[:, 2, 1] = 2 * (y * z + x * w)
    r[:, 2, 2] = 1 - 2 * (x * x + y * y)
    m = np.zeros((k, 4, 4))
    m[:, :3, :3] = r * s[:, None, :]
    m[:, :3, 3] = t
    m[:, 3, 3] = 1.0
    return m


def _scale_matrix(factor: float) -> np.ndarray:
    return np.diag([factor, factor, factor, 1.0])


def _is_singular(matrix: np.ndarray) -> bool:
    return bool(abs(np.linalg.det(matrix[:3, :3])) < 1e-18)


class _Namer:
    """Blender-style unique names: 'Cube', 'Cube.001', 'Cube.002', ..."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, name: str) -> str:
        if name not in self.used:
            self.used.add(name)
            return name
        k = 1
        while f"{name}.{k:03d}" in self.used:
            k += 1
        unique = f"{name}.{k:03d}"
        self.used.add(unique)
        return unique


def _optimizer_extras(prop: Any) -> dict[str, Any]:
    extras = getattr(prop, "extras", None)
    if isinstance(extras, dict) and isinstance(extras.get("optimizer"), dict):
        return extras["optimizer"]
    return {}


def _extension(prop: Any, name: str) -> dict[str, Any] | None:
    extensions = getattr(prop, "extensions", None)
    if isinstance(extensions, dict) and isinstance(extensions.get(name), dict):
        return extensions[name]
    return None


def _uri_label(uri: str) -> str:
    return "a data: URI" if uri.startswith("data:") else f"'{urllib.parse.unquote(uri)}'"


# --------------------------------------------------------------------------------------------
# import


@dataclass
class _MeshData:
    """One glTF mesh decoded once; every node that uses it shares these arrays."""

    name: str
    positions: np.ndarray
    triangles: np.ndarray
    material_indices: np.ndarray
    normals: np.ndarray | None
    uvs: dict[str, np.ndarray]
    lightmap_uv: str | None


@dataclass
class _Part:
    """One triangle primitive: its vertex attributes (``key`` names their accessors) and triangles."""

    key: tuple[tuple[str, int], ...]
    positions: np.ndarray
    normals: np.ndarray | None
    uvs: dict[int, np.ndarray]
    triangles: np.ndarray
    slot: int


@dataclass
class _NodeVisit:
    index: int
    world: np.ndarray  # glTF world matrix (Y-up)
    animated: bool


class _Reader:
    """Reads one glTF file into a Scene; every error names the file."""

    def __init__(self, path: Path, unit: str | None) -> None:
        self.path = path
        self.where = str(path)
        self.unit = unit
        self.warnings: list[str] = []
        self.glb_bin: memoryview | None = None
        self._buffers: dict[int, memoryview] = {}
        self._accessors: dict[int, np.ndarray] = {}
        self._images: dict[int, Texture | str] = {}
        self.gltf: Any = None

    # -- errors -------------------------------------------------------------------------------

    def fail(self, problem: str, *, hint: str = "") -> ImportFormatError:
        return ImportFormatError(problem, where=self.where, hint=hint)

    def warn(self, message: str) -> None:
        self.warnings.append(f"{self.where}: {message}")

    @contextmanager
    def scene_errors(self) -> Iterator[None]:
        """Re-raise the model's SceneError with the file named in front of the object."""
        try:
            yield
        except SceneError as exc:
            where = exc.where if exc.where.startswith(self.where) else f"{self.where}, {exc.where}".rstrip(", ")
            raise SceneError(exc.problem, where=where, hint=exc.hint) from None

    def item(self, collection: str, index: Any, what: str) -> Any:
        items = getattr(self.gltf, collection, None) or []
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(items):
            raise self.fail(f"{what} refers to {collection}[{index}], but the file has {len(items)} {collection}")
        return items[index]

    # -- file structure -----------------------------------------------------------------------

    def parse(self) -> None:
        try:
            import pygltflib
        except ImportError:
            raise InputError("reading glTF files needs pygltflib", where=self.where, hint=IO_HINT) from None
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise self.fail(f"cannot read file ({exc.strerror or exc})") from None
        if data[:4] == _GLB_MAGIC:
            json_bytes = self._split_glb(data)
        else:
            json_bytes = data
        try:
            text = bytes(json_bytes).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise self.fail(f"the glTF JSON is not valid UTF-8 (byte {exc.start})") from None
        try:
            self.gltf = pygltflib.GLTF2.from_json(text, infer_missing=True)
        except json.JSONDecodeError as exc:
            raise self.fail(f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        except Exception as exc:  # dataclasses_json raises many types for a wrong structure
            raise self.fail(f"not a valid glTF document ({type(exc).__name__}: {exc})") from None
        version = str(getattr(self.gltf.asset, "version", "") or "2.0")
        if not version.startswith("2."):
            raise self.fail(f"glTF version {version} is not supported", hint="only glTF 2.0 is; re-export the file")
        unsupported = [e for e in (self.gltf.extensionsRequired or []) if e not in _SUPPORTED_REQUIRED]
        if unsupported:
            raise self.fail(
                f"the file requires extension(s) {', '.join(map(str, unsupported))}, which this reader does not support",
                hint="re-export without compression (Draco, meshopt, Basis) or decompress it with gltf-transform",
            )

    def _split_glb(self, data: bytes) -> memoryview:
        """Validate the GLB header and chunk table; return the JSON chunk, keep the BIN chunk."""
        size = len(data)
        if size < 12:
            raise self.fail(f"truncated GLB: the 12-byte header is cut off (the file has {size} bytes)")
        _, version, length = struct.unpack_from("<4sII", data, 0)
        if version != 2:
            raise self.fail(f"GLB container version {version} is not supported (expected 2)")
        if length > size:
            raise self.fail(f"truncated GLB: the header declares {length} bytes, but the file has only {size}")
        if length < size:
            self.warn(f"{size - length} bytes after the GLB's declared end ({length} bytes) were ignored")
        view = memoryview(data)
        offset = 12
        chunks: list[tuple[int, memoryview]] = []
        while offset < length:
            if offset + 8 > length:
                raise self.fail(f"truncated GLB: chunk {len(chunks)} header at byte {offset} is cut off")
            chunk_length, chunk_type = struct.unpack_from("<II", data, offset)
            start = offset + 8
            if start + chunk_length > length:
                raise self.fail(
                    f"truncated GLB: chunk {len(chunks)} at byte {offset} declares {chunk_length} bytes, "
                    f"but only {length - start} remain in the file"
                )
            chunks.append((chunk_type, view[start : start + chunk_length]))
            offset = start + chunk_length
        if not chunks or chunks[0][0] != _CHUNK_JSON:
            raise self.fail("malformed GLB: the first chunk is not the JSON chunk")
        if len(chunks) > 1 and chunks[1][0] == _CHUNK_BIN:
            self.glb_bin = chunks[1][1]
        return chunks[0][1]

    def _read_uri(self, uri: str) -> bytes:
        """Bytes of a data: URI or a file relative to the glTF file (OSError/ValueError on failure)."""
        if uri.startswith("data:"):
            header, sep, payload = uri.partition(",")
            if not sep or not header.endswith(";base64"):
                raise ValueError("only base64 data: URIs are supported")
            try:
                return base64.b64decode(payload, validate=False)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"bad base64 data ({exc})") from None
        scheme = urllib.parse.urlsplit(uri).scheme
        if scheme and len(scheme) > 1:  # one letter is a Windows drive
            raise ValueError(f"'{uri}' is a remote URL; only local files and data: URIs are read")
        return (self.path.parent / urllib.parse.unquote(uri)).read_bytes()

    def buffer(self, index: int, what: str) -> memoryview:
        if index in self._buffers:
            return self._buffers[index]
        buf = self.item("buffers", index, what)
        declared = buf.byteLength or 0
        if buf.uri is None:
            if index != 0 or self.glb_bin is None:
                raise self.fail(f"buffer {index} has no uri and there is no GLB binary chunk to take it from")
            data = self.glb_bin
        else:
            try:
                data = memoryview(self._read_uri(buf.uri))
            except OSError as exc:
                raise self.fail(
                    f"buffer {index}: cannot read file {_uri_label(buf.uri)} ({exc.strerror or exc})",
                    hint="keep the .bin file next to the .gltf file, or export a .glb",
                ) from None
            except ValueError as exc:
                raise self.fail(f"buffer {index}: cannot read {_uri_label(buf.uri)} ({exc})") from None
        if len(data) < declared:
            raise self.fail(
                f"buffer {index} holds {len(data)} bytes, but declares byteLength {declared} (truncated data?)"
            )
        self._buffers[index] = data
        return data

    def buffer_view(self, index: int, what: str) -> tuple[memoryview, int | None]:
        """(bytes of bufferView ``index``, byteStride or None)."""
        view = self.item("bufferViews", index, what)
        data = self.buffer(view.buffer, f"bufferView {index}")
        offset = view.byteOffset or 0
        length = view.byteLength or 0
        if offset < 0 or length < 0 or offset + length > len(data):
            raise self.fail(
                f"bufferView {index} ({what}) spans bytes {offset}..{offset + length} of buffer {view.buffer}, "
                f"which holds only {len(data)} bytes"
            )
        return data[offset : offset + length], view.byteStride

    def _raw(
        self, view_index: int | None, byte_offset: int, ctype: int, ncomp: int, count: int, what: str
    ) -> np.ndarray:
        dtype = _COMPONENT_DTYPES[ctype]
        if view_index is None:
            return np.zeros((count, ncomp), dtype=dtype)
        data, stride = self.buffer_view(view_index, what)
        element = dtype.itemsize * ncomp
        stride = stride or element
        if stride < element:
            raise self.fail(f"{what}: bufferView {view_index} has byteStride {stride}, less than one element ({element})")
        end = byte_offset + stride * (count - 1) + element if count else byte_offset
        if byte_offset < 0 or end > len(data):
            raise self.fail(
                f"{what} reads bytes {byte_offset}..{end} of bufferView {view_index}, which holds only {len(data)} "
                "bytes: the accessor points outside its buffer"
            )
        if count == 0:
            return np.zeros((0, ncomp), dtype=dtype)
        if stride == element:
            return np.frombuffer(data, dtype=dtype, count=count * ncomp, offset=byte_offset).reshape(count, ncomp)
        return np.ndarray((count, ncomp), dtype=dtype, buffer=data, offset=byte_offset,
                          strides=(stride, dtype.itemsize))

    def accessor(self, index: int, what: str) -> np.ndarray:
        """Accessor ``index`` as a read-only (count, components) array.

        Normalized integer data comes back as float32 in 0..1 (or -1..1); other data keeps its
        component type. ``what`` says who asked, for error messages.
        """
        if index in self._accessors:
            return self._accessors[index]
        acc = self.item("accessors", index, what)
        label = f"accessor {index} ({what})"
        ctype = acc.componentType
        if ctype not in _COMPONENT_DTYPES:
            raise self.fail(f"{label} has unknown componentType {ctype}")
        ncomp = _TYPE_SIZES.get(acc.type or "")
        if ncomp is None:
            raise self.fail(f"{label} has unknown type {acc.type!r}")
        if acc.type.startswith("MAT") and ctype != 5126:
            raise self.fail(f"{label}: matrix accessors with {_COMPONENT_NAMES[ctype]} components are not supported")
        count = acc.count
        if not isinstance(count, int) or count < 0:
            raise self.fail(f"{label} has an invalid count {count!r}")
        array = self._raw(acc.bufferView, acc.byteOffset or 0, ctype, ncomp, count, label)
        sparse = acc.sparse
        if sparse is not None and sparse.count:
            if sparse.indices is None or sparse.values is None:
                raise self.fail(f"{label}: sparse storage lacks indices or values")
            ictype = sparse.indices.componentType
            if ictype not in (5121, 5123, 5125):
                raise self.fail(f"{label}: sparse indices have componentType {ictype}, expected an unsigned integer")
            where_idx = self._raw(sparse.indices.bufferView, sparse.indices.byteOffset or 0, ictype, 1, sparse.count,
                                  f"{label} sparse indices")[:, 0]
            values = self._raw(sparse.values.bufferView, sparse.values.byteOffset or 0, ctype, ncomp, sparse.count,
                               f"{label} sparse values")
            if where_idx.size and int(where_idx.max()) >= count:
                raise self.fail(f"{label}: sparse index {int(where_idx.max())} is out of range (count {count})")
            array = array.copy()
            array[where_idx.astype(np.int64)] = values
        if acc.normalized and ctype in _NORMALIZED_MAX:
            array = array.astype(np.float32) / np.float32(_NORMALIZED_MAX[ctype])
            if ctype in (5120, 5122):
                np.maximum(array, -1.0, out=array)
        array.flags.writeable = False
        self._accessors[index] = array
        return array

    # -- images and materials -----------------------------------------------------------------

    def image(self, index: int) -> Texture | str:
        """The decoded Texture of image ``index``, or a string saying why it could not be read."""
        if index in self._images:
            return self._images[index]
        images = self.gltf.images or []
        if not 0 <= index < len(images):
            result: Texture | str = f"image {index} does not exist (the file has {len(images)} images)"
            self._images[index] = result
            return result
        image = images[index]
        label = f"image {index}"
        source = f"{self.where}#images[{index}]"
        name = image.name or f"Image_{index}"
        try:
            if image.uri:
                label = f"image {_uri_label(image.uri)}"
                if not image.uri.startswith("data:"):
                    source = str(self.path.parent / urllib.parse.unquote(image.uri))
                    name = image.name or Path(urllib.parse.unquote(image.uri)).stem
                data = self._read_uri(image.uri)
            elif image.bufferView is not None:
                data = bytes(self.buffer_view(image.bufferView, label)[0])
            else:
                raise ValueError("it has neither a uri nor a bufferView")
            from engine.scene.images import decode_image

            result = decode_image(data, name=name, source=source, colorspace="srgb")
        except OSError as exc:
            result = f"{label} cannot be read ({exc.strerror or exc})"
        except ValueError as exc:
            result = f"{label} cannot be read ({exc})"
        except InputError as exc:  # a bufferView out of range, corrupt image data, Pillow missing
            result = f"{label} cannot be read ({exc.problem}{'; ' + exc.hint if exc.hint else ''})"
        self._images[index] = result
        return result

    def base_color_texture(self, info: Any, material_name: str) -> Texture | None:
        if info is None:
            return None
        if (info.texCoord or 0) != 0:
            self.warn(f"material '{material_name}': base colour texture uses TEXCOORD_{info.texCoord}; "
                      "it is read as if it used TEXCOORD_0")
        if _extension(info, "KHR_texture_transform") is not None:
            self.warn(f"material '{material_name}': KHR_texture_transform on the base colour texture is ignored")
        textures = self.gltf.textures or []
        if not isinstance(info.index, int) or not 0 <= info.index < len(textures):
            self.warn(f"material '{material_name}': base colour texture {info.index} does not exist; texture left out")
            return None
        texture = textures[info.index]
        source = texture.source
        if source is None:
            for ext in ("EXT_texture_webp", "KHR_texture_basisu", "MSFT_texture_dds"):
                found = _extension(texture, ext)
                if found is not None and isinstance(found.get("source"), int):
                    source = found["source"]
                    break
        if not isinstance(source, int):
            self.warn(f"material '{material_name}': texture {info.index} has no image; texture left out")
            return None
        result = self.image(source)
        if isinstance(result, str):
            self.warn(f"material '{material_name}': base colour texture {result}; texture left out")
            return None
        return result

    def material(self, index: int, name: str) -> Material:
        mat = self.gltf.materials[index]
        pbr = mat.pbrMetallicRoughness
        base_color: Any = (1.0, 1.0, 1.0, 1.0)
        metallic: Any = 1.0
        roughness: Any = 1.0
        texture = None
        if pbr is not None:
            base_color = pbr.baseColorFactor if pbr.baseColorFactor is not None else base_color
            metallic = pbr.metallicFactor if pbr.metallicFactor is not None else metallic
            roughness = pbr.roughnessFactor if pbr.roughnessFactor is not None else roughness
            texture = self.base_color_texture(pbr.baseColorTexture, name)
        emissive = mat.emissiveFactor if mat.emissiveFactor is not None else (0.0, 0.0, 0.0)
        strength_ext = _extension(mat, "KHR_materials_emissive_strength") or {}
        transmission_ext = _extension(mat, "KHR_materials_transmission") or {}
        fields: dict[str, Any] = {
            "base_color": base_color,
            "metallic": metallic,
            "roughness": roughness,
            "emission_color": emissive,
            "emission_strength": strength_ext.get("emissiveStrength", 1.0),
            "alpha_mode": mat.alphaMode or "OPAQUE",
            "alpha_cutoff": mat.alphaCutoff if mat.alphaCutoff is not None else 0.5,
            "transmission": transmission_ext.get("transmissionFactor", 0.0),
            "double_sided": bool(mat.doubleSided),
        }
        exact = _optimizer_extras(mat)
        for key in ("base_color", "emission_color", "emission_strength", "alpha_cutoff"):
            if key in exact:
                fields[key] = exact[key]
        with self.scene_errors():
            return Material(name=name, base_color_texture=texture, **fields)

    # -- meshes -------------------------------------------------------------------------------

    def mesh(self, index: int, name: str, object_name: str, default_slot: int) -> _MeshData:
        mesh = self.gltf.meshes[index]
        where = f"{self.where}, object '{object_name}'"
        n_materials = len(self.gltf.materials or [])
        parts: list[_Part] = []
        skipped: dict[str, int] = {}
        for p, prim in enumerate(mesh.primitives or []):
            label = f"mesh '{name}' primitive {p}"
            mode = 4 if prim.mode is None else prim.mode
            if mode not in (4, 5, 6):
                mode_name = _MODE_NAMES.get(mode, f"mode {mode}")
                skipped[mode_name] = skipped.get(mode_name, 0) + 1
                continue
            attributes = {k: v for k, v in vars(prim.attributes).items() if v is not None}
            if "POSITION" not in attributes:
                raise self.fail(f"{label} has no POSITION attribute")
            positions = self.accessor(attributes["POSITION"], f"POSITION of {label}")
            if positions.shape[1] != 3:
                raise self.fail(f"accessor {attributes['POSITION']} (POSITION of {label}) is not VEC3")
            n = positions.shape[0]
            if positions.dtype.kind == "f" and not np.isfinite(positions).all():
                bad = int(np.argwhere(~np.isfinite(positions))[0][0])
                raise SceneError(
                    f"accessor {attributes['POSITION']} (POSITION of {label}) holds NaN or Inf at vertex {bad}",
                    where=where,
                )
            normals = None
            if "NORMAL" in attributes:
                normals = self._vertex_attribute(attributes["NORMAL"], f"NORMAL of {label}", 3, n, where)
            uvs: dict[int, np.ndarray] = {}
            uv_keys = [k for k in attributes if k.startswith("TEXCOORD_") and k[9:].isdigit()]
            for key in uv_keys:
                uvs[int(key[9:])] = self._vertex_attribute(attributes[key], f"{key} of {label}", 2, n, where)
            triangles = self._triangles(prim, mode, n, label, where)
            material = prim.material
            if material is None:
                slot = default_slot  # the default material, appended after the file's
            elif isinstance(material, int) and 0 <= material < n_materials:
                slot = material
            else:
                raise self.fail(f"{label} uses material {material}, but the file has {n_materials} materials")
            key = tuple(sorted((k, v) for k, v in attributes.items() if k in ("POSITION", "NORMAL") or k in uv_keys))
            parts.append(_Part(key, positions, normals, uvs, triangles, slot))
        for mode_name, count in skipped.items():
            self.warn(f"mesh '{name}': {count} {mode_name} primitive(s) skipped (only triangles are used)")
        data = self._concatenate(name, parts, where)
        # our exporter's record of the UV sets' names and which one is the lightmap layout
        exact = _optimizer_extras(mesh)
        names = exact.get("uv_names")
        if isinstance(names, list) and len(names) == len(data.uvs) and all(isinstance(n, str) for n in names):
            data.uvs = dict(zip(names, data.uvs.values(), strict=True))
            data.lightmap_uv = None
        if "lightmap_uv" in exact:
            lightmap = exact["lightmap_uv"]
            data.lightmap_uv = lightmap if isinstance(lightmap, str) and lightmap in data.uvs else None
        if isinstance(exact.get("triangle_order"), int):
            self._restore_triangle_order(data, exact["triangle_order"], name)
        return data

    def _restore_triangle_order(self, data: _MeshData, index: int, name: str) -> None:
        """Undo the exporter's grouping of triangles by material (the permutation it recorded)."""
        order = self.accessor(index, f"triangle order of mesh '{name}'")
        n = len(data.triangles)
        if order.shape != (n, 1) or order.dtype.kind != "u":
            raise self.fail(f"accessor {index} (triangle order of mesh '{name}') does not match its {n} triangles")
        order = order[:, 0]
        hit = np.zeros(n, dtype=bool)
        if n:
            if int(order.max()) >= n:
                raise self.fail(f"accessor {index} (triangle order of mesh '{name}') is not a permutation")
            hit[order] = True
        if not hit.all():
            raise self.fail(f"accessor {index} (triangle order of mesh '{name}') is not a permutation")
        triangles = np.empty_like(data.triangles)
        triangles[order] = data.triangles
        slots = np.empty_like(data.material_indices)
        slots[order] = data.material_indices
        data.triangles, data.material_indices = triangles, slots

    def _vertex_attribute(self, index: int, what: str, ncomp: int, n: int, where: str) -> np.ndarray:
        array = self.accessor(index, what)
        if array.shape[1] != ncomp:
            raise self.fail(f"accessor {index} ({what}) has {array.shape[1]} components, expected {ncomp}")
        if array.shape[0] != n:
            raise self.fail(f"accessor {index} ({what}) has {array.shape[0]} elements, but POSITION has {n}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise SceneError(f"accessor {index} ({what}) holds NaN or Inf", where=where)
        return array

    def _triangles(self, prim: Any, mode: int, n: int, label: str, where: str) -> np.ndarray:
        if prim.indices is None:
            indices = np.arange(n, dtype=np.int64)
        else:
            raw = self.accessor(prim.indices, f"indices of {label}")
            if raw.shape[1] != 1 or raw.dtype.kind != "u":
                raise self.fail(f"accessor {prim.indices} (indices of {label}) must be unsigned integer SCALARs")
            indices = raw[:, 0]
            if indices.size and int(indices.max()) >= n:
                bad = int(indices.max())
                raise SceneError(
                    f"accessor {prim.indices} (indices of {label}) uses vertex index {bad}, "
                    f"but the primitive has {n} vertices",
                    where=where,
                )
        if mode == 4:
            usable = len(indices) - len(indices) % 3
            if usable != len(indices):
                self.warn(f"{label}: {len(indices)} indices is not a multiple of 3; the last "
                          f"{len(indices) - usable} were ignored")
            return indices[:usable].astype(np.int32).reshape(-1, 3)
        k = np.arange(max(len(indices) - 2, 0))
        if mode == 5:  # strip: winding alternates
            odd = k & 1
            tris = np.stack([indices[k], indices[k + 1 + odd], indices[k + 2 - odd]], axis=1)
        else:  # fan
            tris = np.stack([indices[k + 1], indices[k + 2], np.full(len(k), indices[0] if len(k) else 0)], axis=1)
        tris = tris.astype(np.int32)
        keep = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
        return tris[keep]

    def _concatenate(self, name: str, parts: list[_Part], where: str) -> _MeshData:
        """One vertex array for the mesh: primitives that share attribute accessors share vertices."""
        if not parts:
            return _MeshData(name, np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32),
                             np.zeros(0, np.int32), None, {}, None)
        blocks: dict[tuple[tuple[str, int], ...], tuple[_Part, int]] = {}
        total = 0
        for part in parts:
            if part.key not in blocks:
                blocks[part.key] = (part, total)
                total += len(part.positions)
        if total >= 2**31:
            raise SceneError(f"mesh '{name}' has {total} vertices, more than 2^31", where=where)
        unique = [block for block, _ in blocks.values()]
        uv_sets = sorted({k for part in unique for k in part.uvs})
        has_normals = all(part.normals is not None for part in unique)
        if not has_normals and any(part.normals is not None for part in unique):
            self.warn(f"mesh '{name}': some primitives lack NORMAL; the mesh's normals were dropped")

        def joined(arrays: list[np.ndarray]) -> np.ndarray:
            # always a copy: a view would keep the whole file's bytes (textures included) alive
            return np.array(arrays[0] if len(arrays) == 1 else np.concatenate(arrays), dtype=np.float32)

        positions = joined([part.positions for part in unique])
        normals = joined([part.normals for part in unique]) if has_normals else None
        uv_arrays = {
            k: joined([part.uvs.get(k, np.zeros((len(part.positions), 2), np.float32)) for part in unique])
            for k in uv_sets
        }
        if len(parts) == 1:
            triangles = parts[0].triangles
            material_slots = np.full(len(triangles), parts[0].slot, dtype=np.int32)
        else:
            triangles = np.concatenate([part.triangles + np.int32(blocks[part.key][1]) for part in parts])
            material_slots = np.concatenate([np.full(len(part.triangles), part.slot, np.int32) for part in parts])
        uvs_out: dict[str, np.ndarray] = {}
        for k, array in uv_arrays.items():
            array[:, 1] = 1.0 - array[:, 1]  # V runs up in the Scene (``joined`` made a copy)
            uvs_out[f"TEXCOORD_{k}"] = array
        lightmap = "TEXCOORD_1" if "TEXCOORD_1" in uvs_out else None
        return _MeshData(name, positions, np.ascontiguousarray(triangles, dtype=np.int32),
                         material_slots, normals, uvs_out, lightmap)

    # -- nodes --------------------------------------------------------------------------------

    def visit_nodes(self) -> list[_NodeVisit]:
        """Depth-first walk of the scene's node trees with glTF world matrices."""
        gltf = self.gltf
        nodes = gltf.nodes or []
        if gltf.scenes:
            scene_index = gltf.scene if gltf.scene is not None else 0
            scene = self.item("scenes", scene_index, "the default scene")
            roots = list(scene.nodes or [])
        else:
            children = {c for node in nodes for c in (node.children or [])}
            roots = [i for i in range(len(nodes)) if i not in children]
        animated = set()
        for animation in gltf.animations or []:
            for channel in animation.channels or []:
                target = channel.target
                if target is not None and isinstance(target.node, int):
                    animated.add(target.node)
        visits: list[_NodeVisit] = []
        seen: set[int] = set()
        stack: list[tuple[int, np.ndarray, bool]] = [(r, np.eye(4), False) for r in reversed(roots)]
        while stack:
            index, parent, parent_animated = stack.pop()
            node = self.item("nodes", index, "a scene or node's children")
            if index in seen:
                raise self.fail(f"node {index} ('{node.name or ''}') is reached twice: the node hierarchy has a cycle "
                                "or a node with two parents")
            seen.add(index)
            world = parent @ self._local_matrix(node, index)
            is_animated = parent_animated or index in animated or node.skin is not None
            visits.append(_NodeVisit(index, world, is_animated))
            for child in reversed(node.children or []):
                stack.append((child, world, is_animated))
        return visits

    def _local_matrix(self, node: Any, index: int) -> np.ndarray:
        try:
            if node.matrix is not None:
                matrix = np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T
            else:
                matrix = _trs_matrix(
                    node.translation if node.translation is not None else (0.0, 0.0, 0.0),
                    node.rotation if node.rotation is not None else (0.0, 0.0, 0.0, 1.0),
                    node.scale if node.scale is not None else (1.0, 1.0, 1.0),
                )[0]
        except (TypeError, ValueError) as exc:
            raise self.fail(f"node {index} ('{node.name or ''}') has a malformed transform ({exc})") from None
        if not np.isfinite(matrix).all():
            raise self.fail(f"node {index} ('{node.name or ''}') has a non-finite transform")
        return matrix

    # -- the whole scene ----------------------------------------------------------------------

    def read(self) -> Scene:
        self.parse()
        gltf = self.gltf
        visits = self.visit_nodes()

        # units: an explicit unit wins; else our own exporter's record; else metres (the spec)
        scene_extras: dict[str, Any] = {}
        if gltf.scenes:
            scene_extras = _optimizer_extras(gltf.scenes[gltf.scene if gltf.scene is not None else 0])
        to_scene = Y_UP_TO_Z_UP
        environment: Any = scene_extras.get("environment", (0.0, 0.0, 0.0))
        meters_per_unit: float | None = 1.0
        unit_name = "m"
        if self.unit is not None:
            unit_name, meters_per_unit = parse_unit(self.unit)
        elif "meters_per_unit" in scene_extras:
            recorded = scene_extras["meters_per_unit"]
            unit_name = str(scene_extras.get("unit_name", "m"))
            if recorded is None:
                meters_per_unit = None
            elif isinstance(recorded, (int, float)) and not isinstance(recorded, bool) and recorded > 0:
                meters_per_unit = float(recorded)
                if meters_per_unit != 1.0:
                    to_scene = _scale_matrix(1.0 / meters_per_unit) @ Y_UP_TO_Z_UP
            else:
                raise self.fail(f"scene extras hold an invalid meters_per_unit {recorded!r}")
        length_scale = 1.0 if meters_per_unit is None or self.unit is not None else meters_per_unit

        # materials: all of the file's, in order (primitives index them), default appended if needed
        material_namer = _Namer()
        materials = [
            self.material(i, material_namer(m.name or f"Material_{i}")) for i, m in enumerate(gltf.materials or [])
        ]

        # how many objects use each mesh (GPU instances count each)
        mesh_users: dict[int, int] = {}
        for visit in visits:
            node = gltf.nodes[visit.index]
            if node.mesh is not None:
                self.item("meshes", node.mesh, f"node {visit.index} ('{node.name or ''}')")
                n = self._instance_count(node, visit.index)
                mesh_users[node.mesh] = mesh_users.get(node.mesh, 0) + max(n, 1)
        mesh_namer = _Namer()
        mesh_names = [mesh_namer(m.name or f"Mesh_{i}") for i, m in enumerate(gltf.meshes or [])]

        # the default material is appended only when some used triangle primitive has none
        default_slot = len(materials)
        needs_default = any(
            prim.material is None and (4 if prim.mode is None else prim.mode) in (4, 5, 6)
            for m in mesh_users
            for prim in (self.item("meshes", m, "a node").primitives or [])
        )
        if needs_default or not materials:
            materials.append(Material(name=material_namer("default")))

        object_namer, light_namer, camera_namer = _Namer(), _Namer(), _Namer()
        meshes: dict[int, _MeshData] = {}
        objects: list[MeshObject] = []
        lights: list[Light] = []
        cameras: list[Camera] = []
        for visit in visits:
            node = gltf.nodes[visit.index]
            node_name = node.name or f"Node_{visit.index}"
            extras = _optimizer_extras(node)
            transform = to_scene @ visit.world
            if node.mesh is not None:
                mesh_index = node.mesh
                self.item("meshes", mesh_index, f"node {visit.index} ('{node_name}')")
                instances = self._gpu_instances(node, visit.index, node_name)
                names = ([object_namer(f"{node_name}.inst{k}") for k in range(len(instances))]
                         if instances is not None else [object_namer(node_name)])
                if mesh_index not in meshes:
                    meshes[mesh_index] = self.mesh(mesh_index, mesh_names[mesh_index], names[0], default_slot)
                data = meshes[mesh_index]
                instance_of = mesh_names[mesh_index] if mesh_users.get(mesh_index, 0) > 1 else None
                if "instance_of" in extras:
                    instance_of = extras["instance_of"] if isinstance(extras["instance_of"], str) else None
                worlds = [transform] if instances is None else [transform @ m for m in instances]
                for name, world in zip(names, worlds, strict=True):
                    if _is_singular(world):
                        self.warn(f"object '{name}' has a zero scale; it was left out")
                        continue
                    objects.append(self._mesh_object(name, data, world, visit.animated, extras, instance_of))
            light_ext = _extension(node, "KHR_lights_punctual")
            if light_ext is not None and "light" in light_ext:
                light = self._light(light_ext["light"], light_namer(node_name), transform, extras)
                if light is not None:
                    lights.append(light)
            if node.camera is not None:
                camera = self._camera(node.camera, camera_namer(node_name), transform, extras, length_scale)
                if camera is not None:
                    cameras.append(camera)

        with self.scene_errors():
            return Scene(
                objects=tuple(objects),
                materials=tuple(materials),
                lights=tuple(lights),
                cameras=tuple(cameras),
                name=self.path.stem,
                meters_per_unit=meters_per_unit,
                unit_name=unit_name,
                environment=environment,
                source=self.where,
                warnings=tuple(self.warnings),
            )

    def _mesh_object(
        self, name: str, data: _MeshData, world: np.ndarray, animated: bool, extras: dict[str, Any],
        instance_of: str | None,
    ) -> MeshObject:
        flags = {key: extras[key] for key in ("animated", "static", "visible") if isinstance(extras.get(key), bool)}
        is_animated = animated or flags.get("animated", False)
        static = flags.get("static", not is_animated)
        uvs = data.uvs
        lightmap = data.lightmap_uv
        with self.scene_errors():
            return MeshObject(
                name=name,
                positions=data.positions,
                triangles=data.triangles,
                normals=data.normals,
                uvs=uvs,
                lightmap_uv=lightmap,
                material_indices=data.material_indices,
                transform=world,
                static=static,
                animated=is_animated,
                visible=flags.get("visible", True),
                instance_of=instance_of,
            )

    def _instance_count(self, node: Any, index: int) -> int:
        ext = _extension(node, "EXT_mesh_gpu_instancing")
        if ext is None or not isinstance(ext.get("attributes"), dict):
            return 0
        counts = []
        for acc in ext["attributes"].values():
            acc_obj = self.item("accessors", acc, f"EXT_mesh_gpu_instancing of node {index}")
            counts.append(acc_obj.count or 0)
        return max(counts, default=0)

    def _gpu_instances(self, node: Any, index: int, node_name: str) -> np.ndarray | None:
        """Per-instance local matrices (K, 4, 4) from EXT_mesh_gpu_instancing, or None."""
        ext = _extension(node, "EXT_mesh_gpu_instancing")
        if ext is None:
            return None
        attributes = ext.get("attributes")
        if not isinstance(attributes, dict) or not attributes:
            self.warn(f"node '{node_name}': EXT_mesh_gpu_instancing without attributes was ignored")
            return None
        arrays = {}
        for key, expected in (("TRANSLATION", 3), ("ROTATION", 4), ("SCALE", 3)):
            if key in attributes:
                arr = self.accessor(attributes[key], f"EXT_mesh_gpu_instancing {key} of node '{node_name}'")
                if arr.shape[1] != expected:
                    raise self.fail(f"EXT_mesh_gpu_instancing {key} of node '{node_name}' is not VEC{expected}")
                arrays[key] = arr.astype(np.float64)
        counts = {len(a) for a in arrays.values()}
        if len(counts) != 1:
            raise self.fail(f"EXT_mesh_gpu_instancing of node '{node_name}': attributes have different counts")
        k = counts.pop()
        return _trs_matrix(
            arrays.get("TRANSLATION", np.zeros((k, 3))),
            arrays.get("ROTATION", np.tile([0.0, 0.0, 0.0, 1.0], (k, 1))),
            arrays.get("SCALE", np.ones((k, 3))),
        )

    def _light(self, index: Any, name: str, transform: np.ndarray, extras: dict[str, Any]) -> Light | None:
        root = _extension(self.gltf, "KHR_lights_punctual") or {}
        definitions = root.get("lights") or []
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(definitions):
            raise self.fail(f"light '{name}' refers to KHR_lights_punctual light {index}, "
                            f"but the file defines {len(definitions)}")
        spec = definitions[index]
        if not isinstance(spec, dict):
            raise self.fail(f"KHR_lights_punctual light {index} is not an object")
        gltf_type = spec.get("type")
        kind = {"point": "point", "spot": "spot", "directional": "sun"}.get(gltf_type)
        if kind is None:
            self.warn(f"light '{name}' has unknown type {gltf_type!r}; it was left out")
            return None
        if _is_singular(transform):
            self.warn(f"light '{name}' has a zero scale; it was left out")
            return None
        fields: dict[str, Any] = {"color": spec.get("color", (1.0, 1.0, 1.0))}
        intensity = spec.get("intensity", 1.0)
        if not isinstance(intensity, (int, float)) or isinstance(intensity, bool):
            raise self.fail(f"light '{name}' has a non-numeric intensity {intensity!r}")
        if kind == "sun":
            fields["power"] = intensity / LUMENS_PER_WATT
        else:
            fields["power"] = intensity * 4.0 * math.pi / LUMENS_PER_WATT
        if kind == "spot":
            spot = spec.get("spot") or {}
            outer = float(spot.get("outerConeAngle", math.pi / 4))
            inner = float(spot.get("innerConeAngle", 0.0))
            fields["spot_size"] = min(max(2.0 * outer, 0.0), math.pi)
            fields["spot_blend"] = float(np.clip((outer - inner) / outer, 0.0, 1.0)) if outer > 0 else 0.0
        exact = extras.get("light")
        if isinstance(exact, dict) and (exact.get("kind") == kind or (exact.get("kind") == "area" and kind == "point")):
            # our exporter's exact record (area lights, sizes and angles glTF cannot carry)
            fields = {k: v for k, v in exact.items() if k in _LIGHT_FIELDS}
            kind = str(exact["kind"])
            if fields.get("shape") not in AREA_SHAPES:
                fields.pop("shape", None)
        with self.scene_errors():
            return Light(name=name, kind=kind, transform=transform, **{k: v for k, v in fields.items() if k != "kind"})

    def _camera(
        self, index: Any, name: str, transform: np.ndarray, extras: dict[str, Any], length_scale: float
    ) -> Camera | None:
        cam = self.item("cameras", index, f"camera node '{name}'")
        if cam.type == "orthographic" or (cam.type != "perspective" and cam.orthographic is not None):
            self.warn(f"camera '{name}' is orthographic; it was left out (only perspective cameras are used)")
            return None
        persp = cam.perspective
        if persp is None or not isinstance(persp.yfov, (int, float)):
            raise self.fail(f"camera '{name}' (cameras[{index}]) has no perspective yfov")
        if _is_singular(transform):
            self.warn(f"camera '{name}' has a zero scale; it was left out")
            return None
        yfov = float(persp.yfov)
        if not 0.0 < yfov < math.pi:
            raise self.fail(f"camera '{name}' has yfov {yfov}, expected between 0 and pi")
        width = 1920
        aspect = persp.aspectRatio
        height = 1080 if not aspect or aspect <= 0 else max(1, round(width / float(aspect)))
        focal = 0.5 * height / math.tan(0.5 * yfov)
        near = float(persp.znear or 0.01) / length_scale
        far = float(persp.zfar) / length_scale if persp.zfar else max(1000.0, 10.0 * near)
        fields: dict[str, Any] = {"width": width, "height": height, "fx": focal, "fy": focal,
                                  "cx": width / 2.0, "cy": height / 2.0, "near": near, "far": far}
        exact = extras.get("camera")
        if isinstance(exact, dict):
            fields.update({k: v for k, v in exact.items() if k in fields})
        with self.scene_errors():
            return Camera(name=name, transform=transform, **fields)


_LIGHT_FIELDS = ("kind", "color", "power", "size", "size_y", "shape", "angle", "spot_size", "spot_blend")


def load_gltf(path: str | Path, *, unit: str | None = None) -> Scene:
    """Read a .gltf or .glb file into a Scene (Z-up; vertex data in mesh-local space).

    ``unit`` names the length unit of the file's coordinates and overrides glTF's metres (and
    the unit our exporter records in scene extras). Raises :class:`ImportFormatError` or
    :class:`SceneError` naming the file (and the object or accessor) on bad input; what can be
    worked around (a missing texture image, line primitives) becomes a ``Scene.warnings`` entry.
    """
    path = Path(path)
    reader = _Reader(path, unit)
    try:
        return reader.read()
    except InputError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # malformed content that slipped past the checks above (a string where a number belongs ...)
        raise ImportFormatError(f"malformed glTF content ({type(exc).__name__}: {exc})", where=str(path)) from None


# --------------------------------------------------------------------------------------------
# export

_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963


def _same_array(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.strides == b.strides:
        return True
    return bool(np.array_equal(a, b))


def _same_geometry(a: MeshObject, b: MeshObject) -> bool:
    """True when two objects can share one glTF mesh (same arrays, usually the same memory)."""
    if a.lightmap_uv != b.lightmap_uv or list(a.uvs) != list(b.uvs):
        return False
    pairs = [(a.positions, b.positions), (a.triangles, b.triangles), (a.material_indices, b.material_indices),
             (a.normals, b.normals)] + [(a.uvs[k], b.uvs[k]) for k in a.uvs]
    return all(_same_array(x, y) for x, y in pairs)


def _matrix_list(matrix: np.ndarray) -> list[float]:
    """A 4x4 matrix as glTF's column-major list of 16 numbers."""
    return [float(v) for v in np.asarray(matrix, dtype=np.float64).T.ravel()]


def _uv_order(obj: MeshObject) -> list[str]:
    """UV set names in TEXCOORD order: the lightmap layout goes to TEXCOORD_1 when there are two or more."""
    names = list(obj.uvs)
    if obj.lightmap_uv is None or len(names) < 2:
        return names
    others = [n for n in names if n != obj.lightmap_uv]
    return [others[0], obj.lightmap_uv, *others[1:]]


def _unit_normals(normals: np.ndarray) -> np.ndarray:
    """Normals the validator accepts: non-unit ones renormalised (zero ones set to +Z)."""
    length = np.linalg.norm(normals, axis=1)
    off = np.abs(length - 1.0) > 5e-4
    if not off.any():
        return normals
    fixed = np.array(normals, dtype=np.float32)
    scale = np.where(length[off] > 1e-12, length[off], 1.0)
    fixed[off] = normals[off] / scale[:, None]
    fixed[off & (length <= 1e-12)] = (0.0, 0.0, 1.0)
    log.debug("renormalised %d non-unit normals for glTF export", int(off.sum()))
    return fixed


class _Writer:
    """Builds the glTF JSON document and its single binary buffer from a Scene."""

    def __init__(self, scene: Scene) -> None:
        from engine import __version__

        self.scene = scene
        self.blob = bytearray()
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []
        self.extensions: set[str] = set()
        self.doc: dict[str, Any] = {"asset": {"version": "2.0", "generator": f"optimizer-engine {__version__}"}}
        self.length_scale = scene.meters_per_unit if scene.meters_per_unit else 1.0
        self.to_gltf = Z_UP_TO_Y_UP @ _scale_matrix(self.length_scale)

    # -- binary data --------------------------------------------------------------------------

    def view(self, data: bytes, target: int | None = None) -> int:
        self.blob += b"\0" * (-len(self.blob) % 4)
        entry: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        self.blob += data
        self.views.append(entry)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, *, ctype: int, kind: str, target: int | None, bounds: bool = False) -> int:
        array = np.ascontiguousarray(array, dtype=_COMPONENT_DTYPES[ctype])
        count = int(array.shape[0])
        entry: dict[str, Any] = {"bufferView": self.view(array.tobytes(), target), "componentType": ctype,
                                 "count": count, "type": kind}
        if bounds:
            flat = array.reshape(count, -1)
            entry["min"] = flat.min(axis=0).tolist()
            entry["max"] = flat.max(axis=0).tolist()
        self.accessors.append(entry)
        return len(self.accessors) - 1

    # -- scene parts --------------------------------------------------------------------------

    def material(self, mat: Material, textures: dict[int, int]) -> dict[str, Any]:
        exact: dict[str, Any] = {}
        rgb = mat.base_color[:3]
        if max(rgb) > 1.0:
            exact["base_color"] = list(mat.base_color)
        pbr: dict[str, Any] = {
            "baseColorFactor": [min(c, 1.0) for c in rgb] + [mat.base_color[3]],
            "metallicFactor": mat.metallic,
            "roughnessFactor": mat.roughness,
        }
        if mat.base_color_texture is not None:
            pbr["baseColorTexture"] = {"index": self.texture(mat.base_color_texture, textures)}
        entry: dict[str, Any] = {"name": mat.name, "pbrMetallicRoughness": pbr}
        emission = list(mat.emission_color)
        strength = mat.emission_strength
        peak = max(emission)
        if peak > 1.0:  # glTF's emissiveFactor stops at 1: move the excess into the strength
            exact["emission_color"] = list(mat.emission_color)
            exact["emission_strength"] = mat.emission_strength
            emission = [c / peak for c in emission]
            strength *= peak
        if peak > 0.0:
            entry["emissiveFactor"] = emission
        if strength != 1.0:
            entry.setdefault("extensions", {})["KHR_materials_emissive_strength"] = {"emissiveStrength": strength}
            self.extensions.add("KHR_materials_emissive_strength")
        if mat.transmission > 0.0:
            entry.setdefault("extensions", {})["KHR_materials_transmission"] = {"transmissionFactor": mat.transmission}
            self.extensions.add("KHR_materials_transmission")
        if mat.alpha_mode != "OPAQUE":
            entry["alphaMode"] = mat.alpha_mode
        if mat.alpha_mode == "MASK":
            entry["alphaCutoff"] = mat.alpha_cutoff
        elif mat.alpha_cutoff != 0.5:
            exact["alpha_cutoff"] = mat.alpha_cutoff
        if mat.double_sided:
            entry["doubleSided"] = True
        if exact:
            entry["extras"] = {"optimizer": exact}
        return entry

    def texture(self, texture: Texture, textures: dict[int, int]) -> int:
        """Index of ``texture`` in the document, writing it (as PNG) the first time it is seen."""
        key = id(texture)
        if key not in textures:
            from engine.scene.images import encode_png

            view = self.view(encode_png(texture))
            images = self.doc.setdefault("images", [])
            images.append({"name": texture.name, "mimeType": "image/png", "bufferView": view})
            gltf_textures = self.doc.setdefault("textures", [])
            gltf_textures.append({"source": len(images) - 1})
            textures[key] = len(gltf_textures) - 1
        return textures[key]

    def mesh(self, obj: MeshObject, name: str) -> dict[str, Any]:
        attributes: dict[str, int] = {
            "POSITION": self.accessor(obj.positions, ctype=5126, kind="VEC3", target=_ARRAY_BUFFER, bounds=True)
        }
        if obj.normals is not None:
            attributes["NORMAL"] = self.accessor(_unit_normals(obj.normals), ctype=5126, kind="VEC3",
                                                 target=_ARRAY_BUFFER)
        order = _uv_order(obj)
        for i, key in enumerate(order):
            uv = np.array(obj.uvs[key], dtype=np.float32)
            uv[:, 1] = 1.0 - uv[:, 1]  # glTF's V runs down
            attributes[f"TEXCOORD_{i}"] = self.accessor(uv, ctype=5126, kind="VEC2", target=_ARRAY_BUFFER)
        entry: dict[str, Any] = {"name": name, "primitives": []}
        exact: dict[str, Any] = {}
        slots = obj.material_indices
        triangles = obj.triangles
        if slots.size and (np.diff(slots) < 0).any():
            # one primitive per material regroups the triangles: record the way back
            permutation = np.argsort(slots, kind="stable").astype(np.uint32)
            triangles, slots = triangles[permutation], slots[permutation]
            exact["triangle_order"] = self.accessor(permutation, ctype=5125, kind="SCALAR", target=None)
        used, starts = np.unique(slots, return_index=True)
        ends = [*starts[1:].tolist(), len(slots)]
        for material, start, end in zip(used.tolist(), starts.tolist(), ends, strict=True):
            indices = triangles[start:end].reshape(-1).astype(np.uint32)
            entry["primitives"].append({
                "attributes": attributes,
                "indices": self.accessor(indices, ctype=5125, kind="SCALAR", target=_ELEMENT_ARRAY_BUFFER),
                "material": int(material),
                "mode": 4,
            })
        default_names = [f"TEXCOORD_{i}" for i in range(len(order))]
        default_lightmap = "TEXCOORD_1" if len(order) >= 2 else None
        if order != default_names or obj.lightmap_uv != default_lightmap:
            exact["uv_names"] = order
            exact["lightmap_uv"] = obj.lightmap_uv
        if exact:
            entry["extras"] = {"optimizer": exact}
        return entry

    def light(self, light: Light) -> dict[str, Any]:
        color = list(light.color)
        peak = max(color)
        if light.kind == "sun":
            intensity = light.power * LUMENS_PER_WATT
        else:  # point, spot, and area lights approximated as points
            intensity = light.power * LUMENS_PER_WATT / (4.0 * math.pi)
        if peak > 1.0:
            color = [c / peak for c in color]
            intensity *= peak
        entry: dict[str, Any] = {
            "name": light.name,
            "type": {"point": "point", "spot": "spot", "sun": "directional", "area": "point"}[light.kind],
            "color": color,
            "intensity": intensity,
        }
        if light.kind == "spot":
            outer = min(max(light.spot_size / 2.0, 1e-6), math.pi / 2)
            inner = min(outer * (1.0 - light.spot_blend), outer * (1.0 - 1e-9))  # the spec wants inner < outer
            entry["spot"] = {"innerConeAngle": max(inner, 0.0), "outerConeAngle": outer}
        return entry

    def camera(self, camera: Camera) -> dict[str, Any]:
        perspective: dict[str, Any] = {
            "yfov": camera.fov_y,
            "aspectRatio": camera.width / camera.height,
            "znear": camera.near * self.length_scale,
        }
        if camera.far > camera.near:
            perspective["zfar"] = camera.far * self.length_scale
        return {"name": camera.name, "type": "perspective", "perspective": perspective}

    def node(self, name: str, transform: np.ndarray) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": name}
        matrix = self.to_gltf @ transform
        if not np.array_equal(matrix, np.eye(4)):
            entry["matrix"] = _matrix_list(matrix)
        return entry

    def build(self) -> dict[str, Any]:
        scene = self.scene
        doc = self.doc
        textures: dict[int, int] = {}
        if scene.materials:
            doc["materials"] = [self.material(m, textures) for m in scene.materials]

        # group objects that share one mesh (same instance_of and the same arrays)
        objects = [obj for obj in scene.objects if obj.n_triangles > 0]
        for obj in scene.objects:
            if obj.n_triangles == 0:
                log.warning("object '%s' has no triangles; it is not written to the glTF file", obj.name)
        groups: list[list[MeshObject]] = []
        by_instance: dict[str, list[int]] = {}
        group_of: dict[int, int] = {}
        for obj in objects:
            found = None
            if obj.instance_of is not None:
                candidates = by_instance.setdefault(obj.instance_of, [])
                found = next((g for g in candidates if _same_geometry(groups[g][0], obj)), None)
                if found is None:
                    candidates.append(len(groups))
            if found is None:
                found = len(groups)
                groups.append([])
            groups[found].append(obj)
            group_of[id(obj)] = found

        mesh_namer = _Namer()
        meshes = []
        mesh_names = []
        for g in groups:
            first = g[0]
            name = mesh_namer(first.instance_of if first.instance_of is not None else first.name)
            mesh_names.append(name)
            meshes.append(self.mesh(first, name))
        if meshes:
            doc["meshes"] = meshes

        nodes: list[dict[str, Any]] = []
        for obj in objects:
            g = group_of[id(obj)]
            node = self.node(obj.name, obj.transform)
            node["mesh"] = g
            exact: dict[str, Any] = {}
            flags = {"animated": obj.animated, "static": obj.static, "visible": obj.visible}
            if flags != _DEFAULT_FLAGS:
                exact.update(flags)
            inferred = mesh_names[g] if len(groups[g]) > 1 else None
            if obj.instance_of != inferred:
                exact["instance_of"] = obj.instance_of
            if exact:
                node["extras"] = {"optimizer": exact}
            nodes.append(node)

        if scene.lights:
            self.extensions.add("KHR_lights_punctual")
            definitions = []
            for light in scene.lights:
                definitions.append(self.light(light))
                node = self.node(light.name, light.transform)
                node["extensions"] = {"KHR_lights_punctual": {"light": len(definitions) - 1}}
                record = {k: getattr(light, k) for k in _LIGHT_FIELDS}
                record["color"] = list(light.color)
                node["extras"] = {"optimizer": {"light": record}}
                nodes.append(node)
            doc.setdefault("extensions", {})["KHR_lights_punctual"] = {"lights": definitions}

        if scene.cameras:
            doc["cameras"] = []
            for camera in scene.cameras:
                doc["cameras"].append(self.camera(camera))
                node = self.node(camera.name, camera.transform)
                node["camera"] = len(doc["cameras"]) - 1
                node["extras"] = {"optimizer": {"camera": {
                    k: getattr(camera, k) for k in ("width", "height", "fx", "fy", "cx", "cy", "near", "far")
                }}}
                nodes.append(node)

        gltf_scene: dict[str, Any] = {"name": scene.name}
        if nodes:
            doc["nodes"] = nodes
            gltf_scene["nodes"] = list(range(len(nodes)))
        gltf_scene["extras"] = {"optimizer": {
            "environment": list(scene.environment),
            "meters_per_unit": scene.meters_per_unit,
            "unit_name": scene.unit_name,
        }}
        doc["scenes"] = [gltf_scene]
        doc["scene"] = 0
        if self.accessors:
            doc["accessors"] = self.accessors
        if self.views:
            self.blob += b"\0" * (-len(self.blob) % 4)
            doc["bufferViews"] = self.views
            doc["buffers"] = [{"byteLength": len(self.blob)}]
        if self.extensions:
            doc["extensionsUsed"] = sorted(self.extensions)
        return doc


def _glb_bytes(doc: dict[str, Any], blob: bytes) -> bytes:
    json_bytes = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    json_bytes += b" " * (-len(json_bytes) % 4)
    parts = [struct.pack("<II", len(json_bytes), _CHUNK_JSON), json_bytes]
    if blob:
        parts += [struct.pack("<II", len(blob), _CHUNK_BIN), bytes(blob)]
    body = b"".join(parts)
    return struct.pack("<4sII", _GLB_MAGIC, 2, 12 + len(body)) + body


def export_gltf(scene: Scene, path: str | Path) -> Path:
    """Write ``scene`` as one self-contained glTF file: ``.glb``, or ``.gltf`` with an embedded buffer.

    Transforms go back to glTF's Y-up and to metres; textures are embedded as PNG; what glTF
    cannot express is kept in ``extras.optimizer`` for :func:`load_gltf`. Returns the path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".glb", ".gltf"):
        raise InputError(f"cannot export to '{suffix or '(none)'}'", where=str(path), hint="use a .glb or .gltf path")
    writer = _Writer(scene)
    doc = writer.build()
    if suffix == ".glb":
        data = _glb_bytes(doc, writer.blob)
    else:
        if writer.blob:
            doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(
                bytes(writer.blob)
            ).decode("ascii")
        data = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write file ({exc.strerror or exc})", where=str(path)) from None
    log.info("wrote %s (%d objects, %d bytes)", path, len(scene.objects), len(data))
    return path
