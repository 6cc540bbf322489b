"""`svcorch status`: ask the daemon, or read the state file when the daemon is gone."""

from __future__ import annotations

import time
from typing import Any

from svcorch.commands import daemon
from svcorch.engine import State, status_of
from svcorch.model import Catalogue, Kind
from svcorch.state import ServiceRecord, StateFile, StateLayout


def run(catalogue: Catalogue, layout: StateLayout, names: list[str]) -> list[dict[str, Any]]:
    if daemon.running(layout):
        result = daemon.request(layout, {"op": "status", "services": names})
        rows: list[dict[str, Any]] = result.get("services", [])
        return rows
    return offline(catalogue, layout, names)


def offline(catalogue: Catalogue, layout: StateLayout, names: list[str]) -> list[dict[str, Any]]:
    """Status from state.json alone: every recorded process checked by pid + create_time."""
    from svcorch import process

    records = StateFile(layout.state_file).load() if layout.state_file.exists() else {}
    now = time.time()
    rows = []
    for name, service in catalogue.services.items():
        if names and name not in names:
            continue
        record = records.get(name) or ServiceRecord(name=name, state=State.STOPPED.value)
        recorded = record.process()
        alive = recorded is not None and process.is_same_process(recorded)
        if not alive and record.state in {
            s.value
            for s in (State.STARTING, State.READY, State.UNREADY, State.RUNNING, State.STOPPING)
        }:
            # it was running when the daemon was last heard of, and is not now
            record.state = State.EXITED.value
            record.detail = "exited while no svcorch daemon was watching"
        if service.kind is Kind.EXTERNAL and record.state == State.READY.value:
            record.detail = (record.detail or "") + " (last known; run `svcorch check`)"
        rows.append(status_of(service, record, now, alive=alive).to_dict())
    return rows
