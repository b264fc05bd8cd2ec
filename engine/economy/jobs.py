"""From a scene's analysis to jobs to quote: deadlines, the default pool, the jobs of a plan.

``parse_deadline`` reads "24h", "90m", "2d", "1d12h" (from now) or an ISO 8601 time with an
offset. ``default_pool`` is this machine alone (``local_timezone``: $TZ, else /etc/localtime's
zone name, else UTC), as an RTX 4090-class node (override with a node file). ``jobs_from_analysis``
turns a routing plan into one job per processing route: "bake" and "splat" plans give one job,
"hybrid" gives a bake job and a splat job; splat jobs are divisible (training checkpoints), bake
jobs run whole.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from engine.economy.pool import TIERS, Node, Pool
from engine.economy.prices import DEFAULT_TARIFF, Tariff, as_utc, zone
from engine.economy.scheduler import Job
from engine.economy.work import Calibration, WorkEstimate, estimate_work
from engine.errors import ConfigError, InputError

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*$", re.I)


def parse_deadline(text: str, now: datetime, where: str = "--deadline") -> datetime:
    """A deadline from a duration ("24h", "2d", "1d12h", "90m") after ``now`` or an ISO 8601 time with offset."""
    match = _DURATION.match(text or "")
    if text and match and any(match.groups()):
        days, hours, minutes = (float(g or 0) for g in match.groups())
        span = timedelta(days=days, hours=hours, minutes=minutes)
        if span <= timedelta(0):
            raise InputError(f"{text!r} is no time at all", where=where, hint="e.g. 24h or 2d")
        return as_utc(now) + span
    try:
        when = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{text!r} is neither a duration nor an ISO 8601 time", where=where,
                         hint="e.g. 24h, 2d, 90m or 2025-03-30T18:00:00+02:00") from None
    return as_utc(when, where)


def local_timezone() -> str:
    """This machine's IANA time zone name: $TZ, else the zone /etc/localtime links to, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            zone(name)
            return name
        except ConfigError:
            pass
    try:
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            name = target.split("zoneinfo/", 1)[1]
            zone(name)
            return name
    except (OSError, ConfigError):
        pass
    return "UTC"


def default_pool(timezone: str | None = None, tariff: Tariff = DEFAULT_TARIFF) -> Pool:
    """This machine alone, in its time zone."""
    return Pool((Node("local", timezone or local_timezone(), TIERS["rtx4090"], tariff=tariff, local=True),))


def jobs_from_analysis(result: Any, deadline: datetime, kind: str = "auto", calibration: Calibration | None = None,
                       local_speed: float = 1.0, settings: dict[str, dict[str, Any]] | None = None,
                       ) -> tuple[list[Job], list[WorkEstimate]]:
    """The jobs of an ``AnalysisResult`` (``engine.route``) due by ``deadline``, and their work estimates."""
    pipeline = result.plan.pipeline
    if kind == "auto":
        kinds = ["bake", "splat"] if pipeline == "hybrid" else [pipeline]
    elif kind in ("bake", "splat"):
        kinds = [kind]
    else:
        raise ConfigError(f"kind {kind!r} is unknown", where="quote", hint="use bake, splat or auto")
    settings = settings or {}
    jobs, estimates = [], []
    for k in kinds:
        estimate = estimate_work(result.features, result.plan, k, calibration, local_speed, **settings.get(k, {}))
        estimates.append(estimate)
        jobs.append(Job(f"{result.scene_name}:{k}", estimate.reference_hours, deadline, divisible=k == "splat", kind=k))
    return jobs, estimates
