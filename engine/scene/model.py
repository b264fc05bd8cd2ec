"""The Scene model: immutable dataclasses holding numpy arrays.

Conventions (DESIGN.md): right-handed, Z-up like Blender; coordinates are kept in the unit
the scene came in and ``Scene.meters_per_unit`` records it (1.0 for metres, 0.001 for
millimetres, ``None`` when the file did not say); radiance and colours are linear float.
Lights and cameras use Blender's convention: they look down their local -Z axis, +Y is up.

Every type validates on construction: shapes, dtypes, index ranges and finite values. A
violation raises :class:`engine.errors.SceneError` naming the object and the problem. Arrays
are stored as read-only views so a built scene cannot change under a later stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np

from engine.errors import SceneError

ALPHA_MODES = ("OPAQUE", "MASK", "BLEND")
LIGHT_KINDS = ("point", "spot", "sun", "area")
AREA_SHAPES = ("square", "rectangle", "disk", "ellipse")
COLORSPACES = ("srgb", "linear")

IDENTITY = np.eye(4)
IDENTITY.flags.writeable = False


def _frozen(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (the caller's array keeps its own flags).

    An array that is already read-only is kept as it is, so objects built from another
    object's arrays (instances) share the very same array objects.
    """
    if not array.flags.writeable:
        return array
    view = array.view()
    view.flags.writeable = False
    return view


@lru_cache(maxsize=128)
def _zeros(count: int) -> np.ndarray:
    """A shared read-only int32 zero array: the default material indices of ``count`` triangles."""
    return _frozen(np.zeros(count, dtype=np.int32))


def array_key(array: np.ndarray) -> tuple[int, tuple[int, ...], tuple[int, ...], str]:
    """Identity of an array's data (address, shape, strides, dtype): equal for views of one buffer."""
    return (array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.char)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _float_array(
    value: Any, *, dtype: type, shape: tuple[int | None, ...], where: str, what: str
) -> np.ndarray:
    """Coerce to a C-contiguous float array of ``shape`` (None = any) with finite values."""
    try:
        array = np.ascontiguousarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise SceneError(f"{what} is not numeric ({exc})", where=where) from None
    _check_shape(array, shape, where=where, what=what)
    if array.size and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise SceneError(
            f"{what} holds a non-finite value (NaN or Inf) at index {tuple(int(i) for i in bad)}",
            where=where,
        )
    return _frozen(array)


def _check_shape(array: np.ndarray, shape: tuple[int | None, ...], *, where: str, what: str) -> None:
    ok = array.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, array.shape, strict=False))
    if not ok:
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise SceneError(f"{what} has shape {array.shape}, expected {want}", where=where)


def _color(value: Any, size: int, *, where: str, what: str) -> tuple[float, ...]:
    array = _float_array(value, dtype=np.float64, shape=(size,), where=where, what=what)
    if (array < 0).any():
        raise SceneError(f"{what} {tuple(array.tolist())} has a negative component", where=where)
    return tuple(float(v) for v in array)


