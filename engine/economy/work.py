"""Work estimates: how many reference GPU-hours a job needs, from its plan, calibrated by measurement.

A job's *work units* follow the cost model of its pipeline:

* bake: rays = texels × samples × (1 + 2 · bounces): per sample one shadow ray for direct light,
  and per bounce a closest-hit ray plus a shadow ray (``engine.bake.pipeline``'s ray count);
* splat: steps × pixels × Gaussians (one training view rendered per step; a dense upper bound
  of the rasteriser's work).

The texel count of a bake is the lightmap layout's own density rule (``engine.bake.uv``):
T = clamp(A · 40², 0.6 · S² / 4, 0.6 · 8 · S²) for A m² of baked surface and S² atlases; the
settings' defaults mirror ``BakeSettings`` and ``SplatSettings`` (not imported: those modules pull
in numba and torch).

Units become time through a throughput in units per second *of a reference GPU* (an RTX 4090,
see :mod:`engine.economy.pool`). Until this machine has measured itself, the defaults are
assumptions (5·10⁸ rays/s for the numba CUDA tracer, 3·10¹³ splat units/s: a 30k-step 1080p
training of 10⁶ Gaussians in about half an hour). :class:`Calibration` keeps one throughput per
kind in ``DATA/economy/calibration.json``, measured on the local node and moved by an
exponential moving average (weight :data:`EMA_WEIGHT`) with every finished job
(:meth:`Calibration.observe`, :func:`observation_from_summary`); a local node of speed s
(reference GPU-hours per hour) that does R units/s implies R / s for the reference GPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

KINDS = ("bake", "splat")
EMA_WEIGHT = 0.3  # weight of a new observation in the moving average
DEFAULT_RATE = {"bake": 5.0e8, "splat": 3.0e13}  # units per second on a reference GPU (assumed)
CALIBRATION_FILE = Path("economy") / "calibration.json"
SCHEMA = "optimizer.economy.calibration/1"

# mirrors of the pipelines' defaults
PREFERRED_TEXELS_PER_METRE, FILL, MAX_ATLASES = 40.0, 0.6, 8
BAKE_DEFAULTS = {"atlas_size": 1024, "samples": 64, "bounces": 3}
SPLAT_DEFAULTS = {"steps": 3000, "resolution": 128, "gaussians": 100_000}


@dataclass(frozen=True)
class WorkEstimate:
    """One job's work: its kind, units, reference GPU-hours, and what the figure rests on."""

    kind: str
    units: float
    reference_hours: float
    basis: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "units": self.units, "reference_gpu_hours": round(self.reference_hours, 6),
                "basis": self.basis}


def bake_texels(area_m2: float, atlas_size: int = 1024) -> int:
    """Texels a bake lays out for ``area_m2`` of surface (the layout's default density rule)."""
    wanted = max(area_m2, 0.0) * PREFERRED_TEXELS_PER_METRE**2
    return int(min(max(wanted, FILL * atlas_size**2 / 4), FILL * MAX_ATLASES * atlas_size**2))


def bake_units(texels: float, samples: int, bounces: int) -> float:
    """Rays of a bake: texels × samples × (1 + 2 · bounces)."""
    return float(texels) * samples * (1 + 2 * bounces)


def splat_units(steps: int, pixels: float, gaussians: float) -> float:
    """Splat training work: steps × pixels per view × Gaussians."""
    return float(steps) * pixels * gaussians


def _check(settings: dict[str, Any], defaults: dict[str, Any], kind: str) -> dict[str, Any]:
    unknown = set(settings) - set(defaults)
    if unknown:
        raise ConfigError(f"unknown {kind} setting {sorted(unknown)[0]!r}", where="work estimate",
                          hint=f"known: {', '.join(defaults)}")
    merged = {**defaults, **settings}
    for key, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < (0 if key == "bounces" else 1):
            raise ConfigError(f"{key} must be a positive number, got {value!r}", where=f"{kind} settings")
    return merged


