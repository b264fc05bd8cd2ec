"""Price windows: what one GPU-hour costs on a node, hour by hour, in the node's own time zone.

A :class:`Tariff` is a weekly table of prices by *local* time (7 days × 24 hours, Monday first),
optionally overlaid by an hourly series in absolute time (a spot-price feed, a utility tariff
with holidays). The defaults are the original design's:

* weekdays 09–17 peak $2.00/h, 17–21 standard $1.00/h, 21–06 off-peak $0.60/h;
* weekdays 06–09, which the design leaves open, are standard ($1.00/h);
* Saturdays and Sundays $0.40/h all day.

The scheduler works on a grid of hourly *slots* anchored at ``now`` (slot t covers
[now + t h, now + (t + 1) h) in UTC). :func:`slot_prices` gives each slot's mean price per hour,
exact to the minute: it converts every minute of the horizon to local time with the node's UTC
offset, which comes from ``zoneinfo`` at each slot boundary (a slot whose two ends differ in
offset holds a daylight-saving transition, found by bisection to the minute). So a spring-forward
day has 23 local hours and a fall-back day 25, zones with :30 and :45 offsets price correctly,
and a slot that straddles a price change is charged pro rata.

Price files (TOML or JSON, by extension; ``.csv`` for a bare series) override the defaults::

    currency = "USD"
    default = 1.0                 # any hour no rule covers (default: 1.0)
    [[rule]]                      # later rules win where they overlap
    days = "mon-fri"              # mon..sun, ranges and commas: "mon-fri", "sat,sun", "daily"
    hours = "09-17"               # local hours, end exclusive; "21-06" wraps past midnight
    price = 2.0
    [series]                      # optional: absolute hourly prices that win over the rules
    start = "2025-03-30T00:00:00+00:00"
    prices = [0.31, 0.29, 0.30]   # one per hour from start

A CSV series has one ``time,price`` line per hour (ISO 8601 with offset; a header line is
allowed). Errors name the file and the key or line at fault.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from engine.errors import ConfigError, InputError

log = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PEAK, STANDARD, OFF_PEAK, WEEKEND = 2.00, 1.00, 0.60, 0.40


def _default_weekly() -> np.ndarray:
    weekly = np.full((7, 24), STANDARD)
    weekly[:5, 9:17] = PEAK
    weekly[:5, 17:21] = STANDARD
    weekly[:5, 21:] = OFF_PEAK
    weekly[:5, :6] = OFF_PEAK
    weekly[5:, :] = WEEKEND
    return weekly


@dataclass(frozen=True, eq=False)
class Tariff:
    """Prices per GPU-hour: a weekly local-time table, optionally overlaid by an hourly UTC series.

    ``weekly[d, h]`` is the price in local hour h of weekday d (0 = Monday). ``series`` holds
    absolute prices for the hours from ``series_start`` (UTC, whole hour) on; NaN entries and
    hours outside the series fall back to the weekly table.
    """

    weekly: np.ndarray = field(default_factory=_default_weekly)
    currency: str = "USD"
    series_start: datetime | None = None
    series: np.ndarray | None = None
    source: str = "default tariff (original design)"

    def __post_init__(self) -> None:
        weekly = np.asarray(self.weekly, np.float64)
        if weekly.shape != (7, 24) or not np.all(np.isfinite(weekly)) or np.any(weekly < 0):
            raise ConfigError("the weekly price table must be 7 × 24 finite prices ≥ 0", where=self.source)
        object.__setattr__(self, "weekly", weekly)
        if self.series is not None:
            series = np.asarray(self.series, np.float64)
            if self.series_start is None or series.ndim != 1:
                raise ConfigError("an hourly series needs a start time and one price per hour", where=self.source)
            start = self.series_start.astimezone(UTC)
            if start.minute or start.second or start.microsecond:
                raise ConfigError(f"the series starts at {self.series_start.isoformat()}, not on a whole UTC hour",
                                  where=self.source)
            object.__setattr__(self, "series", series)
            object.__setattr__(self, "series_start", start)

    def price_at(self, when: datetime, timezone: str) -> float:
        """The price per hour at one instant on a node in ``timezone`` (for reports and tests)."""
        utc = when.astimezone(UTC)
        if self.series is not None and self.series_start is not None:
            k = math.floor((utc - self.series_start).total_seconds() / 3600)
            if 0 <= k < len(self.series) and np.isfinite(self.series[k]):
                return float(self.series[k])
        local = utc.astimezone(zone(timezone))
        return float(self.weekly[local.weekday(), local.hour])

    def to_dict(self) -> dict[str, Any]:
        return {"currency": self.currency, "source": self.source,
                "series_hours": 0 if self.series is None else len(self.series)}


DEFAULT_TARIFF = Tariff()


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ConfigError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}", where="time zone",
                          hint="use an IANA name such as Europe/Berlin, America/New_York or UTC") from None


def as_utc(when: datetime, where: str = "time") -> datetime:
    """``when`` in UTC; a naive datetime is an error (an instant needs its offset)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise InputError(f"{when.isoformat()} has no UTC offset", where=where,
                         hint="write it in ISO 8601 with an offset, e.g. 2025-03-30T21:00:00+02:00")
    return when.astimezone(UTC)


