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
import math
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from svcorch.errors import OperationFailed

if TYPE_CHECKING:
    from svcorch.process import ProcessRecord

STATE_FORMAT_VERSION = 1
MAX_STATE_BYTES = 64 * 1024 * 1024  # ~200,000 services' records; more is not ours
_POLL_FIRST = 0.005
_POLL_MAX = 0.1


class StateError(OperationFailed):
    """The state directory or a file in it cannot be read or written."""


class StateLocked(StateError):
    """Another svcorch holds the state directory's lock."""


class StateCorrupt(StateError):
    """``state.json`` exists but cannot be trusted; ``content`` is what it held (for salvage)."""

    def __init__(self, path: Path, reason: str, content: bytes = b"") -> None:
        super().__init__(
            f"state file {path} is corrupt: {reason} (`svcorch status` sets it aside and"
            " carries on)"
        )
        self.path = path
        self.reason = reason
        self.content = content


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
    """Create the state directory and ``logs/`` (both 0700) and check them; return it.

    Every command that runs services passes here: a directory or file another user owns or
    can write is refused, one others can only read is tightened (see svcorch.statedir).
    """
    from svcorch.statedir import secure  # it builds on this module's layout and errors

    return secure(path, create=True)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


# --- records -------------------------------------------------------------------------------

