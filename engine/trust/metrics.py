"""Image quality metrics of the Trust Engine: reference renders against result renders.

What is compared
    Two stacks of views (or of sampled tiles, see :mod:`engine.trust.sampling`), shape
    (V, H, W, 3), float, values in ``[0, data_range]`` (1.0 by default), **sRGB
    display-referred**: the 8-bit-bound images the bake and splat outputs are judged as, not
    linear radiance. Bad input (shape mismatch, wrong dtype, NaN/Inf, values out of range,
    views smaller than the SSIM window) is refused with :class:`~engine.errors.InputError`
    before any metric library sees it.

The metrics and how each is measured
    * **SSIM**: scikit-image ``structural_similarity`` with the Wang et al. (2004) settings:
      Gaussian window (σ = 1.5, 11 taps), population covariance, the explicit ``data_range``,
      averaged over the three channels. Report value: the mean over views.
    * **PSNR**: scikit-image ``peak_signal_noise_ratio`` per view; the report value is pooled
      from the mean MSE over all views, 10·log10(R² / mean MSE), not the mean of per-view
      PSNRs (one perfect view would make that infinite). Identical images have MSE 0 and an
      infinite PSNR: ``psnr_db`` is ``math.inf`` in Python and ``null`` in JSON, where ``mse``
      (always finite) says why: null PSNR with ``mse`` 0 means identical.
    * **FLIP** (NVIDIA, ``flip-evaluator``, LDR-FLIP, sRGB inputs, its default 67 pixels per
      degree): mean error per view and the per-pixel error map (float32, H × W, in [0, 1]),
      kept for the report (:func:`save_error_map_png`). Report value: the mean over views
      (= the mean over all pixels, views being the same size). The package calls
      ``sys.exit`` on some bad arguments and silently accepts NaN and out-of-range values, so
      inputs are validated here first, it is only ever given float32 C-contiguous H×W×3 arrays
      and fixed arguments, and any ``SystemExit`` or exception it raises anyway becomes
      "not measured" with the reason instead of ending the process.
    * **VMAF** (libvmaf through the ffmpeg binary shipped by ``imageio-ffmpeg``, model
      ``vmaf_v0.6.1``): the views are written as two short raw sequences, 8-bit sRGB code values
      (as an 8-bit display shows them: differences under half a code value are invisible to
      VMAF), converted by ffmpeg to YUV 4:4:4 (BT.709, limited range). VMAF's model is meant
      for video resolutions, so views whose shorter side is under :data:`VMAF_MIN_SIDE` pixels
      are upscaled by the smallest integer factor that reaches it, nearest neighbour (pixel
      values unchanged, no new blur); the report's notes say so. Views are not a temporal
      sequence, so the motion feature is forced to 0 (``motion_force_zero``): otherwise the
      jump between unrelated views counts as "motion", which masks errors and pushes scores
      towards 100. With motion 0 the model gives **97.43** (not 100) for identical images.
      Report value: the mean over views. When ffmpeg has no ``libvmaf`` filter or fails, VMAF
      is "not measured" with the reason.
    * **LPIPS** (v0.1, AlexNet backbone with learned linear layers): computed here in plain
      PyTorch (torchvision is not a dependency) only when a weights file is given
      (``lpips_weights`` or ``$OPTIMIZER_LPIPS_WEIGHTS``) and exists; otherwise "not measured"
      with the reason. Upstream downloads the backbone at run time, which this system never
      does. Weights file format: a ``torch.save`` mapping (loaded with ``weights_only=True``)
      with the AlexNet convolutions under torchvision's names ``features.{0,3,6,8,10}.weight``
      / ``.bias`` (or the ``lpips`` package's ``net.slice{1..5}.{0,3,6,8,10}.*`` names) and the
      linear layers ``lin{0..4}.model.1.weight`` (shape (1, C, 1, 1)): torchvision's
      ``alexnet`` state dict merged with the ``lpips`` package's ``weights/v0.1/alex.pth``.
      Needs views of at least 32 pixels a side.

Never a made-up number: a metric that could not be measured is ``None`` with its reason in
``MetricReport.not_measured``; it does not fail :meth:`MetricReport.check`, which lists it as
unchecked. Thresholds default to the original design (SSIM ≥ 0.98, PSNR ≥ 35 dB,
LPIPS ≤ 0.05, VMAF ≥ 90, FLIP ≤ 0.1) and are overridable per job
(:meth:`QualityThresholds.from_dict`).

scikit-image, flip-evaluator, imageio-ffmpeg and torch are imported when first needed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import math
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from engine.errors import ConfigError, InputError

log = logging.getLogger(__name__)

#: The metrics, in report order.
METRICS = ("ssim", "psnr", "flip", "vmaf", "lpips")
#: Environment variable naming the LPIPS weights file (see the module docstring for its format).
LPIPS_WEIGHTS_ENV = "OPTIMIZER_LPIPS_WEIGHTS"
#: SSIM's Gaussian window: σ 1.5 truncated at 3.5 σ is 11 taps, so views need 11 pixels a side.
SSIM_SIGMA = 1.5
MIN_SIDE = 11
#: Views whose shorter side is below this are upscaled (integer factor, nearest) for VMAF.
VMAF_MIN_SIDE = 256
VMAF_MODEL = "vmaf_v0.6.1"
#: LPIPS's AlexNet needs this many pixels a side (three 3×3/2 poolings after a stride-4 conv).
LPIPS_MIN_SIDE = 32
VMAF_TIMEOUT_S = 600.0
REPORT_SCHEMA = "optimizer.trust.metrics/1"


# ---------------------------------------------------------------------------------------------
# thresholds


def _finite_number(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{name} must be a number, got {value!r}", where=where)
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be finite, got {number}", where=where)
    return number


@dataclass(frozen=True)
class QualityThresholds:
    """Pass marks of a result (defaults from the original design; override per job with :meth:`from_dict`)."""

    ssim_min: float = 0.98
    psnr_min: float = 35.0
    lpips_max: float = 0.05
    vmaf_min: float = 90.0
    flip_max: float = 0.1

    def __post_init__(self) -> None:
        ranges = {
            "ssim_min": (-1.0, 1.0),
            "psnr_min": (0.0, math.inf),
            "lpips_max": (0.0, math.inf),
            "vmaf_min": (0.0, 100.0),
            "flip_max": (0.0, 1.0),
        }
        for name, (low, high) in ranges.items():
            value = _finite_number(getattr(self, name), name, "quality thresholds")
            if not low <= value <= high:
                raise ConfigError(f"{name} = {value} is outside [{low}, {high}]", where="quality thresholds")
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, overrides: Mapping[str, Any] | None) -> QualityThresholds:
        """The defaults with ``overrides`` applied; unknown keys or bad values raise ConfigError."""
        if overrides is None:
            return cls()
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"quality thresholds must be a mapping, got {type(overrides).__name__}",
                              where="quality thresholds")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(key) for key in overrides if key not in known)
        if unknown:
            raise ConfigError(f"unknown threshold(s): {', '.join(unknown)}", where="quality thresholds",
                              hint=f"known: {', '.join(sorted(known))}")
        return cls(**dict(overrides))

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---------------------------------------------------------------------------------------------
# input validation


def _as_views(images: Any, name: str, data_range: float) -> np.ndarray:
    """``images`` as one (V, H, W, 3) float array, or InputError saying what is wrong with it."""
    try:
        if isinstance(images, np.ndarray):
            array = images
        elif isinstance(images, Sequence) and not isinstance(images, str | bytes):
            views = [np.asarray(view) for view in images]
            if not views:
                raise InputError("no views given", where=name, hint="pass at least one (H, W, 3) image")
            shapes = {view.shape for view in views}
            if len(shapes) > 1:
                raise InputError(f"views have different shapes {sorted(shapes)}", where=name,
                                 hint="every view (or tile) of a comparison must have the same size")
            array = np.stack(views)
        else:
            raise InputError(f"expected an array or a list of views, got {type(images).__name__}", where=name)
    except (ValueError, TypeError) as exc:
        raise InputError(f"cannot read the views as an array: {exc}", where=name) from exc
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise InputError(f"shape {array.shape} is not (V, H, W, 3) or (H, W, 3)", where=name,
                         hint="RGB only: composite RGBA over the background first")
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"dtype {array.dtype} is not floating point", where=name,
                         hint=f"pass floats in [0, {data_range:g}]; for 8-bit images use img.astype(np.float32) / 255")
    if array.shape[0] == 0:
        raise InputError("no views given", where=name, hint="pass at least one (H, W, 3) image")
    height, width = array.shape[1:3]
    if min(height, width) < MIN_SIDE:
        raise InputError(f"views are {height}×{width} pixels; SSIM's window needs at least {MIN_SIDE} a side",
                         where=name, hint="compare larger views or tiles")
    finite = np.isfinite(array).all(axis=(1, 2, 3))
    if not finite.all():
        raise InputError(f"view {int(np.argmin(finite))} has NaN or infinite values", where=name)
    low = array.min(axis=(1, 2, 3))
    high = array.max(axis=(1, 2, 3))
    bad = (low < 0) | (high > data_range)
    if bad.any():
        view = int(np.argmax(bad))
        raise InputError(f"view {view} has values in [{float(low[view]):.6g}, {float(high[view]):.6g}], "
                         f"outside [0, {data_range:g}]", where=name,
                         hint="metrics compare display-referred sRGB images: tone-map and clip first")
    return array


# ---------------------------------------------------------------------------------------------
# the report


class QualityCheck(NamedTuple):
    """Outcome of :meth:`MetricReport.check`: unmeasured metrics do not fail, they are ``unchecked``."""

    passed: bool
    failures: list[str]
    unchecked: list[str]


def _json_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def check_metrics(metrics: Mapping[str, float | None], thresholds: QualityThresholds | None = None,
                  not_measured: Mapping[str, str] | None = None) -> QualityCheck:
    """Check pooled metrics (:meth:`MetricReport.flat_metrics`, or a vote's) against ``thresholds``.

    A metric that is missing or ``None`` is unchecked (with its reason from ``not_measured``), never
    failed; ``psnr_db`` ``None`` with ``mse`` 0 is an infinite PSNR, which passes.
    """
    t = thresholds or QualityThresholds()
    reasons = not_measured or {}
    psnr = metrics.get("psnr_db")
    if psnr is None and metrics.get("mse") == 0:
        psnr = math.inf
    marks = [
        ("ssim", metrics.get("ssim"), ">=", t.ssim_min),
        ("psnr", psnr, ">=", t.psnr_min),
        ("flip", metrics.get("flip"), "<=", t.flip_max),
        ("vmaf", metrics.get("vmaf"), ">=", t.vmaf_min),
        ("lpips", metrics.get("lpips"), "<=", t.lpips_max),
    ]
    failures: list[str] = []
    unchecked: list[str] = []
    for name, value, op, mark in marks:
        if value is None:
            unchecked.append(f"{name}: {reasons.get(name, 'not measured')}")
        elif not (value >= mark if op == ">=" else value <= mark):
            failures.append(f"{name} {value:.6g} is not {op} {mark:g}")
    return QualityCheck(not failures, failures, unchecked)


@dataclass(frozen=True)
class MetricReport:
    """Metrics of one comparison: pooled values (``None`` when not measured), per-view values, reasons."""

    views: int
    height: int
    width: int
    data_range: float
    ssim: float
    psnr_db: float  # math.inf when the images are identical (mse 0)
    mse: float
    flip: float | None
    vmaf: float | None
    lpips: float | None
    ssim_per_view: tuple[float, ...]
    psnr_db_per_view: tuple[float, ...]
    mse_per_view: tuple[float, ...]
    flip_per_view: tuple[float, ...] = ()
    vmaf_per_view: tuple[float, ...] = ()
    lpips_per_view: tuple[float, ...] = ()
    not_measured: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    tools: Mapping[str, str] = field(default_factory=dict)
    #: FLIP error maps, one float32 (H, W) array in [0, 1] per view (empty when FLIP was not measured).
    flip_maps: tuple[np.ndarray, ...] = field(default=(), compare=False, repr=False)

    def value(self, metric: str) -> float | None:
        """The pooled value of ``metric`` (one of :data:`METRICS`)."""
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}", hint=f"known: {', '.join(METRICS)}")
        return self.psnr_db if metric == "psnr" else getattr(self, metric)

    def flat_metrics(self) -> dict[str, float | None]:
        """Pooled values by name, JSON-safe, as a vote carries them: ``None`` is "not measured", except
        ``psnr_db``, which is ``None`` exactly when ``mse`` is 0 (identical images, infinite PSNR)."""
        return {"ssim": self.ssim, "psnr_db": _json_float(self.psnr_db), "mse": self.mse, "flip": self.flip,
                "vmaf": self.vmaf, "lpips": self.lpips}

    def check(self, thresholds: QualityThresholds | None = None) -> QualityCheck:
        """Compare with ``thresholds``: failures name the metric, its value and the mark it missed."""
        return check_metrics(self.flat_metrics(), thresholds, self.not_measured)

    def passed(self, thresholds: QualityThresholds | None = None) -> tuple[bool, list[str]]:
        """``(passed, failures)``; metrics not measured do not fail (see :meth:`check` for the list of them)."""
        result = self.check(thresholds)
        return result.passed, result.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (no error maps; an infinite PSNR is ``null`` next to ``mse`` 0)."""
        return {
            "schema": REPORT_SCHEMA,
            "views": self.views,
            "height": self.height,
            "width": self.width,
            "data_range": self.data_range,
            "ssim": self.ssim,
            "psnr_db": _json_float(self.psnr_db),
            "mse": self.mse,
            "flip": self.flip,
            "vmaf": self.vmaf,
            "lpips": self.lpips,
            "per_view": {
                "ssim": list(self.ssim_per_view),
                "psnr_db": [_json_float(v) for v in self.psnr_db_per_view],
                "mse": list(self.mse_per_view),
                "flip": list(self.flip_per_view),
                "vmaf": list(self.vmaf_per_view),
                "lpips": list(self.lpips_per_view),
            },
            "not_measured": dict(self.not_measured),
            "notes": list(self.notes),
            "tools": dict(self.tools),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricReport:
        """Inverse of :meth:`to_dict` (e.g. the metrics in a peer's vote); malformed data raises InputError."""
        where = "metric report"
        try:
            if data.get("schema") != REPORT_SCHEMA:
                raise InputError(f"schema {data.get('schema')!r} is not {REPORT_SCHEMA!r}", where=where)
            per_view = data["per_view"]

            def number(value: Any, key: str) -> float:
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise InputError(f"{key} = {value!r} is not a finite number", where=where)
                return float(value)

            def optional(value: Any, key: str) -> float | None:
                return None if value is None else number(value, key)

            def psnr(value: Any, mse: float, key: str) -> float:
                if value is None:
                    if mse != 0:
                        raise InputError(f"{key} is null but the MSE is {mse}", where=where)
                    return math.inf
                return number(value, key)

            mse = number(data["mse"], "mse")
            mse_per_view = tuple(number(v, "per_view.mse") for v in per_view["mse"])
            psnr_per_view = tuple(psnr(v, m, "per_view.psnr_db") for v, m in zip(per_view["psnr_db"], mse_per_view,
                                                                                  strict=True))
            return cls(
                views=int(data["views"]), height=int(data["height"]), width=int(data["width"]),
                data_range=number(data["data_range"], "data_range"),
                ssim=number(data["ssim"], "ssim"), psnr_db=psnr(data["psnr_db"], mse, "psnr_db"), mse=mse,
                flip=optional(data["flip"], "flip"), vmaf=optional(data["vmaf"], "vmaf"),
                lpips=optional(data["lpips"], "lpips"),
                ssim_per_view=tuple(number(v, "per_view.ssim") for v in per_view["ssim"]),
                psnr_db_per_view=psnr_per_view, mse_per_view=mse_per_view,
                flip_per_view=tuple(number(v, "per_view.flip") for v in per_view["flip"]),
                vmaf_per_view=tuple(number(v, "per_view.vmaf") for v in per_view["vmaf"]),
                lpips_per_view=tuple(number(v, "per_view.lpips") for v in per_view["lpips"]),
                not_measured={str(k): str(v) for k, v in data["not_measured"].items()},
                notes=tuple(str(n) for n in data["notes"]),
                tools={str(k): str(v) for k, v in data["tools"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"malformed metric report: {type(exc).__name__}: {exc}", where=where) from exc


# ---------------------------------------------------------------------------------------------
# FLIP


class _NotMeasured(Exception):
    """A metric that could not be measured; the message is the reason shown to the user."""


def _validate_flip_pair(reference: np.ndarray, test: np.ndarray) -> None:
    """The checks flip-evaluator does not do (or answers with ``sys.exit``): raise InputError instead."""
    for name, image in (("reference", reference), ("result", test)):
        if not isinstance(image, np.ndarray) or image.dtype != np.float32:
            raise InputError(f"FLIP input must be a float32 array, got {getattr(image, 'dtype', type(image))}", where=name)
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            raise InputError(f"FLIP input shape {image.shape} is not (H, W, 3)", where=name)
        if not image.flags.c_contiguous:
            raise InputError("FLIP input must be C-contiguous", where=name)
        if not np.isfinite(image).all():
            raise InputError("FLIP input has NaN or infinite values", where=name)
        if image.min() < 0.0 or image.max() > 1.0:
            raise InputError("FLIP input has values outside [0, 1] (LDR-FLIP takes sRGB in [0, 1])", where=name)
    if reference.shape != test.shape:
        raise InputError(f"FLIP inputs differ in shape: {reference.shape} vs {test.shape}", where="result")


def _call_flip(reference: np.ndarray, test: np.ndarray, parameters: dict[str, Any]) -> tuple[np.ndarray, float, dict]:
    """flip-evaluator's ``evaluate``, made unable to end the process: SystemExit and errors become _NotMeasured."""
    import flip_evaluator

    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            error_map, mean_error, used = flip_evaluator.evaluate(
                reference, test, "LDR", inputsRGB=True, applyMagma=False, computeMeanError=True,
                parameters=parameters)
    except SystemExit as exc:
        said = " ".join(captured.getvalue().split())
        raise _NotMeasured(f"flip-evaluator tried to exit the process (code {exc.code}): {said}") from None
    except Exception as exc:
        raise _NotMeasured(f"flip-evaluator failed: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc
    error_map = np.asarray(error_map, dtype=np.float32).reshape(reference.shape[:2])
    mean_error = float(mean_error)
    if not math.isfinite(mean_error) or not np.isfinite(error_map).all():
        raise _NotMeasured("flip-evaluator returned a non-finite error")
    return error_map, mean_error, dict(used)


def flip_view(reference: np.ndarray, result: np.ndarray) -> tuple[np.ndarray, float]:
    """FLIP of one (H, W, 3) pair in [0, 1]: (error map float32 (H, W), mean error).

    Inputs are validated first (InputError); a failure inside flip-evaluator raises RuntimeError
    with its reason. It never ends the process.
    """
    reference = np.ascontiguousarray(reference, dtype=np.float32) if isinstance(reference, np.ndarray) else reference
    result = np.ascontiguousarray(result, dtype=np.float32) if isinstance(result, np.ndarray) else result
    _validate_flip_pair(reference, result)
    try:
        error_map, mean_error, _ = _call_flip(reference, result, {})
    except _NotMeasured as exc:
        raise RuntimeError(str(exc)) from None
    return error_map, mean_error


# Approximate stops of a perceptually ordered dark-purple-orange-pale colour ramp (like "magma").
_RAMP_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_RAMP_RGB = np.array([
    [0.00, 0.00, 0.02],
    [0.23, 0.06, 0.44],
    [0.71, 0.21, 0.48],
    [0.98, 0.53, 0.38],
    [0.99, 0.99, 0.75],
])


def colorize_error_map(error_map: np.ndarray) -> np.ndarray:
    """(H, W) errors in [0, 1] → (H, W, 3) uint8 through a dark-to-bright colour ramp (0 black, 1 pale yellow)."""
    errors = np.asarray(error_map, dtype=np.float64)
    if errors.ndim == 3 and errors.shape[2] == 1:
        errors = errors[..., 0]
    if errors.ndim != 2:
        raise InputError(f"error map shape {errors.shape} is not (H, W)", where="error map")
    if not np.isfinite(errors).all():
        raise InputError("error map has NaN or infinite values", where="error map")
    errors = np.clip(errors, 0.0, 1.0)
    rgb = np.stack([np.interp(errors, _RAMP_STOPS, _RAMP_RGB[:, c]) for c in range(3)], axis=-1)
    return np.rint(rgb * 255.0).astype(np.uint8)


def save_error_map_png(error_map: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write a FLIP error map as a colour PNG (see :func:`colorize_error_map`); returns the path."""
    from PIL import Image

    target = Path(path)
    Image.fromarray(colorize_error_map(error_map), mode="RGB").save(target, format="PNG")
    return target


# ---------------------------------------------------------------------------------------------
# VMAF


@functools.lru_cache(maxsize=4)
def _ffmpeg_filters(exe: str) -> str:
    done = subprocess.run([exe, "-hide_banner", "-nostdin", "-filters"], capture_output=True, text=True,
                          timeout=60, check=False)
    return done.stdout


def _find_ffmpeg_with_vmaf() -> str:
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:
        raise _NotMeasured(f"no ffmpeg binary: {type(exc).__name__}: {exc} (install imageio-ffmpeg)") from exc
    try:
        listing = _ffmpeg_filters(exe)
    except (OSError, subprocess.SubprocessError) as exc:
        raise _NotMeasured(f"cannot run ffmpeg at {exe}: {exc}") from exc
    if not any(line.split()[1:2] == ["libvmaf"] for line in listing.splitlines()):
        raise _NotMeasured(f"the ffmpeg at {exe} has no libvmaf filter")
    return exe


def _write_rgb24(path: Path, views: np.ndarray, data_range: float) -> None:
    """8-bit sRGB code values, one view at a time (no full-size copy of the stack)."""
    with path.open("wb") as out:
        for view in views:
            codes = np.rint(np.asarray(view, dtype=np.float64) * (255.0 / data_range))
            out.write(np.clip(codes, 0, 255).astype(np.uint8).tobytes())


def _measure_vmaf(reference: np.ndarray, result: np.ndarray, data_range: float,
                  timeout_s: float = VMAF_TIMEOUT_S) -> tuple[list[float], list[str], dict[str, str]]:
    """Per-view VMAF, notes, tool versions; raises _NotMeasured with the reason."""
    exe = _find_ffmpeg_with_vmaf()
    count, height, width = reference.shape[:3]
    factor = max(1, math.ceil(VMAF_MIN_SIDE / min(height, width)))
    out_w, out_h = width * factor, height * factor
    notes = [f"vmaf: views quantised to 8-bit sRGB codes and converted to YUV 4:4:4 (BT.709, limited range); "
             f"model {VMAF_MODEL} with motion forced to 0 (views are not a temporal sequence)"]
    if factor > 1:
        notes.append(f"vmaf: views upscaled ×{factor} (nearest neighbour) from {width}×{height} to {out_w}×{out_h}: "
                     f"VMAF's model expects video resolution (shorter side ≥ {VMAF_MIN_SIDE})")
    scale = f"scale=w={out_w}:h={out_h}:flags=neighbor:out_color_matrix=bt709:out_range=tv,format=yuv444p"
    # Two escaping levels (filtergraph, then the option string) keep the ':' inside the model option.
    model = f"version={VMAF_MODEL}\\\\:motion.motion_force_zero=true"
    threads = max(1, os.cpu_count() or 1)
    graph = (f"[0:v]{scale}[dist];[1:v]{scale}[ref];"
             f"[dist][ref]libvmaf=model={model}:log_fmt=json:log_path=vmaf.json:n_threads={threads}")
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{width}x{height}", "-framerate", "25"]
    with tempfile.TemporaryDirectory(prefix="optimizer-vmaf-") as tmp:
        folder = Path(tmp)
        _write_rgb24(folder / "result.rgb", result, data_range)
        _write_rgb24(folder / "reference.rgb", reference, data_range)
        command = [exe, "-hide_banner", "-nostdin", "-loglevel", "error",
                   *raw, "-i", "result.rgb", *raw, "-i", "reference.rgb",
                   "-lavfi", graph, "-f", "null", "-"]
        try:
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise _NotMeasured(f"ffmpeg/libvmaf took longer than {timeout_s:g} s") from None
        except OSError as exc:
            raise _NotMeasured(f"cannot run ffmpeg: {exc}") from exc
        if done.returncode != 0:
            said = " ".join(done.stderr.split())[-400:]
            raise _NotMeasured(f"ffmpeg/libvmaf failed (exit {done.returncode}): {said}")
        try:
            report = json.loads((folder / "vmaf.json").read_text())
            frames = report["frames"]
            scores = [float(frame["metrics"]["vmaf"]) for frame in frames]
            motion = [float(frame["metrics"].get("integer_motion2", 0.0)) for frame in frames]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _NotMeasured(f"cannot read libvmaf's log: {type(exc).__name__}: {exc}") from exc
    if len(scores) != count:
        raise _NotMeasured(f"libvmaf scored {len(scores)} frames for {count} views")
    if any(m != 0.0 for m in motion):
        raise _NotMeasured("libvmaf ignored motion_force_zero (non-zero motion between independent views)")
    if not all(math.isfinite(s) for s in scores):
        raise _NotMeasured("libvmaf returned a non-finite score")
    tools = {"libvmaf": str(report.get("version", "?")), "vmaf_model": VMAF_MODEL}
    return scores, notes, tools


# ---------------------------------------------------------------------------------------------
# LPIPS


_ALEX_CONVS = ((0, 11, 4, 2), (3, 5, 1, 2), (6, 3, 1, 1), (8, 3, 1, 1), (10, 3, 1, 1))  # index, kernel, stride, pad
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # the LPIPS input normalisation (ImageNet statistics in [-1, 1] units)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


def _resolve_lpips_weights(lpips_weights: str | os.PathLike[str] | None) -> Path:
    configured = lpips_weights if lpips_weights is not None else os.environ.get(LPIPS_WEIGHTS_ENV) or None
    how = f"set {LPIPS_WEIGHTS_ENV} or pass lpips_weights"
    if configured is None:
        raise _NotMeasured(f"no LPIPS weights configured; {how}")
    path = Path(configured).expanduser()
    if not path.is_file():
        raise _NotMeasured(f"no LPIPS weights at {path}; {how}")
    return path


@functools.lru_cache(maxsize=2)
def _load_lpips(path: str, mtime_ns: int, size: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(conv (weight, bias, stride, pad) × 5, linear weights × 5) from the file; ConfigError if it is not LPIPS-AlexNet."""
    import torch

    where = f"LPIPS weights {path}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot load: {type(exc).__name__}: {exc}", where=where,
                          hint="a torch.save'd state dict (see engine.trust.metrics)") from exc
    if not isinstance(state, Mapping):
        raise ConfigError(f"holds a {type(state).__name__}, not a state dict", where=where)
    names: dict[str, Any] = {}
    for key, value in state.items():
        key = str(key)
        if key.startswith("net.slice"):  # the lpips package's names: net.sliceK.<torchvision index>.*
            key = "features." + key.split(".", 2)[2]
        names[key] = value
    convs = []
    channels = 3
    for index, kernel, stride, pad in _ALEX_CONVS:
        weight, bias = names.get(f"features.{index}.weight"), names.get(f"features.{index}.bias")
        if not isinstance(weight, torch.Tensor) or not isinstance(bias, torch.Tensor):
            raise ConfigError(f"missing features.{index}.weight/bias (AlexNet conv)", where=where)
        if weight.ndim != 4 or weight.shape[1] != channels or tuple(weight.shape[2:]) != (kernel, kernel) \
                or tuple(bias.shape) != (weight.shape[0],):
            raise ConfigError(f"features.{index} has shape {tuple(weight.shape)}, not AlexNet's (C, {channels}, "
                              f"{kernel}, {kernel})", where=where)
        channels = weight.shape[0]
        convs.append((weight.float(), bias.float(), stride, pad))
    lins = []
    for layer, (weight, *_rest) in enumerate(convs):
        lin = names.get(f"lin{layer}.model.1.weight")
        if not isinstance(lin, torch.Tensor):
            raise ConfigError(f"missing lin{layer}.model.1.weight (LPIPS linear layer)", where=where)
        if lin.numel() != weight.shape[0]:
            raise ConfigError(f"lin{layer} has {lin.numel()} weights for {weight.shape[0]} channels", where=where)
        lins.append(lin.float().reshape(1, weight.shape[0], 1, 1))
    for tensor in [c[0] for c in convs] + [c[1] for c in convs] + lins:
        if not torch.isfinite(tensor).all():
            raise ConfigError("has non-finite weights", where=where)
    return tuple(convs), tuple(lins)


def _lpips_distances(reference: np.ndarray, result: np.ndarray, data_range: float, path: Path) -> list[float]:
    """LPIPS v0.1 per view: unit-normalised AlexNet activations (after each ReLU), squared differences
    weighted per channel by the linear layers, averaged over space, summed over the five layers."""
    import torch
    import torch.nn.functional as nnf

    stat = path.stat()
    convs, lins = _load_lpips(str(path), stat.st_mtime_ns, stat.st_size)
    shift = torch.tensor(_LPIPS_SHIFT).reshape(1, 3, 1, 1)
    scale = torch.tensor(_LPIPS_SCALE).reshape(1, 3, 1, 1)

    def taps(images: torch.Tensor) -> list[torch.Tensor]:
        h = (images - shift) / scale
        out = []
        for layer, (weight, bias, stride, pad) in enumerate(convs):
            if layer in (1, 2):
                h = nnf.max_pool2d(h, kernel_size=3, stride=2)
            h = torch.relu(nnf.conv2d(h, weight, bias, stride=stride, padding=pad))
            out.append(h)
        return out

    distances: list[float] = []
    chunk = 8
    with torch.no_grad():
        for start in range(0, reference.shape[0], chunk):
            pair = [torch.from_numpy(np.ascontiguousarray(a[start:start + chunk], dtype=np.float32))
                    .permute(0, 3, 1, 2) * (2.0 / data_range) - 1.0 for a in (reference, result)]
            batch = len(pair[0])
            features = taps(torch.cat(pair))
            total = torch.zeros(batch, dtype=torch.float64)
            for feature, lin in zip(features, lins, strict=True):
                unit = feature / (feature.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                diff = (unit[:batch] - unit[batch:]).square()
                total += nnf.conv2d(diff, lin).mean(dim=(1, 2, 3)).double()
            distances.extend(float(d) for d in total)
    return distances


# ---------------------------------------------------------------------------------------------
# the comparison


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def compare_images(reference: Any, result: Any, *, data_range: float = 1.0,
                   lpips_weights: str | os.PathLike[str] | None = None,
                   vmaf: bool = True, flip: bool = True) -> MetricReport:
    """Measure ``result`` against ``reference`` (each (V, H, W, 3) or a list of (H, W, 3), float in
    [0, data_range], sRGB display-referred). Bad input raises InputError, bad options ConfigError;
    metrics that cannot be measured are ``None`` with the reason in ``not_measured``."""
    from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

    data_range = _finite_number(data_range, "data_range", "compare_images")
    if data_range <= 0:
        raise ConfigError(f"data_range must be positive, got {data_range}", where="compare_images")
    ref = _as_views(reference, "reference", data_range)
    res = _as_views(result, "result", data_range)
    if ref.shape != res.shape:
        raise InputError(f"shape {res.shape} differs from the reference's {ref.shape}", where="result",
                         hint="render the result at the reference views' size")
    count, height, width = ref.shape[:3]
    notes = ["psnr: pooled from the mean MSE over views, 10·log10(R²/mean MSE)",
             f"ssim: Gaussian window σ={SSIM_SIGMA}, population covariance, data_range={data_range:g}, "
             "mean over channels and views"]
    tools = {"scikit-image": _version("scikit-image")}
    not_measured: dict[str, str] = {}

    ssim_v, mse_v, psnr_v = [], [], []
    with np.errstate(divide="ignore"):
        for a, b in zip(ref, res, strict=True):
            ssim_v.append(float(structural_similarity(a, b, data_range=data_range, channel_axis=-1,
                                                      gaussian_weights=True, sigma=SSIM_SIGMA,
                                                      use_sample_covariance=False)))
            mse_v.append(float(mean_squared_error(a, b)))
            psnr_v.append(float(peak_signal_noise_ratio(a, b, data_range=data_range)))
    mse = float(np.mean(mse_v))
    psnr = math.inf if mse == 0.0 else 10.0 * math.log10(data_range**2 / mse)
    if mse == 0.0:
        notes.append("psnr: reference and result are identical (MSE 0): PSNR is infinite, null in JSON")

    flip_v: list[float] = []
    flip_maps: list[np.ndarray] = []
    if not flip:
        not_measured["flip"] = "disabled by the caller (flip=False)"
    else:
        try:
            used: dict[str, Any] = {}
            for a, b in zip(ref, res, strict=True):
                pair = [np.ascontiguousarray(x / data_range if data_range != 1.0 else x, dtype=np.float32)
                        for x in (a, b)]
                # float32 rounding of x / data_range can step a hair past 1.0
                pair = [np.clip(x, 0.0, 1.0, out=x) for x in pair]
                _validate_flip_pair(*pair)
                error_map, mean_error, used = _call_flip(*pair, {})
                flip_maps.append(error_map)
                flip_v.append(mean_error)
            tools["flip-evaluator"] = _version("flip-evaluator")
            if "ppd" in used:
                notes.append(f"flip: LDR-FLIP, sRGB inputs, {float(used['ppd']):.2f} pixels per degree")
        except _NotMeasured as exc:
            not_measured["flip"] = str(exc)
            flip_v, flip_maps = [], []
            log.warning("FLIP not measured: %s", exc)

    vmaf_v: list[float] = []
    if not vmaf:
        not_measured["vmaf"] = "disabled by the caller (vmaf=False)"
    else:
        try:
            vmaf_v, vmaf_notes, vmaf_tools = _measure_vmaf(ref, res, data_range)
            notes.extend(vmaf_notes)
            tools.update(vmaf_tools)
        except _NotMeasured as exc:
            not_measured["vmaf"] = str(exc)
            log.warning("VMAF not measured: %s", exc)

    lpips_v: list[float] = []
    try:
        path = _resolve_lpips_weights(lpips_weights)
        if min(height, width) < LPIPS_MIN_SIDE:
            raise _NotMeasured(f"views are {height}×{width}; LPIPS's AlexNet needs at least {LPIPS_MIN_SIDE} "
                               "pixels a side")
        try:
            import torch  # noqa: F401  (LPIPS only: torch comes with the splat extra)
        except ImportError:
            raise _NotMeasured("LPIPS needs PyTorch, which is not installed (optimizer-engine[splat])") from None
        lpips_v = _lpips_distances(ref, res, data_range, path)
        tools["lpips_weights"] = str(path)
        notes.append("lpips: v0.1 (AlexNet + linear layers), computed in plain PyTorch")
    except _NotMeasured as exc:
        not_measured["lpips"] = str(exc)

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    return MetricReport(
        views=count, height=height, width=width, data_range=data_range,
        ssim=float(np.mean(ssim_v)), psnr_db=psnr, mse=mse,
        flip=mean(flip_v), vmaf=mean(vmaf_v), lpips=mean(lpips_v),
        ssim_per_view=tuple(ssim_v), psnr_db_per_view=tuple(psnr_v), mse_per_view=tuple(mse_v),
        flip_per_view=tuple(flip_v), vmaf_per_view=tuple(vmaf_v), lpips_per_view=tuple(lpips_v),
        not_measured=not_measured, notes=tuple(notes), tools=tools, flip_maps=tuple(flip_maps),
    )
