"""Preflight: a start that would fail for certain is refused before anything starts.

Through the installed command, with a real process holding a declared port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.runtime.conftest import Stack, tcp_service
from tests.support import free_port, port_open, wait_until
from tests.support.procs import python_service, service_env

# a generous bound for a loaded 2-core machine; docs/operations.md gives the quiet figure
# measured by benchmarks/bench_preflight.py
REFUSAL_BOUND = 6.0  # seconds; a refusal that waited for anything would blow it


@pytest.fixture
def holder() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A real process listening on a port, as a stale server would."""
    port = free_port()
    proc = subprocess.Popen(
        python_service("tcp_ready", "--port", port),
        env=service_env(),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: port_open(port), timeout=10, message="the holder to listen")
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(10)


def _broken_stack(stack: Stack, held: int) -> dict[str, str]:
    (stack.root / "not-executable.sh").write_text("#!/bin/sh\nexit 0\n")
    stack.write(
        {
            "db": tcp_service(held, ports=[held]),
            "web": tcp_service(free_port(), ports=[held], depends_on=["db"]),
            "worker": {"command": "celeryy -A app worker", "depends_on": ["db"]},
            "beat": {"command": "sleep 30", "cwd": "no-such-dir"},
            "job": {"command": "./not-executable.sh", "oneshot": True},
            "fine": tcp_service(free_port(), 0.5),
        }
    )
    return {
        "worker": "worker: program 'celeryy' not found on its PATH (",
        "beat": f"beat: working directory {stack.root / 'no-such-dir'} does not exist",
        "job": "job: program ./not-executable.sh is not executable (chmod +x "
        f"{stack.root / 'not-executable.sh'})",
    }


def test_up_refuses_with_every_problem_at_once_and_starts_nothing(
    stack: Stack, holder: tuple[int, subprocess.Popen[bytes]]
) -> None:
    held, proc = holder
    expected = _broken_stack(stack, held)
    started = time.monotonic()
    result = stack.run("up")
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1] == "svcorch: nothing was started: 5 problems found before starting"
    for prefix in expected.values():
        assert any(line.startswith("svcorch: " + prefix) for line in lines), result.stderr
    # the holder is named by pid and command, for each service that declares the port
    command = f"port {held} is in use by pid {proc.pid} (python "
    assert any(line.startswith(f"svcorch: db: {command}") for line in lines), result.stderr
    assert any(line.startswith(f"svcorch: web: {command}") for line in lines), result.stderr
    assert len(lines) == 6
    assert took < REFUSAL_BOUND, took
    # nothing started: no progress line, no log, no daemon left behind
    assert result.stdout == ""
    assert not (stack.state_dir / "logs").exists() or not list((stack.state_dir / "logs").iterdir())
    wait_until(lambda: stack.daemon_pid() is None, timeout=5, message="the daemon to exit")
    assert {row["state"] for row in stack.status().values()} == {"stopped"}


def test_validate_reports_the_same_problems_as_warnings(
    stack: Stack, holder: tuple[int, subprocess.Popen[bytes]]
) -> None:
    held, proc = holder
    expected = _broken_stack(stack, held)
    result = stack.run("validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{stack.file}: ok — 6 services")
    warnings = result.stderr.splitlines()
    assert len(warnings) == 5, warnings
    for prefix in expected.values():
        assert any(line.startswith("warning: " + prefix) for line in warnings), warnings
    assert f"warning: web: port {held} is in use by pid {proc.pid} (python " in result.stderr
    as_json = json.loads(stack.ok("validate", "--json"))
    assert [f"warning: {w}" for w in as_json["warnings"]] == warnings


def test_only_services_the_up_would_start_are_checked(stack: Stack) -> None:
    port = free_port()
    stack.write(
        {
            "db": tcp_service(port, ports=[port]),
            "broken": {"command": "celeryy", "profiles": ["extra"]},
        }
    )
    stack.ok("up")
    # db holds its own port now: a second up leaves it alone and does not call it a conflict
    assert "nothing to do: 1 already ready (db)" in stack.ok("up")
    assert stack.run("validate").stderr == ""
    # a service outside the selection is not checked; named, it is
    refused = stack.run("up", "broken")
    assert refused.returncode == 1
    assert refused.stderr.startswith("svcorch: broken: program 'celeryy' not found on its PATH")


