"""log: ready when the service's log gains a line matching a pattern.

Reading starts at ``ProbeContext.log_offset`` (where this start of the service began writing)
and each attempt goes on from where the last one stopped. A file that shrank below that
position was truncated in place (copytruncate) and a file with another inode was rotated by
rename: both are read again from the start. A missing file is retryable (the service may not
have written yet); a service without a log file is a configuration error.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import Field, field_validator

from svcorch.probes.base import (
    Probe,
    ProbeContext,
    ProbeOptions,
    ProbeResult,
    ProbeType,
    attempt_budget,
)
from svcorch.probes.pattern import compile_pattern

CHUNK = 64 * 1024
PENDING_LIMIT = 64 * 1024  # a "line" longer than this is searched by its tail only
DETAIL_LIMIT = 200


class LogOptions(ProbeOptions):
    type: Literal["log"] = "log"
    pattern: str = Field(
        description="regex (RE2 syntax) searched in each new line of the service's log"
    )

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            compile_pattern(value)
        except ValueError as exc:
            raise ValueError(f"invalid pattern {value!r}: {exc}") from None
        return value

    def target(self) -> str:
        return f"log line matching /{self.pattern}/"


class LogProbe:
    """Keeps its read position between attempts; one instance per start of the service."""

    def __init__(self, options: LogOptions, path: Path | None, offset: int) -> None:
        self.options = options
        self.regex = compile_pattern(options.pattern)  # linear time: see probes/pattern.py
        self.path = path
        self.position = offset
        self.identity: tuple[int, int] | None = None  # (device, inode) of the file being read
        self.pending = b""  # the start of a line not yet ended
        self.matched: str | None = None

    def check(self, deadline: float) -> ProbeResult:
        started = time.monotonic()
        result = self._attempt(started + attempt_budget(self.options, deadline))
        return ProbeResult(
            ok=result.ok,
            detail=result.detail,
            retryable=result.retryable,
            elapsed=time.monotonic() - started,
        ).scrubbed(self.options.secrets())

    def _attempt(self, stop_at: float) -> ProbeResult:
        if self.path is None:
            return ProbeResult.failed("the service has no log file to read", retryable=False)
        if self.matched is None:
            try:
                with self.path.open("rb") as log:
                    self._follow(log)
                    self._scan(log, stop_at)
            except FileNotFoundError:
                return ProbeResult.failed(f"{self.path} does not exist yet", retryable=True)
            except OSError as exc:
                return ProbeResult.failed(f"{self.path}: {exc.strerror or exc}", retryable=True)
        if self.matched is not None:
            return ProbeResult.passed(f"matched: {_shorten(self.matched)}")
        return ProbeResult.failed(
            f"no line matching /{self.options.pattern}/ yet in {self.path}"
            f" (read up to byte {self.position})",
            retryable=True,
        )

    def _follow(self, log: BinaryIO) -> None:
        """Start over when the file was rotated (new inode) or truncated (shorter than us)."""
        status = os.fstat(log.fileno())
        identity = (status.st_dev, status.st_ino)
        rotated = self.identity is not None and identity != self.identity
        if rotated or status.st_size < self.position:
            self.position = 0
            self.pending = b""
        self.identity = identity
        log.seek(self.position)

    def _scan(self, log: BinaryIO, stop_at: float) -> None:
        """Read on to the end of the file (or the deadline), searching each complete line."""
        while time.monotonic() < stop_at:
            chunk = log.read(CHUNK)
            if not chunk:
                break
            self.position += len(chunk)
            *lines, self.pending = (self.pending + chunk).split(b"\n")
            for line in lines:
                if self._search(line):
                    return
            self.pending = self.pending[-PENDING_LIMIT:]
        # a line still being written counts too: the words may be all there, the newline not
        if self.pending:
            self._search(self.pending)

    def _search(self, line: bytes) -> bool:
        text = line.rstrip(b"\r").decode(errors="replace")
        if self.regex.search(text) is None:
            return False
        self.matched = text
        return True


def _shorten(text: str) -> str:
    text = text.strip()
    return text if len(text) <= DETAIL_LIMIT else text[:DETAIL_LIMIT] + "..."


def _create(options: ProbeOptions, context: ProbeContext) -> Probe:
    assert isinstance(options, LogOptions)
    return LogProbe(options, context.log_path, context.log_offset)


PROBE_TYPE = ProbeType(name="log", options=LogOptions, create=_create)
