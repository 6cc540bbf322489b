"""``/metrics``: the Prometheus exposition of the stack, built fresh at each scrape.

One custom collector on a private registry: the values come from the daemon's status rows
and the state file's last start -> ready times at the moment of the scrape, so nothing here
keeps its own counts that could drift from what ``svcorch status`` says.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# a state in which the service's process (or the external service) is there
UP_STATES = frozenset(
    {"starting", "ready", "unready", "degraded", "running", "stopping", "external-ok"}
)
READY_STATES = frozenset({"ready", "completed", "external-ok"})


@dataclass(frozen=True)
class Snapshot:
    rows: Sequence[Mapping[str, Any]]
    start_to_ready: Mapping[str, float]
    daemon_pid: int | None
    daemon_rss: int | None  # bytes


def _families(snapshot: Snapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily("svcorch_service_up", "1 while the service runs", labels=["service"])
    ready = GaugeMetricFamily(
        "svcorch_service_ready", "1 while the service is ready (or completed)", labels=["service"]
    )
    restarts = CounterMetricFamily(
        "svcorch_service_restarts", "Restarts by policy or liveness", labels=["service"]
    )
    uptime = GaugeMetricFamily(
        "svcorch_service_uptime_seconds", "Seconds since the service started", labels=["service"]
    )
    took = GaugeMetricFamily(
        "svcorch_service_start_to_ready_seconds",
        "Start -> ready seconds of the last start",
        labels=["service"],
    )
    for row in snapshot.rows:
        name = str(row["service"])
        state = str(row.get("state", ""))
        up.add_metric([name], 1.0 if state in UP_STATES else 0.0)
        ready.add_metric([name], 1.0 if state in READY_STATES else 0.0)
        restarts.add_metric([name], float(row.get("restarts") or 0))
        if row.get("uptime") is not None:
            uptime.add_metric([name], float(row["uptime"]))
        if name in snapshot.start_to_ready:
            took.add_metric([name], float(snapshot.start_to_ready[name]))
    yield from (up, ready, restarts, uptime, took)
    yield GaugeMetricFamily(
        "svcorch_daemon_up",
        "1 while the supervisor daemon answers",
        value=int(bool(snapshot.daemon_pid)),
    )
    if snapshot.daemon_rss is not None:
        yield GaugeMetricFamily(
            "svcorch_daemon_resident_memory_bytes",
            "The daemon's resident memory",
            value=snapshot.daemon_rss,
        )


class _Collector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        return _families(self.snapshot)


def exposition(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))
    return generate_latest(registry)


def rss_of(pid: int | None) -> int | None:
    if pid is None:
        return None
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None
