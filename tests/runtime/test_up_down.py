"""`svcorch up` and `svcorch down` through the installed command, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil

from tests.runtime.conftest import Stack, events, position, tcp_service
from tests.support import free_port, port_open, wait_until
from tests.support.procs import gone, python_service, read_pids, service_env


def test_up_starts_in_dependency_order_and_down_stops_in_reverse(stack: Stack) -> None:
    ports = {name: free_port() for name in ("db", "api", "jobs", "web")}
    stack.write(
        {
            "db": tcp_service(ports["db"], 0.3),
            "api": tcp_service(ports["api"], 0.1, depends_on=["db"]),
            "jobs": tcp_service(ports["jobs"], 0.1, depends_on=["db"]),
            "web": tcp_service(ports["web"], 0.1, depends_on=["api"]),
        }
    )
    out = stack.ok("up")
    assert "4 ready in" in out
    assert all(port_open(port) for port in ports.values())

    records = stack.records()
    for dependency, dependent in [("db", "api"), ("db", "jobs"), ("api", "web")]:
        assert records[dependency]["ready_at"] <= records[dependent]["started_at"], records
    assert position(out, "db", "ready") < position(out, "api", "starting")
    assert position(out, "api", "ready") < position(out, "web", "starting")

    out = stack.ok("down")
    assert "4 stopped in" in out
    assert position(out, "web", "stopped") < position(out, "api", "stopping")
    assert position(out, "api", "stopped") < position(out, "db", "stopping")
    assert position(out, "jobs", "stopped") < position(out, "db", "stopping")
    assert not any(port_open(port) for port in ports.values())
    # a down of everything ends the daemon too
    wait_until(lambda: stack.daemon_pid() is None, timeout=5, message="the daemon to exit")
    assert not (stack.state_dir / "svcorch.sock").exists()


def test_independent_services_start_in_parallel(stack: Stack) -> None:
    a, b, c = free_port(), free_port(), free_port()
    fast = {"period": "20ms"}
    stack.write(
        {
            "a": tcp_service(a, 0.5, probe=fast),
            "b": tcp_service(b, 0.5, probe=fast),
            "c": tcp_service(c, 0.0, probe=fast, depends_on=["a", "b"]),
        }
    )
    stack.ok("up")
    records = stack.records()
    first = min(records[n]["started_at"] for n in "ab")
    both_ready = max(records[n]["ready_at"] for n in "ab")
    assert abs(records["a"]["started_at"] - records["b"]["started_at"]) < 0.2
    # two 0.5 s services one after the other would need over 1 s
    assert both_ready - first < 0.9, records
    assert records["c"]["started_at"] >= both_ready


def test_a_second_up_has_nothing_to_do_and_up_of_one_service_brings_only_its_needs(
    stack: Stack,
) -> None:
    db, web, other = free_port(), free_port(), free_port()
    stack.write(
        {
            "db": tcp_service(db),
            "web": tcp_service(web, depends_on=["db"]),
            "other": tcp_service(other),
        }
    )
    out = stack.ok("up", "web")
    assert "2 ready" in out
    assert not port_open(other)
    assert stack.status()["other"]["state"] == "stopped"

    again = stack.ok("up", "web")
    assert "nothing to do: 2 already ready (db, web)" in again
    assert events(again) == []
    pids = {name: row["pid"] for name, row in stack.status().items()}

    out = stack.ok("up")
    assert "1 ready" in out and "(2 already ready)" in out
    assert {name: row["pid"] for name, row in stack.status().items() if name != "other"} == {
        name: pid for name, pid in pids.items() if name != "other"
    }


def test_a_child_that_exits_before_ready_fails_the_up_whatever_its_code(stack: Stack) -> None:
    ok_port, app_port = free_port(), free_port()
    boot_fails = "print('booting'); print('BOOT FAILED: no cookie', flush=True)"  # then exit 0
    stack.write(
        {
            "fine": tcp_service(ok_port),
            "rabbit": {
                "command": [sys.executable, "-c", boot_fails],
                "ready": {"type": "tcp", "port": free_port()},
            },
            "app": tcp_service(app_port, depends_on=["rabbit", "fine"]),
            "report": tcp_service(free_port(), depends_on=["app"]),
        }
    )
    result = stack.run("up")
    assert result.returncode == 1
    out = result.stdout
    assert "rabbit failed: exited with code 0 before ready" in out
    assert "last 3 lines of its log since this start:" in out
    assert "| BOOT FAILED: no cookie" in out
    assert "not started (a dependency failed): app, report" in out
    assert ("app", "blocked", "dependency rabbit is failed") in events(out)
    # what did start stays up without --rollback
    status = stack.status()
    assert status["fine"]["state"] == "ready" and port_open(ok_port)
    assert status["rabbit"]["state"] == "failed"
    assert status["app"]["state"] == "blocked" and status["app"]["pid"] is None
    assert not port_open(app_port)


def test_wrong_credentials_fail_at_once_with_the_servers_words_despite_a_restart_policy(
    stack: Stack,
) -> None:
    # the machine's MariaDB on 3306; a wrong password is final, retrying cannot help
    stack.write(
        {
            "app": {
                "command": python_service("tcp_ready", "--port", free_port()),
                "ready": {
                    "type": "mysql",
                    "port": 3306,
                    "user": "root",
                    "password": "Wr0ng-pw!",
                    "timeout": "60s",
                },
                "restart": {"policy": "on-failure", "backoff": "1s"},
            },
            "web": tcp_service(free_port(), depends_on=["app"]),
        }
    )
    result = stack.run("up")
    assert result.returncode == 1
    assert "app failed: mysql probe" in result.stdout
    assert "fatal after" in result.stdout and "Access denied for user 'root'" in result.stdout
    assert "Wr0ng-pw!" not in result.stdout + result.stderr
    assert "backoff" not in result.stdout
    assert "not started (a dependency failed): web" in result.stdout
    assert stack.records()["app"]["restarts"] == 0
    stack.ok("down")


def test_rollback_stops_what_the_failed_up_started(stack: Stack) -> None:
    db, extra = free_port(), free_port()
    stack.write(
        {
            "db": tcp_service(db),
            "web": {
                "command": python_service("exit_with", 2),
                "ready": {"type": "tcp", "port": free_port()},
                "depends_on": ["db"],
            },
            "extra": tcp_service(extra),
        }
    )
    stack.ok("up", "extra")
    result = stack.run("up", "--rollback")
    assert result.returncode == 1
    assert "web failed: exited with code 2 before ready" in result.stdout
    assert ("db", "stopped", "") in events(result.stdout)
    status = stack.status()
    assert status["db"]["state"] == "stopped" and not port_open(db)
    # started by an earlier up: left alone
    assert status["extra"]["state"] == "ready" and port_open(extra)


def test_oneshots_release_completed_dependents_or_fail_the_up(stack: Stack) -> None:
    web = free_port()
    marker = stack.root / "migrated"
    stack.write(
        {
            "migrate": {
                "oneshot": True,
                "command": ["/bin/sh", "-c", f"echo migrating; touch {marker}"],
            },
            "web": tcp_service(web, depends_on={"migrate": "completed"}),
        }
    )
    out = stack.ok("up")
    assert position(out, "migrate", "completed") < position(out, "web", "starting")
    assert marker.exists()
    assert stack.status()["migrate"]["state"] == "completed"
    stack.ok("down")

    stack.write(
        {
            "migrate": {"oneshot": True, "command": ["/bin/sh", "-c", "echo no db >&2; exit 5"]},
            "web": tcp_service(web, depends_on={"migrate": "completed"}),
        }
    )
    result = stack.run("up")
    assert result.returncode == 1
    assert "migrate failed: exited with code 5" in result.stdout
    assert "| no db" in result.stdout
    assert "not started (a dependency failed): web" in result.stdout


def test_up_refuses_a_port_in_use_naming_the_holder(stack: Stack) -> None:
    port = free_port()
    holder = subprocess.Popen(
        python_service("tcp_ready", "--port", port),
        stdout=subprocess.PIPE,
        env=service_env(),
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().startswith(b"ready on")
        # a restart policy does not help against a port held by someone else: fail at once
        stack.write(
            {"redis": {**tcp_service(port), "ports": [port], "restart": {"policy": "on-failure"}}}
        )
        result = stack.run("up")
        assert result.returncode == 1
        # refused by the preflight, before anything started (tests/runtime/test_preflight.py)
        assert result.stdout == ""
        assert result.stderr.startswith(
            f"svcorch: redis: port {port} is in use by pid {holder.pid} ("
        )
        assert "tcp_ready.py --port" in result.stderr
        # it was never spawned: the stale holder is not mistaken for the service
        assert stack.status()["redis"]["pid"] is None
        assert "start #" not in stack.log("redis")
    finally:
        holder.terminate()
        holder.wait()


def test_a_term_ignoring_service_is_killed_after_its_stop_timeout(stack: Stack) -> None:
    stack.write(
        {
            "stubborn": {
                "command": python_service("ignore_term"),
                "ready": {"type": "log", "pattern": "^ready$"},
                "stop": {"timeout": "500ms"},
            }
        }
    )
    stack.ok("up")
    pid = stack.status()["stubborn"]["pid"]
    started = time.monotonic()
    out = stack.ok("down")
    took = time.monotonic() - started
    assert ("stubborn", "stopped", "killed after 0.5s (did not stop on SIGTERM)") in events(out)
    assert took >= 0.5
    assert gone(pid)
    assert "ignoring SIGTERM" in stack.log("stubborn")


def test_down_leaves_no_grandchildren(stack: Stack) -> None:
    pidfile = stack.root / "forker.pids"
    stack.write(
        {
            "forker": {
                "command": python_service("forker", "--children", 3, "--pidfile", pidfile),
                "ready": {"type": "log", "pattern": "^forked"},
            }
        }
    )
    stack.ok("up")
    pids = read_pids(pidfile)
    assert len(pids) == 4 and not any(gone(pid) for pid in pids)
    stack.ok("down")
    assert all(gone(pid) for pid in pids)


def test_a_reused_pid_is_never_signalled(stack: Stack) -> None:
    port = free_port()
    stack.write({"db": tcp_service(port)})
    foreign = subprocess.Popen(["/bin/sleep", "300"], env=service_env(), start_new_session=True)
    try:
        real = psutil.Process(foreign.pid).create_time()
        stack.state_dir.mkdir(mode=0o700)
        record = {
            "name": "db",
            "state": "ready",
            "pid": foreign.pid,
            "pgid": foreign.pid,
            "create_time": real - 1000.0,  # the pid belonged to another process back then
            "started_at": time.time() - 1000.0,
            "ready_at": time.time() - 999.0,
        }
        (stack.state_dir / "state.json").write_text(
            json.dumps({"version": 1, "services": [record]})
        )
        row = stack.status()["db"]
        assert row["pid"] is None and row["state"] == "exited(?)"
        assert "nothing to do" in stack.ok("down")
        assert foreign.poll() is None

        stack.ok("up")  # adopts nothing, starts a new db
        new_pid = stack.status()["db"]["pid"]
        assert new_pid != foreign.pid and port_open(port)
        stack.ok("down")
        assert gone(new_pid)
        assert foreign.poll() is None
    finally:
        foreign.kill()
        foreign.wait()


def test_two_concurrent_ups_start_each_service_once(stack: Stack) -> None:
    db, web = free_port(), free_port()
    stack.write({"db": tcp_service(db, 0.3), "web": tcp_service(web, depends_on=["db"])})
    ups = [stack.popen("up") for _ in range(2)]
    outputs = [up.communicate(timeout=60)[0] for up in ups]
    assert [up.returncode for up in ups] == [0, 0], outputs
    for name in ("db", "web"):
        assert stack.log(name).count(f"--- svcorch: {name} start #") == 1
    assert stack.daemon_log().count("listening on") == 1
    assert all(row["state"] == "ready" for row in stack.status().values())


def test_a_stopped_daemon_is_started_again_by_the_next_up(stack: Stack) -> None:
    # down then up at once: the old daemon may still be exiting when the new one starts
    port = free_port()
    stack.write({"db": tcp_service(port)})
    for _ in range(3):
        stack.ok("up")
        stack.ok("down")
    assert not port_open(port)


def test_sigterm_to_the_daemon_stops_everything(stack: Stack) -> None:
    db, web = free_port(), free_port()
    stack.write({"db": tcp_service(db), "web": tcp_service(web, depends_on=["db"])})
    stack.ok("up")
    pids = [row["pid"] for row in stack.status().values()]
    daemon = stack.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGTERM)
    wait_until(lambda: stack.daemon_pid() is None, timeout=15, message="the daemon to exit")
    assert all(gone(pid) for pid in pids)
    assert "got SIGTERM: stopping everything" in stack.daemon_log()
    assert {row["state"] for row in stack.status().values()} == {"stopped"}


def test_down_of_one_service_stops_what_depends_on_it_only(stack: Stack) -> None:
    ports = {name: free_port() for name in ("db", "web", "cache")}
    stack.write(
        {
            "db": tcp_service(ports["db"]),
            "web": tcp_service(ports["web"], depends_on=["db"]),
            "cache": tcp_service(ports["cache"]),
        }
    )
    stack.ok("up")
    out = stack.ok("down", "db")
    assert "2 stopped" in out
    status = stack.status()
    assert status["db"]["state"] == status["web"]["state"] == "stopped"
    assert status["cache"]["state"] == "ready" and port_open(ports["cache"])
    assert stack.daemon_pid() is not None  # something still runs: the daemon stays


def test_a_bad_catalogue_or_unknown_service_is_reported_and_leaves_no_daemon(
    stack: Stack,
) -> None:
    stack.write({"db": tcp_service(free_port())})
    result = stack.run("up", "dbb")
    assert result.returncode == 2
    assert result.stderr == "svcorch: unknown service 'dbb' (did you mean 'db'?)\n"
    wait_until(lambda: stack.daemon_pid() is None, timeout=5, message="no daemon")

    stack.write({"db": {"command": "true", "depends_on": ["nope"], "ready": {"type": "tcpp"}}})
    result = stack.run("up")
    assert result.returncode == 2
    problems = result.stderr.splitlines()
    assert len(problems) == 2, problems
    # the same located lines `validate` prints, the file spelled as it was given
    assert result.stderr == stack.run("validate").stderr
    assert all(line.startswith(f"{stack.file}:") for line in problems)
    wait_until(lambda: stack.daemon_pid() is None, timeout=5, message="no daemon")
