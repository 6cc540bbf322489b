"""Service processes: spawn in a new session, signal the run, stop by deadline, reap.

Every service runs as the leader of its own session and process group, and every start is a
*run* with an identity its descendants inherit (:mod:`svcorch.identity`: an environment
marker, and a cgroup where the host allows it). A stop reaches the run's processes, the
ones that called ``setsid()`` too, and only them: each is proven the run's (the recorded
leader by pid and create time, the others by marker, cgroup or descent from a proven one)
before it is signalled, because a pid or group number from an old state file may by now
belong to somebody else.

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

from svcorch import identity
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
    """Who a service process is: enough to find it again, and to refuse a reused pid.

    ``run`` and ``cgroup`` are the run's identity (:mod:`svcorch.identity`): what proves a
    process other than the leader to be this run's. A record without them (written by an
    older svcorch) proves the leader alone, and its group while the leader lives. ``pid`` 0
    is a run known by its identity alone (found in /proc, no leader recorded).
    """

    pid: int
    pgid: int
    create_time: float
    run: str | None = None
    cgroup: str | None = None

    @classmethod
    def of_run(cls, run: identity.Run) -> ProcessRecord:
        """A run found by its identity, its leader unknown (or gone)."""
        return cls(pid=0, pgid=0, create_time=0.0, run=run.marker, cgroup=run.cgroup)

    @property
    def has_leader(self) -> bool:
        return self.pid != 0

    @property
    def mechanism(self) -> identity.Mechanism | None:
        if self.run is None:
            return None
        return identity.Mechanism.CGROUP if self.cgroup else identity.Mechanism.ENVIRON

    def to_dict(self) -> dict[str, int | float | str | None]:
        return {
            "pid": self.pid,
            "pgid": self.pgid,
            "create_time": self.create_time,
            "run": self.run,
            "cgroup": self.cgroup,
        }

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
        run, cgroup = identity.check_run(data.get("run"), data.get("cgroup"))
        return cls(pid=pid, pgid=pgid, create_time=float(create_time), run=run, cgroup=cgroup)


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
    run: identity.Run | None = None,
    account: Account | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new session with its output appended to ``log_path``.

    stdin is /dev/null; stdout and stderr share one O_APPEND descriptor, so rotation by
    truncation (see :func:`svcorch.state.rotate_if_needed`) never leaves a hole in the log.
    ``header`` is written as a line before the child starts. ``service`` names the service in
    error messages (default: the executable). ``account``: the child switches to its uid,
    gid and supplementary groups before exec (the log file is opened here, by svcorch, so
    the account needs no access to the state directory).

    ``run`` is the identity the child and all its descendants carry: its marker goes into the
    environment, and with a cgroup the child moves itself into it before it execs, so not
    even its first fork is outside. Whether the move worked, :func:`record_of` tells.

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
    child_env = dict(env)
    if run is not None:
        child_env[identity.MARKER_VARIABLE] = run.marker
    procs_fd = None
    if run is not None and run.cgroup is not None:
        procs_fd = identity.open_cgroup_procs(run.cgroup)
    preexec = _child_hook(label, die_with_parent, procs_fd)
    switch: dict[str, Any] = {}
    if account is not None:
        # Popen switches ids before preexec_fn runs: PR_SET_PDEATHSIG (cleared by a change of
        # credentials) is therefore set as the service's own user and stays; the cgroup's
        # procs file was opened as root, and cgroup v2 judges a move by the opener's rights
        switch = {"user": account.uid, "group": account.gid, "extra_groups": list(account.groups)}
    log_fd = _open_log(label, log_path, header)
    try:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
            preexec_fn=preexec,  # noqa: PLW1509 - prctl and one write; thread caveat above
            **switch,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProcessError(f"cannot start {label!r}: {exc}") from exc
    finally:
        # the child holds its own copy; ours would only keep the file open
        os.close(log_fd)
        if procs_fd is not None:
            os.close(procs_fd)


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


def _child_hook(
    label: str, die_with_parent: bool, procs_fd: int | None
) -> Callable[[], None] | None:
    """What the child does between fork and exec: enter its cgroup, ask for PDEATHSIG.

    Everything is resolved here, in the parent: the hook runs where loading a library or
    importing could deadlock on a lock some other thread held at fork time.
    """
    parent_death = _die_with_parent_hook(label) if die_with_parent else None
    if procs_fd is None:
        return parent_death

    def hook() -> None:
        # "0" moves the writer itself; a refusal leaves the child where it was, marked by
        # its environment still, and record_of finds it outside the cgroup
        with contextlib.suppress(OSError):
            os.write(procs_fd, b"0")
        if parent_death is not None:
            parent_death()

    return hook


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


def record_of(
    process: subprocess.Popen[bytes] | int, run: identity.Run | None = None
) -> ProcessRecord:
    """The identity of a running (or exited, not yet reaped) process started as ``run``.

    The record names ``run``'s cgroup only if the process is in it: a host may let svcorch
    create a cgroup and still refuse the move.
    """
    pid = process if isinstance(process, int) else process.pid
    try:
        create_time = psutil.Process(pid).create_time()
        pgid = os.getpgid(pid)
    except (psutil.NoSuchProcess, ProcessLookupError) as exc:
        raise ProcessError(f"process {pid} is gone before it could be recorded") from exc
    if run is None:
        return ProcessRecord(pid=pid, pgid=pgid, create_time=create_time)
    cgroup = run.cgroup if run.cgroup and identity.in_cgroup(pid, run.cgroup) else None
    return ProcessRecord(pid, pgid, create_time, run=run.marker, cgroup=cgroup)


# --- identity ------------------------------------------------------------------------------


class _Leader(Enum):
    ALIVE = "alive"
    EXITED = "exited"  # a zombie still waiting to be reaped, or gone altogether
    FOREIGN = "foreign"  # the pid now belongs to another process


def _leader(record: ProcessRecord) -> _Leader:
    if not record.has_leader:
        return _Leader.EXITED
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
    first, or use :func:`run_members`, which skips zombies.
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


def _proven(
    record: ProcessRecord, processes: Mapping[int, identity.Proc]
) -> dict[int, identity.Proc]:
    """The live processes ``record``'s run can prove its own, and only those:

    - the leader, while its pid and create time are the recorded ones;
    - its process group, while that leader lives (the kernel does not hand out the number
      of a group that still has a member), started no earlier than the leader;
    - every process carrying the run's marker, and every process in the run's cgroup;
    - every descendant of those, by parent pid (a worker that cleared its environment, or
      a title-setting one that overwrote it, is still the child of a proven process).

    A process that merely has the recorded pid or process group number is not among them.
    """
    roots: set[int] = set()
    if _leader(record) is _Leader.ALIVE and record.pid in processes:
        since = processes[record.pid].start
        roots.add(record.pid)
        roots.update(
            p.pid for p in processes.values() if p.pgid == record.pgid and p.start >= since
        )
    if record.run is not None:
        roots.update(p.pid for p in processes.values() if p.marker == record.run)
    if record.cgroup is not None:
        roots.update(pid for pid in identity.cgroup_pids(record.cgroup) if pid in processes)
    found = identity.descendants(roots, processes) - {1, os.getpid()}
    return {pid: processes[pid] for pid in sorted(found)}


def run_members(
    record: ProcessRecord, processes: Mapping[int, identity.Proc] | None = None
) -> list[int]:
    """The pids of the live processes of ``record``'s run (see :func:`_proven`), from
    ``processes`` (one :func:`identity.scan` shared by many records) or a scan of its own."""
    return list(_proven(record, identity.scan() if processes is None else processes))


def run_alive(record: ProcessRecord) -> bool:
    """Anything of the run is alive. Cheap while the leader lives or its cgroup is not empty;
    otherwise one scan of /proc, for marked processes that left (or never had) the cgroup."""
    if _leader(record) is _Leader.ALIVE:
        return True
    if record.cgroup is not None and identity.cgroup_pids(record.cgroup):
        return True
    if record.run is None:
        return False  # nothing left to prove anything by
    return bool(_proven(record, identity.scan()))


# --- signalling and stopping ---------------------------------------------------------------


def _check_signallable(record: ProcessRecord) -> None:
    if not record.has_leader:
        return  # a run found by its identity: each member is checked on its own
    # kill(-1) and killpg(0/1) reach far more than one service; our own group would be us
    if record.pid <= 1 or record.pgid <= 1:
        raise ProcessError(f"refusing to signal pid {record.pid} / group {record.pgid}")
    if record.pgid == os.getpgrp():
        raise ProcessError(f"refusing to signal group {record.pgid}: it is svcorch's own")


def _send(proc: identity.Proc, sig: int) -> bool:
    """Signal one proven process, through a pidfd so the pid cannot change hands between the
    check and the signal; False when it is gone (or is somebody else by now)."""
    pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
    try:
        fd = pidfd_open(proc.pid) if pidfd_open is not None else None
    except ProcessLookupError:
        return False
    except OSError:
        fd = None  # no pidfds (an old kernel): the re-check below narrows the window
    try:
        # with the pidfd held, the process it names cannot be replaced; is it the one seen?
        if identity.start_ticks(proc.pid) != proc.start:
            return False
        if proc.marker is not None and identity.marker_of(proc.pid) != proc.marker:
            return False
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(proc.pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise ProcessError(f"cannot signal pid {proc.pid}: {exc}") from exc
    finally:
        if fd is not None:
            os.close(fd)
    return True


def signal_run(
    record: ProcessRecord, sig: int, *, also: Iterable[identity.Proc] = ()
) -> list[identity.Proc]:
    """Send ``sig`` to every process of the run, and to nothing else; the ones it reached.

    Members are what :func:`_proven` proves: with the leader dead, its workers and
    grandchildren (``setsid()`` ones included) still get it by their marker or cgroup; a
    process that reused the leader's pid or group number never does. ``also``: processes an
    earlier signal reached, which get this one too while they are the same processes (a
    legacy record's group is not provable once its leader died). SIGKILL empties the run's
    cgroup at once with ``cgroup.kill``. Raises :class:`StaleRecord` when the leader's pid
    belongs to another process and nothing of the run is left; returns [] when nothing of
    ours was left to signal.
    """
    _check_signallable(record)
    members = _proven(record, identity.scan())
    for proc in also:
        members.setdefault(proc.pid, proc)
    if not members:
        if _leader(record) is _Leader.FOREIGN:
            raise StaleRecord(
                f"pid {record.pid} now belongs to another process (pid reused); not signalling it"
            )
        return []
    if sig == signal.SIGKILL and record.cgroup is not None:
        identity.kill_cgroup(record.cgroup)  # atomic against forks; the loop gets the rest
    return [proc for proc in members.values() if _send(proc, sig)]


def run_gone(record: ProcessRecord, signalled: Iterable[identity.Proc] = ()) -> bool:
    """Nothing of the run is alive, nor any of the processes it ``signalled`` (a group
    member of a legacy record is not provable once its leader died, but was signalled)."""
    if any(identity.start_ticks(proc.pid) == proc.start for proc in signalled):
        return False
    return not run_alive(record)


def stop_run(
    record: ProcessRecord,
    *,
    sig: int = signal.SIGTERM,
    timeout: float,
    reap: Callable[[], object] | None = None,
    on_escalate: Callable[[list[int]], object] | None = None,
    kill_timeout: float = 5.0,
) -> StopOutcome:
    """Stop the whole run: ``sig`` now, SIGKILL to whatever is left after ``timeout``.

    Blocks until no process of the run remains. ``reap`` is called on every poll so the
    caller can ``waitpid`` its own child (the leader), otherwise it would linger as a zombie.
    ``on_escalate`` hears the survivors' pids just before they get SIGKILL. Raises
    :class:`StaleRecord` if the pid was reused and nothing of the run is left, and
    :class:`ProcessError` if anything survives SIGKILL for ``kill_timeout`` seconds (a
    process stuck in uninterruptible sleep). The run's cgroup is removed once empty.
    """
    started = time.monotonic()
    signalled = signal_run(record, sig)
    if not signalled:
        if reap is not None:
            reap()
        release_run(record)
        return StopOutcome(signalled=False, escalated=False, elapsed=0.0)
    if _wait_run_gone(record, signalled, started + timeout, reap):
        release_run(record)
        return StopOutcome(signalled=True, escalated=False, elapsed=time.monotonic() - started)
    survivors = sorted(
        {p.pid for p in signalled if identity.start_ticks(p.pid) == p.start}
        | set(run_members(record))
    )
    if survivors:
        if on_escalate is not None:
            on_escalate(survivors)
        with contextlib.suppress(StaleRecord):
            signal_run(record, signal.SIGKILL, also=signalled)
    if not _wait_run_gone(record, signalled, time.monotonic() + kill_timeout, reap):
        left = ", ".join(str(pid) for pid in run_members(record))
        raise ProcessError(f"processes of pid {record.pid}'s run survived SIGKILL (pids {left})")
    release_run(record)
    return StopOutcome(
        signalled=True,
        escalated=bool(survivors),
        elapsed=time.monotonic() - started,
        killed=tuple(survivors),
    )


def release_run(record: ProcessRecord) -> None:
    """Remove the run's cgroup once nothing is in it (kept, to be swept later, otherwise)."""
    if record.cgroup is not None:
        identity.remove_cgroup(record.cgroup)


def _wait_run_gone(
    record: ProcessRecord,
    signalled: list[identity.Proc],
    deadline: float,
    reap: Callable[[], object] | None,
) -> bool:
    delay = _POLL_FIRST
    while True:
        if reap is not None:
            reap()
        if run_gone(record, signalled):
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
