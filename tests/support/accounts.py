"""An unprivileged account for tests of ``user:``: made once with ``useradd`` if missing.

The tests run as root (here and in CI); a test that needs the account and cannot have it
(not root, no useradd) is skipped with the reason, never faked.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess

import pytest

TEST_USER = "svcorchtest"


def unprivileged_user() -> pwd.struct_passwd:
    """The account, created idempotently (a system account with no login and no home)."""
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    if os.geteuid() != 0 or not os.path.exists(useradd):
        pytest.skip(f"needs the account {TEST_USER!r}: run as root (useradd) or create it")
    made = subprocess.run(
        [
            useradd,
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            TEST_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode not in (0, 9):  # 9: made meanwhile by a parallel test run
        raise AssertionError(f"useradd {TEST_USER} failed: {made.stderr.strip()}")
    return pwd.getpwnam(TEST_USER)
