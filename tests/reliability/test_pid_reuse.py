"""Process identity under hostile conditions: a reused pid and group, escaped grandchildren,
kill -9 loops on a service and on the daemon, a lost state file.

Each test runs under both identity mechanisms (see conftest). Bystanders ("decoys") note
every catchable signal they get; a decoy that is gone, or noted a signal, was signalled.
The figures in docs/reliability.md ("Process identity") come from this file:

    .venv/bin/pytest tests/reliability/test_pid_reuse.py -q -s -p no:cacheprovider

prints one `identity:` line per test and a total.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from svcorch import identity, process
from tests.runtime.conftest import Stack
from tests.support import wait_until
from tests.support.procs import gone, python_service, service_env

KILL_LOOPS = 8  # kill -9 of a service, per mechanism
DAEMON_KILLS = 2  # kill -9 of the daemon, per mechanism (each costs a daemon start)
NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


# --- figures -------------------------------------------------------------------------------


@dataclass
class Figures:
    trials: int = 0
    unrelated_signalled: int = 0
    escaped_after_down: int = 0
    worst_down: float = 0.0
    lines: list[str] = field(default_factory=list)


TOTAL = Figures()


@pytest.fixture(scope="module", autouse=True)
def total() -> Iterator[Figures]:
    yield TOTAL
    print(
        f"\nidentity: total: {TOTAL.trials} trials, {TOTAL.unrelated_signalled} unrelated"
        f" processes signalled, {TOTAL.escaped_after_down} escaped descendants alive after"
        f" down, worst down {TOTAL.worst_down:.2f}s"
    )


def note(name: str, trials: int, decoys: list[Decoy], escaped: list[int], down: float) -> None:
    """Add one test's figures to the total and assert its promises: 0 and 0."""
    signalled = [decoy for decoy in decoys if decoy.signalled()]
    alive = [pid for pid in escaped if not gone(pid)]
    TOTAL.trials += trials
    TOTAL.unrelated_signalled += len(signalled)
    TOTAL.escaped_after_down += len(alive)
    TOTAL.worst_down = max(TOTAL.worst_down, down)
    print(
        f"\nidentity: {name}: {trials} trials, {len(signalled)} unrelated signalled,"
        f" {len(alive)} escaped alive after down, down {down:.2f}s"
    )
    assert not signalled, [decoy.describe() for decoy in signalled]
    assert not alive, f"escaped descendants alive after down: {alive}"


# --- helpers -------------------------------------------------------------------------------


class Decoy:
    """An unrelated process that notes the signals it gets."""

    def __init__(self, popen: subprocess.Popen[bytes], record: Path) -> None:
        self.popen = popen
        self.record = record
        wait_until(lambda: "ready" in self._lines(), timeout=10, message="the decoy's handlers")

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _lines(self) -> list[str]:
        try:
            return self.record.read_text().split()
        except FileNotFoundError:
            return []

    def signalled(self) -> bool:
        if self.popen.poll() is not None:
            return True  # gone: SIGKILL (or a signal it could not catch)
        if psutil.Process(self.pid).status() == psutil.STATUS_STOPPED:
            return True
        return self._lines() != ["ready"]

    def describe(self) -> str:
        return f"decoy {self.pid}: exit {self.popen.poll()}, noted {self._lines()}"

    def end(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)


def decoy(root: Path, pid: int | None = None) -> Decoy:
    """Start a decoy in a session of its own (so its pid is its process group's number too),
    at ``pid`` if given: the number a dead service leader had."""
    record = root / f"decoy-{time.monotonic_ns()}.signals"
    argv = python_service("decoy", "--record", record)
    popen = spawn_at(pid, argv) if pid is not None else _popen(argv)
    return Decoy(popen, record)


def _popen(argv: list[str]) -> subprocess.Popen[bytes]:
    # service_env: the test run's leak marker, none of svcorch's
    return subprocess.Popen(argv, env=service_env(), start_new_session=True)


