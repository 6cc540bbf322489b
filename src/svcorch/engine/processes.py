"""A service's processes, as the engine sees them: spawn, watch the exit, stop by deadline.

Every spawn is a run with its own identity (``svcorch.identity``: a marker in the
environment, and a cgroup where the host allows it). The exit of a child is learnt from a
pidfd registered with the loop, not from a thread per child. A stop runs ``stop.command``,
signals the run and sends SIGKILL to survivors at the one deadline; every process is proven
the run's before it is signalled (``process``).
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

from svcorch import accounts, identity, process
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
        self,
        layout: StateLayout,
        bus: EventBus,
        specify: Specify,
        *,
        die_with_parent: bool,
        cgroups: bool = True,
    ) -> None:
        self.layout = layout
        self.bus = bus
        self.specify = specify
        self.die_with_parent = die_with_parent
        self.cgroups = cgroups  # False: the environment marker alone (SVCORCH_IDENTITY=environ)
        # runs of a service that no record names, found at adoption: stopped before it starts
        self.strays: dict[str, list[identity.Run]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def new_run(self, service: str) -> identity.Run:
        """A fresh identity for one start of ``service``: its marker, and a cgroup if we can."""
        marker = identity.new_marker(self.layout.root, service)
        cgroup = identity.create_cgroup(marker) if self.cgroups else None
        if self.cgroups and cgroup is None:
            self.cgroups = False  # the host said no once; it will say no again
            log.info("no cgroup v2 to write to: runs are known by their environment marker")
        return identity.Run(marker, cgroup)

    # -- spawning ----------------------------------------------------------------------------

    async def _prepare(self, runtime: Runtime) -> StartFailure | None:
        """Before a spawn: the last run's leftovers gone, where this start's log begins, the
        declared ports free, what it runs resolved. None, or why it cannot start."""
        service = runtime.service
        if runtime.record is not None and not runtime.alive:
            # what the last run left (a grandchild that called setsid) must not hold the port
            # or answer the probe for the new one
            await self.reap_group(runtime)
        stop = service.stop
        for stray in self.strays.pop(runtime.name, []):
            await self.stop_stray(stray, stop.signal, stop.timeout.total_seconds())
        log_path = self.layout.service_log(runtime.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # where this start's output begins, before anything can fail: a failure's log tail
        # shows this start's lines only, none of the previous run's
        try:
            runtime.log_offset = log_path.stat().st_size
        except FileNotFoundError:
            runtime.log_offset = 0
        try:
            if service.ports:
                await asyncio.to_thread(process.check_ports_free, runtime.name, service.ports)
            if runtime.spec is None:
                runtime.spec = self.specify(service)
        except ProcessError as exc:
            return StartFailure(str(exc), final=True)
        return None

    async def spawn(self, runtime: Runtime, state: State) -> StartFailure | None:
        """Spawn the service's process and enter ``state``; None, or why it could not."""
        failure = await self._prepare(runtime)
        if failure is not None:
            return failure
        assert runtime.spec is not None  # _prepare resolved it
        spec = runtime.spec
        if spec.account is not None and (refused := accounts.switch_refused(spec.account)):
            return StartFailure(f"cannot start {runtime.name!r}: {refused}", final=True)
        runtime.fingerprint = spec.fingerprint
        argv = list(spec.argv)
        env = self._notify_env(runtime, spec.env)
        header = (
            f"--- svcorch: {runtime.name} start #{runtime.generation} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {Path(argv[0]).name if argv else '?'} ---"
        )
        run = self.new_run(runtime.name)
        try:
            popen = process.spawn(
                argv,
                cwd=spec.cwd,
                env=env,
                log_path=self.layout.service_log(runtime.name),
                header=header,
                die_with_parent=self.die_with_parent,
                service=runtime.name,
                run=run,
                account=spec.account,
            )
        except ProcessError as exc:
            if run.cgroup is not None:
                identity.remove_cgroup(run.cgroup)
            self.close_notify(runtime)
            return StartFailure(str(exc), final=True)
        runtime.popen = popen
        try:
            runtime.record = process.record_of(popen, run)
        except ProcessError:
            # gone before its leader could be read: what it forked still carries the marker
            runtime.record = ProcessRecord(
                pid=popen.pid, pgid=popen.pid, create_time=0.0, run=run.marker, cgroup=run.cgroup
            )
        if run.cgroup is not None and runtime.record.cgroup is None:
            identity.remove_cgroup(run.cgroup)  # the host refused the move: the marker it is
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
        """Anything of the service's last run is alive (its leader or what it forked)."""
        return runtime.record is not None and process.run_alive(runtime.record)

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
        """stop.command, then the signal to the run, SIGKILL at the one deadline.
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
            escalated = await self._terminate(record, spec.signal, deadline, runtime.exited)
        except StaleRecord as exc:
            runtime.detail = str(exc)
            process.release_run(record)
            return
        code = runtime.exited.result() if runtime.exited and runtime.exited.done() else None
        runtime.record_exit(code)
        runtime.detail = (
            f"killed after {limit:g}s (did not stop on {spec.signal.name})" if escalated else ""
        )

    async def _terminate(
        self,
        record: ProcessRecord,
        sig: int,
        deadline: float,
        exited: asyncio.Future[int | None] | None = None,
    ) -> bool:
        """``sig`` to the run, SIGKILL to what is left of it at ``deadline``; whether it took
        SIGKILL. The run's cgroup is removed once empty. Raises :class:`StaleRecord` when the
        leader's pid is another process's and nothing of the run is left."""
        signalled = process.signal_run(record, sig)
        escalated = False
        if signalled and not await self._gone_by(record, signalled, deadline, exited):
            escalated = True
            with contextlib.suppress(StaleRecord):
                process.signal_run(record, signal.SIGKILL, also=signalled)
            if not await self._gone_by(record, signalled, time.monotonic() + KILL_GRACE, exited):
                left = ", ".join(map(str, process.run_members(record)))
                raise ProcessError(f"pids {left} of {record.run or record.pid} survived SIGKILL")
        process.release_run(record)
        return escalated

    async def _gone_by(
        self,
        record: ProcessRecord,
        signalled: list[identity.Proc],
        deadline: float,
        exited: asyncio.Future[int | None] | None,
    ) -> bool:
        """Wait for the leader's exit (an event), then for the rest of its run (polled)."""
        if exited is not None and not exited.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(exited), max(0.0, deadline - time.monotonic())
                )
            if not exited.done():
                return False
        delay = 0.002
        while not process.run_gone(record, signalled):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)
        return True

    async def reap_group(self, runtime: Runtime) -> None:
        """After the leader died on its own: whatever its run left goes too."""
        record = runtime.record
        if record is None:
            return
        if self.group_left(runtime):
            deadline = time.monotonic() + runtime.service.stop.timeout.total_seconds()
            try:
                await self._terminate(record, runtime.service.stop.signal, deadline)
            except StaleRecord:
                pass
            except ProcessError as exc:
                log.warning("%s: %s", runtime.name, exc)  # stuck in the kernel; the next stop
        process.release_run(record)

    async def stop_stray(self, run: identity.Run, sig: int, timeout: float) -> int:
        """Stop a run of this state dir that no record names any more (found in /proc by its
        identity: a run whose record was lost with a corrupt state file, or one a killed
        daemon was replacing); how many processes it had."""
        record = ProcessRecord.of_run(run)
        left = process.run_members(record)
        if left:
            log.warning(
                "stopping %d process(es) of an earlier run of %s (pids %s), found by its identity",
                len(left),
                run.service,
                ", ".join(map(str, left)),
            )
            await self._terminate(record, sig, time.monotonic() + timeout)
        process.release_run(record)
        return len(left)

    async def kill_quietly(self, runtime: Runtime) -> None:
        """A start that failed its gate leaves nothing behind."""
        if self.running(runtime):
            await self.stop(runtime, reason="readiness failed")

    async def _run_stop_command(self, runtime: Runtime, deadline: float) -> None:
        spec = runtime.service.stop
        command = spec.command
        assert command is not None
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        log_path = self.layout.service_log(runtime.name)
        try:
            launch = runtime.spec if runtime.spec is not None else self.specify(runtime.service)
            helper = process.spawn(
                argv,
                cwd=launch.cwd,
                env=launch.env,
                log_path=log_path,
                header=f"--- svcorch: stop command for {runtime.name} ---",
                service=f"{runtime.name} stop",
                account=launch.account,
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
                process.signal_run(helper_record, signal.SIGKILL)
            await helper_exit
