"""Hostile-condition tests: shared fixtures.

``stack`` is the runtime tests' Stack (the installed `svcorch` in a short temp dir), run
under each process identity mechanism this host offers: ``cgroup`` (skipped where no
writable cgroup v2 is mounted) and ``environ`` (``SVCORCH_IDENTITY=environ``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from svcorch import identity
from tests.runtime.conftest import Stack

MECHANISMS = ("cgroup", "environ")


def cgroups_work() -> bool:
    """Whether svcorch can give a run its own cgroup here (root, cgroup v2 writable)."""
    marker = identity.new_marker(Path(tempfile.gettempdir()), "probe")
    path = identity.create_cgroup(marker)
    if path is None:
        return False
    identity.remove_cgroup(path)
    return True


@pytest.fixture(params=MECHANISMS)
def mechanism(request: pytest.FixtureRequest) -> str:
    chosen = str(request.param)
    if chosen == "cgroup" and not cgroups_work():
        pytest.skip("no writable cgroup v2 hierarchy on this host (not root, or read-only)")
    return chosen


@pytest.fixture
def stack(mechanism: str) -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="svr-", dir="/tmp"))
    made = Stack(root)
    made.env[identity.MECHANISM_VARIABLE] = mechanism
    try:
        yield made
    finally:
        # a test that failed half-way: stop what it left (a passing one left nothing)
        if made.file.exists() and (made.daemon_pid() or identity.find_runs(made.state_dir)):
            made.run("down", "--timeout", "2s")
        shutil.rmtree(root, ignore_errors=True)
