"""Suite-wide guard: a test that leaves a process behind fails, naming the process."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

import psutil
import pytest

RUN_MARKER = "SVCORCH_TEST_RUN"
LEAK_GRACE = 3.0  # seconds a just-stopped process gets to finish exiting


def pytest_configure(config: pytest.Config) -> None:
    # A fresh token per run (and per xdist worker): only processes of this run carry it.
    os.environ[RUN_MARKER] = secrets.token_hex(8)


Identity = tuple[int, float]


def _identity(proc: psutil.Process) -> Identity | None:
    try:
        return (proc.pid, proc.create_time())
    except psutil.NoSuchProcess:
        return None


def _descendants(me: psutil.Process) -> list[psutil.Process]:
    try:
        return me.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _snapshot() -> set[Identity]:
    """Every process on the machine right now; create_time tells a reused pid apart."""
    return {i for proc in psutil.process_iter() if (i := _identity(proc)) is not None}


def _carries_marker(proc: psutil.Process, token: str) -> bool:
    try:
        return proc.environ().get(RUN_MARKER) == token
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _leaks(me: psutil.Process, before: set[Identity]) -> list[psutil.Process]:
    token = os.environ.get(RUN_MARKER, "")
    descendants = {proc.pid for proc in _descendants(me)}
    leaks = []
    for proc in psutil.process_iter():
        identity = _identity(proc)
        if identity is None or identity in before or proc.pid == me.pid:
            continue
        if _is_zombie(proc):
            # ours to reap; an orphaned zombie is init's business and its environ is gone
            if proc.pid in descendants and proc.ppid() == me.pid:
                leaks.append(proc)
        elif proc.pid in descendants or _carries_marker(proc, token):
            leaks.append(proc)
    return leaks


def _describe(proc: psutil.Process) -> str:
    if _is_zombie(proc):
        return f"pid {proc.pid} ({_name(proc)}, a zombie: nobody waited for it)"
    try:
        command = " ".join(" ".join(proc.cmdline()).split()) or _name(proc)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        command = _name(proc)
    return f"pid {proc.pid} ({command[:120]})"


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"


def _wait_for_live_leaks(me: psutil.Process, before: set[Identity]) -> list[psutil.Process]:
    """Leaks left once live ones had ``LEAK_GRACE`` to exit (zombies do not go by waiting)."""
    deadline = time.monotonic() + LEAK_GRACE
    delay = 0.005
    while True:
        leaks = _leaks(me, before)
        if all(_is_zombie(proc) for proc in leaks) or time.monotonic() >= deadline:
            return leaks
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _end(leaks: list[psutil.Process]) -> None:
    """SIGKILL each leak by pid (psutil re-checks its identity) and reap our own children."""
    for proc in leaks:
        try:
            if not _is_zombie(proc):
                proc.kill()
        except psutil.NoSuchProcess:
            pass
    # wait() reaps children of ours, zombies included, and polls the others
    psutil.wait_procs(leaks, timeout=LEAK_GRACE)


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Fail a test that leaves a process running, or a child of ours unreaped (no zombies).

    Before the test, note every process on the machine (pid and create_time: one /proc read
    each); after it (this autouse fixture is set up first, so it is torn down after the
    test's other fixtures), every process that is new and still there after up to
    ``LEAK_GRACE`` seconds is a leak if it is:

    - a descendant of the test process; a zombie child of ours counts (nobody waited for it);
    - or any process whose environment holds ``SVCORCH_TEST_RUN=<token>``, the token
      ``pytest_configure`` put in ``os.environ`` for this run. That catches daemons that
      setsid and double-fork away from the test process, so they are nobody's descendant.
      Spawn them with an environment built from ``os.environ`` (see
      ``tests.support.procs.service_env``) or they escape the check.

    Leaks are killed by pid so one leak does not cascade into the next tests. Processes that
    existed before the test (session fixtures, other people's servers) are never judged.
    """
    me = psutil.Process()
    before = _snapshot()
    yield
    leaks = _leaks(me, before)
    if leaks:
        leaks = _wait_for_live_leaks(me, before)
    if leaks:
        described = "; ".join(_describe(proc) for proc in leaks)
        _end(leaks)
        pytest.fail(f"test left {len(leaks)} process(es) behind: {described}", pytrace=False)
