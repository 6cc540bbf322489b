"""What the engine's parts share: the services' runtimes, the graph, the bus and processes.

The scheduler (``scheduler.py``) and supervision (``supervision.py``) are two halves of one
engine that call each other: a start gates on readiness and hands over to supervision; a
restart goes back through a start. Each half declares here what it needs of the other, so
each module can be read, and type-checked, on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from svcorch import accounts
from svcorch.catalogue import process_environment
from svcorch.engine.events import EventBus
from svcorch.engine.processes import ProcessControl
from svcorch.engine.service import LaunchSpec, Restart, Runtime, StartFailure
from svcorch.errors import ProcessError
from svcorch.fingerprint import definition, fingerprint
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue, Service
from svcorch.probes.base import Probe, ProbeContext, ProbeOptions, ProbeResult
from svcorch.state import StateLayout

if TYPE_CHECKING:
    from svcorch.engine.scheduler import Outcome

ProbeFactory = Callable[[ProbeOptions, ProbeContext], Probe]

# Each probe attempt blocks a worker thread (client libraries are blocking). asyncio's default
# pool has cpu+4 threads: six silent servers (attempts waiting out their timeouts) would stall
# every other probe. Threads are made only when needed, so a big pool costs nothing idle.
PROBE_THREADS = 64


class EngineBase:
    """The state both halves of the engine work on. Touched only on the loop."""

    layout: StateLayout
    catalogue: Catalogue
    graph: ServiceGraph
    runtimes: dict[str, Runtime]
    start_index: dict[str, int]  # a service's place in the graph's start order
    holding: set[str]  # being stopped for restart_on_dependency, to wait for a dependency
    hold_tasks: set[asyncio.Task[None]]
    bus: EventBus
    processes: ProcessControl
    probe_factory: ProbeFactory
    environ: dict[str, str]
    fingerprint_key: bytes
    _pool_loop: asyncio.AbstractEventLoop | None = None

    # -- what a service runs with ------------------------------------------------------------

    def environment(self, service: Service) -> dict[str, str]:
        return process_environment(self.catalogue, service, self.environ, self.layout.root)

    def placement(self, service: Service) -> tuple[Path, dict[str, str]]:
        """Where and with what environment the service's commands run."""
        base = self.catalogue.base_dir
        return (base / service.cwd if service.cwd else base), self.environment(service)

    def specify(self, service: Service) -> LaunchSpec:
        """What an explicit start of ``service`` runs, from the deployment snapshot.
        Raises ProcessError when its ``user:``/``group:`` is not on this host (any more)."""
        defn = definition(self.catalogue, service)
        cwd, env = self.placement(service)
        try:
            account = accounts.resolve(service.user, service.group)
        except accounts.AccountError as exc:
            raise ProcessError(f"cannot start {service.name!r}: {exc}") from None
        if account is not None:
            declared = {**self.catalogue.env, **service.env}
            # the account's HOME, USER and LOGNAME, unless the catalogue sets them itself
            env.update({k: v for k, v in account.environment().items() if k not in declared})
        return LaunchSpec(
            argv=tuple(service.argv()),
            cwd=cwd,
            env=env,
            definition=defn,
            fingerprint=fingerprint(defn, self.fingerprint_key),
            account=account,
        )

    def probe(self, runtime: Runtime, options: ProbeOptions) -> Probe:
        """A probe for this start of the service (a log probe reads from where it began)."""
        spec = runtime.spec
        context = ProbeContext(
            service=runtime.name,
            base_dir=self.catalogue.base_dir,
            env=spec.env if spec is not None else self.environment(runtime.service),
            log_path=self.layout.service_log(runtime.name),
            log_offset=runtime.log_offset,
        )
        return self.probe_factory(options, context)

    def probe_pool(self) -> None:
        """Probe attempts run on the loop's default executor (``asyncio.to_thread``): make it
        big enough for many services probing at once, once per loop."""
        loop = asyncio.get_running_loop()
        if self._pool_loop is not loop:
            self._pool_loop = loop
            loop.set_default_executor(
                ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="svcorch-probe")
            )

    def in_start_order(self, names: Iterable[str]) -> list[str]:
        return sorted(names, key=lambda name: self.start_index.get(name, -1))

    # -- declared by the scheduler -----------------------------------------------------------

    async def down(
        self,
        names: Iterable[str],
        *,
        timeout: float | None = None,
        reason: str = "",
        hold: str | None = None,
    ) -> Outcome:
        raise NotImplementedError

    def launch(self, runtime: Runtime, *, explicit: bool = True) -> None:
        raise NotImplementedError

    async def await_dependencies(self, runtime: Runtime, *, block: bool) -> None:
        raise NotImplementedError

    # -- declared by supervision -------------------------------------------------------------

    async def run_service(self, runtime: Runtime) -> None:
        raise NotImplementedError

    async def keep_up(self, runtime: Runtime, restart: Restart | None) -> None:
        raise NotImplementedError

    async def finish_oneshot(self, runtime: Runtime) -> Restart | None:
        raise NotImplementedError

    def failed_start(self, runtime: Runtime, failure: StartFailure) -> Restart | None:
        raise NotImplementedError

    async def gate(self, runtime: Runtime) -> StartFailure | None:
        raise NotImplementedError

    async def wait_ready(self, runtime: Runtime, options: ProbeOptions) -> ProbeResult:
        raise NotImplementedError

    async def supervise(self, runtime: Runtime) -> Restart | None:
        raise NotImplementedError

    def follow_dependencies(self, changed: Runtime) -> None:
        raise NotImplementedError
