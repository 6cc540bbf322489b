"""The state directory: what survives the process that wrote it.

Layout::

    STATE/state.json      per-service records (this module), written atomically
    STATE/logs/NAME.log   service output (+ NAME.log.1 .. NAME.log.N after rotation)
    STATE/daemon.log      the supervisor's own log
    STATE/svcorch.sock    the control socket
    STATE/lock            flock'd by whoever may start or stop services here

The state file holds identities and timestamps only: no environment, no command lines, so
it can never leak a secret.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from svcorch.errors import OperationFailed

if TYPE_CHECKING:
    from svcorch.process import ProcessRecord

STATE_FORMAT_VERSION = 1
_POLL_FIRST = 0.005
_POLL_MAX = 0.1


class StateError(OperationFailed):
    """The state directory or a file in it cannot be read or written."""


class StateLocked(StateError):
    """Another svcorch holds the state directory's lock."""


@dataclass(frozen=True)
class StateLayout:
    """Where each file of one state directory lives."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def service_log(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"

    @property
    def daemon_log(self) -> Path:
        return self.root / "daemon.log"

    @property
    def socket(self) -> Path:
        return self.root / "svcorch.sock"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def fingerprint_key(self) -> Path:
        return self.root / "fingerprint.key"


KEY_BYTES = 32


def fingerprint_key(layout: StateLayout) -> bytes:
    """The state dir's random key for fingerprints (0600), made on first use.

    Fingerprints are keyed so that a ``state.json`` shown to someone (a bug report) cannot be
    used to guess a short password offline from its hash.
    """
    path = layout.fingerprint_key
    try:
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StateError(f"cannot read {path}: {_reason(exc)}") from exc
    key = os.urandom(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
    except OSError as exc:
        raise StateError(f"cannot write {path}: {_reason(exc)}") from exc
    return key


def ensure_state_dir(path: Path) -> Path:
    """Create the state directory and ``logs/``, both 0700; return the directory.

    An existing directory is tightened to 0700 too: the control socket inside it is guarded
    by the directory's permissions, and logs may hold whatever services print.
    """
    layout = StateLayout(path)
    try:
        for directory in (layout.root, layout.logs_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if directory.stat().st_mode & 0o077:
                directory.chmod(0o700)
    except OSError as exc:
        raise StateError(f"cannot create state directory {path}: {_reason(exc)}") from exc
    return path


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


# --- records -------------------------------------------------------------------------------

_INT_FIELDS = frozenset({"pid", "pgid", "exit_code", "restarts", "generation"})
_FLOAT_FIELDS = frozenset({"create_time", "started_at", "ready_at", "exited_at"})
_STR_FIELDS = frozenset({"name", "state", "detail", "fingerprint"})


@dataclass
class ServiceRecord:
    """What the state file remembers about one service.

    Times are wall-clock epoch seconds (``time.time()``): they are for people and for other
    processes. Durations inside one process are measured with the monotonic clock instead.
    """

    name: str
    state: str
    pid: int | None = None
    pgid: int | None = None
    create_time: float | None = None
    started_at: float | None = None
    ready_at: float | None = None
    exited_at: float | None = None
    exit_code: int | None = None
    restarts: int = 0
    detail: str | None = None
    generation: int = 0
    fingerprint: str | None = None  # of what runs (svcorch.fingerprint): a hash, no values

    def process(self) -> ProcessRecord | None:
        """The recorded process identity, when there is one to find again."""
        if self.pid is None or self.pgid is None or self.create_time is None:
            return None
        # imported here so reading the state file (status) never pays for psutil
        from svcorch.process import ProcessRecord

        return ProcessRecord(pid=self.pid, pgid=self.pgid, create_time=self.create_time)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ServiceRecord:
        """Build a record, ignoring keys a newer svcorch added; ``ValueError`` on bad types."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for key in ("name", "state"):
            if key not in values:
                raise ValueError(f"service record without {key!r}")
        for key, value in values.items():
            if value is None and key not in {"name", "state", "restarts", "generation"}:
                continue
            if not _has_type(key, value):
                raise ValueError(f"service record field {key!r} has a bad value {value!r}")
            if key in _FLOAT_FIELDS:
                values[key] = float(value)  # type: ignore[arg-type]  # checked just above
        return cls(**values)  # type: ignore[arg-type]  # each value's type checked above


