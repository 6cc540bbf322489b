"""The shipped stack under a bounded soak: a few hundred events while the worker and the
RabbitMQ node are killed -9, and then one of gunicorn's workers.

What must hold (issue 9): every accepted event stored exactly once; every killed service back
and ready; no service started while a dependency was not in its condition (daemon.log's
transitions replayed against the catalogue); the broker's crash and its dependents' loss said
as warnings, with the signal named; a probe failing during the broker's restart is one line
per state change. The longer run behind docs/reliability.md is ``benchmarks/soak.py``.
"""

from __future__ import annotations

import re

import pytest

from tests.support.soak import Plan, shipped_stack, soak

pytestmark = pytest.mark.e2e

PLAN = Plan(
    events=300,
    rate=20.0,
    # seconds after the load starts; each kill waits for the one before to have recovered
    kills=((4.0, "worker"), (8.0, "rabbitmq"), (12.0, "web-child")),
)


def test_the_shipped_stack_heals_and_loses_nothing_accepted() -> None:
    with shipped_stack() as stack:
        report = soak(stack, PLAN, log=print)
        summary = report.summary()
        print(summary)
        daemon_log = stack.daemon_log()

    # nothing accepted is lost, nothing is stored twice
    assert report.failed == [], report.failed
    assert report.accepted == PLAN.events
    assert report.lost == [] and report.duplicated == {} and report.unexpected == 0
    assert report.stored_once == PLAN.events

    # every killed service came back and is ready; the real processes were the ones killed
    assert [(k.service, k.program) for k in report.kills] == [
        ("worker", "celery"),
        ("rabbitmq", "beam.smp"),
        ("web-child", "gunicorn"),
    ]
    assert all(kill.recovery is not None for kill in report.kills), report.kills
    assert set(report.final_status.values()) <= {"ready", "completed"}, report.final_status

    # dependencies held throughout
    assert report.starts_while_down == [], report.starts_while_down

    # what happened is said, as warnings, with the signal named
    warnings = "\n".join(report.warnings)
    assert re.search(r"WARNING rabbitmq: ready -> backoff \(.*killed by SIGKILL\)", warnings)
    for dependent in ("web", "worker", "worker-resource", "beat"):
        assert re.search(rf"WARNING {dependent}: ready -> degraded \(rabbitmq is down", warnings), (
            warnings
        )
    assert re.search(r"WARNING worker: ready -> backoff \(.*killed by SIGKILL\)", warnings)

    # the broker's restart: its failing probe attempts are not lines of svcorch's own
    restart = re.search(
        r"rabbitmq: backoff -> starting .*?\n(.*?)rabbitmq: starting -> ready", daemon_log, re.S
    )
    assert restart is not None, daemon_log[-3000:]
    own = [line for line in restart[1].splitlines() if " svcorch." in line]
    assert not [line for line in own if "rabbitmq" in line], own
    assert " ERROR svcorch" not in daemon_log
