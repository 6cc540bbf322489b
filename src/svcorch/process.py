"""Service processes: spawn in a new session, signal the group, stop by deadline, reap.

Every service runs as the leader of its own session and process group, so one ``killpg``
reaches the workers and helpers it forks. A recorded process is identified by
``(pid, pgid, create_time)``; nothing is signalled until that identity is checked, because a
pid from an old state file may by now belong to somebody else.

stdlib + psutil only. Nothing here prints; failures raise :mod:`svcorch.errors` types.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import psutil

from svcorch.accounts import Account
from svcorch.errors import PortInUse, ProcessError, StaleRecord

# psutil derives create_time from clock ticks (1/100 s on Linux) plus the boot time, so two
# readings of the same process agree to well within this; a different process started in
# the same tick with the same pid is not a realistic case.
CREATE_TIME_TOLERANCE = 0.01

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_POLL_FIRST = 0.005
_POLL_MAX = 0.1
_COMMAND_LINE_SHOWN = 100
_TCP_LISTEN = "0A"  # a socket's state in /proc/net/tcp, from include/net/tcp_states.h


@dataclass(frozen=True)
class ProcessRecord:
    """Who a service process is: enough to find it again, and to refuse a reused pid."""

    pid: int
    pgid: int
    create_time: float

    def to_dict(self) -> dict[str, int | float]:
        return {"pid": self.pid, "pgid": self.pgid, "create_time": self.create_time}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ProcessRecord:
        """Raise ``ValueError`` when a field is missing or of the wrong type."""
        pid, pgid, create_time = data.get("pid"), data.get("pgid"), data.get("create_time")
        # bool is an int subclass; a True pid is corruption, not pid 1
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise ValueError(f"process record needs an integer pid, got {dict(data)!r}")
        if isinstance(pgid, bool) or not isinstance(pgid, int):
            raise ValueError(f"process record needs an integer pgid, got {dict(data)!r}")
        if not isinstance(create_time, int | float) or isinstance(create_time, bool):
            raise ValueError(f"process record needs a numeric create_time, got {dict(data)!r}")
        return cls(pid=pid, pgid=pgid, create_time=float(create_time))


@dataclass(frozen=True)
class StopOutcome:
    """What stopping a group took."""

    signalled: bool  # False: nothing of ours was running, no signal was sent
    escalated: bool  # the deadline passed and survivors got SIGKILL
    elapsed: float  # seconds from the first signal until the group was gone
    killed: tuple[int, ...] = ()  # pids that were still there at the deadline


# --- spawning ------------------------------------------------------------------------------


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    header: str | None = None,
    die_with_parent: bool = False,
    service: str | None = None,
    account: Account | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new session with its output appended to ``log_path``.

    stdin is /dev/null; stdout and stderr share one O_APPEND descriptor, so rotation by
    truncation (see :func:`svcorch.state.rotate_if_needed`) never leaves a hole in the log.
    ``header`` is written as a line before the child starts. ``service`` names the service in
    error messages (default: the executable). ``account``: the child switches to its uid,
    gid and supplementary groups before exec (the log file is opened here, by svcorch, so
    the account needs no access to the state directory).

    ``die_with_parent`` asks the kernel to send SIGTERM to the child when its parent dies,
    which is what the foreground mode wants when it is killed -9. The daemon must not use it:
    its services have to outlive a daemon crash so the next daemon can adopt them. Linux sends
    that signal when the *thread* that forked exits, so spawn from a long-lived thread (the
    event-loop thread), never from a short-lived worker thread.
    """
    label = service if service is not None else (argv[0] if argv else "?")
    if not argv:
        raise ProcessError(f"cannot start {label!r}: the command is empty")
    if not cwd.is_dir():
        raise ProcessError(f"cannot start {label!r}: working directory {cwd} does not exist")
    preexec = _die_with_parent_hook(label) if die_with_parent else None
    switch: dict[str, Any] = {}
    if account is not None:
        # Popen switches ids before preexec_fn runs: PR_SET_PDEATHSIG (cleared by a change of
        # credentials) is therefore set as the service's own user and stays
        switch = {"user": account.uid, "group": account.gid, "extra_groups": list(account.groups)}
    log_fd = _open_log(label, log_path, header)
    try:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
            preexec_fn=preexec,  # noqa: PLW1509 - only prctl; documented thread caveat above
            **switch,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProcessError(f"cannot start {label!r}: {exc}") from exc
    finally:
        # the child holds its own copy; ours would only keep the file open
        os.close(log_fd)


