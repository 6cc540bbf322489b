"""The daemon's alerts: its events, damped per service, sent to the catalogue's notifiers.

A notifier hears of the events at or above its ``min_severity`` (default ``warning``: a crash,
a start retried, a dependency down, ``fatal``), and of the recovery that ends such a problem.
Flap damping, per notifier and service: the first event of a burst is sent at once and opens
a window of ``damping`` seconds; whatever that service does meanwhile is collected and sent
as one ``summary`` when the window closes. A window whose summary held another problem opens
the next one, so a service crashing in a loop costs one message per window, not one per crash.

The engine's loop only puts records on a queue (``Alerter.post``); one thread runs the
windows, and the notifiers' own threads deliver, retry and report (``svcorch.notify``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from svcorch.engine.events import EventKind, Severity
from svcorch.journal import EventRecord
from svcorch.model import Notifier
from svcorch.notify import Delivery, Notifications

log = logging.getLogger("svcorch.alerts")

SUMMARY = "summary"
SUMMARY_EVENTS = 50  # a summary lists at most this many events (the count says the rest)
_ENDS_TROUBLE = (EventKind.RECOVERED.value, EventKind.STOPPED.value)


@dataclass(frozen=True)
class Alert:
    """What a notifier receives from the daemon: one event, or the summary of a window."""

    event: str  # the event's kind, or "summary"
    severity: str
    service: str
    old: str
    new: str
    detail: str
    time: float
    pid: int | None
    catalogue: str  # its name, else the absolute path of services.yaml
    host: str
    since: float | None = None  # a summary: when its window opened
    count: int = 1  # a summary: how many events it covers
    events: tuple[EventRecord, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "source": "daemon",
            "event": self.event,
            "severity": self.severity,
            "service": self.service,
            "old": self.old,
            "new": self.new,
            "detail": self.detail,
            "time": self.time,
            "pid": self.pid,
            "catalogue": self.catalogue,
            "host": self.host,
        }
        if self.event == SUMMARY:
            payload["since"] = self.since
            payload["count"] = self.count
            payload["events"] = [_brief(record) for record in self.events]
        return payload

    def environment(self) -> dict[str, str]:
        """The ``SVCORCH_*`` variables an exec notifier gets."""
        return {
            "SVCORCH_SOURCE": "daemon",
            "SVCORCH_EVENT": self.event,
            "SVCORCH_SEVERITY": self.severity,
            "SVCORCH_SERVICE": self.service,
            "SVCORCH_OLD": self.old,
            "SVCORCH_NEW": self.new,
            "SVCORCH_DETAIL": self.detail,
            "SVCORCH_TIME": f"{self.time:.3f}",
            "SVCORCH_COUNT": str(self.count),
            "SVCORCH_CATALOGUE": self.catalogue,
            "SVCORCH_HOST": self.host,
        }


def _brief(record: EventRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in record.to_dict().items()
        if key in ("time", "kind", "severity", "old", "new", "detail", "pid")
    }


def _at_least(record: EventRecord, threshold: Severity) -> bool:
    try:
        return Severity(record.severity).rank >= threshold.rank
    except ValueError:  # a journal of a newer svcorch: unknown levels count as problems
        return True


@dataclass
class _Window:
    service: str
    opened: float  # wall clock, for the summary
    closes: float  # monotonic
    collected: list[EventRecord] = field(default_factory=list)
    count: int = 0
    before: str = ""  # the state the window started from


class Damper:
    """One notifier's view of the events: what to send now, and summaries when windows close.

    Pure: no threads, no I/O; ``now`` is the monotonic clock, given by the caller.
    """

    def __init__(self, *, damping: float, threshold: Severity, catalogue: str, host: str) -> None:
        self.damping = damping
        self.threshold = threshold
        self.catalogue = catalogue
        self.host = host
        self._windows: dict[str, _Window] = {}
        self._troubled: set[str] = set()  # an alert went out, and no recovery since

    def feed(self, record: EventRecord, now: float) -> list[Alert]:
        window = self._windows.get(record.service)
        if window is not None:
            window.count += 1
            if len(window.collected) < SUMMARY_EVENTS:
                window.collected.append(record)
            self._track(record)
            return []
        problem = _at_least(record, self.threshold)
        ends = record.kind in _ENDS_TROUBLE and record.service in self._troubled
        if not problem and not ends:
            return []
        self._track(record)
        if self.damping > 0:
            self._windows[record.service] = _Window(
                record.service, record.time, now + self.damping, before=record.new
            )
        return [self._single(record)]

    def due(self, now: float) -> list[Alert]:
        """Summaries of the windows that closed by ``now``."""
        alerts = []
        for service, window in list(self._windows.items()):
            if window.closes > now:
                continue
            del self._windows[service]
            if not window.collected:
                # quiet since its alert: the window ends, nothing to say
                log.info("alerts: %s: quiet for %gs, damping window closed", service, self.damping)
                continue
            alerts.append(self._summary(window))
            if any(_at_least(record, self.threshold) for record in window.collected):
                # still in trouble: the next burst is summarised too, not paged again
                self._windows[service] = _Window(
                    service, time.time(), now + self.damping, before=window.collected[-1].new
                )
        return alerts

    def next_due(self) -> float | None:
        return min((window.closes for window in self._windows.values()), default=None)

    def drain(self) -> list[Alert]:
        """Every open window's summary now (the daemon is exiting)."""
        windows, self._windows = self._windows, {}
        return [self._summary(window) for window in windows.values() if window.collected]

    def _track(self, record: EventRecord) -> None:
        if _at_least(record, self.threshold):
            self._troubled.add(record.service)
        elif record.kind in _ENDS_TROUBLE:
            self._troubled.discard(record.service)

    def _single(self, record: EventRecord) -> Alert:
        return Alert(
            event=record.kind,
            severity=record.severity,
            service=record.service,
            old=record.old,
            new=record.new,
            detail=record.detail,
            time=record.time,
            pid=record.pid,
            catalogue=self.catalogue,
            host=self.host,
        )

    def _summary(self, window: _Window) -> Alert:
        records = window.collected
        last = records[-1]
        worst = max(records, key=lambda r: _rank(r.severity))
        kinds = ", ".join(_counted(record.kind for record in records))
        more = f" (+{window.count - len(records)} more)" if window.count > len(records) else ""
        return Alert(
            event=SUMMARY,
            severity=worst.severity,
            service=window.service,
            old=window.before,
            new=last.new,
            detail=f"{window.count} events since the alert: {kinds}{more}; now {last.new}"
            + (f" ({last.detail})" if last.detail else ""),
            time=last.time,
            pid=last.pid,
            catalogue=self.catalogue,
            host=self.host,
            since=window.opened,
            count=window.count,
            events=tuple(records),
        )


