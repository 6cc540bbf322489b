"""file-exists: ready when a file exists (an example of a probe plugin).

A plugin is a module exposing a ``ProbeType`` through the ``svcorch.probes`` entry point
group. Its options model is validated when the catalogue loads, like a built-in's.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field, field_validator

from svcorch.probes.base import Probe, ProbeContext, ProbeOptions, ProbeResult, ProbeType


class FileExistsOptions(ProbeOptions):
    type: Literal["file-exists"] = "file-exists"
    path: str = Field(description="relative to the service's directory")

    @field_validator("path")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("path must not be empty")
        return value

    def target(self) -> str:
        return self.path


class FileExistsProbe:
    def __init__(self, options: FileExistsOptions, context: ProbeContext) -> None:
        self.path = context.base_dir / options.path

    def check(self, deadline: float) -> ProbeResult:
        started = time.monotonic()
        if self.path.exists():
            return ProbeResult.passed(f"{self.path} exists", elapsed=time.monotonic() - started)
        return ProbeResult.failed(
            f"{self.path} does not exist yet", retryable=True, elapsed=time.monotonic() - started
        )


def _create(options: ProbeOptions, context: ProbeContext) -> Probe:
    assert isinstance(options, FileExistsOptions)
    return FileExistsProbe(options, context)


PROBE_TYPE = ProbeType(name="file-exists", options=FileExistsOptions, create=_create)
