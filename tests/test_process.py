"""The process layer against real processes: sessions, logs, group stops, identity, ports."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from svcorch import identity, process
from svcorch.errors import PortInUse, ProcessError, StaleRecord
from svcorch.process import ProcessRecord, StopOutcome
from tests.support import free_port, port_open, wait_until
from tests.support.procs import gone, python_service, read_pids, service_env


def log_has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Popens a test spawned; whatever the test did not stop is stopped and reaped here."""
    popens: list[subprocess.Popen[bytes]] = []
    yield popens
    for popen in popens:
        if popen.poll() is None:
            record = ProcessRecord(popen.pid, popen.pid, psutil.Process(popen.pid).create_time())
            process.stop_run(record, sig=signal.SIGKILL, timeout=5, reap=popen.poll)


def start(
    popens: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    name: str,
    *args: object,
    run: identity.Run | None = None,
) -> subprocess.Popen[bytes]:
    popen = process.spawn(
        python_service(name, *args),
        cwd=tmp_path,
        env=service_env(),
        log_path=tmp_path / "logs" / f"{name}.log",
        run=run,
    )
    popens.append(popen)
    return popen


# --- spawn ---------------------------------------------------------------------------------


def test_spawn_starts_a_session_leader_with_output_in_the_log(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "logs" / "deep" / "web.log"  # parent dirs are created
    popen = process.spawn(
        python_service("ready_line", "--line", "listening now"),
        cwd=tmp_path,
        env=service_env(SVCORCH_TEST_VALUE="from-env"),
        log_path=log,
        header="=== svcorch: starting web ===",
        service="web",
    )
    started.append(popen)
    wait_until(lambda: log_has(log, "listening now"), timeout=10, message="the ready line")

    assert os.getpgid(popen.pid) == popen.pid
    assert os.getsid(popen.pid) == popen.pid
    lines = log.read_text().splitlines()
    assert lines[0] == "=== svcorch: starting web ==="
    assert {"booting", "noise: loading modules", "listening now"} <= set(lines[1:])
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert os.readlink(f"/proc/{popen.pid}/fd/0") == "/dev/null"
    # stdout and stderr share the log, opened O_APPEND so a truncation leaves no hole
    assert os.readlink(f"/proc/{popen.pid}/fd/1") == str(log)
    assert os.readlink(f"/proc/{popen.pid}/fd/2") == str(log)
    flags = Path(f"/proc/{popen.pid}/fdinfo/1").read_text().split("flags:")[1].split()[0]
    assert int(flags, 8) & os.O_APPEND
    assert psutil.Process(popen.pid).environ()["SVCORCH_TEST_VALUE"] == "from-env"
    # nothing of ours beyond 0-2 leaks into the child (close_fds)
    assert sorted(int(fd) for fd in os.listdir(f"/proc/{popen.pid}/fd")) == [0, 1, 2]


def test_spawn_appends_to_an_existing_log(tmp_path: Path) -> None:
    log = tmp_path / "exit.log"
    log.write_text("previous run\n")
    popen = process.spawn(
        python_service("exit_with", 3),
        cwd=tmp_path,
        env=service_env(),
        log_path=log,
        header="--- again ---",
    )
    assert popen.wait(timeout=10) == 3
    assert log.read_text().splitlines() == ["previous run", "--- again ---", "exiting with 3"]


@pytest.mark.parametrize(
    ("argv", "cwd_name", "expected"),
    [
        (
            ["no-such-gunicorn-xyz", "app:main"],
            ".",
            "cannot start 'web': [Errno 2] No such file or directory: 'no-such-gunicorn-xyz'",
        ),
        (["./not-executable.sh"], ".", "cannot start 'web': [Errno 13] Permission denied"),
        (["true"], "missing-dir", "cannot start 'web': working directory "),
        ([], ".", "cannot start 'web': the command is empty"),
    ],
)
def test_spawn_failure_is_one_process_error_line(
    tmp_path: Path, argv: list[str], cwd_name: str, expected: str
) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(ProcessError) as caught:
        process.spawn(
            argv,
            cwd=tmp_path / cwd_name,
            env=service_env(),
            log_path=tmp_path / "web.log",
            service="web",
        )
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message


# --- stopping ------------------------------------------------------------------------------


def test_stop_group_stops_a_clean_service_with_sigterm(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    popen = start(started, tmp_path, "tcp_ready", "--port", port)
    wait_until(lambda: port_open(port), timeout=10, message=f"port {port}")
    record = process.record_of(popen)
    assert record == ProcessRecord(popen.pid, popen.pid, record.create_time)
    assert process.group_alive(record.pgid)

    outcome = process.stop_run(record, timeout=5, reap=popen.poll)

    assert outcome.signalled
    assert not outcome.escalated
    assert outcome.killed == ()
    assert 0 <= outcome.elapsed < 5
    assert popen.returncode == 0  # it handled SIGTERM, nothing was killed
    assert not process.group_alive(record.pgid)
    assert not port_open(port)
    # stopping again finds nothing to signal
    assert process.stop_run(record, timeout=1) == StopOutcome(False, False, 0.0)


def test_stop_group_escalates_to_sigkill_at_the_deadline(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "logs" / "ignore_term.log"
    popen = start(started, tmp_path, "ignore_term")
    wait_until(lambda: log_has(log, "ready"), timeout=10, message="the SIGTERM handler")
    record = process.record_of(popen)
    warned: list[list[int]] = []

    outcome = process.stop_run(
        record,
        timeout=0.3,
        reap=popen.poll,
        on_escalate=lambda survivors: warned.append(list(survivors)),
    )

    assert outcome.signalled
    assert outcome.escalated
    assert outcome.killed == (popen.pid,)
    assert warned == [[popen.pid]]
    assert outcome.elapsed >= 0.3
    assert popen.returncode == -signal.SIGKILL
    assert "ignoring SIGTERM" in log.read_text()
    assert not process.group_alive(record.pgid)


def test_stop_group_takes_the_grandchildren_with_it(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    pidfile = tmp_path / "pids"
    popen = start(started, tmp_path, "forker", "--children", 3, "--pidfile", pidfile)
    pids = wait_until(lambda: read_pids(pidfile), timeout=10, message="forker's pidfile")
    assert isinstance(pids, list)
    assert len(pids) == 4
    record = process.record_of(popen)
    assert process.run_members(record) == sorted(pids)

    outcome = process.stop_run(record, timeout=5, reap=popen.poll)

    assert not outcome.escalated
    assert all(gone(pid) for pid in pids)
    assert process.run_members(record) == []


def test_signal_run_reaches_grandchildren_that_outlived_the_leader(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    pidfile = tmp_path / "pids"
    run = identity.Run(identity.new_marker(tmp_path, "forker"))
    popen = start(started, tmp_path, "forker", "--children", 2, "--pidfile", pidfile, run=run)
    wait_until(lambda: read_pids(pidfile), timeout=10, message="forker's pidfile")
    grandchildren = read_pids(pidfile)[1:]
    record = process.record_of(popen, run)
    os.kill(popen.pid, signal.SIGKILL)  # the leader alone, as a crash would
    popen.wait(timeout=5)
    assert not any(gone(pid) for pid in grandchildren)
    assert not process.is_same_process(record)
    # without the run's identity nothing proves the orphans ours: they are left alone
    legacy = ProcessRecord(record.pid, record.pgid, record.create_time)
    assert process.run_members(legacy) == []
    assert not process.signal_run(legacy, signal.SIGTERM)

    assert process.signal_run(record, signal.SIGTERM)

    wait_until(lambda: all(gone(pid) for pid in grandchildren), timeout=5, message="orphans")
    assert not process.signal_run(record, signal.SIGTERM)


# --- identity ------------------------------------------------------------------------------


def test_a_record_with_another_create_time_is_never_signalled(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "logs" / "ready_line.log"
    popen = start(started, tmp_path, "ready_line", "--line", "up")
    wait_until(lambda: log_has(log, "up"), timeout=10, message="the ready line")
    record = process.record_of(popen)
    # the same pid, but as if it had been recorded for a process started earlier
    reused = dataclasses.replace(record, create_time=record.create_time - 50)

    assert process.is_same_process(record)
    assert not process.is_same_process(reused)
    process.verify(record)
    with pytest.raises(StaleRecord, match=rf"pid {popen.pid} now belongs to another process"):
        process.verify(reused)
    with pytest.raises(StaleRecord, match=str(popen.pid)):
        process.signal_run(reused, signal.SIGTERM)
    with pytest.raises(StaleRecord):
        process.stop_run(reused, timeout=1, reap=popen.poll)

    assert popen.poll() is None  # no signal reached it
    assert process.is_same_process(record)
    # members older than the recorded leader cannot be in a group that leader started
    later = dataclasses.replace(record, create_time=record.create_time + 50)
    assert process.run_members(later) == []


def test_an_exited_process_is_not_the_same_process(tmp_path: Path) -> None:
    popen = process.spawn(
        python_service("exit_with", 0), cwd=tmp_path, env=service_env(), log_path=tmp_path / "l"
    )
    record = process.record_of(popen)
    wait_until(lambda: gone(popen.pid), timeout=10, message="exit")
    assert not process.is_same_process(record)  # a zombie, not yet reaped
    assert process.group_alive(record.pgid)  # the zombie leader keeps its group
    assert process.run_members(record) == []
    with pytest.raises(StaleRecord, match="is no longer running"):
        process.verify(record)
    assert popen.wait(timeout=5) == 0
    assert not process.group_alive(record.pgid)


def test_never_signals_init_or_our_own_group() -> None:
    # signal 0 only checks, so even a broken guard could not hurt the test run
    with pytest.raises(ProcessError, match="refusing"):
        process.signal_run(ProcessRecord(1, 1, 0.0), 0)
    own = os.getpgrp()
    with pytest.raises(ProcessError, match="refusing"):
        # the guard looks at the group alone: our group's leader may be gone (CI's shell)
        process.signal_run(ProcessRecord(own, own, 0.0), 0)
    assert not process.group_alive(0)
    assert not process.group_alive(1)


def test_process_record_round_trips_and_rejects_bad_fields() -> None:
    record = ProcessRecord(pid=4321, pgid=4321, create_time=1700000000.25)
    assert ProcessRecord.from_dict(record.to_dict()) == record
    assert ProcessRecord.from_dict({"pid": 1, "pgid": 1, "create_time": 5}).create_time == 5.0
    for bad in ({"pid": True, "pgid": 1, "create_time": 1.0}, {"pid": 1, "create_time": 1.0}):
        with pytest.raises(ValueError, match="process record"):
            ProcessRecord.from_dict(bad)


# --- reaping -------------------------------------------------------------------------------


def test_pidfd_is_readable_when_the_child_exits_and_reap_gives_its_code(tmp_path: Path) -> None:
    popen = process.spawn(
        python_service("exit_with", 7, "--after", 0.2),
        cwd=tmp_path,
        env=service_env(),
        log_path=tmp_path / "exit.log",
    )
    pidfd = process.open_pidfd(popen.pid)
    assert pidfd is not None
    assert process.reap_nonblocking(popen.pid) is None  # still running

    async def exited() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(pidfd, done.set_result, None)
        try:
            await asyncio.wait_for(done, timeout=10)
        finally:
            loop.remove_reader(pidfd)

    try:
        asyncio.run(exited())
    finally:
        os.close(pidfd)
    assert process.reap_nonblocking(popen.pid) == 7
    popen.returncode = 7  # reaped by us: keep Popen from trying again
    assert process.reap_nonblocking(popen.pid) is None  # already reaped
    assert process.reap_nonblocking(1) is None  # not our child


def test_reap_reports_a_signal_as_a_negative_code(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "logs" / "ready_line.log"
    popen = start(started, tmp_path, "ready_line", "--line", "up")
    wait_until(lambda: log_has(log, "up"), timeout=10, message="the ready line")
    os.killpg(popen.pid, signal.SIGKILL)
    code = wait_until(lambda: process.reap_nonblocking(popen.pid), timeout=5, message="reap")
    popen.returncode = -9
    assert code == -signal.SIGKILL


# --- ports ---------------------------------------------------------------------------------


def test_check_ports_free_names_the_holder(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    popen = start(started, tmp_path, "tcp_ready", "--port", port)
    wait_until(lambda: port_open(port), timeout=10, message=f"port {port}")

    holders = process.port_holders(port)
    assert [pid for pid, _ in holders] == [popen.pid]
    assert f"tcp_ready.py --port {port}" in holders[0][1]
    with pytest.raises(PortInUse) as caught:
        process.check_ports_free("redis", [free_port(), port])
    message = str(caught.value)
    assert message.startswith(f"service 'redis': port {port} is in use by pid {popen.pid} (")
    assert "tcp_ready.py" in message
    assert "\n" not in message

    # the probe's connection leaves the server side in TIME_WAIT once the service closes it
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.recv(1)
    process.stop_run(process.record_of(popen), timeout=5, reap=popen.poll)
    assert process.port_holders(port) == []
    assert any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT
        for c in psutil.net_connections(kind="tcp")
    )
    process.check_ports_free("redis", [port])  # TIME_WAIT must not block a restart


def test_check_ports_free_says_in_use_when_the_holder_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(psutil, "net_connections", lambda kind="inet": [])
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(PortInUse, match=rf"^service 'db': port {port} is in use$"):
            process.check_ports_free("db", [port])
    process.check_ports_free("db", [])


# --- die_with_parent -----------------------------------------------------------------------

INTERMEDIATE = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from svcorch import identity, process
    child = process.spawn(
        sys.argv[3:], cwd=Path.cwd(), env=dict(os.environ),
        log_path=Path(sys.argv[1]), die_with_parent=sys.argv[2] == "yes",
    )
    print(child.pid, flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("die_with_parent", [True, False])
def test_die_with_parent_ends_the_child_when_its_parent_is_killed(
    tmp_path: Path, die_with_parent: bool
) -> None:
    log = tmp_path / "child.log"
    argv = python_service("ready_line", "--line", "child up")
    flag = "yes" if die_with_parent else "no"
    with subprocess.Popen(
        [sys.executable, "-c", INTERMEDIATE, str(log), flag, *argv],
        cwd=tmp_path,
        env=service_env(),
        stdout=subprocess.PIPE,
    ) as intermediate:
        assert intermediate.stdout is not None
        child = int(intermediate.stdout.readline())
        wait_until(lambda: log_has(log, "child up"), timeout=10, message="the child")
        record = process.record_of(child)
        intermediate.kill()  # SIGKILL: no chance to clean up after itself
        intermediate.wait(timeout=5)

    if die_with_parent:
        wait_until(lambda: gone(child), timeout=5, message="the orphan to get SIGTERM")
    else:
        # the daemon's mode: services outlive it, to be adopted later
        assert process.is_same_process(record)
        assert process.stop_run(record, timeout=5).signalled
    assert gone(child)
