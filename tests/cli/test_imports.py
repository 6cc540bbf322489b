"""Commands that talk to no server never import a server's client library.

A probe imports its client inside its own attempt, so ``svcorch --help`` and drawing a graph
that uses every probe type stay fast and work where a client is broken or missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

CLIENTS = ("redis", "pika", "pymysql", "influxdb_client")
REPO = Path(__file__).resolve().parents[2]

EVERY_PROBE = """
version: 1
services:
  tcp: {command: x, ready: {type: tcp, port: 1}}
  http: {command: x, ready: {type: http, url: "http://127.0.0.1:1/"}}
  exec: {command: x, ready: {type: exec, command: "true"}}
  log: {command: x, ready: {type: log, pattern: ready}}
  redis: {command: x, ready: {type: redis, port: 6379}}
  amqp: {command: x, ready: {type: amqp, port: 5672, password: guest}}
  mysql: {command: x, ready: {type: mysql, port: 3306, password: pw}}
  influxdb: {command: x, ready: {type: influxdb, url: "http://127.0.0.1:8086"}}
  app:
    command: x
    depends_on: [tcp, http, exec, log, redis, amqp, mysql, influxdb]
    liveness: {type: redis, port: 6379}
"""

# runs each command in one interpreter, noting which client modules each one left loaded
PROBE_SCRIPT = """
import contextlib, io, json, sys
from svcorch.cli import run

clients = {clients!r}
report = {{}}
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = run(argv)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in clients)
    report[" ".join(argv)] = [code, loaded]
print(json.dumps(report))
"""


def imported_clients(commands: list[list[str]], cwd: Path) -> dict[str, list[object]]:
    script = PROBE_SCRIPT.format(clients=CLIENTS)
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(commands)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, list[object]] = json.loads(done.stdout.splitlines()[-1])
    return report


def test_help_and_graph_dot_import_no_client_library(tmp_path: Path) -> None:
    (tmp_path / "services.yaml").write_text(textwrap.dedent(EVERY_PROBE))
    report = imported_clients(
        [
            ["--help"],
            ["graph", "--dot"],
            ["graph", "--mermaid"],
            ["validate"],
            ["up", "--dry-run"],
            ["config"],
        ],
        tmp_path,
    )
    assert report == {
        "--help": [0, []],
        "graph --dot": [0, []],
        "graph --mermaid": [0, []],
        "validate": [0, []],
        "up --dry-run": [0, []],
        "config": [0, []],
    }


def test_the_shipped_catalogue_draws_without_client_libraries() -> None:
    assert imported_clients([["graph", "--dot"], ["up", "--dry-run"]], REPO) == {
        "graph --dot": [0, []],
        "up --dry-run": [0, []],
    }


# what the light path (svcorch.cli_light) must never load on the way to a daemon's answer
HEAVY = ("typer", "click", "pydantic", "networkx", "yaml", "svcorch.model", "svcorch.probes")

LIGHT_SCRIPT = """
import contextlib, io, json, sys
from svcorch.cli_light import run

out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = run(sys.argv[1:])
heavy = {heavy!r}
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
print(json.dumps([code, loaded, out.getvalue()]))
"""

FULL_STATUS = "import sys; from svcorch.cli import run; sys.exit(run(['status', '--json']))"


def without_clock(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in row.items() if k not in ("uptime",)} for row in rows]


SLEEPER = """
version: 1
services:
  sleeper: {command: sleep 300, ready: {type: tcp, port: 1, timeout: 1s}}
  idle: {command: sleep 300}
"""


def light(argv: list[str], cwd: Path) -> list[object]:
    done = subprocess.run(
        [sys.executable, "-c", LIGHT_SCRIPT.format(heavy=HEAVY), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: list[object] = json.loads(done.stdout.splitlines()[-1])
    return report


def test_status_restart_down_with_a_daemon_import_neither_typer_nor_pydantic_nor_networkx(
    tmp_path: Path,
) -> None:
    from tests.support.cli import run_svcorch

    (tmp_path / "services.yaml").write_text(textwrap.dedent(SLEEPER))
    # no daemon: the light path hands over to the full CLI (None), having loaded nothing heavy
    assert light(["status"], tmp_path)[:2] == [None, []]
    started = run_svcorch("up", "idle", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    try:
        code, loaded, out = light(["status", "idle", "--json"], tmp_path)
        assert (code, loaded) == (0, [])
        assert '"state": "ready"' in str(out)
        code, loaded, out = light(["status"], tmp_path)
        assert (code, loaded) == (0, [])
        assert "idle" in str(out) and "sleeper" in str(out)
        # a form the light path does not serve goes to the full CLI untouched
        assert light(["status", "--verbose-unknown"], tmp_path)[0] is None
        assert light(["-v", "status"], tmp_path)[0] is None
        # the same rows as the typer app's status, but for the clock
        full = subprocess.run(
            [sys.executable, "-c", FULL_STATUS],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert full.returncode == 0, full.stderr
        code, loaded, out = light(["status", "--json"], tmp_path)
        assert without_clock(json.loads(str(out))) == without_clock(json.loads(full.stdout))
        code, loaded, out = light(["restart", "idle"], tmp_path)
        assert (code, loaded) == (0, [])
        assert "1 restarted" in str(out)
        code, loaded, out = light(["down"], tmp_path)
        assert (code, loaded) == (0, [])
        assert "1 stopped" in str(out)
    finally:
        stopped = run_svcorch("down", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr


def test_the_console_script_enters_by_the_light_path() -> None:
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "svcorch"]
    assert script.value == "svcorch.cli_light:main"
