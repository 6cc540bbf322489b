"""The state directory: layout, the atomic state file, the lock, log rotation."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from svcorch.errors import SvcorchError
from svcorch.process import ProcessRecord
from svcorch.state import (
    MAX_STATE_BYTES,
    ServiceRecord,
    StateCorrupt,
    StateError,
    StateFile,
    StateLayout,
    StateLock,
    StateLocked,
    ensure_state_dir,
    rotate_if_needed,
    rotated_path,
)
from tests.support.procs import service_env


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_state_dir_creates_private_dirs_and_tightens_existing(tmp_path: Path) -> None:
    root = ensure_state_dir(tmp_path / "a" / "state")
    layout = StateLayout(root)
    assert mode(root) == 0o700
    assert mode(layout.logs_dir) == 0o700
    assert layout.service_log("web") == root / "logs" / "web.log"
    assert (layout.state_file.name, layout.socket.name, layout.lock.name) == (
        "state.json",
        "svcorch.sock",
        "lock",
    )
    assert layout.daemon_log == root / "daemon.log"

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    ensure_state_dir(loose)
    assert mode(loose) == 0o700


# --- the state file ------------------------------------------------------------------------


def sample_records() -> dict[str, ServiceRecord]:
    return {
        "redis": ServiceRecord(
            name="redis",
            state="ready",
            pid=4242,
            pgid=4242,
            create_time=1700000000.12,
            started_at=1700000000.5,
            ready_at=1700000001.25,
            restarts=2,
            detail="tcp://127.0.0.1:16379 answered",
            generation=3,
        ),
        "migrate": ServiceRecord(
            name="migrate", state="completed", exited_at=1700000002.0, exit_code=0
        ),
    }


def test_state_file_round_trip_is_atomic_and_private(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    assert state.load() == {}  # nothing saved yet

    state.save(sample_records())
    state.save(sample_records())  # replacing works as well as creating

    assert state.load() == sample_records()
    assert os.listdir(tmp_path) == ["state.json"]  # no temp file left behind
    assert mode(tmp_path / "state.json") == 0o600
    assert state.load()["redis"].process() == ProcessRecord(4242, 4242, 1700000000.12)
    assert state.load()["migrate"].process() is None


def test_state_file_holds_no_environment_or_command_line(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    state.save(sample_records())
    document = json.loads((tmp_path / "state.json").read_text())
    assert document["version"] == 1
    keys = {key for record in document["services"] for key in record}
    assert keys == {
        "name", "state", "pid", "pgid", "create_time", "started_at", "ready_at",
        "exited_at", "exit_code", "restarts", "restarts_total", "detail", "generation",
        "fingerprint",
    }  # fmt: skip


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateFile(tmp_path / "state.json")
    state.save(sample_records())
    before = (tmp_path / "state.json").read_bytes()

    def broken_replace(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StateError, match=r"cannot write state file .*No space left on device"):
        state.save({"web": ServiceRecord(name="web", state="starting")})

    assert (tmp_path / "state.json").read_bytes() == before
    assert os.listdir(tmp_path) == ["state.json"]


def test_state_file_ignores_keys_from_a_newer_svcorch(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps(
            {
                "version": 2,
                "written_by": "svcorch 9",
                "services": [{"name": "web", "state": "ready", "pid": 7, "cgroup": "/x"}],
            }
        )
    )
    assert StateFile(path).load() == {"web": ServiceRecord(name="web", state="ready", pid=7)}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"services": [', "corrupt: Expecting value at line 1 column 15"),
        ("[]", "corrupt: no list of services"),
        ('{"services": [{"state": "ready"}]}', "corrupt: service record without 'name'"),
        ('{"services": [{"name": "w", "state": "ready", "pid": "12"}]}', "field 'pid'"),
        ('{"services": [{"name": "w", "state": "ready", "restarts": null}]}', "'restarts'"),
        ('{"services": ["web"]}', "corrupt: 'web' is not a record"),
    ],
)
def test_a_corrupt_state_file_is_one_error_line_naming_it(
    tmp_path: Path, content: str, reason: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateError) as caught:
        StateFile(path).load()
    message = str(caught.value)
    assert message.startswith(f"state file {path} is ")
    assert reason in message
    assert "\n" not in message
    assert isinstance(caught.value, SvcorchError)


# --- the lock ------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from svcorch.state import StateLock
    lock = StateLock(Path(sys.argv[1]))
    assert lock.try_acquire()
    print("locked", flush=True)
    sys.stdin.readline()
    lock.release()
    print("released", flush=True)
    sys.stdin.readline()
    """
)


def test_state_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        env=service_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"

        assert StateLock(path).try_acquire() is False
        with pytest.raises(StateLocked, match=rf"is locked by pid {holder.pid} "):
            StateLock(path, blocking=False).acquire()
        with pytest.raises(StateLocked), StateLock(path, timeout=0.1):
            pass

        holder.stdin.write("release\n")
        holder.stdin.flush()
        # waits (polling) until the holder lets go, well inside the timeout
        with StateLock(path, timeout=10) as lock:
            assert lock.held
            assert lock.holder_pid() == os.getpid()
            assert holder.stdout.readline() == "released\n"
        assert not lock.held
        holder.stdin.close()
        assert holder.wait(timeout=10) == 0

    lock = StateLock(path, blocking=False)
    assert lock.try_acquire()
    lock.release()
    assert mode(path) == 0o600


