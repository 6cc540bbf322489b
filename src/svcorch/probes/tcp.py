"""tcp: ready when a TCP connect to host:port succeeds."""

from __future__ import annotations

import socket
import time
from typing import Literal

from pydantic import Field

from svcorch.probes.base import Probe, ProbeContext, ProbeOptions, ProbeResult, ProbeType


class TcpOptions(ProbeOptions):
    type: Literal["tcp"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)

    def target(self) -> str:
        return f"tcp://{self.host}:{self.port}"


class TcpProbe:
    def __init__(self, options: TcpOptions) -> None:
        self.options = options

    def check(self, deadline: float) -> ProbeResult:
        started = time.monotonic()
        budget = min(self.options.effective_attempt_timeout(), max(deadline - started, 0.001))
        try:
            with socket.create_connection((self.options.host, self.options.port), budget):
                pass
        except TimeoutError:
            return ProbeResult.failed(
                f"connect timed out after {budget:.3g}s",
                retryable=True,
                elapsed=time.monotonic() - started,
            )
        except OSError as exc:
            # refused, unreachable, name not resolved yet: all may heal while a service boots
            return ProbeResult.failed(
                exc.strerror or str(exc), retryable=True, elapsed=time.monotonic() - started
            )
        return ProbeResult.passed("connected", elapsed=time.monotonic() - started)


def _create(options: ProbeOptions, context: ProbeContext) -> Probe:
    assert isinstance(options, TcpOptions)
    return TcpProbe(options)


PROBE_TYPE = ProbeType(name="tcp", options=TcpOptions, create=_create)
