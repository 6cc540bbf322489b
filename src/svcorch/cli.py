"""The typer app: built here, from the command modules; the error boundary and exit codes.

Commands parse their arguments and delegate to ``svcorch.commands``; output goes through
``svcorch.render``. One direction: this module imports the command modules (``cli_catalogue``,
``cli_runtime``, ``cli_check``, ``cli_events``, ``cli_export``, ``cli_web``), which import
only ``cli_base``. Heavy modules
are imported inside the commands that need them, so ``svcorch --help`` stays fast and never loads a
probe's client library.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from svcorch import cli_catalogue, cli_check, cli_events, cli_export, cli_runtime, cli_web
from svcorch.cli_base import (
    COMPLETE_VAR,
    EXIT_CRASH,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    forget_secrets,
    global_options,
    options,
    redactor,
)
from svcorch.errors import CatalogueError, SvcorchError

# typer >= 0.17 vendors click (typer._click) and no longer installs it, so `import click` fails
# on a fresh install and `click.ClickException` would not catch typer's usage errors anyway.
# Both spellings derive BadParameter from a class named ClickException: take it from there.
_ClickException: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)


class _Argument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the metavar says it: SERVICE...


class _PlainHelp:
    """--help without typer's Python type labels (`<bool>`, `<list[str]>`, `<int>`).

    A flag shows none (help's own `-h` too); an option shows the metavar it declares
    (`--timeout DURATION`); an argument its metavar only (`[SERVICE]...`).
    """

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if isinstance(param, TyperArgument) and not isinstance(param, _Argument):
                param.__class__ = _Argument  # same object, one method different
            elif isinstance(param, TyperOption) and (param.is_flag or param.count):
                param.metavar = ""
        return params


class _Command(_PlainHelp, TyperCommand):
    pass


class _Group(_PlainHelp, TyperGroup):
    pass


app = typer.Typer(
    name="svcorch",
    cls=_Group,
    help="Start a stack of services in dependency order, gated on real readiness probes.",
    no_args_is_help=True,
    # our own --install-completion/--show-completion (cli_base) take the shell as a value
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback()(global_options)
COMMANDS: dict[str, Callable[..., Any]] = {  # in the order `--help` lists them
    "validate": cli_catalogue.validate,
    "graph": cli_catalogue.graph,
    "config": cli_catalogue.config,
    "schema": cli_catalogue.schema,
    "import-supervisor": cli_catalogue.import_supervisor,
    "up": cli_runtime.up,
    "down": cli_runtime.down,
    "restart": cli_runtime.restart,
    "status": cli_runtime.status,
    "logs": cli_runtime.logs,
    "events": cli_events.events,
    "analyze": cli_runtime.analyze,
    "check": cli_check.check,
    "export": cli_export.export,
    "web": cli_web.web,
}
# what supervisorctl and compose users type; listed, so that completion offers them too
ALIASES = {"start": "up", "stop": "down", "ps": "status"}
for name, command in COMMANDS.items():
    app.command(name, cls=_Command)(command)
for alias, name in ALIASES.items():
    app.command(alias, cls=_Command, help=f"The same as `svcorch {name}`.")(COMMANDS[name])


# -- the error boundary --------------------------------------------------------------------------


def _crash_log(exc: BaseException) -> Path | None:
    try:
        state_dir = options().resolved_state_dir
        from svcorch.statedir import open_private

        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = state_dir / "crash.log"
        # 0600: a traceback may quote anything the command was handling
        with os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND), "a", encoding="utf-8") as log:
            log.write(redactor().text("".join(traceback.format_exception(exc))))
        return path
    except OSError:
        return None


def _fail(lines: list[str], code: int) -> int:
    for line in lines:
        sys.stderr.write(redactor().text(line) + "\n")
    sys.stderr.flush()
    return code


def _optional_shell(argv: list[str]) -> list[str]:
    """`--show-completion` and `--install-completion` take the shell as an optional value
    (typer's options cannot): given none, an empty one means "detect it"."""
    for flag in ("--show-completion", "--install-completion"):
        if flag in argv:
            at = argv.index(flag) + 1
            if at == len(argv) or argv[at].startswith("-"):
                argv.insert(at, "")
    return argv


def run(argv: list[str] | None = None) -> int:  # noqa: PLR0911 - one exit per error family
    """Run the CLI and return its exit code; every error becomes one line per problem."""
    from svcorch.logconfig import quiet_terminal

    forget_secrets()  # each run masks with its own catalogue's secrets
    quiet_terminal()  # the terminal is for svcorch's output, never a library's log records
    if COMPLETE_VAR in os.environ:
        # the shell asks for completions (see `--show-completion`): typer answers and exits
        from typer._completion_classes import completion_init

        completion_init()
    try:
        args = _optional_shell(list(sys.argv[1:] if argv is None else argv))
        result: Any = app(args=args, standalone_mode=False, prog_name="svcorch")
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
        if options().verbosity > 0:
            # -v: the developer at the terminal wants the traceback here too
            sys.stderr.write(redactor().text("".join(traceback.format_exception(exc))))
        return _fail([f"svcorch: internal error: {type(exc).__name__}: {exc}{detail}"], EXIT_CRASH)
    return int(result) if isinstance(result, int) else EXIT_OK


def main() -> NoReturn:
    sys.exit(run())
