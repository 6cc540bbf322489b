"""CLI commands that plan or act on services: up, down (and, later, the runtime verbs)."""

from __future__ import annotations

from typing import Annotated

import typer

from svcorch.cli import JsonFlag, Names, app, console, load, options, want_json, write
from svcorch.errors import UsageError


@app.command()
def up(
    names: Names = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the start plan only.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Start SERVICE… and what they need, bottom-up, each gated on its readiness probe."""
    from svcorch import plan, render

    catalogue, graph = load()
    selected = plan.select_up(catalogue, graph, names or [], options().profiles)
    if dry_run:
        result = plan.up_plan(catalogue, graph, selected)
        if want_json(json_output):
            write(render.json_text(result.to_json()))
        else:
            console().print(render.plan_text(result), end="")
        return
    raise UsageError("`svcorch up` without --dry-run needs the runtime (not built yet)")


@app.command()
def down(
    names: Names = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the stop plan only.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Stop SERVICE… and everything that depends on them (default: all), top-down."""
    from svcorch import plan, render

    catalogue, graph = load()
    selected = plan.select_down(catalogue, graph, names or [], options().profiles)
    if dry_run:
        result = plan.down_plan(catalogue, graph, selected)
        if want_json(json_output):
            write(render.json_text(result.to_json()))
        else:
            console().print(render.plan_text(result), end="")
        return
    raise UsageError("`svcorch down` without --dry-run needs the runtime (not built yet)")
