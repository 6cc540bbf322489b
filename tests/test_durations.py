"""Durations and sizes, parsed once at the edge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel, ValidationError

from svcorch.durations import Duration, Size, format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (5, 5.0),
        (2.5, 2.5),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("10", 10.0),
        (" 3 s ", 3.0),
        (timedelta(minutes=1), 60.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "invalid duration 'soon' (use e.g. 250ms, 30s, 2m, 1h)"),
        ("1d", "invalid duration '1d'"),
        ("-1s", "invalid duration '-1s'"),
        ("1m30s", "invalid duration '1m30s'"),
        (-1, "duration must not be negative, got -1"),
        (True, "expected a duration like 30s, got True"),
        (None, "expected a duration like 30s, got None"),
        ([1], "expected a duration like 30s, got [1]"),
        (float("inf"), "duration inf is out of range"),
        (float("nan"), "duration nan is out of range"),
        (1e20, "duration 1e+20 is out of range"),
    ],
)
def test_invalid_durations(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (30, "30s"),
        (90, "90s"),
        (120, "2m"),
        (3600, "1h"),
        (5400, "90m"),
    ],
)
def test_format_duration_is_the_shortest_exact_spelling(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (1024, 1024),
        ("512", 512),
        ("10b", 10),
        ("1kb", 1000),
        ("1KiB", 1024),
        ("1k", 1024),
        ("20MB", 20_000_000),
        ("10MiB", 10 * 1024**2),
        ("1.5GB", 1_500_000_000),
        ("2g", 2 * 1024**3),
    ],
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["big", "10 TB", "-1MB", 1.5, True, None, -1])
def test_invalid_sizes(value: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


class _Model(BaseModel):
    timeout: Duration
    max_size: Size = 0


def test_pydantic_types_validate_and_serialise_as_users_write_them() -> None:
    model = _Model.model_validate({"timeout": "2m", "max_size": "1MB"})
    assert model.timeout == timedelta(minutes=2)
    assert model.max_size == 1_000_000
    assert model.model_dump(mode="json") == {"timeout": "2m", "max_size": 1_000_000}
    with pytest.raises(ValidationError, match="invalid duration 'forever'"):
        _Model.model_validate({"timeout": "forever"})
