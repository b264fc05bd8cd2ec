"""Deadline-aware least-cost scheduling of jobs on a pool of nodes over hourly slots.

The horizon (default 168 h) is a grid of hourly slots anchored at ``now``: slot t is
[now + t h, now + (t + 1) h). Node n's GPU-hour in slot t costs ``price[n, t]`` (its tariff in its
own time zone × tier price factor × (1 + verification surcharge); +inf outside its availability
windows) and it runs ``gpus[n]`` jobs at once. A job needs ``work`` reference GPU-hours, i.e.
``d[j, n] = work / speed[n]`` hours on node n, and must finish by its deadline.

**Indivisible jobs** (no checkpoints) run whole, contiguously, on one GPU. Every candidate
(job, node, start slot) is priced at once with prefix sums of the node's slot prices (a run of
2.4 h from slot s costs P[s] + P[s+1] + 0.4·P[s+2]); a run is feasible when it ends by the
deadline, lies inside the horizon and inside the node's availability. It holds its GPU for
ceil(d) slots (one job per GPU-slot). The choice is made by

* ``exact``: a MILP over all feasible candidates (``scipy.optimize.milp``, HiGHS, time limit):
  one candidate per job, at most ``gpus`` runs per node-slot. Exact; used when the candidate set
  is small (≤ ``exact_limit``) and always in ``method="exact"``.
* ``greedy``: jobs in several orders (earliest deadline, largest first, largest regret), each
  placed at its cheapest free candidate, then local improvement (take each job out and put it
  back at its cheapest free candidate, until nothing improves); the best order wins. A few
  milliseconds for 100 jobs × 16 nodes × 168 slots.

``auto`` runs the greedy, and the MILP too when the instance is small, keeping the cheaper.

**Divisible jobs** (they pause at checkpoints) are a linear programme: x[j, n, t] hours of job j
on node n in slot t, with Σ speed·x = work, Σ_j x ≤ free GPUs per node-slot, Σ_n x ≤ 1 per job
and slot (a job runs on one GPU at a time; its checkpoint may move between nodes), and only slots
that end by the deadline (a divisible job's deadline rounds down to the slot grid). With equal
speeds it is a transportation problem (a min-cost flow, integral); with tiers it is solved as an
LP (``scipy.optimize.linprog``, HiGHS). Unserved work is a slack with a prohibitive price, so an
infeasible job is *named* rather than the whole LP failing. Divisible jobs take the GPU-slots
the indivisible ones leave; a divisible job with no whole slot before its deadline runs whole.

A job that cannot meet its deadline raises :class:`DeadlineInfeasible` (an InputError) naming
it with its earliest possible finish alone on the pool and that run's cost; ``strict=False``
returns the other jobs scheduled and lists it in ``Schedule.unmet`` instead (re-planning after
a node is lost, :func:`replan`). Volume discount (original design): 5 % off a schedule's cost
when it places more than 10 jobs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from engine.economy.pool import Pool
from engine.economy.prices import as_utc
from engine.errors import ConfigError, InputError

log = logging.getLogger(__name__)

HORIZON_HOURS = 168
VOLUME_DISCOUNT, VOLUME_THRESHOLD = 0.05, 10
EXACT_LIMIT = 6000  # candidates up to which "auto" also runs the exact MILP
EPS = 1e-9


@dataclass(frozen=True)
class Job:
    """A job to place: ``work`` in reference GPU-hours, due by ``deadline`` (aware datetime)."""

    id: str
    work: float
    deadline: datetime
    divisible: bool = False
    kind: str = ""
    release: datetime | None = None
    memory_gb: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.work, (int, float)) and math.isfinite(self.work) and self.work > 0):
            raise ConfigError(f"work must be a positive number of GPU-hours, got {self.work!r}", where=f"job {self.id}")
        as_utc(self.deadline, f"job {self.id}: deadline")


@dataclass(frozen=True)
class Piece:
    """A stretch of a job on one node."""

    node: str
    start: datetime
    end: datetime
    cost: float

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "hours": round(self.hours, 4), "cost": round(self.cost, 6)}


@dataclass(frozen=True)
class Assignment:
    """Where and when one job runs."""

    job: Job
    pieces: tuple[Piece, ...]

    @property
    def cost(self) -> float:
        return float(sum(p.cost for p in self.pieces))

    @property
    def start(self) -> datetime:
        return min(p.start for p in self.pieces)

    @property
    def finish(self) -> datetime:
        return max(p.end for p in self.pieces)

    @property
    def nodes(self) -> list[str]:
        return list(dict.fromkeys(p.node for p in self.pieces))


@dataclass(frozen=True)
class Unmet:
    """A job whose deadline cannot be met, with the earliest finish it could have and its cost."""

    job: Job
    problem: str
    earliest_finish: datetime | None
    earliest_cost: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job.id, "deadline": self.job.deadline.isoformat(), "problem": self.problem,
                "earliest_finish": self.earliest_finish.isoformat() if self.earliest_finish else None,
                "earliest_cost": None if self.earliest_cost is None else round(self.earliest_cost, 6)}


class DeadlineInfeasible(InputError):
    """One or more deadlines cannot be met; ``unmet`` says which, and the earliest finish of each."""

    def __init__(self, unmet: Sequence[Unmet]) -> None:
        self.unmet = list(unmet)
        first = self.unmet[0]
        if first.earliest_finish is not None:
            hint = (f"the earliest possible finish is {first.earliest_finish.isoformat()} at a cost of "
                    f"{first.earliest_cost:.2f}; move the deadline, or add nodes")
        else:
            hint = "no node can run it within the horizon; add nodes or widen their availability"
        more = f" (and {len(self.unmet) - 1} more job(s))" if len(self.unmet) > 1 else ""
        super().__init__(f"{first.problem}{more}", where=f"job {first.job.id}", hint=hint)


@dataclass(frozen=True)
class Schedule:
    """The assignments, what could not be met, the total cost (discount applied) and solver facts."""

    now: datetime
    horizon_hours: int
    assignments: tuple[Assignment, ...]
    unmet: tuple[Unmet, ...] = ()
    discount: float = 0.0
    solver: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> float:
        return float(sum(a.cost for a in self.assignments)) * (1 - self.discount)

    def assignment(self, job_id: str) -> Assignment:
        for a in self.assignments:
            if a.job.id == job_id:
                return a
        raise KeyError(job_id)


# --------------------------------------------------------------------------------- the problem


@dataclass
class _Problem:
    now: datetime
    hours: int
    jobs: list[Job]
    pool: Pool
    price: np.ndarray  # (N, S) per GPU-hour, inf where unavailable
    gpus: np.ndarray  # (N,)
    speed: np.ndarray  # (N,)
    free: np.ndarray  # (N, S) available
    duration: np.ndarray  # (J, N) hours
    deadline: np.ndarray  # (J,) hours from now
    release: np.ndarray  # (J,) first slot
    fits: np.ndarray  # (J, N) memory fits

    @classmethod
    def build(cls, jobs: Sequence[Job], pool: Pool, now: datetime, hours: int) -> _Problem:
        price, gpus, speed, free = pool.matrices(now, hours)
        work = np.array([j.work for j in jobs], np.float64)
        deadline = np.array([(as_utc(j.deadline) - now).total_seconds() / 3600 for j in jobs])
        release = np.array([0 if j.release is None else
                            max(0, math.ceil((as_utc(j.release) - now).total_seconds() / 3600 - EPS)) for j in jobs])
        memory = np.array([n.tier.memory_gb if n.tier.memory_gb > 0 else np.inf for n in pool.nodes])
        fits = np.array([j.memory_gb for j in jobs])[:, None] <= memory[None, :]
        return cls(now, hours, list(jobs), pool, price, gpus, speed, free, work[:, None] / speed[None, :],
                   deadline, release.astype(np.int64), fits)

    def at(self, hours: float) -> datetime:
        return self.now + timedelta(hours=float(hours))


def _run_costs(p: _Problem, rows: np.ndarray, busy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cost (J', N, S) of a whole run of each job in ``rows`` from each start slot (inf: infeasible), and
    slots held (J', N). ``busy`` (N, S) marks GPU-slots with no GPU left."""
    n_nodes, hours = p.price.shape
    price0 = np.where(p.free, p.price, 0.0)
    cum = np.concatenate([np.zeros((n_nodes, 1)), np.cumsum(price0, axis=1)], axis=1)
    blocked = ~p.free if busy is None else (~p.free | busy)
    bad = np.concatenate([np.zeros((n_nodes, 1), np.int64), np.cumsum(blocked, axis=1)], axis=1)
    d = p.duration[rows]  # (J', N)
    whole = np.floor(d + EPS).astype(np.int64)
    frac = np.clip(d - whole, 0.0, None)
    frac[frac < EPS] = 0.0
    held = whole + (frac > 0)
    s = np.arange(hours)[None, None, :]
    end = s + held[:, :, None]
    inside = end <= hours
    end_c = np.minimum(end, hours)
    k = np.minimum(s + whole[:, :, None], hours)
    node = np.arange(n_nodes)[None, :, None]
    price_pad = np.concatenate([price0, np.zeros((n_nodes, 1))], axis=1)
    cost = cum[node, k] - cum[node, s] + frac[:, :, None] * price_pad[node, k]
    ok = inside & (bad[node, end_c] - bad[node, s] == 0)
    ok &= (s + d[:, :, None]) <= p.deadline[rows][:, None, None] + EPS
    ok &= s >= p.release[rows][:, None, None]
    ok &= p.fits[rows][:, :, None]
    return np.where(ok, cost, np.inf), held


