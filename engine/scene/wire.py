"""The versioned wire codec: every pipeline type as msgpack (binary) or JSON.

Pipeline types are frozen dataclasses holding numpy arrays (DESIGN.md). They cross process and
network boundaries through this module only, and only when registered (:func:`register`): the
Scene model's types are registered here; ``engine.analyze``, ``engine.route`` and later layers
register their own result types at import time. Imports only numpy, msgpack and the standard
library, so it runs inside Blender.

Message layout (``WIRE_VERSION`` 1), the same in both forms::

    {"format": "optimizer-wire", "version": 1, "root": <value>, "arrays": [<array>, ...]}

``<value>`` is null, a bool, an int, a float, a string, a list (decoded as a tuple), a map with
string keys (decoded as a dict), bytes (msgpack bin), or a tagged map, marked by its one key that
starts with ``$``:

* ``{"$type": "MeshObject", "name": ..., "positions": ..., ...}``: a registered dataclass, one
  entry per constructor field (fields with a default may be left out);
* ``{"$array": 3}``: the array at index 3 of ``"arrays"``. Each array is stored once, however
  many times it is referenced (instanced meshes share their arrays, and still do after decoding);
* ``{"$enum": "Name", "member": "RED"}``: a member of a registered Enum;
* ``{"$dict": {...}}``: a dict whose keys may start with ``$`` (taken literally);
* ``{"$bytes": "<base64>"}`` (JSON form), ``{"$float": "nan" | "inf" | "-inf"}`` (JSON has no
  non-finite numbers), ``{"$int": "<decimal>"}`` (ints outside the 64-bit range).

``<array>`` is ``{"dtype": "<f4", "shape": [N, 3], "data": <bin>}`` in msgpack and
``{"dtype": "<f4", "shape": [N, 3], "b64": "<base64>"}`` in JSON: raw little-endian C-order
bytes. Allowed dtypes: bool, int8..int64, uint8..uint64, float16/32/64 (decoding also takes the
plain names, "float32"). Decoding calls each type's constructor, so the model's validation runs
again on what a peer sent; msgpack arrays are numpy views over the bytes msgpack returned.
"""

from __future__ import annotations

import binascii
import dataclasses
import enum
import importlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

import msgpack
import numpy as np

from engine.errors import InputError, WireError
from engine.scene.model import Camera, Light, Material, MeshObject, Scene, Texture

log = logging.getLogger(__name__)

WIRE_VERSION = 1
FORMAT = "optimizer-wire"
FORMS = ("msgpack", "json")

#: Which module registers a type name that this module does not know yet. Decoding an unknown
#: name imports the module named here (never a module named by the message) and looks again.
_PROVIDERS: dict[str, str] = {
    "AnalysisConfig": "engine.analyze",
    "ObjectFeatures": "engine.analyze",
    "Features": "engine.analyze",
    "ComplexityTerm": "engine.analyze",
    "Complexity": "engine.analyze",
    "RoutingPolicy": "engine.route",
    "ObjectRoute": "engine.route",
    "Plan": "engine.route",
    "ReferenceViews": "engine.splat.references",
    "AnalysisResult": "engine.route",
}

_ENVELOPE_KEYS = frozenset({"format", "version", "root", "arrays"})
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_MAX_NDIM = 32
_DTYPE_NAMES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)  # fmt: skip
#: numpy dtype string ("<f4") and plain name ("float32") -> little-endian dtype.
_DTYPES: dict[str, np.dtype] = {}
for _name in _DTYPE_NAMES:
    _dt = np.dtype(_name).newbyteorder("<")
    _DTYPES[_dt.str] = _DTYPES[_name] = _dt
_ALLOWED = ", ".join(_DTYPE_NAMES)
_PRIMITIVES = (str, int, float, bool, type(None))


@dataclasses.dataclass(frozen=True)
class _Entry:
    """A registered type: its wire name, constructor fields and the ones without a default."""

    cls: type
    name: str
    is_enum: bool
    fields: tuple[str, ...] = ()
    required: frozenset[str] = frozenset()


_BY_NAME: dict[str, _Entry] = {}
_BY_CLASS: dict[type, _Entry] = {}

T = TypeVar("T", bound=type)


@overload
def register(cls: T, name: str | None = None) -> T: ...
@overload
def register(cls: str | None = None, name: str | None = None) -> Callable[[T], T]: ...


