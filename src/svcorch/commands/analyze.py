"""`svcorch analyze`: where start-up time went, from the last up's recorded times."""

from __future__ import annotations

from dataclasses import dataclass

from svcorch.graph import ServiceGraph
from svcorch.state import ServiceRecord, StateFile, StateLayout


@dataclass(frozen=True)
class Link:
    """One service on the critical chain."""

    service: str
    started: float  # seconds after the first start of the up
    ready: float  # seconds after the first start
    took: float  # start -> ready


@dataclass(frozen=True)
class Analysis:
    chain: tuple[Link, ...]
    total: float
    durations: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return {
            "total": round(self.total, 3),
            "critical_chain": [
                {
                    "service": link.service,
                    "started": round(link.started, 3),
                    "ready": round(link.ready, 3),
                    "took": round(link.took, 3),
                }
                for link in self.chain
            ],
            "durations": {name: round(value, 3) for name, value in self.durations.items()},
        }


def _timed(records: dict[str, ServiceRecord]) -> dict[str, ServiceRecord]:
    return {
        name: record
        for name, record in records.items()
        if record.started_at is not None and record.ready_at is not None
    }


def durations(layout: StateLayout) -> dict[str, float]:
    """Start -> ready seconds of every service with both times recorded."""
    records = StateFile(layout.state_file).load() if layout.state_file.exists() else {}
    return {
        name: float(r.ready_at) - float(r.started_at)  # type: ignore[arg-type]
        for name, r in _timed(records).items()
    }


def run(layout: StateLayout, graph: ServiceGraph) -> Analysis:
    """The chain that decided when the last service became ready (systemd-analyze style):
    from the last-ready service, repeatedly the dependency that became ready last."""
    records = _timed(StateFile(layout.state_file).load() if layout.state_file.exists() else {})
    records = {n: r for n, r in records.items() if n in graph}
    if not records:
        return Analysis((), 0.0, {})
    origin = min(float(r.started_at) for r in records.values())  # type: ignore[arg-type]

    def ready(name: str) -> float:
        return float(records[name].ready_at) - origin  # type: ignore[arg-type]

    def started(name: str) -> float:
        return float(records[name].started_at) - origin  # type: ignore[arg-type]

    cursor: str | None = max(records, key=ready)
    chain: list[Link] = []
    while cursor is not None:
        chain.append(Link(cursor, started(cursor), ready(cursor), ready(cursor) - started(cursor)))
        timed_deps = [d for d in graph.dependencies(cursor) if d in records]
        cursor = max(timed_deps, key=ready) if timed_deps else None
    chain.reverse()
    return Analysis(
        tuple(chain),
        max(ready(n) for n in records),
        {n: ready(n) - started(n) for n in records},
    )
