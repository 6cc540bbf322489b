"""Who a service run is, in a way its descendants inherit and pid reuse cannot fake.

Every spawn of a service is a *run*. A run carries a marker in its environment,
``SVCORCH_RUN=<state>:<service>:<token>`` (``state``: a digest of the state directory's
path; ``token``: 64 random bits), which every descendant inherits unless it clears its
environment. Where the host allows it (root, a writable cgroup v2 hierarchy) the run also
gets its own cgroup, ``/svcorch/<state>/<service>.<token>``, which the child enters before it
execs: no fork, ``setsid()`` or double fork leaves it, and ``cgroup.kill`` ends all of it at
once. A pid or process group number can be handed out again; a 64-bit token and a cgroup
that svcorch created cannot be, so a process is taken to be a run's only on that proof.

This module reads ``/proc`` and the cgroup file system; it signals nothing (``process``
does). stdlib only.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

MARKER_VARIABLE = "SVCORCH_RUN"
# ``environ`` forces the environment marker alone, even where cgroups would work
MECHANISM_VARIABLE = "SVCORCH_IDENTITY"
CGROUP_BASE = "svcorch"  # the directory under the cgroup v2 root that holds svcorch's runs

_HEX = "[0-9a-f]{16}"
# model.SERVICE_NAME, or one replica of it (worker#2): never a ':' or a '/'
_SERVICE = "[a-z0-9][a-z0-9_.-]*(?:#[0-9]+)?"
MARKER = re.compile(rf"^(?P<state>{_HEX}):(?P<service>{_SERVICE}):(?P<token>{_HEX})$")
_MARKER_BYTES = f"{MARKER_VARIABLE}=".encode("ascii")


class Mechanism(StrEnum):
    """How a run's processes are told apart from everybody else's."""

    CGROUP = "cgroup"  # its own cgroup v2 (and the environment marker)
    ENVIRON = "environ"  # the environment marker alone


@dataclass(frozen=True)
class Run:
    """One run's proof of identity: the marker, and the cgroup when it has one."""

    marker: str
    cgroup: str | None = None  # path under the cgroup v2 root, e.g. /svcorch/<state>/web.<t>

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.CGROUP if self.cgroup is not None else Mechanism.ENVIRON

    @property
    def service(self) -> str:
        match = MARKER.match(self.marker)
        assert match is not None  # checked on construction by every path that makes one
        return match["service"]


