"""Run the installed ``svcorch`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

SVCORCH = shutil.which("svcorch", path=os.path.dirname(sys.executable))

#: variables of the developer's shell that would change what the command does
_SCRUBBED = (
    "SVCORCH_FILE",
    "SVCORCH_STATE_DIR",
    "SVCORCH_PROJECT_NAME",
    "COLUMNS",
    "LINES",
    "FORCE_COLOR",
    "NO_COLOR",
)


def run_svcorch(
    *args: str,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """``svcorch ARGS...`` in ``cwd``; ``env`` is added to a copy of this process's environment."""
    if SVCORCH is None:
        raise AssertionError(f"no svcorch executable beside {sys.executable}: pip install -e .")
    environ = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    environ.update(env or {})
    return subprocess.run(
        [SVCORCH, *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    """No Python traceback reached the user, whatever the exit code."""
    assert "Traceback" not in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
