"""Gaussian clouds and the standard 3DGS PLY file (the INRIA property set).

:class:`GaussianCloud` holds trained Gaussians exactly as the reference 3DGS code stores them:
positions, log scales, rotation quaternions ``(w, x, y, z)``, pre-sigmoid opacities and
spherical-harmonic (SH) colour coefficients (the DC term and up to 15 higher-order terms per
colour channel, SH degree 0..3). numpy only: it is the plain data type that crosses from the
trainer to exporters, the Blender preview and the wire.

:func:`write_ply` writes the file that the INRIA trainer writes and that UnityGaussianSplatting,
SuperSplat/PlayCanvas and KIRI's Blender add-on read: ``binary_little_endian``, one ``vertex``
element, every property a ``float``, in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 .. f_rest_{3K-1} opacity
    scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

The ``f_rest`` properties are channel-major, as INRIA writes them: ``f_rest_{c*K + k}`` is
coefficient ``k`` of colour channel ``c`` (all K red coefficients, then green, then blue),
whereas :attr:`GaussianCloud.sh_rest` is ``(N, K, 3)`` like gsplat's ``shN``. The normals are
zeros unless the cloud carries some (INRIA writes zeros). The rows go out as one numpy
structured array; nothing loops over Gaussians.

:func:`read_ply` reads that format back and tolerates what other tools write: properties in
any order, extra properties and elements, any numeric property type, big-endian binary and
ASCII files. A PlayCanvas compressed PLY is recognised and handed to
:func:`engine.splat.compressed.read_compressed_ply`. Anything else raises
:class:`engine.errors.ImportFormatError` naming the file and the problem (not a PLY, no end of
header, missing properties, truncated data, non-finite values).

Positions are written as given: the caller decides the world frame (the Scene is Z-up).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from engine.errors import ImportFormatError, InputError

log = logging.getLogger(__name__)

SH_C0 = 0.28209479177387814
"""The degree-0 SH basis constant: ``rgb = 0.5 + SH_C0 * f_dc``."""

REST_COEFFS = (0, 3, 8, 15)
"""Higher-order SH coefficients per colour channel for SH degree 0, 1, 2, 3."""

PLY_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": ""}
PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
MAX_HEADER_BYTES = 1 << 20

_REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
_NORMALS = ("nx", "ny", "nz")
_WHERE = "Gaussian cloud"


# --------------------------------------------------------------------------- the cloud


def _frozen(array: np.ndarray) -> np.ndarray:
    if array.flags.writeable:
        array = array.view()
        array.flags.writeable = False
    return array


def _float32(value: Any, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    """A read-only C-contiguous float32 array of ``shape`` (None: any) with finite values."""
    try:
        array = np.ascontiguousarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} is not numeric ({exc})", where=_WHERE) from None
    if array.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, array.shape, strict=False)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{what} has shape {array.shape}, expected {want}", where=_WHERE)
    if array.size and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise InputError(f"{what} holds a non-finite value (NaN or Inf) at index {tuple(int(i) for i in bad)}",
                         where=_WHERE, hint="a diverged training run cannot be exported")
    return _frozen(array)


def sh_rest_count(degree: int) -> int:
    """Higher-order SH coefficients per colour channel for SH ``degree`` (0..3)."""
    if degree not in range(len(REST_COEFFS)):
        raise InputError(f"SH degree {degree!r} is not supported", where=_WHERE, hint="use 0, 1, 2 or 3")
    return REST_COEFFS[degree]


@dataclass(frozen=True, eq=False)
class GaussianCloud:
    """N 3D Gaussians in the INRIA 3DGS parametrisation (float32, read-only arrays).

    * ``means`` (N, 3): centres.
    * ``scales_log`` (N, 3): natural log of the standard deviations along the local axes.
    * ``quats`` (N, 4): rotations ``(w, x, y, z)`` (INRIA ``rot_0..3``), any non-zero length.
    * ``opacity_logit`` (N,): opacity before the sigmoid.
    * ``sh_dc`` (N, 3): degree-0 SH coefficient per colour channel (``f_dc_0..2``).
    * ``sh_rest`` (N, K, 3): higher-order SH coefficients, K in {0, 3, 8, 15} for degree 0..3
      (``None`` means K = 0).
    * ``normals`` (N, 3) or ``None``: optional, carried to the PLY's ``nx ny nz``.

    Construction validates shapes and finiteness and raises :class:`InputError` on a violation.
    """

    means: np.ndarray
    scales_log: np.ndarray
    quats: np.ndarray
    opacity_logit: np.ndarray
    sh_dc: np.ndarray
    sh_rest: np.ndarray = field(default=None)  # type: ignore[assignment]
    normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        means = _float32(self.means, (None, 3), "means")
        n = len(means)
        set_ = object.__setattr__
        set_(self, "means", means)
        set_(self, "scales_log", _float32(self.scales_log, (n, 3), "scales_log"))
        quats = _float32(self.quats, (n, 4), "quats")
        lengths = np.linalg.norm(quats.astype(np.float64), axis=1)
        if n and not (lengths > 1e-12).all():
            raise InputError(f"quats has a zero-length rotation at index {int(np.argmin(lengths))}", where=_WHERE)
        set_(self, "quats", quats)
        set_(self, "opacity_logit", _float32(self.opacity_logit, (n,), "opacity_logit"))
        set_(self, "sh_dc", _float32(self.sh_dc, (n, 3), "sh_dc"))
        rest = np.zeros((n, 0, 3), np.float32) if self.sh_rest is None else self.sh_rest
        rest = _float32(rest, (n, None, 3), "sh_rest")
        if rest.shape[1] not in REST_COEFFS:
            raise InputError(f"sh_rest has {rest.shape[1]} coefficients per channel, expected 0, 3, 8 or 15 "
                             "(SH degree 0, 1, 2 or 3)", where=_WHERE)
        set_(self, "sh_rest", rest)
        if self.normals is not None:
            set_(self, "normals", _float32(self.normals, (n, 3), "normals"))

    @property
    def count(self) -> int:
        """Number of Gaussians."""
        return len(self.means)

    @property
    def sh_degree(self) -> int:
        """SH degree 0..3 (from the number of higher-order coefficients)."""
        return REST_COEFFS.index(self.sh_rest.shape[1])

    def colors_rgb(self) -> np.ndarray:
        """View-independent colour ``0.5 + SH_C0 * sh_dc`` clipped to [0, 1], (N, 3) float32."""
        return np.clip(0.5 + SH_C0 * self.sh_dc, 0.0, 1.0).astype(np.float32)

    def opacities(self) -> np.ndarray:
        """Opacity after the sigmoid, (N,) float32 in [0, 1]."""
        return (1.0 / (1.0 + np.exp(-self.opacity_logit.astype(np.float64)))).astype(np.float32)

    def scales(self) -> np.ndarray:
        """Standard deviations along the local axes (``exp(scales_log)``), (N, 3) float32."""
        return np.exp(self.scales_log.astype(np.float64)).astype(np.float32)

    def take(self, indices: Any) -> GaussianCloud:
        """The Gaussians at ``indices`` (an index array or boolean mask), in that order."""
        index = np.asarray(indices)
        if index.size == 0:
            index = index.astype(np.intp)  # [] is a float array
        return GaussianCloud(
            self.means[index], self.scales_log[index], self.quats[index], self.opacity_logit[index],
            self.sh_dc[index], self.sh_rest[index], None if self.normals is None else self.normals[index],
        )

    @classmethod
    def from_rgb(
        cls,
        means: Any,
        colors: Any,
        scales: Any,
        opacities: Any,
        quats: Any = None,
        *,
        sh_degree: int = 0,
    ) -> GaussianCloud:
        """A cloud from plain values: colours in [0, 1], linear ``scales`` (> 0), ``opacities`` in (0, 1).

        ``quats`` default to the identity; the higher-order SH coefficients (``sh_degree``) start at 0.
        Opacities are clipped to [1e-6, 1 − 1e-6] so that their logits are finite.
        """
        means = _float32(means, (None, 3), "means")
        n = len(means)
        colors = _float32(colors, (n, 3), "colors")
        scales = _float32(scales, (n, 3), "scales")
        if n and not (scales > 0).all():
            raise InputError("scales must be positive", where=_WHERE)
        alpha = np.clip(_float32(opacities, (n,), "opacities").astype(np.float64), 1e-6, 1 - 1e-6)
        if quats is None:
            quats = np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1))
        return cls(
            means, np.log(scales.astype(np.float64)), quats, np.log(alpha / (1 - alpha)), (colors - 0.5) / SH_C0,
            np.zeros((n, sh_rest_count(sh_degree), 3), np.float32),
        )


# --------------------------------------------------------------------------- PLY headers


@dataclass
class PlyElement:
    """One ``element`` of a PLY header: its rows and their ``(name, numpy type)`` scalar properties."""

    name: str
    count: int
    properties: list[tuple[str, str]] = field(default_factory=list)
    has_list: bool = False  # a ``property list``: rows of varying size

    def dtype(self, byte_order: str) -> np.dtype:
        return np.dtype([(name, byte_order + code) for name, code in self.properties])


@dataclass
class PlyHeader:
    """A parsed PLY header; ``size`` is its length in bytes (where the data starts)."""

    format: str
    elements: list[PlyElement]
    comments: list[str]
    size: int


def _bad(path: Path, problem: str, hint: str = "") -> ImportFormatError:
    return ImportFormatError(problem, where=str(path), hint=hint)


def _parse_header(stream: BinaryIO, path: Path) -> PlyHeader:
    first = stream.readline(64)
    if first.rstrip(b"\r\n") != b"ply":
        raise _bad(path, "not a PLY file (the first line is not 'ply')")
    size = len(first)
    fmt = ""
    elements: list[PlyElement] = []
    comments: list[str] = []
    while True:
        raw = stream.readline(MAX_HEADER_BYTES)
        size += len(raw)
        if not raw.endswith(b"\n") or size > MAX_HEADER_BYTES:
            raise _bad(path, "the PLY header never ends (no 'end_header' line)", "the file is truncated or not a PLY")
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise _bad(path, "the PLY header holds non-ASCII bytes", "the file is corrupt or not a PLY") from None
        words = line.split()
        if not words:
            continue
        keyword = words[0]
        if keyword == "end_header":
            break
        if keyword in ("comment", "obj_info"):
            comments.append(line[len(keyword):].strip())
        elif keyword == "format":
            if len(words) != 3 or words[1] not in PLY_FORMATS:
                raise _bad(path, f"unsupported PLY format line {line!r}",
                           "expected binary_little_endian, binary_big_endian or ascii")
            fmt = words[1]
        elif keyword == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise _bad(path, f"malformed PLY header line {line!r}", "expected 'element NAME COUNT'")
            if any(e.name == words[1] for e in elements):
                raise _bad(path, f"the PLY header declares element {words[1]!r} twice")
            elements.append(PlyElement(words[1], int(words[2])))
        elif keyword == "property":
            if not elements:
                raise _bad(path, f"PLY header line {line!r} comes before any element")
            element = elements[-1]
            if len(words) == 5 and words[1] == "list" and words[2] in PLY_TYPES and words[3] in PLY_TYPES:
                element.has_list = True
                continue
            if len(words) != 3 or words[1] not in PLY_TYPES:
                raise _bad(path, f"malformed PLY header line {line!r}", "expected 'property TYPE NAME'")
            if any(name == words[2] for name, _ in element.properties):
                raise _bad(path, f"element {element.name!r} declares property {words[2]!r} twice")
            element.properties.append((words[2], PLY_TYPES[words[1]]))
        else:
            raise _bad(path, f"unknown PLY header line {line!r}")
    if not fmt:
        raise _bad(path, "the PLY header has no 'format' line")
    return PlyHeader(fmt, elements, comments, size)


def read_ply_elements(path: str | os.PathLike[str], names: Iterable[str]) -> tuple[PlyHeader, dict[str, np.ndarray]]:
    """The header of the PLY at ``path`` and the named elements found in it, as structured arrays.

    Elements that are not asked for are skipped. Elements with list properties can be skipped
    only after the last one asked for (their rows have no fixed size in binary files).
    """
    path = Path(path)
    wanted = set(names)
    try:
        stream = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise _bad(path, f"cannot read the file ({exc.strerror or exc})") from None
    with stream:
        header = _parse_header(stream, path)
        remaining = wanted & {e.name for e in header.elements}
        if header.format == "ascii":
            return header, _read_ascii(stream, header, remaining, path)
        byte_order = PLY_FORMATS[header.format]
        file_size = os.fstat(stream.fileno()).st_size
        found: dict[str, np.ndarray] = {}
        for element in header.elements:
            if not remaining:
                break
            if element.has_list:
                raise _bad(path, f"element {element.name!r} has list properties and comes before "
                                 f"{', '.join(sorted(remaining))}", "only fixed-size elements can precede the splat data")
            dtype = element.dtype(byte_order)
            size = dtype.itemsize * element.count
            start = stream.tell()
            if element.name in remaining:
                data = stream.read(size)
                if len(data) < size:
                    raise _bad(path, f"the file is truncated: element {element.name!r} needs {size} bytes of data "
                                     f"from byte {start}, the file has {len(data)}")
                found[element.name] = (np.frombuffer(data, dtype=dtype, count=element.count) if dtype.itemsize
                                       else np.zeros(element.count, dtype))
                remaining.discard(element.name)
            else:
                if start + size > file_size:
                    raise _bad(path, f"the file is truncated: element {element.name!r} needs {size} bytes of data "
                                     f"from byte {start}, the file has {file_size - start}")
                stream.seek(size, os.SEEK_CUR)
        return header, found


def _read_ascii(stream: BinaryIO, header: PlyHeader, wanted: set[str], path: Path) -> dict[str, np.ndarray]:
    lines = [line for line in stream.read().splitlines() if line.strip()]
    found: dict[str, np.ndarray] = {}
    row = 0
    for element in header.elements:
        if not wanted - found.keys():
            break
        rows = lines[row:row + element.count]
        row += element.count
        if element.name not in wanted:
            continue
        if element.has_list:
            raise _bad(path, f"ASCII element {element.name!r} has list properties, which are not supported here")
        if len(rows) < element.count:
            raise _bad(path, f"the file is truncated: element {element.name!r} has {len(rows)} of "
                             f"{element.count} rows")
        width = len(element.properties)
        try:
            values = np.array(b" ".join(rows).split(), dtype=np.float64)
        except ValueError as exc:
            raise _bad(path, f"element {element.name!r} holds a value that is not a number ({exc})") from None
        if values.size != width * element.count:
            raise _bad(path, f"element {element.name!r}: its {element.count} rows hold {values.size} values, "
                             f"expected {width} per row")
        values = values.reshape(element.count, width)
        array = np.empty(element.count, element.dtype("<"))
        for column, (name, _) in enumerate(element.properties):
            array[name] = values[:, column]
        found[element.name] = array
    return found


# --------------------------------------------------------------------------- standard 3DGS PLY


def ply_property_names(sh_degree: int) -> list[str]:
    """The INRIA vertex property names, in file order, for SH degree 0..3."""
    rest = 3 * sh_rest_count(sh_degree)
    return ["x", "y", "z", *_NORMALS, "f_dc_0", "f_dc_1", "f_dc_2", *(f"f_rest_{i}" for i in range(rest)),
            "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def write_file_atomically(path: Path, parts: Iterable[bytes | np.ndarray]) -> None:
    """Write ``parts`` (bytes or arrays, written raw) to ``path`` through a temporary file and a rename.

    A failed write leaves no half-written file behind. An unwritable path raises :class:`InputError`.
    """
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as out:
            for part in parts:
                if isinstance(part, bytes):
                    out.write(part)
                elif part.size:
                    out.write(memoryview(np.ascontiguousarray(part).reshape(-1).view(np.uint8)))
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"cannot write the file ({exc.strerror or exc})", where=str(path),
                         hint="check that the folder exists and is writable") from None


def write_ply(path: str | os.PathLike[str], cloud: GaussianCloud) -> Path:
    """Write ``cloud`` as a standard (INRIA) binary little-endian 3DGS PLY; returns the path."""
    path = Path(path)
    n, k = cloud.count, cloud.sh_rest.shape[1]
    names = ply_property_names(cloud.sh_degree)
    normals = np.zeros((n, 3), np.float32) if cloud.normals is None else cloud.normals
    f_rest = cloud.sh_rest.transpose(0, 2, 1).reshape(n, 3 * k)  # channel-major: index c*K + k
    columns = [cloud.means, normals, cloud.sh_dc, f_rest, cloud.opacity_logit[:, None], cloud.scales_log, cloud.quats]
    vertex_dtype = np.dtype([(name, "<f4") for name in names])
    rows = np.empty(n, vertex_dtype)
    rows.view("<f4").reshape(n, len(names))[:] = np.concatenate(columns, axis=1)
    header = "".join(["ply\nformat binary_little_endian 1.0\n", f"element vertex {n}\n",
                      *(f"property float {name}\n" for name in names), "end_header\n"]).encode("ascii")
    write_file_atomically(path, [header, rows])
    log.info("wrote %d Gaussians (SH degree %d) to %s: %d bytes", n, cloud.sh_degree, path, len(header) + rows.nbytes)
    return path


def f_rest_count(path: Path, names: Iterable[str]) -> int:
    """How many ``f_rest_i`` properties ``names`` holds (0, 9, 24 or 45, numbered from 0)."""
    rest = sorted(name for name in names if name.startswith("f_rest_"))
    count = len(rest)
    if count not in (3 * c for c in REST_COEFFS) or set(rest) != {f"f_rest_{i}" for i in range(count)}:
        raise _bad(path, f"the splat has {count} f_rest properties, expected f_rest_0 .. f_rest_N-1 with N "
                         "= 0, 9, 24 or 45 (SH degree 0..3)")
    return count


def cloud_from_columns(path: Path, build: dict[str, Any]) -> GaussianCloud:
    """A :class:`GaussianCloud` from read arrays; a violation becomes an :class:`ImportFormatError` on ``path``."""
    try:
        return GaussianCloud(**build)
    except ImportFormatError:
        raise
    except InputError as exc:
        raise _bad(path, exc.problem, exc.hint) from None


def read_ply(path: str | os.PathLike[str]) -> GaussianCloud:
    """Read a 3DGS PLY (INRIA property set; a PlayCanvas compressed PLY is decompressed)."""
    path = Path(path)
    _, elements = read_ply_elements(path, ["vertex"])
    vertex = elements.get("vertex")
    if vertex is None:
        raise _bad(path, "the PLY has no 'vertex' element", "a 3DGS PLY stores one Gaussian per vertex")
    names = vertex.dtype.names or ()
    if "packed_position" in names:
        from engine.splat.compressed import read_compressed_ply

        return read_compressed_ply(path)
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        raise _bad(path, f"the vertex element lacks the 3DGS properties {', '.join(missing)}",
                   "is this a Gaussian splat PLY? (a mesh or point cloud PLY has no opacity, scales or rotations)")
    n = len(vertex)
    rest = f_rest_count(path, names)

    def stack(columns: Iterable[str]) -> np.ndarray:
        return np.stack([vertex[name].astype(np.float32) for name in columns], axis=1)

    normals = None
    if all(name in names for name in _NORMALS):
        normals = stack(_NORMALS)
        if not normals.any():
            normals = None  # INRIA writes zeros: no normals
    cloud = cloud_from_columns(path, {
        "means": stack(("x", "y", "z")),
        "scales_log": stack(("scale_0", "scale_1", "scale_2")),
        "quats": stack(("rot_0", "rot_1", "rot_2", "rot_3")),
        "opacity_logit": vertex["opacity"].astype(np.float32),
        "sh_dc": stack(("f_dc_0", "f_dc_1", "f_dc_2")),
        "sh_rest": (stack(f"f_rest_{i}" for i in range(rest)).reshape(n, 3, rest // 3).transpose(0, 2, 1)
                    if rest else None),
        "normals": normals,
    })
    log.info("read %d Gaussians (SH degree %d) from %s", cloud.count, cloud.sh_degree, path)
    return cloud
