"""`svcorch export`: parse the options and delegate to ``svcorch.commands.export``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from svcorch.cli_base import JsonFlag, Names, ProfileFlag, load, options, want_json, write


def export(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="kubernetes, compose, systemd or supervisord.",
            show_default=False,
        ),
    ],
    names: Names = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Write the files here.",
            show_default="print a preview",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on anything the target cannot express.")
    ] = False,
    image: Annotated[
        list[str] | None,
        typer.Option(
            "--image",
            metavar="NAME=IMAGE",
            help="A service's container image (repeatable).",
            show_default="the catalogue's image:",
        ),
    ] = None,
    svcorch_image: Annotated[
        str | None,
        typer.Option(
            "--svcorch-image",
            metavar="IMAGE",
            help="An image with svcorch, for the readiness gates of Kubernetes and compose.",
            show_default="none: needed when a service waits on a probe",
        ),
    ] = None,
    profile: ProfileFlag = None,
    json_output: JsonFlag = False,
) -> None:
    """Export SERVICE… (default: all) to Kubernetes, compose, systemd or supervisord."""
    from svcorch.commands import export as command

    command.check_target(target)
    catalogue, graph = load(check_accounts=False)  # the target host has its own users
    selected = command.select(catalogue, graph, names or [], options().profiles)
    request = command.request_for(
        catalogue,
        selected,
        out=out,
        state_dir=options().resolved_state_dir,
        images=command.parse_images(image or [], graph),
        svcorch_image=svcorch_image,
        svcorch=_svcorch_program(),
    )
    outcome = command.run(target, request, strict=strict, out=out)
    for warning in outcome.warnings:
        sys.stderr.write(f"warning: export {target}: {warning}\n")
    if want_json(json_output):
        from svcorch.render import json_text

        write(json_text(outcome.to_dict()))
    elif outcome.preview is not None:
        write(outcome.preview)
    else:
        write("\n".join(outcome.files))


def _svcorch_program() -> str:
    """The svcorch that host exports (systemd, supervisord) call for their gates: this one."""
    beside = Path(sys.executable).parent / "svcorch"
    if beside.is_file():
        return str(beside)
    return shutil.which("svcorch") or "svcorch"
