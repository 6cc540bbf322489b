"""`svcorch check`: every selected service's readiness probe, once, all in parallel.

``--wait`` uses the same waiting loop as ``up``; ``--watch`` is the seed's ``healthz -d``:
rounds every interval, and a notification on every change of a service's health.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta

from svcorch.model import Catalogue, Service
from svcorch.notify import HealthChange, Notifications
from svcorch.probes import registry
from svcorch.probes.base import Probe, ProbeContext, ProbeOptions, ProbeResult
from svcorch.state import StateLayout

START_HEADER = b"--- svcorch: "


@dataclass(frozen=True)
class CheckRow:
    service: str
    probe: str
    target: str
    ok: bool
    latency_ms: float
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "probe": self.probe,
            "target": self.target,
            "ok": self.ok,
            "latency_ms": round(self.latency_ms, 1),
            "detail": self.detail,
        }


def probed_services(catalogue: Catalogue, names: Iterable[str]) -> list[Service]:
    """The selected services that have a readiness probe, in catalogue order."""
    wanted = set(names)
    return [
        service
        for name, service in catalogue.services.items()
        if (not wanted or name in wanted) and service.ready is not None
    ]


def _last_start_offset(path: os.PathLike[str]) -> int:
    """Where the service's current run begins in its log (the last svcorch start header)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return 0
    at = data.rfind(b"\n" + START_HEADER)
    if at >= 0:
        return at + 1
    return 0


def _probe_for(catalogue: Catalogue, layout: StateLayout, service: Service) -> Probe:
    options = service.ready
    assert options is not None
    probe_type = registry.get(options.type)
    assert probe_type is not None  # the catalogue validated the type
    log_path = layout.service_log(service.name)
    context = ProbeContext(
        service=service.name,
        base_dir=catalogue.base_dir,
        env={**catalogue.dotenv, **catalogue.env, **service.env},
        log_path=log_path,
        log_offset=_last_start_offset(log_path),
    )
    return probe_type.create(options, context)


def _row(service: Service, result: ProbeResult) -> CheckRow:
    options = service.ready
    assert options is not None
    return CheckRow(
        service=service.name,
        probe=options.type,
        target=options.target(),
        ok=result.ok,
        latency_ms=result.elapsed * 1000,
        detail=result.detail,
    )


def _parallel(services: list[Service], attempt: Callable[[Service], ProbeResult]) -> list[CheckRow]:
    if not services:
        return []

    def timed(service: Service) -> CheckRow:
        started = time.monotonic()
        result = attempt(service)
        if not result.elapsed:
            result = replace(result, elapsed=time.monotonic() - started)
        return _row(service, result)

    with ThreadPoolExecutor(max_workers=min(32, len(services))) as pool:
        return list(pool.map(timed, services))


def once(catalogue: Catalogue, layout: StateLayout, names: Iterable[str]) -> list[CheckRow]:
    """One attempt of every probe, in parallel: the wall time is the slowest probe."""
    from svcorch.probes.wait import check_once

    services = probed_services(catalogue, names)
    return _parallel(
        services,
        lambda s: check_once(_probe_for(catalogue, layout, s), _options(s)),
    )


def wait(
    catalogue: Catalogue,
    layout: StateLayout,
    names: Iterable[str],
    timeout: timedelta | None,
    cancelled: threading.Event | None = None,
) -> list[CheckRow]:
    """Wait until every probe passes (or fails for good / times out), in parallel."""
    from svcorch.probes.wait import wait_ready

    services = probed_services(catalogue, names)

    def attempt(service: Service) -> ProbeResult:
        options = _options(service)
        if timeout is not None:
            options = options.model_copy(update={"timeout": timeout})
        return wait_ready(_probe_for(catalogue, layout, service), options, cancelled=cancelled)

    return _parallel(services, attempt)


def _options(service: Service) -> ProbeOptions:
    assert service.ready is not None
    return service.ready


@dataclass
class Watch:
    """``check --watch``: rounds every ``interval``; notifications on every change."""

    catalogue: Catalogue
    layout: StateLayout
    names: list[str]
    interval: float
    notifications: Notifications
    on_round: Callable[[int, list[CheckRow], list[HealthChange]], None]

    def run(self, stop: threading.Event) -> None:
        previous: dict[str, bool] = {}
        number = 0
        while not stop.is_set():
            number += 1
            started = time.monotonic()
            rows = once(self.catalogue, self.layout, self.names)
            changes = []
            for row in rows:
                before = previous.get(row.service)
                # the first round reports failures only: "ok" is not news at start-up
                if before != row.ok and (before is not None or not row.ok):
                    changes.append(
                        HealthChange(
                            service=row.service,
                            probe=row.probe,
                            ok=row.ok,
                            previous=before,
                            detail=row.detail,
                            time=time.time(),
                            catalogue=self.catalogue.name or str(self.catalogue.path),
                        )
                    )
                previous[row.service] = row.ok
            for change in changes:
                self.notifications.send(change)
            self.on_round(number, rows, changes)
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
