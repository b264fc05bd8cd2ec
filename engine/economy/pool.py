"""The resource pool: nodes with a time zone, a GPU tier, availability windows and a surcharge.

Work is measured in *reference GPU-hours*: hours on an RTX 4090. A node's ``speed`` is how many
reference hours it does in one of its own hours. By default it follows its tier's published
peak FP16 dense throughput (the original design quotes "82 to 700 TFLOPS"):

========  ==========  =========  ==============================================================
tier      TFLOPS      memory     source (NVIDIA's published figures)
========  ==========  =========  ==============================================================
rtx4090   82.6        24 GB      Ada Lovelace whitepaper: FP16 (non-tensor) = FP32 shader peak
a100      312         80 GB      A100 datasheet: FP16 Tensor Core, dense (624 with sparsity)
h100      756         80 GB      H100 PCIe datasheet: FP16 Tensor Core, dense (SXM5: 989)
========  ==========  =========  ==============================================================

These ratios (1 : 3.8 : 9.2) are what the design's figures imply; they overstate the gap for our
workloads (the numba path tracer and gsplat run on CUDA cores, not tensor cores, where the
FP32 peaks are 82.6 / 19.5 / 51 TFLOPS). Set ``throughput`` on a node (in reference GPU-hours per
hour) from a measured calibration to replace them. A tier's ``price_factor`` multiplies the
node's tariff: a big GPU's hour costs more (assumed 1 : 2.5 : 4, the rough ratio of hourly
rental prices; set it per node for your own contracts).

A node's availability is a list of local weekly windows ("mon-fri 19-08", "sat-sun 00-24"): a
workstation lends itself at night. A slot counts as available only when all of it is. Nodes that
are not this machine need their results checked by peers: their ``surcharge`` (a fraction, e.g.
0.10) is added to their cost.

Node files (TOML ``[[node]]`` tables or a JSON ``{"node": [...]}``)::

    [[node]]
    name = "berlin-ws"
    timezone = "Europe/Berlin"
    tier = "rtx4090"            # or a table: {name = "l40s", tflops = 181, memory_gb = 48}
    gpus = 1
    available = ["mon-fri 19-08", "sat-sun 00-24"]
    surcharge = 0.10
    local = true                # the run-now baseline runs here (the first node if none says so)
    prices = "berlin.toml"      # a price file (relative to this file) or an inline price table
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.economy.prices import (
    DEFAULT_TARIFF,
    Tariff,
    load_tariff,
    minute_offsets,
    parse_days,
    parse_hours,
    read_structured,
    slot_prices,
    tariff_from_dict,
    weekly_mask,
    zone,
)
from engine.errors import ConfigError, InputError

REFERENCE_TFLOPS = 82.6  # an RTX 4090: one reference GPU-hour is one hour on it
DEFAULT_SURCHARGE = 0.10  # peer verification of a remote node's result, as a share of its cost


@dataclass(frozen=True)
class GpuTier:
    """A GPU model: peak FP16 dense TFLOPS, memory, and how its hourly price compares."""

    name: str
    tflops: float
    memory_gb: float
    price_factor: float = 1.0

    @property
    def speed(self) -> float:
        """Reference GPU-hours per hour (from TFLOPS)."""
        return self.tflops / REFERENCE_TFLOPS


TIERS: dict[str, GpuTier] = {
    "rtx4090": GpuTier("rtx4090", 82.6, 24.0, 1.0),
    "a100": GpuTier("a100", 312.0, 80.0, 2.5),
    "h100": GpuTier("h100", 756.0, 80.0, 4.0),
}


@dataclass(frozen=True, eq=False)
class Node:
    """One machine that can run jobs. ``available`` is a 7 × 24 local-hour table (None: always)."""

    name: str
    timezone: str = "UTC"
    tier: GpuTier = TIERS["rtx4090"]
    gpus: int = 1
    available: np.ndarray | None = None
    surcharge: float = 0.0
    tariff: Tariff = DEFAULT_TARIFF
    local: bool = False
    throughput: float | None = None
    windows: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        where = f"node {self.name!r}"
        if not self.name:
            raise ConfigError("a node needs a name", where="node")
        zone(self.timezone)
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or not 1 <= self.gpus <= 64:
            raise ConfigError(f"gpus must be an integer from 1 to 64, got {self.gpus!r}", where=where)
        if not 0 <= self.surcharge <= 10:
            raise ConfigError(f"surcharge must be a fraction in [0, 10], got {self.surcharge!r}", where=where)
        if self.throughput is not None and not (math.isfinite(self.throughput) and self.throughput > 0):
            raise ConfigError(f"throughput must be above 0, got {self.throughput!r}", where=where)
        if self.available is not None:
            mask = np.asarray(self.available, bool)
            if mask.shape != (7, 24):
                raise ConfigError("availability must be a 7 × 24 table", where=where)
            object.__setattr__(self, "available", mask)

    @property
    def speed(self) -> float:
        """Reference GPU-hours this node does per hour of one GPU."""
        return self.throughput if self.throughput is not None else self.tier.speed

    def slot_prices(self, start: datetime, hours: int) -> np.ndarray:
        """Cost per hour of one of its GPUs in each slot: tariff × tier price factor × (1 + surcharge)."""
        return slot_prices(self.tariff, self.timezone, start, hours) * self.tier.price_factor * (1 + self.surcharge)

    def slot_available(self, start: datetime, hours: int) -> np.ndarray:
        """Whether each slot lies wholly inside the node's availability windows (local time, DST aware)."""
        if self.available is None:
            return np.ones(hours, bool)
        epoch_minutes = int(start.timestamp() // 60) + np.arange(hours * 60, dtype=np.int64)
        local_hours = (epoch_minutes + minute_offsets(self.timezone, start, hours)) // 60
        free = self.available[(local_hours // 24 + 3) % 7, local_hours % 24]
        return free.reshape(hours, 60).all(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "timezone": self.timezone, "tier": self.tier.name, "gpus": self.gpus,
                "speed": round(self.speed, 4), "surcharge": self.surcharge, "local": self.local,
                "available": list(self.windows) or "always", "prices": self.tariff.source}


def availability(windows: Sequence[str], where: str) -> np.ndarray:
    """A 7 × 24 local-hour table from windows like "mon-fri 19-08" (days, then hours)."""
    mask = np.zeros((7, 24), bool)
    for i, text in enumerate(windows):
        here = f"{where}[{i}]"
        if not isinstance(text, str) or len(text.split()) != 2:
            raise ConfigError(f"{text!r} is not 'DAYS HH-HH', e.g. 'mon-fri 19-08'", where=here)
        days, hours = text.split()
        mask |= weekly_mask(parse_days(days, here), parse_hours(hours, here))
    return mask


@dataclass(frozen=True)
class Pool:
    """The nodes a schedule may use; ``local`` is where the run-now baseline runs."""

    nodes: tuple[Node, ...]

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ConfigError("the pool has no nodes", where="pool", hint="give at least one node")
        names = [n.name for n in self.nodes]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ConfigError(f"two nodes are named {duplicate!r}", where="pool")

    @property
    def local(self) -> Node:
        return next((n for n in self.nodes if n.local), self.nodes[0])

    def without(self, names: Iterable[str]) -> Pool:
        """The pool less the named nodes (node loss)."""
        lost = set(names)
        return Pool(tuple(n for n in self.nodes if n.name not in lost))

    def matrices(self, start: datetime, hours: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(price[n, t] per GPU-hour with unavailable slots at +inf, gpus[n], speed[n], available[n, t])."""
        price = np.stack([n.slot_prices(start, hours) for n in self.nodes])
        free = np.stack([n.slot_available(start, hours) for n in self.nodes])
        price[~free] = np.inf
        gpus = np.array([n.gpus for n in self.nodes], np.int64)
        speed = np.array([n.speed for n in self.nodes])
        return price, gpus, speed, free


def node_from_dict(data: Any, where: str, base: Path | None = None) -> Node:
    """A Node from one ``[[node]]`` table; errors name the file and key."""
    if not isinstance(data, dict):
        raise ConfigError("a node must be a table", where=where)
    known = {"name", "timezone", "tier", "gpus", "available", "surcharge", "local", "prices", "throughput"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r}", where=where, hint=f"known: {', '.join(sorted(known))}")
    if not isinstance(data.get("name"), str):
        raise ConfigError("missing 'name' (text)", where=where)
    tier_value = data.get("tier", "rtx4090")
    if isinstance(tier_value, str):
        if tier_value.lower() not in TIERS:
            raise ConfigError(f"unknown GPU tier {tier_value!r}", where=f"{where}.tier",
                              hint=f"use one of {', '.join(TIERS)} or a table with name, tflops, memory_gb")
        tier = TIERS[tier_value.lower()]
    elif isinstance(tier_value, dict):
        try:
            tier = GpuTier(str(tier_value["name"]), float(tier_value["tflops"]), float(tier_value.get("memory_gb", 0)),
                           float(tier_value.get("price_factor", 1.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"a tier table needs name and tflops (numbers): {exc}", where=f"{where}.tier") from None
        if not tier.tflops > 0 or not tier.price_factor > 0:
            raise ConfigError("tflops and price_factor must be above 0", where=f"{where}.tier")
    else:
        raise ConfigError("tier must be a name or a table", where=f"{where}.tier")
    windows = data.get("available", [])
    if isinstance(windows, str):
        windows = [windows]
    if not isinstance(windows, list):
        raise ConfigError("available must be a list of 'DAYS HH-HH' windows", where=f"{where}.available")
    mask = availability(windows, f"{where}.available") if windows else None
    prices = data.get("prices")
    if prices is None:
        tariff = DEFAULT_TARIFF
    elif isinstance(prices, str):
        tariff = load_tariff((base or Path(".")) / prices)
    else:
        tariff = tariff_from_dict(prices, f"{where}.prices")
    numbers = {}
    for key, default in (("gpus", 1), ("surcharge", 0.0), ("throughput", None)):
        value = data.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{key} must be a number, got {value!r}", where=f"{where}.{key}")
        numbers[key] = value
    if not isinstance(numbers["gpus"], int):
        raise ConfigError("gpus must be an integer", where=f"{where}.gpus")
    try:
        return Node(data["name"], str(data.get("timezone", "UTC")), tier, numbers["gpus"], mask,
                    float(numbers["surcharge"]), tariff, bool(data.get("local", False)),
                    None if numbers["throughput"] is None else float(numbers["throughput"]), tuple(windows))
    except ConfigError as exc:
        raise ConfigError(exc.problem, where=f"{where} ({exc.where})", hint=exc.hint) from None


def load_pool(path: str | Path) -> Pool:
    """A Pool from a TOML/JSON node file (see the module docstring); InputError naming file and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the node file ({exc.strerror or exc})", where=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("the node file is not UTF-8 text", where=str(path)) from None
    data = read_structured(text, path)
    nodes = data.get("node", data.get("nodes")) if isinstance(data, dict) else data
    if not isinstance(nodes, list) or not nodes:
        raise ConfigError("expected a non-empty list of nodes under 'node'", where=str(path))
    return Pool(tuple(node_from_dict(item, f"{path}: node[{i}]", path.parent) for i, item in enumerate(nodes)))


def nodes_from_peers(peers: Iterable[Any], timezone: str, tariff: Tariff = DEFAULT_TARIFF,
                     surcharge: float = DEFAULT_SURCHARGE) -> list[Node]:
    """Pool nodes for enrolled peers (``engine.trust.peers.Peer``: node_id, name, capability).

    The allowlist records no time zone or GPU: a peer is assumed in ``timezone`` with its
    ``capability`` as its speed in reference GPU-hours per hour, plus the verification surcharge.
    """
    return [Node(f"peer-{p.node_id}" if not p.name else f"{p.name} ({p.node_id})", timezone, TIERS["rtx4090"],
                 surcharge=surcharge, tariff=tariff, throughput=float(p.capability)) for p in peers]