def test_the_kernel_drops_the_lock_when_its_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        env=service_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        holder.kill()
        holder.wait(timeout=10)
    with StateLock(path, blocking=False):
        pass


# --- log rotation --------------------------------------------------------------------------


def test_rotation_shifts_backups_and_truncates_in_place(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    assert rotate_if_needed(log, max_size=10, backups=2) is False  # no log yet
    log.write_text("short\n")
    assert rotate_if_needed(log, max_size=10, backups=2) is False

    for generation in ("first", "second", "third"):
        log.write_text(f"{generation} generation of output\n")
        assert rotate_if_needed(log, max_size=10, backups=2) is True
        assert log.read_bytes() == b""

    assert rotated_path(log, 1).read_text() == "third generation of output\n"
    assert rotated_path(log, 2).read_text() == "second generation of output\n"
    assert not rotated_path(log, 3).exists()  # the oldest was dropped
    assert mode(rotated_path(log, 1)) == 0o600


def test_rotation_keeps_an_append_writer_writing_to_the_same_file(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    # how a service holds its log: one O_APPEND descriptor for its whole life
    writer = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(writer, b"before rotation, long enough\n")
        assert rotate_if_needed(log, max_size=10, backups=1)
        os.write(writer, b"after\n")
    finally:
        os.close(writer)
    assert log.read_bytes() == b"after\n"  # at offset 0: no hole of NUL bytes
    assert rotated_path(log, 1).read_bytes() == b"before rotation, long enough\n"


def test_rotation_without_backups_just_truncates(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    log.write_text("x" * 100)
    assert rotate_if_needed(log, max_size=10, backups=0)
    assert log.read_bytes() == b""
    assert os.listdir(tmp_path) == ["web.log"]


# --- a corrupt state file: refused, then set aside with what it still held -----------------


def _record(**fields: object) -> dict[str, object]:
    return {"name": "web", "state": "ready", **fields}


def _document(*records: dict[str, object]) -> str:
    return json.dumps({"version": 1, "services": list(records)})


DEEP = "[" * 100_000 + "]" * 100_000

CORRUPTIONS = {
    "truncated": ('{"version": 1, "services": [{"name": "w', "Unterminated string"),
    "garbage": ("\x00\x01 not json at all \xff", "Expecting value at line 1 column 1"),
    "not utf-8": (b"\xff\xfe{}", "not UTF-8 text"),
    "deep": (DEEP, "nested too deeply"),
    "deep object": ('{"a":' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
    "pid -1": (_document(_record(pid=-1, pgid=-1, create_time=1.0)), "field 'pid'"),
    "pid 0": (_document(_record(pid=0)), "field 'pid'"),
    "pid 2**70": (
        _document(_record(pid=2**70)),
        "field 'pid' has a bad value 1180591620717411303424",
    ),
    "pgid 1": (_document(_record(pid=50, pgid=1)), "field 'pgid'"),
    "huge integer": ('{"services": [{"pid": ' + "9" * 5000 + "}]}", "digits"),
    "nan time": ('{"services": [{"name": "w", "state": "ready", "create_time": NaN}]}', "NaN"),
    "infinite time": (_document(_record(started_at=1e309)), "Infinity"),
    "negative time": (_document(_record(ready_at=-5.0)), "field 'ready_at'"),
    "pid as text": (_document(_record(pid="12")), "field 'pid' has a bad value '12'"),
    "pid as list": (_document(_record(pid=[1, 2])), "field 'pid' has a bad value (a JSON array)"),
    "name as object": (_document(_record(name={"a": 1})), "field 'name' has a bad value"),
    "empty name": (_document(_record(name="")), "field 'name'"),
    "restarts negative": (_document(_record(restarts=-1)), "field 'restarts'"),
    "services not a list": ('{"services": {"web": {}}}', "no list of services"),
    "a record not an object": ('{"services": [1]}', "1 is not a record"),
    "empty file": ("", "Expecting value at line 1 column 1"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_every_corruption_is_one_clear_line_never_an_internal_error(
    tmp_path: Path, case: str
) -> None:
    content, reason = CORRUPTIONS[case]
    path = tmp_path / "state.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(StateCorrupt) as caught:
        StateFile(path).load()
    message = str(caught.value)
    assert message.startswith(f"state file {path} is corrupt: ")
    assert reason in message
    assert message.endswith("(`svcorch status` sets it aside and carries on)")
    assert "\n" not in message
    assert len(message) < 400
    assert isinstance(caught.value, SvcorchError)


def test_a_fifo_a_symlink_or_a_directory_is_corrupt_and_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    os.mkfifo(path)  # opening it for reading the plain way would wait for a writer forever
    with pytest.raises(StateCorrupt, match="not a regular file"):
        StateFile(path).load()
    path.unlink()
    target = tmp_path / "elsewhere.json"
    target.write_text(_document(_record()))
    path.symlink_to(target)
    with pytest.raises(StateCorrupt, match="a symbolic link, not a file"):
        StateFile(path).load()
    path.unlink()
    path.mkdir()
    with pytest.raises(StateCorrupt, match="not a regular file"):
        StateFile(path).load()


def test_a_file_larger_than_the_bound_is_corrupt_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_STATE_BYTES + 1)  # sparse: no 64 MiB written or read
    with pytest.raises(StateCorrupt, match="larger than 64 MiB"):
        StateFile(path).load()


def test_a_truncated_file_is_set_aside_keeping_every_whole_record(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    state.save(sample_records())
    whole = state.path.read_bytes()
    cut = whole[: whole.index(b'"name": "migrate"') + 5]  # inside the second record
    state.path.write_bytes(cut)

    records, set_aside = state.load_or_set_aside()

    assert records == {"redis": sample_records()["redis"]}
    assert set_aside is not None
    assert set_aside.kept_as.read_bytes() == cut
    assert set_aside.kept_as.name.startswith("state.json.corrupt-")
    assert mode(set_aside.kept_as) == 0o600
    assert state.load() == records  # the new file holds what carried on
    assert set_aside.recovered == ("redis",)
    assert set_aside.lost == ()  # the cut came before the record said whose it was
    with pytest.raises(json.JSONDecodeError) as where:
        json.loads(cut)
    assert set_aside.message() == (
        f"state file {state.path} was corrupt (Unterminated string starting at line"
        f" {where.value.lineno} column {where.value.colno}); kept it as {set_aside.kept_as}"
        " and carried on with the records it still held (redis)"
    )


def test_the_message_names_a_record_that_was_lost(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    state.save(sample_records())
    whole = state.path.read_bytes()
    state.path.write_bytes(whole[: whole.index(b'"pgid": null')])  # after migrate's name

    records, set_aside = state.load_or_set_aside()

    assert set(records) == {"redis"}
    assert set_aside is not None
    assert set_aside.lost == ("migrate",)
    assert set_aside.message().endswith(
        "and carried on with the records it still held (redis); lost the record of migrate:"
        " if it still runs, svcorch no longer tracks it (see docs/operations.md)"
    )


def test_wrong_types_drop_only_the_bad_records(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    good = _record(name="db", pid=4242, pgid=4242, create_time=1700000000.5)
    path.write_text(_document(good, _record(pid=-1), _record(name="x", pid=2**70)))
    records, set_aside = StateFile(path).load_or_set_aside()
    assert set(records) == {"db"}
    assert records["db"].process() == ProcessRecord(4242, 4242, 1700000000.5)
    assert set_aside is not None
    assert set_aside.lost == ("web", "x")
    assert "service record field 'pid' has a bad value -1" in set_aside.reason


@pytest.mark.parametrize("case", ["garbage", "deep", "not utf-8", "huge integer"])
def test_garbage_is_set_aside_and_a_new_file_started(tmp_path: Path, case: str) -> None:
    content, _ = CORRUPTIONS[case]
    path = tmp_path / "state.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.monotonic()
    records, set_aside = StateFile(path).load_or_set_aside()
    assert time.monotonic() - started < 1.0  # linear, whatever the content
    assert records == {}
    assert set_aside is not None
    assert set_aside.message().endswith(
        "and started a new one: services it listed, if any, are no longer tracked"
        " (see docs/operations.md)"
    )
    assert StateFile(path).load() == {}


def test_a_fifo_is_set_aside_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    os.mkfifo(path)
    records, set_aside = StateFile(path).load_or_set_aside()
    assert records == {}
    assert set_aside is not None
    assert stat.S_ISFIFO(set_aside.kept_as.lstat().st_mode)
    assert stat.S_ISREG(path.lstat().st_mode)


def test_set_aside_never_overwrites_an_earlier_copy(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    kept = []
    for attempt in range(3):
        path.write_text(f"garbage {attempt}")
        _, set_aside = StateFile(path).load_or_set_aside()
        assert set_aside is not None
        kept.append(set_aside.kept_as)
    assert len(set(kept)) == 3  # within one second: -2, -3 suffixes
    assert [k.read_text() for k in kept] == ["garbage 0", "garbage 1", "garbage 2"]


def test_a_refind_hook_adds_what_it_finds(tmp_path: Path) -> None:
    """The seam where finding services by identity (issue 8 point 1) plugs in."""
    path = tmp_path / "state.json"
    path.write_text("garbage")
    found = ServiceRecord(name="web", state="ready", pid=4242, pgid=4242, create_time=1.5)
    records, set_aside = StateFile(path).load_or_set_aside(refind=lambda: {"web": found})
    assert records == {"web": found}
    assert set_aside is not None
    assert set_aside.recovered == ("web",)
    assert StateFile(path).load() == {"web": found}


def test_a_sound_file_is_left_alone(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    state.save(sample_records())
    assert state.load_or_set_aside() == (sample_records(), None)
    assert os.listdir(tmp_path) == ["state.json"]
