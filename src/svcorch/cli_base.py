"""What every CLI module shares: the global options, the console, output, loading the catalogue.

The command modules (``cli_catalogue``, ``cli_runtime``, ``cli_check``) import this; ``cli``
imports them and builds the app. Nothing here imports another CLI module: one direction.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from svcorch import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from svcorch.graph import ServiceGraph
    from svcorch.model import Catalogue

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CRASH = 3
EXIT_INTERRUPTED = 130


@dataclass
class Options:
    """Global options, resolved once."""

    file: Path = Path("services.yaml")
    state_dir: Path | None = None
    profiles: list[str] = field(default_factory=list)
    json: bool = False
    verbosity: int = 0

    @property
    def resolved_state_dir(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir.absolute()
        return (self.file.absolute().parent / ".svcorch").absolute()


_options = Options()


def options() -> Options:
    return _options


def _version(value: bool) -> None:
    if value:
        typer.echo(f"svcorch {__version__}")
        raise typer.Exit(EXIT_OK)


def global_options(
    file: Annotated[
        Path | None,
        typer.Option(
            "-f",
            "--file",
            envvar="SVCORCH_FILE",
            help="The catalogue.",
            show_default="./services.yaml",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="SVCORCH_STATE_DIR",
            help="Where state, logs and the control socket live.",
            show_default=".svcorch/ beside the catalogue",
        ),
    ] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option("--profile", help="Also select services with this profile (repeatable)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True)] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    global _options  # noqa: PLW0603 - one process, one set of global options
    _options = Options(
        file=file if file is not None else Path("services.yaml"),
        state_dir=state_dir,
        profiles=list(profile or []),
        json=json_output,
        verbosity=-1 if quiet else verbose,
    )


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # not a terminal (CI logs, pipes): wide lines rather than details folded at 80 columns
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, width=width)


def write(text: str) -> None:
    """Plain text to stdout (dot, JSON, YAML): no markup, no wrapping."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def load(*, expanded: bool = False, check_accounts: bool = True) -> tuple[Catalogue, ServiceGraph]:
    """The catalogue and its graph, with SVCORCH_STATE_DIR available to interpolation.

    ``expanded``: as the runtime sees it, each replicated service as its replicas
    (``worker#0``, ...; a name typed by the user stands for all of them). ``check_accounts``:
    ``user:``/``group:`` must exist here (not for a catalogue exported elsewhere)."""
    from svcorch import catalogue as catalogue_module
    from svcorch import replicas
    from svcorch.graph import ServiceGraph

    environ = dict(os.environ)
    environ["SVCORCH_STATE_DIR"] = str(_options.resolved_state_dir)
    catalogue = catalogue_module.load(_options.file, environ=environ, check_accounts=check_accounts)
    if expanded:
        catalogue = replicas.expand(catalogue)
    return catalogue, ServiceGraph.from_catalogue(catalogue)


def want_json(local: bool) -> bool:
    return local or _options.json


def _add_profiles(values: list[str] | None) -> list[str] | None:
    # `svcorch up --profile web` means the same as `svcorch --profile web up`
    for value in values or []:
        if value not in _options.profiles:
            _options.profiles.append(value)
    return values


ProfileFlag = Annotated[
    list[str] | None,
    typer.Option(
        "--profile",
        help="Also select services with this profile (repeatable).",
        callback=_add_profiles,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Names = Annotated[
    list[str] | None, typer.Argument(help="Services (default: all selected).", show_default=False)
]
