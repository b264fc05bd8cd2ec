"""The wire codec: round trips of every model type, sharing, zero-copy decode, every error, fuzzing."""

from __future__ import annotations

import contextlib
import enum
import json
import math
import random
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field, fields, is_dataclass
from types import MappingProxyType
from typing import Any

import msgpack
import numpy as np
import pytest

from engine.errors import InputError, SceneError, WireError
from engine.scene import wire
from engine.scene.model import Camera, Light, Material, MeshObject, Scene, Texture

FORMS = ("msgpack", "json")


# --------------------------------------------------------------------------------------------
# fixtures and helpers


def grid(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """An n x n vertex grid in the XY plane: positions (n*n, 3) and 2 (n-1)^2 triangles."""
    xs, ys = np.meshgrid(np.arange(n, dtype=np.float32), np.arange(n, dtype=np.float32))
    positions = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n, np.float32)], axis=1)
    quad = np.arange(n * n).reshape(n, n)[:-1, :-1].ravel()
    triangles = np.concatenate(
        [np.stack([quad, quad + 1, quad + n + 1], 1), np.stack([quad, quad + n + 1, quad + n], 1)]
    ).astype(np.int32)
    return positions, triangles


def make_scene() -> Scene:
    positions, triangles = grid(4)
    n = len(positions)
    normals = np.tile(np.array([0, 0, 1], np.float32), (n, 1))
    uv = positions[:, :2] / 3.0
    lightmap = uv * 0.5 + 0.25
    material_indices = np.arange(len(triangles), dtype=np.int32) % 2
    texture = Texture("bricks", np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4), "srgb", "bricks.png")
    hdr = Texture("glow", np.linspace(0, 4, 2 * 2, dtype=np.float32).reshape(2, 2), "linear", "embedded")
    base = MeshObject(
        "base",
        positions,
        triangles,
        normals=normals,
        uvs=MappingProxyType({"UVMap": uv, "Lightmap": lightmap}),
        lightmap_uv="Lightmap",
        material_indices=material_indices,
    )
    moved = np.eye(4)
    moved[:3, 3] = (5.0, 0.0, 1.0)
    copy = MeshObject(
        "base.001",
        positions,
        triangles,
        normals=normals,
        uvs={"UVMap": uv},
        material_indices=material_indices,
        transform=moved,
        instance_of="base",
        static=False,
        animated=True,
    )
    spin = np.array([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], dtype=np.float64)
    return Scene(
        objects=(base, copy),
        materials=(
            Material("brick", base_color=(1.0, 0.9, 0.8, 1.0), base_color_texture=texture, roughness=0.8),
            Material(
                "lamp",
                emission_color=(1.0, 0.5, 0.25),
                emission_strength=3.0,
                base_color_texture=hdr,
                alpha_mode="MASK",
                alpha_cutoff=0.3,
                double_sided=True,
            ),
        ),
        lights=(
            Light("point", "point", color=(1.0, 0.8, 0.6), power=100.0, transform=spin, size=0.1),
            Light("spot", "spot", power=50.0, spot_size=0.6, spot_blend=0.3),
            Light("sun", "sun", power=3.0, angle=0.01),
            Light("area", "area", power=20.0, size=2.0, size_y=0.5, shape="rectangle"),
        ),
        cameras=(Camera.from_fov("cam", 640, 480, 0.8, transform=spin, near=0.1, far=50.0),),
        name="yard",
        meters_per_unit=None,
        unit_name="",
        environment=(0.05, 0.05, 0.1),
        source="yard.blend",
        warnings=("texture 'moss.png' is missing",),
    )


def assert_same(a: Any, b: Any, where: str = "root") -> None:
    """Deep equality for wire values: dataclasses by field, arrays by dtype, shape and content."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
    elif is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, MappingProxyType | dict):
        assert type(b) is type(a) or (isinstance(a, MappingProxyType) and isinstance(b, MappingProxyType)), where
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, tuple | list):
        assert isinstance(b, tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def owner(array: np.ndarray) -> Any:
    """The object at the end of an array's base chain (what really holds its memory)."""
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array


