"""`svcorch events --since`: the spellings docs/cli.md promises, and the constants it quotes."""

from __future__ import annotations

from datetime import datetime

import pytest

from svcorch.commands.events import LAST, parse_since
from svcorch.errors import UsageError
from svcorch.eventlog import CLOSE_TIMEOUT, FOLLOW_BACKLOG, FOLLOW_LAST

NOW = datetime(2024, 5, 2, 15, 30, 0).timestamp()  # local time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - 30),
        ("10m", NOW - 600),
        ("2h", NOW - 7200),
        ("2024-05-02 10:00", datetime(2024, 5, 2, 10, 0).timestamp()),
        (
            "2024-05-02T10:00:00+02:00",
            datetime.fromisoformat("2024-05-02T08:00:00+00:00").timestamp(),
        ),
        ("2024-05-02", datetime(2024, 5, 2).timestamp()),
        ("10:00", datetime(2024, 5, 2, 10, 0).timestamp()),  # today
        ("14:12:40.5", datetime(2024, 5, 2, 14, 12, 40, 500000).timestamp()),
    ],
)
def test_since_is_a_duration_ago_or_a_local_time(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "", "10 minutes", "25:00"])
def test_anything_else_is_one_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_since(text, NOW)
    assert str(caught.value) == (
        f"--since: {text!r} is neither a duration (30s, 10m, 2h)"
        " nor a time (2024-05-02 10:00, 10:00)"
    )


def test_the_figures_the_docs_quote() -> None:
    # following starts with the last 10, with or without a daemon (docs/cli.md)
    assert LAST == FOLLOW_LAST == 10
    # a follower 10,000 events behind is let go; an exiting daemon gives alerts 2 s
    # (docs/control.md, docs/operations.md)
    assert (FOLLOW_BACKLOG, CLOSE_TIMEOUT) == (10_000, 2.0)
