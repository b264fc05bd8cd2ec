"""Deferral decisions for the engine service: when each waiting ``economy`` job may start.

The service hands over its waiting economy jobs (work in reference GPU-hours, deadline) and its
pool; :func:`plan_deferral` answers, per job, either a start time (``not_before``) with the
window, cost, run-now baseline and saving, or "run now" with the reason when its deadline cannot
be met by waiting (never silently late: the message gives the earliest possible finish and its
cost, as :class:`DeadlineInfeasible` words it).

Each decision is the plan on the **local node alone**. When the whole pool (with peers) has a
cheaper plan that puts a job on a peer, the decision's ``plan["elsewhere"]`` names that peer and
its start: the service forwards the job there when that start is now (and the peer can be
reached); otherwise the job runs here, in the local window, and the message says so ("would run
on <peer> at <time>, but it is not forwarded there").

Jobs run whole and without pausing in the service (a worker cannot suspend a job at a
checkpoint), so every job is planned as indivisible. The slot grid is anchored at the start of
the current hour so that slots line up with hourly tariff changes (re-planning a minute later
gives the same windows); each deadline is moved earlier by the minutes already gone in that hour,
so a job placed in the first slot, which really starts now, still finishes in time. The greedy
solver is used: of equally cheap windows it takes the earliest (the MILP may return any of them),
and a node's handful of waiting jobs is far below the sizes where it trails the exact solution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.economy.pool import Pool
from engine.economy.prices import as_utc, zone
from engine.economy.quote import run_now
from engine.economy.scheduler import HORIZON_HOURS, DeadlineInfeasible, Job, schedule

DEFAULT_DEADLINE = timedelta(hours=24)  # an economy job without a deadline is due a day after it is planned
DEFAULT_WORK_HOURS = 0.05  # kinds without a work model (analyze, verify, plug-ins): 3 reference GPU-minutes


@dataclass(frozen=True)
class Waiting:
    """An economy job waiting for its plan: ``work`` reference GPU-hours, due by ``deadline``."""

    id: str
    work: float
    deadline: datetime
    kind: str = ""


@dataclass(frozen=True)
class Decision:
    """When one job may start (``not_before``; None: now, its deadline cannot wait) and why."""

    job_id: str
    not_before: datetime | None
    plan: dict[str, Any]
    message: str

    @property
    def run_now(self) -> bool:
        return self.not_before is None


def _iso(when: datetime, tz: Any) -> str:
    return when.astimezone(tz).isoformat(timespec="seconds")


def plan_deferral(waiting: Sequence[Waiting], pool: Pool, now: datetime, *,
                  horizon_hours: int = HORIZON_HOURS) -> list[Decision]:
    """A decision for every waiting job: the least-cost local windows that meet every deadline."""
    if not waiting:
        return []
    now = as_utc(now)
    anchor = now.replace(minute=0, second=0, microsecond=0)
    lead = now - anchor
    local = pool.local
    tz = zone(local.timezone)
    currency = local.tariff.currency
    jobs = [Job(w.id, w.work, as_utc(w.deadline) - lead, kind=w.kind) for w in waiting]
    options: dict[str, Any] = {"horizon_hours": horizon_hours, "strict": False, "method": "greedy"}
    here = schedule(jobs, Pool((local,)), anchor, **options)
    everywhere = schedule(jobs, pool, anchor, **options) if len(pool.nodes) > 1 else here
    keep_here, keep_all = 1 - here.discount, 1 - everywhere.discount
    elsewhere = {a.job.id: a for a in everywhere.assignments if a.nodes != [local.name]}
    deadlines = {w.id: as_utc(w.deadline) for w in waiting}
    decisions = []
    for a in here.assignments:
        piece = a.pieces[0]
        start = max(piece.start, now)
        finish = start + (piece.end - piece.start)
        cost = a.cost * keep_here
        base = run_now(a.job, local, now).cost * keep_here
        saving = 100.0 * (base - cost) / base if base > 0 else 0.0
        plan: dict[str, Any] = {
            "mode": "deferred", "node": local.name, "not_before": _iso(start, tz), "finish": _iso(finish, tz),
            "window": {"start": _iso(start, tz), "end": _iso(finish, tz)},
            "deadline": _iso(deadlines[a.job.id], tz), "work_reference_gpu_hours": round(a.job.work, 6),
            "cost": round(cost, 4), "baseline_cost": round(base, 4), "saving_percent": round(saving, 2),
            "currency": currency, "planned_at": _iso(now, tz),
        }
        message = (f"economy: scheduled to start at {plan['not_before']} on this node ({local.name}), "
                   f"finishing by {plan['finish']} (deadline {plan['deadline']}); cost {cost:.2f} {currency} "
                   f"against {base:.2f} run now ({saving:.0f} % saving)")
        other = elsewhere.get(a.job.id)
        if other is not None:
            peer = other.pieces[0]
            plan["elsewhere"] = {"node": peer.node, "start": _iso(max(peer.start, now), tz),
                                 "cost": round(other.cost * keep_all, 4)}
            message += (f"; the pool's cheapest plan would run on {peer.node} at {plan['elsewhere']['start']} "
                        f"({plan['elsewhere']['cost']:.2f} {currency}), but it is not forwarded there: "
                        "it runs here")
        decisions.append(Decision(a.job.id, start, plan, message))
    for unmet in here.unmet:
        job_id = unmet.job.id
        finish = unmet.earliest_finish + lead if unmet.earliest_finish is not None else None
        plan = {"mode": "now", "node": local.name, "deadline": _iso(deadlines[job_id], tz),
                "earliest_finish": None if finish is None else _iso(finish, tz),
                "earliest_cost": None if unmet.earliest_cost is None else round(unmet.earliest_cost, 4),
                "currency": currency, "planned_at": _iso(now, tz)}
        reason = DeadlineInfeasible([unmet])
        if finish is not None:
            why = (f"the earliest possible finish is {plan['earliest_finish']} at a cost of "
                   f"{unmet.earliest_cost:.2f} {currency}")
        else:
            why = reason.hint
        message = (f"economy: the deadline {plan['deadline']} cannot be met by waiting for a cheaper window "
                   f"({why}); it runs now")
        decisions.append(Decision(job_id, None, plan, message))
    order = {w.id: i for i, w in enumerate(waiting)}
    return sorted(decisions, key=lambda d: order[d.job_id])
