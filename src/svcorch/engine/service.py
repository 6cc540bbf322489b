"""One service's state machine: its states, its runtime record, and the rules that read them.

The transitions themselves are made by the scheduler and by supervision, always through
``EventBus.set`` so that each one is an event. Touched only on the engine's loop.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from svcorch.accounts import Account
from svcorch.fingerprint import Definition
from svcorch.model import Condition, Kind, Service
from svcorch.process import ProcessRecord
from svcorch.state import ServiceRecord

if TYPE_CHECKING:
    from svcorch.engine.sdnotify import NotifyListener


class State(StrEnum):
    """Where one service is. See docs/architecture.md for the transitions."""

    STOPPED = "stopped"
    WAITING = "waiting"  # for its dependencies
    STARTING = "starting"  # spawned, readiness probe running
    READY = "ready"
    UNREADY = "unready"  # ready before, liveness failing now (below the threshold)
    DEGRADED = "degraded"  # running, but a dependency is no longer in its condition
    RUNNING = "running"  # a oneshot that has not exited yet
    COMPLETED = "completed"  # a oneshot that exited 0
    PROBING = "probing"  # an external service being waited for
    BACKOFF = "backoff"  # waiting before a restart
    EXITED = "exited"  # exited and not restarted (policy, or not watched)
    FAILED = "failed"
    FATAL = "fatal"  # too many restarts; stays down until the next explicit up/restart
    BLOCKED = "blocked"  # a dependency failed, so it was never started
    STOPPING = "stopping"


SETTLED_OK = frozenset({State.READY, State.UNREADY, State.COMPLETED})
SETTLED_BAD = frozenset({State.FAILED, State.FATAL, State.BLOCKED, State.EXITED})
# DEGRADED is in progress: an up waits for it to be ready again, and never starts it twice
IN_PROGRESS = frozenset(
    {State.WAITING, State.STARTING, State.RUNNING, State.PROBING, State.BACKOFF, State.DEGRADED}
)
HAS_PROCESS = frozenset(
    {State.STARTING, State.READY, State.UNREADY, State.DEGRADED, State.RUNNING, State.STOPPING}
)
# what a dependency failing under it turns into DEGRADED
SERVING = frozenset({State.READY, State.UNREADY})


@dataclass(frozen=True)
class LaunchSpec:
    """What one start of a service runs, resolved from the deployment snapshot when it was
    explicitly started (``up``, ``restart``); automatic restarts reuse it as it is."""

    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str]
    definition: Definition
    fingerprint: str
    account: Account | None = None  # user:/group:, resolved when the spec was made


@dataclass
class Runtime:
    """The engine's view of one service. Touched only on the loop."""

    name: str
    service: Service
    state: State = State.STOPPED
    detail: str = ""
    record: ProcessRecord | None = None
    popen: subprocess.Popen[bytes] | None = None
    exited: asyncio.Future[int | None] | None = None
    exit_code: int | None = None
    started_at: float | None = None
    ready_at: float | None = None
    exited_at: float | None = None
    restarts: int = 0  # since the up that started it
    restarts_total: int = 0  # over the state directory's life
    restart_times: deque[float] = field(default_factory=deque)
    consecutive_failures: int = 0
    generation: int = 0
    task: asyncio.Task[None] | None = None
    log_offset: int = 0
    liveness_failed: bool = False
    paused_by: str | None = None  # stopped while this dependency restarts; resumed after it
    spec: LaunchSpec | None = None  # what it runs; None: resolved afresh at the next spawn
    fingerprint: str | None = None  # of what runs now (kept in state.json for adoption)
    # resolved (with why) when a dependency leaves its condition while this one starts
    dependency_lost: asyncio.Future[str] | None = None
    degraded_by: tuple[str, ...] = ()  # the dependencies it lost since it was last ready
    notify: NotifyListener | None = None  # this run's NOTIFY_SOCKET (``ready: notify``)

    @property
    def alive(self) -> bool:
        return self.exited is not None and not self.exited.done()

    def busy(self) -> bool:
        """Something is bringing it up already: an up in progress, or its own restart."""
        if self.state in IN_PROGRESS:
            return True
        return self.task is not None and not self.task.done()

    def record_exit(self, code: int | None) -> None:
        self.exit_code = code
        self.exited_at = time.time()
        if self.notify is not None:  # nothing of this run may speak for the next one
            self.notify.close()
            self.notify = None

    def to_record(self) -> ServiceRecord:
        """What state.json keeps of it."""
        record = self.record
        leader = record if record is not None and record.has_leader else None
        return ServiceRecord(
            name=self.name,
            state=self.state.value,
            pid=leader.pid if leader else None,
            pgid=leader.pgid if leader else None,
            create_time=leader.create_time if leader else None,
            started_at=self.started_at,
            ready_at=self.ready_at,
            exited_at=self.exited_at,
            exit_code=self.exit_code,
            restarts=self.restarts,
            restarts_total=self.restarts_total,
            detail=self.detail or None,
            generation=self.generation,
            fingerprint=self.fingerprint,
            run=record.run if record else None,
            cgroup=record.cgroup if record else None,
        )


