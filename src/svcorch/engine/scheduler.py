"""Starts and stops over the graph: up bottom-up, down top-down, each step gated.

A service starts the moment the dependencies it waits on are in their condition (events, not
waves); a failed dependency blocks what waits on it. A down stops dependents before what they
depend on, branches in parallel, with one deadline per service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Collection, Coroutine, Iterable
from dataclasses import dataclass, replace
from typing import Any

from svcorch import identity, preflight, process
from svcorch.engine.base import EngineBase
from svcorch.engine.service import (
    SETTLED_BAD,
    SETTLED_OK,
    Blocked,
    Runtime,
    State,
    condition_met,
    dependency_failed,
    unmet,
    waiting_detail,
)
from svcorch.model import Kind

log = logging.getLogger("svcorch.engine")

LOG_TAIL_LINES = 20
STRAY_TIMEOUT = 10.0  # stop timeout for a stray run of a service no longer in the catalogue


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
    done: tuple[str, ...] = ()  # ready/completed (up), stopped (down), restarted (restart)
    already: tuple[str, ...] = ()  # left alone: already in the wanted state
    failed: tuple[Failure, ...] = ()
    blocked: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()  # still starting when up returned on a failure
    elapsed: float = 0.0
    # each selected service's state when the outcome was made (after a rollback)
    states: tuple[tuple[str, str], ...] = ()
    running: tuple[str, ...] = ()  # every service with a process left: what `down` would stop
    rollback: bool = False  # asked to stop what it started, should it fail
    rolled_back: tuple[str, ...] = ()  # started by this up, stopped again by --rollback
    dependencies_started: tuple[str, ...] = ()  # restart: what they needed that was down

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
            "states": dict(self.states),
            "running": list(self.running),
            "rollback": self.rollback,
            "rolled_back": list(self.rolled_back),
            "dependencies_started": list(self.dependencies_started),
        }


class Scheduling(EngineBase):
    """up, down and restart over the graph."""

    # -- up ----------------------------------------------------------------------------------

    async def up(self, names: Iterable[str], *, rollback: bool = False) -> Outcome:
        """Bring ``names`` (already closed over their dependencies) up; return when all are
        ready, or as soon as one has failed for good (after the retries its policy allows)."""
        started = time.monotonic()
        self.probe_pool()
        selected = self.graph.subgraph(names).start_order()
        already: list[str] = []
        launched: list[str] = []
        for name in selected:
            runtime = self.runtimes[name]
            if runtime.state in SETTLED_OK:
                already.append(name)
            elif not runtime.busy():
                runtime.spec = None  # an explicit start: what it runs comes from the snapshot
                runtime.restarts = 0  # restarts count from the up that started it
                self.launch(runtime)
                launched.append(name)
            # else: another up (or a restart) is bringing it up already; wait for it too

        def interrupted(name: str) -> bool:
            # a down (or a restart) stopped it while this up waited, and nobody brings it up
            runtime = self.runtimes[name]
            return (
                runtime.state is State.STOPPED and runtime.paused_by is None and not runtime.busy()
            )

        def settled() -> bool:
            states = [self.runtimes[n].state for n in selected]
            if any(s in (State.FAILED, State.FATAL) for s in states):
                return True
            return all(
                self.runtimes[n].state in SETTLED_OK | SETTLED_BAD or interrupted(n)
                for n in selected
            )

        await self.bus.wait_for(settled)
        # what waits on a failed dependency is blocked at its next wake-up: report it so
        await self.bus.wait_for(lambda: not any(self._doomed(n) for n in selected))
        failed = [
            n
            for n in selected
            if self.runtimes[n].state in (State.FAILED, State.FATAL, State.EXITED)
        ]
        stopped = [n for n in selected if interrupted(n)]
        blocked = [n for n in selected if self.runtimes[n].state is State.BLOCKED]
        failures = tuple(self.failure(self.runtimes[n]) for n in failed) + tuple(
            Failure(n, "stopped while starting (a down or restart)") for n in stopped
        )
        ok = not failed and not stopped and not blocked and not self._pending(selected, stopped)
        rolled_back: tuple[str, ...] = ()
        if rollback and not ok:
            rolled_back = (await self.down(launched)).done
        ready_before = set(already)
        done = [
            n for n in selected if n not in ready_before and self.runtimes[n].state in SETTLED_OK
        ]
        return Outcome(
            action="up",
            ok=ok,
            done=tuple(done),
            already=tuple(already),
            failed=failures,
            blocked=tuple(blocked),
            pending=tuple(self._pending(selected, stopped)),
            elapsed=time.monotonic() - started,
            states=tuple((n, self.runtimes[n].state.value) for n in selected),
            running=self.running_services(),
            rollback=rollback,
            rolled_back=rolled_back,
        )

    def _pending(self, selected: list[str], stopped: list[str]) -> list[str]:
        """Still on their way up: the daemon carries on with them after the up returns."""
        return [
            n
            for n in selected
            if self.runtimes[n].state not in SETTLED_OK | SETTLED_BAD | {State.STOPPED}
            and n not in stopped
        ]

    def _doomed(self, name: str) -> bool:
        """Waiting for a dependency that has failed: it becomes blocked when it wakes."""
        runtime = self.runtimes[name]
        if runtime.state is not State.WAITING:
            return False
        return any(
            not condition_met(self.runtimes[d], e.condition) and dependency_failed(self.runtimes[d])
            for d, e in runtime.service.depends_on.items()
        )

    def running_services(self) -> tuple[str, ...]:
        """Every service with a process, or on its way to one: what a `down` would stop."""
        return tuple(
            n
            for n in self.graph.start_order()
            if self.runtimes[n].service.kind is not Kind.EXTERNAL
            and (self.runtimes[n].alive or self.runtimes[n].busy())
        )

    async def preflight(
        self, names: Iterable[str], *, restarting: Collection[str] = ()
    ) -> list[str]:
        """What would make starting ``names`` fail for certain (``svcorch.preflight``): for
        each one an up would start, or ``restarting`` (stopped first, so the ports they hold
        are theirs)."""
        launches = []
        for name in self.graph.subgraph(names).start_order():
            runtime = self.runtimes[name]
            if runtime.service.kind is Kind.EXTERNAL:
                continue
            if name not in restarting and (runtime.state in SETTLED_OK or runtime.busy()):
                continue  # left alone by the up
            cwd, env = self.placement(runtime.service)
            launches.append(preflight.Launch(runtime.service, cwd, env))
        own = {
            record.pgid
            for name in restarting
            if (record := self.runtimes[name].record) is not None and self.runtimes[name].alive
        }
        return await asyncio.to_thread(preflight.problems, launches, own_groups=own)

    def launch(self, runtime: Runtime, *, explicit: bool = True) -> None:
        """Bring a service up once its dependencies are in their conditions.

        ``explicit`` (an up or restart): a fresh restart budget, and a dependency that fails
        meanwhile blocks it. Otherwise (a dependent paused for ``restart_on_dependency``) it
        keeps its budget and waits through its dependency's failures for it to come back.
        """
        runtime.generation += 1
        if explicit:
            runtime.restart_times.clear()
            runtime.consecutive_failures = 0
        runtime.paused_by = None
        loop = asyncio.get_running_loop()
        if runtime.state is State.STOPPING:
            # a down is stopping it right now: start again once that stop is over
            runtime.task = loop.create_task(
                self.guarded(runtime, self._bring_up_after_stop(runtime, explicit))
            )
            return
        self._wait(runtime)
        runtime.task = loop.create_task(self.guarded(runtime, self._bring_up(runtime, explicit)))

    def _wait(self, runtime: Runtime) -> None:
        self.bus.set(runtime, State.WAITING, waiting_detail(runtime, unmet(runtime, self.runtimes)))

    async def _bring_up_after_stop(self, runtime: Runtime, explicit: bool) -> None:
        await self.bus.wait_for(lambda: runtime.state is not State.STOPPING)
        self._wait(runtime)
        await self._bring_up(runtime, explicit)

    def failure(self, runtime: Runtime) -> Failure:
        return Failure(runtime.name, runtime.detail, tuple(self.log_tail(runtime)))

    def log_tail(self, runtime: Runtime, lines: int = LOG_TAIL_LINES) -> list[str]:
        """The last lines its log got since its last start (``log_offset``), never older
        ones: the previous run's last words would pass for this run's."""
        path = self.layout.service_log(runtime.name)
        try:
            with path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                # a rotation (truncation) since the start: all there is is this run's
                begin = runtime.log_offset if runtime.log_offset <= size else 0
                handle.seek(max(begin, size - 64 * 1024))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    async def guarded(self, runtime: Runtime, work: Coroutine[Any, Any, None]) -> None:
        """A service's task: an unexpected error (a probe plugin's bug, say) fails that
        service, with its traceback in the log, and leaves nothing of it running; the other
        services and an up waiting for it carry on."""
        try:
            await work
        except Exception as exc:
            log.exception("%s: unexpected error", runtime.name)
            try:
                await self.processes.kill_quietly(runtime)
            except Exception:
                log.exception("%s: stopping it after the error failed too", runtime.name)
            self.bus.set(runtime, State.FAILED, f"internal error: {type(exc).__name__}: {exc}")

    async def _bring_up(self, runtime: Runtime, explicit: bool) -> None:
        try:
            await self.await_dependencies(runtime, block=explicit)
        except Blocked as exc:
            self.bus.set(runtime, State.BLOCKED, str(exc))
            return
        if runtime.service.kind is Kind.EXTERNAL:
            await self._probe_external(runtime)
        else:
            await self.run_service(runtime)

    async def await_dependencies(self, runtime: Runtime, *, block: bool) -> None:
        """Return once every dependency is in its condition. ``block``: raise ``Blocked``
        instead as soon as one has failed (an up reports it rather than wait forever)."""
        blocker: list[str] = []

        def ready_or_blocked() -> bool:
            lacking = unmet(runtime, self.runtimes)
            if block:
                for dependency in lacking:
                    if dependency_failed(dependency):
                        blocker.append(f"dependency {dependency.name} is {dependency.state.value}")
                        return True
            return not lacking

        await self.bus.wait_for(ready_or_blocked)
        if blocker:
            raise Blocked(blocker[0])

    async def _probe_external(self, runtime: Runtime) -> None:
        # notify readiness of an external service: its liveness probe (the model checks)
        options = runtime.service.outside_probe()
        assert options is not None  # the model requires a probe on external services
        self.bus.set(runtime, State.PROBING, options.target())
        result = await self.wait_ready(runtime, options)
        if result.ok:
            self.bus.set(runtime, State.READY, result.detail)
        else:
            self.bus.set(runtime, State.FAILED, result.detail)

    # -- down --------------------------------------------------------------------------------

    async def down(
        self,
        names: Iterable[str],
        *,
        timeout: float | None = None,
        reason: str = "",
        hold: str | None = None,
    ) -> Outcome:
        """Stop ``names`` (already closed over their dependents), dependents first;
        ``reason`` is the detail of their ``stopping`` events.

        ``hold``: stopped only while that dependency is away (``restart_on_dependency``);
        each keeps ``paused_by`` so that an up waiting for it knows it will come back.
        """
        started = time.monotonic()
        selected = [n for n in self.graph.subgraph(names).stop_order()]
        tasks: dict[str, asyncio.Future[bool]] = {}
        loop = asyncio.get_running_loop()

        async def stop_after_dependents(name: str) -> bool:
            waits = [tasks[d] for d in self.graph.dependents(name) if d in tasks]
            if waits:
                await asyncio.wait(waits)
            return await self._stop(self.runtimes[name], timeout, hold, reason)

        for name in selected:  # dependents come first, so their futures exist already
            tasks[name] = loop.create_task(stop_after_dependents(name))
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        failures = []
        done = []
        already = []
        strays = await self._stop_strays(selected)
        for name, result in zip(tasks, results, strict=True):
            stray = strays.pop(name, 0)
            error = result if isinstance(result, BaseException) else stray
            if isinstance(error, BaseException):
                log.error("stopping %s failed", name, exc_info=error)
                failures.append(Failure(name, f"{type(error).__name__}: {error}"))
            elif result or stray:
                done.append(name)
            else:
                already.append(name)
        failures.extend(
            Failure(name, f"{type(error).__name__}: {error}")
            for name, error in strays.items()
            if isinstance(error, BaseException)
        )
        return Outcome(
            action="down",
            ok=not failures,
            done=tuple(done),
            already=tuple(already),
            failed=tuple(failures),
            elapsed=time.monotonic() - started,
        )

    async def _stop_strays(self, selected: list[str]) -> dict[str, int | BaseException]:
        """Stop what earlier runs of ``selected`` left that no record names (found by their
        identity in /proc); a down of everything also takes runs of services no longer in the
        catalogue. Per service: how many processes, or why stopping them failed.

        The runs to keep are read on the loop in the same step as the scan, so a start that
        an up makes meanwhile (its marker set before its first await) is never taken.
        """
        records = [r.record for r in self.runtimes.values() if r.record is not None]
        keep = {record.run for record in records}
        everything = set(selected) >= set(self.graph.names)
        strays = [
            run
            for run in identity.find_runs(self.layout.root)
            if run.marker not in keep and (everything or run.service in selected)
        ]
        for name in list(self.processes.strays):
            if everything or name in selected:
                del self.processes.strays[name]  # stopped here, not before a later start
        if not strays:
            # empty cgroups of runs a killed daemon never saw end
            identity.prune_cgroups(self.layout.root, {r.cgroup for r in records if r.cgroup})
            return {}

        async def stop(run: identity.Run) -> int:
            runtime = self.runtimes.get(run.service)
            spec = runtime.service.stop if runtime is not None else None
            sig = spec.signal if spec is not None else signal.SIGTERM
            timeout = spec.timeout.total_seconds() if spec is not None else STRAY_TIMEOUT
            return await self.processes.stop_stray(run, sig, timeout)

        results = await asyncio.gather(*(stop(run) for run in strays), return_exceptions=True)
        counts: dict[str, int] = {}
        errors: dict[str, BaseException] = {}
        for run, result in zip(strays, results, strict=True):
            if isinstance(result, BaseException):
                errors.setdefault(run.service, result)
            else:
                counts[run.service] = counts.get(run.service, 0) + result
        return {**counts, **errors}

    async def _stop(
        self, runtime: Runtime, timeout: float | None, hold: str | None, reason: str = ""
    ) -> bool:
        """Stop one service; False when there was nothing to stop."""
        # stopped on purpose (no hold): no return of a dependency resumes it
        runtime.paused_by = hold
        task = runtime.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if runtime.task is task:
            runtime.task = None
        if runtime.service.kind is Kind.EXTERNAL:
            was = runtime.state
            if was is not State.STOPPED:
                self.bus.set(runtime, State.STOPPED, "external: not stopped by svcorch")
            return False
        if not self.processes.running(runtime):
            if runtime.record is not None:
                process.release_run(runtime.record)  # its cgroup, once the run has ended
            if runtime.state is not State.STOPPED:
                keep = runtime.detail if runtime.state in SETTLED_BAD else ""
                self.bus.set(runtime, State.STOPPED, keep)
            return False  # nothing was running
        reason = reason or (f"{hold} is down (restart_on_dependency)" if hold else "")
        await self.processes.stop(runtime, reason=reason, timeout=timeout)
        self.bus.set(runtime, State.STOPPED, runtime.detail)
        return True

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
        # the dependencies left running were not restarted: they are no news
        return replace(
            outcome,
            action="restart",
            done=tuple(n for n in outcome.done if n in closure),
            already=(),
            dependencies_started=tuple(n for n in outcome.done if n not in closure),
            elapsed=stopped.elapsed + outcome.elapsed,
        )
