"""What runs without a daemon, judged by identity rather than by the state file alone.

`down` without a daemon asks :func:`survey` whether anything of this state dir is still
running: a recorded leader alive, processes a dead leader's run left (found by the run's
marker or cgroup), or runs no record names at all. When ``state.json`` is missing or cannot
be read there is no record to adopt from, so :func:`stop` stops what :func:`survey` found
by identity, here, in stop order.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from svcorch.state import StateError, StateFile, StateLayout

if TYPE_CHECKING:
    from svcorch.graph import ServiceGraph
    from svcorch.identity import Run
    from svcorch.model import Catalogue

DEFAULT_STOP_TIMEOUT = 10.0  # for a run of a service the catalogue no longer has


@dataclass(frozen=True)
class Survey:
    """What of one state dir is running now."""

    records_running: bool  # a recorded run has a live process (leader or what it left)
    runs: dict[Run, set[int]]  # every run of this state dir with a live process, by identity
    unreadable: str | None = None  # why state.json could not be read, if it could not
    missing: bool = False  # there is no state.json

    @property
    def running(self) -> bool:
        return self.records_running or bool(self.runs)

    @property
    def without_records(self) -> bool:
        """Processes are running that no readable record can lead a daemon to."""
        return bool(self.runs) and (self.missing or self.unreadable is not None)


def survey(layout: StateLayout) -> Survey:
    from svcorch import identity, process

    processes = identity.scan()
    runs = identity.find_runs(layout.root, processes)
    if not layout.state_file.exists():
        return Survey(records_running=False, runs=runs, missing=True)
    try:
        records = StateFile(layout.state_file).load()
    except StateError as exc:
        return Survey(records_running=False, runs=runs, unreadable=str(exc))
    running = False
    for record in records.values():
        recorded = record.process()
        if recorded is not None and (
            process.is_same_process(recorded) or process.run_members(recorded, processes)
        ):
            running = True
            break
    return Survey(records_running=running, runs=runs)


@dataclass(frozen=True)
class Stopped:
    """One run stopped by its identity."""

    service: str
    pids: tuple[int, ...]
    escalated: bool


def stop(
    catalogue: Catalogue, graph: ServiceGraph, selected: set[str], runs: dict[Run, set[int]]
) -> list[Stopped]:
    """Stop ``runs`` of the ``selected`` services (all runs when everything is selected,
    services no longer in the catalogue included), dependents first."""
    from svcorch import process

    everything = selected >= set(graph.names)
    order = {name: index for index, name in enumerate(graph.stop_order())}
    chosen = [run for run in runs if everything or run.service in selected]
    # dependents first, as a down does; a service the catalogue no longer has goes last
    chosen.sort(key=lambda run: (order.get(run.service, len(order)), run.marker))
    stopped = []
    for run in chosen:
        service = catalogue.services.get(run.service)
        sig = service.stop.signal if service is not None else signal.SIGTERM
        timeout = (
            service.stop.timeout.total_seconds() if service is not None else DEFAULT_STOP_TIMEOUT
        )
        record = process.ProcessRecord.of_run(run)
        outcome = process.stop_run(record, sig=sig, timeout=timeout)
        if outcome.signalled:
            stopped.append(Stopped(run.service, tuple(sorted(runs[run])), outcome.escalated))
    return stopped


def describe(found: Survey, stopped: list[Stopped]) -> str:
    """One line saying what happened, for a down that had no records to go by."""
    why = found.unreadable if found.unreadable is not None else "there is no state file"
    counts: dict[str, int] = {}
    for item in stopped:
        counts[item.service] = counts.get(item.service, 0) + len(item.pids)
    what = ", ".join(
        f"{name} ({count} process{'es' if count != 1 else ''})" for name, count in counts.items()
    )
    return f"{why}; stopped {what or 'nothing'}, found by their run identity"
