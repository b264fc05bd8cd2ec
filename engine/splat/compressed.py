"""PlayCanvas compressed PLY: the quantised splat file that SuperSplat and the PlayCanvas engine load.

Layout (a binary little-endian PLY, our own numpy implementation of the format as
PlayCanvas's splat-transform reads and writes it):

* The Gaussians are cut into chunks of 256 consecutive rows (the last chunk may be shorter).
  ``element chunk`` holds one row of float bounds per chunk: ``min_x min_y min_z max_x max_y
  max_z``, ``min_scale_x .. max_scale_z`` (log scales, clamped to ±20), and in the current
  version ``min_r min_g min_b max_r max_g max_b`` (colour ``0.5 + SH_C0 * f_dc``; files
  without them store the colour in [0, 1] directly, and we read those too).
* ``element vertex`` holds four ``uint`` per Gaussian, each value a fraction of its chunk's
  [min, max] range (``round(t * (2^bits - 1))``):

  - ``packed_position``: x 11 bits (31..21), y 10 bits (20..11), z 11 bits (10..0);
  - ``packed_scale``: the three log scales, same 11/10/11 split;
  - ``packed_color``: r, g, b (8 bits each, from the high byte down) and the opacity after
    the sigmoid in the low byte (absolute, not chunk-relative);
  - ``packed_rotation``: "smallest three": the index of the largest-magnitude component of the
    unit quaternion ``(rot_0..rot_3)`` in bits 31..30, made positive, and the other three in
    order, 10 bits each, mapped from [-1/√2, 1/√2] to [0, 1].
* ``element sh`` (only for SH degree ≥ 1): one ``uchar`` per higher-order coefficient,
  ``f_rest_i`` in the INRIA channel-major order, ``clamp(trunc((v / 8 + 0.5) * 256), 0, 255)``;
  it decodes as 0 → −4, 255 → +4, else ``((q + 0.5) / 256 − 0.5) * 8``.

The writer sorts the Gaussians along a Morton (Z-order) curve first, as PlayCanvas does, so
each chunk is spatially compact and its bounds are tight. Size: 16 bytes per Gaussian plus 72
bytes per 256 (≈ 16.3 bytes) at SH degree 0, plus 9/24/45 bytes at SH degree 1/2/3.

Quantisation error bounds (per Gaussian, against its chunk's range ``R = max − min``):
positions and log scales ``R / 4094`` (x, z) and ``R / 2046`` (y); colour ``R / 510`` (so
``f_dc`` within ``R / (510 · SH_C0)``); opacity ``1 / 510`` after the sigmoid; each
quaternion component about ``√2 / 2046`` (the largest one is rebuilt from the unit norm);
higher-order SH ``1 / 64`` inside (−4, 4) (``1 / 32`` in the end bins, clamped outside).
Opacities of exactly 0 or 255/255 decode to logits of ±6.2 (half a step inside) rather than
±infinity.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from engine import __version__
from engine.errors import ConfigError, ImportFormatError
from engine.splat.ply import (
    REST_COEFFS,
    SH_C0,
    GaussianCloud,
    cloud_from_columns,
    f_rest_count,
    read_ply_elements,
    sh_rest_count,
    write_file_atomically,
)

log = logging.getLogger(__name__)

CHUNK_SIZE = 256
CHUNK_PROPERTIES = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                    "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z")
CHUNK_COLOR_PROPERTIES = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
VERTEX_PROPERTIES = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
SCALE_LIMIT = 20.0  # log-scale chunk bounds are clamped to ±20 (PlayCanvas does: some trainers write inf)
MIN_RANGE = 1e-5  # a chunk range below this stores every value at the chunk minimum
SH_SPAN = 8.0  # higher-order SH coefficients are stored over [-4, 4]

_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])  # quaternion components kept, by largest index
_BITS_111011 = ((21, 11), (11, 10), (0, 11))  # (shift, bits) of x, y, z in packed_position and packed_scale


# --------------------------------------------------------------------------- ordering


def _spread_bits_3(values: np.ndarray) -> np.ndarray:
    """Insert two zero bits between the low 21 bits of each uint64 (for 3D Morton codes)."""
    x = values.astype(np.uint64) & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                        (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249)):
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def morton_order(means: np.ndarray) -> np.ndarray:
    """Indices that sort ``means`` (N, 3) along a 3D Morton curve (21 bits per axis over their bounds).

    Gaussians in distinct cells of a 1024³ grid over the bounds come in PlayCanvas's order; within
    one such cell, where PlayCanvas keeps the input order (or re-sorts a crowded cell over its own
    bounds), the finer bits order them.
    """
    points = np.asarray(means, dtype=np.float64).reshape(-1, 3)
    if len(points) == 0:
        return np.zeros(0, np.int64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    extent = hi - lo
    # 2^21 cells per axis, clamped: the top 10 bits are PlayCanvas's own 10-bit cells exactly
    scale = np.where(extent > 0, 2.0**21 / np.where(extent > 0, extent, 1.0), 0.0)
    cells = np.clip((points - lo) * scale, 0, 2**21 - 1).astype(np.uint64)
    codes = (_spread_bits_3(cells[:, 0]) | (_spread_bits_3(cells[:, 1]) << np.uint64(1))
             | (_spread_bits_3(cells[:, 2]) << np.uint64(2)))
    return np.argsort(codes, kind="stable")


# --------------------------------------------------------------------------- packing helpers


def _unorm(t: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.floor(t * top + 0.5), 0, top).astype(np.uint32)


def _from_unorm(packed: np.ndarray, shift: int, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return ((packed >> np.uint32(shift)) & np.uint32(top)).astype(np.float64) / top


def _chunk_bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-chunk min and max of ``values`` (N, D): two (C, D) arrays."""
    starts = np.arange(0, len(values), CHUNK_SIZE)
    return np.minimum.reduceat(values, starts, axis=0), np.maximum.reduceat(values, starts, axis=0)


