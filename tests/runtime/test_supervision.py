"""Supervision through the installed command: restarts, liveness, cascades, adoption."""

from __future__ import annotations

import os
import re
import signal

import psutil

from tests.runtime.conftest import Stack, events, position, tcp_service
from tests.support import free_port, port_open, wait_until
from tests.support.procs import gone, python_service

QUICK_RESTART = {"policy": "on-failure", "backoff": "50ms", "max_backoff": "200ms"}


def test_a_crashing_service_restarts_with_backoff_then_is_fatal(stack: Stack) -> None:
    stack.write(
        {
            "crashy": {
                "command": python_service("exit_with", 3, "--after", 0.2),
                "restart": {**QUICK_RESTART, "max_restarts": 2},
            }
        }
    )
    assert "1 ready" in stack.ok("up")  # no probe: ready once started
    wait_until(lambda: stack.status()["crashy"]["state"] == "fatal", timeout=20, message="fatal")
    row = stack.status()["crashy"]
    assert row["restarts"] == 2 and row["pid"] is None
    assert row["detail"] == "2 restarts within 60s; last: exited with code 3"
    assert stack.log("crashy").count("--- svcorch: crashy start #") == 3
    daemon_log = stack.daemon_log()
    assert "crashy: ready -> backoff (restarting in 0.05s: exited with code 3)" in daemon_log
    assert "crashy: ready -> backoff (restarting in 0.1s: exited with code 3)" in daemon_log

    # every exited child was reaped: the daemon has no zombies
    daemon = stack.daemon_pid()
    assert daemon is not None
    assert not [
        child.pid
        for child in psutil.Process(daemon).children()
        if child.status() == psutil.STATUS_ZOMBIE
    ]

    # fatal stays down until the next explicit up, which starts it afresh
    out = stack.ok("up")
    assert "1 ready" in out


def test_a_start_that_keeps_failing_ends_the_up_as_fatal(stack: Stack) -> None:
    stack.write(
        {
            "crashy": {
                "command": python_service("exit_with", 3),
                "ready": {"type": "tcp", "port": free_port()},
                "restart": {**QUICK_RESTART, "max_restarts": 2},
            },
            "app": tcp_service(free_port(), depends_on=["crashy"]),
        }
    )
    result = stack.run("up")
    assert result.returncode == 1
    out = result.stdout
    assert "crashy failed: 2 restarts within 60s; last: exited with code 3 before ready" in out
    assert [state for name, state, _ in events(out) if name == "crashy"].count("backoff") == 2
    assert "not started (a dependency failed): app" in out
    assert stack.status()["crashy"]["state"] == "fatal"


def test_a_failing_liveness_probe_restarts_the_service(stack: Stack) -> None:
    port = free_port()
    stack.write(
        {
            "web": {
                "command": python_service("deaf_on_usr1", "--port", port),
                "ready": {"type": "tcp", "port": port},
                "liveness": {
                    "type": "tcp",
                    "port": port,
                    "period": "100ms",
                    "failure_threshold": 2,
                },
            }
        }
    )
    stack.ok("up")
    first = stack.status()["web"]["pid"]
    os.kill(first, signal.SIGUSR1)
    wait_until(
        lambda: (
            stack.status()["web"]["restarts"] == 1 and stack.status()["web"]["state"] == "ready"
        ),
        timeout=15,
        message="web restarted and ready",
    )
    row = stack.status()["web"]
    assert row["pid"] != first and gone(first) and port_open(port)
    assert "deaf now" in stack.log("web")
    # the daemon log says why, as a warning
    assert re.search(
        r" WARNING svcorch\.engine\[\d+\]: web: (ready|unready) -> stopping "
        r"\(liveness failed 2 times: Connection refused\)$",
        stack.daemon_log(),
        re.MULTILINE,
    ), stack.daemon_log()


