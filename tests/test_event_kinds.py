"""What each transition means to an operator: kinds and severities (engine/events.py)."""

from __future__ import annotations

import time
from typing import get_args

import pytest

from svcorch.engine.events import Classifier, Event, EventKind, Severity, classify
from svcorch.engine.service import State
from svcorch.model import SeverityName

S = State
K = EventKind
CASES = [
    # (old, new, detail) -> (kind, severity): the table of docs/operations.md, Alerts
    (S.STOPPED, S.WAITING, "for redis ready", K.WAITING, Severity.INFO),
    (S.WAITING, S.STARTING, "pid 12", K.STARTED, Severity.INFO),
    (S.WAITING, S.RUNNING, "pid 12", K.STARTED, Severity.INFO),
    (S.WAITING, S.PROBING, "tcp://127.0.0.1:6379", K.STARTED, Severity.INFO),
    (S.STARTING, S.READY, "PONG", K.READY, Severity.INFO),
    (S.RUNNING, S.COMPLETED, "exited 0", K.COMPLETED, Severity.INFO),
    # a crash the restart policy heals
    (S.READY, S.BACKOFF, "restarting in 0.5s: killed by SIGKILL", K.EXITED,
     Severity.WARNING),
    (S.UNREADY, S.BACKOFF, "restarting in 0.5s: exited with code 1", K.EXITED, Severity.WARNING),
    (S.RUNNING, S.BACKOFF, "restarting in 0.5s: exited with code 2", K.EXITED, Severity.WARNING),
    (S.BACKOFF, S.STARTING, "pid 13", K.RESTARTED, Severity.INFO),
    (S.BACKOFF, S.RUNNING, "pid 13", K.RESTARTED, Severity.INFO),
    # a start that failed and is retried
    (S.STARTING, S.BACKOFF, "restarting in 0.5s: exited with code 1 before ready", K.BACKOFF,
     Severity.WARNING),
    # a crash nobody heals
    (S.READY, S.EXITED, "exited with code 1", K.EXITED, Severity.ERROR),
    (S.READY, S.EXITED, "killed by SIGSEGV", K.EXITED, Severity.ERROR),
    (S.READY, S.EXITED, "exited with code 0", K.EXITED, Severity.WARNING),
    (S.STARTING, S.EXITED, "exited while no svcorch daemon was watching", K.EXITED,
     Severity.WARNING),
    # liveness
    (S.READY, S.UNREADY, "liveness failed 1/3: Connection refused", K.LIVENESS_FAILED,
     Severity.INFO),
    (S.UNREADY, S.STOPPING, "liveness failed 3 times: Connection refused", K.LIVENESS_FAILED,
     Severity.WARNING),
    (S.STOPPING, S.BACKOFF, "restarting in 0.5s: liveness failed 3 times", K.BACKOFF,
     Severity.WARNING),
    (S.UNREADY, S.READY, "liveness ok again: PONG", K.RECOVERED, Severity.INFO),
    # given up, blocked
    (S.STARTING, S.FAILED, "port 8000 is in use by pid 7", K.FAILED, Severity.ERROR),
    (S.BACKOFF, S.FATAL, "5 restarts within 60s; last: exited with code 1", K.FATAL,
     Severity.CRITICAL),
    (S.WAITING, S.BLOCKED, "dependency redis is fatal", K.BLOCKED, Severity.WARNING),
    # stops, recreate
    (S.READY, S.STOPPING, "", K.STOPPING, Severity.INFO),
    (S.STOPPING, S.STOPPED, "", K.STOPPED, Severity.INFO),
    (S.READY, S.STOPPING, "recreate: env ENVIRONMENT changed", K.RECREATED, Severity.INFO),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "detail", "kind", "severity"), CASES)
def test_each_transition_has_a_kind_and_a_severity(
    old: State, new: State, detail: str, kind: EventKind, severity: Severity
) -> None:
    assert classify(old, new, detail) == (kind, severity)


def test_every_state_a_service_can_enter_has_a_kind() -> None:
    for new in State:
        for old in State:
            kind, severity = classify(old, new, "")
            assert isinstance(kind, EventKind) and isinstance(severity, Severity)


def test_crashes_fatal_and_dependencies_down_are_warning_or_above() -> None:
    for old, new, detail, kind, severity in CASES:
        if kind in (K.EXITED, K.FATAL, K.BLOCKED, K.FAILED, K.BACKOFF):
            assert severity.rank >= Severity.WARNING.rank, (old, new, detail)


def test_severities_are_ordered_and_the_catalogue_spells_them_the_same() -> None:
    assert [s.rank for s in Severity] == [0, 1, 2, 3]
    assert get_args(SeverityName) == tuple(s.value for s in Severity)


def _event(service: str, old: State, new: State, detail: str = "") -> Event:
    return Event(service, old, new, time.time(), detail, None)


def test_ready_after_a_problem_is_a_recovery_and_ends_it() -> None:
    classify_ = Classifier()
    assert classify_(_event("web", S.STARTING, S.READY)) == (K.READY, Severity.INFO)
    crash = _event("web", S.READY, S.BACKOFF, "restarting in 1s: exited with code 1")
    assert classify_(crash)[0] is K.EXITED
    assert classify_(_event("web", S.BACKOFF, S.STARTING, "pid 3"))[0] is K.RESTARTED
    # another service's readiness is not web's recovery
    assert classify_(_event("db", S.STARTING, S.READY))[0] is K.READY
    assert classify_(_event("web", S.STARTING, S.READY)) == (K.RECOVERED, Severity.INFO)
    # over: the next ready is just ready
    assert classify_(_event("web", S.READY, S.STOPPING))[0] is K.STOPPING
    assert classify_(_event("web", S.STOPPING, S.STOPPED))[0] is K.STOPPED
    assert classify_(_event("web", S.STARTING, S.READY))[0] is K.READY


def test_a_stop_ends_a_problem_and_a_fatal_service_brought_up_again_recovers() -> None:
    classify_ = Classifier()
    classify_(_event("job", S.RUNNING, S.FAILED, "exited with code 2"))
    classify_(_event("job", S.FAILED, S.STOPPED))
    assert classify_(_event("job", S.RUNNING, S.COMPLETED))[0] is K.COMPLETED
    classify_(_event("web", S.BACKOFF, S.FATAL, "3 restarts within 60s"))
    classify_(_event("web", S.FATAL, S.WAITING))
    assert classify_(_event("web", S.STARTING, S.READY))[0] is K.RECOVERED


def test_a_lost_dependency_is_a_warning_and_its_return_a_recovery() -> None:
    classifier = Classifier()
    lost = Event("worker", S.READY, S.DEGRADED, 1.0, "rabbitmq is down")
    back = Event("worker", S.DEGRADED, S.READY, 2.0, "rabbitmq ready again")
    assert classifier(lost) == (K.DEGRADED, Severity.WARNING)
    assert classifier(back) == (K.RECOVERED, Severity.INFO)
