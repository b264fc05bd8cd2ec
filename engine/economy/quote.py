"""Quotes: where and when each job runs, what it costs, and what running it now would have cost.

A quote schedules the jobs (:func:`engine.economy.scheduler.schedule`) and sets each against its
*run-now baseline*: the job started now on the local node (``Pool.local``), run whole at that
node's prices, as if nothing were deferred (availability windows ignored: the artist's own
machine is used at once; each job's baseline is priced as if it were alone). The saving is
``(baseline − cost) / baseline``; the volume discount, when it applies, applies to both sides.

The original design promised a fixed saving: 0.6 (off-peak) × 0.85 × 0.95 (volume) of the
baseline, i.e. 48.45 % of it, a 51.55 % saving whatever the job. Every quote states what that
formula would have claimed, next to the computed figure.

Times are ISO 8601 with offsets: windows in their node's own time zone, start/finish/deadline in
the local node's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from engine.economy.pool import Node, Pool
from engine.economy.prices import as_utc, zone
from engine.economy.scheduler import HORIZON_HOURS, Job, Schedule, schedule

DESIGN_FACTOR = 0.6 * 0.85 * 0.95  # the original design's fixed economy price, as a share of the baseline


def _iso(when: datetime, tz: Any) -> str:
    return when.astimezone(tz).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Baseline:
    """A job run now, whole, on the local node."""

    node: str
    start: datetime
    finish: datetime
    cost: float
    meets_deadline: bool


def run_now(job: Job, node: Node, now: datetime) -> Baseline:
    """The run-now baseline of ``job``: from ``now`` on ``node``, contiguous, at its prices."""
    now = as_utc(now).replace(second=0, microsecond=0)
    hours = job.work / node.speed
    slots = int(np.ceil(hours)) or 1
    price = node.slot_prices(now, slots)
    whole = int(np.floor(hours))
    cost = float(price[:whole].sum() + (hours - whole) * (price[whole] if whole < slots else 0.0))
    finish = now + timedelta(hours=hours)
    return Baseline(node.name, now, finish, cost, finish <= as_utc(job.deadline))


@dataclass(frozen=True)
class Quote:
    """A schedule with its baselines and savings."""

    schedule: Schedule
    pool: Pool
    baselines: dict[str, Baseline]
    currency: str = "USD"

    @property
    def cost(self) -> float:
        return self.schedule.cost

    @property
    def baseline_cost(self) -> float:
        placed = [a.job.id for a in self.schedule.assignments]
        return float(sum(self.baselines[j].cost for j in placed)) * (1 - self.schedule.discount)

    @property
    def saving_percent(self) -> float:
        base = self.baseline_cost
        return 100.0 * (base - self.cost) / base if base > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``optimizer quote --json`` and ``POST /v1/quote``."""
        local_tz = zone(self.pool.local.timezone)
        node_tz = {n.name: zone(n.timezone) for n in self.pool.nodes}
        keep = 1 - self.schedule.discount
        jobs = []
        for a in self.schedule.assignments:
            base = self.baselines[a.job.id]
            cost, base_cost = a.cost * keep, base.cost * keep
            jobs.append({
                "job": a.job.id,
                "kind": a.job.kind,
                "work_reference_gpu_hours": round(a.job.work, 6),
                "divisible": a.job.divisible,
                "nodes": a.nodes,
                "windows": [{**p.to_dict(), "start": _iso(p.start, node_tz[p.node]),
                             "end": _iso(p.end, node_tz[p.node])} for p in a.pieces],
                "start": _iso(a.start, local_tz),
                "finish": _iso(a.finish, local_tz),
                "deadline": _iso(a.job.deadline, local_tz),
                "cost": round(cost, 6),
                "baseline": {"node": base.node, "start": _iso(base.start, local_tz),
                             "finish": _iso(base.finish, local_tz), "cost": round(base_cost, 6),
                             "meets_deadline": base.meets_deadline},
                "saving_percent": round(100.0 * (base_cost - cost) / base_cost, 3) if base_cost > 0 else 0.0,
                "design_formula": {"cost": round(base_cost * DESIGN_FACTOR, 6),
                                   "saving_percent": round(100.0 * (1 - DESIGN_FACTOR), 3)},
            })
        return {
            "now": _iso(self.schedule.now, local_tz),
            "currency": self.currency,
            "horizon_hours": self.schedule.horizon_hours,
            "jobs": jobs,
            "unmet": [u.to_dict() for u in self.schedule.unmet],
            "total": {"cost": round(self.cost, 6), "baseline_cost": round(self.baseline_cost, 6),
                      "saving_percent": round(self.saving_percent, 3),
                      "volume_discount_percent": round(100 * self.schedule.discount, 3),
                      "design_formula_cost": round(self.baseline_cost * DESIGN_FACTOR, 6),
                      "design_formula_saving_percent": round(100.0 * (1 - DESIGN_FACTOR), 3)},
            "pool": [n.to_dict() for n in self.pool.nodes],
            "solver": self.schedule.solver,
        }


def quote(jobs: Sequence[Job], pool: Pool, now: datetime, *, horizon_hours: int = HORIZON_HOURS,
          **options: Any) -> Quote:
    """Schedule ``jobs`` on ``pool`` from ``now`` and set each against its run-now baseline.

    Raises DeadlineInfeasible (an InputError) when a deadline cannot be met (see ``schedule``)."""
    planned = schedule(jobs, pool, now, horizon_hours=horizon_hours, **options)
    local = pool.local
    baselines = {j.id: run_now(j, local, now) for j in jobs}
    return Quote(planned, pool, baselines, local.tariff.currency)