def _greedy(p: _Problem, rows: np.ndarray, costs: np.ndarray, held: np.ndarray, base_occ: np.ndarray,
            order: np.ndarray, improve_passes: int = 4) -> tuple[dict[int, tuple[int, int]], float]:
    """Place jobs (indices into ``rows``) in ``order`` at their cheapest free run; then local improvement."""
    occ = base_occ.copy()
    n_nodes, hours = occ.shape
    placed: dict[int, tuple[int, int]] = {}
    slot = np.arange(hours)

    def best(i: int) -> tuple[int, int, float]:
        full = occ >= p.gpus[:, None]
        fcum = np.concatenate([np.zeros((n_nodes, 1), np.int64), np.cumsum(full, axis=1)], axis=1)
        end = np.minimum(slot[None, :] + held[i][:, None], hours)
        clear = (fcum[np.arange(n_nodes)[:, None], end] - fcum[:, :hours]) == 0
        c = np.where(clear, costs[i], np.inf)
        flat = int(np.argmin(c))
        n, s = divmod(flat, hours)
        return n, s, float(c[n, s])

    def put(i: int, n: int, s: int, sign: int) -> None:
        occ[n, s:s + held[i, n]] += sign

    for i in order:
        n, s, c = best(int(i))
        if math.isfinite(c):
            placed[int(i)] = (n, s)
            put(int(i), n, s, 1)
    for _ in range(improve_passes):
        improved = False
        for i in list(placed):
            n0, s0 = placed[i]
            old = costs[i, n0, s0]
            put(i, n0, s0, -1)
            n, s, c = best(i)
            if c < old - 1e-12:
                placed[i] = (n, s)
                improved = True
            else:
                n, s = n0, s0
            put(i, n, s, 1)
        # retry jobs left out: moves may have made room
        for i in order:
            if int(i) not in placed:
                n, s, c = best(int(i))
                if math.isfinite(c):
                    placed[int(i)] = (n, s)
                    put(int(i), n, s, 1)
                    improved = True
        if not improved:
            break
    total = float(sum(costs[i, n, s] for i, (n, s) in placed.items()))
    return placed, total