def _fractions(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Where each row of ``values`` lies in its chunk's [lo, hi], in [0, 1] (0 for a range under MIN_RANGE)."""
    lo, hi = np.repeat(lo, CHUNK_SIZE, axis=0)[: len(values)], np.repeat(hi, CHUNK_SIZE, axis=0)[: len(values)]
    span = hi - lo
    flat = span < MIN_RANGE
    return np.clip(np.where(flat, 0.0, (values - lo) / np.where(flat, 1.0, span)), 0.0, 1.0)


def _pack_111011(t: np.ndarray) -> np.ndarray:
    return (_unorm(t[:, 0], 11) << np.uint32(21)) | (_unorm(t[:, 1], 10) << np.uint32(11)) | _unorm(t[:, 2], 11)


def _unpack_111011(packed: np.ndarray) -> np.ndarray:
    return np.stack([_from_unorm(packed, shift, bits) for shift, bits in _BITS_111011], axis=1)


def _pack_rotation(quats: np.ndarray) -> np.ndarray:
    q = quats.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    rows = np.arange(len(q))
    largest = np.argmax(np.abs(q), axis=1)  # first of equals, like PlayCanvas
    q *= np.where(q[rows, largest] < 0, -1.0, 1.0)[:, None]
    kept = q[rows[:, None], _OTHERS[largest]] * (math.sqrt(2) * 0.5) + 0.5
    packed = largest.astype(np.uint32) << np.uint32(30)
    for slot, shift in enumerate((20, 10, 0)):
        packed |= _unorm(kept[:, slot], 10) << np.uint32(shift)
    return packed


def _unpack_rotation(packed: np.ndarray) -> np.ndarray:
    norm = 1.0 / (math.sqrt(2) * 0.5)
    kept = np.stack([(_from_unorm(packed, shift, 10) - 0.5) * norm for shift in (20, 10, 0)], axis=1)
    largest = (packed >> np.uint32(30)).astype(np.int64)
    rows = np.arange(len(packed))
    q = np.empty((len(packed), 4))
    q[rows[:, None], _OTHERS[largest]] = kept
    q[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - (kept * kept).sum(axis=1)))
    return q


def _lerp(lo: np.ndarray, hi: np.ndarray, t: np.ndarray, rows: np.ndarray) -> np.ndarray:
    lo, hi = lo[rows].astype(np.float64), hi[rows].astype(np.float64)
    return lo * (1 - t) + hi * t


# --------------------------------------------------------------------------- files