def _scalar(value: Any, *, where: str, what: str, lo: float | None = None, hi: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SceneError(f"{what} must be a number, got {value!r}", where=where) from None
    if not np.isfinite(number):
        raise SceneError(f"{what} must be finite, got {number}", where=where)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        span = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise SceneError(f"{what} = {number} is outside {span}", where=where)
    return number


def _transform(value: Any, *, where: str) -> np.ndarray:
    matrix = _float_array(value, dtype=np.float64, shape=(4, 4), where=where, what="transform")
    if not np.allclose(matrix[3], (0.0, 0.0, 0.0, 1.0), atol=1e-6):
        raise SceneError(f"transform's last row is {matrix[3].tolist()}, expected [0, 0, 0, 1]", where=where)
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-18:
        raise SceneError("transform is singular (zero scale on some axis)", where=where)
    return matrix


def _choice(value: Any, options: tuple[str, ...], *, where: str, what: str) -> str:
    if value not in options:
        raise SceneError(f"{what} is {value!r}, expected one of {', '.join(options)}", where=where)
    return str(value)


@dataclass(frozen=True, eq=False)
class Texture:
    """A decoded image: ``pixels`` (H, W, C) uint8 or float32, C in 1..4.

    ``colorspace`` says how to read 8-bit values ("srgb" for colour maps, "linear" for data).
    ``source`` is where it came from (a path, "embedded", "generated").
    """

    name: str
    pixels: np.ndarray
    colorspace: str = "srgb"
    source: str = ""

    def __post_init__(self) -> None:
        where = f"texture '{self.name}'"
        pixels = np.asarray(self.pixels)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.ndim != 3 or not 1 <= pixels.shape[2] <= 4 or min(pixels.shape[:2]) < 1:
            raise SceneError(f"pixels have shape {pixels.shape}, expected (H, W, 1..4)", where=where)
        if pixels.dtype == np.uint8:
            pixels = np.ascontiguousarray(pixels)
        elif pixels.dtype.kind == "f":
            pixels = np.ascontiguousarray(pixels, dtype=np.float32)
            if not np.isfinite(pixels).all():
                raise SceneError("pixels hold NaN or Inf", where=where)
        else:
            raise SceneError(f"pixels have dtype {pixels.dtype}, expected uint8 or float32", where=where)
        _set(self, "pixels", _frozen(pixels))
        _set(self, "colorspace", _choice(self.colorspace, COLORSPACES, where=where, what="colorspace"))

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)

    @cached_property
    def min_alpha(self) -> float:
        """The smallest alpha value in 0..1 (1.0 for images without alpha); computed once."""
        if self.channels not in (2, 4):
            return 1.0
        low = float(self.pixels[:, :, -1].min())
        return low / 255.0 if self.pixels.dtype == np.uint8 else low

    def has_alpha_below(self, cutoff: float) -> bool:
        """True if the image has an alpha channel with some texel below ``cutoff`` (0..1)."""
        return self.min_alpha < cutoff


@dataclass(frozen=True, eq=False)
class Material:
    """A metallic-roughness PBR material (glTF 2.0 / Principled BSDF subset).

    ``base_color`` is linear RGBA; the texture, when present, multiplies it. Emission is
    ``emission_color * emission_strength`` (linear radiance scale, Blender's convention).
    ``alpha_mode`` is OPAQUE, MASK (alpha-cut at ``alpha_cutoff``) or BLEND.
    """

    name: str
    base_color: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
    base_color_texture: Texture | None = None
    metallic: float = 0.0
    roughness: float = 0.5
    emission_color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    emission_strength: float = 1.0
    alpha_mode: str = "OPAQUE"
    alpha_cutoff: float = 0.5
    transmission: float = 0.0
    double_sided: bool = False

    def __post_init__(self) -> None:
        where = f"material '{self.name}'"
        _set(self, "base_color", _color(self.base_color, 4, where=where, what="base_color"))
        if self.base_color[3] > 1.0:
            raise SceneError(f"base_color alpha {self.base_color[3]} is above 1", where=where)
        if self.base_color_texture is not None and not isinstance(self.base_color_texture, Texture):
            raise SceneError("base_color_texture must be a Texture", where=where)
        _set(self, "metallic", _scalar(self.metallic, where=where, what="metallic", lo=0, hi=1))
        _set(self, "roughness", _scalar(self.roughness, where=where, what="roughness", lo=0, hi=1))
        _set(self, "emission_color", _color(self.emission_color, 3, where=where, what="emission_color"))
        _set(
            self,
            "emission_strength",
            _scalar(self.emission_strength, where=where, what="emission_strength", lo=0),
        )
        _set(self, "alpha_mode", _choice(self.alpha_mode, ALPHA_MODES, where=where, what="alpha_mode"))
        _set(self, "alpha_cutoff", _scalar(self.alpha_cutoff, where=where, what="alpha_cutoff", lo=0, hi=1))
        _set(self, "transmission", _scalar(self.transmission, where=where, what="transmission", lo=0, hi=1))
        _set(self, "double_sided", bool(self.double_sided))

    @property
    def emission(self) -> tuple[float, float, float]:
        """Emitted radiance scale: colour times strength."""
        return tuple(c * self.emission_strength for c in self.emission_color)  # type: ignore[return-value]

    @property
    def is_emissive(self) -> bool:
        return max(self.emission) > 0.0

    @property
    def is_alpha_cut(self) -> bool:
        """Alpha-tested or blended with real holes: leaves, fences, hair cards."""
        if self.alpha_mode == "OPAQUE":
            return False
        if self.base_color[3] < 1.0:
            return True
        texture = self.base_color_texture
        return texture is not None and texture.has_alpha_below(
            self.alpha_cutoff if self.alpha_mode == "MASK" else 0.999
        )

    @property
    def is_transparent(self) -> bool:
        return self.alpha_mode == "BLEND" or self.transmission > 0.0


