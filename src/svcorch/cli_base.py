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
    from svcorch.redaction import Redactor
    from svcorch.state import StateLayout

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
_redactor: Redactor | None = None  # built when first needed, from what `load` read
_secrets_source: tuple[Catalogue, dict[str, str]] | None = None


def options() -> Options:
    return _options


def redactor() -> Redactor:
    """What everything printed or written passes through: every secret of the catalogue
    once one is loaded, else those of the environment (``up`` leaves loading to the daemon,
    which masks its own messages)."""
    global _redactor  # noqa: PLW0603 - one process, one catalogue
    if _redactor is None:
        from svcorch.redaction import Redactor

        if _secrets_source is not None:
            _redactor = Redactor.for_catalogue(*_secrets_source)
        else:
            _redactor = Redactor.for_environment(os.environ)
    return _redactor


def forget_secrets() -> None:
    """A new run of the CLI (in one process, as tests do) masks with its own catalogue's."""
    global _redactor, _secrets_source  # one process, one catalogue
    _redactor, _secrets_source = None, None


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


def load() -> tuple[Catalogue, ServiceGraph]:
    """The catalogue and its graph, with SVCORCH_STATE_DIR available to interpolation."""
    from svcorch import catalogue as catalogue_module
    from svcorch.graph import ServiceGraph

    global _redactor, _secrets_source  # one process, one catalogue
    environ = dict(os.environ)
    environ["SVCORCH_STATE_DIR"] = str(_options.resolved_state_dir)
    catalogue = catalogue_module.load(_options.file, environ=environ)
    # what is printed from now on is masked with this catalogue's secrets (built lazily:
    # `validate` and `graph` print none)
    _redactor, _secrets_source = None, (catalogue, environ)
    return catalogue, ServiceGraph.from_catalogue(catalogue)


def state_layout() -> StateLayout:
    """The state directory, its ownership and modes checked (every command that uses it)."""
    from svcorch.state import StateLayout
    from svcorch.statedir import secure

    return StateLayout(secure(_options.resolved_state_dir))


def notice(text: str) -> None:
    """Something the user must hear about that is not an error: one line on stderr (so
    ``--json`` output stays the only thing on stdout)."""
    sys.stderr.write(f"svcorch: {text}\n")
    sys.stderr.flush()


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
