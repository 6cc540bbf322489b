"""The daemon's alerts: flap damping (a fake clock), then delivery through real notifiers."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from svcorch.alerts import SUMMARY, SUMMARY_EVENTS, Alert, Alerter, Damper
from svcorch.engine.events import Severity
from svcorch.journal import EventRecord
from svcorch.model import ExecNotifier, WebhookNotifier
from tests.support import silent_tcp_server, wait_until

_SEQ = iter(range(1, 1_000_000))


def rec(
    kind: str, severity: str, service: str = "web", new: str = "backoff", **values: object
) -> EventRecord:
    fields: dict[str, object] = {
        "seq": next(_SEQ),
        "time": time.time(),
        "service": service,
        "kind": kind,
        "severity": severity,
        "old": "ready",
        "new": new,
        "detail": f"{kind} detail",
        "pid": 42,
        **values,
    }
    return EventRecord(**fields)  # type: ignore[arg-type]


def crash(service: str = "web") -> EventRecord:
    return rec("exited", "warning", service, detail="restarting in 0.05s: killed by SIGKILL")


def restarted(service: str = "web") -> EventRecord:
    return rec("restarted", "info", service, new="starting")


def recovered(service: str = "web") -> EventRecord:
    return rec("recovered", "info", service, new="ready", detail="PONG")


def damper(damping: float = 30.0, threshold: Severity = Severity.WARNING) -> Damper:
    return Damper(damping=damping, threshold=threshold, catalogue="shop", host="box")


# -- damping -----------------------------------------------------------------------------------


def test_the_first_problem_alerts_at_once_and_the_rest_of_the_burst_is_one_summary() -> None:
    d = damper(30)
    [alert] = d.feed(crash(), now=100.0)
    assert (alert.event, alert.severity, alert.service) == ("exited", "warning", "web")
    assert alert.detail == "restarting in 0.05s: killed by SIGKILL"
    assert d.next_due() == 130.0
    for now in (100.1, 100.2):
        assert d.feed(restarted(), now) == []
        assert d.feed(recovered(), now) == []
    assert d.due(129.9) == []
    [summary] = d.due(130.0)
    assert summary.event == SUMMARY and summary.count == 4
    assert (
        summary.detail == "4 events since the alert: restarted x2, recovered x2; now ready (PONG)"
    )
    assert (summary.old, summary.new, summary.severity) == ("backoff", "ready", "info")
    # nothing more was wrong: the window does not open again
    assert d.next_due() is None
    assert d.due(1000.0) == []
    # so the next crash pages at once again
    assert [a.event for a in d.feed(crash(), 2000.0)] == ["exited"]


def test_a_flapping_service_costs_one_alert_and_one_summary_per_window() -> None:
    d = damper(10)
    sent: list[Alert] = []
    now = 0.0
    for _ in range(20):  # a crash, a restart, a recovery every second, for twenty seconds
        for event in (crash(), restarted(), recovered()):
            sent += d.feed(event, now)
        now += 1.0
        sent += d.due(now)
    sent += d.due(now + 100)
    sent += d.due(now + 200)
    kinds = [a.event for a in sent]
    assert kinds == ["exited", SUMMARY, SUMMARY]  # not 20 pages
    assert sent[1].count == 29 and sent[2].count == 30


def test_a_window_that_stays_quiet_closes_without_a_message() -> None:
    d = damper(5)
    assert len(d.feed(crash(), 0.0)) == 1
    assert d.due(5.0) == []
    assert d.next_due() is None


def test_services_are_damped_apart() -> None:
    d = damper(30)
    assert len(d.feed(crash("web"), 0.0)) == 1
    assert len(d.feed(crash("worker"), 0.1)) == 1
    assert d.feed(crash("web"), 0.2) == []


def test_below_the_threshold_nothing_is_sent_unless_it_ends_a_problem_that_was() -> None:
    d = damper(0)  # no damping: every event on its own
    assert d.feed(restarted(), 0.0) == []
    assert d.feed(recovered(), 0.0) == []  # nothing was wrong as far as this notifier knows
    assert [a.event for a in d.feed(crash(), 1.0)] == ["exited"]
    assert d.feed(restarted(), 1.1) == []
    assert [a.event for a in d.feed(recovered(), 1.2)] == ["recovered"]
    assert d.feed(recovered(), 1.3) == []


def test_a_higher_threshold_hears_only_what_reaches_it() -> None:
    d = damper(0, threshold=Severity.ERROR)
    assert d.feed(crash(), 0.0) == []  # healed by its policy: not this notifier's business
    assert d.feed(recovered(), 0.1) == []
    fatal = rec("fatal", "critical", new="fatal", detail="5 restarts within 60s")
    assert [a.event for a in d.feed(fatal, 0.2)] == ["fatal"]
    # critical: only what gave up (docs/operations.md)
    d = damper(0, threshold=Severity.CRITICAL)
    failed = rec("failed", "error", new="failed", detail="port 8000 is in use by pid 7")
    assert d.feed(crash(), 0.0) == [] and d.feed(failed, 0.1) == []
    assert [a.event for a in d.feed(fatal, 0.2)] == ["fatal"]
    # a stop ends the problem too, and says so
    stopped = rec("stopped", "info", new="stopped", detail="")
    assert [a.event for a in d.feed(stopped, 0.3)] == ["stopped"]


def test_a_summary_lists_a_bounded_number_of_events_but_counts_them_all() -> None:
    d = damper(30)
    d.feed(crash(), 0.0)
    for _ in range(SUMMARY_EVENTS + 25):
        d.feed(restarted(), 1.0)
    [summary] = d.due(30.0)
    assert summary.count == SUMMARY_EVENTS + 25
    assert len(summary.events) == SUMMARY_EVENTS == 50  # docs/operations.md
    assert "(+25 more)" in summary.detail


def test_drain_summarises_every_open_window_now() -> None:
    d = damper(30)
    d.feed(crash("web"), 0.0)
    d.feed(rec("stopped", "info", "web", new="stopped", detail=""), 1.0)
    d.feed(crash("db"), 0.0)
    [summary] = d.drain()
    assert summary.service == "web" and summary.new == "stopped"
    assert d.next_due() is None


def test_the_payload_carries_what_a_receiver_needs() -> None:
    d = damper(30)
    [alert] = d.feed(crash(), 0.0)
    payload = alert.to_dict()
    assert set(payload) == {
        "source", "event", "severity", "service", "old", "new", "detail", "time", "pid",
        "catalogue", "host",
    }  # fmt: skip
    assert payload["source"] == "daemon" and payload["catalogue"] == "shop"
    d.feed(recovered(), 1.0)
    [summary] = d.due(30.0)
    payload = summary.to_dict()
    assert payload["event"] == "summary" and payload["count"] == 1
    assert payload["since"] == alert.time
    listed: dict[str, object]
    [listed] = payload["events"]  # type: ignore[misc]
    assert listed["kind"] == "recovered" and listed["detail"] == "PONG"
    env = summary.environment()
    assert sorted(env) == sorted(
        f"SVCORCH_{name}"
        for name in ("SOURCE", "EVENT", "SEVERITY", "SERVICE", "OLD", "NEW", "DETAIL", "TIME",
                     "COUNT", "CATALOGUE", "HOST")
    )  # fmt: skip
    assert env["SVCORCH_EVENT"] == "summary" and env["SVCORCH_COUNT"] == "1"
    assert env["SVCORCH_SOURCE"] == "daemon" and env["SVCORCH_SEVERITY"] == "info"


# -- the alerter: a thread, real notifiers -----------------------------------------------------

RECORDER = """\
import json, os, sys, time
event = json.load(sys.stdin)
with open(sys.argv[1], "a") as out:
    out.write(json.dumps(event) + "\\n")
