"""The state directory's ownership and modes (svcorch.statedir), checked like ssh's keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from svcorch.errors import SvcorchError
from svcorch.state import StateLayout, ensure_state_dir
from svcorch.statedir import UnsafeStateDir, open_private, secure

STRANGER = 65534  # nobody


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def state_dir(tmp_path: Path) -> StateLayout:
    layout = StateLayout(ensure_state_dir(tmp_path / "state"))
    for name in (
        "state.json",
        "daemon.log",
        "crash.log",
        "lock",
        "fingerprint.key",
        "state.json.corrupt-1",
    ):
        (layout.root / name).write_text("x")
    layout.service_log("web").write_text("x")
    (layout.logs_dir / "web.log.1").write_text("x")
    return layout


def test_made_private_and_owned(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        root = ensure_state_dir(tmp_path / "a" / "state")
    finally:
        os.umask(old)
    assert mode(root) == 0o700
    assert mode(root / "logs") == 0o700


def test_a_missing_dir_is_fine_until_a_command_needs_it(tmp_path: Path) -> None:
    assert secure(tmp_path / "nothing") == tmp_path / "nothing"
    assert not (tmp_path / "nothing").exists()


def test_readable_by_others_is_tightened_back(state_dir: StateLayout) -> None:
    state_dir.root.chmod(0o755)
    state_dir.logs_dir.chmod(0o750)
    for path in (state_dir.daemon_log, state_dir.service_log("web"), state_dir.state_file):
        path.chmod(0o644)
    (state_dir.logs_dir / "web.log.1").chmod(0o640)

    secure(state_dir.root)

    assert mode(state_dir.root) == 0o700
    assert mode(state_dir.logs_dir) == 0o700
    for name in (
        "state.json",
        "daemon.log",
        "crash.log",
        "lock",
        "fingerprint.key",
        "state.json.corrupt-1",
    ):
        assert mode(state_dir.root / name) == 0o600, name
    assert mode(state_dir.service_log("web")) == 0o600
    assert mode(state_dir.logs_dir / "web.log.1") == 0o600


def test_what_is_not_svcorchs_is_left_alone(state_dir: StateLayout) -> None:
    data = state_dir.root / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "mysqld.sock").write_text("x")
    (data / "mysqld.sock").chmod(0o777)
    target = state_dir.root.parent / "shared.log"
    target.write_text("x")
    target.chmod(0o644)
    (state_dir.logs_dir / "linked.log").symlink_to(target)

    secure(state_dir.root)

    assert mode(data) == 0o755  # the services' own data: theirs to decide
    assert mode(data / "mysqld.sock") == 0o777
    assert mode(target) == 0o644  # a link is not followed


@pytest.mark.parametrize("loose", [0o770, 0o775, 0o707, 0o777, 0o720])
def test_writable_by_others_is_refused_naming_the_fix(state_dir: StateLayout, loose: int) -> None:
    state_dir.root.chmod(loose)
    with pytest.raises(UnsafeStateDir) as caught:
        secure(state_dir.root)
    assert str(caught.value) == (
        f"state directory {state_dir.root} is writable by group or others (mode {loose:04o}):"
        f" another user could have put files in it; check them, then"
        f" `chmod 700 {state_dir.root}`"
    )
    assert caught.value.exit_code == 2
    assert isinstance(caught.value, SvcorchError)
    assert mode(state_dir.root) == loose  # refused, not silently repaired


def test_writable_logs_or_file_is_refused(state_dir: StateLayout) -> None:
    state_dir.logs_dir.chmod(0o777)
    with pytest.raises(UnsafeStateDir, match=r"logs is writable by group or others \(mode 0777\)"):
        secure(state_dir.root)
    state_dir.logs_dir.chmod(0o700)
    state_dir.state_file.chmod(0o666)
    with pytest.raises(UnsafeStateDir) as caught:
        secure(state_dir.root)
    assert str(caught.value) == (
        f"file {state_dir.state_file} is writable by group or others (mode 0666): check it,"
        f" then `chmod 600 {state_dir.state_file}`"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_another_users_dir_or_file_is_refused(state_dir: StateLayout) -> None:
    me = os.geteuid()
    os.chown(state_dir.root, STRANGER, -1)
    with pytest.raises(UnsafeStateDir) as caught:
        secure(state_dir.root)
    assert str(caught.value) == (
        f"state directory {state_dir.root} belongs to uid {STRANGER}, not to you (uid {me}):"
        f" use your own --state-dir, or `chown -R {me} {state_dir.root}` if it is yours"
    )
    os.chown(state_dir.root, me, -1)
    os.chown(state_dir.daemon_log, STRANGER, -1)
    with pytest.raises(UnsafeStateDir, match=rf"file {state_dir.daemon_log} belongs to uid"):
        secure(state_dir.root)


def test_a_file_where_the_dir_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("x")
    with pytest.raises(UnsafeStateDir, match="is not a directory"):
        secure(tmp_path / "state")


def test_open_private_creates_0600_and_tightens_an_existing_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fd = open_private(tmp_path / "daemon.log", os.O_WRONLY | os.O_APPEND)
        os.close(fd)
        assert mode(tmp_path / "daemon.log") == 0o600
        (tmp_path / "crash.log").write_text("old\n")
        assert mode(tmp_path / "crash.log") == 0o644
        os.close(open_private(tmp_path / "crash.log", os.O_WRONLY | os.O_APPEND))
        assert mode(tmp_path / "crash.log") == 0o600
        assert (tmp_path / "crash.log").read_text() == "old\n"
    finally:
        os.umask(old)
