"""`svcorch check`: every selected service's readiness probe, once, all in parallel.

``--wait`` uses the same waiting loop as ``up``; ``--watch`` is the seed's ``healthz -d``:
rounds every interval, and a notification on every change of a service's health.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from svcorch.errors import UsageError
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue, Kind, Service
from svcorch.notify import HealthChange, Notifications
from svcorch.probes import registry
from svcorch.probes.base import Probe, ProbeContext, ProbeOptions, ProbeResult
from svcorch.redaction import Redactor
from svcorch.state import StateError, StateFile, StateLayout

if TYPE_CHECKING:
    from svcorch.process import ProcessRecord

START_HEADER = b"--- svcorch: "
_TAIL_CHUNK = 64 * 1024

# The client library each built-in probe imports on its first attempt. Imported before the
# clock starts, so the latency shown is the server's answer and not an 110 ms import of
# influxdb_client (and a short attempt_timeout is not spent importing).
CLIENT_MODULES = {
    "redis": "redis",
    "amqp": "pika",
    "mysql": "pymysql",
    "influxdb": "influxdb_client",
}


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


def select(
    catalogue: Catalogue, graph: ServiceGraph, names: Sequence[str], profiles: Sequence[str]
) -> list[Service]:
    """What ``check [SERVICE…]`` probes, in catalogue order.

    Named services: exactly those, and each must have a readiness probe. No names: every
    service the active profiles select (with what they depend on) that has one.
    """
    from svcorch.plan import select_up

    if names:
        graph.check_known(names)
        names = graph.members(names)  # a replicated service: each of its replicas
        unprobed = [n for n in names if catalogue.service(n).ready is None]
        if unprobed:
            listed = ", ".join(repr(n) for n in unprobed)
            raise UsageError(f"no readiness probe to check for {listed}")
        wanted = set(names)
    else:
        wanted = select_up(catalogue, graph, [], profiles)
    return [
        service
        for name, service in catalogue.services.items()
        if name in wanted and service.ready is not None
    ]


def last_start_offset(path: Path, service: str) -> int:
    """Where the service's current run begins in its log: its last svcorch start header.

    Read from the end in chunks: a log may be 50 MB and ``--watch`` asks every round.
    """
    header = START_HEADER + f"{service} start #".encode()
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            return _rfind_line(handle, end, header)
    except OSError:
        return 0


def _rfind_line(handle: BinaryIO, end: int, header: bytes) -> int:
    """The offset of the last line starting with ``header`` before ``end``, else 0."""
    position = end
    after = b""  # the start of the chunk read before: a header may straddle two chunks
    while position > 0:
        start = max(0, position - _TAIL_CHUNK)
        handle.seek(start)
        window = handle.read(position - start) + after
        at = window.rfind(b"\n" + header)
        if at >= 0:
            return start + at + 1
        position = start
        after = window[: len(header)]
    return 0


def _probe_for(catalogue: Catalogue, layout: StateLayout, service: Service) -> Probe:
    if _options(service).type == "notify":
        return NotifiedToTheDaemon(layout, service)
    if _options(service).type == "log" and service.kind is not Kind.EXTERNAL:
        return LogOfCurrentRun(catalogue, layout, service)
    return _create(catalogue, layout, service, last_start_offset)


def _create(
    catalogue: Catalogue,
    layout: StateLayout,
    service: Service,
    offset: Callable[[Path, str], int],
) -> Probe:
    options = _options(service)
    probe_type = registry.get(options.type)
    assert probe_type is not None  # the catalogue validated the type
    log_path = layout.service_log(service.name)
    context = ProbeContext(
        service=service.name,
        base_dir=catalogue.base_dir,
        env={**catalogue.dotenv, **catalogue.env, **service.env},
        log_path=log_path,
        log_offset=offset(log_path, service.name),
    )
    return probe_type.create(options, context)


class NotifiedToTheDaemon:
    """``check`` of a notify service: only the svcorch that started it hears its READY=1,
    so say so, and say what that svcorch recorded (the state file) when a run is alive."""

    def __init__(self, layout: StateLayout, service: Service) -> None:
        self.layout = layout
        self.service = service

    def check(self, deadline: float) -> ProbeResult:
        from svcorch.probes.notify import ONLY_THE_DAEMON

        try:
            run = current_run(self.layout, self.service.name)
            record = StateFile(self.layout.state_file).load().get(self.service.name)
        except StateError as exc:
            return ProbeResult.failed(f"{ONLY_THE_DAEMON}; {exc}", retryable=True)
        if run is None or record is None:
            return ProbeResult.failed(
                f"{ONLY_THE_DAEMON}; no svcorch runs it (no live process in the state file)",
                retryable=True,
            )
        said = f"{record.state}" + (f" ({record.detail})" if record.detail else "")
        ok = record.state in ("ready", "degraded")
        detail = f"{ONLY_THE_DAEMON}; it says: {said}"
        return ProbeResult(ok=ok, detail=detail, retryable=not ok)


class LogOfCurrentRun:
    """A log probe for ``check``: the ready line must come from a run that is alive now.

    The log outlives the process: after ``svcorch down`` the last run's "ready." is still
    there, and a plain log probe would call a stopped worker healthy. So each attempt first
    finds the service's process in the state file (pid and create time, so a reused pid does
    not count), and a new run gets a new probe that reads from that run's start header.
    """

    def __init__(self, catalogue: Catalogue, layout: StateLayout, service: Service) -> None:
        self.catalogue = catalogue
        self.layout = layout
        self.service = service
        self.run: ProcessRecord | None = None
        self.probe: Probe | None = None

    def check(self, deadline: float) -> ProbeResult:
        try:
            run = current_run(self.layout, self.service.name)
        except StateError as exc:
            return ProbeResult.failed(str(exc), retryable=True)
        if run is None:
            self.probe = None
            return ProbeResult.failed(
                "not running (no live process in the state file)", retryable=True
            )
        if self.probe is None or run != self.run:
            self.run = run
            self.probe = _create(self.catalogue, self.layout, self.service, last_start_offset)
        return self.probe.check(deadline)


def current_run(layout: StateLayout, service: str) -> ProcessRecord | None:
    """The service's recorded process if it is still that process and alive, else None."""
    from svcorch import process

    record = StateFile(layout.state_file).load().get(service)
    recorded = record.process() if record is not None else None
    if recorded is None or not process.is_same_process(recorded):
        return None
    return recorded


