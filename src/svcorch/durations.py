"""Durations and sizes as users write them: ``250ms``, ``30s``, ``2m``, ``1h``, ``50MB``.

Parsed once at the edge into ``timedelta`` and ``int`` bytes; nothing inside re-parses them.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

MAX_SECONDS = 10 * 365 * 86400.0  # ten years: anything longer is a typo, not a timeout
# the shortest pause between two rounds of a loop (probe attempts, restarts): 0 would make
# the daemon spin on a whole core
MIN_INTERVAL = timedelta(milliseconds=10)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|k|m|g)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {
    None: 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_duration(value: object) -> timedelta:
    """Accept seconds as a number, a ``timedelta``, or a string with a unit."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, got {_shown(value)}")
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past any float: not a ValueError, so it would escape
            seconds = math.inf
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"invalid duration {_shown(value)} (use e.g. 250ms, 30s, 2m, 1h)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration like 30s, got {_shown(value)}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {_shown(value)}")
    # YAML reads `.inf` and `.nan` as floats; timedelta would raise OverflowError, which is
    # not a ValueError and so escaped validation as an internal error
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ValueError(f"duration {_shown(value)} is out of range (at most {MAX_SECONDS:.0f}s)")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling: ``250ms``, ``30s``, ``2m``, ``1.5s``."""
    ms = round(value.total_seconds() * 1000)
    if ms % 3_600_000 == 0 and ms:
        return f"{ms // 3_600_000}h"
    if ms % 60_000 == 0 and ms:
        return f"{ms // 60_000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    if ms < 1000:
        return f"{ms}ms"
    return f"{ms / 1000:g}s"


def parse_size(value: object) -> int:
    """Bytes from a number or a string like ``50MB`` / ``10MiB`` / ``512k``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 50MB, got {_shown(value)}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        unit = match.group(2).lower() if match.group(2) else None
        scaled = float(match.group(1)) * _UNIT_BYTES[unit]
        if not math.isfinite(scaled):  # "9" * 400 reads as infinity, which int() refuses
            raise ValueError(f"size {_shown(value)} is out of range")
        size = int(scaled)
    else:
        raise ValueError(f"invalid size {_shown(value)} (use e.g. 50MB, 10MiB, 512k)")
    if size < 0:
        raise ValueError(f"size must not be negative, got {_shown(value)}")
    return size


def _shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut short: a message stays one readable line whatever was written."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _duration_from_any(value: Any) -> timedelta:
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration_from_any),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)?\s*$"},
            ],
            "description": "seconds, or a string such as 250ms, 30s, 2m, 1h",
        }
    ),
]


def _pause(value: timedelta) -> timedelta:
    if value < MIN_INTERVAL:
        shortest = format_duration(MIN_INTERVAL)
        raise ValueError(
            f"must be at least {shortest}, got {format_duration(value)} (a shorter pause would"
            " keep svcorch busy in a loop)"
        )
    return value


Interval = Annotated[
    timedelta,
    BeforeValidator(_duration_from_any),
    AfterValidator(_pause),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": MIN_INTERVAL.total_seconds()},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)?\s*$"},
            ],
            "description": "at least 10ms: seconds, or a string such as 250ms, 30s, 2m, 1h",
        }
    ),
]
"""A duration that is a pause between two rounds of a loop: at least ``MIN_INTERVAL``."""

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}],
            "description": "bytes, or a string such as 50MB, 10MiB",
        }
    ),
]
