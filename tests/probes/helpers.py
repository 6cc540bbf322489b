"""Build a probe the way the engine does: options validated by their model, then created."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from svcorch.probes import registry
from svcorch.probes.base import Probe, ProbeContext, ProbeOptions, ProbeResult

ATTEMPT = 0.5  # seconds: the attempt timeout used where a test measures deadlines
TOLERANCE = 1.1  # an attempt may overrun its budget by 10% at most


def options(type_name: str, **values: Any) -> ProbeOptions:
    probe_type = registry.get(type_name)
    assert probe_type is not None, type_name
    return probe_type.options.model_validate({"type": type_name, **values})


def make(type_name: str, context: ProbeContext | None = None, **values: Any) -> Probe:
    probe_type = registry.get(type_name)
    assert probe_type is not None, type_name
    chosen = options(type_name, **values)
    return probe_type.create(chosen, context or ProbeContext(service="svc", base_dir=Path.cwd()))


def attempt(type_name: str, context: ProbeContext | None = None, **values: Any) -> ProbeResult:
    """One attempt with a generous deadline (each test sets attempt_timeout when it matters)."""
    return make(type_name, context, **values).check(time.monotonic() + 30)


def timed_attempt(type_name: str, **values: Any) -> tuple[ProbeResult, float]:
    """One attempt with ``attempt_timeout=ATTEMPT``; the result and the wall time it took."""
    probe = make(type_name, attempt_timeout=ATTEMPT, **values)
    started = time.monotonic()
    result = probe.check(time.monotonic() + 30)
    return result, time.monotonic() - started