def _options(service: Service) -> ProbeOptions:
    """What `check` runs: a probe from outside (with notify readiness, the protocol probe the
    catalogue keeps as liveness: it proves the server answers, credentials included); only a
    notify service with nothing else is reported from what its daemon heard."""
    options = service.outside_probe()
    if options is not None:
        return options
    assert service.kind is not Kind.EXTERNAL  # the model requires an outside probe there
    assert service.ready is not None
    return service.ready


def _row(service: Service, result: ProbeResult, redactor: Redactor) -> CheckRow:
    """A result as the table, the JSON and the notifiers see it: with every secret of the
    catalogue masked (an exec probe may echo any variable; a server, any header)."""
    options = _options(service)
    return CheckRow(
        service=service.name,
        probe=options.type,
        target=redactor.text(options.target()),
        ok=result.ok,
        latency_ms=result.elapsed * 1000,
        detail=redactor.text(result.detail),
    )


def redactor_for(catalogue: Catalogue) -> Redactor:
    """The catalogue's secrets and those of the environment the probes run in."""
    return Redactor.for_catalogue(catalogue, os.environ)


def preload_clients(services: Iterable[Service]) -> None:
    """Import the client libraries the selected probes need, before any clock starts."""
    for module in sorted({CLIENT_MODULES.get(_options(s).type, "") for s in services} - {""}):
        # missing: the probe reports it, in its own words
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


