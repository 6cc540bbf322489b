"""`svcorch status`: ask the daemon, or read the state file when the daemon is gone."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from svcorch.commands import daemon
from svcorch.state import ServiceRecord, StateFile, StateLayout

if TYPE_CHECKING:
    from svcorch.graph import ServiceGraph
    from svcorch.model import Catalogue, Service


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


def offline(
    catalogue: Catalogue, layout: StateLayout, names: list[str], *, probe_external: bool = True
) -> list[dict[str, Any]]:
    """Status from state.json alone: every recorded process checked by pid + create_time.

    An external service is probed once (no daemon watches it): ``external-ok`` or
    ``external-down`` with the probe's detail. A service whose main process is gone but whose
    process group still has members says so: ``svcorch down`` stops them."""
    from svcorch import process, replicas
    from svcorch.engine import HAS_PROCESS, State, status_of
    from svcorch.graph import ServiceGraph
    from svcorch.model import Kind

    catalogue = replicas.expand(catalogue)
    graph = ServiceGraph.from_catalogue(catalogue)
    wanted = set(graph.members(names))
    records = StateFile(layout.state_file).load() if layout.state_file.exists() else {}
    now = time.time()
    rows = []
    # states only a daemon moves on from; without one, the service is not running
    running = {state.value for state in HAS_PROCESS | {State.BACKOFF}}
    external = [
        catalogue.services[n]
        for n in graph.start_order()
        if catalogue.services[n].kind is Kind.EXTERNAL and (not wanted or n in wanted)
    ]
    probed = _probe_external(catalogue, layout, external) if probe_external else {}
    for name in graph.start_order():
        service = catalogue.services[name]
        if wanted and name not in wanted:
            continue
        record = records.get(name) or ServiceRecord(name=name, state=State.STOPPED.value)
        recorded = record.process()
        alive = recorded is not None and process.is_same_process(recorded)
        if not alive and record.state in running:
            # it was running when the daemon was last heard of, and is not now
            record.state = State.EXITED.value
            record.detail = "exited while no svcorch daemon was watching"
            left = len(process.orphans(recorded)) if recorded is not None else 0
            if left:
                record.detail += f"; {left} process(es) of its group remain (`svcorch down`)"
        if name in probed:
            ok, detail = probed[name]
            record.state = State.READY.value if ok else State.FAILED.value
            record.detail = detail
        rows.append(status_of(service, record, now, alive=alive).to_dict())
    return rows


def leftovers(catalogue: Catalogue, layout: StateLayout) -> list[str]:
    """Services with something still running that no daemon watches: a main process, or
    members of the process group of one that exited (a gunicorn's workers, a shell's child)."""
    from svcorch import process

    if not layout.state_file.exists():
        return []
    found = []
    for name, record in StateFile(layout.state_file).load().items():
        recorded = record.process()
        if recorded is None:
            continue
        if process.is_same_process(recorded) or process.orphans(recorded):
            found.append(name)
    return found


def _probe_external(
    catalogue: Catalogue, layout: StateLayout, services: list[Service]
) -> dict[str, tuple[bool, str]]:
    """One attempt of each external service's probe, in parallel (as `svcorch check`)."""
    if not services:
        return {}
    from svcorch.commands import check

    rows = check.once(catalogue, layout, services)
    return {row.service: (row.ok, row.detail) for row in rows}