def test_restart_keeps_its_own_ports_and_refuses_before_stopping_anything(
    stack: Stack,
) -> None:
    port = free_port()
    serve = stack.root / "serve.sh"
    serve.write_text(f"#!/bin/sh\nexec {' '.join(python_service('tcp_ready', '--port', port))}\n")
    serve.chmod(0o755)
    stack.write(
        {"web": {"command": "./serve.sh", "ports": [port], "ready": {"type": "tcp", "port": port}}}
    )
    stack.ok("up")
    pid = stack.status()["web"]["pid"]
    out = stack.ok("restart", "web")  # the port it holds itself is no conflict
    assert "1 restarted in" in out
    pid = stack.status()["web"]["pid"]

    serve.rename(stack.root / "serve.sh.moved")
    refused = stack.run("restart", "web")
    assert refused.returncode == 1
    assert refused.stderr == (
        f"svcorch: web: program ./serve.sh not found ({serve} does not exist)\n"
        "svcorch: nothing was started: 1 problem found before starting\n"
    )
    # refused before the stop: the running web was not touched
    row = stack.status()["web"]
    assert (row["state"], row["pid"]) == ("ready", pid)
    assert port_open(port)


def test_the_program_is_looked_up_on_the_path_the_service_gets(stack: Stack) -> None:
    tools = stack.root / "tools"
    tools.mkdir()
    tool = tools / "my-server"
    tool.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    tool.chmod(0o755)
    port = free_port()
    script = str(python_service("tcp_ready")[1])
    stack.write(
        {
            "api": {
                "command": ["my-server", script, "--port", str(port)],
                "env": {"PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"},
                "ready": {"type": "tcp", "port": port},
            },
            "other": {"command": ["my-server", script, "--port", str(free_port())]},
        }
    )
    refused = stack.run("up")
    assert refused.returncode == 1
    # api finds it on its own PATH; other, without it, does not
    assert refused.stderr.startswith("svcorch: other: program 'my-server' not found on its PATH")
    assert "api:" not in refused.stderr
    assert "1 ready in" in stack.ok("up", "api")


def test_a_foreground_up_runs_the_same_preflight(stack: Stack) -> None:
    stack.write({"worker": {"command": "celeryy worker"}, "fine": tcp_service(free_port())})
    result = stack.run("up", "--foreground", timeout=30)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "svcorch: nothing was started: 1 problem found before starting"
    )
    assert not (stack.state_dir / "logs" / "fine.log").exists()


def test_what_a_oneshot_creates_is_refused_unless_the_shell_resolves_it(stack: Stack) -> None:
    port = free_port()
    serve = " ".join(python_service("tcp_ready", "--port", port))
    make = f"printf '#!/bin/sh\\nexec {serve}\\n' > made.sh && chmod +x made.sh"
    stack.write(
        {
            "setup": {"command": make, "shell": True, "oneshot": True},
            "app": {
                "command": "./made.sh",
                "depends_on": {"setup": "completed"},
                "ready": {"type": "tcp", "port": port},
            },
        }
    )
    refused = stack.run("up")
    assert refused.returncode == 1
    assert refused.stderr.startswith("svcorch: app: program ./made.sh not found (")
    assert not (stack.root / "made.sh").exists()  # setup never ran either

    # through the shell, the program is the shell's to find when it runs
    stack.write(
        {
            "setup": {"command": make, "shell": True, "oneshot": True},
            "app": {
                "command": "./made.sh",
                "shell": True,
                "depends_on": {"setup": "completed"},
                "ready": {"type": "tcp", "port": port},
            },
        }
    )
    assert "2 ready in" in stack.ok("up")
    assert port_open(port)


def test_an_unreadable_env_file_is_a_catalogue_error_before_the_preflight(stack: Stack) -> None:
    (stack.root / "conf.env").mkdir()  # a folder where a file belongs: unreadable as one
    stack.write({"worker": {"command": "celeryy worker"}}, env_file="conf.env")
    result = stack.run("up")
    assert result.returncode == 2
    assert result.stderr == f"{stack.file}:1:11: env_file 'conf.env': is a directory, not a file\n"
    assert stack.daemon_pid() is None or wait_until(lambda: stack.daemon_pid() is None)
