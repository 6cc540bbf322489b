"""Claims of docs/control.md and docs/cli.md about what survives what, held by real processes:
a down after the daemon died stops the group a dead leader left; a foreground up killed -9
takes its services' grandchildren with it; status without a daemon probes external services;
check --wait refuses a selection with nothing to wait for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import yaml

from tests.runtime.conftest import Stack
from tests.support import free_port, silent_tcp_server, wait_until
from tests.support.procs import TCP_READY, gone, python_service, read_pids


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
    assert "2 of its processes remain (down stops them)" in row["detail"]
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


def test_the_name_default_is_the_same_in_graph_dot_json_and_config(stack: Stack) -> None:
    stack.write({"web": {"command": ["true"]}})
    path = str(stack.file)
    assert stack.ok("graph").splitlines()[0] == path
    assert stack.ok("graph", "--dot").splitlines()[0] == f'digraph "{path}" {{'
    assert json.loads(stack.ok("graph", "--json"))["name"] == path
    assert yaml.safe_load(stack.ok("config"))["name"] == path


def test_a_completed_condition_is_reported_with_an_unknown_key(stack: Stack) -> None:
    """All problems at once, across the loader's stages."""
    stack.write(
        {
            "db": {"command": ["true"], "colour": "blue"},
            "web": {"command": ["true"], "depends_on": {"db": "completed"}},
        }
    )
    result = stack.run("validate")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert any("unknown key 'colour'" in line for line in lines), lines
    assert any("condition 'completed' needs a oneshot" in line for line in lines), lines


def _recovery_snippet() -> str:
    """The shell lines docs/operations.md gives for a corrupt state file, as written there."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    section = text[text.index("### A corrupt state file") :]
    block = section[section.index("```sh\n") + len("```sh\n") :]
    lines = block[: block.index("```")].splitlines()
    # `cd /srv/app` is the reader's folder; `svcorch up` is the reader's next step
    return "\n".join(line for line in lines if not line.startswith(("cd ", "svcorch ")))


def test_after_a_corrupt_state_file_the_documented_snippet_stops_the_untracked(
    stack: Stack,
) -> None:
    stack.write({"forker": _forker(stack)})
    stack.ok("up")
    pids = read_pids(stack.root / "forker.pids")
    daemon = stack.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: gone(daemon), message="the daemon gone")
    (stack.state_dir / "state.json").write_text('{"version": 1, "servi')
    result = stack.run("status")
    assert result.returncode == 0, result.stderr
    # found again by their run identity (reliability.md, "Process identity"); the snippet
    # stays the hand-held way for services an older svcorch started, without that identity
    assert "found forker running by their run identity" in result.stderr
    assert not any(gone(pid) for pid in pids)  # svcorch acts on nothing it cannot trust

    # the docs' snippet, with the state dir where this test keeps it
    script = _recovery_snippet().replace("$PWD/.svcorch", str(stack.state_dir))
    script = script.replace(".svcorch/state.json", str(stack.state_dir / "state.json"))
    subprocess.run(["bash", "-c", script], cwd=stack.root, check=True, timeout=30)
    wait_until(lambda: all(gone(pid) for pid in pids), message="the old services stopped")
    stack.ok("up")
    assert stack.status()["forker"]["state"] == "ready"


def test_up_applies_a_changed_command_and_names_it(stack: Stack) -> None:
    def spec(delay: str) -> dict[str, object]:
        return {
            "command": [sys.executable, str(TCP_READY), "--port", "0", "--delay", delay],
            "ready": {"type": "log", "pattern": "^ready on"},
        }

    stack.write({"web": spec("0")})
    stack.ok("up")
    before = stack.status()["web"]["pid"]
    stack.write({"web": spec("0.1")})
    stack.ok("restart", "web")
    assert psutil_cmdline(stack.status()["web"]["pid"])[-1] == "0"  # restart keeps the snapshot
    planned = stack.ok("up", "--dry-run")
    assert "recreate web: command" in planned and "→" in planned
    out = stack.ok("up")
    assert "recreate web: command" in out
    after = stack.status()["web"]["pid"]
    assert gone(before) and psutil_cmdline(after)[-1] == "0.1"


def psutil_cmdline(pid: int) -> list[str]:
    return psutil.Process(pid).cmdline()
