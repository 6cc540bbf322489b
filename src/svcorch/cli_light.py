"""The light client path: ``svcorch status``, ``down`` and ``restart`` answered by a running
daemon without building the typer app.

``status`` is what people type most, and run in loops; with a daemon it is one request and
one table. Building the typer app costs more than everything else together (typer vendors
click and inspects every command's signature; ``import typer`` alone is ~90 ms here, the
whole ``svcorch.cli`` ~270 ms under load), and none of it is needed to read
``status [SERVICE…] [--json]`` or to send a ``down``/``restart`` the daemon carries out.
So the console script enters here: the forms this module
understands, with a daemon that answers, are served with the standard library, ``control``,
``redaction`` and rich's table; anything else (another command, an option it does not know,
``--help``, no daemon, a daemon that just left) goes to the full CLI unchanged, which is why
the two paths cannot disagree on anything but speed. See docs/architecture.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from svcorch.state import StateLayout

LIGHT_COMMANDS = frozenset({"status", "down", "restart"})
_GLOBAL_VALUE = {
    "-f": "file",
    "--file": "file",
    "--state-dir": "state_dir",
    "-p": "project",
    "--project-name": "project",
}


class _Heavy(Exception):
    """Not a form the light path serves: hand the argv to the full CLI."""


def _parse(argv: list[str]) -> tuple[dict[str, Any], str, list[str]]:
    """Global options, the command, its arguments; _Heavy for anything unfamiliar."""
    found: dict[str, Any] = {"json": False, "quiet": False}
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        word = rest.pop(0)
        key, sep, value = word.partition("=")
        if key in _GLOBAL_VALUE:
            if not sep:
                if not rest:
                    raise _Heavy
                value = rest.pop(0)
            found[_GLOBAL_VALUE[key]] = value
        elif word == "--json":
            found["json"] = True
        elif word in ("-q", "--quiet"):
            found["quiet"] = True
        else:
            raise _Heavy  # -v, --profile, --help, --version: the full CLI knows them
    if not rest or rest[0] not in LIGHT_COMMANDS:
        raise _Heavy
    return found, rest[0], rest[1:]


def _names_args(args: list[str]) -> tuple[list[str], bool]:
    names: list[str] = []
    json_output = False
    for word in args:
        if word == "--json":
            json_output = True
        elif word.startswith("-") or word in names:
            raise _Heavy  # an option of the full CLI's, or its own message for a repeat
        else:
            names.append(word)
    return names, json_output


def _catalogue(found: dict[str, Any]) -> Path:
    return Path(found.get("file") or os.environ.get("SVCORCH_FILE") or "services.yaml")


def _project(found: dict[str, Any]) -> str:
    """As the full CLI decides it: -p, else the catalogue's name, else its path."""
    from svcorch.project import project_name

    override = found.get("project") or os.environ.get("SVCORCH_PROJECT_NAME")
    return project_name(_catalogue(found), override, os.environ)


def _explicit_state_dir(found: dict[str, Any]) -> str | None:
    return found.get("state_dir") or os.environ.get("SVCORCH_STATE_DIR") or None


def _state_dir(found: dict[str, Any]) -> Path:
    state_dir = _explicit_state_dir(found)
    if state_dir:
        return Path(state_dir).absolute()
    from svcorch.project import default_state_dir

    return default_state_dir(_catalogue(found), _project(found))


def _identity(found: dict[str, Any]) -> dict[str, str]:
    """Who asks, in every request, as the full CLI says it: the daemon refuses another
    project or another catalogue."""
    return {
        "project": _project(found),
        "file": str(_catalogue(found).absolute()),
        "cwd": str(Path.cwd()),
    }


def run(argv: list[str]) -> int | None:
    """The exit code when served here; None to hand the argv to the full CLI."""
    try:
        found, command, args = _parse(argv)
        names, json_output = _names_args(args)
    except _Heavy:
        return None
    if command == "restart" and not names:
        return None  # the full CLI's usage error
    layout = _daemon_layout(found)
    if layout is None:
        return None
    json_output = json_output or bool(found["json"])
    if command == "status":
        return _status(layout, found, names, json_output)
    return _act(layout, found, command, names, json_output)