def _open_log(label: str, log_path: Path, header: str | None) -> int:
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # 0600: services print connection strings and tokens into their logs
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ProcessError(f"cannot start {label!r}: cannot open log {log_path}: {exc}") from exc
    if header is not None:
        line = header if header.endswith("\n") else header + "\n"
        try:
            os.write(log_fd, line.encode("utf-8", "replace"))
        except OSError as exc:
            os.close(log_fd)
            raise ProcessError(
                f"cannot start {label!r}: cannot write log {log_path}: {exc}"
            ) from exc
    return log_fd


@functools.cache
def _prctl() -> Callable[..., int]:
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    # prctl is variadic in C; declare the unsigned long arguments the kernel reads
    prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
    prctl.restype = ctypes.c_int
    call: Callable[..., int] = prctl
    return call


def _die_with_parent_hook(label: str) -> Callable[[], None]:
    # Resolve prctl here, in the parent: the hook runs between fork and exec, where loading a
    # library or importing could deadlock on a lock some other thread held at fork time.
    try:
        prctl = _prctl()
    except (OSError, AttributeError) as exc:
        raise ProcessError(f"cannot start {label!r}: die_with_parent needs Linux prctl") from exc
    parent = os.getpid()
    term = int(signal.SIGTERM)

    def hook() -> None:
        if prctl(_PR_SET_PDEATHSIG, term, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            # the parent died before prctl took effect: the signal will never come
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def record_of(process: subprocess.Popen[bytes] | int) -> ProcessRecord:
    """The identity of a running (or exited, not yet reaped) process."""
    pid = process if isinstance(process, int) else process.pid
    try:
        create_time = psutil.Process(pid).create_time()
        pgid = os.getpgid(pid)
    except (psutil.NoSuchProcess, ProcessLookupError) as exc:
        raise ProcessError(f"process {pid} is gone before it could be recorded") from exc
    return ProcessRecord(pid=pid, pgid=pgid, create_time=create_time)


# --- identity ------------------------------------------------------------------------------


class _Leader(Enum):
    ALIVE = "alive"
    EXITED = "exited"  # a zombie still waiting to be reaped, or gone altogether
    FOREIGN = "foreign"  # the pid now belongs to another process


def _leader(record: ProcessRecord) -> _Leader:
    try:
        proc = psutil.Process(record.pid)
        create_time = proc.create_time()
        zombie = proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return _Leader.EXITED
    if abs(create_time - record.create_time) > CREATE_TIME_TOLERANCE:
        return _Leader.FOREIGN
    return _Leader.EXITED if zombie else _Leader.ALIVE


def is_same_process(record: ProcessRecord) -> bool:
    """True when ``record.pid`` is alive and is still the process that was recorded.

    A zombie counts as not alive: it has exited, only its exit status is left.
    """
    return _leader(record) is _Leader.ALIVE


def orphans(record: ProcessRecord) -> list[psutil.Process]:
    """What is left of a service whose leader exited: live members of its group. Empty when
    the leader still runs, or when its pid now belongs to another process (then the group's
    number may be another's too, and nothing there is ours to claim)."""
    if _leader(record) is not _Leader.EXITED:
        return []
    return group_members(record)


def verify(record: ProcessRecord) -> None:
    """Raise :class:`StaleRecord` unless ``record`` still names a live process."""
    leader = _leader(record)
    if leader is _Leader.FOREIGN:
        raise StaleRecord(f"pid {record.pid} now belongs to another process (pid reused)")
    if leader is _Leader.EXITED:
        raise StaleRecord(f"pid {record.pid} is no longer running")


def group_alive(pgid: int) -> bool:
    """True while any process, zombies included, is in process group ``pgid``.

    A leader that exited but was not reaped yet keeps its group "alive": reap your own child
    first, or use :func:`group_members`, which skips zombies.
    """
    if pgid <= 1:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; it is just not ours to signal
    return True


def group_members(record: ProcessRecord) -> list[psutil.Process]:
    """Live (non-zombie) processes in ``record.pgid`` that can be ours.

    A process created before the recorded leader cannot belong to a group the leader started,
    so those are skipped. While any process of our group lives, the kernel does not hand out
    the group's number again; the remaining risk is a new group that reused the number after
    ours was entirely gone, which callers meet only with a stale record.
    """
    if record.pgid <= 1:
        return []
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != record.pgid:
                continue
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.create_time() < record.create_time - CREATE_TIME_TOLERANCE:
                continue
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
        members.append(proc)
    return members


# --- signalling and stopping ---------------------------------------------------------------


def _check_signallable(record: ProcessRecord) -> None:
    # kill(-1) and killpg(0/1) reach far more than one service; our own group would be us
    if record.pid <= 1 or record.pgid <= 1:
        raise ProcessError(f"refusing to signal pid {record.pid} / group {record.pgid}")
    if record.pgid == os.getpgrp():
        raise ProcessError(f"refusing to signal group {record.pgid}: it is svcorch's own")


def signal_group(record: ProcessRecord, sig: int) -> bool:
    """Send ``sig`` to the service's process group once its identity is confirmed.

    Raises :class:`StaleRecord` when the leader's pid now belongs to another process. When the
    leader has exited but members of the group remain (grandchildren, workers), the group is
    still signalled. Returns False when nothing of ours was left to signal.
    """
    _check_signallable(record)
    leader = _leader(record)
    if leader is _Leader.FOREIGN:
        raise StaleRecord(
            f"pid {record.pid} now belongs to another process (pid reused); not signalling it"
        )
    if leader is _Leader.EXITED and not group_members(record):
        return False
    try:
        # killpg, not kill: a master's workers would outlive it
        os.killpg(record.pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise ProcessError(f"cannot signal process group {record.pgid}: {exc}") from exc
    return True


def stop_group(
    record: ProcessRecord,
    *,
    sig: int = signal.SIGTERM,
    timeout: float,
    reap: Callable[[], object] | None = None,
    on_escalate: Callable[[list[psutil.Process]], object] | None = None,
    kill_timeout: float = 5.0,
) -> StopOutcome:
    """Stop the whole group: ``sig`` now, SIGKILL to whatever is left after ``timeout``.

    Blocks until no member of the group remains. ``reap`` is called on every poll so the
    caller can ``waitpid`` its own child (the leader), otherwise it would linger as a zombie.
    ``on_escalate`` hears about the survivors just before they get SIGKILL. Raises
    :class:`StaleRecord` if the pid was reused, and :class:`ProcessError` if anything survives
    SIGKILL for ``kill_timeout`` seconds (a process stuck in uninterruptible sleep).
    """
    started = time.monotonic()
    if not signal_group(record, sig):
        if reap is not None:
            reap()
        return StopOutcome(signalled=False, escalated=False, elapsed=0.0)
    if _wait_group_gone(record, started + timeout, reap):
        return StopOutcome(signalled=True, escalated=False, elapsed=time.monotonic() - started)
    survivors = group_members(record)
    if survivors:
        if on_escalate is not None:
            on_escalate(survivors)
        # StaleRecord here: the group vanished and its number was reused in between
        with contextlib.suppress(StaleRecord):
            signal_group(record, signal.SIGKILL)
    if not _wait_group_gone(record, time.monotonic() + kill_timeout, reap):
        left = ", ".join(str(p.pid) for p in group_members(record))
        raise ProcessError(f"process group {record.pgid} survived SIGKILL (pids {left})")
    return StopOutcome(
        signalled=True,
        escalated=bool(survivors),
        elapsed=time.monotonic() - started,
        killed=tuple(sorted(p.pid for p in survivors)),
    )


def _wait_group_gone(
    record: ProcessRecord, deadline: float, reap: Callable[[], object] | None
) -> bool:
    delay = _POLL_FIRST
    while True:
        if reap is not None:
            reap()
        # killpg(0) is one syscall; the /proc scan runs only while the group exists
        if not group_alive(record.pgid) or not group_members(record):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, _POLL_MAX)


def reap_nonblocking(pid: int) -> int | None:
    """Reap our exited child ``pid``: its returncode (negative for a signal) or None.

    None also when ``pid`` is not our child or was reaped already. Do not mix this with
    ``Popen.poll()`` on the same child: whichever reaps first takes the status.
    """
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if reaped == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def open_pidfd(pid: int) -> int | None:
    """A pidfd that becomes readable when ``pid`` exits, or None where unsupported.

    An asyncio loop can ``add_reader`` it to learn of a child's exit without a thread per
    child; then reap with :func:`reap_nonblocking` and close the fd. None also when the
    process is already gone: reap it right away.
    """
    pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return pidfd_open(pid)
    except OSError:
        return None


# --- ports ---------------------------------------------------------------------------------


def _listeners() -> dict[int, list[tuple[int, str]]]:
    """Listening TCP ports -> [(pid, command line)], one scan of the whole system."""
    found: dict[int, set[int]] = {}
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return {}
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        pids = found.setdefault(conn.laddr.port, set())
        if conn.pid is not None:
            pids.add(conn.pid)
    return {
        port: [(pid, _command_line(pid)) for pid in sorted(pids)] for port, pids in found.items()
    }


def _command_line(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        return " ".join(proc.cmdline()) or proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"


def port_holders(port: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process listening on TCP ``port`` on any local address.

    A prefork server shows up once per process holding the listening socket.
    """
    return _listeners().get(port, [])


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR on, like every server sets it: on Linux it still fails against a
        # listener, but not against TIME_WAIT leftovers of the service's previous run, which
        # would otherwise block a restart for a minute with a false "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno != errno.EADDRINUSE
    return True


def check_ports_free(service: str, ports: Sequence[int]) -> None:
    """Raise :class:`PortInUse` naming who holds any of ``ports``.

    A stale server on the port would answer the readiness probe while the new child dies with
    EADDRINUSE, so this runs before every spawn.
    """
    busy = ports_in_use(ports)
    if busy:
        raise PortInUse(f"service {service!r}: " + "; ".join(busy.values()))


def ports_in_use(ports: Iterable[int], *, ignore_groups: Collection[int] = ()) -> dict[int, str]:
    """Each of ``ports`` that something listens on -> ``port N is in use by pid P (command)``,
    from one scan of the system. A port whose holders all belong to ``ignore_groups`` (the
    process groups of services about to be restarted) counts as free."""
    wanted = list(dict.fromkeys(ports))
    if all(_free_everywhere(port) for port in wanted):
        return {}  # the common case, without scanning every process's sockets
    listeners = _listeners()
    busy: dict[int, str] = {}
    for port in wanted:
        seen = listeners.get(port)  # None: nobody listens that we can see
        holders = [(pid, cmd) for pid, cmd in seen or [] if not _in(pid, ignore_groups)]
        if holders:
            pid, command = holders[0]
            more = f" and {len(holders) - 1} more" if len(holders) > 1 else ""
            busy[port] = f"port {port} is in use by pid {pid} ({_shorten(command)}){more}"
        elif seen == [] or (seen is None and not _can_bind(port)):
            busy[port] = f"port {port} is in use"  # by a process we may not look at
    return busy


def _free_everywhere(port: int) -> bool:
    """No socket listens on ``port`` on any local address, from the kernel's own tables
    (one small read, where naming the holder means walking every process's descriptors);
    and it binds on loopback, as the scan's last word would say too."""
    listening = _listening_ports()
    return listening is not None and port not in listening and _can_bind(port)


def _listening_ports() -> set[int] | None:
    """Ports with a TCP listener in this network namespace; None if the tables are unreadable."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                next(handle, None)  # the header
                for line in handle:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue  # no IPv6
        except (OSError, ValueError, IndexError):
            return None
    return ports


def _in(pid: int, groups: Collection[int]) -> bool:
    if not groups:
        return False
    try:
        return os.getpgid(pid) in groups
    except OSError:
        return False


def _shorten(command: str) -> str:
    # like ps: the program's base name, then its arguments, cut to one readable line
    program, _, arguments = " ".join(command.split()).partition(" ")
    command = f"{os.path.basename(program)} {arguments}".strip()
    if len(command) <= _COMMAND_LINE_SHOWN:
        return command
    return command[: _COMMAND_LINE_SHOWN - 1].rstrip() + " …"


# --- the foreground's watchdog -------------------------------------------------------------

# Run by a helper process: it reads "+PGID" / "-PGID" lines, "done" when the foreground svcorch
# exits normally. End of input without "done" means svcorch died (kill -9): the groups it
# listed get SIGTERM, then SIGKILL after a grace period. PR_SET_PDEATHSIG reaches only each
# service's leader; its grandchildren (a gunicorn's workers, a shell's children) stay in the
# group, and this is what stops them.
_WATCHDOG = """
import os, signal, sys, time
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line == "done":
        sys.exit(0)
    if line[:1] in "+-" and line[1:].isdigit():
        (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
def signal_all(sig):
    alive = set()
    for group in groups:
        try:
            os.killpg(group, sig)
            alive.add(group)
        except OSError:
            pass
    return alive
deadline = time.monotonic() + GRACE
while signal_all(signal.SIGTERM if time.monotonic() < deadline else 0):
    if time.monotonic() >= deadline:
        signal_all(signal.SIGKILL)
        break
    time.sleep(0.05)
"""
WATCHDOG_GRACE = 5.0


class GroupWatchdog:
    """Stops the listed process groups if this process dies without releasing it."""

    def __init__(self, grace: float = WATCHDOG_GRACE) -> None:
        import sys

        read_end, self._pipe = os.pipe()  # not inheritable: services never hold it open
        try:
            self._helper = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHDOG.replace("GRACE", repr(grace))],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to svcorch's terminal group is not for it
                close_fds=True,
            )
        finally:
            os.close(read_end)
        self._watched: set[int] = set()

    def _send(self, line: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self._pipe, f"{line}\n".encode())

    def watch(self, pgid: int) -> None:
        if pgid > 1 and pgid not in self._watched:
            self._watched.add(pgid)
            self._send(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        if pgid in self._watched:
            self._watched.discard(pgid)
            self._send(f"-{pgid}")

    def release(self) -> None:
        """svcorch is exiting on its own terms: the helper exits without signalling."""
        self._send("done")
        os.close(self._pipe)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._helper.wait(timeout=5)
