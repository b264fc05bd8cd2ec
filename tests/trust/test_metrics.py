"""Quality metrics against the real libraries: scikit-image, flip-evaluator, libvmaf in imageio-ffmpeg's ffmpeg."""

from __future__ import annotations

import functools
import itertools
import json
import math

import numpy as np
import pytest

from engine.errors import ConfigError, InputError
from engine.trust import metrics
from engine.trust.metrics import (
    MetricReport,
    QualityThresholds,
    check_metrics,
    compare_images,
    flip_view,
    save_error_map_png,
)

SIZE = 64
NOISE_LEVELS = (0.0, 0.005, 0.01, 0.02, 0.04)


def render_like(view: int, size: int = SIZE) -> np.ndarray:
    """A stand-in for a rendered view in display sRGB: shaded background, flat boxes, a fine texture."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([0.3 + 0.4 * xx, 0.2 + 0.5 * yy, 0.5 + 0.2 * np.sin(6 * xx + view)], axis=-1)
    s = size // 64 or 1
    image[16 * s:40 * s, 10 * s:30 * s] = [0.8, 0.2, 0.1]
    box = np.s_[30 * s:60 * s, 35 * s:55 * s]
    image[box] = np.array([0.1, 0.6, 0.2]) + 0.2 * (np.sin(xx[box] * 60) * np.sin(yy[box] * 60))[..., None]
    return np.clip(image, 0.0, 1.0)


REFERENCE = np.stack([render_like(v) for v in range(2)])


def noisy(reference: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    return np.clip(reference + np.random.default_rng(seed).normal(0.0, 1.0, reference.shape) * sigma, 0.0, 1.0)


@functools.cache
def report_at(sigma: float) -> MetricReport:
    return compare_images(REFERENCE, noisy(REFERENCE, sigma))


def test_identical_images() -> None:
    report = report_at(0.0)
    assert report.ssim == pytest.approx(1.0, abs=1e-12)
    assert report.mse == 0.0 and math.isinf(report.psnr_db)
    assert report.flip == 0.0 and all(float(m.max()) == 0.0 for m in report.flip_maps)
    # vmaf_v0.6.1 with motion 0 gives 97.43 for identical frames (all features ideal), not 100
    assert report.vmaf == pytest.approx(97.43, abs=0.02)
    assert report.vmaf_per_view == pytest.approx([97.43, 97.43], abs=0.02)
    assert report.passed() == (True, [])
    data = report.to_dict()
    json.dumps(data, allow_nan=False)  # JSON-safe: the infinite PSNR is null next to mse 0
    assert data["psnr_db"] is None and data["mse"] == 0.0 and data["per_view"]["psnr_db"] == [None, None]
    assert any("identical" in note for note in report.notes)
    assert report.flat_metrics()["psnr_db"] is None
    assert check_metrics(report.flat_metrics()).passed


def test_psnr_is_pooled_from_the_exact_mse() -> None:
    rng = np.random.default_rng(3)
    reference = 0.2 + 0.6 * rng.random((2, 32, 32, 3))
    signs = rng.choice([-1.0, 1.0], size=reference.shape)
    result = reference + signs * np.array([0.05, 0.01])[:, None, None, None]  # ±0.05 in view 0, ±0.01 in view 1
    report = compare_images(reference, result, vmaf=False, flip=False)
    mse_per_view = np.mean((result - reference) ** 2, axis=(1, 2, 3))
    assert report.mse_per_view == pytest.approx(mse_per_view, rel=1e-12)
    assert report.psnr_db_per_view == pytest.approx(10 * np.log10(1.0 / mse_per_view), rel=1e-12)
    assert report.mse == pytest.approx(float(mse_per_view.mean()), rel=1e-12)
    assert report.psnr_db == pytest.approx(10 * math.log10(1.0 / mse_per_view.mean()), rel=1e-12)
    # pooled, not the mean of per-view PSNRs (≈ 33.0 dB here)
    assert report.psnr_db == pytest.approx(10 * math.log10(1 / 0.0013), abs=1e-6)
    assert abs(report.psnr_db - float(np.mean(report.psnr_db_per_view))) > 4


def test_every_metric_worsens_with_noise() -> None:
    reports = [report_at(s) for s in NOISE_LEVELS]
    ssim = [r.ssim for r in reports]
    psnr = [r.psnr_db for r in reports]
    flip = [r.flip for r in reports]
    vmaf = [r.vmaf for r in reports]
    assert all(a > b for a, b in itertools.pairwise(ssim)), ssim
    assert all(a > b for a, b in itertools.pairwise(psnr)), psnr
    assert all(a < b for a, b in itertools.pairwise(flip)), flip
    assert all(a > b for a, b in itertools.pairwise(vmaf)), vmaf
    # and the default thresholds separate faint noise (σ 0.005) from stronger noise
    assert reports[1].passed()[0]
    assert not reports[2].passed()[0]
    ok, failures = reports[-1].passed()
    assert not ok and {f.split()[0] for f in failures} >= {"ssim", "psnr", "vmaf"}


def test_flip_error_map_locates_the_defect(tmp_path) -> None:
    result = REFERENCE.copy()
    result[1, 40:56, 8:24] = [1.0, 0.0, 1.0]  # a magenta patch in view 1 only
    report = compare_images(REFERENCE, result, vmaf=False)
    maps = report.flip_maps
    assert len(maps) == 2 and maps[0].shape == (SIZE, SIZE) and maps[0].dtype == np.float32
    assert float(maps[0].max()) == 0.0
    inside = maps[1][40:56, 8:24].mean()
    outside = np.delete(maps[1], np.s_[36:60], axis=0).mean()
    assert inside > 0.5 and outside < 0.01
    assert report.flip_per_view[1] == pytest.approx(float(maps[1].mean()), rel=1e-4)
    assert report.flip == pytest.approx(np.mean(report.flip_per_view))

    from PIL import Image

    path = save_error_map_png(maps[1], tmp_path / "flip.png")
    png = np.asarray(Image.open(path))
    assert png.shape == (SIZE, SIZE, 3) and png.dtype == np.uint8
    assert png[0, 0].sum() < png[48, 16].sum()  # no error is dark, the patch is bright
    with pytest.raises(InputError):
        save_error_map_png(np.full((4, 4), np.nan), tmp_path / "bad.png")


BAD_PAIRS = {
    "shape mismatch": lambda r: (r, r[:, :32]),
    "view count mismatch": lambda r: (r, r[:1]),
    "NaN": lambda r: (r, np.where(np.arange(SIZE)[:, None, None] == 5, np.nan, r)),
    "infinity": lambda r: (r, np.where(np.arange(SIZE)[:, None, None] == 5, np.inf, r)),
    "above range": lambda r: (r, r * 1.5),
    "below range": lambda r: (r - 0.25, r),
    "uint8": lambda r: ((r * 255).astype(np.uint8), (r * 255).astype(np.uint8)),
    "int": lambda r: (r.astype(np.int64), r.astype(np.int64)),
    "four channels": lambda r: (np.concatenate([r, r[..., :1]], -1),) * 2,
    "grey": lambda r: (r[..., 0], r[..., 0]),
    "too small for SSIM": lambda r: (r[:, :8, :8], r[:, :8, :8]),
    "empty list": lambda r: ([], []),
    "ragged list": lambda r: ([r[0], r[1, :32]], [r[0], r[1, :32]]),
    "not an image": lambda r: ("reference.png", "result.png"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAIRS))
def test_bad_input_is_refused_before_any_library(case: str) -> None:
    reference, result = BAD_PAIRS[case](REFERENCE.copy())
    with pytest.raises(InputError) as info:
        compare_images(reference, result)
    assert info.value.where in ("reference", "result")


def test_bad_options() -> None:
    for data_range in (0, -1.0, math.nan, "1"):
        with pytest.raises(ConfigError):
            compare_images(REFERENCE, REFERENCE, data_range=data_range)


@pytest.mark.parametrize("case", ["NaN", "above range", "below range", "shape mismatch", "grey", "float64 view"])
def test_flip_validator_catches_what_flip_evaluator_would_not(case: str) -> None:
    """flip-evaluator scores NaN and out-of-range LDR input without a word and answers other misuse
    with sys.exit: flip_view refuses all of these with InputError first."""
    a = np.ascontiguousarray(REFERENCE[0], dtype=np.float32)
    b = a.copy()
    if case == "NaN":
        b[3, 3, 0] = np.nan
    elif case == "above range":
        b *= 2
    elif case == "below range":
        b -= 0.5
    elif case == "shape mismatch":
        b = b[:32]
    elif case == "grey":
        a, b = a[..., 0], b[..., 0]
    if case == "float64 view":  # accepted: converted to float32 first
        error_map, mean = flip_view(a.astype(np.float64), b.astype(np.float64))
        assert mean == 0.0 and error_map.shape == a.shape[:2]
        return
    with pytest.raises(InputError):
        flip_view(a, b)


@pytest.mark.parametrize("parameters", [{"ppd": -1.0}, {"ppd": 67.0, "vc": [0.7, 3840, 0.7]}, {"tonemapper": "none"}])
def test_flip_evaluator_cannot_end_the_process(parameters: dict) -> None:
    """These arguments make flip-evaluator call sys.exit; the guarded call turns that into "not measured"."""
    import flip_evaluator

    a = np.ascontiguousarray(REFERENCE[0], dtype=np.float32)
    with pytest.raises(SystemExit):  # the hazard: called directly, the package ends the interpreter
        flip_evaluator.evaluate(a, a.copy(), "LDR", parameters=parameters)
    with pytest.raises(metrics._NotMeasured, match="tried to exit the process"):
        metrics._call_flip(a, a.copy(), parameters)


def test_lpips_not_measured_without_weights(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(metrics.LPIPS_WEIGHTS_ENV, raising=False)
    report = compare_images(REFERENCE, REFERENCE, vmaf=False, flip=False)
    assert report.lpips is None and report.lpips_per_view == ()
    assert "OPTIMIZER_LPIPS_WEIGHTS" in report.not_measured["lpips"]
    missing = tmp_path / "alex.pth"
    report = compare_images(REFERENCE, REFERENCE, vmaf=False, flip=False, lpips_weights=missing)
    assert report.not_measured["lpips"].startswith(f"no LPIPS weights at {missing}")
    monkeypatch.setenv(metrics.LPIPS_WEIGHTS_ENV, str(missing))
    report = compare_images(REFERENCE, REFERENCE, vmaf=False, flip=False)
    assert str(missing) in report.not_measured["lpips"]
    assert report.not_measured["vmaf"] == "disabled by the caller (vmaf=False)"
    assert report.not_measured["flip"] == "disabled by the caller (flip=False)"
    check = report.check()
    assert check.passed and check.failures == []
    assert {u.split(":")[0] for u in check.unchecked} == {"flip", "vmaf", "lpips"}


def _synthetic_lpips_weights(path, *, lpips_package_names: bool = False) -> None:
    """AlexNet-shaped random weights (NOT the trained LPIPS weights: those are not available here).
    They exercise the file format and the computation, not LPIPS's calibration."""
    import torch

    gen = torch.Generator().manual_seed(0)
    shapes = [(64, 3, 11), (192, 64, 5), (384, 192, 3), (256, 384, 3), (256, 256, 3)]
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    state = {}
    for layer, ((out, inp, k), index) in enumerate(zip(shapes, slices, strict=True)):
        prefix = f"net.slice{slices[index]}.{index}" if lpips_package_names else f"features.{index}"
        state[f"{prefix}.weight"] = torch.randn(out, inp, k, k, generator=gen) * (2.0 / (inp * k * k)) ** 0.5
        state[f"{prefix}.bias"] = torch.zeros(out)
        state[f"lin{layer}.model.1.weight"] = torch.rand(1, out, 1, 1, generator=gen)
    torch.save(state, path)


