"""Sampling plan: the original size formula, detection probability, verifier seeds, deterministic draws, tiles."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from engine.errors import ConfigError, InputError
from engine.trust.sampling import (
    SEED_DOMAIN,
    SamplingPlan,
    TileGrid,
    crop_tiles,
    detection_probability,
    detection_probability_without_replacement,
    draw_sample,
    sample_size,
    verifier_seed,
)

KEYS = [bytes([k]) * 32 for k in range(1, 8)]  # seven verifiers' raw Ed25519 public keys (any 32 bytes will do)


@pytest.mark.parametrize(("complexity", "confidence", "n"), [
    (0.0, 0.9, 10),      # 10 · 1 · 1
    (1.0, 0.99, 57),     # 10 · 3 · 1.9 = 57 exactly (56.99999999999999 in floats)
    (0.5, 0.95, 30),     # 10 · 2 · 1.5
    (0.0, 0.95, 15),
    (1.0, 0.9, 30),
    (0.5, 0.92, 24),     # 24.000000000000004 in floats: must not become 25
    (0.3, 0.97, 28),     # 10 · 1.6 · 1.7 = 27.2 → 28
])
def test_sample_size_formula(complexity: float, confidence: float, n: int) -> None:
    assert sample_size(complexity, confidence) == n


def test_sample_size_default_confidence_and_validation() -> None:
    assert sample_size(0.0) == 15
    for complexity, confidence in [(-0.1, 0.95), (1.1, 0.95), (math.nan, 0.95), (True, 0.95), ("0.5", 0.95),
                                   (0.5, 0.89), (0.5, 1.0), (0.5, math.inf)]:
        with pytest.raises(ConfigError):
            sample_size(complexity, confidence)


def test_detection_probability() -> None:
    assert detection_probability(0.05, 30) == pytest.approx(1 - 0.95**30)
    assert detection_probability(0.05, 30) == pytest.approx(0.785361, abs=1e-6)
    assert detection_probability(0.0, 57) == 0.0
    assert detection_probability(1.0, 1) == 1.0
    assert detection_probability(0.2, 0) == 0.0
    for p, n in [(-0.1, 10), (1.5, 10), (0.1, -1), (0.1, 2.5)]:
        with pytest.raises(ConfigError):
            detection_probability(p, n)


@pytest.mark.parametrize(("defective", "units", "n"), [(0, 50, 10), (1, 50, 10), (5, 50, 10), (7, 20, 13),
                                                       (7, 20, 14), (50, 50, 1), (3, 1000, 57)])
def test_detection_without_replacement_is_the_hypergeometric_tail(defective: int, units: int, n: int) -> None:
    exact = 1 - math.comb(units - defective, n) / math.comb(units, n)
    assert detection_probability_without_replacement(defective, units, n) == pytest.approx(exact, abs=1e-12)
    # never below the binomial figure the reports quote
    assert exact >= detection_probability(defective / units, n) - 1e-12


def test_verifier_seed_format_and_separation() -> None:
    seed = verifier_seed("verif-0001", KEYS[0])
    ident = b"verif-0001"
    expected = hashlib.sha256(SEED_DOMAIN + b"\0" + len(ident).to_bytes(8, "big") + ident
                              + (32).to_bytes(8, "big") + KEYS[0]).digest()
    assert seed == int.from_bytes(expected[:8], "big")  # the documented format, recomputable by anyone
    assert 0 <= seed < 2**64
    assert verifier_seed("verif-0001", KEYS[0]) == seed
    seeds = {verifier_seed(f"verif-{i:04d}", key) for i in range(20) for key in KEYS}
    assert len(seeds) == 20 * len(KEYS)
    # length prefixes: moving a byte between the two inputs changes the seed
    assert verifier_seed("ab", b"c") != verifier_seed("a", b"bc")
    for vid, key in [("", KEYS[0]), (None, KEYS[0]), ("v", b""), ("v", "not bytes")]:
        with pytest.raises(InputError):
            verifier_seed(vid, key)


def test_draw_is_deterministic_and_recheckable() -> None:
    seed = verifier_seed("verif-42", KEYS[2])
    plan = draw_sample(seed, [3, 17, 42, 64], (120, 200, 32), 30)
    assert plan == draw_sample(seed, [3, 17, 42, 64], TileGrid(120, 200, 32), 30)
    assert plan.units == 4 * 4 * 7 and plan.n == 30 and len(plan.chosen) == 30
    assert len(set(plan.chosen)) == 30  # without replacement
    assert {v for v, _ in plan.chosen} <= {3, 17, 42, 64}
    assert all(0 <= t < 28 for _, t in plan.chosen)
    # a checker who gets the disclosure (seed, views, grid) recomputes the same sample
    disclosed = json.loads(json.dumps(plan.to_dict()))
    again = draw_sample(disclosed["seed"], disclosed["views"], TileGrid(**disclosed["grid"]), disclosed["n"])
    assert again.chosen == tuple(tuple(pair) for pair in disclosed["chosen"]) == plan.chosen


def test_the_draw_is_pinned() -> None:
    """The same seed must give the same sample on every peer and numpy release (PCG64's stream guarantee):
    if this literal ever changes, old votes can no longer be re-checked."""
    plan = draw_sample(12345, 10, 10, 5)
    assert plan.chosen == PINNED_CHOSEN
    # the documented rule, computed another way: the 5 smallest of 100 raw PCG64 outputs, unit = view·10 + tile
    keys = np.random.PCG64(12345).random_raw(100)
    assert [v * 10 + t for v, t in plan.chosen] == sorted(np.argsort(keys)[:5].tolist())


PINNED_CHOSEN = ((4, 8), (5, 1), (8, 4), (9, 0), (9, 8))


def test_different_verifiers_draw_different_samples() -> None:
    plans = [draw_sample(verifier_seed("verif-7", key), 20, 64, 30) for key in KEYS]
    sets = [set(p.chosen) for p in plans]
    assert len({frozenset(s) for s in sets}) == len(KEYS)
    # two independent samples of 30 out of 1280 share about 30·30/1280 ≈ 0.7 units
    overlaps = [len(a & b) for i, a in enumerate(sets) for b in sets[i + 1:]]
    assert np.mean(overlaps) < 3


def test_n_is_capped_and_validated() -> None:
    plan = draw_sample(1, 2, 3, 57)
    assert plan.n == 6 and sorted(plan.chosen) == [(v, t) for v in range(2) for t in range(3)]
    for args in [(-1, 2, 3, 5), (2**64, 2, 3, 5), (1.5, 2, 3, 5), (1, 0, 3, 5), (1, 2, 0, 5), (1, 2, 3, 0),
                 (1, [1, 1], 3, 5), (1, [], 3, 5), (1, 2, (10, 10), 5), (1, 2, (10, 10, 11), 5)]:
        with pytest.raises((ConfigError, InputError)):
            draw_sample(*args)


def test_every_unit_is_equally_likely() -> None:
    from scipy.stats import chisquare

    units, n, draws = 40, 8, 2500
    counts = np.zeros(units)
    for seed in range(draws):
        plan = draw_sample(seed, 4, 10, n)
        counts[[v * 10 + t for v, t in plan.chosen]] += 1
    assert counts.sum() == n * draws
    assert chisquare(counts).pvalue > 1e-3  # deterministic seeds: this either always passes or never


@pytest.mark.parametrize(("p", "complexity", "confidence"), [(0.01, 1.0, 0.99), (0.05, 0.5, 0.95), (0.1, 0.0, 0.9)])
def test_empirical_detection_matches_the_formula(p: float, complexity: float, confidence: float) -> None:
    """Corrupt a fraction p of 100 × 100 units, let 3,000 verifiers draw their samples: the fraction of
    samples that hit a corrupted unit is 1 − (1 − p)^n.

    Tolerance: the draws are without replacement, so the exact chance is hypergeometric; with
    10,000 units and n ≤ 57 it exceeds the binomial one by < 0.01 (computed below and added to the
    tolerance). Sampling error: 3,000 Bernoulli trials have a standard error √(P(1−P)/3000) ≤ 0.0092;
    we allow 4 standard errors (a 6e-5 chance of a false alarm for a correct sampler, and the
    seeds are fixed, so the test is reproducible)."""
    n = sample_size(complexity, confidence)
    views, tiles = 100, 100
    units = views * tiles
    defective = round(p * units)
    corrupted = np.zeros(units, dtype=bool)
    corrupted[np.random.default_rng(99).choice(units, size=defective, replace=False)] = True
    trials = 3000
    hits = 0
    for i in range(trials):
        plan = draw_sample(verifier_seed(f"verification-{i}", KEYS[i % len(KEYS)]), views, tiles, n)
        unit_ids = np.array([v * tiles + t for v, t in plan.chosen])
        hits += bool(corrupted[unit_ids].any())
    observed = hits / trials
    predicted = detection_probability(p, n)
    exact = detection_probability_without_replacement(defective, units, n)
    assert 0 <= exact - predicted < 0.01
    standard_error = math.sqrt(predicted * (1 - predicted) / trials)
    print(f"p={p} n={n}: observed {observed:.4f}, 1-(1-p)^n {predicted:.4f}, hypergeometric {exact:.4f}")
    assert abs(observed - predicted) <= 4 * standard_error + (exact - predicted), (observed, predicted, exact)


def test_detection_table() -> None:
    plan = draw_sample(5, 50, 200, sample_size(0.5, 0.95))
    table = plan.detection_table()
    assert [row["defect_fraction"] for row in table] == [0.01, 0.05, 0.1, 0.2]
    for row in table:
        assert row["detection_probability"] == pytest.approx(1 - (1 - row["defect_fraction"]) ** 30)
        assert row["defective_units"] == round(row["defect_fraction"] * 10_000)
        assert row["detection_probability"] <= row["detection_probability_without_replacement"] < 1
    json.dumps(table, allow_nan=False)


def test_tile_grid_covers_the_image_with_equal_tiles() -> None:
    grid = TileGrid(100, 70, 32)
    assert (grid.rows, grid.cols, grid.count) == (4, 3, 12)
    y0, x0 = grid.origins(range(grid.count))
    assert y0.max() + 32 == 100 and x0.max() + 32 == 70  # last row/column shifted inwards, not cut
    covered = np.zeros((100, 70), dtype=int)
    for y, x in zip(y0, x0, strict=True):
        covered[y:y + 32, x:x + 32] += 1
    assert covered.min() >= 1
    with pytest.raises(ConfigError):
        TileGrid(100, 70, 71)
    with pytest.raises(InputError):
        grid.origins([12])


def test_crop_tiles() -> None:
    rng = np.random.default_rng(0)
    images = rng.random((6, 50, 40, 3)).astype(np.float32)
    plan = draw_sample(77, 6, (50, 40, 16), 9)
    tiles = crop_tiles(images, plan)
    assert tiles.shape == (9, 16, 16, 3) and tiles.dtype == np.float32
    y0, x0 = plan.grid.origins([t for _, t in plan.chosen])
    for k, (view, _) in enumerate(plan.chosen):
        np.testing.assert_array_equal(tiles[k], images[view, y0[k]:y0[k] + 16, x0[k]:x0[k] + 16])
    # held-out view ids: a mapping (or a list indexed by id) gives the same tiles
    held_out = [2, 5]
    plan = draw_sample(78, held_out, (50, 40, 16), 5)
    from_array = crop_tiles(images, plan)
    np.testing.assert_array_equal(crop_tiles({v: images[v] for v in held_out}, plan), from_array)
    np.testing.assert_array_equal(crop_tiles(list(images), plan), from_array)
    with pytest.raises(InputError):
        crop_tiles(images[:, :40], plan)
    with pytest.raises(InputError):
        crop_tiles({v: images[v] for v in held_out if v != plan.chosen[0][0]}, plan)  # a sampled view missing
    with pytest.raises(ConfigError):
        crop_tiles(images, draw_sample(1, 6, 12, 3))


def test_sampled_tiles_feed_the_metrics() -> None:
    """End to end: the sampled tiles of a result with one corrupted view fail where that view is sampled."""
    from engine.trust.metrics import compare_images

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:64, 0:64] / 64
    reference = np.stack([np.stack([xx, yy, 0.5 + 0.3 * np.sin(8 * xx + v)], -1) for v in range(4)]) * 0.8 + 0.1
    result = reference.copy()
    result[2] = np.clip(result[2] + rng.normal(0, 0.1, result[2].shape), 0, 1)
    plan = draw_sample(verifier_seed("verif-e2e", KEYS[0]), 4, (64, 64, 32), 16)  # all 16 units
    report = compare_images(crop_tiles(reference, plan), crop_tiles(result, plan), vmaf=False)
    bad = [k for k, (view, _) in enumerate(plan.chosen) if view == 2]
    assert len(bad) == 4
    assert all(report.psnr_db_per_view[k] < 25 for k in bad)
    assert all(math.isinf(v) for k, v in enumerate(report.psnr_db_per_view) if k not in bad)
    assert not report.passed()[0]


def test_plan_is_a_plain_value() -> None:
    plan = draw_sample(3, 2, 4, 3)
    assert isinstance(plan, SamplingPlan) and plan.grid is None
    assert plan.to_dict()["grid"] is None
    with pytest.raises(AttributeError):
        plan.n = 4
