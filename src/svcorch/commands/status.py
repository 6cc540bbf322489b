"""`svcorch status`: ask the daemon, or read the state file when the daemon is gone."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from svcorch.commands import daemon
from svcorch.state import ServiceRecord, StateFile, StateLayout

if TYPE_CHECKING:
    from svcorch.graph import ServiceGraph
    from svcorch.model import Catalogue


def run(
    layout: StateLayout,
    names: list[str],
    load: Callable[[], tuple[Catalogue, ServiceGraph]],
) -> list[dict[str, Any]]:
    """Rows from the daemon (which checks the names), else from the state file; ``load``
    gives the catalogue only when the daemon is not there to ask."""
    if daemon.running(layout):
        try:
            result = daemon.request(layout, {"op": "status", "services": names})
        except daemon.DaemonGone:
            pass  # it exited just now; the state file has its last word
        else:
            rows: list[dict[str, Any]] = result.get("services", [])
            return rows
    catalogue, graph = load()
    graph.check_known(names)
    return offline(catalogue, layout, names)


def offline(catalogue: Catalogue, layout: StateLayout, names: list[str]) -> list[dict[str, Any]]:
    """Status from state.json alone: every recorded leader checked by pid + create_time,
    and what a dead leader's run left found by the run's identity."""
    from svcorch import identity, process
    from svcorch.engine import HAS_PROCESS, State, status_of
    from svcorch.graph import ServiceGraph
    from svcorch.model import Kind

    records = StateFile(layout.state_file).load() if layout.state_file.exists() else {}
    now = time.time()
    processes = None  # one scan of /proc, made when a dead leader's run needs looking for
    rows = []
    # states only a daemon moves on from; without one, the service is not running
    running = {state.value for state in HAS_PROCESS | {State.BACKOFF}}
    for name in ServiceGraph.from_catalogue(catalogue).start_order():
        service = catalogue.services[name]
        if names and name not in names:
            continue
        record = records.get(name) or ServiceRecord(name=name, state=State.STOPPED.value)
        recorded = record.process()
        alive = recorded is not None and process.is_same_process(recorded)
        if not alive and record.state in running:
            # it was running when the daemon was last heard of, and is not now
            record.state = State.EXITED.value
            record.detail = "exited while no svcorch daemon was watching"
        left = []
        if recorded is not None and not alive:
            processes = identity.scan() if processes is None else processes
            left = process.run_members(recorded, processes)
        if left:
            # its leader is gone, not what it forked: found by the run's marker or cgroup
            record.detail = (
                f"{record.detail + '; ' if record.detail else ''}"
                f"{len(left)} of its processes remain (down stops them)"
            )
        if service.kind is Kind.EXTERNAL and record.state == State.READY.value:
            record.detail = (record.detail or "") + " (last known; run `svcorch check`)"
        rows.append(status_of(service, record, now, alive=alive).to_dict())
    return rows