def test_a_restart_cascades_to_dependents_that_asked_for_it(stack: Stack) -> None:
    ports = {name: free_port() for name in ("db", "worker", "web")}
    stack.write(
        {
            "db": tcp_service(ports["db"], restart={"policy": "always", "backoff": "50ms"}),
            "worker": tcp_service(
                ports["worker"], depends_on={"db": {"restart_on_dependency": True}}
            ),
            "web": tcp_service(ports["web"], depends_on=["db"]),
        }
    )
    stack.ok("up")
    before = {name: row["pid"] for name, row in stack.status().items()}
    os.kill(before["db"], signal.SIGKILL)

    def back() -> bool:
        rows = stack.status()
        return rows["db"]["restarts"] == 1 and all(r["state"] == "ready" for r in rows.values())

    wait_until(back, timeout=15, message="db restarted and everything ready")
    after = {name: row["pid"] for name, row in stack.status().items()}
    assert after["db"] != before["db"]
    assert after["worker"] != before["worker"] and gone(before["worker"])
    assert after["web"] == before["web"]  # it did not ask: it kept running
    log = stack.daemon_log()
    # the worker is stopped before db starts again, and started again once db is ready
    assert log.index("worker: stopping -> stopped") < log.index("db: backoff -> starting")
    assert log.rindex("db: starting -> ready") < log.rindex("worker: waiting -> starting")


def test_restart_stops_dependents_top_down_and_starts_them_bottom_up(stack: Stack) -> None:
    ports = {name: free_port() for name in ("db", "web", "cache")}
    stack.write(
        {
            "db": tcp_service(ports["db"]),
            "web": tcp_service(ports["web"], depends_on=["db"]),
            "cache": tcp_service(ports["cache"]),
        }
    )
    stack.ok("up")
    before = {name: row["pid"] for name, row in stack.status().items()}
    out = stack.ok("restart", "db")
    assert "2 restarted" in out
    assert position(out, "web", "stopped") < position(out, "db", "stopping")
    assert position(out, "db", "ready") < position(out, "web", "starting")
    after = {name: row["pid"] for name, row in stack.status().items()}
    assert after["db"] != before["db"] and after["web"] != before["web"]
    assert after["cache"] == before["cache"]


def test_a_killed_daemon_is_replaced_by_one_that_adopts_the_services(stack: Stack) -> None:
    ports = {name: free_port() for name in ("db", "web", "cron")}
    stack.write(
        {
            "db": tcp_service(ports["db"]),
            "web": tcp_service(ports["web"], depends_on=["db"]),
            "cron": tcp_service(ports["cron"]),
        }
    )
    stack.ok("up")
    pids = {name: row["pid"] for name, row in stack.status().items()}
    daemon = stack.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: gone(daemon), timeout=5, message="the daemon gone")
    # the services live on in their own sessions
    assert all(port_open(port) for port in ports.values())
    os.kill(pids["cron"], signal.SIGKILL)
    wait_until(lambda: gone(pids["cron"]), timeout=5, message="cron gone")

    # status without a daemon reads the state file and checks each process
    offline = stack.status()
    assert offline["db"]["state"] == "ready" and offline["db"]["pid"] == pids["db"]
    assert offline["cron"]["state"] == "exited(?)" and offline["cron"]["pid"] is None

    # the next command starts a daemon that adopts what is alive
    out = stack.ok("up", "web")
    assert "nothing to do: 2 already ready (db, web)" in out
    new_daemon = stack.daemon_pid()
    assert new_daemon not in (None, daemon)
    assert "adopted db, web" in stack.daemon_log()
    online = stack.status()
    assert online["db"]["pid"] == pids["db"] and online["web"]["pid"] == pids["web"]
    assert online["cron"]["state"] == "exited(?)"
    assert online["cron"]["detail"] == "exited while no svcorch daemon was watching"

    out = stack.ok("down")
    assert "2 stopped" in out
    assert gone(pids["db"]) and gone(pids["web"])
    wait_until(lambda: stack.daemon_pid() is None, timeout=5, message="the daemon to exit")


def test_down_without_a_daemon_adopts_and_stops_everything(stack: Stack) -> None:
    db = free_port()
    stack.write({"db": tcp_service(db)})
    stack.ok("up")
    pid = stack.status()["db"]["pid"]
    daemon = stack.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: gone(daemon), timeout=5, message="the daemon gone")
    out = stack.ok("down")
    assert "1 stopped" in out
    assert gone(pid) and not port_open(db)