@dataclass(frozen=True)
class StartFailure:
    """Why a start failed; ``final`` when retrying cannot help (a port held by another
    process, a program that does not exist, wrong credentials): no backoff, fail now.
    ``held`` when it was no failure of its own: a dependency went away while it started."""

    reason: str
    final: bool = False
    held: bool = False


@dataclass(frozen=True)
class Restart:
    """A service ended and will be started again. ``counted``: spent from its restart budget
    (with backoff); a service that only waits for a dependency spends nothing."""

    reason: str
    counted: bool = True


class Blocked(Exception):
    """A dependency failed while this service waited for it."""


def condition_met(dependency: Runtime, condition: Condition) -> bool:
    """Whether ``dependency`` is where an edge with ``condition`` needs it to be."""
    state = dependency.state
    if dependency.service.kind is Kind.ONESHOT:
        if condition is Condition.STARTED:
            return state in (State.RUNNING, State.COMPLETED)
        return state is State.COMPLETED
    if condition is Condition.STARTED:
        return state in (State.STARTING, State.READY, State.UNREADY, State.DEGRADED)
    # a degraded dependency is not ready: what stands on it is degraded too, and waits
    return state in SERVING


def unmet(runtime: Runtime, runtimes: dict[str, Runtime]) -> list[Runtime]:
    """The dependencies of ``runtime`` not in the condition its edge to them asks for."""
    return [
        runtimes[name]
        for name, edge in runtime.service.depends_on.items()
        if name in runtimes and not condition_met(runtimes[name], edge.condition)
    ]


def lost_detail(dependencies: list[Runtime]) -> str:
    """What a degraded service says: ``rabbitmq is down``, ``web is degraded``."""
    return "; ".join(
        f"{d.name} is {'degraded' if d.state is State.DEGRADED else 'down'}" for d in dependencies
    )


def dependency_failed(dependency: Runtime) -> bool:
    return dependency.state in SETTLED_BAD or dependency.state is State.STOPPED


def waiting_detail(runtime: Runtime, dependencies: list[Runtime]) -> str:
    """``for rabbitmq ready, migrate completed``: the dependencies it still waits for."""
    edges = runtime.service.depends_on
    needs = [f"{d.name} {edges[d.name].condition.value}" for d in dependencies]
    return ("for " + ", ".join(needs)) if needs else ""


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` shows for one service."""

    service: str
    kind: str
    state: str
    pid: int | None
    uptime: float | None
    restarts: int
    detail: str
    exit_code: int | None = None
    restarts_total: int = 0
    started_at: float | None = None
    ready_at: float | None = None
    identity: str | None = None  # how its (last) run's processes are known

    def to_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "kind": self.kind,
            "state": self.state,
            "pid": self.pid,
            "uptime": None if self.uptime is None else round(self.uptime, 3),
            "restarts": self.restarts,
            "restarts_total": self.restarts_total,
            "detail": self.detail,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "identity": self.identity,
        }


def status_of(service: Service, record: ServiceRecord, now: float, *, alive: bool) -> ServiceStatus:
    """One status row from a record; shared by the daemon and the no-daemon path."""
    state = record.state
    kind = service.kind
    if kind is Kind.EXTERNAL:
        shown = {"ready": "external-ok", "failed": "external-down"}.get(state, state)
    elif state == State.EXITED.value:
        shown = f"exited({exit_status(record.exit_code)})"
    else:
        shown = state
    uptime = None
    if alive and record.started_at is not None:
        uptime = max(0.0, now - record.started_at)
    return ServiceStatus(
        service=record.name,
        kind=kind.value,
        state=shown,
        pid=record.pid if alive else None,
        uptime=uptime,
        restarts=record.restarts,
        restarts_total=max(record.restarts_total, record.restarts),
        detail=record.detail or "",
        exit_code=record.exit_code,
        started_at=record.started_at,
        ready_at=record.ready_at,
        identity=record.identity,
    )


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_status(code: int | None) -> str:
    """The short form status shows in ``exited(...)``: ``3``, ``SIGKILL``, ``?``."""
    if code is None:
        return "?"
    return signal_name(-code) if code < 0 else str(code)


def describe_exit(code: int | None) -> str:
    """How a process ended, in words: ``exited with code 3``, ``killed by SIGKILL``."""
    if code is None:
        return "exited with an unknown status (not our child)"
    if code < 0:
        return f"killed by {signal_name(-code)}"
    if code > 128 and code - 128 < signal.NSIG:
        # a shell that waited for its child reports a signal as 128 + its number
        return f"exited with code {code} (128 + {signal_name(code - 128)})"
    return f"exited with code {code}"


def monotonic_of(wall: float | None) -> float:
    """A wall-clock instant expressed on the monotonic clock (for durations only)."""
    if wall is None:
        return time.monotonic()
    return time.monotonic() - (time.time() - wall)
