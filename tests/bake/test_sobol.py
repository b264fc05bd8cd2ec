"""The tracer's Owen-scrambled Sobol' points (``sobol_2d``): a (0, 2)-sequence before and after
scrambling, uniform marginals at any count, decorrelated seeds, texels and dimension pairs.
(The CPU against the CUDA simulator: tests/bake/test_kernels_cuda_sim.py; the variance it saves
in the integrator: tests/bake/test_integrate.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from engine.bake import kernels

MASK32 = (1 << 32) - 1


def elementary_interval_counts(x: np.ndarray, y: np.ndarray, k: int) -> list[np.ndarray]:
    """For 32-bit words x, y (fractions x / 2³²): per split a + b = k, the number of points in each
    of the 2^k elementary intervals [i/2^a, (i+1)/2^a) × [j/2^b, (j+1)/2^b)."""
    counts = []
    for a in range(k + 1):
        b = k - a
        cell = ((x >> (32 - a)) << b) | (y >> (32 - b)) if a < 32 else x
        counts.append(np.bincount(cell.astype(np.int64), minlength=1 << k))
    return counts


def words(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 points in [0, 1)² (24-bit fractions) back to 32-bit words."""
    bits = np.round(points.astype(np.float64) * 2.0**24).astype(np.int64)
    assert np.all((bits >= 0) & (bits < 1 << 24)) and np.all(bits == points.astype(np.float64) * 2.0**24)
    return bits[:, 0] << 8, bits[:, 1] << 8


def ks_uniform(u: np.ndarray) -> float:
    """Kolmogorov–Smirnov distance of the samples ``u`` from the uniform distribution on [0, 1)."""
    s = np.sort(u.astype(np.float64))
    n = len(s)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - s), np.max(s - (i - 1) / n)))


def test_raw_sobol_words_are_the_first_two_sobol_dimensions() -> None:
    raw = kernels.sobol_bits_cpu(np.arange(8))
    fractions = raw[:, :2] / 2.0**32
    np.testing.assert_array_equal(fractions[:, 0], [0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875])
    # natural (not Gray-code) order: point i is the XOR of v_k over the set bits k of i
    np.testing.assert_array_equal(fractions[:, 1], [0, 0.5, 0.75, 0.25, 0.625, 0.125, 0.375, 0.875])
    assert raw.min() >= 0 and raw[:, :2].max() <= MASK32


@pytest.mark.parametrize("k", [4, 8, 12])
def test_raw_sobol_is_a_0_2_sequence(k: int) -> None:
    """Every aligned block of 2^k points holds one point in each elementary interval of volume 2^-k."""
    for start in (0, 5 << k):
        raw = kernels.sobol_bits_cpu(np.arange(start, start + (1 << k)))
        for counts in elementary_interval_counts(raw[:, 0], raw[:, 1], k):
            np.testing.assert_array_equal(counts, 1)


