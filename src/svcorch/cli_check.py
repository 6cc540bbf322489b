"""`svcorch check`: probes once, until all pass (--wait), or continuously (--watch).

Exit codes: 0 every probe passed, 1 one failed, 2 a usage or catalogue error, 128+N when
signal N (SIGINT 130, SIGTERM 143) ended it. Probe results go to stdout; the one-line
reason of an interruption goes to stderr.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from svcorch.cli_base import (
    JsonFlag,
    Names,
    ProfileFlag,
    console,
    load,
    options,
    redactor,
    state_layout,
    want_json,
    write,
)
from svcorch.errors import UsageError

if TYPE_CHECKING:
    from svcorch.commands.check import CheckRow
    from svcorch.model import Catalogue, Service
    from svcorch.notify import Delivery, HealthChange
    from svcorch.state import StateLayout

DEFAULT_INTERVAL = "600s"


def _duration(text: str | None, flag: str) -> timedelta | None:
    if text is None:
        return None
    from svcorch.durations import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    if value <= timedelta(0):
        raise UsageError(f"{flag} must be more than 0")
    return value


class Signals:
    """SIGINT and SIGTERM, recorded while a check runs; the check notices and ends itself.

    The handler only records (an exception thrown into the middle of a wait would leave
    probe threads and notifier children behind); the loops watch ``stop``.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.received: list[int] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[Signals]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # only the main thread may set handlers; the default ones stay
            return
        previous = {sig: signal.signal(sig, self._record) for sig in _HANDLED}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _record(self, number: int, _frame: object) -> None:
        self.received.append(number)
        self.stop.set()

    @property
    def exit_code(self) -> int | None:
        return 128 + self.received[0] if self.received else None

    def name(self) -> str:
        return signal.Signals(self.received[0]).name if self.received else ""


_HANDLED = (signal.SIGINT, signal.SIGTERM)


def check(
    names: Names = None,
    profile: ProfileFlag = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Retry each probe until it passes (deploy scripts).",
        ),
    ] = False,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            metavar="DURATION",
            help="With --wait: limit per probe, e.g. 60s.",
            show_default="each probe's timeout",
        ),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="Check every --interval and notify on changes."),
    ] = False,
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval",
            metavar="DURATION",
            help="With --watch: from one round to the next.",
            show_default=DEFAULT_INTERVAL,
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Run every selected service's readiness probe, all in parallel (the seed's healthz)."""
    from svcorch.commands import check as check_command

    if wait and watch:
        raise UsageError("choose one of --wait and --watch")
    if timeout is not None and not wait:
        raise UsageError("--timeout goes with --wait")
    if interval is not None and not watch:
        raise UsageError("--interval goes with --watch")
    limit = _duration(timeout, "--timeout")
    every = _duration(interval or DEFAULT_INTERVAL, "--interval")
    assert every is not None
    catalogue, graph = load(expanded=True)
    services = check_command.select(catalogue, graph, names or [], options().profiles)
    layout = state_layout()
    as_json = want_json(json_output)
    if watch and not services:
        raise UsageError("nothing to watch: no selected service has a readiness probe")
    if wait and not services:
        # a deploy script's `check --wait` must not pass having checked nothing
        raise UsageError("nothing to wait for: no selected service has a readiness probe")
    with Signals().installed() as signals:
        if watch:
            rounds = _watch(catalogue, layout, services, every.total_seconds(), as_json, signals)
            noun = "round" if rounds == 1 else "rounds"
            _stopped(f"watch stopped by {signals.name()} after {rounds} {noun}", signals)
            return
        if wait:
            rows = check_command.wait(
                catalogue, layout, services, limit, signals.stop, redactor=redactor()
            )
        else:
            rows = check_command.once(catalogue, layout, services, redactor())
    _print_rows(rows, as_json)
    _stopped("interrupted", signals)
    if not all(row.ok for row in rows):
        raise typer.Exit(1)


def _stopped(message: str, signals: Signals) -> None:
    if signals.exit_code is not None:
        sys.stderr.write(f"svcorch: {message}\n")
        raise typer.Exit(signals.exit_code)


def _print_rows(rows: list[CheckRow], as_json: bool) -> None:
    from svcorch import render

    if as_json:
        write(render.json_text([row.to_dict() for row in rows]))
    else:
        console().print(render.check_table(rows))


def _watch(
    catalogue: Catalogue,
    layout: StateLayout,
    services: list[Service],
    interval: float,
    as_json: bool,
    signals: Signals,
) -> int:
    """Rounds until a signal; one line per round, one per notification attempt."""
    import json

    from svcorch import render
    from svcorch.commands.check import Watch
    from svcorch.notify import Notifications

    out = console()
    lock = threading.Lock()  # rounds print from this thread, deliveries from notifier threads

    def emit(line: object) -> None:
        with lock:
            if as_json:
                write(json.dumps(line))
            else:
                out.print(line, soft_wrap=True)  # one event, one line, however long

    def on_delivery(delivery: Delivery) -> None:
        emit({"delivery": delivery.to_dict()} if as_json else render.delivery_line(delivery))

    def on_round(number: int, rows: list[CheckRow], changes: list[HealthChange]) -> None:
        if as_json:
            emit(
                {
                    "round": number,
                    "time": time.time(),
                    "results": [row.to_dict() for row in rows],
                    "changes": [change.to_dict() for change in changes],
                }
            )
        else:
            emit(render.round_line(number, rows, changes))

    notifications = Notifications(
        catalogue.notify, str(catalogue.base_dir), on_delivery, redactor=redactor()
    )
    try:
        return Watch(
            catalogue, layout, services, interval, notifications, on_round, redactor=redactor()
        ).run(signals.stop)
    finally:
        notifications.close()
