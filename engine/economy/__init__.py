"""Economy: price windows by time zone, GPU tiers, deadline-aware least-cost scheduling, quotes.

numpy, the standard library and scipy (imported lazily by the solvers). See each module:
``prices`` (tariffs, DST-exact slot prices, price files), ``pool`` (nodes, tiers, availability),
``work`` (work estimates, calibration), ``scheduler`` (the solver, re-planning), ``quote``
(baselines and savings), ``jobs`` (from a scene's plan to jobs), ``dispatch`` (deferral decisions
for the engine service's economy jobs).
"""

from engine.economy.dispatch import DEFAULT_DEADLINE, DEFAULT_WORK_HOURS, Decision, Waiting, plan_deferral
from engine.economy.jobs import default_pool, jobs_from_analysis, local_timezone, parse_deadline
from engine.economy.pool import TIERS, GpuTier, Node, Pool, load_pool, nodes_from_peers
from engine.economy.prices import DEFAULT_TARIFF, Tariff, load_tariff, slot_prices
from engine.economy.quote import DESIGN_FACTOR, Baseline, Quote, quote, run_now
from engine.economy.scheduler import (
    HORIZON_HOURS,
    Assignment,
    DeadlineInfeasible,
    Job,
    Piece,
    Schedule,
    Unmet,
    replan,
    schedule,
)
from engine.economy.work import Calibration, WorkEstimate, estimate_work, measure, observation_from_summary

__all__ = [
    "DEFAULT_DEADLINE", "DEFAULT_TARIFF", "DEFAULT_WORK_HOURS", "DESIGN_FACTOR", "HORIZON_HOURS", "TIERS",
    "Assignment", "Baseline", "Calibration", "DeadlineInfeasible", "Decision", "GpuTier", "Job", "Node", "Piece",
    "Pool", "Quote", "Schedule", "Tariff", "Unmet", "Waiting", "WorkEstimate", "default_pool", "estimate_work",
    "jobs_from_analysis", "load_pool", "load_tariff", "local_timezone", "measure", "nodes_from_peers",
    "observation_from_summary", "parse_deadline", "plan_deferral", "quote", "replan", "run_now", "schedule",
    "slot_prices",
]