# --------------------------------------------------------------------------------- slot grid


def _offset_minutes(tz: ZoneInfo, utc: datetime) -> int:
    offset = utc.astimezone(tz).utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def minute_offsets(timezone: str, start: datetime, hours: int) -> np.ndarray:
    """UTC offset in minutes of every minute of ``hours`` slots from ``start`` (DST to the minute)."""
    tz = zone(timezone)
    start = as_utc(start).replace(second=0, microsecond=0)
    bounds = np.array([_offset_minutes(tz, start + timedelta(hours=k)) for k in range(hours + 1)], np.int64)
    per_minute = np.repeat(bounds[:-1], 60)
    for k in np.flatnonzero(bounds[:-1] != bounds[1:]):  # a transition inside slot k: find its minute
        lo, hi = 0, 60  # offset at minute lo is the old one, at hi the new one
        base = start + timedelta(hours=int(k))
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _offset_minutes(tz, base + timedelta(minutes=mid)) == bounds[k]:
                lo = mid
            else:
                hi = mid
        per_minute[k * 60 + hi:(k + 1) * 60] = bounds[k + 1]
    return per_minute


def slot_prices(tariff: Tariff, timezone: str, start: datetime, hours: int) -> np.ndarray:
    """Mean price per hour of each of ``hours`` hourly slots from ``start`` on a node in ``timezone``."""
    key = (start.astimezone(UTC).replace(second=0, microsecond=0), int(hours))
    return _slot_prices(tariff, timezone, *key).copy()


