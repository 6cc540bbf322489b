"""exec: ready when a command exits 0 within the attempt timeout.

The command runs in its own session; at the end of every attempt its whole process group is
killed (a timed-out command and anything it left running in the background), and the command
itself is reaped, so a probe leaves neither orphans nor zombies. Output goes to a temporary
file, not a pipe: a background child holding a pipe open cannot stall the attempt.

Retryable: a non-zero exit, a signal, a timeout. Fatal: the program or the working directory
does not exist or cannot be executed (checked at each attempt, since both are resolved then).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Literal

from pydantic import Field, field_validator

from svcorch.probes.base import (
    Probe,
    ProbeContext,
    ProbeOptions,
    ProbeResult,
    ProbeType,
    attempt_budget,
    entry_secrets,
)

OUTPUT_TAIL = 64 * 1024  # read back at most this much of the output
DETAIL_LIMIT = 300
TARGET_LIMIT = 80


class ExecOptions(ProbeOptions):
    type: Literal["exec"] = "exec"
    command: str | list[str] = Field(description="argv list, or a string split like a shell")
    shell: bool = Field(default=False, description="run the command string with /bin/sh -c")
    cwd: str | None = Field(default=None, description="relative to the service's directory")
    env: dict[str, str] = Field(default_factory=dict, description="added to the environment")

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            try:
                words = shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split command {value!r}: {exc}") from None
        else:
            words = value
        if not words or not words[0]:
            raise ValueError("command must not be empty")
        return value

    def argv(self) -> list[str]:
        if self.shell:
            script = self.command if isinstance(self.command, str) else shlex.join(self.command)
            return ["/bin/sh", "-c", script]
        if isinstance(self.command, str):
            return shlex.split(self.command)
        return list(self.command)

    def target(self) -> str:
        shown = self.command if isinstance(self.command, str) else shlex.join(self.command)
        return shown if len(shown) <= TARGET_LIMIT else shown[: TARGET_LIMIT - 3] + "..."

    def secrets(self) -> list[str]:
        found = super().secrets()
        for name, value in self.env.items():
            found += entry_secrets(name, value)
        return found


class ExecProbe:
    def __init__(self, options: ExecOptions, cwd: Path, env: dict[str, str]) -> None:
        self.options = options
        self.cwd = cwd
        self.env = env

    def check(self, deadline: float) -> ProbeResult:
        started = time.monotonic()
        budget = attempt_budget(self.options, deadline)
        with tempfile.TemporaryFile() as output:
            result = self._run(budget, output)
            if result.ok or result.retryable:
                result = _with_output(result, output)
        return ProbeResult(
            ok=result.ok,
            detail=result.detail,
            retryable=result.retryable,
            elapsed=time.monotonic() - started,
        ).scrubbed(self.options.secrets())

    def _run(self, budget: float, output: IO[bytes]) -> ProbeResult:
        started = self._spawn(output)
        if isinstance(started, ProbeResult):
            return started
        process = started
        code: int | None = None
        try:
            code = process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            pass
        finally:
            # killpg, not kill: a shell's children (and anything sent to the background)
            # would outlive it. A group id is never reused while a member lives, so this
            # reaches our command's group or nothing.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if code is None:
            return ProbeResult.failed(f"timed out after {budget:.3g}s", retryable=True)
        if code == 0:
            return ProbeResult.passed("exit 0")
        if code < 0:
            return ProbeResult.failed(f"killed by {_signal_name(-code)}", retryable=True)
        return ProbeResult.failed(f"exit {code}", retryable=True)

    def _spawn(self, output: IO[bytes]) -> subprocess.Popen[bytes] | ProbeResult:
        argv = self.options.argv()
        if not self.cwd.is_dir():
            return ProbeResult.failed(
                f"working directory {self.cwd} does not exist", retryable=False
            )
        try:
            return subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            return ProbeResult.failed(f"cannot run {argv[0]!r}: {exc.strerror}", retryable=False)
        except OSError as exc:  # out of processes or memory: may pass
            return ProbeResult.failed(f"cannot run {argv[0]!r}: {exc}", retryable=True)


def _with_output(result: ProbeResult, output: IO[bytes]) -> ProbeResult:
    """``exit 3: <last line of output>``: the command's own words are the detail."""
    last = _last_line(output)
    if not last:
        return result
    return ProbeResult(ok=result.ok, detail=f"{result.detail}: {last}", retryable=result.retryable)


def _last_line(output: IO[bytes]) -> str:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(size - OUTPUT_TAIL, 0))
    text = output.read().decode(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last if len(last) <= DETAIL_LIMIT else "..." + last[-DETAIL_LIMIT:]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _create(options: ProbeOptions, context: ProbeContext) -> Probe:
    assert isinstance(options, ExecOptions)
    cwd = context.base_dir / options.cwd if options.cwd is not None else context.base_dir
    env = {**os.environ, **context.env, **options.env}
    return ExecProbe(options, cwd, env)


PROBE_TYPE = ProbeType(name="exec", options=ExecOptions, create=_create)
