"""Figures that docs/ states and the code defines: each asserted on both sides, so the two
cannot drift apart again (benchmarks.md once said the probe backoff grows 1.5x; it is 1.2x)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from svcorch.engine.core import ROTATE_EVERY
from svcorch.probes.wait import backoff_delays
from svcorch.process import WATCHDOG_GRACE

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _text(name: str) -> str:
    return re.sub(r"\s+", " ", (DOCS / name).read_text(encoding="utf-8"))


def test_the_probe_backoff_grows_1_2x_from_10ms_as_benchmarks_md_says() -> None:
    first = list(itertools.islice(backoff_delays(1.0), 3))
    assert first == pytest.approx([0.01, 0.012, 0.0144])
    assert "attempts 10 ms apart, growing 1.2\u00d7 up to `period: 1s`" in _text("benchmarks.md")


def test_log_sizes_are_checked_as_often_as_catalogue_md_says() -> None:
    assert ROTATE_EVERY == 0.25
    assert "Sizes are checked every 0.25 s" in _text("catalogue.md")


def test_the_foreground_watchdog_grace_is_the_one_cli_md_states() -> None:
    assert WATCHDOG_GRACE == 5.0
    assert "sends them SIGTERM, then SIGKILL after 5 s" in _text("cli.md")
