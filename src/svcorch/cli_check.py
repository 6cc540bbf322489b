"""`svcorch check`: probes once, until all pass (--wait), or continuously (--watch)."""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from svcorch.cli import JsonFlag, Names, app, console, load, options, want_json, write
from svcorch.errors import UsageError

if TYPE_CHECKING:
    from svcorch.commands.check import CheckRow
    from svcorch.notify import Delivery, HealthChange


def _seconds(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    from svcorch.durations import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


@app.command()
def check(
    names: Names = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until every probe passes.")] = False,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="With --wait: overall limit, e.g. 60s.")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Check every --interval and notify on changes.")
    ] = False,
    interval: Annotated[
        str, typer.Option("--interval", help="With --watch: time between rounds.")
    ] = "600s",
    json_output: JsonFlag = False,
) -> None:
    """Run every selected service's readiness probe once, in parallel (the seed's healthz)."""
    from datetime import timedelta

    from svcorch import render
    from svcorch.commands import check as check_command
    from svcorch.state import StateLayout

    if wait and watch:
        raise UsageError("choose one of --wait and --watch")
    if timeout is not None and not wait:
        raise UsageError("--timeout goes with --wait")
    limit = _seconds(timeout, "--timeout")
    every = _seconds(interval, "--interval")
    assert every is not None
    if every <= 0:
        raise UsageError("--interval must be more than 0")
    catalogue, graph = load()
    graph.check_known(names or [])
    layout = StateLayout(options().resolved_state_dir)
    selected = list(names or [])
    if watch:
        raise typer.Exit(_watch(catalogue, layout, selected, every, want_json(json_output)))
    if wait:
        rows = check_command.wait(
            catalogue, layout, selected, None if limit is None else timedelta(seconds=limit)
        )
    else:
        rows = check_command.once(catalogue, layout, selected)
    if want_json(json_output):
        write(render.json_text([row.to_dict() for row in rows]))
    else:
        console().print(render.check_table(rows))
    if not all(row.ok for row in rows):
        raise typer.Exit(1)


def _watch(catalogue: Any, layout: Any, names: list[str], interval: float, as_json: bool) -> int:
    import json

    from svcorch import render
    from svcorch.commands.check import Watch
    from svcorch.notify import Notifications

    out = console()
    stop = threading.Event()
    received: list[int] = []

    def on_signal(sig: int, _: object) -> None:  # only record; the loop notices
        received.append(sig)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def on_delivery(delivery: Delivery) -> None:
        if as_json:
            write(json.dumps({"delivery": delivery.__dict__}))
        else:
            out.print(render.delivery_line(delivery))

    def on_round(number: int, rows: list[CheckRow], changes: list[HealthChange]) -> None:
        if as_json:
            write(
                json.dumps(
                    {
                        "round": number,
                        "time": time.time(),
                        "results": [r.to_dict() for r in rows],
                        "changes": [c.to_dict() for c in changes],
                    }
                )
            )
        else:
            out.print(render.round_line(number, rows, changes))

    notifications = Notifications(
        catalogue.notify, str(catalogue.base_dir), on_delivery, stop=threading.Event()
    )
    try:
        Watch(catalogue, layout, names, interval, notifications, on_round).run(stop)
    finally:
        notifications.close()
    return 128 + received[0] if received else 0
