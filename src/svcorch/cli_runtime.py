"""CLI commands that plan or act on services: up, down, status, logs, restart, analyze."""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from svcorch import control
from svcorch.cli_base import (
    JsonFlag,
    Names,
    ProfileFlag,
    TimeoutFlag,
    _complete_service,
    console,
    load,
    notice,
    options,
    redactor,
    state_layout,
    want_json,
    write,
)
from svcorch.control import RemoteError
from svcorch.errors import CatalogueError, Problem, UsageError

if TYPE_CHECKING:
    from svcorch.state import StateLayout


def _layout() -> StateLayout:
    """The state directory (ownership and modes checked), refused if it serves another
    project."""
    from svcorch.project import check_owner

    layout = state_layout()
    check_owner(
        layout.root, options().project, options().file, explicit=options().state_dir is not None
    )
    return layout


def _identity() -> dict[str, str]:
    """Who asks, in every request: the daemon refuses another project or catalogue."""
    return {
        "project": options().project,
        "file": str(options().file.absolute()),
        "cwd": str(Path.cwd()),
    }


def _environ() -> dict[str, str]:
    from svcorch.commands.daemon import client_environment

    return client_environment(options().resolved_state_dir)


def _duration(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    from svcorch.durations import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _event_printer(names: list[str]) -> Progress:
    """Progress: one line per transition (a live table would hide history in CI logs)."""
    progress = Progress()
    progress.accepted({"services": names})
    return progress


class Progress:
    """The daemon's events as they come.

    On a terminal: a live table, one line per service with its state, how long it has been
    at it (or took) and the probe's detail. Elsewhere (CI logs, pipes): one line per
    transition, so the whole history stays readable.
    """

    def __init__(self) -> None:
        self.width = 8
        self.quiet = options().verbosity < 0
        self.live_view = sys.stdout.isatty() and not self.quiet
        self.rows: dict[str, dict[str, Any]] = {}
        self._out: Any = None
        self._live: Any = None

    def accepted(self, accepted: dict[str, Any]) -> None:
        services = [str(name) for name in accepted.get("services") or []]
        self.width = max((len(name) for name in services), default=8)
        for name in services:
            self.rows.setdefault(name, {"state": "waiting", "detail": "", "since": None})

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        from svcorch import render

        event = _masked(event)
        if not self.live_view:
            if self._out is None:
                self._out = console()
            self._out.print(render.event_line(event, self.width))
            return
        render.progress_update(self.rows, event, time.monotonic())
        if self._live is None:
            from rich.live import Live

            self._live = Live(
                render.ProgressTable(self.rows), console=console(), refresh_per_second=8
            )
            self._live.start()
        self._live.refresh()

    def close(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None


_LOCATED = re.compile(r"^(?:(\d+):(?:(\d+):)? )?(.*)$")


def _as_catalogue_error(exc: RemoteError) -> CatalogueError | None:
    """The daemon's catalogue problems, shown as `validate` shows them: one plain line each,
    with the file spelled as the user gave it (the daemon was sent its absolute path)."""
    absolute = str(options().file.absolute())
    lines = str(exc).splitlines()
    if (
        exc.exit_code != 2
        or not lines
        or not all(line.startswith(absolute + ":") for line in lines)
    ):
        return None
    problems = []
    for line in lines:
        match = _LOCATED.match(line[len(absolute) + 1 :].lstrip())
        assert match is not None  # the pattern matches any text
        number, column, message = match.groups()
        problems.append(
            Problem(
                str(options().file),
                message,
                int(number) if number else None,
                int(column) if column else None,
            )
        )
    return CatalogueError(problems)


def _masked(data: Any) -> Any:
    """The last defence at the terminal: the daemon masked its messages with the whole
    catalogue's secrets already; this adds the environment's (or the catalogue's when this
    command loaded it)."""
    from svcorch.redaction import NAME_KEYS

    return redactor().data(data, keep=NAME_KEYS)


def _finish(result: dict[str, Any], json_output: bool) -> None:
    from svcorch import render

    result = _masked(result)
    if want_json(json_output):
        write(render.json_text(result))
    else:
        console().print(render.outcome_text(result), end="")
    if not result.get("ok"):
        raise typer.Exit(1)


def _act(op: str, fields: dict[str, Any], json_output: bool) -> None:
    """Send up/down/restart to the daemon (started if none runs) and show its progress.

    The CLI does not load the catalogue for this: the daemon loads it (once per change),
    checks the names and reports problems with their exit code, so an up costs one Python
    start, not two catalogue loads.
    """
    from svcorch.commands import daemon

    layout = _layout()
    environ = _environ()
    progress = None if want_json(json_output) else Progress()
    message = {
        "op": op,
        **_identity(),
        "environ": environ,
        "profiles": options().profiles,
        **fields,
    }
    try:
        for attempt in (1, 2):
            daemon.ensure(layout, options().file, environ, options().project)
            try:
                result = daemon.request(
                    layout,
                    message,
                    progress,
                    on_accepted=None if progress is None else progress.accepted,
                    on_notice=notice,
                )
                break
            except RemoteError as exc:
                raise _as_catalogue_error(exc) or exc from None
            except daemon.DaemonGone:
                # the daemon we found was just exiting (its last service went away): anew
                if attempt == 2:
                    raise
    finally:
        if progress is not None:
            progress.close()
    exiting = control.valid_pid(result.pop("daemon_exiting", None))
    if exiting is not None:
        # nothing is left to supervise: return once the daemon is gone, so a command right
        # after this one starts a fresh daemon rather than meeting the exiting one
        daemon.wait_exit(layout, exiting)
    _finish(result, json_output)


def up(
    names: Names = None,
    profile: ProfileFlag = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the start plan only.")] = False,
    foreground: Annotated[
        bool,
        typer.Option(
            "--foreground",
            help="Run here, not in the daemon; stream output; Ctrl-C stops all.",
        ),
    ] = False,
    rollback: Annotated[
        bool,
        typer.Option("--rollback", help="On failure, stop what this up started."),
    ] = False,
    no_recreate: Annotated[
        bool,
        typer.Option(
            "--no-recreate",
            help="Keep running services as they are even if their definition changed.",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Start SERVICE… and what they need, bottom-up, each gated on its readiness probe.

    Running services whose definition changed (command, env after interpolation, probes…)
    are recreated, and the changed keys are named. Also `svcorch start`.
    """
    if not dry_run and not foreground:
        fields = {"services": list(names or []), "rollback": rollback, "no_recreate": no_recreate}
        _act("up", fields, json_output)
        return
    from svcorch import plan, render

    catalogue, graph = load(expanded=True)
    selected = plan.select_up(catalogue, graph, names or [], options().profiles)
    if dry_run:
        start_plan = plan.up_plan(catalogue, graph, selected)
        recreate = {} if no_recreate else _recreate_plan(list(names or []))
        if want_json(json_output):
            write(render.json_text({**start_plan.to_json(), "recreate": recreate}))
        else:
            console().print(render.recreate_text(recreate, planned=True), end="")
            console().print(render.plan_text(start_plan), end="")
        return
    raise typer.Exit(_foreground(catalogue, selected))


def _recreate_plan(names: list[str]) -> dict[str, list[str]]:
    """What the running daemon would recreate for an up now; nothing when none runs."""
    from svcorch import control

    connection = control.connect(_layout().socket)
    if connection is None:
        return {}
    message = {
        "op": "plan",
        **_identity(),
        "environ": _environ(),
        "services": names,
        "profiles": options().profiles,
    }
    with connection:
        result = connection.request(message)
    recreate = result.get("recreate") or {}
    return {str(k): [str(c) for c in v] for k, v in recreate.items()}


def _foreground(catalogue: Any, selected: set[str]) -> int:
    from svcorch import render
    from svcorch.commands import foreground

    out = console()
    names = sorted(catalogue.services)
    show_event = _event_printer(names)
    show_line = LinePrinter(names, flush=True)
    hooks = foreground.Hooks(
        on_event=lambda event: show_event(event.to_dict()),
        on_line=show_line,
        on_outcome=lambda outcome: out.print(
            render.outcome_text(_masked(outcome.to_dict()), daemon=False), end=""
        ),
        on_stopping=lambda why: out.print(f"stopping everything ({why})", style="bold"),
        on_notice=notice,
    )
    return foreground.run(catalogue, _layout(), selected, hooks, _environ(), options().project)


class LinePrinter:
    """Log lines as ``name | line``: each one whole, written as it is, never wrapped or cut
    (a pipe, grep and a narrow terminal all get the same line); the prefix is coloured on a
    terminal only."""

    def __init__(self, services: list[str], *, flush: bool) -> None:
        from rich.text import Text

        from svcorch import render

        width = max((len(s) for s in services), default=0)
        out = console()
        self.flush = flush
        self.prefixes: dict[str, str] = {}
        for index, service in enumerate(services):
            colour = render.SERVICE_COLOURS[index % len(render.SERVICE_COLOURS)]
            with out.capture() as captured:  # the prefix's ANSI codes, once; none in a pipe
                out.print(Text(f"{service:<{width}} | ", style=colour), end="", soft_wrap=True)
            self.prefixes[service] = captured.get()

    def __call__(self, service: str, line: str) -> None:
        sys.stdout.write(f"{self.prefixes[service]}{line}\n")
        if self.flush:
            sys.stdout.flush()


def down(
    names: Names = None,
    profile: ProfileFlag = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the stop plan only.")] = False,
    timeout: TimeoutFlag = None,
    json_output: JsonFlag = False,
) -> None:
    """Stop SERVICE… and everything that depends on them (default: all), top-down.

    Also `svcorch stop`.
    """
    from svcorch.commands import daemon

    stop_timeout = _duration(timeout, "--timeout")
    layout = _layout()
    if dry_run or not daemon.running(layout):
        from svcorch import plan

        catalogue, graph = load(expanded=True)
        selected = plan.select_down(catalogue, graph, names or [], options().profiles)
        if dry_run:
            from svcorch import render

            stop_plan = plan.down_plan(catalogue, graph, selected)
            if want_json(json_output):
                write(render.json_text(stop_plan.to_json()))
            else:
                console().print(render.plan_text(stop_plan), end="")
            return
        from svcorch import identity
        from svcorch.commands import status

        # a leader alive, what a dead leader's group or run left, or a run no record names
        # (found by this state dir's run identity): a new daemon adopts and stops it
        if not status.leftovers(catalogue, layout, notice) and not identity.find_runs(layout.root):
            _finish({"action": "down", "ok": True, "done": [], "already": []}, json_output)
            return
        # services a killed daemon left (a main process, or what remains of its group):
        # a new daemon adopts them, then stops them
    _act("down", {"services": list(names or []), "timeout": stop_timeout}, json_output)


def restart(
    names: Annotated[
        list[str],
        typer.Argument(
            metavar="SERVICE",
            help="Services to restart.",
            autocompletion=_complete_service,
        ),
    ],
    timeout: TimeoutFlag = None,
    json_output: JsonFlag = False,
) -> None:
    """Stop SERVICE… and their dependents top-down, start them again bottom-up, gated."""
    fields = {"services": names, "timeout": _duration(timeout, "--timeout")}
    _act("restart", fields, json_output)


def status(names: Names = None, json_output: JsonFlag = False) -> None:
    """State, pid, uptime, restarts and last detail of each service.

    Also `svcorch ps`.
    """
    from svcorch import render
    from svcorch.commands import status as status_command

    rows = _masked(
        status_command.run(
            _layout(), list(names or []), lambda: load(expanded=True), _identity(), on_notice=notice
        )
    )
    if want_json(json_output):
        write(render.json_text(rows))
    else:
        console().print(render.status_table(rows))


def logs(
    names: Names = None,
    follow: Annotated[
        bool,
        typer.Option("-f", "--follow", help="Keep printing new lines until Ctrl-C."),
    ] = False,
    lines: Annotated[
        int, typer.Option("-n", "--lines", metavar="N", help="Lines per service first.")
    ] = 20,
) -> None:
    """Print services' logs, prefixed and coloured; -f follows across rotations and restarts."""
    from svcorch.commands import logs as logs_command

    _, graph = load(expanded=True)
    graph.check_known(names or [])
    if lines < 0:
        raise UsageError("--lines must not be negative")
    services = graph.members(names) if names else list(graph.start_order())
    layout = _layout()
    emit = LinePrinter(services, flush=follow)
    if not follow:
        for service, line in logs_command.initial(layout, services, lines):
            emit(service, line)
        sys.stdout.flush()
        return
    first, followers = logs_command.open_followers(layout, services, lines)
    for service, line in first:
        emit(service, line)
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda s, _: stopped.append(s))
    try:
        logs_command.follow(followers, emit, lambda: bool(stopped))
    except KeyboardInterrupt:
        sys.stdout.flush()
        raise typer.Exit(130) from None


def analyze(json_output: JsonFlag = False) -> None:
    """The critical chain of the last up, with each service's start -> ready time."""
    from svcorch import render
    from svcorch.commands import analyze as analyze_command

    _, graph = load(expanded=True)
    result = analyze_command.run(_layout(), graph).to_dict()
    if want_json(json_output):
        write(render.json_text(result))
    else:
        console().print(render.analysis_text(result), end="")
