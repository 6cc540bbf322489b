"""The HTTP layer of `svcorch web`: routes, the guard, error mapping, Server-Sent Events.

stdlib only (``http.server``, a thread per connection): the API is small, its clients are a
few browsers and a Prometheus scraper, and an event stream is a thread blocked on the
daemon's socket. Every answer is JSON (or the page, an SSE stream, the metrics text); an
error is ``{"error": "...", "status": N}``, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from svcorch.control import RemoteError
from svcorch.errors import CatalogueError, DaemonError, SvcorchError, UnknownService, UsageError
from svcorch.web import metrics
from svcorch.web.backend import Backend, bool_field, names_field, timeout_field
from svcorch.web.security import Guard, Refusal

MAX_BODY = 65_536  # bytes: an action's body is a few names
KEEPALIVE = 15.0  # seconds between SSE comments, so proxies and browsers keep the stream
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request (and to read a write)
MAX_STREAMS = 64  # open event and log streams; each holds a thread (and a daemon follower)
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as the OpenAPI document writes it
    handler: str
    # the page and its assets hold no data: a browser must get them to be asked the token
    public: bool = False

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


ROUTES = (
    Route("GET", "/", "page", public=True),
    Route("GET", "/static/{asset}", "asset", public=True),
    Route("GET", "/api/status", "status"),
    Route("GET", "/api/graph", "graph"),
    Route("GET", "/api/analyze", "analyze"),
    Route("GET", "/api/events", "events"),
    Route("GET", "/api/services/{name}/logs", "logs"),
    Route("POST", "/api/services/{name}/restart", "restart"),
    Route("POST", "/api/services/{name}/stop", "stop"),
    Route("POST", "/api/up", "up"),
    Route("POST", "/api/down", "down"),
    Route("GET", "/metrics", "metrics"),
    Route("GET", "/openapi.json", "openapi"),
)
_COMPILED = [(route, route.pattern) for route in ROUTES]


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def status_for(exc: SvcorchError) -> int:
    """The CLI's exit meanings as HTTP: 2 (bad input) 400, an unknown service 404, an
    invalid catalogue 422, no daemon / a daemon error 503; anything else of exit 1, 409."""
    if isinstance(exc, UnknownService):
        return 404
    if isinstance(exc, CatalogueError):
        return 422
    if isinstance(exc, RemoteError):
        return 400 if exc.exit_code == 2 else 409
    if isinstance(exc, DaemonError):
        return 503
    if isinstance(exc, UsageError) or exc.exit_code == 2:
        return 400
    return 409


@dataclass
class App:
    backend: Backend
    guard: Guard
    log: Callable[[str], None]
    crash: Callable[[BaseException], str]
    stopping: threading.Event


class Handler(BaseHTTPRequestHandler):
    # a client that connects and sends half a request holds its thread 10 s, not for ever
    timeout = REQUEST_TIMEOUT
    server_version = "svcorch-web"
    sys_version = ""  # no Python version in the Server header
    server: WebServer

    @property
    def app(self) -> App:
        return self.server.app

    # -- plumbing --------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        self.app.log(self.app.backend.redactor().text(format % args))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a garbled request line, a bad method) as JSON too."""
        # a line it could not parse leaves HTTP/0.9, which has no status line: answer 1.0
        self.request_version = "HTTP/1.0"
        self.close_connection = True
        if code == HTTPStatus.NOT_IMPLEMENTED:  # a method no route has: the client's fault
            code, message = 405, f"method not allowed: {self.command!r}"
        with contextlib.suppress(OSError):
            self._json(code, {"error": message or HTTPStatus(code).phrase, "status": code})

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # no headers, so no Host, no token: refused
            self.send_error(400, "bad request: HTTP/0.9 is not served")
            return False
        return True

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, indent=2).encode() + b"\n"
        self._send(status, "application/json", data, headers)

    def _send(
        self, status: int, kind: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self._common_headers()
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _common_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        )

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": self.app.backend.redactor().text(message), "status": status})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._error(405, "method not allowed")

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT  # no CORS preflight is ever granted

    def _dispatch(self, method: str) -> None:
        try:
            self._route(method)
        except HttpError as exc:
            self._error(exc.status, str(exc))
        except SvcorchError as exc:
            self._error(status_for(exc), str(exc).splitlines()[0] if str(exc) else "failed")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left
        except Exception as exc:
            where = self.app.crash(exc)
            self._error(500, f"internal error: {type(exc).__name__} (traceback in {where})")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        allowed = []
        for route, pattern in _COMPILED:
            match = pattern.match(path)
            if match is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            self._refuse(
                self.app.guard.check_action if method == "POST" else self.app.guard.check_read
            )
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            getattr(self, "_" + route.handler)(query=query, **match.groupdict())
            return
        if allowed:
            raise HttpError(405, f"method not allowed: {path} takes {', '.join(allowed)}")
        raise HttpError(404, f"not found: {path}")

    def _refuse(self, check: Callable[[Any], Refusal | None]) -> None:
        refusal = check(self.headers)
        if refusal is not None:
            raise HttpError(refusal.status, refusal.message)

    def _body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HttpError(400, "bad request: Content-Length is not a number") from None
        if length > MAX_BODY or length < 0:
            raise HttpError(413, f"request body larger than {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"bad request: the body is not JSON ({exc})") from None
        if not isinstance(body, dict):
            raise HttpError(400, "bad request: the body must be a JSON object")
        return body

    # -- reads -----------------------------------------------------------------------------

    def _page(self, query: dict[str, str]) -> None:
        self._send(200, "text/html; charset=utf-8", _static("index.html"))

    def _asset(self, query: dict[str, str], asset: str) -> None:
        if asset not in ASSETS:
            raise HttpError(404, f"not found: /static/{asset}")
        self._send(200, ASSETS[asset], _static(asset))

    def _status(self, query: dict[str, str]) -> None:
        self._json(200, self.app.backend.status())

    def _graph(self, query: dict[str, str]) -> None:
        self._json(200, self.app.backend.graph())

    def _analyze(self, query: dict[str, str]) -> None:
        self._json(200, self.app.backend.analyze())

    def _openapi(self, query: dict[str, str]) -> None:
        from svcorch.web.openapi import document

        self._json(200, document())

    def _metrics(self, query: dict[str, str]) -> None:
        backend = self.app.backend
        rows = backend.status()
        from svcorch.commands.analyze import durations

        pid = backend.daemon_pid()
        snapshot = metrics.Snapshot(rows, durations(backend.layout), pid, metrics.rss_of(pid))
        self._send(200, metrics.CONTENT_TYPE, metrics.exposition(snapshot))

    def _logs(self, query: dict[str, str], name: str) -> None:
        lines = _lines(query.get("lines"))
        if not _flag(query.get("follow")):
            self._json(200, {"service": name, "lines": self.app.backend.logs(name, lines)})
            return
        self.app.backend.check_known([name])
        with EventStream(self) as stream:
            for batch in self.app.backend.follow_logs(name, lines, stream.closed):
                for line in batch:
                    stream.send(json.dumps({"service": name, "line": line}), event="line")

    def _events(self, query: dict[str, str]) -> None:
        services = [s for s in (query.get("services") or "").split(",") if s]
        if services:
            self.app.backend.check_known(services)
        after = _last_event_id(self.headers.get("Last-Event-ID") or query.get("last_event_id"))
        with EventStream(self) as stream:
            self.app.backend.follow_events(
                services,
                after,
                lambda record: stream.send(json.dumps(record.to_dict()), event_id=record.seq),
                stream.closed,
            )

    # -- actions ---------------------------------------------------------------------------

    def _answer(self, result: dict[str, Any]) -> None:
        # the CLI exits 1 when an action did not fully succeed: a conflict with the stack
        self._json(200 if result.get("ok") else 409, result)

    def _restart(self, query: dict[str, str], name: str) -> None:
        body = self._body()
        self.app.backend.check_known([name])
        fields = {"services": [name], "timeout": timeout_field(body)}
        self._answer(self.app.backend.act("restart", fields))

    def _stop(self, query: dict[str, str], name: str) -> None:
        body = self._body()
        self.app.backend.check_known([name])
        fields = {"services": [name], "timeout": timeout_field(body)}
        self._answer(self.app.backend.act("down", fields))

    def _up(self, query: dict[str, str]) -> None:
        body = self._body()
        names = names_field(body)
        self.app.backend.check_known(names)
        fields = {
            "services": names,
            "rollback": bool_field(body, "rollback"),
            "no_recreate": bool_field(body, "no_recreate"),
        }
        self._answer(self.app.backend.act("up", fields))

    def _down(self, query: dict[str, str]) -> None:
        body = self._body()
        names = names_field(body)
        self.app.backend.check_known(names)
        fields = {"services": names, "timeout": timeout_field(body)}
        self._answer(self.app.backend.act("down", fields))


class EventStream:
    """A text/event-stream answer: events as they come, a comment every KEEPALIVE seconds,
    and ``closed()`` true once the client has gone (or the server stops)."""

    def __init__(self, handler: Handler) -> None:
        if not handler.server.streams.acquire(blocking=False):
            raise HttpError(503, f"too many open streams (at most {MAX_STREAMS}); try again later")
        self.handler = handler
        self.gone = False
        self.last_write = time.monotonic()
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
            handler._common_headers()
            handler.send_header("X-Accel-Buffering", "no")
            handler.end_headers()
        except BaseException:
            handler.server.streams.release()
            raise
        self._write(b"retry: 2000\n\n")

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.handler.server.streams.release()

    def _write(self, data: bytes) -> None:
        try:
            self.handler.wfile.write(data)
            self.handler.wfile.flush()
        except OSError:
            self.gone = True
        self.last_write = time.monotonic()

    def send(self, data: str, event: str | None = None, event_id: int | None = None) -> None:
        parts = []
        if event_id is not None:
            parts.append(f"id: {event_id}")
        if event is not None:
            parts.append(f"event: {event}")
        parts += [f"data: {line}" for line in data.splitlines() or [""]]
        self._write(("\n".join(parts) + "\n\n").encode())

    def closed(self) -> bool:
        if self.gone or self.handler.app.stopping.is_set():
            return True
        if time.monotonic() - self.last_write > KEEPALIVE:
            self._write(b": keepalive\n\n")
        connection: socket.socket = self.handler.connection
        try:
            readable, _, _ = select.select([connection], [], [], 0)
            # a stream's client has nothing more to say: what it sends is dropped, and an
            # end of file means it hung up
            if readable and not connection.recv(65536):
                self.gone = True
        except (OSError, ValueError):
            self.gone = True
        return self.gone


class WebServer(ThreadingHTTPServer):
    daemon_threads = True  # an SSE stream must not hold up the exit
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.app.log("error handling a request: " + traceback.format_exc().splitlines()[-1])


def _static(name: str) -> bytes:
    return resources.files("svcorch.web").joinpath("static", name).read_bytes()


def _lines(text: str | None) -> int:
    from svcorch.web.backend import DEFAULT_LINES, MAX_LINES

    if text is None:
        return DEFAULT_LINES
    if not text.isdigit() or int(text) > MAX_LINES:
        raise HttpError(400, f"bad request: lines must be a number from 0 to {MAX_LINES}")
    return int(text)


def _flag(text: str | None) -> bool:
    return text is not None and text.lower() in {"1", "true", "yes", ""}


def _last_event_id(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise HttpError(400, "bad request: Last-Event-ID must be an event's sequence number")
    return int(text)
