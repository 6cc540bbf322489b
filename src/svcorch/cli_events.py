"""CLI: `svcorch events`, the daemon's journal of what happened to each service."""

from __future__ import annotations

import signal
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from svcorch.cli_base import JsonFlag, console, load, options, want_json, write

if TYPE_CHECKING:
    from svcorch.journal import EventRecord


def events(
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="SERVICE", help="Services (default: all).", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only events from then on: a duration ago (10m, 2h) or a local time "
            "(2024-05-02 10:00, 10:00).",
            show_default="all kept; with -f: the last 10",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "-f", "--follow", help="Keep printing new events as they happen, until Ctrl-C."
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Crashes, restarts, recoveries, ... of SERVICE… (default: all), as the daemon saw them."""
    import json

    from svcorch import render
    from svcorch.commands import events as events_command
    from svcorch.state import StateLayout

    layout = StateLayout(options().resolved_state_dir)
    start = None if since is None else events_command.parse_since(since, time.time())
    services = _replicas(list(names or []))
    records = [] if follow else events_command.history(layout, start, services)
    _check_names(services, {record.service for record in records})
    as_json = want_json(json_output)
    out = console()
    width = max((len(name) for name in [*services, *(r.service for r in records)]), default=8)

    def emit(record: EventRecord) -> None:
        if as_json:
            write(json.dumps(record.to_dict()))
        else:
            out.print(render.journal_line(record.to_dict(), width), soft_wrap=True)

    if not follow:
        for record in records:
            emit(record)
        return
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda s, _: stopped.append(s))
    try:
        events_command.follow(layout, start, services, emit, lambda: bool(stopped))
    except KeyboardInterrupt:
        sys.stdout.flush()
        raise typer.Exit(130) from None


def _replicas(names: list[str]) -> list[str]:
    """A replicated service's name stands for its replicas (``worker`` -> ``worker#0``, ...),
    as the journal names them."""
    from svcorch.errors import SvcorchError

    if not names:
        return names
    try:
        _, graph = load(expanded=True)
    except SvcorchError:
        return names  # the journal alone still answers; _check_names reports a bad name
    return graph.members(names)


def _check_names(names: list[str], in_history: set[str]) -> None:
    """A name must be a service of the catalogue, or one the journal remembers (a service
    since removed): a typo gets the usual one line and exit 2, not an empty answer."""
    unknown = [name for name in names if name not in in_history]
    if unknown:
        _, graph = load()
        graph.check_known(unknown)