def _act(
    layout: StateLayout, found: dict[str, Any], op: str, names: list[str], json_output: bool
) -> int | None:
    """down/restart sent to the running daemon, its progress shown as the full CLI shows it.
    A refusal (unknown service, a catalogue problem) changed nothing: the full CLI asks
    again and words it its own way."""
    from svcorch import control
    from svcorch.commands import daemon

    environ = daemon.client_environment(layout.root)
    progress = None if json_output else _Progress(quiet=bool(found["quiet"]))
    message = {
        "op": op,
        **_identity(found),
        "environ": environ,
        "profiles": [],
        "services": names,
        "timeout": None,
    }
    try:
        result = daemon.request(
            layout,
            message,
            progress,
            on_accepted=None if progress is None else progress.accepted,
            on_notice=_notice,
        )
    except (control.RemoteError, daemon.DaemonGone):
        return None
    finally:
        if progress is not None:
            progress.close()
    exiting = control.valid_pid(result.pop("daemon_exiting", None))
    if exiting is not None:
        daemon.wait_exit(layout, exiting)
    return _finish(result, json_output)


def _finish(result: dict[str, Any], json_output: bool) -> int:
    from svcorch import render
    from svcorch.redaction import NAME_KEYS, Redactor

    result = Redactor.for_environment(os.environ).data(result, keep=NAME_KEYS)
    if json_output:
        _write(render.json_text(result))
    else:
        _console().print(render.outcome_text(result), end="")
    return 0 if result.get("ok") else 1


class _Progress:
    """The daemon's events as they come: the full CLI's display (``cli_runtime.Progress``),
    a live table on a terminal, one line per transition elsewhere."""

    def __init__(self, *, quiet: bool) -> None:
        self.width = 8
        self.quiet = quiet
        self.live_view = sys.stdout.isatty() and not quiet
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
        import time

        from svcorch import render
        from svcorch.redaction import NAME_KEYS, Redactor

        event = Redactor.for_environment(os.environ).data(event, keep=NAME_KEYS)
        if not self.live_view:
            if self._out is None:
                self._out = _console()
            self._out.print(render.event_line(event, self.width))
            return
        render.progress_update(self.rows, event, time.monotonic())
        if self._live is None:
            from rich.live import Live

            self._live = Live(
                render.ProgressTable(self.rows), console=_console(), refresh_per_second=8
            )
            self._live.start()
        self._live.refresh()

    def close(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None


def _console() -> Any:
    from rich.console import Console

    # as cli_base.console: not a terminal, wide lines rather than details folded at 80
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _write(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _daemon_layout(found: dict[str, Any]) -> StateLayout | None:
    """The state dir when it is safe and a daemon's socket is there, else None."""
    from svcorch.errors import SvcorchError
    from svcorch.project import check_owner
    from svcorch.state import StateLayout
    from svcorch.statedir import secure

    root = _state_dir(found)
    try:
        secure(root)  # the same ownership and mode checks as every command
        check_owner(
            root,
            _project(found),
            _catalogue(found),
            explicit=_explicit_state_dir(found) is not None,
        )
    except SvcorchError:
        return None  # the full CLI says what is wrong with it
    layout = StateLayout(root)
    return layout if layout.socket.exists() else None


def _status(
    layout: StateLayout, found: dict[str, Any], names: list[str], json_output: bool
) -> int | None:
    from svcorch import control
    from svcorch.errors import DaemonError

    connection = control.connect(layout.socket, timeout=2.0)
    if connection is None:
        return None
    notices: list[str] = []
    try:
        with connection:
            result = connection.request(
                {"op": "status", "services": names, **_identity(found)},
                None,
                None,
                notices.append,
            )
    except control.RemoteError as exc:
        return _fail(str(exc), exc.exit_code)
    except (DaemonError, OSError):
        return None  # it left just now: the full CLI reads the state file
    for text in notices:
        _notice(text)
    _print_status(result.get("services", []), json_output)
    return 0


def _notice(text: str) -> None:
    sys.stderr.write(f"svcorch: {_redacted(text)}\n")


def _redacted(text: str) -> str:
    from svcorch.redaction import Redactor

    return Redactor.for_environment(os.environ).text(text)


def _fail(message: str, code: int) -> int:
    for line in message.splitlines() or [""]:
        sys.stderr.write(_redacted(f"svcorch: {line}") + "\n")
    return code


def _print_status(rows: list[dict[str, Any]], json_output: bool) -> None:
    # the same masking and rendering as the full CLI's `status`
    from svcorch import render
    from svcorch.redaction import NAME_KEYS, Redactor

    rows = Redactor.for_environment(os.environ).data(rows, keep=NAME_KEYS)
    if json_output:
        _write(render.json_text(rows))
        return
    _console().print(render.status_table(rows))


def main() -> NoReturn:
    """The console script: the light path when it serves the argv, else the full CLI."""
    try:
        code = run(sys.argv[1:])
    except BrokenPipeError:
        sys.stderr.close()
        code = 0
    if code is None:
        from svcorch.cli import main as full

        full()
    sys.exit(code)