# What a sane record holds. Anything outside is corruption, refused before it reaches a
# signal or a clock: kill(-1) signals every process we may signal, pgid 0 our own group, and
# 2**70 overflows every C call it reaches.
PID_MAX = 1 << 22  # PID_MAX_LIMIT of 64-bit Linux: no pid or pgid is larger
_INT_RANGES = {
    "pid": (2, PID_MAX),  # 1 is init: never a service
    "pgid": (2, PID_MAX),
    "exit_code": (-255, 255),  # negative: the signal that ended it
    "restarts": (0, 1 << 31),
    "restarts_total": (0, 1 << 31),
    "generation": (0, 1 << 31),
}
_FLOAT_FIELDS = frozenset({"create_time", "started_at", "ready_at", "exited_at"})
_TIME_MAX = float(1 << 40)  # epoch seconds, about the year 36800
_STR_LENGTHS = {
    "name": (1, 256),
    "state": (1, 64),
    "detail": (0, 64 * 1024),
    "fingerprint": (0, 256),  # a keyed hash (svcorch.fingerprint)
}


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
    restarts: int = 0  # since the up that started it (what status shows)
    detail: str | None = None
    generation: int = 0
    fingerprint: str | None = None  # of what runs (svcorch.fingerprint): a hash, no values
    restarts_total: int = 0  # over the state directory's life (status --json)

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
        """Build a record, ignoring keys a newer svcorch added; ``ValueError`` on a missing
        name or state, a wrong type or a value out of range."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for key in ("name", "state"):
            if key not in values:
                raise ValueError(f"service record without {key!r}")
        for key, value in values.items():
            if value is None and key not in {
                "name",
                "state",
                "restarts",
                "restarts_total",
                "generation",
            }:
                continue
            if not _valid(key, value):
                raise ValueError(f"service record field {key!r} has a bad value {_shown(value)}")
            if key in _FLOAT_FIELDS:
                values[key] = float(value)  # type: ignore[arg-type]  # checked just above
        return cls(**values)  # type: ignore[arg-type]  # each value's type checked above


def _valid(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return False  # an int subclass, never a valid pid, time or count
    if key in _INT_RANGES:
        low, high = _INT_RANGES[key]
        return isinstance(value, int) and low <= value <= high
    if key in _FLOAT_FIELDS:
        return isinstance(value, int | float) and math.isfinite(value) and 0 <= value < _TIME_MAX
    if key in _STR_LENGTHS:
        shortest, longest = _STR_LENGTHS[key]
        return isinstance(value, str) and shortest <= len(value) <= longest
    return False


def _shown(value: object) -> str:
    """A bad value as the message shows it: never the whole of a huge or deep one."""
    if isinstance(value, dict | list):
        return f"(a JSON {'object' if isinstance(value, dict) else 'array'})"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class StateFile:
    """``state.json``: every service's record, replaced as a whole on each save."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, ServiceRecord]:
        """The saved records by service name; ``{}`` when nothing was saved yet.

        Raises :class:`StateCorrupt` when the file cannot be trusted, whatever is wrong with
        it: not a regular file, too large, not UTF-8, not JSON, nested too deep, or a record
        with a missing, mistyped or out-of-range field.
        """
        content = self._read()
        if content is None:
            return {}
        try:
            document = json.loads(content.decode("utf-8"), parse_constant=_refuse_constant)
        except UnicodeDecodeError:
            raise StateCorrupt(self.path, "not UTF-8 text", content) from None
        except json.JSONDecodeError as exc:
            # "Unterminated string starting at" + " at line 3" would say "at" twice
            reason = f"{exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}"
            raise StateCorrupt(self.path, reason, content) from None
        except RecursionError:
            raise StateCorrupt(self.path, "nested too deeply", content) from None
        except ValueError as exc:  # NaN, Infinity, an integer of thousands of digits
            raise StateCorrupt(self.path, str(exc), content) from None
        try:
            return _records(document)
        except ValueError as exc:
            raise StateCorrupt(self.path, str(exc), content) from None

    def _read(self) -> bytes | None:
        """The file's bytes, or None when there is none; never follows a symlink, never
        blocks on a FIFO, never reads more than MAX_STATE_BYTES."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StateCorrupt(self.path, "a symbolic link, not a file") from None
            raise StateError(f"cannot read state file {self.path}: {_reason(exc)}") from exc
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise StateCorrupt(self.path, "not a regular file")
            if status.st_size > MAX_STATE_BYTES:
                raise StateCorrupt(self.path, f"larger than {MAX_STATE_BYTES >> 20} MiB")
            content = _read_at_most(fd, MAX_STATE_BYTES + 1)
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {_reason(exc)}") from exc
        finally:
            os.close(fd)
        if len(content) > MAX_STATE_BYTES:  # it grew while we looked
            raise StateCorrupt(self.path, f"larger than {MAX_STATE_BYTES >> 20} MiB")
        return content

    def load_or_set_aside(
        self, refind: Callable[[], Mapping[str, ServiceRecord]] | None = None
    ) -> tuple[dict[str, ServiceRecord], SetAside | None]:
        """The records, setting a corrupt file aside instead of refusing to go on.

        A corrupt file is renamed to ``state.json.corrupt-<time>`` (kept for inspection) and
        replaced by what could be recovered: every intact record it still held (a truncated
        file keeps all but the last), plus what ``refind`` finds of the services by their
        identity. Only the holder of the state directory's lock may call this: it moves and
        writes the file.
        """
        try:
            return self.load(), None
        except StateCorrupt as exc:
            corrupt = exc
        kept_as = self.set_aside(corrupt)
        records, named = salvage(corrupt.content)
        if refind is not None:
            records.update(refind())
        self.save(records)
        lost = tuple(sorted(named - set(records)))
        return records, SetAside(self.path, kept_as, corrupt.reason, tuple(records), lost)

    def set_aside(self, corrupt: StateCorrupt) -> Path:
        """Rename the corrupt file to ``state.json.corrupt-<time>`` (never over another)."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for attempt in range(1, 100):
            suffix = "" if attempt == 1 else f"-{attempt}"
            kept_as = self.path.with_name(f"{self.path.name}.corrupt-{stamp}{suffix}")
            if kept_as.exists() or kept_as.is_symlink():
                continue
            try:
                os.rename(self.path, kept_as)
                with contextlib.suppress(OSError):
                    if not kept_as.is_symlink():
                        kept_as.chmod(0o600 if not kept_as.is_dir() else 0o700)
            except OSError as exc:
                raise StateError(
                    f"state file {self.path} is corrupt ({corrupt.reason}) and cannot be moved"
                    f" aside: {_reason(exc)}"
                ) from exc
            return kept_as
        raise StateError(f"state file {self.path} is corrupt ({corrupt.reason}); too many copies")

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


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := os.read(fd, min(1 << 20, limit - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number svcorch writes")


def _records(document: object) -> dict[str, ServiceRecord]:
    """The records of a parsed document; ``ValueError`` naming the first thing wrong."""
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, list):
        raise ValueError("no list of services")
    records: dict[str, ServiceRecord] = {}
    for entry in services:
        if not isinstance(entry, dict):
            raise ValueError(f"{_shown(entry)} is not a record")
        record = ServiceRecord.from_dict(entry)
        records[record.name] = record
    return records


# how save() lays out one record: a record is a flat object between these two lines
_RECORD_OPEN = b"    {"
_RECORD_CLOSE = (b"    }", b"    },")


def salvage(content: bytes) -> tuple[dict[str, ServiceRecord], set[str]]:
    """Every intact, valid record of a corrupt state file's ``content``, and the name of
    every service it mentions (so what was lost can be named).

    When the JSON parses (a wrong type, a pid out of range), each valid record is kept and
    the bad ones dropped. When it does not (truncated by a full disk, a crash, an editor),
    the records are found line by line in the layout ``save`` writes, so all but the
    interrupted one survive. Linear in the content, whatever it is.
    """
    try:
        document = json.loads(content.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return _salvage_lines(content)
    services = document.get("services") if isinstance(document, dict) else None
    entries = services if isinstance(services, list) else []
    return _valid_records(entries), _names(entries)


def _salvage_lines(content: bytes) -> tuple[dict[str, ServiceRecord], set[str]]:
    entries: list[object] = []
    named: set[str] = set()
    block: list[bytes] | None = None
    for line in content.split(b"\n"):
        if line == _RECORD_OPEN:
            block = [b"{"]
        elif block is not None and line in _RECORD_CLOSE:
            entries.append(_json_or_none(b"\n".join([*block, b"}"])))
            block = None
        elif block is not None:
            block.append(line)
            if line.startswith(_NAME_LINE):  # even an interrupted record may say whose it was
                named.update(_names([{"name": _json_or_none(line[len(_NAME_LINE) :])}]))
    return _valid_records(entries), named | _names(entries)


_NAME_LINE = b'      "name": '


def _json_or_none(text: bytes) -> object:
    try:
        return json.loads(text.rstrip(b",").decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None


def _names(entries: list[object]) -> set[str]:
    return {
        name
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(name := entry.get("name"), str)
        and 0 < len(name) <= _STR_LENGTHS["name"][1]
    }


def _valid_records(entries: list[object]) -> dict[str, ServiceRecord]:
    records: dict[str, ServiceRecord] = {}
    for entry in entries:
        if isinstance(entry, dict):
            with contextlib.suppress(ValueError):
                record = ServiceRecord.from_dict(entry)
                records[record.name] = record
    return records


@dataclass(frozen=True)
class SetAside:
    """A corrupt state file was moved aside and replaced by what could be recovered."""

    path: Path
    kept_as: Path
    reason: str
    recovered: tuple[str, ...]  # services whose records carried on
    lost: tuple[str, ...] = ()  # services it mentioned whose records could not be used

    def message(self) -> str:
        """One line for the user: what happened, where the file went, what carries on."""
        head = f"state file {self.path} was corrupt ({self.reason}); kept it as {self.kept_as}"
        if self.recovered:
            head += f" and carried on with the records it still held ({', '.join(self.recovered)})"
        else:
            head += " and started a new one"
        if self.lost:
            return (
                f"{head}; lost the record of {', '.join(self.lost)}: if it still runs, svcorch"
                " no longer tracks it (see docs/operations.md)"
            )
        if not self.recovered:
            return (
                f"{head}: services it listed, if any, are no longer tracked"
                " (see docs/operations.md)"
            )
        return head


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
    os.fchmod(target_fd, 0o600)  # an older generation moved here keeps its mode otherwise
    with os.fdopen(target_fd, "wb") as out, source.open("r+b") as log:
        shutil.copyfileobj(log, out)
        # a copy takes a while; pick up what services appended meanwhile, then cut at once
        while chunk := log.read(1 << 16):
            out.write(chunk)
        log.truncate(0)
