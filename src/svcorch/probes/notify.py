"""notify: ready when the service itself says ``READY=1`` (the systemd readiness protocol).

There is nothing to connect to from outside: the engine gives the service a ``NOTIFY_SOCKET``
when it spawns it and listens there (``svcorch.engine.sdnotify``). So only the daemon (or the
foreground ``up``) that started the service can see it; a one-off ``check`` says so.
``watchdog`` asks the service for ``WATCHDOG=1`` at least that often (``WATCHDOG_USEC`` is
passed to it): a service that stops pinging is restarted like a failed liveness probe.
"""

from __future__ import annotations

from typing import Literal

from svcorch.durations import Duration
from svcorch.probes.base import Probe, ProbeContext, ProbeOptions, ProbeResult, ProbeType

ONLY_THE_DAEMON = (
    "notify: only the svcorch that started the service sees its READY=1 (on NOTIFY_SOCKET)"
)


class NotifyOptions(ProbeOptions):
    type: Literal["notify"] = "notify"
    watchdog: Duration | None = None

    def target(self) -> str:
        return "NOTIFY_SOCKET"

    def watchdog_seconds(self) -> float | None:
        return self.watchdog.total_seconds() if self.watchdog is not None else None


class NotifyProbe:
    """What a probe attempt from outside the engine can say: that it cannot see it."""

    def __init__(self, options: NotifyOptions) -> None:
        self.options = options

    def check(self, deadline: float) -> ProbeResult:
        return ProbeResult.failed(ONLY_THE_DAEMON, retryable=False)


def _create(options: ProbeOptions, context: ProbeContext) -> Probe:
    assert isinstance(options, NotifyOptions)
    return NotifyProbe(options)


PROBE_TYPE = ProbeType(name="notify", options=NotifyOptions, create=_create)