def spawn_at(pid: int, argv: list[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` with pid ``pid``, by setting the kernel's last handed-out pid just
    below it (``/proc/sys/kernel/ns_last_pid``, root only). Another process on the machine
    may take the number first: then try again."""
    if not os.access(NS_LAST_PID, os.W_OK):
        pytest.skip("cannot write /proc/sys/kernel/ns_last_pid (not root?)")
    # a shell that execs argv keeps its pid; a miss costs a shell, not a Python start
    via_shell = ["/bin/sh", "-c", 'exec "$@"', "sh", *argv]
    for _ in range(200):
        NS_LAST_PID.write_text(str(pid - 1))
        popen = _popen(via_shell)
        if popen.pid == pid:
            return popen
        popen.kill()
        popen.wait()
    raise AssertionError(f"could not get pid {pid} back in 200 tries")


def escaper(stack: Stack, name: str, **spec: Any) -> dict[str, Any]:
    """A service whose grandchild setsid()s out of its group; ready once it has."""
    pidfile = stack.root / f"{name}.pids"
    return {
        "command": python_service("escaper", "--pidfile", pidfile),
        "ready": {"type": "log", "pattern": "^escaped", "timeout": "10s", "period": "20ms"},
        **spec,
    }


def escaper_pids(stack: Stack, name: str) -> tuple[int, int]:
    """(leader, grandchild) of the service's current run."""
    text = (stack.root / f"{name}.pids").read_text().split()
    return int(text[0]), int(text[1])


def leader(stack: Stack, name: str) -> int | None:
    """The pid state.json records for a ready ``name``, else None."""
    try:
        record = stack.records().get(name) or {}
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return record.get("pid") if record.get("state") == "ready" else None


def kill_daemon(stack: Stack) -> None:
    daemon = stack.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: gone(daemon), timeout=5, message="the daemon gone")
    wait_until(lambda: stack.daemon_pid() is None, timeout=5, message="no daemon")


def kill_leader(pid: int) -> None:
    """SIGKILL a service leader no daemon watches and wait until its pid is free (init
    reaps it), so the number can be handed out again."""
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(pid), timeout=10, message=f"pid {pid} freed")


def timed_down(stack: Stack, *args: str) -> tuple[float, str]:
    began = time.monotonic()
    out = stack.ok("down", *args)
    return time.monotonic() - began, out


def ours(stack: Stack) -> dict[identity.Run, set[int]]:
    """Every process that carries this state dir's identity."""
    return identity.find_runs(stack.state_dir)


@contextlib.contextmanager
def decoys_ended(decoys: list[Decoy]) -> Iterator[list[Decoy]]:
    try:
        yield decoys
    finally:
        for one in decoys:
            one.end()


# --- the tests -----------------------------------------------------------------------------


def test_down_never_signals_a_process_that_reused_the_leaders_pid_and_group(
    stack: Stack, mechanism: str
) -> None:
    stack.write({"svc": escaper(stack, "svc")})
    stack.ok("up")
    lead, grandchild = escaper_pids(stack, "svc")
    assert os.getpgid(lead) == lead
    kill_daemon(stack)
    kill_leader(lead)
    # the leader's pid, and (setsid) its process group number, now belong to a stranger
    with decoys_ended([decoy(stack.root, pid=lead)]) as decoys:
        stranger = decoys[0]
        assert stranger.pid == lead and os.getpgid(stranger.pid) == lead

        row = stack.status()["svc"]  # no daemon: read from state.json and /proc
        assert row["pid"] is None and row["state"] == "exited(?)"
        assert "1 of its processes remain (down stops them)" in row["detail"]

        took, out = timed_down(stack)
        assert "1 stopped" in out
        # the daemon down started adopted it as exited, with what its run left
        assert "1 of its processes remain (down stops them)" in stack.daemon_log()
        wait_until(lambda: gone(grandchild), timeout=5, message="the grandchild gone")
        assert not stranger.signalled(), stranger.describe()
        assert not ours(stack)
        note(f"{mechanism} forced pid reuse", 1, decoys, [grandchild], took)


def test_kill_9_of_a_service_again_and_again_restarts_it_and_takes_each_runs_orphans(
    stack: Stack, mechanism: str
) -> None:
    restart = {"policy": "always", "backoff": "10ms", "max_backoff": "10ms", "max_restarts": 100}
    stack.write({"svc": escaper(stack, "svc", restart=restart)})
    with decoys_ended([decoy(stack.root) for _ in range(3)]) as decoys:
        stack.ok("up")
        check_identity(stack, mechanism)
        grandchildren = []
        for _ in range(KILL_LOOPS):
            lead, grandchild = escaper_pids(stack, "svc")
            grandchildren.append(grandchild)
            os.kill(lead, signal.SIGKILL)
            # restarted: a new leader is ready, and the last run's orphan is gone with it
            wait_until(
                lambda old=lead: (
                    leader(stack, "svc") not in (None, old)  # type: ignore[misc]
                    and escaper_pids(stack, "svc")[0] == leader(stack, "svc")
                ),
                timeout=15,
                message="the restarted service ready",
            )
            wait_until(lambda g=grandchild: gone(g), timeout=5, message="the old run's orphan")
        assert stack.records()["svc"]["restarts"] >= KILL_LOOPS
        grandchildren.append(escaper_pids(stack, "svc")[1])
        took, _ = timed_down(stack)
        assert not ours(stack)
        if mechanism == "cgroup":
            assert not identity.state_cgroups(stack.state_dir)  # each removed once empty
        note(f"{mechanism} kill -9 service x{KILL_LOOPS}", KILL_LOOPS, decoys, grandchildren, took)


def check_identity(stack: Stack, mechanism: str) -> None:
    """Leader and escaped grandchild carry the run's marker (and are in its cgroup), and
    status --json names the mechanism; `config` does not show the marker."""
    lead, grandchild = escaper_pids(stack, "svc")
    assert os.getpgid(grandchild) != os.getpgid(lead)  # it left the group
    row = stack.status()["svc"]
    assert row["identity"] == mechanism and row["pid"] == lead
    record = stack.records()["svc"]
    state, service, token = record["run"].split(":")
    assert (state, service) == (identity.state_id(stack.state_dir), "svc") and len(token) == 16
    for pid in (lead, grandchild):
        assert identity.marker_of(pid) == record["run"]
        if mechanism == "cgroup":
            assert record["cgroup"] == f"/svcorch/{state}/svc.{token}"
            assert identity.in_cgroup(pid, record["cgroup"])
        else:
            assert record["cgroup"] is None
    assert identity.MARKER_VARIABLE not in stack.ok("config")


def test_kill_9_of_the_daemon_again_and_again_then_down_leaves_nothing(
    stack: Stack, mechanism: str
) -> None:
    stack.write({"svc": escaper(stack, "svc"), "other": escaper(stack, "other")})
    grandchildren: list[int] = []
    decoys = []
    with decoys_ended(decoys):
        stack.ok("up")
        for round_ in range(DAEMON_KILLS):
            grandchildren.append(escaper_pids(stack, "svc")[1])
            grandchildren.append(escaper_pids(stack, "other")[1])
            kill_daemon(stack)
            if round_ % 2 == 1:
                # its leader dies too while no daemon watches; a stranger takes its pid
                lead = escaper_pids(stack, "svc")[0]
                kill_leader(lead)
                decoys.append(decoy(stack.root, pid=lead))
            out = stack.ok("up")  # a new daemon adopts what lives, starts what does not
            assert stack.daemon_pid() is not None
            if round_ % 2 == 1:
                assert "1 ready" in out  # svc started again; other adopted
                assert escaper_pids(stack, "svc")[0] != lead
                # the start took what the dead leader's run left first
                assert gone(grandchildren[-2])
        grandchildren.append(escaper_pids(stack, "svc")[1])
        kill_daemon(stack)  # and down finds no daemon at all
        took, _ = timed_down(stack)
        assert not ours(stack)
        note(
            f"{mechanism} kill -9 daemon x{DAEMON_KILLS}", DAEMON_KILLS, decoys, grandchildren, took
        )


@pytest.mark.parametrize(
    ("mechanism", "damage"),
    [("cgroup", "garbage"), ("environ", "missing"), ("cgroup", "forgotten")],
    indirect=["mechanism"],
)
def test_services_are_found_by_identity_when_the_state_file_is_lost(
    stack: Stack, mechanism: str, damage: str
) -> None:
    services = {"svc": escaper(stack, "svc"), "other": escaper(stack, "other")}
    stack.write(services)
    with decoys_ended([decoy(stack.root)]) as decoys:
        stack.ok("up")
        pids = [*escaper_pids(stack, "svc"), *escaper_pids(stack, "other")]
        kill_daemon(stack)
        state_file = stack.state_dir / "state.json"
        if damage == "garbage":
            state_file.write_text('{"services": [{"name": "svc", "pi')
        elif damage == "missing":
            state_file.unlink()
        else:
            # a readable file that names neither run, and a catalogue without "other"
            state_file.write_text(json.dumps({"version": 1, "services": []}))
            stack.write({"svc": services["svc"]})
        # from the token alone: the runs this state dir's marker names, and what they forked
        found = {run.service: pids for run, pids in ours(stack).items()}
        assert sorted(found) == ["other", "svc"]
        assert sorted(found["svc"] | found["other"]) == sorted(pids)
        records = [process.ProcessRecord.of_run(run) for run in ours(stack)]
        assert sorted(pid for r in records for pid in process.run_members(r)) == sorted(pids)

        if damage == "garbage":
            # set aside; what it lost is found again by identity, its leader unknown
            result = stack.run("status", "--json")
            assert result.returncode == 0, result.stderr
            assert "found other, svc running by their run identity" in result.stderr
            rows = {row["service"]: row for row in json.loads(result.stdout)}
            assert rows["svc"]["detail"] == (
                "found again by its run identity; its leader is unknown;"
                " 2 of its processes remain (down stops them)"
            )
            assert rows["svc"]["identity"] == mechanism
        if damage in ("garbage", "forgotten"):
            # an up stops what runs of svc before it starts svc anew
            stack.ok("up", "svc")
            assert all(gone(pid) for pid in pids[:2])
            pids.append(escaper_pids(stack, "svc")[1])
        began = time.monotonic()
        out = stack.ok("down")
        took = time.monotonic() - began
        if damage == "forgotten":
            # the run no record named was stopped before svc started; a down of everything
            # also stops the runs of a service the catalogue no longer has
            assert "earlier run of svc" in stack.daemon_log()
            assert "earlier run of other" in stack.daemon_log()
            assert "1 stopped" in out
        else:
            assert "2 stopped" in out
        assert not ours(stack)
        note(f"{mechanism} state file {damage}", 1, decoys, pids, took)
