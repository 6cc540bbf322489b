"""The exception tree. Every family carries the exit code the CLI maps it to.

This module imports nothing from svcorch: everything else may raise these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class SvcorchError(Exception):
    """Root of every error svcorch reports as one line."""

    exit_code: int = 1


class UsageError(SvcorchError):
    """Bad command-line arguments or environment."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One located catalogue problem: ``file:line:col: message``."""

    file: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.message}"
        if self.column is None:
            return f"{self.file}:{self.line}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class CatalogueError(SvcorchError):
    """services.yaml is missing, malformed or inconsistent. Carries every problem found."""

    exit_code = 2

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class DependencyCycle(SvcorchError):
    """The dependency graph has at least one cycle; each cycle in dependency order."""

    exit_code = 2

    def __init__(self, cycles: Sequence[Sequence[str]]) -> None:
        self.cycles = tuple(tuple(c) for c in cycles)
        text = "; ".join(" -> ".join([*c, c[0]]) for c in self.cycles)
        super().__init__(f"dependency cycle: {text}")


class ExportGap(SvcorchError):
    """``export --strict``: the target cannot express part of the catalogue (one line each)."""

    exit_code = 2


class UnknownService(UsageError):
    """A service named on the command line is not in the catalogue."""


class ProjectMismatch(UsageError):
    """A command of one project aimed at the state directory (or daemon) of another."""


class OperationFailed(SvcorchError):
    """The operation ran and failed: a probe failed, a service did not become ready."""

    exit_code = 1


class ProbeConfigError(SvcorchError):
    """A probe's options cannot work (bad URL, unknown type at run time)."""

    exit_code = 2


class ProcessError(OperationFailed):
    """Spawning, signalling or reaping a service process failed."""


class StaleRecord(ProcessError):
    """A recorded pid now belongs to another process (pid reuse): never signal it."""


class PortInUse(ProcessError):
    """A port a service declares is already held by another process."""


class PreflightFailed(OperationFailed):
    """Starting would fail for certain (a missing program, a port held by another process):
    nothing was started. Carries every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        count = f"{len(self.problems)} problem" + ("s" if len(self.problems) != 1 else "")
        super().__init__(
            "\n".join([*self.problems, f"nothing was started: {count} found before starting"])
        )


class DaemonError(OperationFailed):
    """The supervisor daemon could not be reached or answered with an error."""


class Interrupted(SvcorchError):
    """Ctrl-C or SIGTERM ended the command."""

    exit_code = 130
