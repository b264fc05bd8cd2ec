"""Our lightmap baker against Cycles' DIFFUSE bake on the same UVs: a small, fast cut of
``bench/bench_cycles.py`` (which documents the setup; this test reuses its functions).

* Units: a plane under a hard sun, no bounces: both renderers give S·cosθ/π exactly (every
  sample is the same), so a lost or doubled π, or a cosine error, fails at 0.1 %.
* The Cornell box (imported with Blender's OBJ importer, diffuse only, black world) baked by
  both with 2 bounces at 40 texels/m (≈ 3,700 texels, ≈ 2,000 compared): over the lit texels
  the two agree in total (ratio of sums), per colour channel and per object. Measured over 4
  seeds: the total ratio is 1.001–1.004 (≈ 0.1 % noise plus the ≈ +0.3 % our ray-origin offset
  of 5 % of a texel gives at this density), objects with ≥ 50 lit texels stay within 1.5 %,
  Cycles against itself within 2 % (the light quad, 6 texels here, is too noisy for its own
  check). So ±2 % overall and per channel and ±6 % per object leave room for noise, while a
  bounce less (total 0.87) or a wrong albedo or emission fails clearly; the test bakes ours
  with one bounce less and asserts that the same check rejects it, so the check can fail. The
  3×3-filtered mean relative error is ≈ 3 % here (noise: Cycles against itself gives the
  same), asserted below 5 %.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

bpy = pytest.importorskip("bpy")
pytest.importorskip("numba")
pytest.importorskip("xatlas")

from bench.bench_cycles import BakeBench, accuracy, build_cornell_box, units_check  # noqa: E402

BOUNCES = 2
OURS_SAMPLES = 128
CYCLES_SAMPLES = 64
TOTAL_TOLERANCE = 0.02
OBJECT_TOLERANCE = 0.06
OBJECT_MIN_TEXELS = 50


def test_units_agree_on_a_plane_under_a_sun(tmp_path: Path) -> None:
    units = units_check(tmp_path, strength=3.0, angle_deg=30.0)
    assert units["texels"] > 500
    assert units["ours"] == pytest.approx(units["expected"], rel=1e-3)
    assert units["cycles"] == pytest.approx(units["expected"], rel=1e-3)


@pytest.fixture(scope="module")
def cornell(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Both bakes of the Cornell box, done once; only numpy data leaves the fixture."""
    work = tmp_path_factory.mktemp("vs_cycles")
    objects = build_cornell_box(work / "obj")
    bench = BakeBench(objects, work / "bake", atlas_size=512, bounces=BOUNCES, texels_per_metre=40.0)
    cycles = bench.cycles(CYCLES_SAMPLES, seed=0)
    ours = bench.ours(OURS_SAMPLES, seed=0)
    one_bounce_less = bench.ours(OURS_SAMPLES, seed=0, bounces=BOUNCES - 1)
    index, names, counts = bench.compared_texels()
    return SimpleNamespace(
        ours=accuracy(bench, ours, cycles, index, names),
        one_bounce_less=accuracy(bench, one_bounce_less, cycles, index, names),
        counts=counts,
    )


def _disagreements(acc: dict) -> list[str]:
    """What is off in ``accuracy()``'s figures, beyond the tolerances of the module docstring."""
    problems = []
    if abs(acc["bias_ratio_of_sums"] - 1.0) > TOTAL_TOLERANCE:
        problems.append(f"total ratio {acc['bias_ratio_of_sums']:.4f}")
    problems += [f"channel {c} ratio {r:.4f}" for c, r in enumerate(acc["channel_ratio_of_sums"])
                 if abs(r - 1.0) > TOTAL_TOLERANCE]
    problems += [f"{name} ratio {r:.4f}" for name, r in acc["per_object_ratio"].items()
                 if acc["per_object_lit_texels"][name] >= OBJECT_MIN_TEXELS and abs(r - 1.0) > OBJECT_TOLERANCE]
    return problems


def test_ours_matches_cycles_on_the_cornell_box(cornell: SimpleNamespace) -> None:
    acc = cornell.ours
    assert cornell.counts["compared"] > 1000
    assert acc["lit_texels"] > 0.9 * cornell.counts["compared"]  # the box is lit almost everywhere
    assert len(acc["per_object_ratio"]) == 8  # every object, the light quad included, is compared
    assert _disagreements(acc) == []
    # per texel, after a 3×3 box filter: what is left is mostly noise (see the module docstring)
    assert acc["mean_relative_error_3x3"] < 0.05
    assert acc["lit_texels_ours_black"] < 0.02 * acc["lit_texels"]


def test_the_check_rejects_a_missing_bounce(cornell: SimpleNamespace) -> None:
    acc = cornell.one_bounce_less
    assert acc["bias_ratio_of_sums"] < 1.0 - 2 * TOTAL_TOLERANCE
    assert _disagreements(acc) != []
