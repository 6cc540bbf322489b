"""The daemon's events through the installed command: alerts on crashes, damping, history,
following. Real processes, a real exec notifier, the real `svcorch events`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.runtime.conftest import Reader, Stack, stop_popen, tcp_service
from tests.support import free_port, wait_until
from tests.support.procs import python_service

# the notifier writes each payload with the moment it got it, and its SVCORCH_* variables
RECORDER = """\
import json, os, sys, time
event = json.load(sys.stdin)
env = {k: v for k, v in os.environ.items() if k.startswith("SVCORCH_")}
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"got": time.time(), "event": event, "env": env}) + "\\n")
"""
QUICK = {"policy": "on-failure", "backoff": "50ms"}


def recorder(stack: Stack, **options: Any) -> list[dict[str, Any]]:
    (stack.root / "record.py").write_text(RECORDER)
    return [{"type": "exec", "command": [sys.executable, "record.py", "alerts.jsonl"], **options}]


def alerts(stack: Stack) -> list[dict[str, Any]]:
    path = stack.root / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def healed(stack: Stack, service: str, crashed: int, timeout: float = 5) -> None:
    """Ready again under a new pid, read from state.json (the CLI is slow on a busy box)."""

    def ready() -> bool:
        record = stack.records().get(service, {})
        return record.get("state") == "ready" and record.get("pid") not in (None, crashed)

    wait_until(ready, timeout, f"{service} healed by its restart policy")


def journal(stack: Stack, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stack.ok("events", "--json", *args).splitlines()]


# -- the acceptance: a kill -9 healed in 2 s always alerts within 3 s --------------------------


def test_a_kill_9_healed_by_the_restart_policy_alerts_within_3s(stack: Stack) -> None:
    port = free_port()
    stack.write({"web": tcp_service(port, restart=QUICK)}, name="shop", notify=recorder(stack))
    stack.ok("up")
    pid = stack.status()["web"]["pid"]
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    healed(stack, "web", pid)
    wait_until(lambda: alerts(stack), timeout=10, message="an alert")
    [first] = alerts(stack)
    assert first["got"] - killed < 3  # the notifier's own clock: when it ran
    event = first["event"]
    assert {k: event[k] for k in ("source", "event", "severity", "service", "old", "new")} == {
        "source": "daemon",
        "event": "exited",
        "severity": "warning",
        "service": "web",
        "old": "ready",
        "new": "backoff",
    }
    assert event["detail"] == "restarting in 0.05s: killed by SIGKILL"
    assert event["pid"] == pid and event["catalogue"] == "shop"
    assert event["host"] == socket.gethostname()
    assert abs(event["time"] - killed) < 2
    env = first["env"]
    assert (env["SVCORCH_EVENT"], env["SVCORCH_SERVICE"], env["SVCORCH_SEVERITY"]) == (
        "exited",
        "web",
        "warning",
    )
    # the journal tells the whole story
    story = [(r["kind"], r["old"], r["new"]) for r in journal(stack, "web")][-3:]
    assert story == [
        ("exited", "ready", "backoff"),
        ("restarted", "backoff", "starting"),
        ("recovered", "starting", "ready"),
    ]
    assert "notified exec python" in stack.daemon_log()


def test_a_flapping_service_yields_one_alert_and_one_summary(stack: Stack) -> None:
    restart = {"policy": "on-failure", "backoff": "20ms", "max_backoff": "50ms", "max_restarts": 4}
    stack.write(
        {"crashy": {"command": python_service("exit_with", 3, "--after", 0.1), "restart": restart}},
        notify=recorder(stack, damping="3s"),
    )
    stack.ok("up")  # no probe: ready once started
    wait_until(lambda: stack.records()["crashy"]["state"] == "fatal", 30, "crashy fatal")
    wait_until(lambda: len(alerts(stack)) == 2, 10, "the summary when the damping window closes")
    # the window reopened by the summary closes quiet: nothing more is sent
    wait_until(
        lambda: "alerts: crashy: quiet for 3s, damping window closed" in stack.daemon_log(),
        10,
        "the second window to close",
    )
    first, summary = (a["event"] for a in alerts(stack))
    assert (first["event"], first["detail"]) == (
        "exited",
        "restarting in 0.02s: exited with code 3",
    )
    assert summary["event"] == "summary" and summary["severity"] == "critical"
    assert summary["new"] == "fatal"
    assert summary["count"] == len(summary["events"]) >= 9  # 3 more crashes, 4 restarts, fatal
    assert summary["detail"].startswith(f"{summary['count']} events since the alert: ")
    assert "exited x3" in summary["detail"] and "restarted x4" in summary["detail"]
    assert summary["detail"].endswith("now fatal (4 restarts within 60s; last: exited with code 3)")
    kinds = [r["kind"] for r in journal(stack, "crashy")]
    assert kinds.count("exited") == 4 and kinds[-1] == "fatal"  # four crashes, one alert


# -- svcorch events: history -------------------------------------------------------------------


def test_events_shows_history_with_since_json_and_names(stack: Stack) -> None:
    ports = {name: free_port() for name in ("db", "web")}
    stack.write(
        {"db": tcp_service(ports["db"]), "web": tcp_service(ports["web"], depends_on=["db"])}
    )
    stack.ok("up")
    between = time.time()
    wait_until(lambda: time.time() > between + 0.01, 1, "the clock to move on")
    stack.ok("restart", "web")
    stack.ok("down")
    assert stack.daemon_pid() is None  # history needs no daemon

    records = journal(stack)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert {r["service"] for r in records} == {"db", "web"}
    assert all(r["severity"] == "info" for r in records)
    web = [(r["kind"]) for r in journal(stack, "web")]
    assert web == [
        "waiting", "started", "ready",  # up
        "stopping", "stopped", "waiting", "started", "ready",  # restart
        "stopping", "stopped",  # down
    ]  # fmt: skip
    # --since, as a local time and as a duration
    local = datetime.fromtimestamp(between).isoformat(sep=" ")
    after = journal(stack, "--since", local, "web")
    assert [r["kind"] for r in after] == web[3:]
    assert journal(stack, "--since", "1h") == records
    assert stack.ok("events", "--since", "0s") == ""
    # the text form: one line per event
    lines = stack.ok("events", "db").splitlines()
    assert len(lines) == 5
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO +db +started +pid \d+", lines[1]
    ), lines[1]


def test_events_refuses_a_bad_since_and_an_unknown_service_in_one_line(stack: Stack) -> None:
    stack.write({"db": tcp_service(free_port())})
    bad = stack.run("events", "--since", "yesterday")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == (
        "svcorch: --since: 'yesterday' is neither a duration (30s, 10m, 2h)"
        " nor a time (2024-05-02 10:00, 10:00)\n"
    )
    typo = stack.run("events", "dbb")
    assert typo.returncode == 2
    assert typo.stderr == "svcorch: unknown service 'dbb' (did you mean 'db'?)\n"
    assert stack.run("events").returncode == 0  # nothing happened yet: nothing to show


# -- svcorch events -f -------------------------------------------------------------------------


def test_follow_streams_live_events_across_a_daemon_restart(stack: Stack) -> None:
    port = free_port()
    stack.write({"web": tcp_service(port, restart=QUICK)})
    stack.ok("up")
    follower = Reader(stack.popen("events", "-f", "--json"))
    try:
        follower.wait_for(r'"kind": "ready"')  # the last events first, as tail -f
        pid = stack.status()["web"]["pid"]
        os.kill(pid, signal.SIGKILL)
        follower.wait_for(r'"kind": "recovered"', timeout=10)
        stack.ok("down")  # the daemon exits: the follower waits for the next one
        follower.wait_for(r'"kind": "stopped"')
        stack.ok("up")
        wait_until(
            lambda: sum('"kind": "ready"' in line for line in follower.lines) == 2,
            15,
            "the new daemon's events",
        )
        follower.popen.send_signal(signal.SIGTERM)
        assert follower.finish(10) == 0
    finally:
        stop_popen(follower.popen)
    records = [json.loads(line) for line in follower.lines]
    kinds = [r["kind"] for r in records]
    assert kinds == [
        "waiting", "started", "ready",  # history
        "exited", "restarted", "recovered",  # the kill, live
        "stopping", "stopped",  # down
        "waiting", "started", "ready",  # a new daemon
    ]  # fmt: skip
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(set(seqs))  # nothing twice, nothing out of order


def test_follow_without_a_daemon_waits_for_one_and_ctrl_c_ends_it(stack: Stack) -> None:
    port = free_port()
    stack.write({"web": tcp_service(port)})
    follower = Reader(stack.popen("events", "-f", "web"))
    try:
        stack.ok("up")
        follower.wait_for(r"^\S+ \S+ INFO +web +ready +connected")
        follower.popen.send_signal(signal.SIGINT)
        assert follower.finish(10) == 130
    finally:
        stop_popen(follower.popen)
    assert "Traceback" not in follower.text


def test_the_journal_is_private(stack: Stack) -> None:
    stack.write({"web": tcp_service(free_port())})
    stack.ok("up")
    path = Path(stack.state_dir) / "events.jsonl"
    assert path.stat().st_mode & 0o777 == 0o600
