"""`svcorch logs`: the last lines of each service's log, and following them.

Following survives rotation (copytruncate shrinks the file: read again from the start) and
restarts (the file is appended to; a header line marks each start).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from svcorch.state import StateLayout, rotated_path

POLL_FIRST = 0.01
POLL_MAX = 0.25


def tail_lines(path: Path, count: int, end: int | None = None) -> list[str]:
    """The last ``count`` lines of ``path`` up to byte ``end`` (default: its end), and of its
    newest rotation if the file is short."""
    if count <= 0:
        return []
    lines: list[str] = []
    for candidate, limit in ((path, end), (rotated_path(path, 1), None)):
        try:
            with candidate.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                if limit is not None:
                    size = min(size, limit)
                start = max(0, size - max(65536, count * 512))
                handle.seek(start)
                chunk = handle.read(size - start).decode("utf-8", "replace").splitlines()
        except OSError:
            continue
        lines = chunk + lines
        if len(lines) >= count:
            break
    return lines[-count:]


@dataclass
class Follower:
    """Reads what was appended to one file since the last call."""

    service: str
    path: Path
    position: int = 0
    partial: str = ""
    written_ns: int = 0  # when the file was last written, as of the last read

    def start_at_end(self) -> None:
        try:
            self.position = self.path.stat().st_size
        except OSError:
            self.position = 0

    def read_new(self) -> list[str]:
        try:
            stat = self.path.stat()
        except OSError:
            return []
        size, self.written_ns = stat.st_size, stat.st_mtime_ns
        if size < self.position:
            self.position = 0  # rotated by truncation: the new content starts at 0
        if size == self.position:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.position)
            data = handle.read(size - self.position)
        self.position += len(data)
        text = self.partial + data.decode("utf-8", "replace")
        *complete, self.partial = text.split("\n")
        return complete


def open_followers(
    layout: StateLayout, services: list[str], count: int
) -> tuple[list[tuple[str, str]], list[Follower]]:
    """The last ``count`` lines of each log, and followers that go on exactly where those
    lines ended, so nothing written in between is lost or shown twice."""
    followers = [Follower(s, layout.service_log(s)) for s in services]
    lines: list[tuple[str, str]] = []
    for follower in followers:
        follower.start_at_end()
        lines.extend(
            (follower.service, line)
            for line in tail_lines(follower.path, count, end=follower.position)
        )
    return lines, followers


def emit_new(followers: list[Follower], emit: Callable[[str, str], None]) -> bool:
    """Emit what every log gained since the last call; whether there was anything.

    Logs that gained lines in the same poll go in the order they were last written, so one
    line here and one there come out in the order they were written, whoever is listed first.
    """
    batches = [
        (f.written_ns, i, f.service, lines)
        for i, f in enumerate(followers)
        if (lines := f.read_new())
    ]
    for _, _, service, lines in sorted(batches):
        for line in lines:
            emit(service, line)
    return bool(batches)


def next_delay(delay: float, got: bool) -> float:
    """Poll fast while lines come, slower (up to POLL_MAX) while the logs are quiet."""
    return POLL_FIRST if got else min(delay * 1.5, POLL_MAX)


def follow(
    followers: list[Follower],
    emit: Callable[[str, str], None],
    stop: Callable[[], bool],
) -> None:
    """Emit new lines of every follower's log until ``stop()``."""
    delay = POLL_FIRST
    while not stop():
        delay = next_delay(delay, emit_new(followers, emit))
        time.sleep(delay)


def initial(layout: StateLayout, services: list[str], count: int) -> Iterator[tuple[str, str]]:
    for service in services:
        for line in tail_lines(layout.service_log(service), count):
            yield service, line