@lru_cache(maxsize=256)
def _slot_prices(tariff: Tariff, timezone: str, start: datetime, hours: int) -> np.ndarray:
    epoch_minutes = int(start.timestamp() // 60) + np.arange(hours * 60, dtype=np.int64)
    local = epoch_minutes + minute_offsets(timezone, start, hours)
    # 1970-01-01 was a Thursday: weekday 3 when Monday is 0.
    local_hours = local // 60
    weekday = (local_hours // 24 + 3) % 7
    price = tariff.weekly[weekday, local_hours % 24]
    if tariff.series is not None and tariff.series_start is not None:
        k = epoch_minutes // 60 - int(tariff.series_start.timestamp() // 3600)
        inside = (k >= 0) & (k < len(tariff.series))
        overlay = np.full(price.shape, np.nan)
        overlay[inside] = tariff.series[k[inside]]
        price = np.where(np.isfinite(overlay), overlay, price)
    return price.reshape(hours, 60).mean(axis=1)


def local_hours_of_day(timezone: str, day: datetime) -> int:
    """How many hours the local calendar day of ``day`` has (23 or 25 on DST days)."""
    tz = zone(timezone)
    local = day.astimezone(tz)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    following = midnight + timedelta(days=1)  # wall-clock arithmetic: the next local midnight
    return round((following.astimezone(UTC) - midnight.astimezone(UTC)).total_seconds() / 3600)


# --------------------------------------------------------------------------------- price files


def parse_days(text: Any, where: str) -> list[int]:
    """Weekday indices (0 = Monday) from "mon-fri", "sat,sun", "daily" or "weekdays"/"weekends"."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"days must be text like 'mon-fri' or 'sat,sun', got {text!r}", where=where)
    aliases = {"daily": "mon-sun", "weekdays": "mon-fri", "weekends": "sat-sun", "all": "mon-sun"}
    out: list[int] = []
    for part in aliases.get(text.strip().lower(), text.strip().lower()).split(","):
        first, _, last = part.strip().partition("-")
        try:
            a = DAYS.index(first.strip()[:3])
            b = DAYS.index(last.strip()[:3]) if last else a
        except ValueError:
            raise ConfigError(f"{part.strip()!r} is not a day or a day range", where=where,
                              hint="use mon, tue, wed, thu, fri, sat, sun, e.g. 'mon-fri'") from None
        out.extend((a + i) % 7 for i in range((b - a) % 7 + 1))
    return sorted(set(out))


def parse_hours(text: Any, where: str) -> tuple[int, int]:
    """(start, end) local hours from "09-17" or "21:00-06:00"; end is exclusive and may wrap."""
    if not isinstance(text, str) or "-" not in text:
        raise ConfigError(f"hours must be text like '09-17' or '21:00-06:00', got {text!r}", where=where)
    values = []
    for piece in text.split("-", 1):
        hour, _, minute = piece.strip().partition(":")
        try:
            h, m = int(hour), int(minute or 0)
        except ValueError:
            raise ConfigError(f"{piece.strip()!r} is not an hour", where=where) from None
        if m != 0 or not 0 <= h <= 24:
            raise ConfigError(f"{piece.strip()!r} must be a whole hour from 00 to 24", where=where)
        values.append(h)
    if values[0] == values[1] or values[0] == 24:
        raise ConfigError(f"hours {text!r} cover nothing", where=where)
    return values[0], values[1]


def weekly_mask(days: list[int], hours: tuple[int, int]) -> np.ndarray:
    """A 7 × 24 boolean table of the local hours a (days, hours) window covers; wrapping windows
    belong to the day they start on."""
    mask = np.zeros((7, 24), bool)
    start, end = hours
    for d in days:
        if start < end:
            mask[d, start:end] = True
        else:
            mask[d, start:] = True
            mask[(d + 1) % 7, :end] = True
    return mask


def _price(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"price must be a number ≥ 0, got {value!r}", where=where)
    return float(value)


def _time(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{value!r} is not an ISO 8601 time", where=where) from None
    if when.tzinfo is None:
        raise ConfigError(f"{value!r} has no UTC offset", where=where, hint="add one, e.g. +00:00")
    return when


def tariff_from_dict(data: Any, source: str) -> Tariff:
    """A Tariff from the parsed price-file structure (see the module docstring); errors name ``source`` and key."""
    if not isinstance(data, dict):
        raise ConfigError("a price file must hold a table/object at the top", where=source)
    known = {"currency", "default", "rule", "rules", "series"}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key {key!r}", where=source, hint=f"known: {', '.join(sorted(known))}")
    currency = data.get("currency", "USD")
    if not isinstance(currency, str) or not currency:
        raise ConfigError("currency must be text", where=f"{source}: currency")
    rules = data.get("rule", data.get("rules", []))
    if "rule" not in data and "rules" not in data and "default" not in data:
        weekly = _default_weekly()  # e.g. a file with only a series or a currency
    else:
        weekly = np.full((7, 24), _price(data.get("default", STANDARD), f"{source}: default"))
    if not isinstance(rules, list):
        raise ConfigError("rule must be a list of tables", where=f"{source}: rule")
    for i, rule in enumerate(rules):
        where = f"{source}: rule[{i}]"
        if not isinstance(rule, dict):
            raise ConfigError("each rule must be a table with days, hours and price", where=where)
        unknown = set(rule) - {"days", "hours", "price"}
        if unknown:
            raise ConfigError(f"unknown key {sorted(unknown)[0]!r}", where=where, hint="rules have days, hours, price")
        for key in ("days", "price"):
            if key not in rule:
                raise ConfigError(f"missing {key!r}", where=where)
        mask = weekly_mask(parse_days(rule["days"], f"{where}.days"),
                           parse_hours(rule.get("hours", "00-24"), f"{where}.hours"))
        weekly[mask] = _price(rule["price"], f"{where}.price")
    series_start, series = None, None
    if "series" in data:
        block, where = data["series"], f"{source}: series"
        if not isinstance(block, dict) or "start" not in block or "prices" not in block:
            raise ConfigError("series must be a table with start and prices", where=where)
        if not isinstance(block["prices"], list) or not block["prices"]:
            raise ConfigError("prices must be a non-empty list", where=f"{where}.prices")
        series_start = _time(block["start"], f"{where}.start")
        series = np.array([_price(p, f"{where}.prices[{i}]") for i, p in enumerate(block["prices"])])
    return Tariff(weekly, currency, series_start, series, source)


def series_from_csv(path: Path, base: Tariff = DEFAULT_TARIFF) -> Tariff:
    """An hourly series from ``time,price`` lines over ``base``'s weekly table; errors name the line."""
    points: dict[int, float] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            where = f"{path}:{number}"
            if len(row) != 2:
                raise ConfigError(f"expected 'time,price', got {len(row)} fields", where=where)
            if number == 1 and not row[0].strip()[:1].isdigit():
                continue  # a header line
            when = _time(row[0], where).astimezone(UTC)
            if when.minute or when.second:
                raise ConfigError(f"{row[0].strip()} is not on a whole UTC hour", where=where)
            try:
                value = float(row[1])
            except ValueError:
                raise ConfigError(f"{row[1].strip()!r} is not a price", where=where) from None
            points[int(when.timestamp() // 3600)] = _price(value, where)
    if not points:
        raise ConfigError("no prices in the file", where=str(path))
    first, last = min(points), max(points)
    series = np.full(last - first + 1, np.nan)
    for hour, value in points.items():
        series[hour - first] = value
    return Tariff(base.weekly, base.currency, datetime.fromtimestamp(first * 3600, UTC), series, str(path))


def load_tariff(path: str | Path) -> Tariff:
    """A Tariff from a TOML, JSON or CSV price file; InputError naming the file and key/line."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            return series_from_csv(path)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the price file ({exc.strerror or exc})", where=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("the price file is not UTF-8 text", where=str(path)) from None
    return tariff_from_dict(read_structured(text, path), str(path))


def read_structured(text: str, path: Path) -> Any:
    """TOML (``.toml``) or JSON (anything else) text parsed, with the line of a syntax error."""
    if path.suffix.lower() == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"not valid TOML: {exc}", where=str(path)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", where=f"{path}:{exc.lineno}:{exc.colno}") from None