def test_owen_scramble_is_a_nested_permutation() -> None:
    """A bijection of 32-bit words whose first j output bits depend only on the first j input bits
    (bits from the top), and whose bit j flips, across seeds, at random given the bits before it."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 1 << 32, 4096, dtype=np.int64)
    seeds = rng.integers(0, 1 << 32, 4096, dtype=np.int64)
    out = kernels.sobol_bits_cpu(x, 0x9E3779B9)[:, 2]
    assert out.min() >= 0 and out.max() <= MASK32
    assert len(np.unique(out)) == len(np.unique(x))  # injective on this sample
    assert np.mean(kernels.sobol_bits_cpu(x, 0x9E3779BA)[:, 2] == out) < 0.01  # the seed matters
    out = kernels.sobol_bits_cpu(x, seeds)[:, 2]
    for j in (0, 3, 11, 23):
        bit = 31 - j
        # the output's bit j is the input's, flipped by a fair coin per seed
        assert 0.45 < np.mean(((out ^ x) >> bit) & 1) < 0.55
        # flipping input bit j leaves the first j output bits alone and flips bit j itself
        flipped = kernels.sobol_bits_cpu(x ^ (1 << bit), seeds)[:, 2]
        keep = ~((1 << (bit + 1)) - 1) & MASK32
        np.testing.assert_array_equal(flipped & keep, out & keep)
        np.testing.assert_array_equal(((flipped ^ out) >> bit) & 1, 1)
        # the next bit then changes or not at random (a new coin for the other branch)
        assert 0.4 < np.mean(((flipped ^ out) >> (bit - 1)) & 1) < 0.6


@pytest.mark.parametrize("k", [1, 4, 8, 10])
def test_scrambled_points_of_one_texel_are_stratified(k: int) -> None:
    """Owen scrambling and the index shuffle keep the (0, 2)-net property: for every seed, texel and
    pair, any aligned block of 2^k samples has one point in each elementary interval."""
    n = 1 << k
    for seed, texel, pair, start in [(0, 0, 0, 0), (7, 12345, 1, 0), (99, 1 << 33, 5, 0), (3, 42, 2, 3 * n)]:
        points = kernels.sobol_2d_cpu(seed, texel, np.arange(start, start + n), pair)
        assert points.dtype == np.float32 and np.all((points >= 0) & (points < 1))
        x, y = words(points)
        for counts in elementary_interval_counts(x, y, k):
            np.testing.assert_array_equal(counts, 1)


def test_marginals_are_uniform_at_any_count() -> None:
    # one texel, a count that is not a power of two: far closer to uniform than random points
    for n in (100, 1000, 777):
        points = kernels.sobol_2d_cpu(11, 5, np.arange(n), 3)
        for c in range(2):
            assert ks_uniform(points[:, c]) < 4.0 / n
    # pooled over 20,000 texels, three samples each: each point alone is uniform (KS at 99.9 %)
    texels = np.repeat(np.arange(20000), 3)
    samples = np.tile(np.arange(3), 20000)
    points = kernels.sobol_2d_cpu(2, texels, samples, 0)
    for c in range(2):
        assert ks_uniform(points[:, c]) < 1.95 / np.sqrt(len(points))
    # and the two coordinates fill the square evenly (chi-squared over 8 × 8 cells)
    cells = np.bincount((points[:, 0] * 8).astype(int) * 8 + (points[:, 1] * 8).astype(int), minlength=64)
    expected = len(points) / 64
    assert np.sum((cells - expected) ** 2 / expected) < 120.0  # 63 degrees of freedom: p ≈ 1e-5


def test_seeds_texels_and_pairs_give_different_points() -> None:
    samples = np.arange(64)
    base = kernels.sobol_2d_cpu(1, 10, samples, 0)
    np.testing.assert_array_equal(base, kernels.sobol_2d_cpu(1, 10, samples, 0))  # deterministic
    for other in (kernels.sobol_2d_cpu(2, 10, samples, 0), kernels.sobol_2d_cpu(1, 11, samples, 0),
                  kernels.sobol_2d_cpu(1, 10 + (1 << 32), samples, 0), kernels.sobol_2d_cpu(1, 10, samples, 1)):
        assert np.mean(other == base) < 0.05
    # the pairs of one texel are decorrelated: the shuffles differ, so sample s of pair 0 and of
    # pair 1 are not the same Sobol' index (equal-index pairs would be strongly correlated)
    texels = np.repeat(np.arange(500), 16)
    s = np.tile(np.arange(16), 500)
    p0 = kernels.sobol_2d_cpu(4, texels, s, 0)
    p1 = kernels.sobol_2d_cpu(4, texels, s, 1)
    for a in range(2):
        for b in range(2):
            assert abs(np.corrcoef(p0[:, a], p1[:, b])[0, 1]) < 0.05
    # 4D: over 16 samples, the cells of pair 0's x and pair 1's x are not a fixed permutation
    r0 = (p0[:, 0] * 4).astype(int).reshape(500, 16)
    r1 = (p1[:, 0] * 4).astype(int).reshape(500, 16)
    joint = np.bincount((r0 * 4 + r1).ravel(), minlength=16)
    assert joint.min() > 0.6 * joint.mean()
