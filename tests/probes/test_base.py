from __future__ import annotations

import threading
import time

import pytest

from svcorch.probes.base import ProbeResult, attempt_budget, redact, run_bounded
from tests.probes.helpers import options


def test_redact_replaces_every_spelling_of_each_secret() -> None:
    text = "auth p@ss failed; url redis://:p%40ss@h; again p@ss"
    assert redact(text, ["p@ss"]) == "auth *** failed; url redis://:***@h; again ***"


def test_redact_prefers_the_longer_secret_and_ignores_empty_ones() -> None:
    assert redact("token abc123 and abc", ["abc", "abc123", ""]) == "token *** and ***"
    assert redact("nothing to hide", []) == "nothing to hide"


def test_attempt_budget_is_cut_by_the_deadline() -> None:
    chosen = options("tcp", port=1, attempt_timeout=2)
    assert attempt_budget(chosen, time.monotonic() + 10) == pytest.approx(2)
    assert attempt_budget(chosen, time.monotonic() + 0.5) == pytest.approx(0.5, abs=0.01)
    assert attempt_budget(chosen, time.monotonic() - 1) > 0


def test_default_attempt_timeout_is_5s_or_the_whole_timeout() -> None:
    assert options("tcp", port=1).effective_attempt_timeout() == 5
    assert options("tcp", port=1, timeout="2s").effective_attempt_timeout() == 2


def test_run_bounded_returns_at_the_budget_when_the_attempt_hangs() -> None:
    release = threading.Event()

    def hang(stop_at: float) -> ProbeResult:
        release.wait(5)
        return ProbeResult.passed("too late")

    started = time.monotonic()
    result = run_bounded(hang, 0.2)
    took = time.monotonic() - started
    release.set()
    assert not result.ok
    assert result.retryable
    assert result.detail == "no answer within 0.2s"
    assert 0.2 <= took < 0.22


def test_run_bounded_hands_a_probe_bug_to_the_caller() -> None:
    def broken(stop_at: float) -> ProbeResult:
        raise KeyError("bug")

    with pytest.raises(KeyError, match="bug"):
        run_bounded(broken, 1)


def test_run_bounded_passes_its_deadline_and_measures_elapsed() -> None:
    seen: list[float] = []

    def quick(stop_at: float) -> ProbeResult:
        seen.append(stop_at - time.monotonic())
        return ProbeResult.passed("ok")

    result = run_bounded(quick, 1.0)
    assert result.ok
    assert seen[0] == pytest.approx(1.0, abs=0.05)
    assert 0 < result.elapsed < 0.1


def test_url_passwords_count_as_secrets() -> None:
    chosen = options("http", url="http://ops:pw1@127.0.0.1/", headers={"X-Api-Key": "k2"})
    assert {"pw1", "k2"} <= set(chosen.secrets())
