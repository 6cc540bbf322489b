"""`svcorch events`: what the daemon saw happen, from its journal; ``-f`` follows it live.

History is read from the journal files themselves, so it works without a daemon. Following
asks the daemon (the control socket's ``events`` op) for history and then every new event;
when the daemon exits (a ``down`` of everything) the follower waits for the next one and
goes on where it stopped, like ``tail -F``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from datetime import time as time_of_day
from typing import Any

from svcorch import control
from svcorch.errors import DaemonError, UsageError
from svcorch.journal import EventRecord, Journal, journal_path
from svcorch.state import StateLayout

POLL = 0.25  # seconds between looks for a daemon, and for a stop request while following
LAST = 10  # following without --since starts with the last ten events, as tail -f does


def parse_since(text: str, now: float) -> float:
    """``--since``: a duration ago (``10m``) or a local date/time (``2024-05-02 10:00``,
    ``10:00`` today); epoch seconds."""
    from svcorch.durations import parse_duration

    with contextlib.suppress(ValueError):
        return now - parse_duration(text).total_seconds()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.combine(date.fromtimestamp(now), time_of_day.fromisoformat(text))
        except ValueError:
            raise UsageError(
                f"--since: {text!r} is neither a duration (30s, 10m, 2h)"
                " nor a time (2024-05-02 10:00, 10:00)"
            ) from None
    return moment.timestamp()  # a time without a zone is local time


def history(layout: StateLayout, since: float | None, services: Iterable[str]) -> list[EventRecord]:
    """The journal's records, oldest first."""
    return Journal(journal_path(layout.root)).read(since=since, services=services)


class _Seen:
    """Where a follower stands, so that history sent again after a reconnect is not shown
    twice: the newest time shown, and the records shown at exactly that time."""

    def __init__(self) -> None:
        self.time: float | None = None
        self.at_time: set[int] = set()

    def new(self, record: EventRecord) -> bool:
        if self.time is not None and (
            record.time < self.time or (record.time == self.time and record.seq in self.at_time)
        ):
            return False
        if record.time != self.time:
            self.time, self.at_time = record.time, set()
        self.at_time.add(record.seq)
        return True


def follow(
    layout: StateLayout,
    since: float | None,
    services: list[str],
    emit: Callable[[EventRecord], None],
    stopped: Callable[[], bool],
) -> None:
    """History, then every new event, across daemon restarts, until ``stopped()``."""
    seen = _Seen()
    first = True

    def show(record: EventRecord) -> None:
        if seen.new(record):
            emit(record)

    while not stopped():
        connection = control.connect(layout.socket)
        if connection is None:
            if first:  # no daemon: the journal has the history; new events need a daemon
                records = history(layout, since, services)
                for record in records if since is not None else records[-LAST:]:
                    show(record)
            first = False
            time.sleep(POLL)
            continue
        start = seen.time if seen.time is not None else since
        with connection:
            request = {"op": "events", "services": services, "since": start}
            for record in _stream(connection, request, stopped):
                show(record)
        first = False


def _stream(
    connection: control.Connection, request: dict[str, Any], stopped: Callable[[], bool]
) -> Iterator[EventRecord]:
    """The daemon's records until it ends the stream, it exits, or ``stopped()``."""
    try:
        connection.send(request)
    except OSError:
        return  # it was exiting as we connected: the caller looks for the next one
    for message in _messages(connection, stopped):
        if "event" in message:
            record = EventRecord.from_dict(message["event"])
            if record is not None:
                yield record
        elif "error" in message:
            code = message.get("exit_code")
            raise control.RemoteError(str(message["error"]), code if isinstance(code, int) else 1)
        elif "result" in message:
            return  # the daemon is exiting


def _messages(
    connection: control.Connection, stopped: Callable[[], bool]
) -> Iterator[dict[str, Any]]:
    """Lines from the daemon, looking up every POLL seconds to see whether to stop."""
    connection.sock.settimeout(POLL)
    buffer = b""
    while not stopped():
        try:
            chunk = connection.sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # reset: the daemon died; the caller looks for the next one
            return
        if not chunk:
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield control.decode(line)
        if len(buffer) > control.MAX_LINE:
            raise DaemonError("message from the control socket is too long")
