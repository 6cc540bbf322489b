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
from svcorch.errors import UsageError

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
    project_name: str | None = None  # -p
    _resolved: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def project(self) -> str:
        """-p, else the catalogue's name, else its path (``svcorch.project``)."""
        if "project" not in self._resolved:
            from svcorch.project import project_name

            self._resolved["project"] = project_name(self.file, self.project_name, os.environ)
        return str(self._resolved["project"])

    @property
    def resolved_state_dir(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir.absolute()
        if "state_dir" not in self._resolved:
            from svcorch.project import default_state_dir

            self._resolved["state_dir"] = default_state_dir(self.file, self.project)
        return Path(str(self._resolved["state_dir"]))


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


COMPLETE_VAR = "_SVCORCH_COMPLETE"  # the variable the completion scripts set to ask
SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def _shell(given: str, flag: str) -> str:
    """The shell named, else the one this command runs under."""
    shell = given
    if not shell:
        # typer's detection (shellingham, from the process tree), else the login shell
        from typer._completion_shared import _get_shell_name

        shell = _get_shell_name() or Path(os.environ.get("SHELL", "")).name
    if shell not in SHELLS:
        said = f"{given!r} is not a shell svcorch completes" if given else "cannot tell your shell"
        raise UsageError(f"{flag}: {said}; name one of {', '.join(SHELLS)}")
    return shell


def _show_completion(value: str | None) -> None:
    if value is None:
        return
    from typer._completion_shared import get_completion_script

    shell = _shell(value, "--show-completion")
    typer.echo(get_completion_script(prog_name="svcorch", complete_var=COMPLETE_VAR, shell=shell))
    raise typer.Exit(EXIT_OK)


def _install_completion(value: str | None) -> None:
    if value is None:
        return
    from typer._completion_shared import install

    shell, path = install(
        shell=_shell(value, "--install-completion"), prog_name="svcorch", complete_var=COMPLETE_VAR
    )
    typer.echo(f"{shell} completion installed in {path}; it works in shells started from now on")
    raise typer.Exit(EXIT_OK)


def global_options(
    file: Annotated[
        Path | None,
        typer.Option(
            "-f",
            "--file",
            envvar="SVCORCH_FILE",
            metavar="PATH",
            help="The catalogue.",
            show_default="./services.yaml",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="SVCORCH_STATE_DIR",
            metavar="PATH",
            help="Where state, logs and the control socket live.",
            show_default=".svcorch/ beside the catalogue, or .svcorch/projects/NAME/",
        ),
    ] = None,
    project_name: Annotated[
        str | None,
        typer.Option(
            "-p",
            "--project-name",
            envvar="SVCORCH_PROJECT_NAME",
            metavar="NAME",
            help="The project: one state directory serves one project.",
            show_default="the catalogue's name:, else its path",
        ),
    ] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile",
            metavar="NAME",
            help="Also select services with this profile (repeatable).",
            show_default="none: services without profiles",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "-v",
            "--verbose",
            count=True,
            help="An internal error (exit 3) also prints its traceback here.",
        ),
    ] = 0,
    quiet: Annotated[
        bool,
        typer.Option(
            "-q",
            "--quiet",
            help="No progress lines from up, down and restart: only errors and results.",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    show_completion: Annotated[
        str | None,
        typer.Option(
            "--show-completion",
            metavar="[SHELL]",
            callback=_show_completion,
            is_eager=True,
            help="Print the completion script for SHELL (bash, zsh, fish, powershell).",
            show_default="your shell",
        ),
    ] = None,
    install_completion: Annotated[
        str | None,
        typer.Option(
            "--install-completion",
            metavar="[SHELL]",
            callback=_install_completion,
            is_eager=True,
            help="Install completion for SHELL in its startup file.",
            show_default="your shell",
        ),
    ] = None,
) -> None:
    global _options  # noqa: PLW0603 - one process, one set of global options
    _options = Options(
        file=file if file is not None else Path("services.yaml"),
        state_dir=state_dir,
        profiles=list(profile or []),
        json=json_output,
        verbosity=-1 if quiet else verbose,
        project_name=project_name or None,
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

    global _redactor, _secrets_source  # one process, one catalogue
    environ = dict(os.environ)
    environ["SVCORCH_STATE_DIR"] = str(_options.resolved_state_dir)
    catalogue = catalogue_module.load(_options.file, environ=environ, check_accounts=check_accounts)
    if expanded:
        catalogue = replicas.expand(catalogue)
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


def _complete_service(ctx: typer.Context, incomplete: str) -> list[str]:
    """Service names for shell completion, from the catalogue -f names (or ./services.yaml)."""
    given = ctx.find_root().params
    file = Path(given.get("file") or os.environ.get("SVCORCH_FILE") or "services.yaml")
    state_dir = given.get("state_dir") or os.environ.get("SVCORCH_STATE_DIR")
    resolved = Options(file=file, state_dir=Path(state_dir) if state_dir else None)
    environ = {**os.environ, "SVCORCH_STATE_DIR": str(resolved.resolved_state_dir)}
    try:
        from svcorch import catalogue as catalogue_module

        services = catalogue_module.load(file, environ=environ).services
    except Exception:  # a broken or missing catalogue: nothing to offer, never a traceback
        return []
    return [name for name in services if name.startswith(incomplete)]


ProfileFlag = Annotated[
    list[str] | None,
    typer.Option(
        "--profile",
        metavar="NAME",
        help="Also select services with this profile (repeatable).",
        show_default="none: services without profiles",
        callback=_add_profiles,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Names = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="SERVICE",
        help="Services (default: all the profiles select).",
        show_default=False,
        autocompletion=_complete_service,
    ),
]
TimeoutFlag = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        help="Override every stop timeout, e.g. 5s.",
        show_default="each service's stop.timeout",
    ),
]