def envelope(value: Any, arrays: list[Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """A hand-made envelope around ``value``; ``overrides`` set (or, with _DROP, remove) keys."""
    env = {"format": "optimizer-wire", "version": 1, "root": value, "arrays": arrays or []}
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not _DROP}


_DROP = object()


def raw(form: str, env: Any) -> bytes:
    """A hand-made message in either form."""
    if form == "msgpack":
        return msgpack.packb(env, use_bin_type=True)
    return json.dumps(env).encode()


def f32_entry(form: str, array: np.ndarray, **overrides: Any) -> dict[str, Any]:
    array = np.ascontiguousarray(array, dtype="<f4")
    entry: dict[str, Any] = {"dtype": "<f4", "shape": list(array.shape)}
    if form == "msgpack":
        entry["data"] = array.tobytes()
    else:
        entry["b64"] = wire.binascii.b2a_base64(array.tobytes(), newline=False).decode()
    entry.update(overrides)
    return entry


class Shade(enum.Enum):
    LIGHT = "light"
    DARK = 2


wire.register(Shade)


@wire.register
@dataclass(frozen=True)
class Leaf:
    label: str
    weight: float
    data: np.ndarray | None = None


@wire.register(name="tests.Bundle")
@dataclass(frozen=True)
class Bundle:
    leaves: tuple[Leaf, ...]
    params: dict[str, Any]
    shade: Shade = Shade.LIGHT
    blob: bytes = b""
    note: str | None = None
    extras: tuple[Any, ...] = field(default_factory=tuple)


@wire.register
@dataclass(frozen=True)
class Pair:
    left: Any
    right: Any


@wire.register
@dataclass(frozen=True)
class Picky:
    count: int

    def __post_init__(self) -> None:
        if self.count < 0:  # a TypeError for a str count: not a SceneError
            raise ValueError("count must be >= 0")


# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("form", FORMS)
def test_scene_round_trip(form: str) -> None:
    scene = make_scene()
    data = wire.encode(scene, form=form)
    assert isinstance(data, bytes)
    back = wire.decode(data)
    assert_same(scene, back)
    assert back.meters_per_unit is None
    assert isinstance(back.objects[0].uvs, MappingProxyType)
    assert back.objects[0].lightmap_uv == "Lightmap"
    assert [light.kind for light in back.lights] == ["point", "spot", "sun", "area"]
    assert back.materials[0].base_color_texture.pixels.dtype == np.uint8
    assert back.materials[1].base_color_texture.pixels.shape == (2, 2, 1)
    assert back.objects[1].animated and not back.objects[1].static
    for obj in back.objects:
        assert not obj.positions.flags.writeable


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "value",
    [
        Texture("grey", np.zeros((3, 5), np.uint8)),
        Texture("hdr", np.full((2, 2, 3), 7.5, np.float32), "linear"),
        Material("plain"),
        Material("glass", base_color=(0.1, 0.2, 0.3, 0.4), alpha_mode="BLEND", transmission=0.9),
        MeshObject("tri", np.eye(3, dtype=np.float32), np.array([[0, 1, 2]])),
        MeshObject("empty", np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)),
        Light("p", "point"),
        Light("s", "spot", spot_size=1.0),
        Light("sun", "sun", angle=0.5),
        Light("disk", "area", size=1.0, shape="disk"),
        Light("ellipse", "area", size=1.0, size_y=2.0, shape="ellipse"),
        Camera("cam", 16, 9, 20.0, 20.0, 8.0, 4.5),
        Scene(),
    ],
    ids=lambda v: f"{type(v).__name__}-{getattr(v, 'name', '')}",
)
def test_every_model_type_round_trips(form: str, value: Any) -> None:
    assert_same(value, wire.decode(wire.encode(value, form=form)))