def _exact(p: _Problem, costs: np.ndarray, held: np.ndarray, base_occ: np.ndarray,
           time_limit: float) -> dict[int, tuple[int, int]] | None:
    """The MILP over every feasible candidate; None when HiGHS found no solution in time."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    jj, nn, ss = np.nonzero(np.isfinite(costs))
    count = len(jj)
    n_jobs, (n_nodes, hours) = costs.shape[0], base_occ.shape
    if count == 0:
        return {} if n_jobs == 0 else None
    have = np.zeros(n_jobs, bool)
    have[jj] = True
    lengths = held[jj, nn]
    var = np.repeat(np.arange(count), lengths)
    offs = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cell = nn[var] * hours + ss[var] + offs
    cap_rows = coo_matrix((np.ones(len(var)), (cell, var)), shape=(n_nodes * hours, count)).tocsr()
    capacity = np.repeat(p.gpus, hours) - base_occ.ravel()
    used = np.flatnonzero(cap_rows.getnnz(axis=1))
    job_rows = coo_matrix((np.ones(count), (jj, np.arange(count))), shape=(n_jobs, count)).tocsr()[have]
    constraints = [LinearConstraint(job_rows, 1, 1), LinearConstraint(cap_rows[used], -np.inf, capacity[used])]
    result = milp(costs[jj, nn, ss], integrality=np.ones(count), bounds=Bounds(0, 1), constraints=constraints,
                  options={"time_limit": time_limit, "presolve": True})
    if result.x is None:
        return None
    chosen = np.flatnonzero(result.x > 0.5)
    return {int(jj[c]): (int(nn[c]), int(ss[c])) for c in chosen}


def _divisible(p: _Problem, rows: np.ndarray, occ: np.ndarray) -> tuple[dict[int, np.ndarray], list[int], float]:
    """LP of the divisible jobs on the GPU-slots left: x[j] (N, S) hours per job row; unserved rows."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    n_nodes, hours = p.price.shape
    residual = np.clip(p.gpus[:, None] - occ, 0, None).astype(np.float64)
    cells_j, cells_n, cells_t = [], [], []
    for r, j in enumerate(rows):
        last = min(hours, math.floor(p.deadline[j] + EPS))  # slots that end by the deadline
        ok = p.free & (residual > 0) & p.fits[j][:, None]
        ok[:, :p.release[j]] = False
        ok[:, last:] = False
        n, t = np.nonzero(ok)
        cells_j.append(np.full(len(n), r))
        cells_n.append(n)
        cells_t.append(t)
    cj, cn, ct = (np.concatenate(a) if a else np.zeros(0, np.int64) for a in (cells_j, cells_n, cells_t))
    count, n_rows = len(cj), len(rows)
    slack_price = 1e6 * max(1.0, float(np.nanmax(np.where(np.isfinite(p.price), p.price, 0))))
    c = np.concatenate([p.price[cn, ct], np.full(n_rows, slack_price)])
    var = np.arange(count)
    work_eq = coo_matrix((np.concatenate([p.speed[cn], np.ones(n_rows)]),
                          (np.concatenate([cj, np.arange(n_rows)]), np.concatenate([var, count + np.arange(n_rows)]))),
                         shape=(n_rows, count + n_rows))
    cap = coo_matrix((np.ones(count), (cn * hours + ct, var)), shape=(n_nodes * hours, count + n_rows)).tocsr()
    one = coo_matrix((np.ones(count), (cj * hours + ct, var)), shape=(n_rows * hours, count + n_rows)).tocsr()
    cap_used, one_used = np.flatnonzero(cap.getnnz(axis=1)), np.flatnonzero(one.getnnz(axis=1))
    from scipy.sparse import vstack

    a_ub = vstack([cap[cap_used], one[one_used]]).tocsr()
    b_ub = np.concatenate([residual.ravel()[cap_used], np.ones(len(one_used))])
    work = np.array([p.jobs[j].work for j in rows])
    result = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=work_eq.tocsr(), b_eq=work,
                     bounds=[(0, 1)] * count + [(0, None)] * n_rows, method="highs")
    if result.x is None:
        raise ConfigError(f"the divisible-job LP failed: {result.message}", where="scheduler")
    x = result.x
    unserved = [int(r) for r in np.flatnonzero(x[count:] > 1e-7 * np.maximum(work, 1e-9))]
    out: dict[int, np.ndarray] = {}
    for r in range(n_rows):
        if r in unserved:
            continue
        grid = np.zeros((n_nodes, hours))
        sel = (cj == r) & (x[:count] > 1e-9)
        grid[cn[sel], ct[sel]] = x[:count][sel]
        out[r] = grid
    return out, unserved, float(c[:count] @ x[:count])


