"""Supervision: the readiness gate, watching a ready service, restart policy, liveness, and
dependents following their dependencies.

Ready means the probe passed *and* the process is still alive *and* every dependency is still
in its condition. A ready service is watched until it exits or its liveness fails; then its
restart policy decides: back off and start again, or give up as ``fatal`` once the budget of
restarts within the window is spent.

Dependencies hold at all times, not only at the first start. Whenever a service changes
state, its dependents follow at once (``follow_dependencies``): a ready dependent whose
dependency left its condition is ``degraded`` (and ready again when it is back); one still
starting is stopped and waits; one that asked for ``restart_on_dependency`` is stopped with
what stands on it, top-down, and started again bottom-up once the dependency is back. No
start or restart (backoff, liveness, a paused dependent) happens while a dependency is not
in its condition: the service waits, and spends nothing of its restart budget meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from svcorch.engine.base import EngineBase
from svcorch.engine.sdnotify import watchdog_of
from svcorch.engine.service import (
    SERVING,
    Restart,
    Runtime,
    StartFailure,
    State,
    describe_exit,
    lost_detail,
    monotonic_of,
    unmet,
    waiting_detail,
)
from svcorch.model import Kind, RestartPolicy
from svcorch.probes.base import ProbeOptions, ProbeResult

log = logging.getLogger("svcorch.engine")


class Supervision(EngineBase):
    """Gate, watch, restart; dependents follow their dependencies."""

    # -- one run of a service, and the runs after it -----------------------------------------

    async def run_service(self, runtime: Runtime) -> None:
        """Start a managed service or a oneshot whose dependencies are met, and keep it
        going as its restart policy says."""
        await self.keep_up(runtime, await self.run_once(runtime))

    async def keep_up(self, runtime: Runtime, restart: Restart | None) -> None:
        """Restart after each end that asks for it: back off (unless only a dependency was
        missing), wait for the dependencies, start again. A loop, not a recursion: a service
        restarted a thousand times does not nest a thousand coroutines."""
        while restart is not None:
            if not await self._back_off(runtime, restart):
                return
            lacking = unmet(runtime, self.runtimes)
            if lacking or not restart.counted:
                needs = waiting_detail(runtime, lacking)
                if restart.counted:
                    self.bus.set(runtime, State.WAITING, needs)
                else:
                    # the only word of why it ended: as loud as a crash
                    because = f"{needs} ({restart.reason})" if needs else restart.reason
                    self.bus.set(runtime, State.WAITING, because, level=logging.WARNING)
                await self.await_dependencies(runtime, block=False)
            restart = await self.run_once(runtime)

    async def run_once(self, runtime: Runtime) -> Restart | None:
        """Spawn, gate, watch: one life of the process. A restart to make, or None."""
        if runtime.service.kind is Kind.ONESHOT:
            failure = await self.processes.spawn(runtime, State.RUNNING)
            if failure is not None:
                return self.failed_start(runtime, failure)
            return await self.finish_oneshot(runtime)
        runtime.dependency_lost = asyncio.get_running_loop().create_future()
        try:
            failure = await self.processes.spawn(runtime, State.STARTING)
            if failure is None:
                failure = await self.gate(runtime)
        finally:
            runtime.dependency_lost = None
        if failure is not None:
            return self.failed_start(runtime, failure)
        return await self.supervise(runtime)

    async def finish_oneshot(self, runtime: Runtime) -> Restart | None:
        assert runtime.exited is not None
        code = await runtime.exited
        runtime.record_exit(code)
        await self.processes.reap_group(runtime)
        if code == 0:
            self.bus.set(runtime, State.COMPLETED, "exited 0")
            return None
        return self.failed_start(runtime, StartFailure(describe_exit(code)))

    def failed_start(self, runtime: Runtime, failure: StartFailure) -> Restart | None:
        """A start failed: a restart where the policy allows, else it failed for good.

        A start that will be retried goes straight to ``backoff``: an up waiting for it, and
        its dependents, must never see a ``failed`` that is not final.
        """
        if failure.held:
            return Restart(f"start interrupted: {failure.reason}", counted=False)
        if failure.final or runtime.service.restart.policy is RestartPolicy.NO:
            self.bus.set(runtime, State.FAILED, failure.reason)
            return None
        return Restart(failure.reason)

    # -- the readiness gate ------------------------------------------------------------------

    async def gate(self, runtime: Runtime) -> StartFailure | None:
        """The readiness gate: probe passed, the child still alive, and the dependencies
        still in their conditions. None, or why not."""
        options = runtime.service.ready
        result: ProbeResult | None = None
        if options is not None:
            result = await self.wait_ready(runtime, options)
        lost = runtime.dependency_lost
        lacking = unmet(runtime, self.runtimes)
        if (lost is not None and lost.done()) or lacking:
            reason = lost.result() if lost is not None and lost.done() else lost_detail(lacking)
            await self._abandon_start(runtime, reason)
            return StartFailure(reason, held=True)
        if not runtime.alive:
            return await self._exited_before_ready(runtime)
        if result is None:
            self.bus.set(runtime, State.READY, "running")
            return None
        if result.ok:
            self.bus.set(runtime, State.READY, result.detail)
            return None
        await self.processes.kill_quietly(runtime)
        # a fatal probe (access denied, unknown vhost) fails now, with the server's words
        return StartFailure(result.detail, final=not result.retryable)

    async def _abandon_start(self, runtime: Runtime, reason: str) -> None:
        """A dependency left while this one started: whatever it started goes, and the
        start is judged again once the dependency is back."""
        if self.processes.running(runtime):
            await self.processes.stop(runtime, reason=reason, level=logging.WARNING)
        elif runtime.exited is not None and runtime.exited.done():
            runtime.record_exit(runtime.exited.result())
        await self.processes.reap_group(runtime)

    async def _exited_before_ready(self, runtime: Runtime) -> StartFailure:
        assert runtime.exited is not None
        code = runtime.exited.result()
        runtime.record_exit(code)
        await self.processes.reap_group(runtime)  # what it forked does not outlive the start
        # RabbitMQ's script exits 0 after a failed boot: exiting before ready is a failure
        return StartFailure(f"{describe_exit(code)} before ready")

    async def wait_ready(self, runtime: Runtime, options: ProbeOptions) -> ProbeResult:
        from svcorch.probes.wait import wait_ready_async

        exited = runtime.exited
        if runtime.notify is not None and options.type == "notify":
            assert exited is not None
            waiter = asyncio.ensure_future(self._notified(runtime, options))
        else:
            probe = self.probe(runtime, options)
            if runtime.service.kind is Kind.EXTERNAL:
                return await wait_ready_async(probe, options)
            assert exited is not None
            waiter = asyncio.ensure_future(
                wait_ready_async(probe, options, is_alive=lambda: not exited.done())
            )
        # react to the child's exit, or a dependency leaving, at once, not at the next attempt
        watched: set[asyncio.Future[Any]] = {waiter, exited}
        if runtime.dependency_lost is not None:
            watched.add(runtime.dependency_lost)
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        if waiter.cancelled():
            return ProbeResult.failed("interrupted", retryable=False)
        return waiter.result()

    async def _notified(self, runtime: Runtime, options: ProbeOptions) -> ProbeResult:
        """Wait for the service's own READY=1: an event on the loop, no attempt, no poll."""
        listener = runtime.notify
        assert listener is not None and listener.ready is not None
        started = time.monotonic()
        limit = options.timeout.total_seconds()
        try:
            status = await asyncio.wait_for(asyncio.shield(listener.ready), limit)
        except TimeoutError:
            said = f" (last STATUS: {listener.status})" if listener.status else ""
            return ProbeResult.failed(
                f"no READY=1 within {limit:g}s{said}", retryable=False, elapsed=limit
            )
        except asyncio.CancelledError:
            if listener.ready.cancelled():  # the run ended: its listener closed
                return ProbeResult.failed("interrupted", retryable=False)
            raise
        elapsed = time.monotonic() - started
        return ProbeResult.passed(status or "READY=1", elapsed=elapsed)

    # -- watching a ready service ------------------------------------------------------------

    async def supervise(self, runtime: Runtime) -> Restart | None:
        """Watch a ready service until it exits or its liveness fails; then restart policy."""
        assert runtime.exited is not None
        liveness = None
        watchdog = watchdog_of(runtime.service)
        if watchdog is not None:
            liveness = asyncio.ensure_future(self._watchdog(runtime, watchdog))
        elif (
            runtime.service.liveness is not None and runtime.service.liveness.probe.type != "notify"
        ):
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
            # top-down, like a down: the dependents that asked go first, then the service
            paused = await self._hold_dependents(runtime)
            await self.processes.stop(runtime, reason=reason, level=logging.WARNING)
            self._resume(paused, runtime.name)  # they wait for it to be ready again
            return Restart(reason)  # whatever the policy says: liveness asked for it
        code = runtime.exited.result()
        runtime.record_exit(code)
        # an end while a dependency is down is likely its doing; it costs no budget
        waiting_on = unmet(runtime, self.runtimes)
        policy = runtime.service.restart.policy
        wants = policy is RestartPolicy.ALWAYS or (policy is RestartPolicy.ON_FAILURE and code != 0)
        await self.processes.reap_group(runtime)
        if not wants:
            self.bus.set(runtime, State.EXITED, describe_exit(code))
            return None
        return Restart(describe_exit(code), counted=not waiting_on)

    async def _watchdog(self, runtime: Runtime, seconds: float) -> None:
        """Liveness by the service's own ``WATCHDOG=1``: silent for ``seconds``, it fails."""
        listener = runtime.notify
        runtime.liveness_failed = False
        if listener is None:  # adopted from an earlier daemon: its socket is gone with it
            await asyncio.get_running_loop().create_future()
            return
        while True:
            listener.pinged.clear()
            try:
                await asyncio.wait_for(listener.pinged.wait(), seconds)
            except TimeoutError:
                if _degraded(runtime):
                    continue  # a dependency's outage may hold it up; not its own failure
                runtime.liveness_failed = True
                runtime.detail = f"no WATCHDOG=1 within {seconds:g}s"
                return

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
            if _degraded(runtime):
                # a probe failing now would blame the service for its dependency's outage
                failures = 0
                continue
            result = await asyncio.to_thread(check_once, probe, options)
            if _degraded(runtime):  # it became so while the attempt ran
                failures = 0
                continue
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
            if failures == 1:  # one line per change of state, not one per failed attempt
                self.bus.set(
                    runtime,
                    State.UNREADY,
                    f"liveness failed: {result.detail} "
                    f"(restart after {liveness.failure_threshold} in a row)",
                )

    # -- restart policy ----------------------------------------------------------------------

    async def _back_off(self, runtime: Runtime, restart: Restart) -> bool:
        """Spend one restart of the budget and wait out the backoff; False once the budget
        is spent (``fatal``). A restart that is not counted neither spends nor waits."""
        runtime.liveness_failed = False
        if restart.counted:
            spec = runtime.service.restart
            now = time.monotonic()
            window = spec.window.total_seconds()
            while runtime.restart_times and now - runtime.restart_times[0] > window:
                runtime.restart_times.popleft()
            if len(runtime.restart_times) >= spec.max_restarts:
                self.bus.set(
                    runtime,
                    State.FATAL,
                    f"{len(runtime.restart_times)} restarts within {window:g}s; "
                    f"last: {restart.reason}",
                )
                return False
            delay = min(
                spec.backoff.total_seconds() * (2**runtime.consecutive_failures),
                spec.max_backoff.total_seconds(),
            )
            runtime.consecutive_failures += 1
            runtime.restart_times.append(now)
            runtime.restarts += 1
            runtime.restarts_total += 1
            self.bus.set(runtime, State.BACKOFF, f"restarting in {delay:.3g}s: {restart.reason}")
            await asyncio.sleep(delay)
        else:
            runtime.restarts += 1
            runtime.restarts_total += 1
        runtime.generation += 1
        return True

    # -- dependents follow their dependencies ------------------------------------------------

    def follow_dependencies(self, changed: Runtime) -> None:
        """A reaction to every transition of ``changed``: its dependents learn of it at once.

        Dependents are visited in start order, so one that stands on another dependent hears
        of both in one event, not two.
        """
        if self.runtimes.get(changed.name) is not changed:
            return  # no longer in the catalogue
        if changed.state in SERVING:
            self._reconsider(changed, changed)  # ready again while a dependency is down
        dependents = self.in_start_order(self.graph.dependents(changed.name))
        for name in dependents:
            self._reconsider(self.runtimes[name], changed)

    def _reconsider(self, dependent: Runtime, cause: Runtime) -> None:
        lacking = unmet(dependent, self.runtimes)
        lost = dependent.dependency_lost
        if lacking and lost is not None and not lost.done():
            lost.set_result(lost_detail(lacking))  # starting: its gate stops it, it waits
        state = dependent.state
        if state in SERVING and lacking:
            dependent.degraded_by = tuple(d.name for d in lacking)
            self.bus.set(dependent, State.DEGRADED, lost_detail(lacking))
        elif state is State.DEGRADED:
            if not lacking:
                back = ", ".join(dependent.degraded_by) or cause.name
                self.bus.set(dependent, State.READY, f"{back} ready again")
            elif lost_detail(lacking) != dependent.detail:
                names = tuple(d.name for d in lacking)
                dependent.degraded_by += tuple(n for n in names if n not in dependent.degraded_by)
                self.bus.set(dependent, State.DEGRADED, lost_detail(lacking))
        if dependent.state not in SERVING | {State.DEGRADED}:
            return
        edges = dependent.service.depends_on
        for dependency in lacking:
            if edges[dependency.name].restart_on_dependency:
                self._hold_in_background(dependent, dependency.name)
                return

    def _hold_in_background(self, dependent: Runtime, dependency: str) -> None:
        if dependent.name in self.holding:
            return
        task = asyncio.get_running_loop().create_task(self._hold([dependent.name], dependency))
        self.hold_tasks.add(task)
        task.add_done_callback(self.hold_tasks.discard)

    async def _hold_dependents(self, runtime: Runtime) -> list[str]:
        """Before a service restarts on purpose (liveness), the dependents that asked for
        ``restart_on_dependency`` stop first, top-down; resume them once it has stopped."""
        names = [
            dependent
            for dependent in self.graph.dependents(runtime.name)
            if self.runtimes[dependent].service.depends_on[runtime.name].restart_on_dependency
            and self.runtimes[dependent].state not in (State.STOPPED, State.BLOCKED)
        ]
        return await self._pause(names, runtime.name) if names else []

    async def _hold(self, names: list[str], dependency: str) -> None:
        self._resume(await self._pause(names, dependency), dependency)

    async def _pause(self, names: list[str], dependency: str) -> list[str]:
        """Stop ``names`` and what stands on them, top-down, for ``dependency``; the closure."""
        closure = [n for n in self.graph.select_down(names) if n not in self.holding]
        if not closure:
            return []
        self.holding.update(closure)
        try:
            await self.down(closure, hold=dependency)
        finally:
            self.holding.difference_update(closure)
        return closure

    def _resume(self, closure: list[str], dependency: str) -> None:
        """Let the paused services wait for ``dependency`` again: each starts, bottom-up,
        the moment what it needs is back. One stopped or started explicitly meanwhile
        (``paused_by`` cleared) is left alone."""
        for name in self.in_start_order(closure):
            runtime = self.runtimes.get(name)
            if (
                runtime is not None
                and runtime.paused_by == dependency
                and runtime.state is State.STOPPED
            ):
                self.launch(runtime, explicit=False)


def _degraded(runtime: Runtime) -> bool:
    return runtime.state is State.DEGRADED
