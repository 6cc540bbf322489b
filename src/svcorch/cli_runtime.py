"""CLI commands that plan or act on services: up, down, status, logs, restart, analyze."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from svcorch.cli import JsonFlag, Names, app, console, load, options, want_json, write
from svcorch.errors import UsageError

if TYPE_CHECKING:
    from svcorch.state import StateLayout


def _layout() -> StateLayout:
    from svcorch.state import StateLayout

    return StateLayout(options().resolved_state_dir)


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


def _event_printer(names: list[str]) -> Any:
    """Progress: one line per transition (a live table would hide history in CI logs)."""
    from svcorch import render

    out = console()
    width = max((len(n) for n in names), default=8)
    quiet = options().verbosity < 0

    def show(event: dict[str, Any]) -> None:
        if not quiet:
            out.print(render.event_line(event, width))

    return show


def _finish(result: dict[str, Any], json_output: bool) -> None:
    from svcorch import render

    if want_json(json_output):
        write(render.json_text(result))
    else:
        console().print(render.outcome_text(result), end="")
    if not result.get("ok"):
        raise typer.Exit(1)


@app.command()
def up(
    names: Names = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the start plan only.")] = False,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Run here, stream output; Ctrl-C stops all.")
    ] = False,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="On failure, stop what this up started.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Start SERVICE… and what they need, bottom-up, each gated on its readiness probe."""
    from svcorch import plan, render

    catalogue, graph = load()
    selected = plan.select_up(catalogue, graph, names or [], options().profiles)
    if dry_run:
        start_plan = plan.up_plan(catalogue, graph, selected)
        if want_json(json_output):
            write(render.json_text(start_plan.to_json()))
        else:
            console().print(render.plan_text(start_plan), end="")
        return
    if foreground:
        raise typer.Exit(_foreground(catalogue, selected))
    from svcorch.commands import daemon

    layout = _layout()
    environ = _environ()
    daemon.ensure(layout, options().file, environ)
    printer = None if want_json(json_output) else _event_printer(sorted(selected))
    result = daemon.request(
        layout,
        {
            "op": "up",
            "file": str(options().file.absolute()),
            "environ": environ,
            "services": list(names or []),
            "profiles": options().profiles,
            "rollback": rollback,
        },
        printer,
    )
    _finish(result, json_output)


def _foreground(catalogue: Any, selected: set[str]) -> int:
    from svcorch import render
    from svcorch.commands import foreground

    out = console()
    names = sorted(catalogue.services)
    width = max(len(n) for n in names)
    colours = {
        n: render.SERVICE_COLOURS[i % len(render.SERVICE_COLOURS)] for i, n in enumerate(names)
    }
    show_event = _event_printer(names)
    hooks = foreground.Hooks(
        on_event=lambda event: show_event(event.to_dict()),
        on_line=lambda service, line: out.print(
            render.log_line(service, line, width, colours[service]), markup=False
        ),
        on_outcome=lambda outcome: out.print(render.outcome_text(outcome.to_dict()), end=""),
        on_stopping=lambda why: out.print(f"stopping everything ({why})", style="bold"),
    )
    return foreground.run(catalogue, _layout(), selected, hooks, _environ())


@app.command()
def down(
    names: Names = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the stop plan only.")] = False,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="Override every stop timeout, e.g. 5s.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Stop SERVICE… and everything that depends on them (default: all), top-down."""
    from svcorch import plan, render

    catalogue, graph = load()
    selected = plan.select_down(catalogue, graph, names or [], options().profiles)
    if dry_run:
        stop_plan = plan.down_plan(catalogue, graph, selected)
        if want_json(json_output):
            write(render.json_text(stop_plan.to_json()))
        else:
            console().print(render.plan_text(stop_plan), end="")
        return
    stop_timeout = _duration(timeout, "--timeout")
    from svcorch.commands import daemon, status

    layout = _layout()
    if not daemon.running(layout) and not any(
        row["pid"] for row in status.offline(catalogue, layout, [])
    ):
        _finish({"action": "down", "ok": True, "done": [], "already": []}, json_output)
        return
    environ = _environ()
    daemon.ensure(layout, options().file, environ)  # adopts what a killed daemon left
    pid = daemon.daemon_pid(layout)
    printer = None if want_json(json_output) else _event_printer(sorted(selected))
    result = daemon.request(
        layout,
        {
            "op": "down",
            "file": str(options().file.absolute()),
            "environ": environ,
            "services": list(names or []),
            "profiles": options().profiles,
            "timeout": stop_timeout,
        },
        printer,
    )
    if not names:
        # a down of everything ends the daemon: return only once it is gone too
        daemon.wait_exit(layout, pid)
    _finish(result, json_output)


@app.command()
def restart(
    names: Annotated[list[str], typer.Argument(help="Services to restart.")],
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="Override every stop timeout, e.g. 5s.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Stop SERVICE… and their dependents top-down, start them again bottom-up, gated."""
    from svcorch.commands import daemon

    _, graph = load()
    graph.check_known(names)
    layout = _layout()
    environ = _environ()
    daemon.ensure(layout, options().file, environ)
    printer = None if want_json(json_output) else _event_printer(sorted(graph.select_down(names)))
    result = daemon.request(
        layout,
        {
            "op": "restart",
            "file": str(options().file.absolute()),
            "environ": environ,
            "services": names,
            "timeout": _duration(timeout, "--timeout"),
        },
        printer,
    )
    _finish(result, json_output)


@app.command()
def status(names: Names = None, json_output: JsonFlag = False) -> None:
    """State, pid, uptime, restarts and last detail of each service."""
    from svcorch import render
    from svcorch.commands import status as status_command

    catalogue, graph = load()
    graph.check_known(names or [])
    rows = status_command.run(catalogue, _layout(), list(names or []))
    if want_json(json_output):
        write(render.json_text(rows))
    else:
        console().print(render.status_table(rows))


@app.command()
def logs(
    names: Names = None,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", help="Lines per service first.")] = 20,
) -> None:
    """Print services' logs, prefixed and coloured; -f follows across rotations and restarts."""
    from svcorch import render
    from svcorch.commands import logs as logs_command

    _, graph = load()
    graph.check_known(names or [])
    if lines < 0:
        raise UsageError("--lines must not be negative")
    services = list(names) if names else list(graph.start_order())
    layout = _layout()
    out = console()
    width = max(len(s) for s in services)
    colours = {
        s: render.SERVICE_COLOURS[i % len(render.SERVICE_COLOURS)] for i, s in enumerate(services)
    }

    def emit(service: str, line: str) -> None:
        out.print(render.log_line(service, line, width, colours[service]), markup=False)

    if not follow:
        for service, line in logs_command.initial(layout, services, lines):
            emit(service, line)
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


@app.command()
def analyze(json_output: JsonFlag = False) -> None:
    """The critical chain of the last up, with each service's start -> ready time."""
    from svcorch import render
    from svcorch.commands import analyze as analyze_command

    _, graph = load()
    result = analyze_command.run(_layout(), graph).to_dict()
    if want_json(json_output):
        write(render.json_text(result))
    else:
        console().print(render.analysis_text(result), end="")
