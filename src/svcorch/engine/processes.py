"""A service's processes, as the engine sees them: spawn, watch the exit, stop by deadline.

The exit of a child is learnt from a pidfd registered with the loop, not from a thread per
child. A stop runs ``stop.command``, signals the group and sends SIGKILL to survivors at the
one deadline; the pid and create_time are checked before every signal (``process``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from svcorch import process
from svcorch.engine.events import EventBus
from svcorch.engine.sdnotify import NotifyListener, notify_options
from svcorch.engine.service import LaunchSpec, Runtime, StartFailure, State
from svcorch.errors import ProcessError, StaleRecord
from svcorch.model import Service
from svcorch.probes.base import spoken
from svcorch.process import ProcessRecord
from svcorch.state import StateLayout

log = logging.getLogger("svcorch.engine")

KILL_GRACE = 5.0  # how long SIGKILLed survivors get to vanish

# what an explicit start of a service runs, from the deployment snapshot
Specify = Callable[[Service], LaunchSpec]


class ProcessControl:
    """Spawning and stopping the processes of services, on the engine's loop."""

    def __init__(
        self, layout: StateLayout, bus: EventBus, specify: Specify, *, die_with_parent: bool
    ) -> None:
        self.layout = layout
        self.bus = bus
        self.specify = specify
        self.die_with_parent = die_with_parent
        self._background: set[asyncio.Task[None]] = set()

    # -- spawning ----------------------------------------------------------------------------

    async def spawn(self, runtime: Runtime, state: State) -> StartFailure | None:
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
        if runtime.spec is None:
            runtime.spec = self.specify(service)
        spec = runtime.spec
        runtime.fingerprint = spec.fingerprint
        argv = list(spec.argv)
        env = self._notify_env(runtime, spec.env)
        header = (
            f"--- svcorch: {runtime.name} start #{runtime.generation} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {Path(argv[0]).name if argv else '?'} ---"
        )
        try:
            popen = process.spawn(
                argv,
                cwd=spec.cwd,
                env=env,
                log_path=log_path,
                header=header,
                die_with_parent=self.die_with_parent,
                service=runtime.name,
            )
        except ProcessError as exc:
            self.close_notify(runtime)
            return StartFailure(str(exc), final=True)
        runtime.popen = popen
        try:
            runtime.record = process.record_of(popen)
        except ProcessError:
            # gone before its identity could be read: a record nobody matches is never signalled
            runtime.record = ProcessRecord(pid=popen.pid, pgid=popen.pid, create_time=0.0)
        if runtime.notify is not None:
            runtime.notify.attach(runtime.record.pgid)
        runtime.exit_code = None
        runtime.exited_at = None
        runtime.exited = self.watch_exit(runtime.record, popen=popen)
        self.bus.set(runtime, state, f"pid {popen.pid}")
        return None

    def _notify_env(self, runtime: Runtime, env: dict[str, str]) -> dict[str, str]:
        """The environment with this run's NOTIFY_SOCKET (and WATCHDOG_USEC) for a notify
        service; a listener of an earlier run is closed first."""
        self.close_notify(runtime)
        options = notify_options(runtime.service)
        if options is None:
            return env
        listener = NotifyListener(
            runtime.name,
            self.layout.root / "notify",
            on_status=lambda status: self.bus.note(runtime, spoken(status)),
        )
        runtime.notify = listener
        env = {**env, "NOTIFY_SOCKET": listener.open()}
        watchdog = options.watchdog_seconds()
        if watchdog is not None:
            env["WATCHDOG_USEC"] = str(int(watchdog * 1_000_000))
        return env

    def close_notify(self, runtime: Runtime) -> None:
        if runtime.notify is not None:
            runtime.notify.close()
            runtime.notify = None

    def watch_exit(
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

    # -- stopping ----------------------------------------------------------------------------

    def group_left(self, runtime: Runtime) -> bool:
        record = runtime.record
        return (
            record is not None
            and bool(process.group_alive(record.pgid))
            and bool(process.group_members(record))
        )

    def running(self, runtime: Runtime) -> bool:
        """Anything of this service's is still there to stop."""
        return runtime.record is not None and (runtime.alive or self.group_left(runtime))

    async def stop(
        self,
        runtime: Runtime,
        *,
        reason: str,
        timeout: float | None = None,
        level: int | None = None,
    ) -> None:
        """stop.command, then the signal to the group, SIGKILL at the one deadline.
        ``level``: how loud the stop is in the log (a liveness restart is a warning)."""
        record = runtime.record
        assert record is not None
        spec = runtime.service.stop
        limit = spec.timeout.total_seconds() if timeout is None else timeout
        deadline = time.monotonic() + limit
        self.bus.set(runtime, State.STOPPING, reason, level=level)
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
        runtime.record_exit(code)
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
        while self.group_left(runtime):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)
        return True

    async def reap_group(self, runtime: Runtime) -> None:
        """After the leader died on its own: whatever it left in its group goes too."""
        if runtime.record is not None and self.group_left(runtime):
            deadline = time.monotonic() + runtime.service.stop.timeout.total_seconds()
            with contextlib.suppress(StaleRecord):
                process.signal_group(runtime.record, runtime.service.stop.signal)
            if not await self._gone_by(runtime, deadline):
                with contextlib.suppress(StaleRecord):
                    process.signal_group(runtime.record, signal.SIGKILL)
                await self._gone_by(runtime, time.monotonic() + KILL_GRACE)

    async def kill_quietly(self, runtime: Runtime) -> None:
        """A start that failed its gate leaves nothing behind."""
        if self.running(runtime):
            await self.stop(runtime, reason="readiness failed")

    async def _run_stop_command(self, runtime: Runtime, deadline: float) -> None:
        spec = runtime.service.stop
        command = spec.command
        assert command is not None
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        launch = runtime.spec if runtime.spec is not None else self.specify(runtime.service)
        log_path = self.layout.service_log(runtime.name)
        try:
            helper = process.spawn(
                argv,
                cwd=launch.cwd,
                env=launch.env,
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
        helper_exit = self.watch_exit(helper_record, popen=helper)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(helper_exit), max(0.0, deadline - time.monotonic())
            )
        if not helper_exit.done():
            with contextlib.suppress(StaleRecord, ProcessError):
                process.signal_group(helper_record, signal.SIGKILL)
            await helper_exit