@pytest.mark.parametrize("form", FORMS)
def test_adhoc_dataclass_round_trips(form: str) -> None:
    bundle = Bundle(
        leaves=(Leaf("a", 1.5), Leaf("b", float("nan"), np.arange(6, dtype=np.int16).reshape(2, 3))),
        params={
            "depth": 3,
            "ratio": float("inf"),
            "low": float("-inf"),
            "nested": {"list": [1, 2.5, "x", None, True], "empty": {}},
            "$weird": "kept",
            "huge": 2**80,
            "negative huge": -(2**70),
            "numpy": (np.int64(4), np.float32(0.5), np.bool_(True)),
            "flags": np.array([True, False, True]),
        },
        shade=Shade.DARK,
        blob=b"\x00\x01binary\xff",
        note=None,
        extras=(Shade.LIGHT, b"", (), 0.1),
    )
    back = wire.decode(wire.encode(bundle, form=form))
    assert type(back) is Bundle and type(back.leaves[1]) is Leaf
    assert back.shade is Shade.DARK and back.extras[0] is Shade.LIGHT
    assert back.params["$weird"] == "kept"
    assert back.params["huge"] == 2**80 and back.params["negative huge"] == -(2**70)
    assert back.params["numpy"] == (4, 0.5, True)
    assert [type(x) for x in back.params["numpy"]] == [int, float, bool]
    assert math.isnan(back.leaves[1].weight)
    assert back.params["ratio"] == math.inf and back.params["low"] == -math.inf
    assert back.params["nested"] == {"list": (1, 2.5, "x", None, True), "empty": {}}
    assert back.blob == bundle.blob
    np.testing.assert_array_equal(back.leaves[1].data, bundle.leaves[1].data)
    assert back.params["flags"].dtype == np.bool_ and back.params["flags"].tolist() == [True, False, True]


@pytest.mark.parametrize("form", FORMS)
def test_arrays_of_every_dtype_and_layout(form: str) -> None:
    arrays = [np.arange(7, dtype=name) for name in wire._DTYPE_NAMES if name != "bool"]
    arrays += [
        np.array([True, False]),
        np.arange(12, dtype=">f8").reshape(3, 4),  # big-endian: sent little-endian
        np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
        np.arange(20, dtype=np.int32).reshape(4, 5)[::2, 1::2],  # not contiguous
        np.array(3.5),  # 0-d
        np.zeros((0, 4), np.uint16),
        np.zeros((2, 0, 3), np.float64),
    ]
    back = wire.decode(wire.encode(tuple(arrays), form=form))
    assert len(back) == len(arrays)
    for original, decoded in zip(arrays, back, strict=True):
        assert decoded.shape == original.shape
        assert decoded.dtype == original.dtype.newbyteorder("=")
        np.testing.assert_array_equal(decoded, original)
        assert not decoded.flags.writeable
        assert decoded.__array_interface__["data"][0] % decoded.dtype.alignment == 0


@pytest.mark.parametrize("form", FORMS)
def test_plain_values_round_trip(form: str) -> None:
    value = (None, True, 0, -1, 2**64 - 1, -(2**63), 1.25, "é ∑ 😀", b"", {"a": (1, [2])})
    assert wire.decode(wire.encode(value, form=form)) == (
        None, True, 0, -1, 2**64 - 1, -(2**63), 1.25, "é ∑ 😀", b"", {"a": (1, (2,))},
    )  # fmt: skip


