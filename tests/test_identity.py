"""Run identity against real processes: markers, cgroups, proof by descent, find_runs."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from svcorch import identity, process
from svcorch.process import ProcessRecord
from tests.support import wait_until
from tests.support.procs import gone, service_env


@pytest.fixture
def runs() -> Iterator[list[tuple[subprocess.Popen[bytes], ProcessRecord]]]:
    """Runs a test started; whatever is left of them is stopped (and reaped) here."""
    started: list[tuple[subprocess.Popen[bytes], ProcessRecord]] = []
    yield started
    for popen, record in started:
        process.stop_run(record, sig=signal.SIGKILL, timeout=5, reap=popen.poll)
        popen.wait(timeout=5)


def start(
    started: list[tuple[subprocess.Popen[bytes], ProcessRecord]],
    state_dir: Path,
    script: str,
    *,
    cgroup: bool = False,
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    marker = identity.new_marker(state_dir, "svc")
    run = identity.Run(marker, identity.create_cgroup(marker) if cgroup else None)
    popen = process.spawn(
        ["/bin/sh", "-c", script],
        cwd=state_dir,
        env=service_env(),
        log_path=state_dir / "svc.log",
        run=run,
    )
    record = process.record_of(popen, run)
    started.append((popen, record))
    return popen, record


def pids_in(path: Path, count: int) -> list[int]:
    wait_until(
        lambda: path.exists() and len(path.read_text().split()) >= count,
        timeout=10,
        message=f"{count} pids in {path.name}",
    )
    return [int(word) for word in path.read_text().split()]


def test_a_worker_that_cleared_its_environment_is_proven_by_descent(
    tmp_path: Path, runs: list[tuple[subprocess.Popen[bytes], ProcessRecord]]
) -> None:
    pids = tmp_path / "pids"
    # a helper leaves the group (setsid) and starts a worker with an empty environment
    inner = f"env -i /bin/sleep 300 & echo $$ $! > {pids}; wait"
    popen, record = start(runs, tmp_path, f"setsid /bin/sh -c '{inner}' & exec /bin/sleep 300")
    helper, worker = pids_in(pids, 2)
    assert identity.marker_of(helper) == record.run
    # env -i: once it execs sleep, the worker has no marker of its own
    wait_until(lambda: identity.marker_of(worker) is None, timeout=5, message="env -i exec")
    os.kill(popen.pid, signal.SIGKILL)  # the leader dies; its group number is free soon
    popen.wait(timeout=5)

    assert process.run_members(record) == sorted([helper, worker])
    assert process.signal_run(record, signal.SIGTERM)
    wait_until(lambda: gone(helper) and gone(worker), timeout=5, message="helper and worker")
    assert process.run_members(record) == []


def test_find_runs_knows_a_state_dirs_runs_from_the_marker_alone(
    tmp_path: Path, runs: list[tuple[subprocess.Popen[bytes], ProcessRecord]]
) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    pids = ours / "pids"
    _, record = start(runs, ours, f"setsid /bin/sleep 300 & echo $! > {pids}; exec /bin/sleep 300")
    escaped = pids_in(pids, 1)[0]
    _, other = start(runs, theirs, "exec /bin/sleep 300")

    found = identity.find_runs(ours)
    assert [run.marker for run in found] == [record.run]
    ((run, members),) = found.items()
    assert run.service == "svc" and members == {record.pid, escaped}
    assert [run.marker for run in identity.find_runs(theirs)] == [other.run]
    assert identity.find_runs(tmp_path) == {}


def test_a_child_enters_its_cgroup_before_it_can_fork_and_sigkill_empties_it(
    tmp_path: Path, runs: list[tuple[subprocess.Popen[bytes], ProcessRecord]]
) -> None:
    if identity.create_cgroup(identity.new_marker(tmp_path, "probe")) is None:
        pytest.skip("no writable cgroup v2 hierarchy on this host")
    identity.prune_cgroups(tmp_path, ())
    pids = tmp_path / "pids"
    # the first thing the child does is fork, and the grandchild leaves the session
    popen, record = start(
        runs,
        tmp_path,
        f"setsid /bin/sh -c 'trap \"\" TERM; echo $$ > {pids}; exec /bin/sleep 300' & "
        "trap '' TERM; exec /bin/sleep 300",
        cgroup=True,
    )
    grandchild = pids_in(pids, 1)[0]
    assert record.cgroup is not None and record.mechanism is identity.Mechanism.CGROUP
    assert identity.in_cgroup(popen.pid, record.cgroup)
    assert identity.in_cgroup(grandchild, record.cgroup)
    assert sorted(identity.cgroup_pids(record.cgroup)) == sorted([popen.pid, grandchild])

    outcome = process.stop_run(record, timeout=0.3, reap=popen.poll)  # both ignore SIGTERM

    assert outcome.escalated and outcome.killed == tuple(sorted([popen.pid, grandchild]))
    assert popen.returncode == -signal.SIGKILL and gone(grandchild)
    assert identity.state_cgroups(tmp_path) == []  # removed once empty
