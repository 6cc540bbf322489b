"""The typer app: global options, the error boundary, exit codes. Nothing else.

Commands parse their arguments and delegate to ``svcorch.commands``; output goes through
``svcorch.render``. Heavy modules are imported inside the commands that need them, so
``svcorch --help`` stays fast and never loads a probe's client library.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from svcorch import __version__
from svcorch.errors import CatalogueError, SvcorchError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from svcorch.graph import ServiceGraph
    from svcorch.model import Catalogue

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CRASH = 3
EXIT_INTERRUPTED = 130

# typer >= 0.17 vendors click (typer._click) and no longer installs it, so `import click` fails
# on a fresh install and `click.ClickException` would not catch typer's usage errors anyway.
# Both spellings derive BadParameter from a class named ClickException: take it from there.
_ClickException: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)

app = typer.Typer(
    name="svcorch",
    help="Start a stack of services in dependency order, gated on real readiness probes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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


@app.callback()
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


# -- shared helpers ----------------------------------------------------------------------------


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

    environ = dict(os.environ)
    environ["SVCORCH_STATE_DIR"] = str(_options.resolved_state_dir)
    catalogue = catalogue_module.load(_options.file, environ=environ)
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


# -- commands that need no running process ------------------------------------------------------


@app.command()
def validate(json_output: JsonFlag = False) -> None:
    """Check services.yaml and exit 0 with a summary, or print every problem and exit 2."""
    catalogue, graph = load()
    kinds = {kind: 0 for kind in ("managed", "oneshot", "external")}
    for service in catalogue.services.values():
        kinds[service.kind.value] += 1
    edges = graph.dag.number_of_edges()
    if want_json(json_output):
        from svcorch.render import json_text

        write(
            json_text(
                {
                    "ok": True,
                    "file": str(_options.file),
                    "services": len(graph),
                    "dependencies": edges,
                    **kinds,
                }
            )
        )
        return
    write(
        f"{_options.file}: ok — {len(graph)} services ({kinds['managed']} managed, "
        f"{kinds['oneshot']} oneshot, {kinds['external']} external), {edges} dependencies, "
        f"{len(graph.generations())} start waves"
    )


@app.command()
def graph(
    names: Names = None,
    dot: Annotated[bool, typer.Option("--dot", help="Graphviz dot.")] = False,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Mermaid `graph TD`.")] = False,
    as_tree: Annotated[bool, typer.Option("--tree", help="A tree (the default).")] = False,
    timings: Annotated[
        bool, typer.Option("--timings", help="With --dot: colour by the last up's start→ready.")
    ] = False,
) -> None:
    """Draw the dependency graph (of SERVICE… and what they need)."""
    from svcorch import render

    if sum((dot, mermaid, as_tree)) > 1:
        raise UsageError("choose one of --dot, --mermaid, --tree")
    catalogue, full = load()
    selected = full.select_up(names) if names else set(full.names)
    sub = full.subgraph(selected)
    if timings and not dot:
        raise UsageError("--timings goes with --dot")
    if dot:
        durations = None
        if timings:
            from svcorch.commands import analyze
            from svcorch.state import StateLayout

            durations = analyze.durations(StateLayout(_options.resolved_state_dir))
        write(render.dot(catalogue, sub, durations))
    elif mermaid:
        write(render.mermaid(catalogue, sub))
    else:
        console().print(render.tree(catalogue, sub))


@app.command()
def config(json_output: JsonFlag = False) -> None:
    """Print the resolved catalogue (interpolated, defaults filled, secrets as ***)."""
    from svcorch import render

    catalogue, _ = load()
    data = render.resolved_catalogue(catalogue)
    write(render.json_text(data) if want_json(json_output) else render.yaml_text(data))


@app.command()
def schema() -> None:
    """Print the JSON Schema of services.yaml (for editors)."""
    from svcorch import render

    write(render.json_text(render.json_schema()))


@app.command("import-supervisor")
def import_supervisor(
    path: Annotated[Path, typer.Argument(help="A supervisord.conf to convert.")],
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
    result = convert(text, source=str(path.absolute()))
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    write(result.yaml)


# -- the error boundary --------------------------------------------------------------------------


def _crash_log(exc: BaseException) -> Path | None:
    try:
        state_dir = _options.resolved_state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = state_dir / "crash.log"
        with path.open("a", encoding="utf-8") as log:
            log.write("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def _fail(lines: list[str], code: int) -> int:
    for line in lines:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()
    return code


def run(argv: list[str] | None = None) -> int:  # noqa: PLR0911 - one exit per error family
    """Run the CLI and return its exit code; every error becomes one line per problem."""
    try:
        result: Any = app(args=argv, standalone_mode=False, prog_name="svcorch")
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return _fail(["interrupted"], EXIT_INTERRUPTED)
    except _ClickException as exc:  # bad option, unknown command, missing argument
        exc.show()  # type: ignore[attr-defined]
        return EXIT_USAGE
    except CatalogueError as exc:
        return _fail([str(p) for p in exc.problems], exc.exit_code)
    except SvcorchError as exc:
        return _fail([f"svcorch: {line}" for line in str(exc).splitlines() or [""]], exc.exit_code)
    except KeyboardInterrupt:
        return _fail(["interrupted"], EXIT_INTERRUPTED)
    except BrokenPipeError:
        # `svcorch logs | head`: the reader left; nothing more to say
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:
        where = _crash_log(exc)
        detail = f" (traceback in {where})" if where else ""
        if _options.verbosity > 0:
            # -v: the developer at the terminal wants the traceback here too
            sys.stderr.write("".join(traceback.format_exception(exc)))
        return _fail([f"svcorch: internal error: {type(exc).__name__}: {exc}{detail}"], EXIT_CRASH)
    return int(result) if isinstance(result, int) else EXIT_OK


def main() -> NoReturn:
    sys.exit(run())


def _register_runtime_commands() -> None:
    # registering imports: each module adds its commands to `app`
    from svcorch import cli_check, cli_runtime  # noqa: F401


_register_runtime_commands()