DEFAULT_MATERIAL = Material(name="default")


@dataclass(frozen=True, eq=False)
class MeshObject:
    """A triangle mesh placed in the world.

    ``positions`` (N, 3) float32 and ``normals`` (N, 3) float32 are in object space;
    ``transform`` (4, 4) float64 maps object space to world space. ``uvs`` maps a UV set's name
    to (N, 2) float32 (V up, OpenGL/Blender convention); ``lightmap_uv`` names the set that
    holds a lightmap layout, if any. ``triangles`` (M, 3) int32 index the vertices and
    ``material_indices`` (M,) int32 index ``Scene.materials``. Objects created from the same
    source mesh share their arrays and name it in ``instance_of``.
    """

    name: str
    positions: np.ndarray
    triangles: np.ndarray
    normals: np.ndarray | None = None
    uvs: Mapping[str, np.ndarray] = field(default_factory=dict)
    lightmap_uv: str | None = None
    material_indices: np.ndarray | None = None
    transform: np.ndarray = field(default_factory=lambda: IDENTITY)
    static: bool = True
    animated: bool = False
    visible: bool = True
    instance_of: str | None = None

    def __post_init__(self) -> None:
        where = f"object '{self.name}'"
        if not isinstance(self.name, str) or not self.name:
            raise SceneError("every object needs a non-empty name", where="object")
        positions = _float_array(self.positions, dtype=np.float32, shape=(None, 3), where=where, what="positions")
        _set(self, "positions", positions)
        n_vertices = positions.shape[0]

        triangles = np.asarray(self.triangles)
        if triangles.dtype.kind not in "iu":
            raise SceneError(f"triangles have dtype {triangles.dtype}, expected integers", where=where)
        _check_shape(triangles, (None, 3), where=where, what="triangles")
        if triangles.size:
            lo, hi = int(triangles.min()), int(triangles.max())
            if lo < 0 or hi >= n_vertices:
                bad = lo if lo < 0 else hi
                row = int(np.argwhere(triangles == bad)[0][0])
                raise SceneError(
                    f"triangle {row} uses vertex index {bad}, but the object has {n_vertices} vertices",
                    where=where,
                )
        _set(self, "triangles", _frozen(np.ascontiguousarray(triangles, dtype=np.int32)))

        if self.normals is not None:
            normals = _float_array(self.normals, dtype=np.float32, shape=(n_vertices, 3), where=where, what="normals")
            _set(self, "normals", normals)

        if not isinstance(self.uvs, Mapping):
            raise SceneError("uvs must map a UV set's name to an (N, 2) array", where=where)
        uvs = {
            str(key): _float_array(value, dtype=np.float32, shape=(n_vertices, 2), where=where, what=f"UV set '{key}'")
            for key, value in self.uvs.items()
        }
        _set(self, "uvs", MappingProxyType(uvs))
        if self.lightmap_uv is not None and self.lightmap_uv not in uvs:
            raise SceneError(
                f"lightmap_uv names UV set '{self.lightmap_uv}', which the object does not have "
                f"(it has: {', '.join(uvs) or 'none'})",
                where=where,
            )

        n_triangles = self.triangles.shape[0]
        if self.material_indices is None:
            indices = _zeros(n_triangles)
        else:
            indices = np.asarray(self.material_indices)
            if indices.dtype.kind not in "iu":
                raise SceneError(f"material_indices have dtype {indices.dtype}, expected integers", where=where)
            _check_shape(indices, (n_triangles,), where=where, what="material_indices")
            if indices.size and int(indices.min()) < 0:
                raise SceneError("material_indices hold a negative index", where=where)
            indices = np.ascontiguousarray(indices, dtype=np.int32)
        _set(self, "material_indices", _frozen(indices))

        _set(self, "transform", _transform(self.transform, where=where))
        for flag in ("static", "animated", "visible"):
            _set(self, flag, bool(getattr(self, flag)))
        if self.animated and self.static:
            _set(self, "static", False)

    @property
    def n_vertices(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_triangles(self) -> int:
        return int(self.triangles.shape[0])

    def world_positions(self) -> np.ndarray:
        """Positions transformed to world space, float32 (N, 3)."""
        m = self.transform
        return (self.positions @ m[:3, :3].T.astype(np.float32)) + m[:3, 3].astype(np.float32)


@dataclass(frozen=True, eq=False)
class Light:
    """A light. ``power`` is watts (point, spot, area) or irradiance W/m² (sun), Blender's units.

    Point and spot lights have a radius ``size``; area lights ``size`` by ``size_y`` (metres in
    scene units, ``size_y`` used for rectangle/ellipse); sun ``angle`` is the angular diameter in
    radians. ``spot_size`` is the full cone angle in radians, ``spot_blend`` its softness 0..1.
    The light sits at the transform's origin and points down its local -Z axis.
    """

    name: str
    kind: str
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    power: float = 10.0
    transform: np.ndarray = field(default_factory=lambda: IDENTITY)
    size: float = 0.0
    size_y: float = 0.0
    shape: str = "square"
    angle: float = 0.0
    spot_size: float = float(np.pi / 4)
    spot_blend: float = 0.15

    def __post_init__(self) -> None:
        where = f"light '{self.name}'"
        _set(self, "kind", _choice(self.kind, LIGHT_KINDS, where=where, what="kind"))
        _set(self, "color", _color(self.color, 3, where=where, what="color"))
        _set(self, "power", _scalar(self.power, where=where, what="power", lo=0))
        _set(self, "transform", _transform(self.transform, where=where))
        _set(self, "size", _scalar(self.size, where=where, what="size", lo=0))
        _set(self, "size_y", _scalar(self.size_y, where=where, what="size_y", lo=0))
        _set(self, "shape", _choice(self.shape, AREA_SHAPES, where=where, what="shape"))
        _set(self, "angle", _scalar(self.angle, where=where, what="angle", lo=0, hi=np.pi))
        _set(self, "spot_size", _scalar(self.spot_size, where=where, what="spot_size", lo=0, hi=np.pi))
        _set(self, "spot_blend", _scalar(self.spot_blend, where=where, what="spot_blend", lo=0, hi=1))
        if self.kind == "area" and self.size <= 0:
            raise SceneError("an area light needs a size above 0", where=where)

    @property
    def position(self) -> np.ndarray:
        return self.transform[:3, 3]

    @property
    def direction(self) -> np.ndarray:
        """World-space unit vector the light points along (its local -Z)."""
        d = -self.transform[:3, 2]
        return d / np.linalg.norm(d)

    @property
    def area(self) -> float:
        """Emitting area of an area light in scene units² (0 for other kinds)."""
        if self.kind != "area":
            return 0.0
        sx = self.size
        sy = self.size_y if self.shape in ("rectangle", "ellipse") else self.size
        scale = np.linalg.norm(self.transform[:3, :2], axis=0)
        full = sx * sy * float(scale[0] * scale[1])
        return full * (np.pi / 4 if self.shape in ("disk", "ellipse") else 1.0)


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera: intrinsics in pixels, extrinsics as camera-to-world ``transform``.

    Blender convention: the camera looks down its local -Z axis with +Y up; converters to
    OpenCV (gsplat) live at the edges. ``fx, fy`` are focal lengths in pixels and ``cx, cy`` the
    principal point in pixels from the top-left corner.
    """

    name: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    transform: np.ndarray = field(default_factory=lambda: IDENTITY)
    near: float = 0.01
    far: float = 1000.0

    def __post_init__(self) -> None:
        where = f"camera '{self.name}'"
        for attr in ("width", "height"):
            value = getattr(self, attr)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise SceneError(f"{attr} must be a positive integer, got {value!r}", where=where)
            _set(self, attr, int(value))
        for attr in ("fx", "fy"):
            _set(self, attr, _scalar(getattr(self, attr), where=where, what=attr, lo=1e-9))
        for attr in ("cx", "cy"):
            _set(self, attr, _scalar(getattr(self, attr), where=where, what=attr))
        _set(self, "near", _scalar(self.near, where=where, what="near", lo=1e-12))
        _set(self, "far", _scalar(self.far, where=where, what="far", lo=self.near))
        _set(self, "transform", _transform(self.transform, where=where))

    @classmethod
    def from_fov(
        cls, name: str, width: int, height: int, fov_y: float, transform: Any = IDENTITY, **kwargs: Any
    ) -> Camera:
        """A centred camera with vertical field of view ``fov_y`` (radians)."""
        f = 0.5 * height / float(np.tan(0.5 * fov_y))
        return cls(name, width, height, f, f, width / 2.0, height / 2.0, transform, **kwargs)

    @property
    def fov_y(self) -> float:
        return float(2.0 * np.arctan(0.5 * self.height / self.fy))


@dataclass(frozen=True, eq=False)
class Scene:
    """A whole scene: objects, materials, lights, cameras, and where it came from.

    ``meters_per_unit`` is the length of one scene unit in metres (1.0 for glTF, 0.001 for a
    file in millimetres), or ``None`` when the source did not say. ``environment`` is a constant
    linear world colour (radiance). ``warnings`` collects what an importer could not use but
    worked around (a missing texture, say).
    """

    objects: tuple[MeshObject, ...] = ()
    materials: tuple[Material, ...] = (DEFAULT_MATERIAL,)
    lights: tuple[Light, ...] = ()
    cameras: tuple[Camera, ...] = ()
    name: str = "scene"
    meters_per_unit: float | None = 1.0
    unit_name: str = "m"
    environment: tuple[float, float, float] = (0.0, 0.0, 0.0)
    source: str = ""
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"scene '{self.name}'" if not self.source else f"{self.source}"
        for attr, kind in (("objects", MeshObject), ("materials", Material), ("lights", Light), ("cameras", Camera)):
            items = tuple(getattr(self, attr))
            for item in items:
                if not isinstance(item, kind):
                    raise SceneError(f"{attr} holds a {type(item).__name__}, expected {kind.__name__}", where=where)
            names = [item.name for item in items]
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise SceneError(f"two {attr} are named '{dup}'; names must be unique", where=where)
            _set(self, attr, items)
        if not self.materials:
            raise SceneError("a scene needs at least one material (objects index into them)", where=where)
        n_materials = len(self.materials)
        for obj in self.objects:
            if obj.n_triangles and int(obj.material_indices.max()) >= n_materials:
                raise SceneError(
                    f"material index {int(obj.material_indices.max())} is out of range "
                    f"(the scene has {n_materials} materials)",
                    where=f"{where}, object '{obj.name}'",
                )
        if self.meters_per_unit is not None:
            _set(self, "meters_per_unit", _scalar(self.meters_per_unit, where=where, what="meters_per_unit", lo=1e-12))
        _set(self, "environment", _color(self.environment, 3, where=where, what="environment"))
        _set(self, "warnings", tuple(str(w) for w in self.warnings))

    @property
    def n_triangles(self) -> int:
        return sum(obj.n_triangles for obj in self.objects)

    @property
    def n_vertices(self) -> int:
        return sum(obj.n_vertices for obj in self.objects)

    def object(self, name: str) -> MeshObject:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(name)

    def require_content(self) -> None:
        """Raise SceneError if the scene holds no triangles at all (nothing to optimize)."""
        if self.n_triangles == 0:
            where = self.source or f"scene '{self.name}'"
            raise SceneError("the scene has no triangles: nothing to analyze or optimize", where=where)