def test_json_form_is_strict_json_and_embeds() -> None:
    scene = make_scene()
    bundle = Bundle((Leaf("x", float("nan")),), {"inf": float("inf")}, blob=b"\x00")

    def no_constants(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    for value in (scene, bundle):
        text = wire.encode(value, form="json").decode("utf-8")
        json.loads(text, parse_constant=no_constants)
        body = json.dumps({"job": 1, "payload": wire.to_jsonable(value)}, allow_nan=False)
        assert_same(value, wire.from_jsonable(json.loads(body)["payload"]))
        assert_same(value, wire.decode(text))  # a str is JSON


def test_decode_accepts_bytes_likes_and_explicit_forms() -> None:
    light = Light("l", "point", power=5.0)
    data = wire.encode(light)
    text = wire.encode(light, form="json")
    for message, form in ((data, "msgpack"), (text, "json")):
        for variant in (message, bytearray(message), memoryview(message)):
            assert wire.decode(variant).power == 5.0
            assert wire.decode(variant, form=form).power == 5.0
    assert wire.decode(b"  \n" + text).power == 5.0
    assert wire.decode(b"\xef\xbb\xbf" + text).power == 5.0
    assert wire.decode(data, expect=Light).name == "l"


# --------------------------------------------------------------------------------------------
# shared arrays and zero copy


def _table(form: str, data: bytes) -> list[Any]:
    if form == "msgpack":
        return msgpack.unpackb(data, raw=False)["arrays"]
    return json.loads(data)["arrays"]


@pytest.mark.parametrize("form", FORMS)
def test_shared_arrays_are_sent_once_and_stay_shared(form: str) -> None:
    scene = make_scene()
    base, copy = scene.objects
    # the model keeps its own read-only views; the memory is what instances share
    assert base.positions is not copy.positions
    assert np.shares_memory(base.positions, copy.positions)

    data = wire.encode(scene, form=form)
    table = _table(form, data)
    shapes = sorted(tuple(entry["shape"]) for entry in table)
    # positions, normals, UVMap, Lightmap, triangles, material_indices, one identity transform
    # (objects, lights), one other transform (camera, point light share `spin`), the moved
    # transform, 2 texture pixel arrays
    assert shapes.count((16, 3)) == 2  # positions and normals, once each for both objects
    assert shapes.count((16, 2)) == 2  # UVMap (shared) and Lightmap
    assert shapes.count((18, 3)) == 1 and shapes.count((18,)) == 1
    assert shapes.count((4, 4)) == 3
    assert len(table) == 11

    back = wire.decode(data)
    b0, b1 = back.objects
    for name in ("positions", "triangles", "normals", "material_indices"):
        x, y = getattr(b0, name), getattr(b1, name)
        assert owner(x) is owner(y), name
        assert x.__array_interface__["data"][0] == y.__array_interface__["data"][0], name
    assert owner(b0.uvs["UVMap"]) is owner(b1.uvs["UVMap"])
    assert owner(b0.uvs["Lightmap"]) is not owner(b0.uvs["UVMap"])
    assert owner(back.lights[0].transform) is owner(back.cameras[0].transform)


@pytest.mark.parametrize("form", FORMS)
def test_shared_array_identity_is_preserved(form: str) -> None:
    shared = np.arange(10.0)
    pair = Pair(shared, (shared, shared[::2], np.arange(10.0)))
    table = _table(form, wire.encode(pair, form=form))
    assert len(table) == 3  # shared, its strided view, the distinct equal array
    back = wire.decode(wire.encode(pair, form=form))
    assert back.right[0] is back.left
    assert back.right[2] is not back.left
    np.testing.assert_array_equal(back.right[1], shared[::2])


def test_msgpack_decode_is_zero_copy() -> None:
    scene = make_scene()
    data = wire.encode(scene)
    back = wire.decode(data)
    for array in (back.objects[0].positions, back.objects[0].triangles, back.objects[0].uvs["UVMap"]):
        memory = owner(array)
        # the array's memory is the bin object msgpack returned for this table entry, not a copy
        assert isinstance(memory, bytes) and len(memory) == array.nbytes
        assert not array.flags.owndata and not array.flags.writeable
    # a raw decode (no model coercion) hands out the frombuffer view itself
    positions = wire.decode(wire.encode(Pair(np.ones((1000, 3), np.float32), None))).left
    assert isinstance(positions.base, bytes | np.ndarray)
    assert isinstance(owner(positions), bytes)


def test_misaligned_buffers_are_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    # bytes objects from msgpack are 16-byte aligned in CPython; force the rare case
    frombuffer = np.frombuffer

    def misaligned(buffer: bytes, dtype: Any) -> np.ndarray:
        shifted = frombuffer(b"\x00" + buffer, np.uint8)[1:]
        return shifted.view(dtype)

    monkeypatch.setattr(np, "frombuffer", misaligned)
    values = np.arange(4, dtype="<f8")
    array = wire._decode_array({"dtype": "<f8", "shape": [2, 2], "data": values.tobytes()})
    assert array.__array_interface__["data"][0] % 8 == 0
    assert not array.flags.writeable
    np.testing.assert_array_equal(array, values.reshape(2, 2))


# --------------------------------------------------------------------------------------------
# registration


def test_register_forms_and_misuse() -> None:
    @wire.register("tests.Named")
    @dataclass(frozen=True)
    class Named:
        x: int

    @wire.register()
    @dataclass(frozen=True)
    class Bare:
        y: int = 2

    assert "tests.Named" in wire.known_types() and "Bare" in wire.known_types()
    assert wire.decode(wire.encode(Named(3))) == Named(3)
    assert wire.register(Named, "tests.Named") is Named  # again: a no-op

    @dataclass
    class Mutable:
        x: int

    with pytest.raises(TypeError, match="frozen"):
        wire.register(Mutable)
    with pytest.raises(TypeError, match="neither a dataclass"):
        wire.register(int)

    @dataclass(frozen=True)
    class Scene:  # same name as the model's Scene, different class
        x: int

    with pytest.raises(ValueError, match="already taken"):
        wire.register(Scene)
    with pytest.raises(ValueError, match="already registered"):
        wire.register(Named, "tests.Other")
    with pytest.raises(ValueError, match="must be a non-empty string"):
        wire.register(Mutable, "$bad")


def test_unknown_type_is_looked_up_in_providers(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    module = "wire_test_provider_mod"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            from engine.scene.wire import register

            @register
            @dataclass(frozen=True)
            class ProvidedThing:
                score: float
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(wire, "_BY_NAME", dict(wire._BY_NAME))
    monkeypatch.setattr(wire, "_BY_CLASS", dict(wire._BY_CLASS))
    monkeypatch.setitem(wire._PROVIDERS, "ProvidedThing", module)
    monkeypatch.setitem(wire._PROVIDERS, "BrokenThing", "wire_test_no_such_module")
    try:
        assert module not in sys.modules
        value = wire.from_jsonable(envelope({"$type": "ProvidedThing", "score": 0.5}))
        assert module in sys.modules
        assert type(value).__name__ == "ProvidedThing" and value.score == 0.5

        with pytest.raises(WireError) as info:
            wire.from_jsonable(envelope({"$type": "BrokenThing"}))
        text = str(info.value)
        assert "unknown type 'BrokenThing'" in text and "wire_test_no_such_module" in text
        assert "Scene" in text and "MeshObject" in text
    finally:
        sys.modules.pop(module, None)


def test_provider_table_names_engine_modules() -> None:
    # Features and Plan come from the light layers, registered when those modules are imported
    assert wire._PROVIDERS["Features"] == "engine.analyze"
    assert wire._PROVIDERS["Plan"] == "engine.route"
    for name, module in wire._PROVIDERS.items():
        assert module.startswith("engine."), name
    # whatever those modules hold today, a bare message naming their type is an InputError
    with pytest.raises(InputError):
        wire.from_jsonable(envelope({"$type": "Features"}))


# --------------------------------------------------------------------------------------------
# errors


def _light(form: str) -> dict[str, Any]:
    env = (json.loads if form == "json" else msgpack.unpackb)(wire.encode(Light("l", "point"), form=form))
    return env


def _mesh_env(form: str, **entry_overrides: Any) -> dict[str, Any]:
    positions, triangles = grid(2)
    root = {"$type": "MeshObject", "name": "m", "positions": {"$array": 0}, "triangles": triangles.tolist()}
    return envelope(root, [f32_entry(form, positions, **entry_overrides)])


CASES: list[tuple[str, Any, str]] = [
    ("top level list", lambda f: [1, 2], "top level is a list"),
    ("no format", lambda f: envelope(1, format=_DROP), "has no 'format'"),
    ("wrong format", lambda f: envelope(1, format="glTF"), "format is 'glTF'"),
    ("no version", lambda f: envelope(1, version=_DROP), "no wire format version"),
    (
        "future version",
        lambda f: envelope(1, version=7),
        "wire format version 7 is not supported by this engine (it reads version 1); upgrade the engine or re-encode",
    ),
    ("version str", lambda f: envelope(1, version="1"), "version '1' is not an integer"),
    ("version bool", lambda f: envelope(1, version=True), "not an integer"),
    ("extra envelope key", lambda f: envelope(1, extra=2), "unknown top-level key(s) 'extra'"),
    ("no root", lambda f: envelope(1, root=_DROP), "no 'root'"),
    ("arrays not list", lambda f: envelope(1, arrays={"a": 1}), "'arrays' is a dict"),
    (
        "unknown type",
        lambda f: envelope({"$type": "Teapot"}),
        "root: unknown type 'Teapot' (this engine knows: ",
    ),
    (
        "missing fields",
        lambda f: envelope({"$type": "Camera", "name": "c", "width": 4, "fx": 1.0}),
        "root: Camera is missing field(s) 'cx', 'cy', 'fy', 'height'",
    ),
    (
        "extra fields",
        lambda f: envelope({"$type": "Light", "name": "l", "kind": "sun", "colour": [1, 1, 1], "lumens": 3}),
        "root: Light has no field(s) 'colour', 'lumens' (its fields are: name, kind, color",
    ),
    (
        "nested unknown type",
        lambda f: envelope({"$type": "Scene", "objects": [1, {"$type": "Nope"}]}),
        "root.objects[1]: unknown type 'Nope'",
    ),
    ("type not str", lambda f: envelope({"$type": 3}), "'$type' is 3"),
    ("enum as type", lambda f: envelope({"$type": "Shade"}), "Shade is an enum"),
    ("type as enum", lambda f: envelope({"$enum": "Light", "member": "X"}), "Light is not an enum"),
    ("bad enum member", lambda f: envelope({"$enum": "Shade", "member": "PINK"}), "no member 'PINK'"),
    ("enum extra key", lambda f: envelope({"$enum": "Shade", "member": "DARK", "x": 1}), "an '$enum' map has keys"),
    ("unknown tag", lambda f: envelope({"x": {"$set": [1]}}), "root.x: unknown tag '$set'"),
    ("two tags", lambda f: envelope({"$array": 0, "$type": "Light"}), "several tags"),
    ("tag with extras", lambda f: envelope({"$array": 0, "shape": [1]}), "'$array' map has other keys 'shape'"),
    ("bad $float", lambda f: envelope({"$float": "NaN!"}), "'$float' is 'NaN!'"),
    ("bad $int", lambda f: envelope({"$int": "12x"}), "'$int' is '12x'"),
    ("bad $bytes", lambda f: envelope({"$bytes": "@@@"}), "'$bytes' is not valid base64"),
    ("bad $dict", lambda f: envelope({"$dict": [1]}), "'$dict' holds no map"),
    (
        "ref out of range",
        lambda f: envelope([{"$array": 3}]),
        "root[0]: array ref 3 is out of range (the message has 0 arrays)",
    ),
    ("negative ref", lambda f: envelope({"$array": -1}), "array ref -1 is out of range"),
    ("ref not int", lambda f: envelope({"$array": "0"}), "array ref '0' is not an index"),
    (
        "byte length",
        lambda f: _mesh_env(f, shape=[5, 3]),
        "root.positions: arrays[0] holds 48 bytes, but dtype <f4 x shape [5, 3] needs 60",
    ),
    (
        "object dtype",
        lambda f: _mesh_env(f, dtype="|O"),
        "root.positions: arrays[0] dtype '|O' is not allowed (allowed: bool",
    ),
    ("void dtype", lambda f: _mesh_env(f, dtype="|V4"), "dtype '|V4' is not allowed"),
    ("complex dtype", lambda f: _mesh_env(f, dtype="<c8"), "dtype '<c8' is not allowed"),
    ("big-endian dtype", lambda f: _mesh_env(f, dtype=">f4"), "dtype '>f4' is not allowed"),
    ("dtype not str", lambda f: _mesh_env(f, dtype=4), "dtype 4 is not allowed"),
    ("negative shape", lambda f: _mesh_env(f, shape=[-4, -3]), "shape [-4, -3] is not a list"),
    ("shape not list", lambda f: _mesh_env(f, shape=12), "shape 12 is not a list"),
    ("shape too deep", lambda f: _mesh_env(f, shape=[1] * 40), "is not a list of at most 32 sizes"),
    ("entry keys", lambda f: envelope({"$array": 0}, [{"dtype": "<f4", "shape": [0]}]), "arrays[0] has keys"),
    ("entry not map", lambda f: envelope({"$array": 0}, [b"abc" if f == "msgpack" else "abc"]), "arrays[0] is a"),
    (
        "b64 not base64",
        lambda f: envelope({"$array": 0}, [{"dtype": "<f4", "shape": [1], "b64": "!!!!"}]),
        "not valid base64",
    ),
    (
        "bool bytes",
        lambda f: envelope({"$array": 0}, [{"dtype": "|b1", "shape": [2], "b64": "AAI="}]),
        "a bool array holds bytes other than 0 and 1",
    ),
    (
        "constructor TypeError",
        lambda f: envelope({"$type": "Scene", "objects": 5}),
        "root: Scene rejected the values: TypeError",
    ),
    (
        "constructor ValueError",
        lambda f: envelope([{"$type": "Picky", "count": -1}]),
        "root[0]: Picky rejected the values: ValueError: count must be >= 0",
    ),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("case", "make", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_messages_raise_wire_errors(form: str, case: str, make: Any, message: str) -> None:
    with pytest.raises(WireError) as info:
        wire.decode(raw(form, make(form)))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the message is empty"),
        (b"\xc1\x00", "not a msgpack wire message"),
        (b"\x84\xa6format", "not a msgpack wire message"),
        (msgpack.packb({"format": "optimizer-wire"}) + b"\x00", "not a msgpack wire message (ExtraData"),
        (b"{not json", "not a JSON wire message"),
        (b'{"format": "optimizer-wire", "version": 1, "root": [[[', "not a JSON wire message"),
        (b"{\xff\xfe}", "not a JSON wire message"),
        (msgpack.packb({1: 2}), "not a msgpack wire message"),
        (msgpack.packb(envelope({b"k": 1}), use_bin_type=True), "map key b'k' is a bytes"),
        (msgpack.packb(envelope(msgpack.ExtType(5, b"x"))), "unexpected ExtType value"),
        ("[1]", "top level is a list"),
    ],
)
def test_not_a_message(data: bytes | str, message: str) -> None:
    with pytest.raises(WireError) as info:
        wire.decode(data)
    assert message in str(info.value)


@pytest.mark.parametrize("depth", [100, 900, 5000])
def test_deep_nesting_is_a_wire_error(depth: int) -> None:
    pack = msgpack.packb
    head = b"\x84" + pack("format") + pack("optimizer-wire") + pack("version") + pack(1) + pack("arrays") + pack([])
    nested = head + pack("root") + b"\x91" * depth + b"\x01"
    text = '{"format": "optimizer-wire", "version": 1, "root": ' + "[" * depth + "1" + "]" * depth + "}"
    for data in (nested, text):
        if depth == 100:
            assert wire.decode(data) is not None
            continue
        with pytest.raises(WireError, match=r"nested|Stack|Recursion"):
            wire.decode(data)


def test_misuse_raises_type_and_value_errors() -> None:
    with pytest.raises(TypeError):
        wire.decode(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown wire form"):
        wire.encode(1, form="xml")
    with pytest.raises(ValueError, match="unknown wire form"):
        wire.decode(b"\x01", form="xml")
    with pytest.raises(WireError, match="must be bytes"):
        wire.decode("{}", form="msgpack")
    with pytest.raises(WireError, match="the top level is a list"):
        wire.from_jsonable([1])
    with pytest.raises(WireError, match="root: the message holds a Light, expected a Scene"):
        wire.decode(wire.encode(Light("l", "sun")), expect=Scene)


@pytest.mark.parametrize("form", FORMS)
def test_model_validation_runs_again_and_names_the_path(form: str) -> None:
    env = _light(form)
    env["root"] = {"$type": "Scene", "lights": [env["root"], dict(env["root"], name="k", power=-5.0)]}
    with pytest.raises(SceneError) as info:
        wire.decode(raw(form, env))
    text = str(info.value)
    assert text.startswith("root.lights[1], light 'k': power = -5.0 is outside [0, inf]"), text
    assert info.value.problem == "power = -5.0 is outside [0, inf]"

    positions, triangles = grid(2)
    with_nan = positions.copy()
    with_nan[1, 2] = np.nan

    def scene_with(second_positions: np.ndarray, second_triangles: list[list[int]]) -> bytes:
        root = {
            "$type": "Scene",
            "objects": [
                {"$type": "MeshObject", "name": "ok", "positions": {"$array": 0}, "triangles": triangles.tolist()},
                {"$type": "MeshObject", "name": "bad", "positions": {"$array": 1}, "triangles": second_triangles},
            ],
        }
        return raw(form, envelope(root, [f32_entry(form, positions), f32_entry(form, second_positions)]))

    for data, message in (
        (scene_with(positions, [[0, 1, 9]]), "triangle 0 uses vertex index 9, but the object has 4 vertices"),
        (scene_with(with_nan, [[0, 1, 2]]), "positions holds a non-finite value (NaN or Inf) at index (1, 2)"),
    ):
        with pytest.raises(SceneError) as info:
            wire.decode(data)
        assert str(info.value).startswith("root.objects[1], object 'bad': "), str(info.value)
        assert message in str(info.value)
        assert isinstance(info.value.__cause__, SceneError)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Pair(1, {"a": [1, object()]}), "root.right.a[1]: cannot send a builtins.object"),
        (Pair(np.array([object()]), 1), "root.left: arrays of dtype object cannot be sent"),
        (Pair(np.zeros(2, np.complex64), 1), "arrays of dtype complex64 cannot be sent"),
        (Pair(np.zeros(2, [("a", "<f4")]), 1), "cannot be sent"),
        (Pair(np.complex128(1j), 1), "a numpy complex128 scalar cannot be sent"),
        (Pair({1: 2}, 1), "root.left: dict key 1 is a int"),
        (Pair({1, 2}, 1), "cannot send a builtins.set"),
        (Pair(enum.Enum("Loose", "A").A, 1), "enum "),  # not registered
        (Pair(Camera, 1), "cannot send a builtins.type"),
    ],
)
def test_unsendable_values(form: str, value: Any, message: str) -> None:
    with pytest.raises(WireError) as info:
        wire.encode(value, form=form)
    assert message in str(info.value)


