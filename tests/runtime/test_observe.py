"""What the user sees of a running stack: status, logs, analyze, graph --timings."""

from __future__ import annotations

import json
import os
import re
import signal
import time

from tests.runtime.conftest import Reader, Stack, stop_popen, tcp_service
from tests.support import free_port
from tests.support.procs import python_service


def test_status_json_has_every_field_per_service(stack: Stack) -> None:
    db = free_port()
    stack.write(
        {
            "db": tcp_service(db),
            "init": {"oneshot": True, "command": ["/bin/true"]},
            "web": tcp_service(free_port(), depends_on=["db", "init"]),
            "idle": tcp_service(free_port()),
            "ext": {"external": True, "ready": {"type": "tcp", "port": db}},
        }
    )
    before = time.time()
    stack.ok("up", "web", "ext")
    rows = json.loads(stack.ok("status", "--json"))
    # start order: by generation, then by name
    assert [row["service"] for row in rows] == ["db", "ext", "idle", "init", "web"]
    by_name = {row["service"]: row for row in rows}
    for row in rows:
        assert set(row) >= {
            "service",
            "kind",
            "state",
            "pid",
            "uptime",
            "restarts",
            "restarts_total",
            "detail",
            "exit_code",
            "started_at",
            "ready_at",
        }
    db_row = by_name["db"]
    assert db_row["kind"] == "managed" and db_row["state"] == "ready"
    assert isinstance(db_row["pid"], int) and db_row["restarts"] == 0
    assert 0 <= db_row["uptime"] < 30 and db_row["detail"] == "connected"
    assert before <= db_row["started_at"] <= db_row["ready_at"]
    assert by_name["init"]["state"] == "completed" and by_name["init"]["pid"] is None
    assert by_name["init"]["exit_code"] == 0
    assert by_name["ext"]["kind"] == "external" and by_name["ext"]["state"] == "external-ok"
    assert by_name["idle"]["state"] == "stopped" and by_name["idle"]["uptime"] is None
    assert [row["service"] for row in json.loads(stack.ok("status", "--json", "db"))] == ["db"]

    table = stack.ok("status")
    assert re.search(rf"^db\s+ready\s+{db_row['pid']}\s+\d+s\s+0\s+connected", table, re.M)


def test_logs_print_the_last_lines_prefixed(stack: Stack) -> None:
    script = "for i in range(30): print(f'line {i}')\nimport time; time.sleep(300)"
    stack.write(
        {
            "chatty": {
                "command": ["python3", "-u", "-c", script],
                "ready": {"type": "log", "pattern": "^line 29$"},
            },
            "quiet": tcp_service(free_port()),
        }
    )
    stack.ok("up")
    out = stack.ok("logs", "-n", "3", "chatty")
    assert out.splitlines() == ["chatty | line 27", "chatty | line 28", "chatty | line 29"]
    both = stack.ok("logs", "-n", "1").splitlines()
    assert len(both) == 2
    assert both[0] == "chatty | line 29" or both[1] == "chatty | line 29"
    assert any(re.fullmatch(r"quiet  \| ready on \d+", line) for line in both)


def test_logs_follow_keeps_printing_across_a_restart(stack: Stack) -> None:
    stack.write(
        {
            "ticker": {
                "command": python_service("ready_line", "--line", "tick"),
                "ready": {"type": "log", "pattern": "^tick$"},
            }
        }
    )
    stack.ok("up")
    follower = Reader(stack.popen("logs", "-f", "-n", "1", "ticker"))
    try:
        follower.wait_for(r"^ticker \| tick$")  # the last line, then it follows
        stack.ok("restart", "ticker")
        follower.wait_for(r"^ticker \| --- svcorch: ticker start #2 ")
        follower.wait_for(r"^ticker \| booting$")
        follower.wait_for(r"^ticker \| tick\n(.*\n)*ticker \| tick$")
        assert not any("start #1" in line for line in follower.lines)
    finally:
        stop_popen(follower.popen)
    assert follower.popen.returncode in (0, -signal.SIGTERM)


def test_analyze_shows_the_critical_chain_with_start_to_ready_times(stack: Stack) -> None:
    ports = {name: free_port() for name in ("db", "api", "web", "side")}
    stack.write(
        {
            "db": tcp_service(ports["db"], 0.3),
            "api": tcp_service(ports["api"], 0.2, depends_on=["db"]),
            "web": tcp_service(ports["web"], 0.1, depends_on=["api"]),
            "side": tcp_service(ports["side"], 0.0, depends_on=["db"]),
        }
    )
    stack.ok("up")
    analysis = json.loads(stack.ok("analyze", "--json"))
    chain = [link["service"] for link in analysis["critical_chain"]]
    assert chain == ["db", "api", "web"]
    took = {link["service"]: link["took"] for link in analysis["critical_chain"]}
    assert took["db"] >= 0.3 and took["api"] >= 0.2 and took["web"] >= 0.1
    assert analysis["total"] >= 0.6
    assert set(analysis["durations"]) == {"db", "api", "web", "side"}

    text = stack.ok("analyze")
    assert text.startswith(f"ready after {analysis['total']:.2f}s; the critical chain:")
    lines = text.splitlines()
    assert lines[1].split() == ["SERVICE", "STARTED", "READY", "TOOK"]
    assert [line.split()[0] for line in lines[2:5]] == ["web", "api", "db"]
    assert re.match(r"^  web\s+\d+\.\d{3}s\s+\d+\.\d{3}s\s+\d+\.\d{3}s$", lines[2])
    assert "slowest start -> ready:" in lines and lines[
        lines.index("slowest start -> ready:") + 1
    ].split() == ["SERVICE", "TOOK"]

    dot = stack.ok("graph", "--dot", "--timings")
    db_node = next(line for line in dot.splitlines() if line.strip().startswith('"db" ['))
    assert f"{analysis['durations']['db']:.2f}s" in db_node
    assert "fillcolor=" in db_node
    assert '"db" -> "api";' in dot


def test_a_oneshot_on_the_critical_chain_is_counted(stack: Stack) -> None:
    # web waits for migrate to complete: its run is part of why web was ready when it was
    migrate = "import time; time.sleep(0.3)"
    stack.write(
        {
            "db": tcp_service(free_port(), 0.1),
            "migrate": {
                "oneshot": True,
                "command": ["python3", "-c", migrate],
                "depends_on": ["db"],
            },
            "web": tcp_service(free_port(), depends_on={"migrate": "completed"}),
        }
    )
    stack.ok("up")
    analysis = json.loads(stack.ok("analyze", "--json"))
    assert [link["service"] for link in analysis["critical_chain"]] == ["db", "migrate", "web"]
    assert analysis["durations"]["migrate"] >= 0.3


def test_status_of_a_stack_never_started_shows_everything_stopped(stack: Stack) -> None:
    stack.write({"db": tcp_service(free_port())})
    assert stack.status()["db"]["state"] == "stopped"
    assert stack.daemon_pid() is None  # status alone never starts a daemon
    assert not os.path.exists(stack.state_dir / "svcorch.sock")
