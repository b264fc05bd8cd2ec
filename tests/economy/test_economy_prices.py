"""Prices by local time: defaults, daylight-saving days, price files and their errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from engine.economy.pool import Node, load_pool
from engine.economy.prices import DEFAULT_TARIFF, load_tariff, local_hours_of_day, slot_prices
from engine.errors import InputError


def test_default_tariff_by_local_hour() -> None:
    # Wednesday 2025-01-15, Berlin is UTC+1: 08:00 UTC is 09:00 local (peak)
    start = datetime(2025, 1, 15, 0, 0, tzinfo=UTC)
    p = slot_prices(DEFAULT_TARIFF, "Europe/Berlin", start, 24)
    local_hour = (np.arange(24) + 1) % 24
    expected = np.select([(local_hour >= 9) & (local_hour < 17), (local_hour >= 17) & (local_hour < 21),
                          (local_hour >= 21) | (local_hour < 6)], [2.0, 1.0, 0.6], 1.0)
    np.testing.assert_allclose(p, expected)
    sat = slot_prices(DEFAULT_TARIFF, "Asia/Tokyo", datetime(2025, 1, 17, 15, tzinfo=UTC), 24)  # Sat 00:00 Tokyo
    np.testing.assert_allclose(sat, 0.4)


@pytest.mark.parametrize(("zone", "day", "hours"), [
    ("Europe/Berlin", datetime(2025, 3, 30, 12, tzinfo=UTC), 23),
    ("Europe/Berlin", datetime(2025, 10, 26, 12, tzinfo=UTC), 25),
    ("America/New_York", datetime(2025, 3, 9, 17, tzinfo=UTC), 23),
    ("America/New_York", datetime(2025, 11, 2, 17, tzinfo=UTC), 25),
])
def test_dst_days_have_23_or_25_hours(zone: str, day: datetime, hours: int) -> None:
    assert local_hours_of_day(zone, day) == hours


@pytest.mark.parametrize(("zone", "start", "peak_utc_hours"), [
    # Monday after Berlin's spring-forward (CEST, UTC+2): peak 09-17 local = 07-15 UTC
    ("Europe/Berlin", datetime(2025, 3, 31, 0, tzinfo=UTC), range(7, 15)),
    # Monday after New York's fall-back (EST, UTC-5): peak = 14-22 UTC
    ("America/New_York", datetime(2025, 11, 3, 0, tzinfo=UTC), range(14, 22)),
])
def test_peak_follows_the_clock_change(zone: str, start: datetime, peak_utc_hours: range) -> None:
    p = slot_prices(DEFAULT_TARIFF, zone, start, 24)
    assert set(np.flatnonzero(p == 2.0)) == set(peak_utc_hours)


def test_transition_inside_a_slot_is_priced_to_the_minute(tmp_path: Path) -> None:
    # New York's spring-forward is 2025-03-09 07:00 UTC. A grid anchored at :30 puts it mid-slot; Sunday
    # prices are flat, so use a tariff that differs per local hour to see the split.
    tariff = load_tariff(_write(tmp_path / "ny_hours.json", '{"default": 0, "rules": ['
                                '{"days": "daily", "hours": "01-02", "price": 6}, '
                                '{"days": "daily", "hours": "03-04", "price": 12}]}'))
    start = datetime(2025, 3, 9, 6, 30, tzinfo=UTC)  # 01:30 EST
    p = slot_prices(tariff, "America/New_York", start, 1)
    # 06:30-07:00 UTC is 01:30-02:00 EST (price 6), 07:00-07:30 UTC is 03:00-03:30 EDT (price 12)
    assert p[0] == pytest.approx(9.0)
    minute = start + timedelta(minutes=45)
    assert tariff.price_at(minute, "America/New_York") == 12


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_price_file_rules_and_series(tmp_path: Path) -> None:
    tariff = load_tariff(_write(tmp_path / "p.toml", """
