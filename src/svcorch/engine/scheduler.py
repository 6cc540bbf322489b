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
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, replace
from typing import Any

from svcorch.engine.base import EngineBase
from svcorch.engine.service import (
    SETTLED_BAD,
    SETTLED_OK,
    Blocked,
    Runtime,
    State,
    dependency_failed,
    unmet,
    waiting_detail,
)
from svcorch.model import Kind

log = logging.getLogger("svcorch.engine")

LOG_TAIL_LINES = 20


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
            failed=tuple(self.failure(self.runtimes[n]) for n in failed)
            + tuple(Failure(n, "stopped while starting (a down or restart)") for n in stopped),
            blocked=tuple(blocked),
            pending=tuple(pending),
            elapsed=time.monotonic() - started,
        )
        if rollback and not outcome.ok:
            await self.down(launched)
        return outcome

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
        return replace(outcome, action="restart", elapsed=stopped.elapsed + outcome.elapsed)