def test_lpips_with_a_weights_file(tmp_path) -> None:
    weights = tmp_path / "lpips_alex.pth"
    _synthetic_lpips_weights(weights)
    views = REFERENCE[:, :48, :40]
    values = [compare_images(views, noisy(views, s), vmaf=False, flip=False, lpips_weights=weights).lpips
              for s in (0.0, 0.01, 0.04, 0.16)]
    assert values[0] == pytest.approx(0.0, abs=1e-9)
    assert all(a < b for a, b in itertools.pairwise(values)), values
    # symmetric, and the lpips package's key names load to the same network
    other = tmp_path / "lpips_package_names.pth"
    _synthetic_lpips_weights(other, lpips_package_names=True)
    forward = compare_images(views, noisy(views, 0.04), vmaf=False, flip=False, lpips_weights=other)
    backward = compare_images(noisy(views, 0.04), views, vmaf=False, flip=False, lpips_weights=weights)
    assert forward.lpips == pytest.approx(values[2], rel=1e-5)
    assert backward.lpips == pytest.approx(values[2], rel=1e-5)
    assert "lpips" not in forward.not_measured
    # too small for AlexNet's poolings: not measured, with the reason
    small = compare_images(REFERENCE[:, :24, :24], REFERENCE[:, :24, :24], vmaf=False, flip=False,
                           lpips_weights=weights)
    assert small.lpips is None and "at least 32" in small.not_measured["lpips"]


