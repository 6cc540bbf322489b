"""The README's main job, for real: the shipped services.yaml brings up private RabbitMQ, Redis,
MariaDB and InfluxDB, migrate, gunicorn, two Celery workers and Beat — gated by the native
probes — and svcorch supervises, restarts and stops them with nothing left behind.

Ports come from the catalogue's ``${VAR:-default}`` variables, overridden with free ports so
the test never meets a developer's own stack; the state dir is short because MariaDB's socket
path must stay under 108 bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pymysql
import pytest

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
SVCORCH = shutil.which("svcorch", path=os.path.dirname(sys.executable)) or "svcorch"
PORT_VARIABLES = (
    "REDIS_PORT",
    "AMQP_PORT",
    "AMQP_DIST_PORT",
    "EPMD_PORT",
    "MYSQL_PORT",
    "INFLUX_PORT",
    "INFLUX_RPC_PORT",
    "WEB_PORT",
)

pytestmark = pytest.mark.e2e


class Stack:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.ports = {name: free_port() for name in PORT_VARIABLES}
        self.env = {
            **os.environ,
            **{k: str(v) for k, v in self.ports.items()},
            "BKDEMO_REFRESH_SECONDS": "1",
        }

    def run(
        self, *args: str, check: bool = True, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [SVCORCH, "-f", str(ROOT / "services.yaml"), "--state-dir", str(self.state_dir), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        if check:
            assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result

    def status(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(self.run("status", "--json").stdout)
        return {row["service"]: row for row in rows}

    def mysql(self) -> pymysql.connections.Connection:
        return pymysql.connect(
            host="127.0.0.1",
            port=self.ports["MYSQL_PORT"],
            user="root",
            password="",
            database="bkdemo",
            connect_timeout=2,
        )

    def count(self, sql: str, *params: object) -> int:
        with self.mysql() as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
            return int(row[0]) if row else 0

    def post_event(self, metric: str) -> str:
        body = json.dumps({"metric": metric, "value": 97.5, "severity": "critical"}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports['WEB_PORT']}/events",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 202
            task_id: str = json.loads(response.read())["task_id"]
            return task_id

    def influx_points(self, metric: str) -> int:
        query = urllib.parse.urlencode(
            {"db": "bkdemo", "q": f"SELECT count(value) FROM events WHERE metric='{metric}'"}
        )
        url = f"http://127.0.0.1:{self.ports['INFLUX_PORT']}/query?{query}"
        with urllib.request.urlopen(url, timeout=5) as response:
            series = json.loads(response.read())["results"][0].get("series") or []
        return int(series[0]["values"][0][1]) if series else 0

    def processes(self) -> list[psutil.Process]:
        """Every process that carries this stack's state dir in its environment."""
        mine = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("SVCORCH_STATE_DIR") == str(self.state_dir):
                    mine.append(proc)
            except (psutil.Error, OSError):
                continue
        return mine


@pytest.fixture
def stack() -> Iterator[Stack]:
    state_dir = Path(tempfile.mkdtemp(prefix="svs", dir="/tmp"))
    stack = Stack(state_dir)
    try:
        yield stack
    finally:
        stack.run("down", "--timeout", "10s", check=False)
        for proc in stack.processes():  # only if down failed; the test fails anyway below
            proc.kill()
        shutil.rmtree(state_dir, ignore_errors=True)


def test_shipped_stack_runs_supervises_and_stops_clean(stack: Stack) -> None:
    # the README's first command, as written (SVCORCH_STATE_DIR and the port variables keep
    # it off a developer's own stack)
    started = time.monotonic()
    up = subprocess.run(
        [str(ROOT / "scripts" / "up")],
        capture_output=True,
        text=True,
        env={**stack.env, "SVCORCH_STATE_DIR": str(stack.state_dir)},
        timeout=600,
        check=False,
    )
    cold = time.monotonic() - started
    assert up.returncode == 0, up.stdout + up.stderr
    assert "11 ready" in up.stdout, up.stdout
    assert "Traceback" not in up.stdout + up.stderr

    status = stack.status()
    assert {row["state"] for row in status.values()} <= {"ready", "completed"}, status
    assert status["mariadb-init"]["state"] == "completed"
    assert status["migrate"]["state"] == "completed"

    checked = json.loads(stack.run("check", "--json").stdout)
    assert all(row["ok"] for row in checked), checked
    assert {row["probe"] for row in checked} >= {
        "redis",
        "amqp",
        "mysql",
        "influxdb",
        "http",
        "log",
    }

    dot = stack.run("graph", "--dot").stdout
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True
    ).stdout
    assert "<svg" in svg and "worker" in svg

    # an event goes web -> RabbitMQ -> worker -> MySQL and InfluxDB, posted as the README does
    posted = subprocess.run(
        [
            "curl",
            "-s",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"metric": "cpu", "value": 97.5, "severity": "critical"}',
            f"http://127.0.0.1:{stack.ports['WEB_PORT']}/events",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    task_id = json.loads(posted.stdout)["task_id"]
    wait_until(
        lambda: stack.count("SELECT COUNT(*) FROM alerts WHERE task_id=%s", task_id),
        timeout=30,
        message="the alert row in MySQL",
    )
    wait_until(lambda: stack.influx_points("cpu") >= 1, timeout=30, message="the point in InfluxDB")
    assert task_id in stack.run("logs", "worker", "-n", "200").stdout

    # Beat (RedBeat) fires refresh_resources on the celery_resource queue every second
    snapshots = stack.count("SELECT COUNT(*) FROM resource_snapshots")
    wait_until(
        lambda: stack.count("SELECT COUNT(*) FROM resource_snapshots") > snapshots,
        timeout=30,
        message="a periodic refresh_resources snapshot",
    )

    # kill -9 the monitor worker: svcorch restarts it through the readiness gate
    old_pid = status["worker"]["pid"]
    os.killpg(old_pid, signal.SIGKILL)
    wait_until(
        lambda: (
            (row := stack.status()["worker"])["state"] == "ready"
            and row["pid"] not in (None, old_pid)
        ),
        timeout=60,
        message="the worker restarted and ready",
    )
    assert stack.status()["worker"]["restarts"] == 1
    second = stack.post_event("mem")
    wait_until(
        lambda: stack.count("SELECT COUNT(*) FROM alerts WHERE task_id=%s", second),
        timeout=30,
        message="the restarted worker handling an event",
    )

    analysis = json.loads(stack.run("analyze", "--json").stdout)
    assert analysis["critical_chain"], analysis

    started = time.monotonic()
    stack.run("down")
    down = time.monotonic() - started
    assert [p.cmdline() for p in stack.processes()] == []
    for port in stack.ports.values():
        assert not any(
            c.laddr.port == port and c.status == psutil.CONN_LISTEN
            for c in psutil.net_connections(kind="tcp")
        )

    # a second up reuses the data: the alerts are still there
    started = time.monotonic()
    stack.run("up")
    warm = time.monotonic() - started
    assert stack.count("SELECT COUNT(*) FROM alerts WHERE task_id=%s", task_id) == 1
    stack.run("down")
    assert [p.cmdline() for p in stack.processes()] == []
    print(f"\nshipped stack: cold up {cold:.2f}s, warm up {warm:.2f}s, down {down:.2f}s")
