"""The engine: a catalogue's services, their runtimes, and the life of the whole.

``Engine`` puts the parts together: the scheduler (up, down, restart over the graph),
supervision (gate, watch, restart policy), the event bus, process control and the state
writer. It also holds what belongs to no one part: taking a (re)loaded catalogue, adopting
the services a previous daemon left running, status rows, log rotation and closing down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from svcorch import identity, process, replicas
from svcorch.engine.base import ProbeFactory
from svcorch.engine.events import Event, EventBus
from svcorch.engine.persist import StateWriter
from svcorch.engine.processes import ProcessControl
from svcorch.engine.scheduler import Outcome, Scheduling
from svcorch.engine.service import (
    HAS_PROCESS,
    IN_PROGRESS,
    SERVING,
    Runtime,
    ServiceStatus,
    State,
    status_of,
)
from svcorch.engine.supervision import Supervision
from svcorch.errors import ProcessError
from svcorch.fingerprint import changes, definition, fingerprint
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue, Kind
from svcorch.probes import registry
from svcorch.probes.base import Probe, ProbeContext, ProbeOptions
from svcorch.redaction import Redactor
from svcorch.state import (
    ServiceRecord,
    StateError,
    StateFile,
    StateLayout,
    fingerprint_key,
    rotate_if_needed,
)

log = logging.getLogger("svcorch.engine")

# seconds between log size checks: a log passes max_size by at most what its service writes
# in this time (docs/catalogue.md). A check is one stat() per running service, on the loop;
# only a rotation goes to a thread
ROTATE_EVERY = 0.25


def _exited_unwatched(
    recorded: process.ProcessRecord, processes: Mapping[int, identity.Proc]
) -> str:
    if recorded.has_leader:
        detail = "exited while no svcorch daemon was watching"
    else:
        detail = "found again by its run identity; its leader is unknown"
    left = process.run_members(recorded, processes)
    if left:
        detail += f"; {len(left)} of its processes remain (down stops them)"
    return detail


def registry_probe(options: ProbeOptions, context: ProbeContext) -> Probe:
    probe_type = registry.get(options.type)
    if probe_type is None:
        raise ProcessError(f"unknown probe type {options.type!r}")
    return probe_type.create(options, context)


class Engine(Scheduling, Supervision):
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
        self.probe_factory = probe_factory
        self.fingerprint_key = fingerprint_key(layout)
        self.runtimes = {}
        self.state_writer = StateWriter(StateFile(layout.state_file), self.records)
        self.bus = EventBus(on_change=self.state_writer.schedule)
        self.bus.reactions.append(self.follow_dependencies)
        self.holding = set()
        self.hold_tasks = set()
        self.processes = ProcessControl(
            layout,
            self.bus,
            self.specify,
            die_with_parent=die_with_parent,
            # the mechanism is this svcorch's (the daemon's or foreground's) environment's
            cgroups=identity.cgroups_wanted(os.environ),
        )
        self._housekeeping: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()  # stopping services no longer listed
        self.environ = dict(os.environ if environ is None else environ)
        self.redactor = Redactor()  # secrets: every detail passes through it (set by load)
        self.load(catalogue)  # sets catalogue and graph (built once, cycles checked once)

    # -- catalogue ---------------------------------------------------------------------------

    def load(self, catalogue: Catalogue, environ: Mapping[str, str] | None = None) -> None:
        """Take a (re)loaded catalogue; running services keep their processes. A replicated
        service becomes one runtime per replica (``worker#0``, ...; svcorch.replicas)."""
        catalogue = replicas.expand(catalogue)
        self.catalogue = catalogue
        self.graph = ServiceGraph.from_catalogue(catalogue)
        self.start_index = {name: i for i, name in enumerate(self.graph.start_order())}
        if environ is not None:
            self.environ = dict(environ)
        # secrets: this load's, and the earlier ones' (a running service keeps its launch env)
        self.redactor = Redactor.for_catalogue(catalogue, self.environ).joined(self.redactor)
        self.bus.redact = self.redactor.text
        for name, service in catalogue.services.items():
            runtime = self.runtimes.get(name)
            if runtime is None:
                self.runtimes[name] = Runtime(name=name, service=service)
            else:
                runtime.service = service
        for name in [n for n in self.runtimes if n not in catalogue.services]:
            # nothing could stop it any more (down works from the catalogue): stop it now
            runtime = self.runtimes.pop(name)
            if runtime.alive or runtime.busy():
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
        if self.processes.running(runtime):
            await self.processes.stop(runtime, reason="removed from the catalogue")

    # -- events and the state file -----------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        return self.bus.subscribe(callback)

    def records(self) -> dict[str, ServiceRecord]:
        records = {name: runtime.to_record() for name, runtime in self.runtimes.items()}
        for record in records.values():  # secrets: state.json and status
            record.detail = self.redactor.text(record.detail) if record.detail else None
        return records

    async def flush(self) -> None:
        """Return once state.json holds every transition made so far."""
        await self.state_writer.flush()

    def persist_now(self) -> None:
        """Write state.json at once, on this thread (for a process about to exit)."""
        self.state_writer.write_now()

    # -- adoption ----------------------------------------------------------------------------

    def adopt(self, records: Mapping[str, ServiceRecord]) -> list[str]:
        """Take over services a previous daemon started that are still alive.

        A service whose leader is gone (its pid free, or another process's by now) keeps its
        record: what its run left is found by the run's identity, so a down still stops it,
        and a process that merely reused the pid or group number is never touched.
        """
        self.probe_pool()
        adopted = []
        processes: dict[int, identity.Proc] | None = None  # one scan, if a leader is gone
        # in start order, so a dependency is ready again before what stands on it is judged
        for name in self.in_start_order(n for n in records if n in self.runtimes):
            saved = records[name]
            runtime = self.runtimes[name]
            runtime.restarts = saved.restarts
            runtime.restarts_total = max(saved.restarts_total, saved.restarts)
            runtime.generation = saved.generation
            runtime.started_at = saved.started_at
            runtime.ready_at = saved.ready_at
            runtime.fingerprint = saved.fingerprint
            recorded = saved.process()
            if recorded is None:
                if saved.state == State.COMPLETED.value:
                    runtime.state = State.COMPLETED
                continue
            if process.is_same_process(recorded):
                runtime.record = recorded
                runtime.exited = self.processes.watch_exit(recorded, popen=None)
                was_ready = saved.state in {s.value for s in SERVING | {State.DEGRADED}}
                runtime.task = asyncio.get_running_loop().create_task(
                    self.guarded(runtime, self._supervise_adopted(runtime, was_ready))
                )
                adopted.append(name)
                continue
            runtime.record = recorded  # what the run left, a down finds by its identity
            # a run found again without its leader (its record was lost) counts as exited too
            if not recorded.has_leader or saved.state in {
                s.value for s in HAS_PROCESS | {State.BACKOFF}
            }:
                runtime.exited_at = saved.exited_at or time.time()
                processes = identity.scan() if processes is None else processes
                self.bus.set(runtime, State.EXITED, _exited_unwatched(recorded, processes))
        self._note_strays(records, processes)
        self.state_writer.schedule()
        return adopted

    def _note_strays(
        self, records: Mapping[str, ServiceRecord], processes: dict[int, identity.Proc] | None
    ) -> None:
        """Runs of this state dir that no record names (its file was lost or set aside, or a
        daemon was killed between a spawn and the write that recorded it) are stopped before
        their service starts again, or by a down."""
        known = {saved.run for saved in records.values() if saved.run is not None}
        found = identity.find_runs(self.layout.root, processes)
        for run in found:
            if run.marker not in known and run.service in self.runtimes:
                self.processes.strays.setdefault(run.service, []).append(run)
        for name, runs in self.processes.strays.items():
            log.warning(
                "%s: %d earlier run(s) that no record names are still running;"
                " stopped before it starts, or by down",
                name,
                len(runs),
            )

    async def _supervise_adopted(self, runtime: Runtime, was_ready: bool) -> None:
        if runtime.service.kind is Kind.ONESHOT:
            self.bus.set(runtime, State.RUNNING, "adopted")
            await self.keep_up(runtime, await self.finish_oneshot(runtime))
            return
        if was_ready:
            self.bus.set(runtime, State.READY, "adopted")  # degraded at once if it should be
        else:
            self.bus.set(runtime, State.STARTING, "adopted; probing again")
            failure = await self.gate(runtime)
            if failure is not None:
                await self.keep_up(runtime, self.failed_start(runtime, failure))
                return
        await self.keep_up(runtime, await self.supervise(runtime))

    # -- the deployment snapshot -------------------------------------------------------------

    def drift(
        self, catalogue: Catalogue, names: Iterable[str] | None = None
    ) -> dict[str, list[str]]:
        """Services whose running definition differs from ``catalogue``'s, with what changed.

        Only services that run (or are being started) count: a stopped one simply starts
        from the new definition. ``catalogue`` is resolved with the environment it was loaded
        with (``up``: the caller's; ``status``: the snapshot's).
        """
        catalogue = replicas.expand(catalogue)
        wanted = set(self.graph.members(names)) if names is not None else None
        found: dict[str, list[str]] = {}
        for name, runtime in self.runtimes.items():
            service = catalogue.services.get(name)
            if service is None or (wanted is not None and name not in wanted):
                continue
            if runtime.fingerprint is None or not (runtime.alive or runtime.busy()):
                continue
            new = definition(catalogue, service)
            if fingerprint(new, self.fingerprint_key) == runtime.fingerprint:
                continue
            spec = runtime.spec
            found[name] = (
                changes(spec.definition, new)
                if spec is not None
                else ["definition changed (started by an earlier daemon: keys not known)"]
            )
        return found

    async def recreate(
        self, drift: Mapping[str, list[str]], *, timeout: float | None = None
    ) -> Outcome:
        """Stop the services of ``drift`` (top-down among them), each event saying why; the
        caller's ``up`` then starts them from the new snapshot."""
        outcome = Outcome(action="recreate", ok=True)
        for name in self.graph.subgraph(drift).stop_order():
            reason = "recreate: " + "; ".join(drift[name])
            stopped = await self.down([name], timeout=timeout, reason=reason)
            outcome = replace(
                outcome,
                ok=outcome.ok and stopped.ok,
                done=outcome.done + stopped.done,
                failed=outcome.failed + stopped.failed,
            )
        return outcome

    # -- status ------------------------------------------------------------------------------

    def status(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        wanted = set(self.graph.members(names)) if names else None
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
            for name, runtime in list(self.runtimes.items()):
                if not runtime.alive:
                    continue
                path = self.layout.service_log(name)
                try:
                    if path.stat().st_size <= logs.max_size:
                        continue
                    await asyncio.to_thread(rotate_if_needed, path, logs.max_size, logs.backups)
                except FileNotFoundError:
                    continue
                except (OSError, StateError):  # housekeeping goes on for the other logs
                    log.exception("rotating the log of %s failed", name)

    async def close(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        for hold in list(self.hold_tasks):
            hold.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hold
        for runtime in self.runtimes.values():
            if runtime.task is not None and not runtime.task.done():
                runtime.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runtime.task
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.flush()
        if self.state_writer.pending:
            self.persist_now()  # never written yet (nothing happened), or a last change
        self.state_writer.close()