def test_unregistered_dataclass_is_refused() -> None:
    @dataclass(frozen=True)
    class Loose:
        x: int

    with pytest.raises(WireError, match=r"root\[0\]: .*Loose is not registered"):
        wire.encode([Loose(1)])
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(WireError, match="nested too deeply"):
        wire.encode(cyclic)


# --------------------------------------------------------------------------------------------
# fuzzing: only InputError (WireError, SceneError) may come out of malformed input


def _small_scene() -> Scene:
    positions, triangles = grid(3)
    mesh = MeshObject("m", positions, triangles, uvs={"UV": positions[:, :2]}, lightmap_uv="UV")
    twin = MeshObject("t", positions, triangles, instance_of="m")
    texture = Texture("t", np.full((2, 2, 4), 200, np.uint8))
    return Scene(
        objects=(mesh, twin),
        materials=(Material("a", base_color_texture=texture), Material("b")),
        lights=(Light("sun", "sun"),),
        cameras=(Camera.from_fov("c", 8, 8, 1.0),),
    )


def _only_input_errors(data: bytes) -> None:
    with contextlib.suppress(InputError):
        wire.decode(data)


@pytest.mark.parametrize("form", FORMS)
def test_fuzz_truncation_and_bit_flips(form: str) -> None:
    data = wire.encode(_small_scene(), form=form)
    rng = random.Random(1234)
    step = max(1, len(data) // 600)
    for cut in range(0, len(data), step):
        _only_input_errors(data[:cut])
    for _ in range(2500):
        mutated = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 4))):
            position = rng.randrange(len(mutated))
            if rng.random() < 0.7:
                mutated[position] ^= 1 << rng.randrange(8)
            else:
                mutated[position] = rng.randrange(256)
        _only_input_errors(bytes(mutated))


