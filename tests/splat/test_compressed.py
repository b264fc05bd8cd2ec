"""PlayCanvas compressed PLY: quantisation within the stated bounds, layout and size, Morton chunks,
bad files, and byte-for-byte agreement with PlayCanvas splat-transform (its reader and its writer)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.errors import ConfigError, ImportFormatError
from engine.splat.compressed import (
    CHUNK_SIZE,
    compressed_ply_size,
    morton_order,
    read_compressed_ply,
    write_compressed_ply,
)
from engine.splat.ply import SH_C0, GaussianCloud, read_ply, write_ply
from tests.splat.test_ply import random_cloud, read_csv, splat_transform


def chunk_range(values: np.ndarray) -> np.ndarray:
    """Each row's chunk range (max − min over its 256-row chunk), same shape as ``values``."""
    starts = np.arange(0, len(values), CHUNK_SIZE)
    span = np.maximum.reduceat(values, starts, axis=0) - np.minimum.reduceat(values, starts, axis=0)
    return np.repeat(span, CHUNK_SIZE, axis=0)[: len(values)].astype(np.float64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def unit_quats(q: np.ndarray) -> np.ndarray:
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def assert_within_bounds(original: GaussianCloud, back: GaussianCloud) -> None:
    """``back`` (a decoded compressed file) against ``original`` in file order, with the module's error bounds."""
    eps = 1e-6
    steps = np.array([2047, 1023, 2047], np.float64)  # 11, 10, 11 bits
    for name in ("means", "scales_log"):
        want, got = getattr(original, name).astype(np.float64), getattr(back, name).astype(np.float64)
        bound = np.maximum(chunk_range(getattr(original, name)) / (2 * steps), 1e-5) + eps * (1 + np.abs(want))
        assert (np.abs(got - want) <= bound).all(), name
    colors = original.sh_dc.astype(np.float64) * SH_C0 + 0.5
    bound = chunk_range(colors) / (2 * 255 * SH_C0) + eps
    assert (np.abs(back.sh_dc - original.sh_dc) <= bound).all(), "sh_dc"
    assert (np.abs(sigmoid(back.opacity_logit) - sigmoid(original.opacity_logit)) <= 1 / 510 + eps).all()
    # quaternions up to sign: kept components within √2/2046, the rebuilt one within 3× that (m ≥ 1/2)
    want, got = unit_quats(original.quats.astype(np.float64)), back.quats.astype(np.float64)
    got *= np.sign((want * got).sum(axis=1))[:, None]
    assert (np.abs(got - want) <= 3 * math.sqrt(2) / 2046 + eps).all(), "quats"
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    rest = np.clip(original.sh_rest.astype(np.float64), -4, 4)
    inner = np.abs(rest) < 4 - 1 / 32
    error = np.abs(back.sh_rest - rest)
    assert (error[inner] <= 1 / 64 + eps).all() and (error <= 1 / 32 + eps).all(), "sh_rest"


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_round_trip_within_quantisation_bounds(tmp_path: Path, sh_degree: int) -> None:
    cloud = random_cloud(1000, sh_degree)  # 3 full chunks and a partial one
    # a few extremes: opacities that saturate 8 bits, SH beyond ±4, scales beyond ±20
    extreme = GaussianCloud(
        cloud.means, np.where(np.arange(1000)[:, None] == 7, 25.0, cloud.scales_log), cloud.quats,
        np.where(np.arange(1000) % 97 == 0, 30.0, np.where(np.arange(1000) % 89 == 0, -30.0, cloud.opacity_logit)),
        cloud.sh_dc, cloud.sh_rest * (1 + 9 * (np.arange(1000) % 101 == 0))[:, None, None],
    )
    path = write_compressed_ply(tmp_path / "splat.compressed.ply", extreme)
    back = read_compressed_ply(path)
    assert back.count == 1000 and back.sh_degree == sh_degree and back.normals is None
    in_file_order = extreme.take(morton_order(extreme.means))
    clamped = GaussianCloud(in_file_order.means, np.minimum(in_file_order.scales_log, 20.0), in_file_order.quats,
                            in_file_order.opacity_logit, in_file_order.sh_dc, in_file_order.sh_rest)
    assert_within_bounds(clamped, back)
    assert np.isfinite(back.opacity_logit).all() and np.abs(back.opacity_logit).max() < 6.3
    if sh_degree:
        assert back.sh_rest.min() == -4 and back.sh_rest.max() == 4


def test_layout_size_and_bytes_per_gaussian(tmp_path: Path) -> None:
    cloud = random_cloud(1000, 3)
    data = write_compressed_ply(tmp_path / "a.compressed.ply", cloud).read_bytes()
    header, body = data.split(b"end_header\n", 1)
    lines = header.decode().splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    chunk = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z", "min_scale_x", "min_scale_y", "min_scale_z",
             "max_scale_x", "max_scale_y", "max_scale_z", "min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
    expected = ["element chunk 4", *(f"property float {p}" for p in chunk), "element vertex 1000",
                *(f"property uint packed_{p}" for p in ("position", "rotation", "scale", "color")),
                "element sh 1000", *(f"property uchar f_rest_{i}" for i in range(45))]
    assert [line for line in lines[2:] if not line.startswith("comment")] == expected
    assert len(body) == 4 * 72 + 1000 * (16 + 45)
    assert len(data) == compressed_ply_size(1000, 3)
    # a million Gaussians: ~16.3 MB at SH degree 0 (the 16 bytes of packed words + the chunk bounds)
    assert 16.28e6 < compressed_ply_size(1_000_000, 0) < 16.29e6
    assert 61.28e6 < compressed_ply_size(1_000_000, 3) < 61.29e6
    smaller = write_compressed_ply(tmp_path / "b.compressed.ply", cloud, max_sh_degree=1)
    back = read_compressed_ply(smaller)
    assert back.sh_degree == 1 and smaller.stat().st_size == compressed_ply_size(1000, 1)
    order = morton_order(cloud.means)
    assert np.abs(back.sh_rest - cloud.sh_rest[order, :3]).max() <= 1 / 32
    with pytest.raises(ConfigError, match="max_sh_degree"):
        write_compressed_ply(tmp_path / "c.compressed.ply", cloud, max_sh_degree=4)


def test_morton_order_makes_compact_chunks(tmp_path: Path) -> None:
    cloud = random_cloud(256 * 16, 0, seed=5)
    order = morton_order(cloud.means)
    assert np.array_equal(np.sort(order), np.arange(cloud.count))

    def mean_chunk_volume(means: np.ndarray) -> float:
        chunks = means.reshape(-1, CHUNK_SIZE, 3)
        return float(np.prod(chunks.max(axis=1) - chunks.min(axis=1), axis=1).mean())

    assert mean_chunk_volume(cloud.means[order]) < 0.2 * mean_chunk_volume(cloud.means)
    # finer chunks, finer positions: the sorted file's position error is far below the unsorted one's
    sorted_back = read_compressed_ply(write_compressed_ply(tmp_path / "s.compressed.ply", cloud))
    plain_back = read_compressed_ply(write_compressed_ply(tmp_path / "u.compressed.ply", cloud, sort=False))
    sorted_error = np.abs(sorted_back.means - cloud.means[order]).mean()
    plain_error = np.abs(plain_back.means - cloud.means).mean()  # unsorted: the file keeps the cloud's order
    assert plain_error < 2e-4 and sorted_error < 0.6 * plain_error


def test_flat_chunks_empty_clouds_and_read_ply_dispatch(tmp_path: Path) -> None:
    n = 300
    same = GaussianCloud(np.tile([1.5, -2.0, 0.25], (n, 1)), np.full((n, 3), -3.0), np.tile([0.0, 0, 0, 2], (n, 1)),
                         np.zeros(n), np.zeros((n, 3)))
    path = write_compressed_ply(tmp_path / "same.compressed.ply", same)
    back = read_compressed_ply(path)
    assert np.array_equal(back.means, same.means) and np.array_equal(back.scales_log, same.scales_log)
    # 0 is not on the 10-bit grid of the kept components: the nearest step is √2/2046 away
    assert np.allclose(back.quats, [0, 0, 0, 1], atol=math.sqrt(2) / 2046 + 1e-6)
    assert np.allclose(back.sh_dc, 0, atol=1e-6)
    # read_ply recognises a compressed PLY and decompresses it
    via_read_ply = read_ply(path)
    assert np.array_equal(via_read_ply.means, back.means) and np.array_equal(via_read_ply.quats, back.quats)
    empty = read_compressed_ply(write_compressed_ply(tmp_path / "empty.compressed.ply", same.take([])))
    assert empty.count == 0 and empty.means.shape == (0, 3)


def _compressed(tmp_path: Path) -> bytes:
    return write_compressed_ply(tmp_path / "good.compressed.ply", random_cloud(300, 1)).read_bytes()


def _edit(data: bytes, old: bytes, new: bytes) -> bytes:
    head, body = data.split(b"end_header\n", 1)
    assert old in head
    return head.replace(old, new) + b"end_header\n" + body


BAD_FILES = {
    "truncated": (lambda d: d[:-100], "the file is truncated: element 'sh' needs"),
    "chunk count": (lambda d: _edit(d, b"element chunk 2", b"element chunk 1"),
                    "has 1 chunks for 300 Gaussians, expected 2"),
    "missing packed_color": (lambda d: _edit(d, b"property uint packed_color", b"property uint packed_colour"),
                             "lacks the properties packed_color"),
    "signed packed words": (lambda d: _edit(d, b"property uint packed_scale", b"property int packed_scale"),
                            "packed_scale must be 'uint' properties"),
    "sh rows": (lambda d: _edit(d, b"element sh 300", b"element sh 299"), "'sh' element has 299 rows"),
    "sh columns": (lambda d: _edit(d, b"property uchar f_rest_8\n", b"property uchar f_rest_10\n"),
                   "f_rest properties, expected"),
    "no chunks": (lambda d: _edit(d, b"element chunk", b"element block"), "no 'chunk' element"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_compressed_files_raise_import_format_error(tmp_path: Path, case: str) -> None:
    make, message = BAD_FILES[case]
    path = tmp_path / "bad.compressed.ply"
    path.write_bytes(make(_compressed(tmp_path)))
    with pytest.raises(ImportFormatError) as info:
        read_compressed_ply(path)
    assert str(path) in str(info.value) and message in str(info.value)


# --------------------------------------------------------------------------- PlayCanvas splat-transform


@pytest.mark.external
@pytest.mark.parametrize("sh_degree", [0, 3])
def test_splat_transform_decodes_our_file_as_we_do(tmp_path: Path, sh_degree: int) -> None:
    cloud = random_cloud(1000, sh_degree, seed=11)
    ours = write_compressed_ply(tmp_path / "ours.compressed.ply", cloud)
    splat_transform(ours, tmp_path / "seen.csv")
    seen = read_csv(tmp_path / "seen.csv")
    back = read_compressed_ply(ours)
    n, k = back.count, back.sh_rest.shape[1]
    assert len(seen["x"]) == 1000
    expected = {"x": back.means[:, 0], "y": back.means[:, 1], "z": back.means[:, 2],
                **{f"f_dc_{c}": back.sh_dc[:, c] for c in range(3)},
                **{f"rot_{c}": back.quats[:, c] for c in range(4)},
                **{f"scale_{c}": back.scales_log[:, c] for c in range(3)},
                **dict(zip((f"f_rest_{i}" for i in range(3 * k)),
                           back.sh_rest.transpose(0, 2, 1).reshape(n, 3 * k).T, strict=True))}
    assert sorted(seen) == sorted([*expected, "opacity"])
    for name, values in expected.items():
        assert np.array_equal(seen[name], values), name
    # opacity: the same except where the 8-bit value is 0 or 255 (they decode ±inf, we stay finite)
    finite = np.isfinite(seen["opacity"])
    assert finite.mean() > 0.9
    np.testing.assert_allclose(seen["opacity"][finite], back.opacity_logit[finite], rtol=1e-6, atol=1e-6)
    assert (np.sign(seen["opacity"][~finite]) == np.sign(back.opacity_logit[~finite])).all()


@pytest.mark.external
def test_our_writer_matches_splat_transform_byte_for_byte(tmp_path: Path) -> None:
    """splat-transform compresses our PLY into the same chunk bounds and packed words as our writer, and
    we decode its file exactly as it does. (Uniform random positions: no two Gaussians share a cell of
    its 10-bit Morton grid, so its order and our 21-bit one agree.)"""
    cloud = random_cloud(3000, 3, seed=2)
    splat_transform(write_ply(tmp_path / "ours.ply", cloud), tmp_path / "theirs.compressed.ply")
    ours = write_compressed_ply(tmp_path / "ours.compressed.ply", cloud)
    their_head, their_body = (tmp_path / "theirs.compressed.ply").read_bytes().split(b"end_header\n", 1)
    our_head, our_body = ours.read_bytes().split(b"end_header\n", 1)
    assert [line for line in their_head.splitlines() if not line.startswith(b"comment")] == \
        [line for line in our_head.splitlines() if not line.startswith(b"comment")]
    chunks = 12 * 72
    assert their_body[:chunks] == our_body[:chunks], "chunk bounds differ"
    their_words = np.frombuffer(their_body[chunks:chunks + 3000 * 16], "<u4").reshape(-1, 4)
    our_words = np.frombuffer(our_body[chunks:chunks + 3000 * 16], "<u4").reshape(-1, 4)
    for column, name in enumerate(("position", "rotation", "scale", "color")):
        assert np.array_equal(their_words[:, column], our_words[:, column]), f"packed_{name} differs"
    assert their_body[chunks + 3000 * 16:] == our_body[chunks + 3000 * 16:], "sh bytes differ"

    splat_transform(tmp_path / "theirs.compressed.ply", tmp_path / "theirs.csv")
    seen = read_csv(tmp_path / "theirs.csv")
    back = read_compressed_ply(tmp_path / "theirs.compressed.ply")
    assert np.array_equal(seen["x"], back.means[:, 0]) and np.array_equal(seen["rot_2"], back.quats[:, 2])
    assert np.array_equal(seen["f_rest_44"], back.sh_rest[:, 14, 2])
