"""`svcorch check` through the installed command: real servers, real listeners, real signals.

Catalogues live in a temp dir and point external services at the system's Redis, MariaDB
and RabbitMQ, a private InfluxDB, and TCP/HTTP listeners the test owns. Notifiers post to a
real HTTP receiver and run a real script.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import free_port, silent_tcp_server, wait_until
from tests.support.cli import SVCORCH, assert_clean, run_svcorch
from tests.support.http import webhook_receiver
from tests.support.servers import private_influxd

SECRET = "S3cr3t-pw!"
RECORDER = """\
import json, os, sys
event = json.load(sys.stdin)
env = {k: v for k, v in os.environ.items() if k.startswith("SVCORCH_") and k != "SVCORCH_TEST_RUN"}
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"event": event, "env": env}) + "\\n")
"""


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with private_influxd(tmp_path_factory.mktemp("influxd")) as url:
        yield url


def write_catalogue(
    folder: Path, services: dict[str, Any], notify: list[dict[str, Any]] | None = None
) -> None:
    external = {name: {"external": True, "ready": probe} for name, probe in services.items()}
    document: dict[str, Any] = {"version": 1, "services": external}
    if notify:
        document["notify"] = notify
    (folder / "services.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def table(stdout: str) -> dict[str, tuple[str, str, str]]:
    """service -> (probe, result, detail) from the rich table."""
    rows = {}
    for line in stdout.splitlines()[1:]:
        service, probe, result, latency, unit, *detail = line.split()
        assert unit == "ms" and float(latency) >= 0, line
        rows[service] = (probe, result, " ".join(detail))
    return rows


class Listener:
    """A loopback port the test owns: connections refused while closed, accepted while open."""

    def __init__(self) -> None:
        self.sock = self._bind(0)
        self.port: int = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    @staticmethod
    def _bind(port: int) -> socket.socket:
        # bound but not listening: the port stays ours and a connect is refused
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    def open(self) -> None:
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.stop.clear()
        self.thread = threading.Thread(target=self._accept, args=(self.sock,), daemon=True)
        self.thread.start()

    def _accept(self, sock: socket.socket) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = sock.accept()
                conn.close()

    def close(self) -> None:
        self._halt()
        self.sock = self._bind(self.port)

    def _halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        self.sock.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt()


class Running:
    """``svcorch ARGS`` in the background, its output collected line by line."""

    def __init__(self, *args: str, cwd: Path) -> None:
        assert SVCORCH is not None
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "SVCORCH_FILE")}
        self.process = subprocess.Popen(
            [SVCORCH, *args], cwd=cwd, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.out)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.err)),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[str], object], what: str, timeout: float = 10) -> str:
        def found() -> str | None:
            if self.process.poll() is not None and not any(map(predicate, self.out)):
                raise AssertionError(f"svcorch exited: {self.out} {self.err}")
            return next((line for line in self.out if predicate(line)), None)

        line = wait_until(found, timeout, what)
        assert isinstance(line, str)
        return line

    def finish(self, sig: int | None = None, timeout: float = 15) -> int:
        if sig is not None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        for reader in self.readers:
            reader.join()
        return code

    @property
    def stdout(self) -> str:
        return "\n".join(self.out)

    @property
    def stderr(self) -> str:
        return "\n".join(self.err)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.finish()


def timed(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run_svcorch(*args, cwd=cwd)
    took = time.monotonic() - started
    assert_clean(result)
    return result, took


# -- one round ---------------------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path, influxd: str) -> Iterator[Path]:
    """The four real servers, a TCP listener and an HTTP health page, all up."""
    with Listener() as listener, webhook_receiver() as page:
        listener.open()
        write_catalogue(
            tmp_path,
            {
                "redis": {"type": "redis", "url": "redis://127.0.0.1:6379/0"},
                "rabbitmq": {"type": "amqp", "url": "amqp://guest:guest@127.0.0.1:5672/"},
                "mariadb": {"type": "mysql", "user": "root"},
                "influxdb": {"type": "influxdb", "url": influxd},
                "web": {"type": "http", "url": f"{page.url}/healthz"},
                "api": {"type": "tcp", "port": listener.port},
            },
        )
        yield tmp_path


def test_all_passing_prints_a_table_and_exits_0(stack: Path) -> None:
    result, took = timed("check", cwd=stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split("\n", 1)[0].split() == [
        "SERVICE", "PROBE", "RESULT", "LATENCY", "DETAIL",
    ]  # fmt: skip
    rows = table(result.stdout)
    assert {name: row[:2] for name, row in rows.items()} == {
        "redis": ("redis", "ok"),
        "rabbitmq": ("amqp", "ok"),
        "mariadb": ("mysql", "ok"),
        "influxdb": ("influxdb", "ok"),
        "web": ("http", "ok"),
        "api": ("tcp", "ok"),
    }
    assert rows["redis"][2] == "PONG"
    assert rows["mariadb"][2].startswith("SELECT 1 ok")
    assert result.stderr == ""
    assert took < 5, took


def test_json_gives_one_object_per_service(stack: Path) -> None:
    result, _ = timed("check", "--json", cwd=stack)
    assert result.returncode == 0
    rows = json.loads(result.stdout)
    assert [r["service"] for r in rows] == [
        "redis",
        "rabbitmq",
        "mariadb",
        "influxdb",
        "web",
        "api",
    ]
    for row in rows:
        assert {"service", "probe", "ok", "latency_ms", "detail"} <= row.keys()
        assert row["ok"] is True and isinstance(row["detail"], str)
        assert isinstance(row["latency_ms"], float) and 0 <= row["latency_ms"] < 5000
    assert rows[0] | {"latency_ms": 0} == {
        "service": "redis",
        "probe": "redis",
        "target": "redis://127.0.0.1:6379/0",
        "ok": True,
        "latency_ms": 0,
        "detail": "PONG",
    }
    # the global --json works too
    assert json.loads(run_svcorch("--json", "check", "redis", cwd=stack).stdout)[0]["ok"]


def test_one_failing_probe_exits_1_and_the_others_are_still_shown(tmp_path: Path) -> None:
    closed = free_port()
    write_catalogue(
        tmp_path,
        {"redis": {"type": "redis"}, "gone": {"type": "tcp", "port": closed}},
    )
    result, _ = timed("check", cwd=tmp_path)
    assert result.returncode == 1
    assert table(result.stdout) == {
        "redis": ("redis", "ok", "PONG"),
        "gone": ("tcp", "FAIL", "Connection refused"),
    }
    rows = json.loads(run_svcorch("check", "--json", cwd=tmp_path).stdout)
    assert [(r["service"], r["ok"]) for r in rows] == [("redis", True), ("gone", False)]


def test_selected_services_only(stack: Path) -> None:
    result, _ = timed("check", "api", "redis", cwd=stack)
    assert result.returncode == 0
    assert list(table(result.stdout)) == ["redis", "api"]  # catalogue order


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "redsi"], "svcorch: unknown service 'redsi' (did you mean 'redis'?)"),
        (["check", "worker"], "svcorch: no readiness probe to check for 'worker'"),
        (["check", "--timeout", "5s"], "svcorch: --timeout goes with --wait"),
        (["check", "--interval", "5s"], "svcorch: --interval goes with --watch"),
        (["check", "--wait", "--watch"], "svcorch: choose one of --wait and --watch"),
        (["check", "--watch", "--interval", "0s"], "svcorch: --interval must be more than 0"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "services.yaml").write_text(
        "version: 1\nservices:\n"
        "  redis: {external: true, ready: {type: redis}}\n"
        "  worker: {command: sleep 1}\n"
    )
    result, _ = timed(*args, cwd=tmp_path)
    assert (result.returncode, result.stderr.splitlines(), result.stdout) == (2, [message], "")


def test_a_catalogue_error_exits_2_with_the_located_problem(tmp_path: Path) -> None:
    (tmp_path / "services.yaml").write_text(
        "version: 1\nservices:\n  redis: {external: true, ready: {type: redis, prot: 1}}\n"
    )
    result, _ = timed("check", cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("services.yaml:3:"), line
    assert "prot" in line and result.stdout == ""


def test_probes_run_in_parallel_wall_time_is_the_slowest_not_the_sum(tmp_path: Path) -> None:
    kinds = ["redis", "mysql", "amqp", "influxdb", "http"]
    with contextlib.ExitStack() as servers:
        ports = [servers.enter_context(silent_tcp_server()) for _ in kinds]
        probes: dict[str, Any] = {}
        for kind, port in zip(kinds, ports, strict=True):
            probe = {"type": kind, "attempt_timeout": "1s"}
            if kind in ("influxdb", "http"):
                probe["url"] = f"http://127.0.0.1:{port}"
            else:
                probe["port"] = port
            probes[f"silent-{kind}"] = probe
        write_catalogue(tmp_path, probes)
        result, took = timed("check", "--json", cwd=tmp_path)
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert [r["ok"] for r in rows] == [False] * len(kinds)
    latencies = [r["latency_ms"] / 1000 for r in rows]
    # every probe really waited out its attempt timeout...
    assert all(0.95 <= latency < 1.2 for latency in latencies), rows
    # ...and they waited at the same time (the wall time includes interpreter start-up)
    assert took < 0.6 * sum(latencies), (took, latencies)


# -- --wait ------------------------------------------------------------------------------------


def test_wait_passes_once_a_late_service_comes_up(tmp_path: Path) -> None:
    with Listener() as late, webhook_receiver(answers=[503] * 10_000) as page:
        write_catalogue(
            tmp_path,
            {
                "web": {"type": "http", "url": f"{page.url}/healthz", "period": "100ms"},
                "late": {"type": "tcp", "port": late.port, "period": "100ms"},
            },
        )
        with Running("check", "--wait", "--timeout", "20s", "--json", cwd=tmp_path) as check:
            # the page says 503 until the wait has asked three times; the port opens then
            wait_until(lambda: page.gets() >= 3, 10, "three health requests")
            assert check.process.poll() is None
            with page.lock:
                page.answers.clear()
            late.open()
            assert check.finish() == 0, check.stderr
    rows = json.loads(check.stdout)
    assert [(r["service"], r["ok"]) for r in rows] == [("web", True), ("late", True)]
    assert page.gets() >= 4


def test_wait_for_a_service_that_never_comes_gives_up_at_the_timeout(tmp_path: Path) -> None:
    with Listener() as never:
        write_catalogue(tmp_path, {"never": {"type": "tcp", "port": never.port}})
        result, took = timed("check", "--wait", "--timeout", "1s", "--json", cwd=tmp_path)
    assert result.returncode == 1
    [row] = json.loads(result.stdout)
    assert re.fullmatch(
        rf"tcp probe tcp://127\.0\.0\.1:{never.port}: gave up after 1\.\ds: Connection refused",
        row["detail"],
    ), row
    assert 1.0 <= row["latency_ms"] / 1000 < 1.5
    assert 1.0 <= took < 4, took


def test_wait_ends_at_once_on_a_fatal_error_with_the_servers_words(tmp_path: Path) -> None:
    write_catalogue(
        tmp_path, {"db": {"type": "mysql", "user": "root", "password": "wrong-password"}}
    )
    result, took = timed("check", "--wait", "--timeout", "60s", cwd=tmp_path)
    assert result.returncode == 1
    [(probe, verdict, detail)] = table(result.stdout).values()
    assert (probe, verdict) == ("mysql", "FAIL")
    assert re.match(
        r"mysql probe mysql://root:\*\*\*@127\.0\.0\.1:3306/: fatal after 0\.\d\ds: "
        r"MySQL error 1045: Access denied for user 'root'@'127\.0\.0\.1' \(using password: YES\)",
        detail,
    ), detail
    assert "wrong-password" not in result.stdout
    assert took < 3, took


def test_ctrl_c_ends_a_wait_at_once_with_130(tmp_path: Path) -> None:
    with webhook_receiver(answers=[503] * 10_000) as page:
        write_catalogue(tmp_path, {"web": {"type": "http", "url": page.url, "period": "50ms"}})
        with Running("check", "--wait", "--timeout", "60s", cwd=tmp_path) as check:
            wait_until(lambda: page.gets() >= 1, 10, "the wait to begin")
            started = time.monotonic()
            code = check.finish(signal.SIGINT)
    assert code == 130
    assert time.monotonic() - started < 2
    [(_, verdict, detail)] = table(check.stdout).values()
    assert verdict == "FAIL" and " cancelled after " in detail, detail
    assert check.err == ["svcorch: interrupted"]


# -- --watch -----------------------------------------------------------------------------------


def test_watch_notifies_failing_and_recovered_and_survives_failing_notifiers(
    tmp_path: Path,
) -> None:
    (tmp_path / "record.py").write_text(RECORDER)
    closed = free_port()
    recorded = tmp_path / "got.jsonl"
    with Listener() as flappy, Listener() as steady, webhook_receiver() as receiver:
        flappy.open()
        steady.open()
        write_catalogue(
            tmp_path,
            {
                "flappy": {"type": "tcp", "port": flappy.port},
                "steady": {"type": "tcp", "port": steady.port},
            },
            notify=[
                {"type": "webhook", "url": f"{receiver.url}/alerts"},
                {"type": "exec", "command": [sys.executable, "record.py", "got.jsonl"]},
                {"type": "webhook", "url": f"http://127.0.0.1:{closed}/alerts", "retries": 1},
                {"type": "exec", "command": "echo pager down >&2; exit 1", "shell": True,
                 "retries": 1},
            ],
        )  # fmt: skip
        with Running("check", "--watch", "--interval", "200ms", cwd=tmp_path) as watch:
            watch.wait_for(lambda line: "round 2: 2/2 ok" in line, "two good rounds")
            flappy.close()
            watch.wait_for(lambda line: "flappy failing: Connection refused" in line, "failing")
            wait_until(lambda: len(receiver.posts()) == 1, 10, "the failing event")
            flappy.open()
            watch.wait_for(lambda line: "flappy recovered" in line, "recovered")
            wait_until(lambda: len(receiver.posts()) == 2, 10, "the recovered event")
            wait_until(lambda: watch.stdout.count("gave up after 2 attempts") == 4, 10, "gave up")
            wait_until(lambda: len(recorded.read_text().splitlines()) == 2, 10, "exec runs")
            code = watch.finish(signal.SIGINT)

    assert code == 130
    assert_clean(subprocess.CompletedProcess([], code, watch.stdout, watch.stderr))
    assert re.fullmatch(r"svcorch: watch stopped by SIGINT after \d+ rounds", watch.stderr)
    # the first rounds were all ok: nothing to say about them
    failing, recovered = receiver.posts()
    common = {"service": "flappy", "probe": "tcp", "target": f"tcp://127.0.0.1:{flappy.port}"}
    assert failing.items() >= ({"event": "failing", "ok": False, "previous": True} | common).items()
    assert failing["detail"] == "Connection refused"
    assert (
        recovered.items()
        >= ({"event": "recovered", "ok": True, "previous": False} | common).items()
    )
    assert failing["catalogue"] == str(tmp_path / "services.yaml")
    assert failing["host"] == socket.gethostname()
    assert isinstance(failing["time"], float) and failing["time"] <= recovered["time"]
    runs = [json.loads(line) for line in recorded.read_text().splitlines()]
    assert [run["event"] for run in runs] == [failing, recovered]
    assert runs[0]["env"] | {"SVCORCH_TIME": ""} == {
        "SVCORCH_EVENT": "failing", "SVCORCH_SERVICE": "flappy", "SVCORCH_PROBE": "tcp",
        "SVCORCH_TARGET": f"tcp://127.0.0.1:{flappy.port}", "SVCORCH_OK": "0",
        "SVCORCH_DETAIL": "Connection refused", "SVCORCH_TIME": "",
        "SVCORCH_CATALOGUE": str(tmp_path / "services.yaml"), "SVCORCH_HOST": socket.gethostname(),
    }  # fmt: skip
    # failing notifiers: every attempt reported with its error, retried, then given up...
    out = watch.stdout
    for event in ("failing", "recovered"):
        hook = f"notifying webhook http://127.0.0.1:{closed}/alerts about flappy {event} failed"
        assert f"{hook} (attempt 1): Connection refused; retry in 0.5s" in out
        assert f"{hook}, gave up after 2 attempts: Connection refused" in out
        script = f"notifying exec echo about flappy {event} failed"
        assert f"{script} (attempt 1): exited 1: pager down; retry in 0.5s" in out
        assert f"{script}, gave up after 2 attempts: exited 1: pager down" in out
        assert f"notified webhook {receiver.url}/alerts about flappy {event}" in out
    # ...while the rounds went on
    numbers = [int(n) for n in re.findall(r"round (\d+): ", out)]
    assert numbers == list(range(1, len(numbers) + 1))
    first_failure = next(i for i, line in enumerate(watch.out) if "(attempt 1)" in line)
    recovered_round = next(i for i, line in enumerate(watch.out) if "flappy recovered" in line)
    assert first_failure < recovered_round


def test_watch_reports_a_service_already_failing_in_its_first_round_and_sigterm_is_143(
    tmp_path: Path,
) -> None:
    closed = free_port()
    with webhook_receiver() as receiver:
        write_catalogue(
            tmp_path,
            {"redis": {"type": "redis"}, "down": {"type": "tcp", "port": closed}},
            notify=[{"type": "webhook", "url": receiver.url}],
        )
        with Running("check", "--watch", "--interval", "10m", "--json", cwd=tmp_path) as watch:
            wait_until(lambda: receiver.posts(), 10, "the first round's event")
            watch.wait_for(lambda line: '"delivery"' in line, "the delivery report")
            started = time.monotonic()
            code = watch.finish(signal.SIGTERM)  # during the 10-minute pause
    assert code == 143
    assert time.monotonic() - started < 2
    assert watch.err == ["svcorch: watch stopped by SIGTERM after 1 round"]
    [event] = receiver.posts()
    assert (event["service"], event["event"], event["previous"]) == ("down", "failing", None)
    first, delivery = (json.loads(line) for line in watch.out)
    assert first["round"] == 1
    assert [(r["service"], r["ok"]) for r in first["results"]] == [("redis", True), ("down", False)]
    assert first["changes"] == [event]
    assert delivery == {
        "delivery": {
            "notifier": f"webhook {receiver.url}",
            "service": "down",
            "event": "failing",
            "ok": True,
            "attempts": 1,
            "detail": "sent",
            "retry_in": None,
        }
    }


def test_watch_with_nothing_to_probe_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "services.yaml").write_text("version: 1\nservices:\n  w: {command: sleep 1}\n")
    result, _ = timed("check", "--watch", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "svcorch: nothing to watch: no selected service has a readiness probe\n"


# -- secrets -----------------------------------------------------------------------------------


def test_no_password_from_the_catalogue_appears_anywhere(tmp_path: Path) -> None:
    (tmp_path / "record.py").write_text(RECORDER)
    closed = free_port()

    def echo_headers(request: Any) -> bytes:
        # a careless health page that echoes what it was sent
        return json.dumps(request.headers).encode()

    with webhook_receiver(answers=[500] * 10_000, get_body=echo_headers) as page, \
            webhook_receiver() as receiver:  # fmt: skip
        userinfo = f"alert:{SECRET}@{receiver.url.removeprefix('http://')}"
        write_catalogue(
            tmp_path,
            {
                "db": {"type": "mysql", "user": "root", "password": SECRET},
                "mq": {"type": "amqp", "url": f"amqp://guest:{SECRET}@127.0.0.1:5672/"},
                "cache": {"type": "redis", "url": f"redis://:{SECRET}@127.0.0.1:6379/0"},
                "api": {"type": "http", "url": page.url, "headers": {"X-Api-Key": SECRET}},
            },
            notify=[
                {"type": "webhook", "url": f"http://{userinfo}/hook",
                 "headers": {"X-Api-Key": SECRET}},
                {"type": "webhook", "url": f"http://alert:{SECRET}@127.0.0.1:{closed}/",
                 "retries": 1},
                {"type": "exec", "command": [sys.executable, "record.py", "got.jsonl"]},
                # a pager command that takes a URL with the password, and echoes it when it fails
                {"type": "exec", "retries": 0, "command": [
                    "/bin/sh", "-c", 'echo "cannot reach $0" >&2; exit 1',
                    f"https://u:{SECRET}@pager.example/"]},
            ],
        )  # fmt: skip
        seen: list[str] = []
        for args in (
            ["check"],
            ["check", "--json"],
            ["check", "--wait", "--timeout", "1s"],
            ["config"],
            ["config", "--json"],
        ):
            result = run_svcorch(*args, cwd=tmp_path)
            assert result.returncode in (0, 1), result.stderr
            seen += [result.stdout, result.stderr]
        with Running("check", "--watch", "--interval", "200ms", cwd=tmp_path) as watch:
            wait_until(lambda: len(receiver.posts()) == 4, 10, "four failing events")
            wait_until(lambda: watch.stdout.count("gave up") == 8, 10, "the failed deliveries")
            assert watch.finish(signal.SIGINT) == 130
        seen += [watch.stdout, watch.stderr]
        if os.environ.get("SHOW_CHECK_OUTPUT"):
            print("\n=====\n".join(seen))
        seen += [request.body.decode() for request in receiver.requests]
        seen.append((tmp_path / "got.jsonl").read_text())
        # the password was used: sent as basic auth and as the api key
        assert receiver.requests[0].headers["X-Api-Key"] == SECRET
        assert "Basic " in receiver.requests[0].headers["Authorization"]

    everything = "\n".join(seen)
    assert "Access denied" in everything and "ACCESS_REFUSED" in everything
    assert "cannot reach" in everything
    for spelling in (SECRET, SECRET.replace("!", "%21"), "S3cr3t"):
        assert spelling not in everything