def state_id(state_dir: Path) -> str:
    """A short, stable name for a state directory: 16 hex digits of its real path's digest."""
    real = os.path.realpath(state_dir)
    return hashlib.blake2b(real.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def new_marker(state_dir: Path, service: str) -> str:
    return f"{state_id(state_dir)}:{service}:{secrets.token_hex(8)}"


def check_marker(marker: str) -> str:
    """``marker`` if it is well formed; ``ValueError`` otherwise (a corrupt state file)."""
    if not MARKER.match(marker):
        raise ValueError(f"malformed run marker {marker!r}")
    return marker


def cgroup_of(marker: str) -> str:
    """The cgroup path a run with ``marker`` gets: derived, never taken from a file as is."""
    match = MARKER.match(marker)
    if match is None:
        raise ValueError(f"malformed run marker {marker!r}")
    return f"/{CGROUP_BASE}/{match['state']}/{match['service']}.{match['token']}"


def check_run(run: object, cgroup: object) -> tuple[str | None, str | None]:
    """A run's marker and cgroup as read from a file, or ``ValueError``.

    The cgroup must be the one the marker names: a path taken from a file as is could point
    ``cgroup.kill`` at any part of the machine.
    """
    if run is None:
        if cgroup is not None:
            raise ValueError(f"a cgroup {cgroup!r} without a run marker")
        return None, None
    if not isinstance(run, str):
        raise ValueError(f"run marker must be a string, got {run!r}")
    check_marker(run)
    if cgroup is not None and cgroup != cgroup_of(run):
        raise ValueError(f"cgroup {cgroup!r} is not the one of run {run!r}")
    return run, cgroup


def cgroups_wanted(environ: Mapping[str, str]) -> bool:
    return environ.get(MECHANISM_VARIABLE, "").strip().lower() != Mechanism.ENVIRON.value


# --- the cgroup v2 hierarchy ----------------------------------------------------------------


@functools.cache
def cgroup_root() -> Path | None:
    """Where cgroup v2 is mounted (``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` on a
    hybrid host), or None."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mountinfo:
            lines = mountinfo.read().splitlines()
    except OSError:
        return None
    for line in lines:
        # ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        before, _, after = line.partition(" - ")
        fields = before.split()
        if after.split()[:1] == ["cgroup2"] and len(fields) >= 5 and fields[3] == "/":
            return Path(fields[4].replace("\\040", " "))
    return None


def _cgroup_dir(path: str) -> Path | None:
    root = cgroup_root()
    return None if root is None else root / path.lstrip("/")


def create_cgroup(marker: str) -> str | None:
    """Make the run's cgroup; its path, or None where the host does not allow it."""
    path = cgroup_of(marker)
    directory = _cgroup_dir(path)
    if directory is None:
        return None
    # a concurrent daemon may remove the (then empty) parent between our mkdirs: try again
    for _ in range(3):
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            directory.mkdir()
        except FileNotFoundError:
            continue
        except FileExistsError:
            return path  # 64 random bits: only a retry of our own would meet it
        except OSError:
            return None  # read-only, not ours to write (a container, not root): the marker
        return path
    return None


def open_cgroup_procs(path: str) -> int | None:
    """A close-on-exec descriptor on the cgroup's ``cgroup.procs``; the child writes ``0``
    to it between fork and exec, which moves the child itself."""
    directory = _cgroup_dir(path)
    if directory is None:
        return None
    try:
        return os.open(directory / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return None


def cgroup_pids(path: str) -> list[int]:
    """The processes in the run's cgroup (none when it is gone)."""
    directory = _cgroup_dir(path)
    if directory is None:
        return []
    try:
        text = (directory / "cgroup.procs").read_text(encoding="ascii")
    except OSError:
        return []
    return [int(line) for line in text.split() if line.isdigit()]


def in_cgroup(pid: int, path: str) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    return f"0::{path}" in lines


def kill_cgroup(path: str) -> bool:
    """SIGKILL everything in the cgroup at once (``cgroup.kill``, Linux 5.14); False where
    that file does not exist, so the caller signals one process at a time."""
    directory = _cgroup_dir(path)
    if directory is None:
        return False
    try:
        (directory / "cgroup.kill").write_text("1", encoding="ascii")
    except OSError:
        return False
    return True


def remove_cgroup(path: str) -> bool:
    """Remove the run's cgroup once it is empty, and its state's directory once that is.

    False while processes remain (EBUSY): a later sweep removes it.
    """
    directory = _cgroup_dir(path)
    if directory is None:
        return True
    try:
        directory.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    with contextlib.suppress(OSError):
        directory.parent.rmdir()  # fails while another run of this state dir has its cgroup
    return True


def prune_cgroups(state_dir: Path, keep: Iterable[str]) -> None:
    """Remove the empty run cgroups of a state dir but ``keep`` (a killed daemon's leftovers)."""
    kept = set(keep)
    for path in state_cgroups(state_dir):
        if path not in kept and not cgroup_pids(path):
            remove_cgroup(path)
    base = _cgroup_dir(f"/{CGROUP_BASE}/{state_id(state_dir)}")
    if base is not None:
        with contextlib.suppress(OSError):
            base.rmdir()  # fails while a run cgroup is left in it, or it was never made


def state_cgroups(state_dir: Path) -> list[str]:
    """The run cgroups of a state dir that exist now (paths under the cgroup root)."""
    base = f"/{CGROUP_BASE}/{state_id(state_dir)}"
    directory = _cgroup_dir(base)
    if directory is None:
        return []
    try:
        names = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    except OSError:
        return []
    return [f"{base}/{name}" for name in names]


# --- /proc ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """What one scan of /proc knows of a process."""

    pid: int
    ppid: int
    pgid: int
    start: int  # clock ticks after boot: with the pid, who the process is
    marker: str | None  # its SVCORCH_RUN, as the kernel keeps its initial environment


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgid, start ticks) of a live process; None when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # the command name is in parentheses and may hold anything, spaces and ')' included
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot; None when gone or a zombie."""
    stat = _stat(pid)
    return None if stat is None else stat[2]


def marker_of(pid: int) -> str | None:
    """The ``SVCORCH_RUN`` value in ``pid``'s environment, if any."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            data = handle.read()
    except OSError:
        return None  # gone, or not ours to read (another user's, without root)
    for entry in data.split(b"\0"):
        if entry.startswith(_MARKER_BYTES):
            return entry[len(_MARKER_BYTES) :].decode("ascii", "replace")
    return None


def read(pid: int) -> Proc | None:
    stat = _stat(pid)
    if stat is None:
        return None
    return Proc(pid=pid, ppid=stat[0], pgid=stat[1], start=stat[2], marker=marker_of(pid))


def scan() -> dict[int, Proc]:
    """Every live (non-zombie) process but this one: one pass over /proc."""
    me = os.getpid()
    found = {}
    try:
        entries = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return {}
        raise
    for name in entries:
        pid = int(name)
        if pid == me:
            continue
        proc = read(pid)
        if proc is not None:
            found[pid] = proc
    return found


def descendants(roots: Iterable[int], processes: Mapping[int, Proc]) -> set[int]:
    """``roots`` and every process below them (by parent pid) among ``processes``."""
    children: dict[int, list[int]] = {}
    for proc in processes.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found = set()
    pending = [pid for pid in roots if pid in processes]
    while pending:
        pid = pending.pop()
        if pid in found:
            continue
        found.add(pid)
        pending.extend(children.get(pid, ()))
    return found


def find_runs(state_dir: Path, processes: Mapping[int, Proc] | None = None) -> dict[Run, set[int]]:
    """Every run of this state dir that has a live process, found from /proc alone.

    For recovery when ``state.json`` is gone or unreadable: a process whose marker names this
    state dir, or that sits in one of its run cgroups, belongs to that run. No record needed.
    """
    processes = scan() if processes is None else processes
    prefix = state_id(state_dir) + ":"
    runs: dict[str, set[int]] = {}
    for proc in processes.values():
        if proc.marker is not None and proc.marker.startswith(prefix) and MARKER.match(proc.marker):
            runs.setdefault(proc.marker, set()).add(proc.pid)
    cgroups = {}
    for path in state_cgroups(state_dir):
        # the directory name is <service>.<token>; the marker is rebuilt and checked from it
        service, _, token = path.rsplit("/", 1)[-1].rpartition(".")
        marker = f"{prefix}{service}:{token}"
        if not MARKER.match(marker) or cgroup_of(marker) != path:
            continue
        cgroups[marker] = path
        pids = {pid for pid in cgroup_pids(path) if pid in processes}
        if pids:
            runs.setdefault(marker, set()).update(pids)
    return {
        Run(marker, cgroups.get(marker)): descendants(pids, processes)
        for marker, pids in runs.items()
    }