def register(cls: Any = None, name: str | None = None) -> Any:
    """Register a frozen dataclass (or an Enum) under a stable wire name (default: class name).

    Use as ``register(Cls)``, ``@register``, ``@register("Name")`` or ``@register(name="Name")``
    (above ``@dataclass``). Registering the same class again under the same name is a no-op.
    """
    if cls is None or isinstance(cls, str):
        given = cls if isinstance(cls, str) else name
        return lambda klass: register(klass, given)
    if not isinstance(cls, type):
        raise TypeError(f"register() takes a class, got {cls!r}")
    name = cls.__name__ if name is None else name
    if not isinstance(name, str) or not name or name.startswith("$"):
        raise ValueError(f"wire type name {name!r} must be a non-empty string not starting with '$'")
    if issubclass(cls, enum.Enum):
        entry = _Entry(cls, name, is_enum=True)
    elif dataclasses.is_dataclass(cls):
        if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"{cls.__qualname__} must be a frozen dataclass to go on the wire")
        init_fields = [f for f in dataclasses.fields(cls) if f.init]
        required = frozenset(
            f.name for f in init_fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        entry = _Entry(cls, name, is_enum=False, fields=tuple(f.name for f in init_fields), required=required)
    else:
        raise TypeError(f"{cls.__qualname__} is neither a dataclass nor an Enum (put @register above @dataclass)")
    old = _BY_NAME.get(name)
    if old is not None and old.cls is not cls and _qualified(old.cls) != _qualified(cls):
        raise ValueError(f"wire type name {name!r} is already taken by {_qualified(old.cls)}")
    old_entry = _BY_CLASS.get(cls)
    if old_entry is not None and old_entry.name != name:
        raise ValueError(f"{_qualified(cls)} is already registered as {old_entry.name!r}")
    if old is not None and old.cls is not cls:  # the same class, reloaded: the new one wins
        _BY_CLASS.pop(old.cls, None)
    _BY_NAME[name] = entry
    _BY_CLASS[cls] = entry
    return cls


def known_types() -> tuple[str, ...]:
    """The wire names registered so far, sorted."""
    return tuple(sorted(_BY_NAME))


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


for _cls in (Texture, Material, MeshObject, Light, Camera, Scene):
    register(_cls)


# --------------------------------------------------------------------------------------------
# errors with a path


class _NodeError(Exception):
    """Internal: a problem at some node; containers add path segments while it unwinds."""

    def __init__(self, message: str = "", *, error: Exception | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error = error
        self.path: list[str] = []

    def exception(self) -> Exception:
        where = "root" + "".join(reversed(self.path))
        error = self.error
        if error is None:
            return WireError(self.message, where=where)
        if isinstance(error, InputError) and type(error).__init__ is InputError.__init__:
            inner = f"{where}, {error.where}" if error.where else where
            return type(error)(error.problem, where=inner, hint=error.hint)
        error.add_note(f"while decoding the wire message at {where}")
        return error


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key_segment(key: str) -> str:
    return f".{key}" if key.isidentifier() else f"[{_short(key)}]"


def _located(function: Callable[[], Any]) -> Any:
    """Run ``function``, turning internal problems into WireError (or the model's error)."""
    try:
        return function()
    except _NodeError as problem:
        error = problem.exception()
        raise error from (problem.error if problem.error is not error else None)
    except RecursionError:
        raise WireError("the value is nested too deeply") from None


# --------------------------------------------------------------------------------------------
# encoding


def _canonical_dtype(dtype: np.dtype) -> np.dtype | None:
    """The little-endian wire dtype for ``dtype``, or None if arrays of it cannot be sent."""
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        return None
    wire = dtype.newbyteorder("<")
    return wire if _DTYPES.get(wire.str) == wire else None


def _raw(array: np.ndarray) -> memoryview | bytes:
    """The bytes of a C-contiguous array, without a copy."""
    if array.nbytes == 0:
        return b""
    return array.reshape(-1).view(np.uint8).data


class _Encoder:
    def __init__(self, *, json_form: bool) -> None:
        self.json_form = json_form
        self.arrays: list[np.ndarray] = []
        self._index: dict[tuple[Any, ...], int] = {}
        self._keep: list[np.ndarray] = []  # keeps the originals alive: their addresses stay unique

    def value(self, value: Any) -> Any:
        kind = type(value)
        if kind is str or kind is bool or value is None:
            return value
        if kind is int:
            return value if _INT_MIN <= value <= _INT_MAX else {"$int": str(value)}
        if kind is float:
            if self.json_form and not math.isfinite(value):
                return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
            return value
        if kind is tuple or kind is list:
            return self.sequence(value)
        if kind is dict:
            return self.mapping(value)
        if kind is np.ndarray:
            return {"$array": self.array(value)}
        entry = _BY_CLASS.get(kind)
        if entry is not None:
            if entry.is_enum:
                return {"$enum": entry.name, "member": value.name}
            return self.instance(value, entry)
        return self.other(value)

    def other(self, value: Any) -> Any:
        kind = type(value)
        if isinstance(value, enum.Enum):
            raise _NodeError(f"enum {_qualified(kind)} is not registered (engine.scene.wire.register)")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            raise _NodeError(f"{_qualified(kind)} is not registered (engine.scene.wire.register)")
        if isinstance(value, np.ndarray):
            return {"$array": self.array(np.asarray(value))}
        if isinstance(value, np.generic):
            if isinstance(value, np.bool_):
                return bool(value)
            if isinstance(value, np.integer):
                return self.value(int(value))
            if isinstance(value, np.floating):
                return self.value(float(value))
            raise _NodeError(f"a numpy {value.dtype} scalar cannot be sent (allowed: {_ALLOWED})")
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            if self.json_form:
                return {"$bytes": binascii.b2a_base64(data, newline=False).decode("ascii")}
            return data
        for base in (str, int, float):  # subclasses of the plain types (np.float64 is caught above)
            if isinstance(value, base):
                return self.value(base(value))
        if isinstance(value, Mapping):
            return self.mapping(value)
        if isinstance(value, tuple | list):
            return self.sequence(value)
        raise _NodeError(f"cannot send a {_qualified(kind)} (register it, or convert it to a plain type)")

    def sequence(self, items: tuple[Any, ...] | list[Any]) -> list[Any]:
        out = []
        for i, item in enumerate(items):
            try:
                out.append(self.value(item))
            except _NodeError as problem:
                problem.path.append(f"[{i}]")
                raise
        return out

    def mapping(self, items: Mapping[Any, Any]) -> dict[str, Any]:
        out = {}
        escape = False
        for key, item in items.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise _NodeError(f"dict key {_short(key)} is a {type(key).__name__}; only str keys can be sent")
                key = str(key)
            escape = escape or key.startswith("$")
            try:
                out[key] = self.value(item)
            except _NodeError as problem:
                problem.path.append(_key_segment(key))
                raise
        return {"$dict": out} if escape else out

    def instance(self, obj: Any, entry: _Entry) -> dict[str, Any]:
        out: dict[str, Any] = {"$type": entry.name}
        for name in entry.fields:
            try:
                out[name] = self.value(getattr(obj, name))
            except _NodeError as problem:
                problem.path.append(f".{name}")
                raise
        return out

    def array(self, array: np.ndarray) -> int:
        wire = _canonical_dtype(array.dtype)
        if wire is None:
            raise _NodeError(f"arrays of dtype {array.dtype} cannot be sent (allowed: {_ALLOWED})")
        key = (array.__array_interface__["data"][0], array.dtype.str, array.shape, array.strides)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.arrays)
            self.arrays.append(array.astype(wire, order="C", copy=False))
            self._keep.append(array)
        return index


def _bin_header(size: int) -> bytes:
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    if size < 1 << 32:
        return b"\xc6" + size.to_bytes(4, "big")
    raise WireError(f"an array of {size} bytes is too large for msgpack (4 GiB per array)")


def _pack_msgpack(root: Any, arrays: list[np.ndarray]) -> bytes:
    """The envelope as msgpack: small parts packed by msgpack, array bytes joined in (one copy)."""
    packer = msgpack.Packer(use_bin_type=True)
    pack = packer.pack
    parts: list[bytes | memoryview] = [
        packer.pack_map_header(4),
        pack("format"), pack(FORMAT),
        pack("version"), pack(WIRE_VERSION),
        pack("root"), pack(root),
        pack("arrays"), packer.pack_array_header(len(arrays)),
    ]  # fmt: skip
    for array in arrays:
        raw = _raw(array)
        parts += [
            packer.pack_map_header(3),
            pack("dtype"), pack(array.dtype.str),
            pack("shape"), pack(list(array.shape)),
            pack("data"), _bin_header(array.nbytes), raw,
        ]  # fmt: skip
    return b"".join(parts)


def _encode_tree(obj: Any, *, json_form: bool) -> tuple[Any, list[np.ndarray]]:
    encoder = _Encoder(json_form=json_form)
    root = _located(lambda: encoder.value(obj))
    return root, encoder.arrays


def to_jsonable(obj: Any) -> dict[str, Any]:
    """The JSON form's envelope as a dict (arrays in base64), to embed in a JSON HTTP body."""
    root, arrays = _encode_tree(obj, json_form=True)
    table = [
        {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "b64": binascii.b2a_base64(_raw(array), newline=False).decode("ascii"),
        }
        for array in arrays
    ]
    return {"format": FORMAT, "version": WIRE_VERSION, "root": root, "arrays": table}


def encode(obj: Any, *, form: str = "msgpack") -> bytes:
    """Encode a registered dataclass (or any wire value) as msgpack (default) or JSON bytes."""
    if form == "msgpack":
        root, arrays = _encode_tree(obj, json_form=False)
        try:
            return _pack_msgpack(root, arrays)
        except (TypeError, ValueError, OverflowError) as exc:
            raise WireError(f"msgpack cannot pack the value ({exc})", where="root") from None
    if form == "json":
        envelope = to_jsonable(obj)
        try:
            return json.dumps(envelope, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError: a str with lone surrogates
            raise WireError(f"the value cannot be written as JSON ({exc})", where="root") from None
    raise ValueError(f"unknown wire form {form!r}; expected one of {', '.join(FORMS)}")


# --------------------------------------------------------------------------------------------
# decoding


def _lookup(name: str) -> _Entry:
    entry = _BY_NAME.get(name)
    if entry is not None:
        return entry
    note = ""
    module = _PROVIDERS.get(name)
    if module is not None:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a missing or broken provider must not crash a decode
            log.warning("importing %s for wire type %r failed: %s", module, name, exc)
            note = f"; importing {module}, which provides it, failed: {type(exc).__name__}: {exc}"
        entry = _BY_NAME.get(name)
        if entry is not None:
            return entry
    raise _NodeError(f"unknown type {_short(name)} (this engine knows: {', '.join(known_types())}){note}")


def _decode_array(entry: Any) -> np.ndarray:
    """One entry of the arrays table as a read-only array (a view over the message when aligned)."""
    if type(entry) is not dict:
        raise _NodeError(f"is a {type(entry).__name__}, expected a map with dtype, shape and data")
    keys = set(entry)
    payload = keys - {"dtype", "shape"}
    if "dtype" not in keys or "shape" not in keys or payload not in ({"data"}, {"b64"}):
        raise _NodeError(f"has keys {sorted(map(str, keys))}, expected dtype, shape and data (msgpack) or b64 (JSON)")
    name = entry["dtype"]
    dtype = _DTYPES.get(name) if type(name) is str else None
    if dtype is None:
        raise _NodeError(f"dtype {_short(name)} is not allowed (allowed: {_ALLOWED})")
    shape = entry["shape"]
    if type(shape) is not list or len(shape) > _MAX_NDIM or any(type(n) is not int or n < 0 for n in shape):
        raise _NodeError(f"shape {_short(shape)} is not a list of at most {_MAX_NDIM} sizes >= 0")
    if "data" in entry:
        buffer = entry["data"]
        if type(buffer) is not bytes:
            raise _NodeError(f"data is a {type(buffer).__name__}, expected bytes (JSON messages use 'b64')")
    else:
        text = entry["b64"]
        if type(text) is not str:
            raise _NodeError(f"b64 is a {type(text).__name__}, expected a base64 string")
        try:
            buffer = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise _NodeError(f"b64 is not valid base64 ({exc})") from None
    count = math.prod(shape)
    if count * dtype.itemsize != len(buffer):
        raise _NodeError(
            f"holds {len(buffer)} bytes, but dtype {dtype.str} x shape {shape} needs {count * dtype.itemsize}"
        )
    array = np.frombuffer(buffer, dtype=dtype)
    if dtype.kind == "b" and count and int(array.view(np.uint8).max()) > 1:
        raise _NodeError("a bool array holds bytes other than 0 and 1")
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    elif array.__array_interface__["data"][0] % dtype.alignment:
        array = array.copy()
    array = array.reshape(shape)
    array.flags.writeable = False
    return array


class _Decoder:
    def __init__(self, arrays: list[Any]) -> None:
        self.table = arrays
        self.cache: dict[int, np.ndarray] = {}

    def value(self, node: Any) -> Any:
        kind = type(node)
        if kind is str or kind is int or kind is float or kind is bool or node is None:
            return node
        if kind is list:
            return self.sequence(node)
        if kind is dict:
            return self.mapping(node)
        if kind is bytes:
            return node
        raise _NodeError(f"unexpected {kind.__name__} value {_short(node)}")

    def sequence(self, items: list[Any]) -> tuple[Any, ...]:
        out = []
        for i, item in enumerate(items):
            if type(item) in _PRIMITIVES:
                out.append(item)
                continue
            try:
                out.append(self.value(item))
            except _NodeError as problem:
                problem.path.append(f"[{i}]")
                raise
        return tuple(out)

    def mapping(self, node: dict[Any, Any]) -> Any:
        tags = []
        for key in node:
            if type(key) is not str:
                raise _NodeError(f"map key {_short(key)} is a {type(key).__name__}, expected a string")
            if key.startswith("$"):
                tags.append(key)
        if not tags:
            return self.plain(node)
        if len(tags) > 1:
            raise _NodeError(f"a map holds several tags {', '.join(map(repr, tags))}; expected one")
        tag = tags[0]
        if tag == "$type":
            return self.instance(node)
        if tag == "$enum":
            return self.member(node)
        if len(node) != 1:
            others = sorted(k for k in node if k != tag)
            raise _NodeError(f"a {tag!r} map has other keys {', '.join(map(repr, others))}")
        content = node[tag]
        if tag == "$array":
            return self.array(content)
        if tag == "$dict":
            if type(content) is not dict or any(type(k) is not str for k in content):
                raise _NodeError("'$dict' holds no map with string keys")
            return self.plain(content)
        if tag == "$bytes":
            try:
                return binascii.a2b_base64(content, strict_mode=True)
            except (binascii.Error, ValueError, TypeError) as exc:
                raise _NodeError(f"'$bytes' is not valid base64 ({exc})") from None
        if tag == "$float":
            if content not in ("nan", "inf", "-inf"):
                raise _NodeError(f"'$float' is {_short(content)}, expected 'nan', 'inf' or '-inf'")
            return float(content)
        if tag == "$int":
            if type(content) is not str or not 0 < len(content) <= 400:
                raise _NodeError(f"'$int' is {_short(content)}, expected a decimal string")
            try:
                return int(content, 10)
            except ValueError:
                raise _NodeError(f"'$int' is {_short(content)}, expected a decimal string") from None
        raise _NodeError(f"unknown tag {_short(tag)}")

    def plain(self, node: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, item in node.items():
            try:
                out[key] = self.value(item)
            except _NodeError as problem:
                problem.path.append(_key_segment(key))
                raise
        return out

    def array(self, index: Any) -> np.ndarray:
        if type(index) is not int:
            raise _NodeError(f"array ref {_short(index)} is not an index")
        if not 0 <= index < len(self.table):
            raise _NodeError(f"array ref {index} is out of range (the message has {len(self.table)} arrays)")
        array = self.cache.get(index)
        if array is None:
            try:
                array = self.cache[index] = _decode_array(self.table[index])
            except _NodeError as problem:
                problem.message = f"arrays[{index}] {problem.message}"
                raise
        return array

    def member(self, node: dict[str, Any]) -> enum.Enum:
        if set(node) != {"$enum", "member"}:
            raise _NodeError(f"an '$enum' map has keys {sorted(node)}, expected '$enum' and 'member'")
        name, member = node["$enum"], node["member"]
        if type(name) is not str:
            raise _NodeError(f"'$enum' is {_short(name)}, expected a type name")
        entry = _lookup(name)
        if not entry.is_enum:
            raise _NodeError(f"{name} is not an enum (send it as a '$type' map)")
        if type(member) is not str or member not in entry.cls.__members__:
            members = ", ".join(entry.cls.__members__)
            raise _NodeError(f"enum {name} has no member {_short(member)} (it has: {members})")
        return entry.cls[member]

    def instance(self, node: dict[str, Any]) -> Any:
        name = node["$type"]
        if type(name) is not str:
            raise _NodeError(f"'$type' is {_short(name)}, expected a type name")
        entry = _lookup(name)
        if entry.is_enum:
            raise _NodeError(f"{name} is an enum (send it as an '$enum' map)")
        given = node.keys() - {"$type"}
        missing = entry.required - given
        if missing:
            raise _NodeError(f"{name} is missing field(s) {', '.join(sorted(map(repr, missing)))}")
        extra = given - set(entry.fields)
        if extra:
            raise _NodeError(
                f"{name} has no field(s) {', '.join(sorted(map(repr, extra)))} "
                f"(its fields are: {', '.join(entry.fields)})"
            )
        kwargs = {}
        for field in entry.fields:
            if field in node:
                try:
                    kwargs[field] = self.value(node[field])
                except _NodeError as problem:
                    problem.path.append(f".{field}")
                    raise
        try:
            return entry.cls(**kwargs)
        except InputError as exc:
            raise _NodeError(error=exc) from None
        except Exception as exc:  # the peer is untrusted: whatever a constructor rejects is bad input
            raise _NodeError(f"{name} rejected the values: {type(exc).__name__}: {exc}") from None


def _open(envelope: Any, expect: type | None) -> Any:
    if type(envelope) is not dict:
        raise WireError(f"not an optimizer wire message: the top level is a {type(envelope).__name__}, expected a map")
    if "format" not in envelope:
        raise WireError(f"not an optimizer wire message: it has no 'format' (expected {FORMAT!r})")
    if envelope["format"] != FORMAT:
        raise WireError(f"not an optimizer wire message: format is {_short(envelope['format'])}, expected {FORMAT!r}")
    if "version" not in envelope:
        raise WireError(f"the message has no wire format version (this engine reads version {WIRE_VERSION})")
    version = envelope["version"]
    if type(version) is not int:
        raise WireError(f"wire format version {_short(version)} is not an integer")
    if version != WIRE_VERSION:
        raise WireError(
            f"wire format version {version} is not supported by this engine (it reads version {WIRE_VERSION}); "
            "upgrade the engine or re-encode"
        )
    extra = [key for key in envelope if key not in _ENVELOPE_KEYS]
    if extra:
        raise WireError(f"the message has unknown top-level key(s) {', '.join(_short(k) for k in extra)}")
    if "root" not in envelope:
        raise WireError("the message has no 'root' value")
    arrays = envelope.get("arrays", [])
    if type(arrays) is not list:
        raise WireError(f"the message's 'arrays' is a {type(arrays).__name__}, expected a list")
    decoder = _Decoder(arrays)
    value = _located(lambda: decoder.value(envelope["root"]))
    if expect is not None and not isinstance(value, expect):
        raise WireError(f"the message holds a {type(value).__name__}, expected a {expect.__name__}", where="root")
    return value


def from_jsonable(envelope: Any, *, expect: type | None = None) -> Any:
    """Decode a parsed JSON envelope (a dict as :func:`to_jsonable` makes) back to its value."""
    return _open(envelope, expect)


def _sniff(data: bytes | bytearray | memoryview) -> str:
    head = bytes(memoryview(data)[:4096]).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "json" if head[:1] in (b"{", b"[") else "msgpack"  # a msgpack envelope starts 0x8?


def decode(data: bytes | bytearray | memoryview | str, *, form: str | None = None, expect: type | None = None) -> Any:
    """Decode a message from :func:`encode`; ``form`` is detected when None (JSON starts with '{' or '[').

    ``expect`` (a class) makes anything else at the root a WireError. Raises WireError on a bad
    message, and the model's SceneError (with the path prepended) on values it rejects.
    """
    if not isinstance(data, bytes | bytearray | memoryview | str):
        raise TypeError(f"decode() takes bytes or str, got {type(data).__name__}")
    if form is None:
        form = "json" if isinstance(data, str) else _sniff(data)
    if form not in FORMS:
        raise ValueError(f"unknown wire form {form!r}; expected one of {', '.join(FORMS)}")
    if len(data) == 0:
        raise WireError("the message is empty")
    if form == "json":
        try:
            envelope = json.loads(bytes(data) if isinstance(data, memoryview) else data)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise WireError(f"not a JSON wire message ({type(exc).__name__}: {exc})") from None
    else:
        if isinstance(data, str):
            raise WireError("a msgpack message must be bytes, got str")
        try:
            envelope = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
        except Exception as exc:  # msgpack raises ValueError, FormatError, StackError, ExtraData, ...
            raise WireError(f"not a msgpack wire message ({type(exc).__name__}: {exc})") from None
    return _open(envelope, expect)
