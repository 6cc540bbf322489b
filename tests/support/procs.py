"""Run the small test services in tests/support/services as real processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil

SERVICES_DIR = Path(__file__).resolve().parent / "services"
TCP_READY = SERVICES_DIR / "tcp_ready.py"
EXIT_WITH = SERVICES_DIR / "exit_with.py"
IGNORE_TERM = SERVICES_DIR / "ignore_term.py"
FORKER = SERVICES_DIR / "forker.py"
READY_LINE = SERVICES_DIR / "ready_line.py"


def python_service(name: str, *args: object) -> list[str]:
    """argv running service ``name`` (``"tcp_ready"`` or ``"tcp_ready.py"``) with this Python."""
    script = SERVICES_DIR / (name if name.endswith(".py") else f"{name}.py")
    if not script.is_file():
        raise ValueError(f"no test service {script}")
    return [sys.executable, str(script), *(str(arg) for arg in args)]


def service_env(**extra: str) -> dict[str, str]:
    """The test's environment plus ``extra``.

    Start from os.environ so the leak marker set by tests/conftest.py reaches the child.
    """
    return {**os.environ, **extra}


def gone(pid: int) -> bool:
    """True once ``pid`` has exited; a zombie has exited too."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def read_pids(pidfile: Path) -> list[int]:
    """The pids forker.py wrote, or [] while the file is not there yet."""
    try:
        return [int(line) for line in pidfile.read_text().split()]
    except FileNotFoundError:
        return []