def _header(n: int, rest: int) -> bytes:
    chunks = -(-n // CHUNK_SIZE)
    lines = ["ply", "format binary_little_endian 1.0",
             f"comment Generated by optimizer-engine {__version__} (PlayCanvas compressed PLY)",
             f"element chunk {chunks}", *(f"property float {p}" for p in CHUNK_PROPERTIES + CHUNK_COLOR_PROPERTIES),
             f"element vertex {n}", *(f"property uint {p}" for p in VERTEX_PROPERTIES)]
    if rest:
        lines += [f"element sh {n}", *(f"property uchar f_rest_{i}" for i in range(rest))]
    return ("\n".join([*lines, "end_header"]) + "\n").encode("ascii")


def compressed_ply_size(count: int, sh_degree: int) -> int:
    """Bytes of the compressed PLY that :func:`write_compressed_ply` writes for ``count`` Gaussians."""
    rest = 3 * sh_rest_count(sh_degree)
    chunks = -(-count // CHUNK_SIZE)
    return len(_header(count, rest)) + chunks * 4 * (len(CHUNK_PROPERTIES) + len(CHUNK_COLOR_PROPERTIES)) \
        + count * (4 * len(VERTEX_PROPERTIES) + rest)


def write_compressed_ply(
    path: str | os.PathLike[str], cloud: GaussianCloud, *, sort: bool = True, max_sh_degree: int | None = None
) -> Path:
    """Write ``cloud`` as a PlayCanvas compressed PLY; returns the path.

    ``sort`` puts the Gaussians in Morton order first (:func:`morton_order`: compact chunks, so
    finer quantisation); without it the file keeps the cloud's order. ``max_sh_degree`` drops
    the SH bands above it (each band costs bytes: 9, 15 and 21 per Gaussian for bands 1, 2, 3).
    """
    path = Path(path)
    if max_sh_degree is not None and max_sh_degree not in range(len(REST_COEFFS)):
        raise ConfigError(f"max_sh_degree is {max_sh_degree!r}, expected 0, 1, 2 or 3", where="compressed PLY export")
    if sort:
        cloud = cloud.take(morton_order(cloud.means))
    n = cloud.count
    k = REST_COEFFS[min(cloud.sh_degree, 3 if max_sh_degree is None else max_sh_degree)]

    means = cloud.means
    scales = cloud.scales_log
    colors = cloud.sh_dc.astype(np.float64) * SH_C0 + 0.5
    if n:
        pos_lo, pos_hi = _chunk_bounds(means)
        scale_lo, scale_hi = (np.clip(b, -SCALE_LIMIT, SCALE_LIMIT) for b in _chunk_bounds(scales))
        col_lo, col_hi = (b.astype(np.float32) for b in _chunk_bounds(colors))
    else:
        pos_lo = pos_hi = scale_lo = scale_hi = col_lo = col_hi = np.zeros((0, 3), np.float32)
    chunks = np.concatenate([pos_lo, pos_hi, scale_lo, scale_hi, col_lo, col_hi], axis=1).astype("<f4")

    # Fractions are taken against the float32 bounds as stored, so the reader's lerp lands on them.
    f64 = np.float64
    alpha = 1.0 / (1.0 + np.exp(-cloud.opacity_logit.astype(f64)))
    col_t = _fractions(colors, col_lo.astype(f64), col_hi.astype(f64))
    vertex = np.empty((n, 4), "<u4")
    vertex[:, 0] = _pack_111011(_fractions(means.astype(f64), pos_lo.astype(f64), pos_hi.astype(f64)))
    vertex[:, 1] = _pack_rotation(cloud.quats)
    vertex[:, 2] = _pack_111011(_fractions(scales.astype(f64), scale_lo.astype(f64), scale_hi.astype(f64)))
    vertex[:, 3] = ((_unorm(col_t[:, 0], 8) << np.uint32(24)) | (_unorm(col_t[:, 1], 8) << np.uint32(16))
                    | (_unorm(col_t[:, 2], 8) << np.uint32(8)) | _unorm(alpha, 8))

    f_rest = cloud.sh_rest[:, :k].transpose(0, 2, 1).reshape(n, 3 * k).astype(f64)  # channel-major
    sh = np.clip(np.trunc((f_rest / SH_SPAN + 0.5) * 256), 0, 255).astype(np.uint8)

    header = _header(n, 3 * k)
    write_file_atomically(path, [header, chunks, vertex, sh])
    size = len(header) + chunks.nbytes + vertex.nbytes + sh.nbytes
    log.info("wrote %d Gaussians (SH degree %d) to %s: %d bytes, %.2f bytes per Gaussian",
             n, REST_COEFFS.index(k), path, size, size / max(n, 1))
    return path


def _bad(path: Path, problem: str, hint: str = "") -> ImportFormatError:
    return ImportFormatError(problem, where=str(path), hint=hint)


def read_compressed_ply(path: str | os.PathLike[str]) -> GaussianCloud:
    """Read and decompress a PlayCanvas compressed PLY (rows in file order)."""
    path = Path(path)
    _, elements = read_ply_elements(path, ["chunk", "vertex", "sh"])
    for name in ("chunk", "vertex"):
        if name not in elements:
            raise _bad(path, f"not a PlayCanvas compressed PLY: no {name!r} element")
    chunk, vertex = elements["chunk"], elements["vertex"]
    chunk_names, vertex_names = chunk.dtype.names or (), vertex.dtype.names or ()
    missing = [p for p in CHUNK_PROPERTIES if p not in chunk_names] + [p for p in VERTEX_PROPERTIES
                                                                       if p not in vertex_names]
    if missing:
        raise _bad(path, f"the compressed PLY lacks the properties {', '.join(missing)}")
    wrong = [p for p in VERTEX_PROPERTIES if vertex.dtype[p].kind != "u" or vertex.dtype[p].itemsize != 4]
    if wrong:
        raise _bad(path, f"the compressed PLY's {', '.join(wrong)} must be 'uint' properties")
    n = len(vertex)
    if len(chunk) != -(-n // CHUNK_SIZE):
        raise _bad(path, f"the compressed PLY has {len(chunk)} chunks for {n} Gaussians, expected "
                         f"{-(-n // CHUNK_SIZE)} (one per {CHUNK_SIZE})")
    has_colors = all(p in chunk_names for p in CHUNK_COLOR_PROPERTIES)

    def bounds(*names: str) -> np.ndarray:
        return np.stack([chunk[name].astype(np.float32) for name in names], axis=1)

    rows = np.arange(n) // CHUNK_SIZE
    packed = {name: vertex[name].astype(np.uint32) for name in VERTEX_PROPERTIES}
    means = _lerp(bounds("min_x", "min_y", "min_z"), bounds("max_x", "max_y", "max_z"),
                  _unpack_111011(packed["packed_position"]), rows)
    scales = _lerp(bounds("min_scale_x", "min_scale_y", "min_scale_z"),
                   bounds("max_scale_x", "max_scale_y", "max_scale_z"), _unpack_111011(packed["packed_scale"]), rows)
    color_t = np.stack([_from_unorm(packed["packed_color"], shift, 8) for shift in (24, 16, 8)], axis=1)
    colors = _lerp(bounds("min_r", "min_g", "min_b"), bounds("max_r", "max_g", "max_b"), color_t, rows) \
        if has_colors else color_t
    alpha = np.clip(_from_unorm(packed["packed_color"], 0, 8), 0.5 / 255, 254.5 / 255)

    sh_rest = None
    sh = elements.get("sh")
    if sh is not None:
        if len(sh) != n:
            raise _bad(path, f"the compressed PLY's 'sh' element has {len(sh)} rows for {n} Gaussians")
        rest = f_rest_count(path, sh.dtype.names or ())
        if rest:
            q = np.stack([sh[f"f_rest_{i}"].astype(np.float64) for i in range(rest)], axis=1)
            unit = np.where(q == 0, 0.0, np.where(q == 255, 1.0, (q + 0.5) / 256))
            sh_rest = ((unit - 0.5) * SH_SPAN).reshape(n, 3, rest // 3).transpose(0, 2, 1)

    cloud = cloud_from_columns(path, {
        "means": means, "scales_log": scales, "quats": _unpack_rotation(packed["packed_rotation"]),
        "opacity_logit": -np.log(1 / alpha - 1), "sh_dc": (colors - 0.5) / SH_C0, "sh_rest": sh_rest,
    })
    log.info("read %d Gaussians (SH degree %d) from compressed PLY %s", cloud.count, cloud.sh_degree, path)
    return cloud