def estimate_work(features: Any, plan: Any, kind: str, calibration: Calibration | None = None,
                  local_speed: float = 1.0, **settings: Any) -> WorkEstimate:
    """The work of a ``kind`` job on a scene, from its ``Features`` and routing ``Plan``.

    Bakes cover the objects routed to "bake" (all static, visible ones if none is), splats
    train ``gaussians`` at ``resolution``² for ``steps``. ``settings`` override the defaults.
    """
    if kind not in KINDS:
        raise ConfigError(f"job kind {kind!r} has no work model", where="work estimate", hint="use bake or splat")
    calibration = calibration or Calibration()
    routes = {o.name: o.route for o in plan.objects}
    if kind == "bake":
        s = _check(settings, BAKE_DEFAULTS, kind)
        chosen = [o for o in features.objects if routes.get(o.name) == "bake"] or \
                 [o for o in features.objects if o.static and o.visible]
        scale = features.meters_per_unit if features.meters_per_unit is not None else 1.0
        area = float(sum(o.surface_area for o in chosen)) * scale**2
        texels = bake_texels(area, int(s["atlas_size"]))
        units = bake_units(texels, int(s["samples"]), int(s["bounces"]))
        basis = {"objects": len(chosen), "area_m2": round(area, 4), "texels": texels, **s}
    else:
        s = _check(settings, SPLAT_DEFAULTS, kind)
        units = splat_units(int(s["steps"]), float(s["resolution"]) ** 2, float(s["gaussians"]))
        basis = {"objects": sum(1 for r in routes.values() if r == "splat"), **s}
    rate = calibration.reference_rate(kind, local_speed)
    basis["reference_units_per_second"] = rate
    basis["calibrated"] = calibration.observations(kind) > 0
    return WorkEstimate(kind, units, units / rate / 3600.0, basis)


# --------------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    """Measured throughput per job kind on the local node (units per second), persisted as JSON."""

    path: Path | None = None
    rates: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def open(cls, data_dir: str | Path) -> Calibration:
        """The calibration kept under ``data_dir`` (empty when none was stored yet)."""
        path = Path(data_dir).expanduser() / CALIBRATION_FILE
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") != SCHEMA or not isinstance(data.get("kinds"), dict):
                raise ValueError(f"schema is {data.get('schema')!r}, expected {SCHEMA}")
            rates = {k: {"units_per_second": float(v["units_per_second"]), "local_speed": float(v["local_speed"]),
                         "observations": int(v["observations"]), "updated_at": float(v["updated_at"])}
                     for k, v in data["kinds"].items() if k in KINDS}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"the calibration file cannot be read ({exc})", where=str(path),
                               hint="delete it to start from the default throughputs") from None
        return cls(path, rates)

    def observations(self, kind: str) -> int:
        return int(self.rates.get(kind, {}).get("observations", 0))

    def reference_rate(self, kind: str, local_speed: float = 1.0) -> float:
        """Units per second of a reference GPU: measured (÷ the measuring node's speed) or the default."""
        entry = self.rates.get(kind)
        if not entry:
            return DEFAULT_RATE[kind]
        return entry["units_per_second"] / entry["local_speed"]

    def observe(self, kind: str, units: float, seconds: float, local_speed: float = 1.0) -> float:
        """Fold one measured run on the local node into the average; returns the new local rate."""
        if kind not in KINDS:
            raise ConfigError(f"job kind {kind!r} has no work model", where="calibration")
        if not (units > 0 and seconds > 0 and math.isfinite(units / seconds) and local_speed > 0):
            raise ConfigError(f"an observation needs units and seconds above 0, got {units!r} in {seconds!r} s",
                              where="calibration")
        rate = units / seconds
        entry = self.rates.get(kind)
        if entry and entry["local_speed"] == local_speed:
            rate = (1 - EMA_WEIGHT) * entry["units_per_second"] + EMA_WEIGHT * rate
        count = (entry["observations"] if entry else 0) + 1
        self.rates[kind] = {"units_per_second": rate, "local_speed": local_speed, "observations": count,
                            "updated_at": time.time()}
        self.save()
        return rate

    def save(self) -> None:
        """Write the file atomically (no-op for an in-memory calibration)."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"schema": SCHEMA, "kinds": self.rates}, indent=2), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StorageError(f"cannot write the calibration ({exc.strerror or exc})", where=str(self.path)) from None


def measure(kind: str, workload: Callable[[], float], calibration: Calibration, local_speed: float = 1.0) -> float:
    """Time ``workload`` (which does some work and returns its units) on this node and record it."""
    started = time.perf_counter()
    units = float(workload())
    return calibration.observe(kind, units, time.perf_counter() - started, local_speed)


def observation_from_summary(kind: str, summary: dict[str, Any]) -> tuple[float, float]:
    """(units, seconds) of a finished job from the summary its pipeline wrote (bake.json, splat.json)."""
    try:
        if kind == "bake":
            units = bake_units(summary["texels"], summary["samples"], summary["bounces"])
            return units, float(summary["timings_s"]["total_s"])
        if kind == "splat":
            views = summary["views"]
            done = summary["steps"] - summary.get("resumed_from", 0)
            units = splat_units(done, views["width"] * views["height"], summary["gaussians"])
            return units, float(summary["timings_s"]["train_s"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"the {kind} summary lacks {exc}", where="calibration") from None
    raise ConfigError(f"job kind {kind!r} has no work model", where="calibration")