def test_lpips_weights_file_of_the_wrong_kind(tmp_path) -> None:
    import torch

    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, wrong)
    with pytest.raises(ConfigError, match=r"features\.0\.weight/bias"):
        compare_images(REFERENCE, REFERENCE, vmaf=False, flip=False, lpips_weights=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="cannot load"):
        compare_images(REFERENCE, REFERENCE, vmaf=False, flip=False, lpips_weights=garbage)


def test_data_range_and_odd_sizes() -> None:
    """Views in [0, 255] measure like the same views in [0, 1]; odd sizes get an integer VMAF upscale."""
    reference = REFERENCE[:, :37, :53]
    result = noisy(reference, 0.02)
    unit = compare_images(reference, result)
    scaled = compare_images(reference * 255.0, result * 255.0, data_range=255.0)
    assert scaled.ssim == pytest.approx(unit.ssim, rel=1e-9)
    assert scaled.psnr_db == pytest.approx(unit.psnr_db, rel=1e-9)
    assert scaled.flip == pytest.approx(unit.flip, rel=1e-4)
    assert scaled.vmaf == pytest.approx(unit.vmaf, abs=0.05)
    assert any("upscaled ×7 (nearest neighbour) from 53×37 to 371×259" in note for note in unit.notes)


def test_vmaf_not_measured_without_ffmpeg(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    report = compare_images(REFERENCE, noisy(REFERENCE, 0.01), flip=False)
    assert report.vmaf is None and report.vmaf_per_view == ()
    assert report.not_measured["vmaf"].startswith("cannot run ffmpeg")


def test_thresholds_defaults_overrides_and_validation() -> None:
    t = QualityThresholds()
    assert t.to_dict() == {"ssim_min": 0.98, "psnr_min": 35.0, "lpips_max": 0.05, "vmaf_min": 90.0, "flip_max": 0.1}
    assert QualityThresholds.from_dict(None) == t
    custom = QualityThresholds.from_dict({"psnr_min": 30, "vmaf_min": 80.5})
    assert custom.psnr_min == 30.0 and isinstance(custom.psnr_min, float) and custom.ssim_min == 0.98
    with pytest.raises(ConfigError, match=r"unknown threshold.*psnr, ssim_max"):
        QualityThresholds.from_dict({"ssim_max": 1, "psnr": 30, "flip_max": 0.2})
    for bad in ({"ssim_min": 1.5}, {"vmaf_min": 101}, {"flip_max": -0.1}, {"psnr_min": math.nan},
                {"lpips_max": "0.1"}, {"ssim_min": True}):
        with pytest.raises(ConfigError):
            QualityThresholds.from_dict(bad)
    with pytest.raises(ConfigError):
        QualityThresholds.from_dict([("ssim_min", 0.9)])


def test_pass_fail_logic() -> None:
    mild = report_at(0.005)  # ssim ≈ 0.989, psnr ≈ 46 dB, flip ≈ 0.019, vmaf ≈ 93.7
    assert mild.passed() == (True, [])
    ok, failures = mild.passed(QualityThresholds(vmaf_min=95))
    assert not ok and len(failures) == 1 and failures[0].startswith("vmaf ") and "is not >= 95" in failures[0]
    ok, failures = mild.passed(QualityThresholds(flip_max=0.01, psnr_min=50))
    assert not ok and sorted(f.split()[0] for f in failures) == ["flip", "psnr"]
    # unmeasured metrics are listed, never failed
    check = mild.check(QualityThresholds(lpips_max=0.0))
    assert check.passed and check.unchecked == [f"lpips: {mild.not_measured['lpips']}"]
    # a vote's flat metrics: PSNR null is infinite only when mse is 0
    flat = dict(mild.flat_metrics(), psnr_db=None)
    assert check_metrics(flat).unchecked[0].startswith("psnr")
    assert check_metrics(dict(flat, mse=0.0)).unchecked == ["lpips: not measured"]


def test_report_round_trip() -> None:
    report = report_at(0.02)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    again = MetricReport.from_dict(data)
    assert again == report and again.flip_maps == ()
    identical = MetricReport.from_dict(report_at(0.0).to_dict())
    assert math.isinf(identical.psnr_db)
    for broken in (dict(data, ssim="high"), dict(data, schema="other/1"), {k: v for k, v in data.items() if k != "mse"},
                   dict(data, psnr_db=None)):
        with pytest.raises(InputError):
            MetricReport.from_dict(broken)
