"""The engine's end of the systemd readiness protocol (``ready: {type: notify}``).

Each run of a notify service gets its own datagram socket, bound before the spawn and named
to the child in ``NOTIFY_SOCKET``: a file in the state dir (mode 0600) when the path fits a
socket address, else an abstract name. The loop reads it as it becomes readable (no
polling). Every datagram carries the sender's credentials (``SO_PASSCRED``); only a process
in this run's own process group is heard, so another process, or a previous run of the same
service, can never make it ready. ``MAINPID=`` is accepted under the same rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from svcorch.model import Service
    from svcorch.probes.notify import NotifyOptions

log = logging.getLogger("svcorch.engine")

_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_MAX_DATAGRAM = 4096
_SUN_PATH_MAX = 107  # sizeof(sun_path) less the terminating NUL


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


class NotifyListener:
    """One service run's NOTIFY_SOCKET: READY=1, STATUS=, WATCHDOG=1 and MAINPID=."""

    def __init__(
        self, service: str, directory: Path, *, on_status: Callable[[str], None] | None = None
    ) -> None:
        self.service = service
        self.directory = directory
        self.on_status = on_status
        self.pgid: int | None = None  # set once the child exists; nothing is heard before
        self.status = ""
        self.main_pid: int | None = None
        self.last_ping: float | None = None
        self.refused = 0  # datagrams from processes outside this run
        self.ready: asyncio.Future[str] | None = None
        self.pinged = asyncio.Event()
        self._sock: socket.socket | None = None
        self._path: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> str:
        """Bind the socket and start listening; the value for ``NOTIFY_SOCKET``."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        token = secrets.token_hex(4)
        path = self.directory / f"{self.service}.{token}.sock"
        if len(os.fsencode(path)) <= _SUN_PATH_MAX:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # umask first: the socket must never exist with looser rights, even briefly
            old = os.umask(0o177)
            try:
                sock.bind(str(path))
            finally:
                os.umask(old)
            self._path = path
            address = str(path)
        else:
            # a deep state dir: the abstract namespace has no length problem (credentials
            # still decide who is heard)
            name = f"svcorch/{os.getpid()}/{self.service}/{token}"
            sock.bind("\0" + name)
            address = "@" + name
        self._sock = sock
        self._loop = loop
        self.ready = loop.create_future()
        loop.add_reader(sock.fileno(), self._readable)
        return address

    def attach(self, pgid: int) -> None:
        """The child is spawned: from now on its process group is heard."""
        self.pgid = pgid

    def close(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            self._path = None
        if self.ready is not None and not self.ready.done():
            self.ready.cancel()

    # -- datagrams -----------------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data, ancillary, _flags, _address = sock.recvmsg(
                    _MAX_DATAGRAM, socket.CMSG_SPACE(_CREDS.size)
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("%s: notify socket: %s", self.service, exc)
                return
            sender = self._sender(ancillary)
            if sender is None:
                self.refused += 1
                log.warning(
                    "%s: ignored a notify datagram from a process outside this run", self.service
                )
                continue
            self.handle(data.decode("utf-8", "replace"), sender)

    def _sender(self, ancillary: list[tuple[int, int, bytes]]) -> int | None:
        """The sending pid when it belongs to this run's process group, else None."""
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid: int = _CREDS.unpack(payload[: _CREDS.size])[0]
                if self.pgid is not None and pid > 0 and _group_of(pid) == self.pgid:
                    return pid
        return None

    def handle(self, text: str, sender: int) -> None:
        """Act on one datagram's ``KEY=value`` lines (from an accepted sender). READY=1 is
        acted on last: ``READY=1\nSTATUS=booted`` (gunicorn) is ready with that status."""
        ready = False
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                continue
            if key == "STATUS":
                self.status = value.strip()
                if self.on_status is not None and self.status:
                    self.on_status(self.status)
            elif key == "READY" and value.strip() == "1":
                ready = True
            elif key == "WATCHDOG" and value.strip() == "1":
                self.last_ping = time.monotonic()
                self.pinged.set()
            elif key == "MAINPID":
                self._main_pid(value.strip(), sender)
        if ready and self.ready is not None and not self.ready.done():
            self.ready.set_result(self.status)

    def _main_pid(self, value: str, sender: int) -> None:
        try:
            pid = int(value)
        except ValueError:
            log.warning("%s: ignored MAINPID=%r (not a pid)", self.service, value)
            return
        # never a pid that is not ours: it must be in this run's own process group
        if pid > 0 and self.pgid is not None and _group_of(pid) == self.pgid:
            self.main_pid = pid
        else:
            log.warning(
                "%s: ignored MAINPID=%d from pid %d (not in this run's process group)",
                self.service,
                pid,
                sender,
            )


def notify_options(service: Service) -> NotifyOptions | None:
    """The service's notify options (its readiness, else its liveness), or None."""
    from svcorch.probes.notify import NotifyOptions

    if isinstance(service.ready, NotifyOptions):
        return service.ready
    liveness = service.liveness
    if liveness is not None and isinstance(liveness.probe, NotifyOptions):
        return liveness.probe
    return None


def watchdog_of(service: Service) -> float | None:
    """Seconds within which a ``WATCHDOG=1`` must come, when the service asked for one."""
    options = notify_options(service)
    return options.watchdog_seconds() if options is not None else None
