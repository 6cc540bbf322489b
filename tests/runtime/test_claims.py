"""Claims of docs/control.md and docs/cli.md about what survives what, held by real processes:
a down after the daemon died stops the group a dead leader left; a foreground up killed -9
takes its services' grandchildren with it; status without a daemon probes external services;
check --wait refuses a selection with nothing to wait for."""

from __future__ import annotations

import os
import signal

from tests.runtime.conftest import Stack
from tests.support import free_port, silent_tcp_server, wait_until
from tests.support.procs import gone, python_service, read_pids


def _forker(stack: Stack) -> dict[str, object]:
    pidfile = stack.root / "forker.pids"
    return {
        "command": python_service("forker", "--children", 2, "--pidfile", pidfile),
        "ready": {"type": "log", "pattern": "^forked"},
    }


def test_down_after_the_daemon_died_stops_what_a_dead_leader_left(stack: Stack) -> None:
    stack.write({"forker": _forker(stack)})
    stack.ok("up")
    leader, *children = read_pids(stack.root / "forker.pids")
    daemon = stack.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: gone(daemon), message="the daemon gone")
    os.kill(leader, signal.SIGKILL)  # the main process exits while nobody watches
    wait_until(lambda: gone(leader), message="the leader gone")
    assert not any(gone(pid) for pid in children)

    row = stack.status()["forker"]
    assert row["state"] == "exited(?)"
    assert "2 process(es) of its group remain (`svcorch down`)" in row["detail"]
    out = stack.ok("down")
    assert "nothing to do" not in out
    wait_until(lambda: all(gone(pid) for pid in children), message="the group stopped")


def test_a_foreground_up_killed_9_takes_the_grandchildren_with_it(stack: Stack) -> None:
    stack.write({"forker": _forker(stack)})
    up = stack.popen("up", "--foreground")
    try:
        pidfile = stack.root / "forker.pids"
        wait_until(lambda: len(read_pids(pidfile)) == 3, timeout=20, message="forker's pids")
        wait_until(lambda: stack.records()["forker"]["state"] == "ready", message="ready")
        pids = read_pids(pidfile)
        up.send_signal(signal.SIGKILL)
        up.wait(10)
        # PDEATHSIG ends the leader at once; the watchdog's SIGTERM to the group the rest
        wait_until(lambda: all(gone(pid) for pid in pids), timeout=10, message="all gone")
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_status_without_a_daemon_probes_external_services(stack: Stack) -> None:
    with silent_tcp_server() as port:
        closed = free_port()
        stack.write(
            {
                "up": {"external": True, "ready": {"type": "tcp", "port": port}},
                "down": {
                    "external": True,
                    "ready": {"type": "tcp", "port": closed, "attempt_timeout": "1s"},
                },
            }
        )
        rows = stack.status()
    assert rows["up"]["state"] == "external-ok"
    assert rows["down"]["state"] == "external-down"
    assert str(closed) in rows["down"]["detail"] or "refused" in rows["down"]["detail"]


def test_check_wait_with_nothing_to_wait_for_exits_2_with_one_line(stack: Stack) -> None:
    stack.write(
        {
            "web": {"command": ["sleep", "1"], "profiles": ["web"]},
            "db": {
                "external": True,
                "ready": {"type": "tcp", "port": free_port()},
                "profiles": ["db"],
            },
        }
    )
    result = stack.run("--profile", "web", "check", "--wait", timeout=20)
    assert result.returncode == 2
    assert result.stderr == (
        "svcorch: nothing to wait for: no selected service has a readiness probe\n"
    )
