"""Supervision: the readiness gate, watching a ready service, restart policy and liveness.

Ready means the probe passed *and* the process is still alive. A ready service is watched
until it exits or its liveness fails; then its restart policy decides: back off and start
again (stopping first the dependents that asked for ``restart_on_dependency``), or give up as
``fatal`` once the budget of restarts within the window is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from svcorch.engine.base import EngineBase
from svcorch.engine.service import (
    Runtime,
    StartFailure,
    State,
    describe_exit,
    monotonic_of,
)
from svcorch.model import Kind, RestartPolicy
from svcorch.probes.base import ProbeOptions, ProbeResult

log = logging.getLogger("svcorch.engine")


class Supervision(EngineBase):
    """Gate, watch, restart."""

    # -- the readiness gate ------------------------------------------------------------------

    async def gate(self, runtime: Runtime) -> StartFailure | None:
        """The readiness gate: probe passed and the child still alive. None, or why not."""
        options = runtime.service.ready
        if options is None:
            if runtime.alive:
                self.bus.set(runtime, State.READY, "running")
                return None
            return await self._exited_before_ready(runtime)
        result = await self.wait_ready(runtime, options)
        if result.ok and runtime.alive:
            self.bus.set(runtime, State.READY, result.detail)
            return None
        if not runtime.alive:
            return await self._exited_before_ready(runtime)
        await self.processes.kill_quietly(runtime)
        # a fatal probe (access denied, unknown vhost) fails now, with the server's words
        return StartFailure(result.detail, final=not result.retryable)

    async def _exited_before_ready(self, runtime: Runtime) -> StartFailure:
        assert runtime.exited is not None
        code = runtime.exited.result()
        runtime.record_exit(code)
        await self.processes.reap_group(runtime)  # what it forked does not outlive the start
        # RabbitMQ's script exits 0 after a failed boot: exiting before ready is a failure
        return StartFailure(f"exited with {describe_exit(code)} before ready")

    async def wait_ready(self, runtime: Runtime, options: ProbeOptions) -> ProbeResult:
        from svcorch.probes.wait import wait_ready_async

        probe = self.probe(runtime, options)
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

    async def start_failed(self, runtime: Runtime, failure: StartFailure) -> None:
        """A start failed: back off and retry where the policy allows, else it failed.

        A start that will be retried goes straight to ``backoff``: an up waiting for it, and
        its dependents, must never see a ``failed`` that is not final.
        """
        if failure.final or runtime.service.restart.policy is RestartPolicy.NO:
            self.bus.set(runtime, State.FAILED, failure.reason)
            return
        await self._restart_later(runtime, failure.reason)

    # -- watching a ready service ------------------------------------------------------------

    async def supervise(self, runtime: Runtime) -> None:
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
        ready_for = time.monotonic() - monotonic_of(runtime.ready_at)
        if ready_for >= runtime.service.restart.reset_after.total_seconds():
            runtime.consecutive_failures = 0
        if runtime.liveness_failed and runtime.alive:
            reason = runtime.detail
            log.warning("%s: restarting: %s", runtime.name, reason)
            # top-down, like a down: the dependents that asked go first, then the service
            paused = await self._stop_dependents_for_restart(runtime)
            await self.processes.stop(runtime, reason=reason)
            await self._restart_later(runtime, reason, forced=True, paused=paused)
            return
        code = runtime.exited.result()
        runtime.record_exit(code)
        policy = runtime.service.restart.policy
        wants = policy is RestartPolicy.ALWAYS or (policy is RestartPolicy.ON_FAILURE and code != 0)
        await self.processes.reap_group(runtime)
        if not wants:
            self.bus.set(runtime, State.EXITED, f"exited with {describe_exit(code)}")
            return
        await self._restart_later(runtime, f"exited with {describe_exit(code)}")

    async def _liveness(self, runtime: Runtime) -> None:
        from svcorch.probes.wait import check_once

        liveness = runtime.service.liveness
        assert liveness is not None
        options = liveness.probe
        probe = self.probe(runtime, options)
        failures = 0
        period = options.period.total_seconds()
        runtime.liveness_failed = False
        while True:
            await asyncio.sleep(period)
            result = await asyncio.to_thread(check_once, probe, options)
            if result.ok:
                if failures:
                    self.bus.set(runtime, State.READY, f"liveness ok again: {result.detail}")
                failures = 0
                continue
            failures += 1
            if failures >= liveness.failure_threshold:
                runtime.liveness_failed = True
                runtime.detail = f"liveness failed {failures} times: {result.detail}"
                return
            self.bus.set(
                runtime,
                State.UNREADY,
                f"liveness failed {failures}/{liveness.failure_threshold}: {result.detail}",
            )

    # -- restart policy ----------------------------------------------------------------------

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
            self.bus.set(
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
        self.bus.set(runtime, State.BACKOFF, f"restarting in {delay:.3g}s: {reason}")
        if paused is None:
            paused = await self._stop_dependents_for_restart(runtime)
        await asyncio.sleep(delay)
        runtime.generation += 1
        runtime.liveness_failed = False
        self._resume_paused(runtime, paused)
        if runtime.service.kind is Kind.ONESHOT:
            await self.run_oneshot(runtime)
        else:
            await self.run_managed(runtime)

    def _resume_paused(self, runtime: Runtime, paused: list[str]) -> None:
        """Start again the dependents stopped for this restart; they wait for it to be ready.

        One that was explicitly stopped or started meanwhile (paused_by cleared) is left alone.
        """
        for name in paused:
            dependent = self.runtimes[name]
            if dependent.paused_by == runtime.name and dependent.state is State.STOPPED:
                self.launch(dependent)

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