def _earliest(p: _Problem, j: int) -> tuple[float | None, float | None]:
    """Earliest finish (hours from now) of job j alone on the pool, and that run's cost."""
    job = p.jobs[j]
    if job.divisible:
        rate = np.where(p.free & p.fits[j][:, None], p.speed[:, None], 0.0)
        rate[:, :p.release[j]] = 0
        best = rate.argmax(axis=0)
        per_slot = rate[best, np.arange(p.hours)]
        done = np.cumsum(per_slot)
        reach = np.flatnonzero(done >= job.work - EPS)
        if len(reach) == 0:
            return None, None
        t = int(reach[0])
        before = done[t - 1] if t else 0.0
        hours_last = (job.work - before) / per_slot[t]
        price = p.price[best, np.arange(p.hours)]
        cost = float(np.sum(np.where(per_slot[:t] > 0, price[:t], 0.0)) + hours_last * price[t])
        return t + hours_last, cost
    relaxed = replace(p, deadline=np.full(len(p.jobs), np.inf))
    costs, _ = _run_costs(relaxed, np.array([j]))
    finish = np.where(np.isfinite(costs[0]), np.arange(p.hours)[None, :] + p.duration[j][:, None], np.inf)
    if not np.isfinite(finish).any():
        return None, None
    n, s = divmod(int(np.argmin(finish)), p.hours)
    return float(finish[n, s]), float(costs[0, n, s])


