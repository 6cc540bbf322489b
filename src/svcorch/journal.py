"""The event journal: every transition the daemon saw, one JSON object per line.

``STATE/events.jsonl`` (mode 0600) is appended to by the daemon alone, and rotated by size to
``events.jsonl.1`` … ``.N`` so it never grows without bound. ``svcorch events`` reads it,
with or without a daemon. A line that does not parse (a disk that filled up mid-line, an
edit) is skipped, never fatal: the journal is history, not state.

Standard library only: reading history must not pay for the engine.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

JOURNAL_NAME = "events.jsonl"
MAX_SIZE = 1_000_000  # bytes per file; a line is 150-300 bytes
BACKUPS = 3  # rotated files kept, so at most 4 MB of history
_READ_CHUNK = 64 * 1024


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_NAME


@dataclass(frozen=True)
class EventRecord:
    """One transition as the journal, ``svcorch events`` and the notifiers see it.

    ``seq`` grows by one per event and goes on across daemons, so a follower can tell what
    it has already seen. ``detail`` has been scrubbed of secrets before it gets here.
    """

    seq: int
    time: float  # wall clock, epoch seconds
    service: str
    kind: str
    severity: str
    old: str
    new: str
    detail: str = ""
    pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> EventRecord | None:
        """A record from a parsed line; None when it is not one (skipped by readers)."""
        if not isinstance(data, dict):
            return None
        try:
            record = cls(
                seq=_integer(data["seq"]),
                time=float(data["time"]),
                service=str(data["service"]),
                kind=str(data["kind"]),
                severity=str(data["severity"]),
                old=str(data["old"]),
                new=str(data["new"]),
                detail=str(data.get("detail") or ""),
                pid=None if data.get("pid") is None else _integer(data["pid"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return record


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not an integer: {value!r}")
    return value


class Journal:
    """Appends records and rotates by size; reads them back oldest first."""

    def __init__(self, path: Path, *, max_size: int = MAX_SIZE, backups: int = BACKUPS) -> None:
        self.path = path
        self.max_size = max_size
        self.backups = backups
        self._handle: IO[bytes] | None = None

    def files(self) -> list[Path]:
        """The journal's files, oldest first."""
        rotated = [self.rotated(index) for index in range(self.backups, 0, -1)]
        return [path for path in [*rotated, self.path] if path.exists()]

    def rotated(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    # -- writing (the daemon) -------------------------------------------------------------

    def append(self, record: EventRecord) -> None:
        """One line, written whole with one ``write`` on an O_APPEND descriptor.

        Not fsync'd: the journal is history for people, not state to recover from. A few
        hundred bytes into the page cache take microseconds, so the daemon writes on its loop
        and the journal is never behind the events it has seen.
        """
        line = json.dumps(record.to_dict(), separators=(",", ":")) + "\n"
        handle = self._open()
        handle.write(line.encode())
        handle.flush()
        if handle.tell() >= self.max_size:
            self._rotate()

    def _open(self) -> IO[bytes]:
        if self._handle is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            self._handle = os.fdopen(fd, "ab")
            self._handle.seek(0, os.SEEK_END)
        return self._handle

    def _rotate(self) -> None:
        """Rename, not copytruncate: only this writer has the file open."""
        self.close()
        if self.backups <= 0:
            os.truncate(self.path, 0)
            return
        for index in range(self.backups - 1, 0, -1):
            older = self.rotated(index)
            if older.exists():
                os.replace(older, self.rotated(index + 1))
        os.replace(self.path, self.rotated(1))

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            with contextlib.suppress(OSError):
                handle.close()

    def last_seq(self) -> int:
        """The sequence number of the newest record, 0 for an empty journal."""
        for path in reversed(self.files()):
            for line in _lines_backwards(path):
                record = _parse(line)
                if record is not None:
                    return record.seq
        return 0

    # -- reading (`svcorch events`, the daemon's followers) --------------------------------

    def read(
        self, *, since: float | None = None, services: Iterable[str] = ()
    ) -> list[EventRecord]:
        """The records kept, oldest first, at or after ``since``, of ``services`` (all if
        empty). A record seen twice (a rotation while reading) is kept once."""
        wanted = set(services)
        found: dict[int, EventRecord] = {}
        for path in self.files():
            # a file rotated away meanwhile is read under its next name, or was read already
            with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
                for line in handle:
                    record = _parse(line)
                    if record is None or (wanted and record.service not in wanted):
                        continue
                    if since is None or record.time >= since:
                        found.setdefault(record.seq, record)
        return sorted(found.values(), key=lambda record: record.seq)


def _parse(line: bytes) -> EventRecord | None:
    try:
        return EventRecord.from_dict(json.loads(line))
    except ValueError:  # includes a torn or undecodable line
        return None


def _lines_backwards(path: Path) -> Iterator[bytes]:
    """The file's lines, last first, read from the end in chunks (a journal may be 1 MB)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        position = handle.seek(0, os.SEEK_END)
        rest = b""
        while position > 0:
            start = max(0, position - _READ_CHUNK)
            handle.seek(start)
            chunk = handle.read(position - start) + rest
            position = start
            lines = chunk.split(b"\n")
            rest = lines.pop(0)  # may continue in the chunk before
            yield from (line for line in reversed(lines) if line)
        if rest:
            yield rest
