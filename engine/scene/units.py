"""Length units a scene file can come in."""

from __future__ import annotations

from engine.errors import InputError

METERS_PER_UNIT: dict[str, float] = {
    "m": 1.0,
    "cm": 0.01,
    "mm": 0.001,
    "km": 1000.0,
    "in": 0.0254,
    "ft": 0.3048,
}
_ALIASES = {
    "meter": "m", "meters": "m", "metre": "m", "metres": "m",
    "centimeter": "cm", "centimeters": "cm", "centimetre": "cm", "centimetres": "cm",
    "millimeter": "mm", "millimeters": "mm", "millimetre": "mm", "millimetres": "mm",
    "kilometer": "km", "kilometers": "km", "inch": "in", "inches": "in", "foot": "ft", "feet": "ft",
}


def parse_unit(name: str) -> tuple[str, float]:
    """Return (canonical unit name, metres per unit) for a unit name like "mm" or "inches"."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in METERS_PER_UNIT:
        raise InputError(
            f"unknown length unit {name!r}", where="--unit", hint=f"use one of {', '.join(METERS_PER_UNIT)}"
        )
    return key, METERS_PER_UNIT[key]