currency = "EUR"
default = 1.5
[[rule]]
days = "sat-sun"
hours = "00-24"
price = 0.25
[[rule]]
days = "mon-fri"
hours = "22-06"
price = 0.5
[series]
start = "2025-01-15T10:00:00+00:00"
prices = [9.0, 8.0]
"""))
    assert tariff.currency == "EUR"
    assert tariff.price_at(datetime(2025, 1, 15, 10, 30, tzinfo=UTC), "UTC") == 9.0  # series wins
    assert tariff.price_at(datetime(2025, 1, 15, 12, 30, tzinfo=UTC), "UTC") == 1.5  # after the series: rules
    assert tariff.price_at(datetime(2025, 1, 15, 23, 0, tzinfo=UTC), "UTC") == 0.5
    assert tariff.price_at(datetime(2025, 1, 18, 12, 0, tzinfo=UTC), "UTC") == 0.25  # Saturday noon
    assert tariff.price_at(datetime(2025, 1, 18, 5, 0, tzinfo=UTC), "UTC") == 0.5  # Friday's 22-06 wraps, later rule wins
    csv = load_tariff(_write(tmp_path / "spot.csv", "time,price\n2025-01-15T00:00:00Z,0.11\n2025-01-15T02:00:00Z,0.13\n"))
    p = slot_prices(csv, "UTC", datetime(2025, 1, 15, 0, tzinfo=UTC), 3)
    np.testing.assert_allclose(p, [0.11, 0.6, 0.13])  # the gap falls back to the default weekly table


@pytest.mark.parametrize(("name", "text", "needles"), [
    ("bad.toml", "default = 1\n[[rule]]\ndays = 'mon-fri'\nhours = '09-17'\nprice = -2\n", ["bad.toml", "rule[0].price"]),
    ("bad2.toml", "[[rule]]\ndays = 'funday'\nprice = 1\n", ["bad2.toml", "rule[0].days", "funday"]),
    ("bad3.toml", "[[rule]]\ndays = 'mon'\nhours = '9:30-17'\nprice = 1\n", ["rule[0].hours"]),
    ("bad4.toml", "currency = \n", ["bad4.toml", "line 1"]),
    ("bad5.json", '{"rules": [\n  {"days": "mon",\n   "price": 1,}\n]}', ["bad5.json:3"]),
    ("bad6.json", '{"series": {"start": "2025-01-01T00:00:00", "prices": [1]}}', ["series.start", "offset"]),
    ("bad7.csv", "2025-01-15T00:00:00Z,0.1\n2025-01-15T01:00:00Z,cheap\n", ["bad7.csv:2", "cheap"]),
    ("bad8.toml", "colour = 'red'\n", ["unknown key 'colour'"]),
])
def test_price_file_errors_name_file_and_key(tmp_path: Path, name: str, text: str, needles: list[str]) -> None:
    with pytest.raises(InputError) as caught:
        load_tariff(_write(tmp_path / name, text))
    for needle in needles:
        assert needle in str(caught.value)


def test_node_file_errors_and_availability(tmp_path: Path) -> None:
    pool = load_pool(_write(tmp_path / "nodes.toml", """
[[node]]
name = "ws"
timezone = "Europe/Berlin"
available = ["mon-fri 19-08", "sat-sun 00-24"]
local = true
[[node]]
name = "cloud"
timezone = "America/New_York"
tier = "h100"
surcharge = 0.1
"""))
    ws = pool.local
    free = ws.slot_available(datetime(2025, 1, 15, 0, tzinfo=UTC), 24)  # Wednesday, Berlin UTC+1
    assert free[:7].all() and not free[7:18].any() and free[18:].all()  # 08:00-19:00 local busy
    assert pool.nodes[1].speed == pytest.approx(756 / 82.6)
    with pytest.raises(InputError, match=r"nodes2.toml: node\[0\].*Mars/Olympus"):
        load_pool(_write(tmp_path / "nodes2.toml", "[[node]]\nname = 'x'\ntimezone = 'Mars/Olympus'\n"))
    with pytest.raises(InputError, match=r"node\[0\].tier"):
        load_pool(_write(tmp_path / "nodes3.toml", "[[node]]\nname = 'x'\ntier = 'gtx480'\n"))
    with pytest.raises(InputError, match="two nodes"):
        load_pool(_write(tmp_path / "nodes4.json", '{"node": [{"name": "a"}, {"name": "a"}]}'))
    assert Node("n", "Asia/Kathmandu").slot_prices(datetime(2025, 1, 15, 3, 0, tzinfo=UTC), 1)[0] == pytest.approx(
        (15 * 1.0 + 45 * 2.0) / 60)  # 08:45-09:45 local (UTC+5:45): 15 min standard, then 45 min peak
