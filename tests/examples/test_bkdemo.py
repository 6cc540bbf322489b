"""The bk-monitor demo app, run for real: migrate, gunicorn, two workers and beat.

The e2e test uses the machine's Redis, MariaDB and RabbitMQ without changing them: a fresh
MySQL database, a Redis DB and key prefix of its own, prefixed RabbitMQ queues, and a private
influxd (tests.support.servers) on free ports. Everything it creates is removed afterwards;
every process it starts is stopped by its process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support import free_port, port_open, wait_until
from tests.support.servers import INFLUXD, private_influxd

DEMO = Path(__file__).resolve().parents[2] / "examples" / "bkmonitor"
BIN = Path(sys.executable).parent
REDIS_URL = "redis://127.0.0.1:6379/5"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"

# The readiness lines the catalogue's log probes use; this test proves they mean "ready".
READY = {
    "web": r"bkdemo web: worker \d+ loaded the app and is serving",
    "worker": r"\] monitor@\S+ ready\.",
    "worker-resource": r"\] resource@\S+ ready\.",
    "beat": r"beat: Acquired lock",
}

sys.path.insert(0, str(DEMO))
TASK = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


# ---------------------------------------------------------------- unit tests (no servers)


def test_event_validation_accepts_a_good_event_and_names_each_bad_field() -> None:
    from bkdemo.wsgi import BadRequest, parse_event

    good = b'{"metric": "cpu.usage", "value": 97, "severity": "critical"}'
    assert parse_event(good) == ("cpu.usage", 97.0, "critical", None)
    keyed = b'{"metric": "m", "value": 1, "severity": "info", "id": "%s"}' % TASK.encode()
    assert parse_event(keyed) == ("m", 1.0, "info", TASK)
    bad = {
        b"[1]": "JSON object",
        b"{": "not JSON",
        b'{"metric": "a b", "value": 1, "severity": "info"}': "metric",
        b'{"metric": "m", "value": true, "severity": "info"}': "value",
        b'{"metric": "m", "value": "1", "severity": "info"}': "value",
        b'{"metric": "m", "value": 1, "severity": "loud"}': "severity",
        b'{"metric": "m", "value": 1, "severity": "info", "x": 1}': "unknown fields: x",
        b'{"metric": "m", "value": 1, "severity": "info", "id": "1"}': "id must be a UUID",
    }
    for body, reason in bad.items():
        with pytest.raises(BadRequest, match=reason):
            parse_event(body)


def test_event_line_escapes_tag_values() -> None:
    from bkdemo.store import event_line

    line = event_line("disk used,root", "warning", 0.5, 1_700_000_000_000_000_000)
    assert line == r"events,metric=disk\ used\,root,severity=warning value=0.5 1700000000000000000"


def test_migrate_fails_with_one_line_when_mysql_is_unreachable() -> None:
    env = {**os.environ, "BKDEMO_MYSQL_PORT": str(free_port()), "BKDEMO_MYSQL_PASSWORD": "s3cret"}
    done = subprocess.run(
        [sys.executable, "-m", "bkdemo.migrate"],
        cwd=DEMO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("migrate: MySQL at 127.0.0.1:")
    assert "s3cret" not in done.stderr


HEALTHZ_ONCE = """
import json
from bkdemo.wsgi import app
statuses = []
body = app({"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz"}, lambda s, h: statuses.append(s))
print(json.dumps([statuses[0], json.loads(b"".join(body))]))
"""


def test_healthz_is_503_with_each_unreachable_server_named() -> None:
    env = {
        **os.environ,
        "BKDEMO_MYSQL_PORT": str(free_port()),
        "BKDEMO_AMQP_URL": f"amqp://guest:s3cret@127.0.0.1:{free_port()}//",
    }
    done = subprocess.run(
        [sys.executable, "-c", HEALTHZ_ONCE],
        cwd=DEMO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    status, body = json.loads(done.stdout)
    assert status == "503 Service Unavailable"
    assert body["status"] == "fail"
    assert body["reason"].startswith("mysql: (2003, ")
    assert "; broker: [Errno 111] Connection refused" in body["reason"]
    assert "s3cret" not in done.stdout + done.stderr


POST_ONCE = """
import io, json
from bkdemo.celery_app import app as celery
from bkdemo.wsgi import app
body = json.dumps({"metric": "m", "value": 1.5, "severity": "info"}).encode()
environ = {
    "REQUEST_METHOD": "POST", "PATH_INFO": "/events",
    "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
}
statuses = []
answer = json.loads(b"".join(app(environ, lambda s, h: statuses.append(s))))
confirmed = None
if statuses[0].startswith("202"):
    # the producer that published goes back to the pool and comes out again
    with celery.producer_pool.acquire() as producer:
        confirmed = producer.channel._confirm_selected