def _unmet(p: _Problem, j: int, alone: bool) -> Unmet:
    job = p.jobs[j]
    finish, cost = _earliest(p, j)
    when = None if finish is None else p.at(finish)
    if when is None:
        problem = f"cannot run within the {p.hours} h horizon on any node (availability, memory or size)"
    elif alone:
        problem = f"deadline {job.deadline.isoformat()} is before the earliest possible finish"
    else:
        problem = f"deadline {job.deadline.isoformat()} cannot be met alongside the other jobs"
    return Unmet(job, problem, when, cost)


# --------------------------------------------------------------------------------- entry points


def schedule(jobs: Sequence[Job], pool: Pool, now: datetime, *, horizon_hours: int = HORIZON_HOURS,
             method: str = "auto", time_limit: float = 2.0, exact_limit: int = EXACT_LIMIT, strict: bool = True,
             occupied: np.ndarray | None = None) -> Schedule:
    """The least-cost schedule of ``jobs`` on ``pool`` from ``now`` that meets every deadline.

    ``occupied`` (N, S) counts GPUs already taken per node-slot (jobs running on). Raises
    DeadlineInfeasible when a deadline cannot be met (``strict``), else lists it in ``unmet``.
    """
    if method not in ("auto", "greedy", "exact"):
        raise ConfigError(f"method {method!r} is unknown", where="scheduler", hint="use auto, greedy or exact")
    if not 1 <= horizon_hours <= 24 * 366:
        raise ConfigError(f"horizon of {horizon_hours} h is out of range (1 h to a year)", where="scheduler")
    ids = [j.id for j in jobs]
    if len(set(ids)) != len(ids):
        raise ConfigError("two jobs share an id", where="scheduler")
    started = time.perf_counter()
    now = as_utc(now).replace(second=0, microsecond=0)
    p = _Problem.build(jobs, pool, now, horizon_hours)
    occ = np.zeros(p.price.shape, np.int64) if occupied is None else np.asarray(occupied, np.int64).copy()
    too_short = {j for j, job in enumerate(jobs) if job.divisible and min(horizon_hours, p.deadline[j]) < 1 + EPS}
    whole = np.array([j for j, job in enumerate(jobs) if not job.divisible or j in too_short], np.int64)
    split = np.array([j for j, job in enumerate(jobs) if job.divisible and j not in too_short], np.int64)
    info: dict[str, Any] = {"indivisible": len(whole), "divisible": len(split)}
    unmet: list[int] = []
    assignments: dict[int, Assignment] = {}
    if len(whole):
        costs, held = _run_costs(p, whole, busy=occ >= p.gpus[:, None])
        info["candidates"] = int(np.isfinite(costs).sum())
        regret = np.sort(np.where(np.isfinite(costs), costs, np.inf).reshape(len(whole), -1), axis=1)[:, :2]
        with np.errstate(invalid="ignore"):
            gap = np.where(np.isfinite(regret[:, 1]), regret[:, 1] - regret[:, 0], np.inf)
        orders = [np.argsort(p.deadline[whole], kind="stable"), np.argsort(-p.duration[whole].min(axis=1), kind="stable"),
                  np.argsort(-gap, kind="stable")]
        best_placed, best_total, used = None, math.inf, "greedy"
        if method != "exact":
            for order in orders:
                placed, total = _greedy(p, whole, costs, held, occ, order)
                if best_placed is None or (len(placed), -total) > (len(best_placed), -best_total):
                    best_placed, best_total = placed, total
        if method == "exact" or (method == "auto" and info["candidates"] <= exact_limit):
            exact = _exact(p, costs, held, occ, time_limit)
            if exact is not None:
                total = float(sum(costs[i, n, s] for i, (n, s) in exact.items()))
                if best_placed is None or len(exact) > len(best_placed) or (
                        len(exact) == len(best_placed) and total <= best_total + 1e-12):
                    best_placed, best_total, used = exact, total, "milp"
            elif method == "exact" and best_placed is None:
                for order in orders:  # feasible fallback
                    placed, total = _greedy(p, whole, costs, held, occ, order)
                    if best_placed is None or (len(placed), -total) > (len(best_placed), -best_total):
                        best_placed, best_total = placed, total
        info["indivisible_method"] = used
        for i, (n, s) in (best_placed or {}).items():
            j = int(whole[i])
            occ[n, s:s + held[i, n]] += 1
            start = p.at(s)
            assignments[j] = Assignment(jobs[j], (Piece(pool.nodes[n].name, start, p.at(s + p.duration[j, n]),
                                                        float(costs[i, n, s])),))
        unmet += [int(whole[i]) for i in range(len(whole)) if i not in (best_placed or {})]
    if len(split):
        t0 = time.perf_counter()
        grids, unserved, _ = _divisible(p, split, occ)
        info["lp_seconds"] = round(time.perf_counter() - t0, 4)
        _divisible_pieces(p, split, grids, assignments)
        unmet += [int(split[r]) for r in unserved]
    placed_count = len(assignments)
    discount = VOLUME_DISCOUNT if placed_count > VOLUME_THRESHOLD else 0.0
    report = [_unmet(p, j, alone=len(jobs) == 1) for j in sorted(unmet)]
    info["seconds"] = round(time.perf_counter() - started, 6)
    if report and strict:
        raise DeadlineInfeasible(report)
    ordered = tuple(assignments[j] for j in sorted(assignments))
    return Schedule(now, horizon_hours, ordered, tuple(report), discount, info)