def _rank(severity: str) -> int:
    try:
        return Severity(severity).rank
    except ValueError:
        return Severity.CRITICAL.rank


def _counted(kinds: Iterable[str]) -> list[str]:
    """``exited x3, restarted x3, fatal``: each kind once, in order of first appearance."""
    counts: dict[str, int] = {}
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
    return [kind if count == 1 else f"{kind} x{count}" for kind, count in counts.items()]


class Alerter:
    """The daemon's side of notifying: a queue the loop posts to, one thread for the windows."""

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        *,
        base_dir: str,
        catalogue: str,
        host: str,
        on_delivery: Callable[[Delivery], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifiers = tuple(notifiers)
        self.clock = clock
        self.notifications = Notifications(self.notifiers, base_dir, on_delivery)
        self.dampers = [
            Damper(
                damping=notifier.damping.total_seconds(),
                threshold=Severity(notifier.min_severity),
                catalogue=catalogue,
                host=host,
            )
            for notifier in self.notifiers
        ]
        self._queue: queue.Queue[EventRecord | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="svcorch-alerts", daemon=True)
        self._thread.start()

    def post(self, record: EventRecord) -> None:
        """From the engine's loop: never blocks (the queue is unbounded)."""
        self._queue.put_nowait(record)

    def close(self, timeout: float) -> None:
        """Send what open windows collected, then give deliveries up to ``timeout``."""
        deadline = time.monotonic() + timeout
        self._queue.put(None)
        self._thread.join(timeout)
        self.notifications.close(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            wait = self._wait()
            try:
                record = self._queue.get(timeout=wait)
            except queue.Empty:
                record = None
                ended = False
            else:
                ended = record is None
            try:
                self._step(record, ended)
            except Exception:  # a bug here must not end alerting for the daemon's life
                log.exception("alerting failed")
            if ended:
                return

    def _wait(self) -> float | None:
        due = [d for d in (damper.next_due() for damper in self.dampers) if d is not None]
        return max(0.0, min(due) - self.clock()) if due else None

    def _step(self, record: EventRecord | None, ended: bool) -> None:
        now = self.clock()
        for index, damper in enumerate(self.dampers):
            alerts = damper.feed(record, now) if record is not None else []
            alerts += damper.drain() if ended else damper.due(now)
            for alert in alerts:
                if alert.event == SUMMARY:
                    log.info("alerts: %s: %s", alert.service, alert.detail)
                with contextlib.suppress(IndexError):
                    self.notifications.send_to(index, alert)
