"""CLI: `svcorch web`, the HTTP API, metrics and page, served beside the daemon."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from svcorch.cli_base import load, options, redactor, state_layout


def web(
    bind: Annotated[
        str,
        typer.Option(
            "--bind",
            metavar="HOST:PORT",
            help="HOST:PORT to listen on; a host other than the loopback needs a token.",
        ),
    ] = "127.0.0.1:8765",
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="A file (mode 0600) whose first line is the token (else SVCORCH_WEB_TOKEN).",
            show_default="SVCORCH_WEB_TOKEN, else one made at start in STATE/web.token",
        ),
    ] = None,
) -> None:
    """Serve the stack's page, HTTP API and Prometheus metrics until Ctrl-C."""
    from svcorch import render
    from svcorch.commands.daemon import client_environment
    from svcorch.errors import UsageError
    from svcorch.web import security
    from svcorch.web.backend import Backend
    from svcorch.web.server import App, WebServer

    host, port = security.parse_bind(bind)
    token = security.read_token(token_file, dict(os.environ))
    if token is None and not security.is_loopback(host):
        raise UsageError(
            f"--bind {bind}: a host other than the loopback needs a token"
            f" (--token-file FILE or {security.TOKEN_ENV})"
        )
    load()  # a broken catalogue is one line and exit 2 now, not a 422 on every page load
    layout = state_layout()
    where = "--token-file" if token_file is not None else security.TOKEN_ENV
    if token is None:
        # actions always need a token: make one only this user can read
        from svcorch.state import ensure_state_dir

        ensure_state_dir(layout.root)
        token = security.new_token()
        security.write_token(layout.root / "web.token", token)
        where = str(layout.root / "web.token")
    backend = Backend(
        layout=layout,
        file=options().file,
        environ=client_environment(options().resolved_state_dir),
        profiles=options().profiles,
        loader=load,
        redactor=redactor,
        graph_json=render.graph_document,
        project=options().project,
    )
    stopping = threading.Event()
    app = App(
        backend, security.Guard(host, port, token), _log, _crash_writer(layout.root), stopping
    )
    try:
        server = WebServer((host, port), app)
    except OSError as exc:
        raise UsageError(f"--bind {bind}: cannot listen there: {exc.strerror or exc}") from None
    shown = f"[{host}]" if ":" in host else host
    _log(f"serving http://{shown}:{server.server_address[1]}/ (actions need the token: {where})")
    signal.signal(signal.SIGTERM, lambda s, _: stopping.set())
    signal.signal(signal.SIGINT, lambda s, _: stopping.set())
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    stopping.wait()
    server.shutdown()
    server.server_close()


def _log(line: str) -> None:
    sys.stderr.write(f"svcorch web: {line}\n")
    sys.stderr.flush()


def _crash_writer(root: Path) -> Callable[[BaseException], str]:
    from svcorch.statedir import open_private

    def crash(exc: BaseException) -> str:
        path = root / "crash.log"
        text = redactor().text("".join(traceback.format_exception(exc)))
        try:
            with os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND), "a") as log:
                log.write(text)
        except OSError:
            return "the web server's standard error"
        _log(text.rstrip().splitlines()[-1])
        return str(path)

    return crash
