"""Everything in the state directory is the owner's alone, re-checked on every command.

Through the real `svcorch` command, under the usual umask 022: what svcorch writes is
0600/0700; a state dir loosened to 0755 while the daemon runs is tightened back by the next
command; one that others can write, or that another user owns, is refused in one line with
the fix, as ssh refuses a loose key. docs/reliability.md ("Permissions") quotes the summary
this module prints with `-s`:

    .venv/bin/pytest tests/reliability/test_permissions.py -q -s -p no:cacheprovider
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from svcorch import cli_base
from svcorch.cli import _crash_log
from tests.runtime.conftest import Stack, tcp_service
from tests.support import free_port, wait_until
from tests.support.procs import TCP_READY

STRANGER = 65534  # nobody
TRIALS: list[tuple[str, float]] = []


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    if TRIALS:
        worst_case, worst = max(TRIALS, key=lambda trial: trial[1])
        print(
            f"\npermissions: {len(TRIALS)} trials, {len(TRIALS)} passed, worst command"
            f" {worst:.2f}s ({worst_case})"
        )


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, inherited by svcorch: open() would make files 0644 under it."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def stack(umask_022: None) -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="svc-", dir="/tmp"))
    made = Stack(root)
    port = free_port()
    noisy = {
        # 5 KB of output at start, so the 1 kB log limit rotates it
        "command": [
            "sh",
            "-c",
            f"head -c 5000 /dev/zero | tr '\\0' x; echo; exec {sys.executable} {TCP_READY}"
            f" --port {port}",
        ],
        "ready": {"type": "tcp", "port": port, "timeout": "10s"},
    }
    made.write({"a": noisy, "b": tcp_service(free_port())}, logs={"max_size": "1kB", "backups": 2})
    try:
        yield made
    finally:
        for path in (made.state_dir, made.state_dir / "logs", made.state_dir / "daemon.log"):
            if path.exists():
                os.chown(path, os.geteuid(), -1)
                path.chmod(0o700 if path.is_dir() else 0o600)
        made.run("down", "--timeout", "2s")
        shutil.rmtree(root, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def timed(stack: Stack, case: str, *args: str) -> Any:
    started = time.monotonic()
    result = stack.run(*args)
    TRIALS.append((case, time.monotonic() - started))
    return result


def everything(root: Path) -> dict[str, int]:
    """Every entry svcorch keeps in the state dir, by relative path, with its mode."""
    found = {}
    for path in [root, *root.rglob("*")]:
        found[str(path.relative_to(root))] = mode(path)
    return found


def test_everything_svcorch_writes_is_private(stack: Stack) -> None:
    stack.ok("up")
    wait_until(
        lambda: (stack.state_dir / "logs" / "a.log.1").exists(),
        timeout=15,
        message="a.log to be rotated",
    )
    (stack.state_dir / "state.json").write_text("garbage")
    result = timed(stack, "status after a corrupt state file", "status")
    assert result.returncode == 0, result.stderr

    modes = everything(stack.state_dir)

    expected = {
        ".",
        "logs",
        "logs/a.log",
        "logs/a.log.1",
        "logs/b.log",
        "daemon.log",
        "lock",
        "state.json",
        "svcorch.sock",
    }
    assert expected <= set(modes), modes
    assert any(name.startswith("state.json.corrupt-") for name in modes)
    loose = {
        name: f"{value:04o}"
        for name, value in modes.items()
        if value != (0o700 if (stack.state_dir / name).is_dir() else 0o600)
    }
    assert loose == {}


def test_the_crash_log_is_private(
    tmp_path: Path, umask_022: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_base, "_options", cli_base.Options(state_dir=tmp_path / "st"))
    where = _crash_log(RuntimeError("a bug"))
    assert where == tmp_path / "st" / "crash.log"
    assert mode(where) == 0o600
    assert "RuntimeError: a bug" in where.read_text()


def test_a_state_dir_loosened_while_the_daemon_runs_is_tightened_back(stack: Stack) -> None:
    stack.ok("up")
    pids = {name: row["pid"] for name, row in stack.status().items()}
    stack.state_dir.chmod(0o755)
    (stack.state_dir / "logs").chmod(0o755)
    for name in ("daemon.log", "state.json", "logs/a.log", "logs/b.log"):
        (stack.state_dir / name).chmod(0o644)

    result = timed(stack, "status, state dir 0755", "status", "--json")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert mode(stack.state_dir) == 0o700
    assert mode(stack.state_dir / "logs") == 0o700
    for name in ("daemon.log", "state.json", "logs/a.log", "logs/b.log"):
        assert mode(stack.state_dir / name) == 0o600, name
    assert {name: row["pid"] for name, row in stack.status().items()} == pids


def test_a_state_dir_or_file_others_can_write_or_own_is_refused(stack: Stack) -> None:
    stack.ok("up")
    for loose, commands in ((0o777, ("status", "down", "up", "logs")), (0o770, ("status",))):
        stack.state_dir.chmod(loose)
        for command in commands:
            result = timed(stack, f"{command}, state dir {loose:04o}", command)
            assert result.returncode == 2, (command, result.stdout, result.stderr)
            assert result.stderr.splitlines() == [
                f"svcorch: state directory {stack.state_dir} is writable by group or others"
                f" (mode {loose:04o}): another user could have put files in it; check them,"
                f" then `chmod 700 {stack.state_dir}`"
            ], command
        assert mode(stack.state_dir) == loose  # refused, not quietly repaired
    stack.state_dir.chmod(0o700)

    daemon_log = stack.state_dir / "daemon.log"
    daemon_log.chmod(0o666)
    result = timed(stack, "status, daemon.log 0666", "status")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"svcorch: file {daemon_log} is writable by group or others (mode 0666): check it,"
        f" then `chmod 600 {daemon_log}`"
    ]
    daemon_log.chmod(0o600)

    if os.geteuid() == 0:  # giving a directory away needs root
        os.chown(stack.state_dir, STRANGER, -1)
        me = os.geteuid()
        for command in ("status", "down"):
            result = timed(stack, f"{command}, state dir owned by uid {STRANGER}", command)
            assert result.returncode == 2, (command, result.stderr)
            assert result.stderr.splitlines() == [
                f"svcorch: state directory {stack.state_dir} belongs to uid {STRANGER}, not to"
                f" you (uid {me}): use your own --state-dir, or `chown -R {me}"
                f" {stack.state_dir}` if it is yours"
            ]
        os.chown(stack.state_dir, me, -1)

    # nothing was touched meanwhile: the services still run, and down works again
    assert {row["state"] for row in stack.status().values()} == {"ready"}
