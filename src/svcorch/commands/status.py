"""`svcorch status`: ask the daemon, or read the state file when the daemon is gone."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from svcorch.commands import daemon
from svcorch.state import (
    ServiceRecord,
    StateCorrupt,
    StateError,
    StateFile,
    StateLayout,
    StateLock,
    records_by_identity,
)

if TYPE_CHECKING:
    from svcorch.graph import ServiceGraph
    from svcorch.model import Catalogue, Service


def run(
    layout: StateLayout,
    names: list[str],
    load: Callable[[], tuple[Catalogue, ServiceGraph]],
    identity: Mapping[str, str],
    *,
    on_notice: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows from the daemon (which checks the names and ``identity``: project and
    catalogue), else from the state file; ``load`` gives the catalogue only when the daemon
    is not there to ask. ``on_notice`` hears of a corrupt state file set aside (by the
    daemon, or here)."""
    if daemon.running(layout):
        try:
            result = daemon.request(
                layout, {"op": "status", "services": names, **identity}, on_notice=on_notice
            )
        except daemon.DaemonGone:
            pass  # it exited just now; the state file has its last word
        else:
            rows: list[dict[str, Any]] = result.get("services", [])
            return rows
    catalogue, graph = load()
    graph.check_known(names)
    return offline(catalogue, layout, names, on_notice)


def offline(
    catalogue: Catalogue,
    layout: StateLayout,
    names: list[str],
    on_notice: Callable[[str], None] | None = None,
    *,
    probe_external: bool = True,
) -> list[dict[str, Any]]:
    """Status from state.json alone: every recorded leader checked by pid + create_time,
    and what a dead leader's run left found by the run's identity.

    A corrupt state file is set aside first (when no other svcorch holds the state dir),
    so `status` and `down` carry on with what it still held and what is found again by
    identity; ``on_notice`` hears of it. An external service is probed once (no daemon
    watches it): ``external-ok`` or ``external-down`` with the probe's detail. A service
    whose main process is gone but whose run still has processes says so: ``svcorch down``
    stops them.
    """
    from svcorch import identity, process, replicas
    from svcorch.engine import HAS_PROCESS, State, status_of
    from svcorch.graph import ServiceGraph
    from svcorch.model import Kind

    catalogue = replicas.expand(catalogue)
    graph = ServiceGraph.from_catalogue(catalogue)
    wanted = set(graph.members(names))
    records = load_recovering(layout, on_notice)
    now = time.time()
    processes = None  # one scan of /proc, made when a dead leader's run needs looking for
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
        if name in probed:
            ok, detail = probed[name]
            record.state = State.READY.value if ok else State.FAILED.value
            record.detail = detail
        rows.append(status_of(service, record, now, alive=alive).to_dict())
    return rows


def leftovers(
    catalogue: Catalogue, layout: StateLayout, on_notice: Callable[[str], None] | None = None
) -> list[str]:
    """Services with something still running that no daemon watches: a main process, or
    what the run of one that exited left (a gunicorn's workers, a shell's child), known by
    the run's identity."""
    from svcorch import process

    found = []
    for name, record in load_recovering(layout, on_notice).items():
        recorded = record.process()
        if recorded is None:
            continue
        if process.run_alive(recorded):
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


def load_recovering(
    layout: StateLayout, on_notice: Callable[[str], None] | None = None
) -> dict[str, ServiceRecord]:
    """The state file's records; a corrupt file is set aside first, if nobody else owns
    the state dir (only the lock's holder may move or write it).

    When a daemon or a foreground up holds the lock, that one sets the file aside at its
    next request, and this fails with one line saying so.
    """
    state_file = StateFile(layout.state_file)
    try:
        return state_file.load()
    except StateCorrupt as exc:
        corrupt = exc
    lock = StateLock(layout.lock, blocking=False)
    if not lock.try_acquire():
        holder = lock.holder_pid()
        raise StateError(
            f"state file {layout.state_file} is corrupt: {corrupt.reason}; the svcorch that"
            f" holds {layout.root} (pid {holder if holder is not None else '?'}) will set it"
            " aside"
        )
    try:
        # what the file lost is found again by the services' run identity
        records, set_aside = state_file.load_or_set_aside(
            refind=lambda: records_by_identity(layout.root)
        )
    finally:
        lock.release()
    if set_aside is not None and on_notice is not None:
        on_notice(set_aside.message())
    return records