print(json.dumps([statuses[0], answer, confirmed]))
"""


def post_once(env: dict[str, str]) -> tuple[str, dict[str, Any], bool | None]:
    done = subprocess.run(
        [sys.executable, "-c", POST_ONCE],
        cwd=DEMO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    status, answer, confirmed = json.loads(done.stdout.splitlines()[-1])
    assert "s3cret" not in done.stdout + done.stderr
    return status, answer, confirmed


def test_an_event_is_503_not_500_while_the_broker_is_away() -> None:
    env = {**os.environ, "BKDEMO_AMQP_URL": f"amqp://guest:s3cret@127.0.0.1:{free_port()}//"}
    status, answer, _ = post_once(env)
    assert status == "503 Service Unavailable"
    assert answer["error"].startswith("broker unavailable: OperationalError: "), answer
    assert "Connection refused" in answer["error"]


def test_an_event_is_accepted_only_as_a_confirmed_persistent_message_on_a_durable_queue() -> None:
    import pika

    if not port_open(5672):
        pytest.skip("RabbitMQ is not listening on 127.0.0.1:5672")
    prefix = f"bkdemo-test-{uuid.uuid4().hex[:10]}-"
    env = {**os.environ, "BKDEMO_AMQP_URL": AMQP_URL, "BKDEMO_QUEUE_PREFIX": prefix}
    queue = f"{prefix}monitor"
    credentials = pika.PlainCredentials("guest", "guest")
    connection = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", 5672, "/", credentials)
    )
    try:
        status, answer, confirmed = post_once(env)
        assert status == "202 Accepted", answer
        assert confirmed is True  # the channel published in confirm mode: 202 came after the ack
        channel = connection.channel()
        # declaring it durable again fails (406 PRECONDITION_FAILED) unless it is durable
        channel.queue_declare(queue, durable=True)
        method, properties, _ = channel.basic_get(queue, auto_ack=True)
        assert method is not None, "no message on the queue"
        assert properties.delivery_mode == 2  # persistent
        assert answer["task_id"] in (properties.headers or {}).get("id", "")
    finally:
        channel = connection.channel()
        for name in (queue, f"{prefix}celery_resource", f"{prefix}celery"):
            channel.queue_delete(name)
            channel.exchange_delete(name)
        connection.close()


# ---------------------------------------------------------------- processes


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str]) -> Child:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=DEMO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def wait_for_line(self, child: Child, pattern: str, timeout: float = 60) -> None:
        regex = re.compile(pattern)

        def seen() -> bool:
            if child.proc.poll() is not None:
                raise AssertionError(f"{child.name} exited early:\n{child.text()}")
            return regex.search(child.text()) is not None

        wait_until(seen, timeout=timeout, message=f"{child.name} to log {pattern!r}")

    def stop_all(self, timeout: float = 20) -> dict[str, int]:
        """SIGTERM every group (newest first), one deadline, then SIGKILL what is left."""
        for child in reversed(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int] = {}
        for child in reversed(self.children):
            try:
                codes[child.name] = child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                codes[child.name] = child.proc.wait()
        # The leaders are gone; a group member left behind (a pool child) is killed too.
        for pid in leftovers({c.proc.pid for c in self.children}):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return codes


def leftovers(groups: set[int]) -> list[int]:
    """Live (non-zombie) processes still in one of our process groups."""
    found = []
    for process in psutil.process_iter(["pid", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(process.info["pid"]) in groups:
                found.append(process.info["pid"])
    return found


# ---------------------------------------------------------------- clients


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def mysql_rows(database: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    import pymysql

    with (
        pymysql.connect(host="127.0.0.1", user="root", database=database) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(query, args)
        return list(cursor.fetchall())


def influx_points(url: str, database: str, metric: str) -> list[list[Any]]:
    query = f"SELECT value, severity FROM events WHERE metric = '{metric}'"
    params = urllib.parse.urlencode({"db": database, "q": query})
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=5) as response:
        result = json.loads(response.read())["results"][0]
    series = result.get("series", [])
    return series[0]["values"] if series else []


def servers_missing() -> str | None:
    for port, name in ((6379, "Redis"), (3306, "MariaDB"), (5672, "RabbitMQ")):
        if not port_open(port):
            return f"{name} is not listening on 127.0.0.1:{port}"
    for tool in ("gunicorn", "celery"):
        if not (BIN / tool).exists():
            return f"{tool} is not installed in {BIN} (pip install -e '.[demo]')"
    if not Path(INFLUXD).exists():
        return "influxd is not installed"
    return None


def remove_server_state(suffix: str, database: str, queues: list[str]) -> None:
    import pika
    import pymysql
    import redis

    with pymysql.connect(host="127.0.0.1", user="root") as connection, connection.cursor() as c:
        c.execute(f"DROP DATABASE IF EXISTS `{database}`")
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"bkdemo-test-{suffix}:*"))
    if keys:
        client.delete(*keys)
    client.close()
    credentials = pika.PlainCredentials("guest", "guest")
    amqp = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672, "/", credentials))
    channel = amqp.channel()
    for queue in queues:
        # Celery declares a direct exchange named after each queue it creates.
        channel.queue_delete(queue)
        channel.exchange_delete(queue)
    amqp.close()


# ---------------------------------------------------------------- the end-to-end test


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    missing = servers_missing()
    if missing:
        pytest.skip(missing)
    suffix = uuid.uuid4().hex[:10]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BKDEMO_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        BKDEMO_MYSQL_HOST="127.0.0.1",
        BKDEMO_MYSQL_DB=f"bkdemo_test_{suffix}",
        BKDEMO_REDIS_URL=REDIS_URL,
        BKDEMO_AMQP_URL=AMQP_URL,
        BKDEMO_INFLUX_DB=f"bkdemo_test_{suffix}",
        BKDEMO_REFRESH_SECONDS="1",
        BKDEMO_QUEUE_PREFIX=f"bkdemo-test-{suffix}-",
        BKDEMO_KEY_PREFIX=f"bkdemo-test-{suffix}",
    )
    prefix = env["BKDEMO_QUEUE_PREFIX"]
    with private_influxd(tmp_path / "influx") as influx_url:
        env["BKDEMO_INFLUX_URL"] = influx_url
        result = Stack(tmp_path, env)
        try:
            yield result
        finally:
            result.stop_all()
            queues = [f"{prefix}monitor", f"{prefix}celery_resource"]
            remove_server_state(suffix, env["BKDEMO_MYSQL_DB"], queues)


@pytest.mark.e2e
def test_event_flows_from_web_through_worker_to_mysql_and_influx(stack: Stack) -> None:
    started = time.monotonic()
    env = stack.env
    prefix = env["BKDEMO_QUEUE_PREFIX"]
    database = env["BKDEMO_MYSQL_DB"]
    for attempt in ("first", "again"):
        done = subprocess.run(
            [sys.executable, "-m", "bkdemo.migrate"],
            cwd=DEMO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"migrate ({attempt}): {done.stderr}"

    port = free_port()
    # The catalogue's commands, with the queue names prefixed so this run has queues of its own.
    commands = {
        "web": f"gunicorn bkdemo.wsgi:app -w 2 -b 127.0.0.1:{port}",
        "worker": f"celery -A bkdemo.celery_app worker -Q {prefix}monitor --autoscale=6,1"
        " -n monitor@%h -l info",
        "worker-resource": f"celery -A bkdemo.celery_app worker -Q {prefix}celery_resource"
        " --autoscale=4,1 -n resource@%h -l info",
        "beat": "celery -A bkdemo.celery_app beat -S redbeat.RedBeatScheduler -l info",
    }
    children = {name: stack.spawn(name, shlex.split(command)) for name, command in commands.items()}
    for name, child in children.items():
        stack.wait_for_line(child, READY[name])
    base = f"http://127.0.0.1:{port}"
    assert http("GET", f"{base}/healthz") == (200, {"status": "ok", "mysql": "ok", "broker": "ok"})

    status, body = http("POST", f"{base}/events", {"metric": "m", "value": 1, "severity": "x"})
    assert status == 400
    assert "severity" in body["error"]

    metric = f"cpu.usage.{uuid.uuid4().hex[:6]}"
    status, body = http(
        "POST", f"{base}/events", {"metric": metric, "value": 97.5, "severity": "critical"}
    )
    assert status == 202, body
    task_id = body["task_id"]

    def alert_rows() -> list[tuple[Any, ...]]:
        return mysql_rows(
            database, "SELECT metric, value, severity FROM alerts WHERE task_id = %s", task_id
        )

    wait_until(alert_rows, timeout=30, message="the alert row in MySQL")
    assert alert_rows() == [(metric, 97.5, "critical")]

    # an event sent again with its id (a client retrying after a 503 or a timeout) is one
    # event: one row, one point, although the worker ran it three times
    again = f"{metric}.again"
    keyed = {"metric": again, "value": 1.0, "severity": "info", "id": str(uuid.uuid4())}
    for _ in range(3):
        assert http("POST", f"{base}/events", keyed) == (202, {"task_id": keyed["id"]})
    wait_until(
        lambda: children["worker"].text().count(f"Task record_event[{keyed['id']}] succeeded") == 3,
        timeout=30,
        message="the keyed event handled three times",
    )
    rows = mysql_rows(database, "SELECT COUNT(*) FROM alerts WHERE task_id = %s", keyed["id"])
    assert rows == [(1,)]
    assert len(influx_points(env["BKDEMO_INFLUX_URL"], env["BKDEMO_INFLUX_DB"], again)) == 1
    points = wait_until(
        lambda: influx_points(env["BKDEMO_INFLUX_URL"], env["BKDEMO_INFLUX_DB"], metric),
        timeout=30,
        message="the point in InfluxDB",
    )
    assert [p[1:] for p in points] == [[97.5, "critical"]]
    assert http("GET", f"{base}/events/{task_id}") == (
        200,
        {
            "task_id": task_id,
            "stored": True,
            "alert": {"metric": metric, "value": 97.5, "severity": "critical"},
        },
    )

    # Beat fires refresh_resources on the resource queue; a snapshot that counts our alert
    # proves the whole chain beat -> RabbitMQ -> resource worker -> MySQL after the event.
    def snapshot_with_alert() -> list[tuple[Any, ...]]:
        return mysql_rows(database, "SELECT by_severity FROM resource_snapshots WHERE total >= 1")

    snapshots = wait_until(snapshot_with_alert, timeout=30, message="a resource snapshot")
    assert json.loads(snapshots[0][0])["critical"] == 1
    # The routes hold: each queue's worker saw only its own task.
    assert "Task refresh_resources[" in children["worker-resource"].text()
    assert "Task refresh_resources[" not in children["worker"].text()
    assert f"Task record_event[{task_id}] succeeded" in children["worker"].text()

    groups = {c.proc.pid for c in stack.children}
    codes = stack.stop_all()
    assert leftovers(groups) == []
    # Every service stopped on SIGTERM alone, cleanly: nothing needed SIGKILL.
    assert {name: codes[name] for name in children} == dict.fromkeys(children, 0), codes
    assert "beat: Releasing lock" in children["beat"].text()
    print(f"bkdemo e2e: {time.monotonic() - started:.1f}s")