def _has_type(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return False  # an int subclass, never a valid pid, time or count
    if key in _INT_FIELDS:
        return isinstance(value, int)
    if key in _FLOAT_FIELDS:
        return isinstance(value, int | float)
    if key in _STR_FIELDS:
        return isinstance(value, str)
    return False


class StateFile:
    """``state.json``: every service's record, replaced as a whole on each save."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, ServiceRecord]:
        """The saved records by service name; ``{}`` when nothing was saved yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            reason = _reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
            raise StateError(f"cannot read state file {self.path}: {reason}") from exc
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateError(
                # json's own words, some of which end in "at" already
                f"state file {self.path} is corrupt: {exc.msg.removesuffix(' at')} at line"
                f" {exc.lineno} column {exc.colno}"
            ) from exc
        return self._records(document)

    def _records(self, document: object) -> dict[str, ServiceRecord]:
        services = document.get("services") if isinstance(document, dict) else None
        if not isinstance(services, list):
            raise StateError(f"state file {self.path} is corrupt: no list of services")
        records: dict[str, ServiceRecord] = {}
        for entry in services:
            if not isinstance(entry, dict):
                raise StateError(f"state file {self.path} is corrupt: {entry!r} is not a record")
            try:
                record = ServiceRecord.from_dict(entry)
            except ValueError as exc:
                raise StateError(f"state file {self.path} is corrupt: {exc}") from exc
            records[record.name] = record
        return records

    def save(self, records: Mapping[str, ServiceRecord]) -> None:
        """Replace the file atomically: a reader sees the old content or the new, never half.

        The temp file lives in the same directory (``os.replace`` is atomic only within one
        file system) and is fsync'd before the rename; the directory is fsync'd after it, so a
        crash cannot leave the rename unrecorded. Mode 0600.
        """
        document = {
            "version": STATE_FORMAT_VERSION,
            "services": [record.to_dict() for record in records.values()],
        }
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        directory = self.path.parent
        try:
            fd, temp_name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=directory
            )
        except OSError as exc:
            raise StateError(f"cannot write state file {self.path}: {_reason(exc)}") from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.path)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise StateError(f"cannot write state file {self.path}: {_reason(exc)}") from exc
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # some file systems cannot fsync a directory; the rename itself already happened
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise StateError(f"cannot sync state directory {directory}: {_reason(exc)}") from exc
    finally:
        os.close(fd)


# --- the lock ------------------------------------------------------------------------------


class StateLock:
    """An exclusive ``flock`` on ``STATE/lock``: one daemon, one starter per state dir.

    ``with StateLock(path, timeout=5):`` waits up to 5 s, then raises :class:`StateLocked`;
    ``blocking=False`` raises at once; ``try_acquire()`` answers with a bool instead. The
    holder writes its pid into the file, only so the error can say who holds it. The kernel
    drops the lock when the holder's descriptor closes, however the holder dies. The
    descriptor is close-on-exec, so services never inherit the lock.
    """

    def __init__(self, path: Path, *, blocking: bool = True, timeout: float | None = None) -> None:
        self.path = path
        self.blocking = blocking
        self.timeout = timeout
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already locked by this StateLock")
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise StateError(f"cannot lock {self.path}: {_reason(exc)}") from exc
        self._fd = fd
        self._stamp_holder(fd)
        return True

    def acquire(self) -> None:
        """Take the lock as configured, or raise :class:`StateLocked`."""
        if self.blocking and self.timeout is None:
            self._acquire_waiting_forever()
            return
        budget = (self.timeout or 0.0) if self.blocking else 0.0
        deadline = time.monotonic() + budget
        delay = _POLL_FIRST
        while not self.try_acquire():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StateLocked(self._busy_message())
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX)

    def _acquire_waiting_forever(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already locked by this StateLock")
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._stamp_holder(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # closing drops the flock; the stale pid left in the file is harmless
        os.close(fd)

    def holder_pid(self) -> int | None:
        """The pid the current holder wrote, if any (diagnostic only)."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open lock file {self.path}: {_reason(exc)}") from exc

    @staticmethod
    def _stamp_holder(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)

    def _busy_message(self) -> str:
        holder = self.holder_pid()
        who = f" by pid {holder}" if holder is not None else ""
        return f"state directory {self.path.parent} is locked{who} (another svcorch is running)"

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


# --- log rotation --------------------------------------------------------------------------


def rotated_path(log_path: Path, index: int) -> Path:
    """``NAME.log.<index>``: 1 is the newest rotated generation."""
    return log_path.with_name(f"{log_path.name}.{index}")


def rotate_if_needed(log_path: Path, max_size: int, backups: int) -> bool:
    """Rotate ``log_path`` once it is larger than ``max_size`` bytes; True if it did.

    copytruncate, not rename: services hold the log open with O_APPEND, so a renamed file
    would keep receiving their output while the new one stayed empty. After truncation their
    next write lands at the new end, offset 0. Lines written between the copy and the
    truncate are lost; the window is one read. ``backups=0`` just truncates.
    """
    try:
        size = log_path.stat().st_size
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StateError(f"cannot rotate {log_path}: {_reason(exc)}") from exc
    if size <= max_size:
        return False
    try:
        if backups <= 0:
            os.truncate(log_path, 0)
            return True
        for index in range(backups - 1, 0, -1):
            older = rotated_path(log_path, index)
            if older.exists():
                os.replace(older, rotated_path(log_path, index + 1))
        _copy_then_truncate(log_path, rotated_path(log_path, 1))
    except OSError as exc:
        raise StateError(f"cannot rotate {log_path}: {_reason(exc)}") from exc
    return True


def _copy_then_truncate(source: Path, target: Path) -> None:
    target_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(target_fd, "wb") as out, source.open("r+b") as log:
        shutil.copyfileobj(log, out)
        # a copy takes a while; pick up what services appended meanwhile, then cut at once
        while chunk := log.read(1 << 16):
            out.write(chunk)
        log.truncate(0)