def _divisible_pieces(p: _Problem, rows: np.ndarray, grids: dict[int, np.ndarray],
                      assignments: dict[int, Assignment]) -> None:
    """Pieces of divisible jobs: within a node-slot, jobs run in deadline order, wrapped over its GPUs.

    The LP fixes hours per slot, not the order inside it: a piece that would overrun its slot is
    shown as taking the whole slot (its finish is then conservative, never past the slot's end)."""
    offsets: dict[tuple[int, int], float] = {}
    order = sorted(grids, key=lambda r: p.deadline[rows[r]])
    pieces: dict[int, list[Piece]] = {r: [] for r in grids}
    for r in order:
        job_at: dict[int, float] = {}  # a job's pieces on two nodes in one slot run one after the other
        for n, t in zip(*np.nonzero(grids[r]), strict=True):
            hours = float(grids[r][n, t])
            at = offsets.get((n, t), 0.0)
            if p.gpus[n] == 1:
                at = max(at, job_at.get(t, 0.0))
            offsets[(n, t)] = at + hours
            job_at[t] = at + hours
            lane_start = at - math.floor(at + EPS)
            if lane_start + hours > 1 + EPS:  # wraps onto the next GPU: runs [t, t + rest] there, then to slot end
                start, end = p.at(t), p.at(t + 1)
            else:
                start, end = p.at(t + lane_start), p.at(t + lane_start + hours)
            pieces[r].append(Piece(p.pool.nodes[n].name, start, end, hours * float(p.price[n, t])))
    for r, items in pieces.items():
        items.sort(key=lambda piece: piece.start)
        merged: list[Piece] = []
        for piece in items:
            if merged and merged[-1].node == piece.node and abs((piece.start - merged[-1].end).total_seconds()) < 1:
                merged[-1] = Piece(piece.node, merged[-1].start, piece.end, merged[-1].cost + piece.cost)
            else:
                merged.append(piece)
        j = int(rows[r])
        assignments[j] = Assignment(p.jobs[j], tuple(merged))


