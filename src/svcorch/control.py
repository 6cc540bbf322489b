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
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from svcorch.errors import DaemonError

MAX_LINE = 16 * 1024 * 1024  # a status of thousands of services still fits
OPS = ("ping", "up", "down", "restart", "status", "events")


class RemoteError(DaemonError):
    """The daemon refused a request; carries the exit code of the error it met."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise DaemonError(f"garbled message from the control socket: {exc}") from None
    if not isinstance(message, dict):
        raise DaemonError("garbled message from the control socket: not an object")
    return message


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
                yield decode(line)
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
    ) -> dict[str, Any]:
        """Send one request; feed ``accepted`` and events to the callbacks; return the result."""
        self.send(message)
        for reply in self.messages():
            if "event" in reply:
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