"""


def exec_notifier(tmp_path: Path, **values: object) -> ExecNotifier:
    (tmp_path / "record.py").write_text(RECORDER)
    argv = [sys.executable, str(tmp_path / "record.py"), str(tmp_path / "got.jsonl")]
    return ExecNotifier.model_validate({"type": "exec", "command": argv, **values})


def received(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "got.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_alerter_sends_at_once_and_summarises_when_the_window_closes(tmp_path: Path) -> None:
    alerter = Alerter(
        [exec_notifier(tmp_path, damping="300ms")],
        base_dir=str(tmp_path),
        catalogue="shop",
        host="box",
        on_delivery=lambda _: None,
    )
    try:
        alerter.post(crash())
        wait_until(lambda: len(received(tmp_path)) == 1, 5, "the alert")
        alerter.post(restarted())
        alerter.post(recovered())
        wait_until(lambda: len(received(tmp_path)) == 2, 5, "the summary")
    finally:
        alerter.close(5)
    first, summary = received(tmp_path)
    assert first["event"] == "exited" and summary["event"] == "summary"
    assert summary["count"] == 2 and summary["new"] == "ready"


def test_posting_never_waits_for_a_slow_notifier(tmp_path: Path) -> None:
    with silent_tcp_server() as port:  # a webhook that accepts and never answers
        slow = {"type": "webhook", "url": f"http://127.0.0.1:{port}/", "damping": "0s",
                "timeout": "1s"}  # fmt: skip
        alerter = Alerter(
            [WebhookNotifier.model_validate(slow), exec_notifier(tmp_path, damping="1h")],
            base_dir=str(tmp_path),
            catalogue="shop",
            host="box",
            on_delivery=lambda _: None,
        )
        started = time.monotonic()
        for _ in range(200):
            alerter.post(crash())
            alerter.post(recovered())
        posting = time.monotonic() - started
        # the silent webhook holds up neither the poster nor the other notifier
        wait_until(lambda: len(received(tmp_path)) == 1, 10, "the exec notifier's alert")
        alerter.close(5)
    assert posting < 0.1
    assert [e["event"] for e in received(tmp_path)] == ["exited", "summary"]
    assert received(tmp_path)[1]["count"] == 399


def test_closing_sends_what_open_windows_collected(tmp_path: Path) -> None:
    alerter = Alerter(
        [exec_notifier(tmp_path, damping="1h")],
        base_dir=str(tmp_path),
        catalogue="shop",
        host="box",
        on_delivery=lambda _: None,
    )
    alerter.post(crash())
    alerter.post(rec("stopped", "info", new="stopped", detail=""))
    wait_until(lambda: len(received(tmp_path)) == 1, 5, "the alert")
    alerter.close(5)
    assert [e["event"] for e in received(tmp_path)] == ["exited", "summary"]


# -- the catalogue's side ----------------------------------------------------------------------


def test_notifiers_default_to_warnings_damped_for_30s() -> None:
    notifier = ExecNotifier.model_validate({"type": "exec", "command": "page"})
    assert notifier.min_severity == "warning"
    assert notifier.damping.total_seconds() == 30
    hook = WebhookNotifier.model_validate({"type": "webhook", "url": "http://127.0.0.1:9/"})
    assert (hook.min_severity, hook.damping.total_seconds()) == ("warning", 30)


def test_a_bad_severity_or_damping_is_one_located_line_each(tmp_path: Path) -> None:
    import pytest

    from svcorch import catalogue as catalogue_module
    from svcorch.errors import CatalogueError

    path = tmp_path / "services.yaml"
    path.write_text(
        "version: 1\n"
        "notify:\n"
        "  - {type: exec, command: page, min_severity: warn, damping: soon}\n"
        "services:\n"
        "  a: {command: sleep 1}\n"
    )
    with pytest.raises(CatalogueError) as caught:
        catalogue_module.load(path, environ={})
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:3:5: notify.0.exec.min_severity: Input should be 'info', 'warning', 'error'"
        " or 'critical'",
        f"{path}:3:5: notify.0.exec.damping: invalid duration 'soon' (use e.g. 250ms, 30s, 2m, 1h)",
    ]