def replan(previous: Schedule, pool: Pool, now: datetime, *, lost: Sequence[str] = (),
           arrived: Sequence[Job] = (), **options: Any) -> Schedule:
    """Re-plan ``previous`` at ``now`` on ``pool`` less the ``lost`` nodes, adding ``arrived`` jobs.

    Finished work stays done. A whole run in progress on a surviving node keeps going (its GPU
    stays taken); on a lost node it starts again from zero. A divisible job keeps the work of the
    pieces done so far (its checkpoints), including the done part of a piece in progress on a
    surviving node. Jobs that can no longer meet their deadline are listed in ``unmet`` (never
    silently late); the rest are scheduled again at least cost.
    """
    now = as_utc(now).replace(second=0, microsecond=0)
    survivors = pool.without(lost)
    hours = options.pop("horizon_hours", previous.horizon_hours)
    names = [n.name for n in survivors.nodes]
    speed = {n.name: n.speed for n in pool.nodes}
    occupied = np.zeros((len(names), hours), np.int64)
    kept: list[Assignment] = []
    todo: list[Job] = list(arrived)
    for a in previous.assignments:
        if a.finish <= now:
            kept.append(a)
            continue
        job = a.job
        if not job.divisible:
            piece = a.pieces[0]
            if piece.start <= now and piece.node not in lost:
                kept.append(a)
                end = (piece.end - now).total_seconds() / 3600
                occupied[names.index(piece.node), :min(hours, math.ceil(end - EPS))] += 1
            else:
                todo.append(job)
            continue
        done = 0.0
        for piece in a.pieces:
            if piece.end <= now:
                done += piece.hours * speed[piece.node]
            elif piece.start < now and piece.node not in lost:
                done += (now - piece.start).total_seconds() / 3600 * speed[piece.node]
        todo.append(replace(job, work=max(job.work - done, 1e-6)))
    result = schedule(todo, survivors, now, horizon_hours=hours, strict=False, occupied=occupied, **options)
    return replace(result, assignments=tuple(kept) + result.assignments)