try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is optional
    given = None

if given is not None:
    _SEED_MESSAGES = [wire.encode(_small_scene(), form=form) for form in FORMS]

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        which=st.sampled_from([0, 1]),
        edits=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=6),
        cut=st.none() | st.integers(0, 10**9),
    )
    def test_fuzz_hypothesis(which: int, edits: list[tuple[int, int]], cut: int | None) -> None:
        mutated = bytearray(_SEED_MESSAGES[which])
        for position, byte in edits:
            mutated[position % len(mutated)] = byte
        if cut is not None:
            mutated = mutated[: cut % (len(mutated) + 1)]
        _only_input_errors(bytes(mutated))

    @settings(max_examples=300, deadline=None)
    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.binary(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(["$type", "$array", "$enum", "$dict", "name", "kind", "member", "x"])
                    | st.text(max_size=4),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=20,
        )
    )
    def test_fuzz_arbitrary_roots(root: Any) -> None:
        for form in FORMS:
            env = envelope(root, [{"dtype": "<f4", "shape": [1, 3], "data": b"\x00" * 12}])
            try:
                data = raw(form, env)
            except (TypeError, ValueError, OverflowError):
                continue  # json cannot hold bytes, msgpack not huge ints: nothing to decode
            _only_input_errors(data)


# --------------------------------------------------------------------------------------------
# light imports


def test_import_is_light() -> None:
    code = (
        "import sys, engine.scene.wire\n"
        "heavy = [m for m in ('scipy', 'torch', 'numba', 'PIL', 'pygltflib', 'requests') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
