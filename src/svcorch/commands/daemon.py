"""Finding or starting the supervisor daemon, and sending it requests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from svcorch import control
from svcorch.errors import DaemonError
from svcorch.state import StateLayout, StateLock, ensure_state_dir
from svcorch.statedir import open_private

START_TIMEOUT = 30.0  # adoption of many services and a slow disk can take a while


def running(layout: StateLayout) -> bool:
    connection = control.connect(layout.socket, timeout=1.0)
    if connection is None:
        return False
    with connection:
        try:
            connection.request({"op": "ping"})
        except (DaemonError, OSError):
            return False
    return True


def ensure(layout: StateLayout, file: Path, environ: Mapping[str, str], project: str) -> None:
    """Start a daemon of ``project`` for this state dir unless one answers already."""
    if running(layout):
        return
    ensure_state_dir(layout.root)
    _refuse_foreign_owner(layout)
    pid = _spawn(layout, file, environ, project)
    started = time.monotonic()
    delay = 0.002
    while not running(layout):
        if not _alive(pid):
            # it lost the race to another daemon that answers now, or it failed
            if running(layout):
                return
            _refuse_foreign_owner(layout)
            raise DaemonError(
                "the svcorch daemon exited at start: " + _last_line(layout.daemon_log)
            )
        if time.monotonic() - started > START_TIMEOUT:
            raise DaemonError(
                f"the svcorch daemon did not answer within {START_TIMEOUT:g}s;"
                f" see {layout.daemon_log}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _spawn(layout: StateLayout, file: Path, environ: Mapping[str, str], project: str) -> int:
    """Start the daemon detached (double fork); its pid."""
    # created 0600: open() would make it 0644 under the usual umask
    log_fd = open_private(layout.daemon_log, os.O_WRONLY | os.O_APPEND)
    with os.fdopen(log_fd, "ab") as daemon_log:
        starter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "svcorch.supervisor",
                "--detach",
                "--state-dir",
                str(layout.root),
                "--file",
                str(file.absolute()),
                "--project",
                project,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,  # the intermediate says the daemon's pid here
            stderr=daemon_log,
            env=dict(environ),
            cwd=str(layout.root),
            start_new_session=True,  # Ctrl-C in this terminal must not reach the daemon
            close_fds=True,
        )
    said, _ = starter.communicate()
    code = starter.returncode  # only the intermediate: it forks the daemon and exits
    text = said.decode("ascii", "replace").strip()
    if code != 0 or not text.isdigit():
        raise DaemonError(
            f"the svcorch daemon failed to start (exit {code}): " + _last_line(layout.daemon_log)
        )
    return int(text)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _refuse_foreign_owner(layout: StateLayout) -> None:
    """A foreground ``svcorch up`` owns the state dir: no daemon can take it over.

    Judged from the pid the lock's holder wrote, without taking the lock to test it: a test
    by taking it would, for a moment, make this command look like the owner to another one
    starting at the same time. A live foreground up whose pid is in the file holds the lock
    (it writes its pid only once it has the lock, and keeps the lock until it exits).
    """
    holder = StateLock(layout.lock, blocking=False).holder_pid()
    if holder is None or holder == os.getpid() or not _alive(holder):
        return
    import psutil

    try:
        command = psutil.Process(holder).cmdline()
    except psutil.Error:
        return
    if "--foreground" not in command or not any("svcorch" in part for part in command):
        return  # a daemon (ours waits for its lock) or a stale pid of something else
    raise DaemonError(
        f"another svcorch owns {layout.root}: pid {holder}, a foreground `svcorch up`;"
        " Ctrl-C stops it"
    )


def daemon_pid(layout: StateLayout) -> int | None:
    """The daemon's pid, from a ping; None when no daemon answers."""
    connection = control.connect(layout.socket, timeout=1.0)
    if connection is None:
        return None
    with connection:
        try:
            pid = connection.request({"op": "ping"}).get("pid")
        except (DaemonError, OSError):
            return None
    return control.valid_pid(pid)


def wait_exit(layout: StateLayout, pid: int | None, timeout: float = 10.0) -> None:
    """Wait until the daemon process is gone (it exits after a down of everything)."""
    deadline = time.monotonic() + timeout
    delay = 0.002

    def alive() -> bool:
        return _lock_held(layout) if pid is None else _alive(pid)

    while alive():
        if time.monotonic() > deadline:
            raise DaemonError(
                f"the svcorch daemon did not exit within {timeout:g}s after down;"
                f" see {layout.daemon_log}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _lock_held(layout: StateLayout) -> bool:
    lock = StateLock(layout.lock, blocking=False)
    if lock.try_acquire():
        lock.release()
        return False
    return True


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def request(
    layout: StateLayout,
    message: dict[str, Any],
    on_event: Callable[[dict[str, Any]], None] | None = None,
    *,
    on_accepted: Callable[[dict[str, Any]], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    connection = control.connect(layout.socket)
    if connection is None:
        raise DaemonGone(f"no svcorch daemon is running for {layout.root}")
    heard: list[object] = []

    def event(payload: dict[str, Any]) -> None:
        heard.append(payload)
        if on_event is not None:
            on_event(payload)

    def accepted(payload: dict[str, Any]) -> None:
        heard.append(payload)
        if on_accepted is not None:
            on_accepted(payload)

    with connection:
        try:
            return connection.request(message, event, accepted, on_notice)
        except (DaemonError, ConnectionError) as exc:
            if heard or isinstance(exc, control.RemoteError):
                raise
            # it exited between our ping and this request, before reading it
            raise DaemonGone(str(exc)) from exc


class DaemonGone(DaemonError):
    """No daemon took the request: none runs, or it exited just before reading it.

    Nothing was done, so the caller may start a daemon and ask again.
    """


def client_environment(state_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SVCORCH_STATE_DIR"] = str(state_dir)
    return env
