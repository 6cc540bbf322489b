"""The control protocol: newline-delimited JSON over the daemon's Unix socket.

A client sends one request object and reads lines until a ``result`` (or ``error``) line:

    -> {"op": "up", "file": "...", "environ": {...}, "services": ["web"], "profiles": []}
    <- {"accepted": {"op": "up", "services": ["redis", "web"]}}
    <- {"event": {"service": "redis", "old": "waiting", "new": "starting", ...}}
    <- {"result": {"action": "up", "ok": true, ...}}

See docs/control.md. The socket is 0600 inside a 0700 directory: only its owner may connect,
which matters because requests carry the client's environment.
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svcorch.errors import DaemonError

MAX_LINE = 16 * 1024 * 1024  # an answer: a status of thousands of services still fits
# A request carries the client's environment, which exec() caps at a few MiB: a longer line
# is not a client of ours, and the daemon must not buffer it whole.
MAX_REQUEST = 8 * 1024 * 1024
MAX_DEPTH = 32  # requests nest 3 levels; JSON this deep is an attack, not a request
REPLY_DEPTH = 64  # answers nest 4 levels (a result, its rows, a row's fields)
REQUEST_TIMEOUT = 10.0  # seconds from connecting to a whole request line
SEND_TIMEOUT = 30.0  # seconds a client may leave the daemon's answers unread
MAX_NAME = 256  # a service or profile name in a request
MAX_SECONDS = 7 * 24 * 3600.0  # a stop timeout; a week is already no timeout at all
PID_MAX = 1 << 22  # PID_MAX_LIMIT of 64-bit Linux
OPS = ("ping", "up", "down", "restart", "status", "plan", "events")


class RemoteError(DaemonError):
    """The daemon refused a request; carries the exit code of the error it met."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class BadRequest(DaemonError):
    """A request the daemon will not act on: garbled, too long, too deep, mistyped."""

    exit_code = 2


def decode(line: bytes, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """One message; :class:`BadRequest` when it is not a JSON object of sane depth."""
    try:
        message = json.loads(line)
    except RecursionError:
        raise BadRequest(f"garbled message: nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # not UTF-8, not JSON, an integer of thousands of digits
        raise BadRequest(f"garbled message: {_first_line(str(exc))}") from None
    if not isinstance(message, dict):
        raise BadRequest("garbled message: not a JSON object")
    if _depth(message, max_depth) > max_depth:
        raise BadRequest(f"garbled message: nested deeper than {max_depth} levels")
    return message


def _first_line(text: str) -> str:
    line = text.splitlines()[0] if text else "unreadable"
    return line if len(line) <= 200 else line[:197] + "..."


def _depth(value: object, limit: int) -> int:
    """How deep ``value`` nests, looking no further than ``limit + 1`` (no recursion)."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        if depth > limit:
            return depth
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children)
    return deepest


@dataclass(frozen=True)
class Request:
    """A request, every field it uses checked for type and sense (docs/control.md)."""

    op: str
    file: str | None = None
    environ: dict[str, str] | None = None
    services: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    rollback: bool = False
    no_recreate: bool = False
    timeout: float | None = None
    since: float | None = None  # events: epoch seconds
    project: str | None = None  # who asks (docs/control.md): another project is refused
    cwd: str | None = None  # the client's folder, to name paths as the user sees them

    @classmethod
    def parse(cls, message: dict[str, Any]) -> Request:
        """The request in ``message``; :class:`BadRequest` naming the first bad field."""
        op = message.get("op")
        if not isinstance(op, str) or op not in OPS:
            raise BadRequest(f"unknown request {_shown(op)}")
        return cls(
            op=op,
            file=_file(message.get("file")),
            environ=_environ(message.get("environ")),
            services=_names(message.get("services"), "services"),
            profiles=_names(message.get("profiles"), "profiles"),
            rollback=_flag(message.get("rollback"), "rollback"),
            no_recreate=_flag(message.get("no_recreate"), "no_recreate"),
            timeout=_seconds(message.get("timeout"), "timeout"),
            since=_since(message.get("since")),
            project=_text(message.get("project"), "project"),
            cwd=_file(message.get("cwd")),
        )


def _shown(value: object) -> str:
    if isinstance(value, dict | list):
        return "(a JSON object)" if isinstance(value, dict) else "(a JSON array)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _file(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "\0" in value or not os.path.isabs(value):
        raise BadRequest(f"bad request: `file` must be an absolute path, got {_shown(value)}")
    return value


def _environ(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"bad request: `environ` must be an object, got {_shown(value)}")
    for key, item in value.items():
        # what exec() would refuse later, in a service's start, is refused here
        if not key or "=" in key or "\0" in key or not isinstance(item, str) or "\0" in item:
            raise BadRequest(f"bad request: `environ` has a bad variable {_shown(key)}")
    return dict(value)


def _names(value: object, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(name, str) and 0 < len(name) <= MAX_NAME and "\0" not in name for name in value
    ):
        raise BadRequest(f"bad request: `{field}` must be a list of names, got {_shown(value)}")
    return tuple(value)


def _flag(value: object, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"bad request: `{field}` must be true or false, got {_shown(value)}")
    return value


def _seconds(value: object, field: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_SECONDS
    ):
        raise BadRequest(
            f"bad request: `{field}` must be seconds from 0 to {MAX_SECONDS:g}, got {_shown(value)}"
        )
    return float(value)


def _text(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 4096 or "\0" in value:
        raise BadRequest(f"bad request: `{field}` must be a short text, got {_shown(value)}")
    return value


def _since(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"bad request: `since` must be epoch seconds, got {_shown(value)}")
    return float(value)


def valid_pid(value: object) -> int | None:
    """A pid from an answer, if it is one: never -1, 0 or 2**70 into a kill() or psutil."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 < value <= PID_MAX:
        return None
    return value


class Connection:
    """A blocking client connection (the CLI needs no event loop to talk to the daemon)."""

    def __init__(self, path: Path, timeout: float = 2.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(None)
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(encode(message))

    def messages(self) -> Iterator[dict[str, Any]]:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
                try:
                    yield decode(line, max_depth=REPLY_DEPTH)
                except BadRequest as exc:
                    raise DaemonError(f"unreadable answer from the daemon: {exc}") from None
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            self._buffer += chunk
            if len(self._buffer) > MAX_LINE:
                raise DaemonError("message from the control socket is too long")

    def request(
        self,
        message: dict[str, Any],
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_accepted: Callable[[dict[str, Any]], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Send one request; feed ``accepted``, events and notices to the callbacks; return
        the result."""
        self.send(message)
        for reply in self.messages():
            if "notice" in reply:
                if on_notice is not None:
                    on_notice(str(reply["notice"]))
            elif "event" in reply:
                if on_event is not None:
                    on_event(reply["event"])
            elif "accepted" in reply:
                if on_accepted is not None:
                    on_accepted(reply["accepted"])
            elif "result" in reply:
                result: dict[str, Any] = reply["result"]
                return result
            elif "error" in reply:
                code = reply.get("exit_code")
                raise RemoteError(str(reply["error"]), code if isinstance(code, int) else 1)
        raise DaemonError("the daemon closed the connection without an answer (see daemon.log)")


def connect(path: Path, timeout: float = 2.0) -> Connection | None:
    """A connection, or None when no daemon listens there."""
    try:
        return Connection(path, timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except OSError as exc:
        raise DaemonError(f"cannot connect to {path}: {exc.strerror or exc}") from None
