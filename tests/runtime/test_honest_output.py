"""What up, restart, status and logs say is true: real states, this run's log, counters that
mean what they say, log lines whole at any width. Through the installed command."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.runtime.conftest import Reader, Stack, stop_popen, tcp_service
from tests.support import free_port, port_open, wait_until

BOOT_FAILS = "print('booting'); print('BOOT FAILED: no cookie', flush=True)"  # then exit 0


def _failing_stack(stack: Stack, slow_port: int | None = None) -> None:
    services = {
        "fine": tcp_service(free_port()),
        "rabbit": {  # after fine is ready, so that fine is ready when the up gives up
            "command": [sys.executable, "-c", BOOT_FAILS],
            "ready": {"type": "tcp", "port": free_port()},
            "depends_on": ["fine"],
        },
        "app": tcp_service(free_port(), depends_on=["rabbit", "fine"]),
        "report": tcp_service(free_port(), depends_on=["app"]),
    }
    if slow_port is not None:
        # listens only after 30 s: still starting when the up gives up on rabbit
        services["slow"] = tcp_service(slow_port, 30.0, probe={"timeout": "60s"})
    stack.write(services)


def _state_lines(out: str) -> dict[str, str]:
    """The `each service now:` block of a failed up: service -> state."""
    block = out.split("each service now:\n", 1)[1]
    rows = {}
    for line in block.splitlines():
        match = re.match(r"^  (\S+)\s+(\S+)$", line)
        if not match:
            break
        rows[match[1]] = match[2]
    return rows


def test_a_failed_up_lists_real_states_what_runs_and_how_to_stop_it(stack: Stack) -> None:
    slow = free_port()
    _failing_stack(stack, slow_port=slow)
    result = stack.run("up")
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "rabbit failed: exited with code 0 before ready" in out
    assert "not started (a dependency failed): app, report" in out
    # only what really is still on its way up is called so; blocked ones never are
    assert "still starting (the daemon carries on): slow\n" in out
    assert re.search(r"^up failed after \d+\.\d\ds; each service now:$", out, re.MULTILINE)
    assert _state_lines(out) == {
        "fine": "ready",
        "rabbit": "failed",
        "slow": "starting",
        "app": "blocked",
        "report": "blocked",
    }
    assert out.endswith(
        "still running: fine, slow\n"
        "  `svcorch down` stops everything;"
        " `svcorch up --rollback` stops what a failed up started\n"
    )
    rows = stack.status()
    assert {name: row["state"] for name, row in rows.items()} == _state_lines(out)
    stack.ok("down")
    assert not port_open(slow)


def test_a_failed_up_with_rollback_says_what_it_stopped_and_that_nothing_runs(
    stack: Stack,
) -> None:
    _failing_stack(stack)
    result = stack.run("up", "--rollback")
    assert result.returncode == 1
    out = result.stdout
    assert "still starting" not in out
    assert "stopped by --rollback: fine\n" in out
    assert _state_lines(out) == {
        "fine": "stopped",
        "rabbit": "stopped",
        "app": "stopped",
        "report": "stopped",
    }
    assert out.endswith("nothing is left running\n")
    assert all(row["pid"] is None for row in stack.status().values())


def test_the_log_tail_of_a_failure_is_this_starts_lines_only(stack: Stack) -> None:
    _failing_stack(stack)
    log = stack.state_dir / "logs" / "rabbit.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"OLD RUN line {i}\n" for i in range(30)))
    first = stack.run("up", "rabbit").stdout
    assert "OLD RUN" not in first
    assert "  last 3 lines of its log since this start:\n" in first
    assert "  | --- svcorch: rabbit start #1 at " in first
    assert "  | BOOT FAILED: no cookie\n" in first

    second = stack.run("up", "rabbit").stdout
    assert "start #2" in second and "start #1" not in second
    assert second.count("BOOT FAILED") == 1


def test_restarts_count_since_the_up_and_the_total_is_kept(stack: Stack) -> None:
    stack.write(
        {
            "api": tcp_service(
                free_port(),
                restart={"policy": "always", "backoff": "50ms", "max_backoff": "100ms"},
            )
        }
    )

    def kill_and_wait_restart() -> None:
        pid = stack.status()["api"]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: (row := stack.status()["api"])["state"] == "ready" and row["pid"] != pid,
            timeout=15,
            message="api restarted",
        )

    stack.ok("up")
    kill_and_wait_restart()
    row = stack.status()["api"]
    assert (row["restarts"], row["restarts_total"]) == (1, 1)
    assert re.search(r"^api\s+ready\s+\d+\s+\d+s\s+1\s", stack.ok("status"), re.MULTILINE)

    stack.ok("down")
    stack.ok("up")
    row = stack.status()["api"]
    assert (row["restarts"], row["restarts_total"]) == (0, 1)
    assert re.search(r"^api\s+ready\s+\d+\s+\d+s\s+0\s", stack.ok("status"), re.MULTILINE)
    kill_and_wait_restart()
    row = stack.status()["api"]
    assert (row["restarts"], row["restarts_total"]) == (1, 2)


def test_restart_speaks_only_of_what_it_restarted(stack: Stack) -> None:
    stack.write(
        {
            "db": tcp_service(free_port()),
            "cache": tcp_service(free_port()),
            "web": tcp_service(free_port(), depends_on=["db", "cache"]),
        }
    )
    stack.ok("up")
    out = stack.ok("restart", "web")
    outcome = re.findall(r"^\d+ restarted in .*$", out, re.MULTILINE)
    assert len(outcome) == 1 and re.fullmatch(r"1 restarted in \d+\.\d\ds", outcome[0]), out
    result = json.loads(stack.ok("restart", "web", "--json"))
    assert (result["done"], result["already"], result["dependencies_started"]) == (["web"], [], [])

    # a dependency that was down is started, and said to be started, not restarted
    db_pid = stack.status()["db"]["pid"]
    os.kill(db_pid, signal.SIGKILL)  # policy no: it stays exited, web keeps running
    wait_until(lambda: stack.status()["db"]["state"].startswith("exited"), message="db exited")
    out = stack.ok("restart", "web")
    assert re.search(r"^1 restarted in \d+\.\d\ds \(also started what they need: db\)$", out, re.M)


def test_logs_writes_long_lines_whole_with_their_prefix_whatever_the_width(
    stack: Stack,
) -> None:
    long_line = "x" * 3000 + " END-OF-LONG-LINE"
    script = f"print('short'); print({long_line!r}, flush=True); import time; time.sleep(60)"
    stack.write(
        {
            "chatty": {
                "command": [sys.executable, "-c", script],
                "ready": {"type": "log", "pattern": "END-OF-LONG-LINE"},
            },
            "b": tcp_service(free_port()),
        }
    )
    stack.ok("up")
    for columns in ("40", "200", "1000"):
        stack.env["COLUMNS"] = columns
        out = stack.ok("logs", "chatty", "b")
        assert f"chatty | {long_line}\n" in out, out[:300]
        assert "chatty | short\n" in out
        assert all(re.match(r"^(chatty|b     ) \| ", line) for line in out.splitlines()), out
    # a pipe and grep get the line as one line
    grep = subprocess.run(
        f"{' '.join(stack.argv('logs'))} | grep END-OF-LONG-LINE",
        shell=True,
        capture_output=True,
        text=True,
        env=stack.env,
        cwd=stack.root,
        timeout=30,
        check=True,
    )
    assert grep.stdout == f"chatty | {long_line}\n"

    follower = Reader(stack.popen("logs", "-f", "chatty"))
    try:
        follower.wait_for("END-OF-LONG-LINE")
        assert f"chatty | {long_line}" in follower.lines
    finally:
        stop_popen(follower.popen)


def test_the_follow_polls_as_docs_cli_md_says() -> None:
    # docs/cli.md: "within the same poll, 10 ms while lines come, up to 0.25 s when quiet"
    from svcorch.commands import logs

    assert (logs.POLL_FIRST, logs.POLL_MAX) == (0.01, 0.25)
    assert logs.next_delay(logs.POLL_MAX, got=True) == 0.01
    assert logs.next_delay(0.2, got=False) == 0.25


def test_logs_follow_interleaves_services_by_when_they_wrote(stack: Stack, tmp_path: Path) -> None:
    stack.write({"a": tcp_service(free_port()), "b": tcp_service(free_port())})
    stack.ok("up")
    logs = {name: stack.state_dir / "logs" / f"{name}.log" for name in "ab"}
    follower = Reader(stack.popen("logs", "-f", "-n", "1", "b", "a"))  # b listed first
    clock = tmp_path / "clock"
    try:
        # the last line of each log is printed once the follower holds its positions
        follower.wait_for(r"^a \| ready on \d+$")
        follower.wait_for(r"^b \| ready on \d+$")
        for number in range(5):
            # a writes, then b a clock tick later, both between two polls of a quiet
            # follower: a's line must come first all the same
            _append(logs["a"], f"a-{number}\n")
            _after_a_tick(clock, logs["a"])
            _append(logs["b"], f"b-{number}\n")
            follower.wait_for(rf"^b \| b-{number}$")
            follower.wait_for(rf"^a \| a-{number}$")
        written = [line.split(" | ")[1] for line in follower.lines if re.search(r" \| [ab]-", line)]
        assert written == [f"{who}-{n}" for n in range(5) for who in "ab"]
    finally:
        stop_popen(follower.popen)


def _append(path: Path, text: str) -> None:
    with path.open("a") as log:
        log.write(text)


def _after_a_tick(clock: Path, written: Path) -> None:
    """Return once the file system's clock has moved past ``written``'s last write."""
    mark = written.stat().st_mtime_ns

    def ticked() -> bool:
        clock.write_text("")
        return clock.stat().st_mtime_ns > mark

    wait_until(ticked, timeout=5, message="the file system clock to move")


def test_the_json_outcome_of_a_failed_up_carries_the_same_facts(stack: Stack) -> None:
    _failing_stack(stack)
    result = stack.run("up", "--json")
    assert result.returncode == 1
    outcome = json.loads(result.stdout)
    assert outcome["states"] == {
        "fine": "ready",
        "rabbit": "failed",
        "app": "blocked",
        "report": "blocked",
    }
    assert (outcome["running"], outcome["pending"], outcome["blocked"]) == (
        ["fine"],
        [],
        ["app", "report"],
    )
    assert (outcome["rollback"], outcome["rolled_back"]) == (False, [])
    assert outcome["failed"][0]["log_tail"][-1] == "BOOT FAILED: no cookie"

    rolled = json.loads(stack.run("up", "--rollback", "--json").stdout)
    assert (rolled["rollback"], rolled["rolled_back"], rolled["running"]) == (True, [], ["fine"])