def _parallel(
    services: list[Service],
    attempt: Callable[[Service], ProbeResult],
    redactor: Redactor | None = None,
) -> list[CheckRow]:
    """Every service's ``attempt`` in its own thread; rows in the order of ``services``."""
    if not services:
        return []
    masking = redactor or Redactor()
    preload_clients(services)

    def timed(service: Service) -> CheckRow:
        started = time.monotonic()
        try:
            result = attempt(service)
        except Exception as exc:  # a (plugin) probe's bug fails its service, not the check
            text = f"probe raised {type(exc).__name__}: {exc}"
            result = ProbeResult.failed(text, retryable=False).scrubbed(_options(service).secrets())
        if not result.elapsed:
            result = replace(result, elapsed=time.monotonic() - started)
        return _row(service, result, masking)

    # a thread each, not a bounded pool: the wall time must be the slowest probe, not
    # a sum of batches (each thread mostly waits on a socket)
    with ThreadPoolExecutor(max_workers=len(services), thread_name_prefix="check") as pool:
        return list(pool.map(timed, services))


def once(
    catalogue: Catalogue,
    layout: StateLayout,
    services: list[Service],
    redactor: Redactor | None = None,
) -> list[CheckRow]:
    """One attempt of every probe, in parallel: the wall time is the slowest probe."""
    from svcorch.probes.wait import check_once

    return _parallel(
        services,
        lambda s: check_once(_probe_for(catalogue, layout, s), _options(s)),
        redactor or redactor_for(catalogue),
    )


def wait(
    catalogue: Catalogue,
    layout: StateLayout,
    services: list[Service],
    timeout: timedelta | None,
    cancelled: threading.Event | None = None,
    redactor: Redactor | None = None,
) -> list[CheckRow]:
    """Wait until every probe passes (or fails for good / times out), in parallel.

    ``timeout`` replaces each probe's own ``timeout``. Setting ``cancelled`` ends every
    wait before its next attempt; an attempt in progress ends by its own deadline.
    """
    from svcorch.probes.wait import wait_ready

    def attempt(service: Service) -> ProbeResult:
        options = _options(service)
        if timeout is not None:
            options = options.model_copy(update={"timeout": timeout})
        return wait_ready(_probe_for(catalogue, layout, service), options, cancelled=cancelled)

    return _parallel(services, attempt, redactor or redactor_for(catalogue))


def health_changes(
    previous: Mapping[str, bool],
    rows: Iterable[CheckRow],
    *,
    now: float,
    catalogue: str,
    host: str = "",
) -> list[HealthChange]:
    """The changes one round brings, against what the previous rounds saw.

    A service seen for the first time is news only if it is failing: "ok" is not worth a
    page when a watch starts, but a watch started during an outage must say so at once.
    """
    changes = []
    for row in rows:
        before = previous.get(row.service)
        if before == row.ok or (before is None and row.ok):
            continue
        changes.append(
            HealthChange(
                service=row.service,
                probe=row.probe,
                target=row.target,
                ok=row.ok,
                previous=before,
                detail=row.detail,
                time=now,
                catalogue=catalogue,
                host=host,
            )
        )
    return changes


@dataclass
class Watch:
    """``check --watch``: rounds every ``interval`` seconds; notifications on every change."""

    catalogue: Catalogue
    layout: StateLayout
    services: list[Service]
    interval: float
    notifications: Notifications
    on_round: Callable[[int, list[CheckRow], list[HealthChange]], None]
    probe_round: Callable[[], list[CheckRow]] | None = None
    clock: Callable[[], float] = time.monotonic
    redactor: Redactor | None = None

    def run(self, stop: threading.Event) -> int:
        """Rounds until ``stop`` is set; the number of rounds run."""
        health: dict[str, bool] = {}
        name = self.catalogue.name or str(self.catalogue.path.absolute())
        host = socket.gethostname()
        number = 0
        while not stop.is_set():
            number += 1
            started = self.clock()
            rows = self._round()
            changes = health_changes(health, rows, now=time.time(), catalogue=name, host=host)
            health.update((row.service, row.ok) for row in rows)
            for change in changes:
                self.notifications.send(change)
            self.on_round(number, rows, changes)
            # the interval runs from the start of one round to the next, so rounds keep
            # their rhythm whatever the probes take
            stop.wait(max(0.0, self.interval - (self.clock() - started)))
        return number

    def _round(self) -> list[CheckRow]:
        if self.probe_round is not None:
            return self.probe_round()
        if self.redactor is None:
            self.redactor = redactor_for(self.catalogue)  # once per watch, not per round
        return once(self.catalogue, self.layout, self.services, self.redactor)
