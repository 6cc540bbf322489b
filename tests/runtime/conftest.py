"""The installed `svcorch` command run against test catalogues in short temp dirs."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from svcorch.engine import State
from tests.conftest import RUN_MARKER
from tests.support import wait_until
from tests.support.procs import python_service, service_env

SVCORCH = str(Path(sys.executable).with_name("svcorch"))
COMMAND_TIMEOUT = 60.0
STATES = "|".join(state.value for state in State)
OUTCOME = re.compile(r"^\d+ (ready|stopped|restarted) in \d")  # "3 ready in 0.61s"
EVENT = re.compile(rf"^(?P<service>\S+)\s+(?P<state>{STATES})(?: +(?P<detail>.*))?$")


def tcp_service(port: int, delay: float = 0.0, **spec: Any) -> dict[str, Any]:
    """A managed service ready on ``port`` after ``delay`` seconds, probed over TCP."""
    probe = {"type": "tcp", "port": port, "timeout": "10s", **spec.pop("probe", {})}
    return {
        "command": python_service("tcp_ready", "--port", port, "--delay", delay),
        "ready": probe,
        **spec,
    }


class Stack:
    """One catalogue in a temp dir, driven through the real `svcorch` command."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "services.yaml"
        # unix socket paths must stay under 108 bytes
        self.state_dir = root / "st"
        # the leak marker (SVCORCH_TEST_RUN) must reach the daemon; the user's settings not
        self.env = {
            key: value
            for key, value in service_env().items()
            if key == RUN_MARKER or not key.startswith("SVCORCH_")
        }
        self.env["COLUMNS"] = "200"

    def write(self, services: dict[str, Any], **top: Any) -> None:
        self.file.write_text(yaml.safe_dump({"version": 1, **top, "services": services}))

    def argv(self, *args: str) -> list[str]:
        return [SVCORCH, "-f", str(self.file), "--state-dir", str(self.state_dir), *args]

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.root,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run a command that must exit 0; its stdout."""
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, (
            f"svcorch {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        return result.stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=self.root,
        )

    def status(self, *names: str) -> dict[str, dict[str, Any]]:
        rows = json.loads(self.ok("status", "--json", *names))
        return {row["service"]: row for row in rows}

    def records(self) -> dict[str, dict[str, Any]]:
        document = json.loads((self.state_dir / "state.json").read_text())
        return {entry["name"]: entry for entry in document["services"]}

    def log(self, service: str) -> str:
        path = self.state_dir / "logs" / f"{service}.log"
        return path.read_text() if path.exists() else ""

    def daemon_log(self) -> str:
        path = self.state_dir / "daemon.log"
        return path.read_text() if path.exists() else ""

    def daemon_pid(self) -> int | None:
        """The daemon's pid while one holds the state dir, else None."""
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if "svcorch.supervisor" in cmdline and str(self.state_dir) in cmdline:
                try:
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        return proc.pid
                except psutil.NoSuchProcess:
                    continue
        return None


def events(output: str) -> list[tuple[str, str, str]]:
    """(service, state, detail) of each progress line svcorch printed."""
    found = []
    for line in output.splitlines():
        if OUTCOME.match(line):
            continue
        match = EVENT.match(line)
        if match:
            found.append((match["service"], match["state"], (match["detail"] or "").strip()))
    return found


def position(output: str, service: str, state: str) -> int:
    """Index of the first progress line saying ``service`` entered ``state``."""
    for index, (name, new, _) in enumerate(events(output)):
        if name == service and new == state:
            return index
    raise AssertionError(f"no '{service} {state}' line in:\n{output}")


class Reader:
    """Collects a child's output lines in a thread, so a test can wait for one."""

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self.lines: list[str] = []
        assert popen.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(popen.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> None:
        wait_until(
            lambda: re.search(pattern, self.text, re.MULTILINE),
            timeout=timeout,
            message=f"{pattern!r} in the output:\n{self.text}",
        )

    def finish(self, timeout: float = 30.0) -> int:
        code = self.popen.wait(timeout)
        self._thread.join(timeout)
        return code


def stop_popen(popen: subprocess.Popen[str]) -> None:
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


@pytest.fixture
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="svc-", dir="/tmp"))
    made = Stack(root)
    try:
        yield made
    finally:
        if made.file.exists():
            made.run("down", "--timeout", "2s")
        shutil.rmtree(root, ignore_errors=True)
