"""CLI commands that read the catalogue and start nothing: validate, graph, config, schema,
import-supervisor. Registered on the app by ``svcorch.cli``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from svcorch.cli_base import (
    JsonFlag,
    Names,
    console,
    load,
    options,
    redactor,
    state_layout,
    want_json,
    write,
)
from svcorch.errors import UsageError


def validate(json_output: JsonFlag = False) -> None:
    """Check services.yaml and exit 0 with a summary, or print every problem and exit 2.

    Also warns of what `up` would refuse to start (exit 0 still): a program not found, a
    missing working directory, a declared port held by another process.
    """
    from svcorch.commands import validate as validate_command
    from svcorch.commands.daemon import client_environment
    from svcorch.state import StateLayout

    catalogue, graph = load()
    kinds = {kind: 0 for kind in ("managed", "oneshot", "external")}
    for service in catalogue.services.values():
        kinds[service.kind.value] += 1
    edges = graph.dag.number_of_edges()
    state_dir = options().resolved_state_dir
    warnings = validate_command.warnings(
        catalogue, graph, StateLayout(state_dir), options().profiles, client_environment(state_dir)
    )
    if want_json(json_output):
        from svcorch.render import json_text

        write(
            json_text(
                {
                    "ok": True,
                    "file": str(options().file),
                    "services": len(graph),
                    "dependencies": edges,
                    **kinds,
                    "warnings": warnings,
                }
            )
        )
        return
    write(
        f"{options().file}: ok — {len(graph)} services ({kinds['managed']} managed, "
        f"{kinds['oneshot']} oneshot, {kinds['external']} external), {edges} dependencies, "
        f"{len(graph.generations())} start waves"
    )
    for warning in warnings:
        sys.stderr.write(f"warning: {warning}\n")


def graph(
    names: Names = None,
    dot: Annotated[bool, typer.Option("--dot", help="Graphviz dot.")] = False,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Mermaid `graph TD`.")] = False,
    as_tree: Annotated[
        bool, typer.Option("--tree", help="A tree.", show_default="on, unless --dot or --mermaid")
    ] = False,
    timings: Annotated[
        bool,
        typer.Option(
            "--timings",
            help="With --dot: colour by the last up's start→ready.",
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Nodes (kind, probe) and edges (condition) as JSON.")
    ] = False,
) -> None:
    """Draw the dependency graph (of SERVICE… and what they need)."""
    from svcorch import render

    as_json = json_output or (options().json and not (dot or mermaid or as_tree))
    if sum((dot, mermaid, as_tree, as_json)) > 1:
        raise UsageError("choose one of --dot, --mermaid, --tree, --json")
    catalogue, full = load()
    selected = full.select_up(names) if names else set(full.names)
    sub = full.subgraph(selected)
    if timings and not dot:
        raise UsageError("--timings goes with --dot")
    if as_json:
        write(render.json_text(render.graph_document(catalogue, sub)))
    elif dot:
        durations = None
        if timings:
            from svcorch.commands import analyze

            durations = analyze.durations(state_layout())
        write(render.dot(catalogue, sub, durations))
    elif mermaid:
        write(render.mermaid(catalogue, sub))
    else:
        console().print(render.tree(catalogue, sub))


def config(json_output: JsonFlag = False) -> None:
    """Print the resolved catalogue (interpolated, defaults filled, secrets as ***)."""
    from svcorch import render

    catalogue, _ = load()
    data = render.resolved_catalogue(catalogue, redactor())
    write(render.json_text(data) if want_json(json_output) else render.yaml_text(data))


def schema() -> None:
    """Print the JSON Schema of services.yaml (for editors)."""
    from svcorch import render

    write(render.json_text(render.json_schema()))


def import_supervisor(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A supervisord.conf to convert.")],
) -> None:
    """Convert a supervisord config into a services.yaml skeleton (printed to stdout)."""
    from svcorch import limits
    from svcorch.importers.supervisor import convert

    try:  # as the catalogue is read: a FIFO or /dev/zero must not hang or exhaust us
        text = limits.read_regular_file(path, limits.MAX_CATALOGUE_BYTES).decode("utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    except limits.Unreadable as exc:
        raise UsageError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    # the path as given: warnings name it so, and %(here)s is known only for an absolute one
    result = convert(text, source=str(path))
    for warning in result.warnings:
        sys.stderr.write(f"{warning}\n")
    write(result.yaml)
