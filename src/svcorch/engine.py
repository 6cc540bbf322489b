"""The engine: one state machine per service, driven by events on one asyncio loop.

Only the loop touches service state, so there are no locks around it. Blocking work (probe
attempts, port scans, stop commands) runs in worker threads and comes back as results. A
child's exit is learnt from a pidfd registered with the loop, not from a thread per child.

Every transition is one ``Event``; the same events feed the CLI's live view, the state file,
``analyze`` and the daemon's log. Nothing else invents its own idea of a service's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from svcorch import process
from svcorch.catalogue import service_environment
from svcorch.errors import ProcessError, StaleRecord
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue, Condition, Kind, RestartPolicy, Service
from svcorch.probes import registry
from svcorch.probes.base import Probe, ProbeContext, ProbeOptions, ProbeResult
from svcorch.process import ProcessRecord
from svcorch.redaction import Redactor
from svcorch.state import ServiceRecord, StateFile, StateLayout, rotate_if_needed

log = logging.getLogger("svcorch.engine")

# Each probe attempt blocks a worker thread (client libraries are blocking). asyncio's default
# pool has cpu+4 threads: six silent servers (attempts waiting out their timeouts) would stall
# every other probe. Threads are made only when needed, so a big pool costs nothing idle.
PROBE_THREADS = 64
LOG_TAIL_LINES = 20
ROTATE_EVERY = 2.0  # seconds between log size checks; housekeeping, not readiness
KILL_GRACE = 5.0  # how long SIGKILLed survivors get to vanish


class State(StrEnum):
    """Where one service is. See docs/architecture.md for the transitions."""

    STOPPED = "stopped"
    WAITING = "waiting"  # for its dependencies
    STARTING = "starting"  # spawned, readiness probe running
    READY = "ready"
    UNREADY = "unready"  # ready before, liveness failing now (below the threshold)
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
IN_PROGRESS = frozenset(
    {State.WAITING, State.STARTING, State.RUNNING, State.PROBING, State.BACKOFF}
)
HAS_PROCESS = frozenset({State.STARTING, State.READY, State.UNREADY, State.RUNNING, State.STOPPING})


@dataclass(frozen=True)
class Event:
    """One transition of one service."""

    service: str
    old: State
    new: State
    time: float  # wall clock
    detail: str = ""
    pid: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "old": self.old.value,
            "new": self.new.value,
            "time": self.time,
            "detail": self.detail,
            "pid": self.pid,
        }


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
    restarts: int = 0
    restart_times: deque[float] = field(default_factory=deque)
    consecutive_failures: int = 0
    generation: int = 0
    task: asyncio.Task[None] | None = None
    log_offset: int = 0
    liveness_failed: bool = False
    paused_by: str | None = None  # stopped while this dependency restarts; resumed after it

    @property
    def alive(self) -> bool:
        return self.exited is not None and not self.exited.done()


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
    started_at: float | None = None
    ready_at: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "kind": self.kind,
            "state": self.state,
            "pid": self.pid,
            "uptime": None if self.uptime is None else round(self.uptime, 3),
            "restarts": self.restarts,
            "detail": self.detail,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
        }


@dataclass(frozen=True)
class Failure:
    service: str
    reason: str
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """The result of an up, down or restart."""

    action: str
    ok: bool
    done: tuple[str, ...] = ()  # ready/completed (up) or stopped (down)
    already: tuple[str, ...] = ()  # left alone: already in the wanted state
    failed: tuple[Failure, ...] = ()
    blocked: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()  # still starting when up returned on a failure
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "ok": self.ok,
            "done": list(self.done),
            "already": list(self.already),
            "failed": [
                {"service": f.service, "reason": f.reason, "log_tail": list(f.log_tail)}
                for f in self.failed
            ],
            "blocked": list(self.blocked),
            "pending": list(self.pending),
            "elapsed": round(self.elapsed, 3),
        }


@dataclass(frozen=True)
class StartFailure:
    """Why a start failed; ``final`` when retrying cannot help (a port held by another
    process, a program that does not exist, wrong credentials): no backoff, fail now."""

    reason: str
    final: bool = False


class Blocked(Exception):
    """A dependency failed while this service waited for it."""


ProbeFactory = Callable[[ProbeOptions, ProbeContext], Probe]


def registry_probe(options: ProbeOptions, context: ProbeContext) -> Probe:
    probe_type = registry.get(options.type)
    if probe_type is None:
        raise ProcessError(f"unknown probe type {options.type!r}")
    return probe_type.create(options, context)


class Engine:
    """Starts, supervises and stops the services of one catalogue."""

    def __init__(
        self,
        catalogue: Catalogue,
        layout: StateLayout,
        *,
        die_with_parent: bool = False,
        probe_factory: ProbeFactory = registry_probe,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.layout = layout
        self.die_with_parent = die_with_parent
        self.probe_factory = probe_factory
        self.subscribers: list[Callable[[Event], None]] = []
        self.runtimes: dict[str, Runtime] = {}
        self.changed = asyncio.Condition()
        self.state_file = StateFile(layout.state_file)
        # one writer thread: a state write never waits behind probe attempts, and writes
        # happen in the order their snapshots were taken
        self._state_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="svcorch-state")
        self._dirty = False
        self._writing: asyncio.Task[None] | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._retiring: set[asyncio.Task[None]] = set()  # stopping services no longer listed
        self.environ = dict(os.environ if environ is None else environ)
        self.catalogue: Catalogue
        self.graph: ServiceGraph
        self.redactor = Redactor()  # secrets: every detail passes through it (set by load)
        self.load(catalogue)  # sets catalogue and graph (built once, cycles checked once)

    # -- catalogue ---------------------------------------------------------------------------

    def load(self, catalogue: Catalogue, environ: Mapping[str, str] | None = None) -> None:
        """Take a (re)loaded catalogue; running services keep their processes."""
        self.catalogue = catalogue
        self.graph = ServiceGraph.from_catalogue(catalogue)
        if environ is not None:
            self.environ = dict(environ)
        self.redactor = Redactor.for_catalogue(catalogue, self.environ)  # secrets
        for name, service in catalogue.services.items():
            runtime = self.runtimes.get(name)
            if runtime is None:
                self.runtimes[name] = Runtime(name=name, service=service)
            else:
                runtime.service = service
        for name in [n for n in self.runtimes if n not in catalogue.services]:
            # nothing could stop it any more (down works from the catalogue): stop it now
            runtime = self.runtimes.pop(name)
            if runtime.alive or self._busy(runtime):
                log.warning("%s is no longer in the catalogue: stopping it", name)
                task = asyncio.get_running_loop().create_task(self._retire(runtime))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)

    async def _retire(self, runtime: Runtime) -> None:
        task = runtime.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if runtime.record is not None and (runtime.alive or self._group_left(runtime)):
            await self._stop_process(runtime, reason="removed from the catalogue")

    # -- events ------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def _set(self, runtime: Runtime, new: State, detail: str = "") -> None:
        old = runtime.state
        detail = self.redactor.text(detail)  # secrets: events, log, status and state see this
        runtime.state = new
        runtime.detail = detail
        now = time.time()
        if new is State.STARTING or new is State.RUNNING:
            runtime.started_at = now
            runtime.ready_at = None
        elif (new is State.READY and old is not State.UNREADY) or new is State.COMPLETED:
            # a oneshot's completion is when it released its dependents: analyze counts it
            runtime.ready_at = now
        event = Event(
            runtime.name, old, new, now, detail, runtime.record.pid if runtime.record else None
        )
        log.info(
            "%s: %s -> %s%s", runtime.name, old.value, new.value, f" ({detail})" if detail else ""
        )
        for callback in list(self.subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not stop the engine
                log.exception("event subscriber failed")
        self._schedule_persist()
        self._notify()

    def _notify(self) -> None:
        async def wake() -> None:
            async with self.changed:
                self.changed.notify_all()

        task = asyncio.get_running_loop().create_task(wake())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await self.changed.wait_for(predicate)

    # -- persistence -------------------------------------------------------------------------

    def _schedule_persist(self) -> None:
        """Write state.json soon, off the loop (an fsync takes milliseconds, and the loop
        spawns and probes meanwhile). The transitions of one loop turn, and all those made
        while a write is under way, become one atomic write."""
        self._dirty = True
        if self._writing is None or self._writing.done():
            self._writing = asyncio.get_running_loop().create_task(self._write_state())

    async def _write_state(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty:
            self._dirty = False
            records = self.records()  # the snapshot is taken on the loop, consistent
            try:
                await loop.run_in_executor(self._state_writer, self.state_file.save, records)
            except Exception:
                log.exception("could not write %s", self.layout.state_file)

    async def flush(self) -> None:
        """Return once state.json holds every transition made so far."""
        while self._writing is not None and not self._writing.done():
            # shielded: a caller that is cancelled must not abort a write half-way
            await asyncio.shield(self._writing)

    def persist_now(self) -> None:
        """Write state.json at once, on this thread (for a process about to exit)."""
        self._dirty = False
        try:
            self.state_file.save(self.records())
        except Exception:
            log.exception("could not write %s", self.layout.state_file)

    def records(self) -> dict[str, ServiceRecord]:
        records = {}
        for name, runtime in self.runtimes.items():
            record = runtime.record
            records[name] = ServiceRecord(
                name=name,
                state=runtime.state.value,
                pid=record.pid if record else None,
                pgid=record.pgid if record else None,
                create_time=record.create_time if record else None,
                started_at=runtime.started_at,
                ready_at=runtime.ready_at,
                exited_at=runtime.exited_at,
                exit_code=runtime.exit_code,
                restarts=runtime.restarts,
                detail=self.redactor.text(runtime.detail) or None,  # secrets: state.json
                generation=runtime.generation,
            )
        return records

    # -- adoption ----------------------------------------------------------------------------

    def adopt(self, records: Mapping[str, ServiceRecord]) -> list[str]:
        """Take over services a previous daemon started that are still alive."""
        self._probe_pool()
        adopted = []
        for name, saved in records.items():
            runtime = self.runtimes.get(name)
            if runtime is None:
                continue
            runtime.restarts = saved.restarts
            runtime.generation = saved.generation
            runtime.started_at = saved.started_at
            runtime.ready_at = saved.ready_at
            recorded = saved.process()
            if recorded is None:
                if saved.state == State.COMPLETED.value:
                    runtime.state = State.COMPLETED
                continue
            if process.is_same_process(recorded):
                runtime.record = recorded
                runtime.exited = self._watch_exit(recorded, popen=None)
                was_ready = saved.state in (State.READY.value, State.UNREADY.value)
                runtime.task = asyncio.get_running_loop().create_task(
                    self._guarded(runtime, self._supervise_adopted(runtime, was_ready))
                )
                adopted.append(name)
            elif saved.state in {s.value for s in HAS_PROCESS | {State.BACKOFF}}:
                runtime.record = recorded  # group members may remain; down still stops them
                runtime.exited_at = saved.exited_at or time.time()
                self._set(runtime, State.EXITED, "exited while no svcorch daemon was watching")
        self._schedule_persist()
        return adopted

    async def _supervise_adopted(self, runtime: Runtime, was_ready: bool) -> None:
        if runtime.service.kind is Kind.ONESHOT:
            self._set(runtime, State.RUNNING, "adopted")
            await self._finish_oneshot(runtime)
            return
        if was_ready:
            self._set(runtime, State.READY, "adopted")
        else:
            self._set(runtime, State.STARTING, "adopted; probing again")
            failure = await self._gate(runtime)
            if failure is not None:
                await self._start_failed(runtime, failure)
                return
        await self._supervise(runtime)

    # -- up ----------------------------------------------------------------------------------

    async def up(self, names: Iterable[str], *, rollback: bool = False) -> Outcome:
        """Bring ``names`` (already closed over their dependencies) up; return when all are
        ready, or as soon as one has failed for good (after the retries its policy allows)."""
        started = time.monotonic()
        self._probe_pool()
        selected = self.graph.subgraph(names).start_order()
        already: list[str] = []
        launched: list[str] = []
        for name in selected:
            runtime = self.runtimes[name]
            if runtime.state in SETTLED_OK:
                already.append(name)
            elif not self._busy(runtime):
                self._launch(runtime)
                launched.append(name)
            # else: another up (or a restart) is bringing it up already; wait for it too

        def interrupted(name: str) -> bool:
            # a down (or a restart) stopped it while this up waited, and nobody brings it up
            runtime = self.runtimes[name]
            return (
                runtime.state is State.STOPPED
                and runtime.paused_by is None
                and not self._busy(runtime)
            )

        def settled() -> bool:
            states = [self.runtimes[n].state for n in selected]
            if any(s in (State.FAILED, State.FATAL) for s in states):
                return True
            return all(
                self.runtimes[n].state in SETTLED_OK | SETTLED_BAD or interrupted(n)
                for n in selected
            )

        await self._wait_for(settled)
        failed = [
            n
            for n in selected
            if self.runtimes[n].state in (State.FAILED, State.FATAL, State.EXITED)
        ]
        stopped = [n for n in selected if interrupted(n)]
        blocked = [n for n in selected if self.runtimes[n].state is State.BLOCKED]
        pending = [
            n
            for n in selected
            if self.runtimes[n].state not in SETTLED_OK | SETTLED_BAD and n not in stopped
        ]
        ready_before = set(already)
        done = [
            n for n in selected if n not in ready_before and self.runtimes[n].state in SETTLED_OK
        ]
        outcome = Outcome(
            action="up",
            ok=not failed and not stopped and not blocked and not pending,
            done=tuple(done),
            already=tuple(already),
            failed=tuple(self._failure(self.runtimes[n]) for n in failed)
            + tuple(Failure(n, "stopped while starting (a down or restart)") for n in stopped),
            blocked=tuple(blocked),
            pending=tuple(pending),
            elapsed=time.monotonic() - started,
        )
        if rollback and not outcome.ok:
            await self.down(launched)
        return outcome

    def _probe_pool(self) -> None:
        """Probe attempts run on the loop's default executor (``asyncio.to_thread``): make it
        big enough for many services probing at once, once per loop."""
        loop = asyncio.get_running_loop()
        if self._pool_loop is not loop:
            self._pool_loop = loop
            loop.set_default_executor(
                ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="svcorch-probe")
            )

    def _busy(self, runtime: Runtime) -> bool:
        """Something is bringing it up already: an up in progress, or its own restart."""
        if runtime.state in IN_PROGRESS:
            return True
        return runtime.task is not None and not runtime.task.done()

    def _launch(self, runtime: Runtime) -> None:
        """An explicit start: a fresh restart budget, then wait for the dependencies."""
        runtime.generation += 1
        runtime.restart_times.clear()
        runtime.consecutive_failures = 0
        runtime.paused_by = None
        loop = asyncio.get_running_loop()
        if runtime.state is State.STOPPING:
            # a down is stopping it right now: start again once that stop is over
            runtime.task = loop.create_task(
                self._guarded(runtime, self._bring_up_after_stop(runtime))
            )
            return
        self._set(runtime, State.WAITING, self._waiting_detail(runtime))
        runtime.task = loop.create_task(self._guarded(runtime, self._bring_up(runtime)))

    async def _bring_up_after_stop(self, runtime: Runtime) -> None:
        await self._wait_for(lambda: runtime.state is not State.STOPPING)
        self._set(runtime, State.WAITING, self._waiting_detail(runtime))
        await self._bring_up(runtime)

    def _waiting_detail(self, runtime: Runtime) -> str:
        needs = [f"{d} {e.condition.value}" for d, e in runtime.service.depends_on.items()]
        return ("for " + ", ".join(needs)) if needs else ""

    def _failure(self, runtime: Runtime) -> Failure:
        return Failure(runtime.name, runtime.detail, tuple(self.log_tail(runtime.name)))

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> list[str]:
        path = self.layout.service_log(name)
        try:
            with path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 64 * 1024))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    async def _guarded(self, runtime: Runtime, work: Coroutine[Any, Any, None]) -> None:
        """A service's task: an unexpected error (a probe plugin's bug, say) fails that
        service, with its traceback in the log, and leaves nothing of it running; the other
        services and an up waiting for it carry on."""
        try:
            await work
        except Exception as exc:
            log.exception("%s: unexpected error", runtime.name)
            try:
                await self._kill_quietly(runtime)
            except Exception:
                log.exception("%s: stopping it after the error failed too", runtime.name)
            self._set(runtime, State.FAILED, f"internal error: {type(exc).__name__}: {exc}")

    async def _bring_up(self, runtime: Runtime) -> None:
        try:
            await self._dependencies_met(runtime)
        except Blocked as exc:
            self._set(runtime, State.BLOCKED, str(exc))
            return
        kind = runtime.service.kind
        if kind is Kind.EXTERNAL:
            await self._probe_external(runtime)
        elif kind is Kind.ONESHOT:
            await self._run_oneshot(runtime)
        else:
            await self._run_managed(runtime)

    def _condition_met(self, dependency: Runtime, condition: Condition) -> bool:
        state = dependency.state
        if dependency.service.kind is Kind.ONESHOT:
            if condition is Condition.STARTED:
                return state in (State.RUNNING, State.COMPLETED)
            return state is State.COMPLETED
        if condition is Condition.STARTED:
            return state in (State.STARTING, State.READY, State.UNREADY)
        return state in (State.READY, State.UNREADY)

    def _dependency_failed(self, dependency: Runtime) -> bool:
        return dependency.state in SETTLED_BAD or dependency.state is State.STOPPED

    async def _dependencies_met(self, runtime: Runtime) -> None:
        edges = [(self.runtimes[d], e.condition) for d, e in runtime.service.depends_on.items()]
        blocker: list[str] = []

        def ready_or_blocked() -> bool:
            for dependency, condition in edges:
                if self._condition_met(dependency, condition):
                    continue
                if self._dependency_failed(dependency):
                    blocker.append(f"dependency {dependency.name} is {dependency.state.value}")
                    return True
                return False
            return True

        await self._wait_for(ready_or_blocked)
        if blocker:
            raise Blocked(blocker[0])

    # -- external ----------------------------------------------------------------------------

    async def _probe_external(self, runtime: Runtime) -> None:
        options = runtime.service.ready
        assert options is not None  # the model requires a probe on external services
        self._set(runtime, State.PROBING, options.target())
        result = await self._wait_ready(runtime, options)
        if result.ok:
            self._set(runtime, State.READY, result.detail)
        else:
            self._set(runtime, State.FAILED, result.detail)

    # -- oneshot -----------------------------------------------------------------------------

    async def _run_oneshot(self, runtime: Runtime) -> None:
        failure = await self._spawn(runtime, State.RUNNING)
        if failure is not None:
            await self._start_failed(runtime, failure)
            return
        await self._finish_oneshot(runtime)

    async def _finish_oneshot(self, runtime: Runtime) -> None:
        assert runtime.exited is not None
        code = await runtime.exited
        self._record_exit(runtime, code)
        await self._reap_group(runtime)
        if code == 0:
            self._set(runtime, State.COMPLETED, "exited 0")
        else:
            await self._start_failed(runtime, StartFailure(f"exited with {_describe_exit(code)}"))

    # -- managed -----------------------------------------------------------------------------

    async def _run_managed(self, runtime: Runtime) -> None:
        failure = await self._spawn(runtime, State.STARTING)
        if failure is None:
            failure = await self._gate(runtime)
        if failure is not None:
            await self._start_failed(runtime, failure)
            return
        await self._supervise(runtime)

    async def _gate(self, runtime: Runtime) -> StartFailure | None:
        """The readiness gate: probe passed and the child still alive. None, or why not."""
        options = runtime.service.ready
        if options is None:
            if runtime.alive:
                self._set(runtime, State.READY, "running")
                return None
            return self._exited_before_ready(runtime)
        result = await self._wait_ready(runtime, options)
        if result.ok and runtime.alive:
            self._set(runtime, State.READY, result.detail)
            return None
        if not runtime.alive:
            return self._exited_before_ready(runtime)
        await self._kill_quietly(runtime)
        # a fatal probe (access denied, unknown vhost) fails now, with the server's words
        return StartFailure(result.detail, final=not result.retryable)

    def _exited_before_ready(self, runtime: Runtime) -> StartFailure:
        assert runtime.exited is not None
        code = runtime.exited.result()
        self._record_exit(runtime, code)
        # RabbitMQ's script exits 0 after a failed boot: exiting before ready is a failure
        return StartFailure(f"exited with {_describe_exit(code)} before ready")

    async def _start_failed(self, runtime: Runtime, failure: StartFailure) -> None:
        """A start failed: back off and retry where the policy allows, else it failed.

        A start that will be retried goes straight to ``backoff``: an up waiting for it, and
        its dependents, must never see a ``failed`` that is not final.
        """
        if failure.final or runtime.service.restart.policy is RestartPolicy.NO:
            self._set(runtime, State.FAILED, failure.reason)
            return
        await self._restart_later(runtime, failure.reason)

    def _probe(self, runtime: Runtime, options: ProbeOptions) -> Probe:
        """A probe for this start of the service (a log probe reads from where it began)."""
        context = ProbeContext(
            service=runtime.name,
            base_dir=self.catalogue.base_dir,
            env=self._environment(runtime.service),
            log_path=self.layout.service_log(runtime.name),
            log_offset=runtime.log_offset,
        )
        return self.probe_factory(options, context)

    async def _wait_ready(self, runtime: Runtime, options: ProbeOptions) -> ProbeResult:
        from svcorch.probes.wait import wait_ready_async

        probe = self._probe(runtime, options)
        if runtime.service.kind is Kind.EXTERNAL:
            return await wait_ready_async(probe, options)
        exited = runtime.exited
        assert exited is not None
        waiter = asyncio.ensure_future(
            wait_ready_async(probe, options, is_alive=lambda: not exited.done())
        )
        # react to the child's exit at once, not at the next probe attempt
        watched: set[asyncio.Future[Any]] = {waiter, exited}
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        if waiter.cancelled():
            return ProbeResult.failed("process exited", retryable=False)
        return waiter.result()

    async def _supervise(self, runtime: Runtime) -> None:
        """Watch a ready service until it exits or its liveness fails; then restart policy."""
        assert runtime.exited is not None
        liveness = None
        if runtime.service.liveness is not None:
            liveness = asyncio.ensure_future(self._liveness(runtime))
        try:
            watched: set[asyncio.Future[Any]] = {runtime.exited}
            if liveness is not None:
                watched.add(liveness)
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if liveness is not None and not liveness.done():
                liveness.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await liveness
        ready_for = time.monotonic() - _monotonic_of(runtime.ready_at)
        if ready_for >= runtime.service.restart.reset_after.total_seconds():
            runtime.consecutive_failures = 0
        if runtime.liveness_failed and runtime.alive:
            reason = runtime.detail
            log.warning("%s: restarting: %s", runtime.name, reason)
            # top-down, like a down: the dependents that asked go first, then the service
            paused = await self._stop_dependents_for_restart(runtime)
            await self._stop_process(runtime, reason=reason)
            await self._restart_later(runtime, reason, forced=True, paused=paused)
            return
        code = runtime.exited.result()
        self._record_exit(runtime, code)
        policy = runtime.service.restart.policy
        wants = policy is RestartPolicy.ALWAYS or (policy is RestartPolicy.ON_FAILURE and code != 0)
        await self._reap_group(runtime)
        if not wants:
            self._set(runtime, State.EXITED, f"exited with {_describe_exit(code)}")
            return
        await self._restart_later(runtime, f"exited with {_describe_exit(code)}")

    async def _liveness(self, runtime: Runtime) -> None:
        from svcorch.probes.wait import check_once

        liveness = runtime.service.liveness
        assert liveness is not None
        options = liveness.probe
        probe = self._probe(runtime, options)
        failures = 0
        period = options.period.total_seconds()
        runtime.liveness_failed = False
        while True:
            await asyncio.sleep(period)
            result = await asyncio.to_thread(check_once, probe, options)
            if result.ok:
                if failures:
                    self._set(runtime, State.READY, f"liveness ok again: {result.detail}")
                failures = 0
                continue
            failures += 1
            if failures >= liveness.failure_threshold:
                runtime.liveness_failed = True
                runtime.detail = f"liveness failed {failures} times: {result.detail}"
                return
            self._set(
                runtime,
                State.UNREADY,
                f"liveness failed {failures}/{liveness.failure_threshold}: {result.detail}",
            )

    async def _restart_later(
        self,
        runtime: Runtime,
        reason: str,
        *,
        forced: bool = False,
        paused: list[str] | None = None,
    ) -> None:
        """Restart after the backoff, or give up as ``fatal`` once the budget is spent.

        ``paused``: dependents already stopped for this restart (a liveness restart stops them
        before the service itself); otherwise the ones that asked are stopped here.
        """
        spec = runtime.service.restart
        if spec.policy is RestartPolicy.NO and not forced:
            return
        now = time.monotonic()
        window = spec.window.total_seconds()
        while runtime.restart_times and now - runtime.restart_times[0] > window:
            runtime.restart_times.popleft()
        if len(runtime.restart_times) >= spec.max_restarts:
            if paused is None:
                await self._stop_dependents_for_restart(runtime)
            self._set(
                runtime,
                State.FATAL,
                f"{len(runtime.restart_times)} restarts within {window:g}s; last: {reason}",
            )
            return
        delay = min(
            spec.backoff.total_seconds() * (2**runtime.consecutive_failures),
            spec.max_backoff.total_seconds(),
        )
        runtime.consecutive_failures += 1
        runtime.restart_times.append(now)
        runtime.restarts += 1
        self._set(runtime, State.BACKOFF, f"restarting in {delay:.3g}s: {reason}")
        if paused is None:
            paused = await self._stop_dependents_for_restart(runtime)
        await asyncio.sleep(delay)
        runtime.generation += 1
        runtime.liveness_failed = False
        self._resume_paused(runtime, paused)
        if runtime.service.kind is Kind.ONESHOT:
            await self._run_oneshot(runtime)
        else:
            await self._run_managed(runtime)

    def _resume_paused(self, runtime: Runtime, paused: list[str]) -> None:
        """Start again the dependents stopped for this restart; they wait for it to be ready.

        One that was explicitly stopped or started meanwhile (paused_by cleared) is left alone.
        """
        for name in paused:
            dependent = self.runtimes[name]
            if dependent.paused_by == runtime.name and dependent.state is State.STOPPED:
                self._launch(dependent)

    async def _stop_dependents_for_restart(self, runtime: Runtime) -> list[str]:
        """Dependents that asked for ``restart_on_dependency`` stop while this one restarts
        (with whatever depends on them), top-down; returns them in start order."""
        names = [
            dependent
            for dependent in self.graph.dependents(runtime.name)
            if self.runtimes[dependent].service.depends_on[runtime.name].restart_on_dependency
            and self.runtimes[dependent].state not in (State.STOPPED, State.BLOCKED)
        ]
        if not names:
            return []
        closure = self.graph.select_down(names)
        await self.down(closure)
        for name in closure:
            self.runtimes[name].paused_by = runtime.name
        order = {name: index for index, name in enumerate(self.graph.start_order())}
        return sorted(closure, key=order.__getitem__)

    # -- spawning ----------------------------------------------------------------------------

    def _environment(self, service: Service) -> dict[str, str]:
        env = service_environment(self.catalogue, service, self.environ)
        env["SVCORCH_SERVICE"] = service.name
        env["SVCORCH_STATE_DIR"] = str(self.layout.root)
        # tools installed beside svcorch (gunicorn, celery in its venv) are found first
        bindir = str(Path(sys.executable).parent)
        path = env.get("PATH", os.defpath)
        if bindir not in path.split(os.pathsep):
            env["PATH"] = bindir + os.pathsep + path
        return env

    async def _spawn(self, runtime: Runtime, state: State) -> StartFailure | None:
        """Spawn the service's process and enter ``state``; None, or why it could not."""
        service = runtime.service
        if service.ports:
            try:
                await asyncio.to_thread(process.check_ports_free, runtime.name, service.ports)
            except ProcessError as exc:
                return StartFailure(str(exc), final=True)
        log_path = self.layout.service_log(runtime.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            runtime.log_offset = log_path.stat().st_size
        except FileNotFoundError:
            runtime.log_offset = 0
        cwd = self.catalogue.base_dir / service.cwd if service.cwd else self.catalogue.base_dir
        argv = service.argv()
        header = (
            f"--- svcorch: {runtime.name} start #{runtime.generation} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {Path(argv[0]).name if argv else '?'} ---"
        )
        try:
            popen = process.spawn(
                argv,
                cwd=cwd,
                env=self._environment(service),
                log_path=log_path,
                header=header,
                die_with_parent=self.die_with_parent,
                service=runtime.name,
            )
        except ProcessError as exc:
            return StartFailure(str(exc), final=True)
        runtime.popen = popen
        try:
            runtime.record = process.record_of(popen)
        except ProcessError:
            # gone before its identity could be read: a record nobody matches is never signalled
            runtime.record = ProcessRecord(pid=popen.pid, pgid=popen.pid, create_time=0.0)
        runtime.exit_code = None
        runtime.exited_at = None
        runtime.exited = self._watch_exit(runtime.record, popen=popen)
        self._set(runtime, state, f"pid {popen.pid}")
        return None

    def _watch_exit(
        self, record: ProcessRecord, popen: subprocess.Popen[bytes] | None
    ) -> asyncio.Future[int | None]:
        """A future resolved with the exit code (None when not our child) when it exits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        pidfd = process.open_pidfd(record.pid)

        def reap() -> bool:
            if popen is not None:
                code = popen.poll()
                if code is None:
                    return False
            elif process.is_same_process(record):
                return False
            else:
                code = None
            if not future.done():
                future.set_result(code)
            return True

        if pidfd is None:
            # no pidfd (old kernel): poll fast-then-slow
            async def poll() -> None:
                delay = 0.005
                while not reap():
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.2)

            poller = loop.create_task(poll())
            self._background.add(poller)
            poller.add_done_callback(self._background.discard)
            return future

        def readable() -> None:
            if reap():
                loop.remove_reader(pidfd)
                os.close(pidfd)

        loop.add_reader(pidfd, readable)
        return future

    def _record_exit(self, runtime: Runtime, code: int | None) -> None:
        runtime.exit_code = code
        runtime.exited_at = time.time()

    # -- stopping ----------------------------------------------------------------------------

    async def down(self, names: Iterable[str], *, timeout: float | None = None) -> Outcome:
        """Stop ``names`` (already closed over their dependents), dependents first."""
        started = time.monotonic()
        selected = [n for n in self.graph.subgraph(names).stop_order()]
        tasks: dict[str, asyncio.Future[bool]] = {}
        loop = asyncio.get_running_loop()

        async def stop_after_dependents(name: str) -> bool:
            waits = [tasks[d] for d in self.graph.dependents(name) if d in tasks]
            if waits:
                await asyncio.wait(waits)
            return await self._stop(self.runtimes[name], timeout)

        for name in selected:  # dependents come first, so their futures exist already
            tasks[name] = loop.create_task(stop_after_dependents(name))
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        failures = []
        done = []
        already = []
        for name, result in zip(tasks, results, strict=True):
            if isinstance(result, BaseException):
                log.error("stopping %s failed", name, exc_info=result)
                failures.append(Failure(name, f"{type(result).__name__}: {result}"))
            elif result:
                done.append(name)
            else:
                already.append(name)
        return Outcome(
            action="down",
            ok=not failures,
            done=tuple(done),
            already=tuple(already),
            failed=tuple(failures),
            elapsed=time.monotonic() - started,
        )

    async def _stop(self, runtime: Runtime, timeout: float | None) -> bool:
        """Stop one service; False when there was nothing to stop."""
        task = runtime.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if runtime.task is task:
            runtime.task = None
        runtime.paused_by = None  # stopped on purpose: no restart of a dependency resumes it
        if runtime.service.kind is Kind.EXTERNAL:
            was = runtime.state
            if was is not State.STOPPED:
                self._set(runtime, State.STOPPED, "external: not stopped by svcorch")
            return False
        if runtime.record is None or (not runtime.alive and not self._group_left(runtime)):
            if runtime.state is not State.STOPPED:
                keep = runtime.detail if runtime.state in SETTLED_BAD else ""
                self._set(runtime, State.STOPPED, keep)
            return False  # nothing was running
        await self._stop_process(runtime, reason="", timeout=timeout)
        self._set(runtime, State.STOPPED, runtime.detail)
        return True

    def _group_left(self, runtime: Runtime) -> bool:
        record = runtime.record
        return (
            record is not None
            and bool(process.group_alive(record.pgid))
            and bool(process.group_members(record))
        )

    async def _stop_process(
        self, runtime: Runtime, *, reason: str, timeout: float | None = None
    ) -> None:
        """stop.command, then the signal to the group, SIGKILL at the one deadline."""
        record = runtime.record
        assert record is not None
        spec = runtime.service.stop
        limit = spec.timeout.total_seconds() if timeout is None else timeout
        deadline = time.monotonic() + limit
        self._set(runtime, State.STOPPING, reason)
        if spec.command is not None and runtime.alive:
            await self._run_stop_command(runtime, deadline)
        try:
            sent = process.signal_group(record, spec.signal)
        except StaleRecord as exc:
            runtime.detail = str(exc)
            return
        escalated = False
        if sent and not await self._gone_by(runtime, deadline):
            escalated = True
            with contextlib.suppress(StaleRecord):
                process.signal_group(record, signal.SIGKILL)
            if not await self._gone_by(runtime, time.monotonic() + KILL_GRACE):
                raise ProcessError(f"{runtime.name}: process group {record.pgid} survived SIGKILL")
        code = runtime.exited.result() if runtime.exited and runtime.exited.done() else None
        self._record_exit(runtime, code)
        runtime.detail = (
            f"killed after {limit:g}s (did not stop on {spec.signal.name})" if escalated else ""
        )

    async def _gone_by(self, runtime: Runtime, deadline: float) -> bool:
        """Wait for the leader's exit (an event), then for the rest of its group (polled)."""
        record = runtime.record
        assert record is not None
        if runtime.exited is not None and not runtime.exited.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(runtime.exited), max(0.0, deadline - time.monotonic())
                )
            if not runtime.exited.done():
                return False
        delay = 0.002
        while self._group_left(runtime):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)
        return True

    async def _reap_group(self, runtime: Runtime) -> None:
        """After the leader died on its own: whatever it left in its group goes too."""
        if runtime.record is not None and self._group_left(runtime):
            deadline = time.monotonic() + runtime.service.stop.timeout.total_seconds()
            with contextlib.suppress(StaleRecord):
                process.signal_group(runtime.record, runtime.service.stop.signal)
            if not await self._gone_by(runtime, deadline):
                with contextlib.suppress(StaleRecord):
                    process.signal_group(runtime.record, signal.SIGKILL)
                await self._gone_by(runtime, time.monotonic() + KILL_GRACE)

    async def _kill_quietly(self, runtime: Runtime) -> None:
        """A start that failed its gate leaves nothing behind."""
        if runtime.record is not None and (runtime.alive or self._group_left(runtime)):
            await self._stop_process(runtime, reason="readiness failed")

    async def _run_stop_command(self, runtime: Runtime, deadline: float) -> None:
        spec = runtime.service.stop
        command = spec.command
        assert command is not None
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        cwd = (
            self.catalogue.base_dir / runtime.service.cwd
            if runtime.service.cwd
            else self.catalogue.base_dir
        )
        log_path = self.layout.service_log(runtime.name)
        try:
            helper = process.spawn(
                argv,
                cwd=cwd,
                env=self._environment(runtime.service),
                log_path=log_path,
                header=f"--- svcorch: stop command for {runtime.name} ---",
                service=f"{runtime.name} stop",
            )
        except ProcessError as exc:
            log.warning("%s", exc)
            return
        try:
            helper_record = process.record_of(helper)
        except ProcessError:
            helper_record = ProcessRecord(helper.pid, helper.pid, 0.0)
        helper_exit = self._watch_exit(helper_record, popen=helper)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(helper_exit), max(0.0, deadline - time.monotonic())
            )
        if not helper_exit.done():
            with contextlib.suppress(StaleRecord, ProcessError):
                process.signal_group(helper_record, signal.SIGKILL)
            await helper_exit

    # -- restart -----------------------------------------------------------------------------

    async def restart(self, names: Iterable[str], *, timeout: float | None = None) -> Outcome:
        """Stop ``names`` and their dependents top-down, start them again bottom-up."""
        closure = self.graph.select_down(names)
        stopped = await self.down(closure, timeout=timeout)
        if not stopped.ok:
            return stopped
        for name in closure:
            self.runtimes[name].restart_times.clear()
        outcome = await self.up(self.graph.select_up(closure))
        return replace(outcome, action="restart", elapsed=stopped.elapsed + outcome.elapsed)

    # -- status ------------------------------------------------------------------------------

    def status(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        wanted = set(names) if names else None
        now = time.time()
        records = self.records()
        return [
            status_of(
                self.runtimes[name].service, records[name], now, alive=self.runtimes[name].alive
            )
            for name in self.graph.start_order()
            if wanted is None or name in wanted
        ]

    def anything_running(self) -> bool:
        return bool(self._retiring) or any(
            r.alive or r.state in IN_PROGRESS
            for r in self.runtimes.values()
            if r.service.kind is not Kind.EXTERNAL
        )

    # -- housekeeping ------------------------------------------------------------------------

    def start_housekeeping(self) -> None:
        """Rotate the logs of running services by size."""
        if self._housekeeping is None:
            self._housekeeping = asyncio.get_running_loop().create_task(self._rotate_logs())

    async def _rotate_logs(self) -> None:
        logs = self.catalogue.logs
        while True:
            await asyncio.sleep(ROTATE_EVERY)
            for name, runtime in self.runtimes.items():
                if runtime.alive:
                    try:
                        await asyncio.to_thread(
                            rotate_if_needed,
                            self.layout.service_log(name),
                            logs.max_size,
                            logs.backups,
                        )
                    except OSError:
                        log.exception("rotating the log of %s failed", name)

    async def close(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        for runtime in self.runtimes.values():
            if runtime.task is not None and not runtime.task.done():
                runtime.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runtime.task
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.flush()
        if self._dirty or self._writing is None:
            self.persist_now()  # never written yet (nothing happened), or a last change
        self._state_writer.shutdown(wait=True)


def status_of(service: Service, record: ServiceRecord, now: float, *, alive: bool) -> ServiceStatus:
    """One status row from a record; shared by the daemon and the no-daemon path."""
    state = record.state
    kind = service.kind
    if kind is Kind.EXTERNAL:
        shown = {"ready": "external-ok", "failed": "external-down"}.get(state, state)
    elif state == State.EXITED.value:
        shown = f"exited({record.exit_code if record.exit_code is not None else '?'})"
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
        detail=record.detail or "",
        exit_code=record.exit_code,
        started_at=record.started_at,
        ready_at=record.ready_at,
    )


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "an unknown status (not our child)"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def _monotonic_of(wall: float | None) -> float:
    """A wall-clock instant expressed on the monotonic clock (for durations only)."""
    if wall is None:
        return time.monotonic()
    return time.monotonic() - (time.time() - wall)
