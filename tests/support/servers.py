"""Private server instances for tests: own data dir, loopback, free ports, stopped by PID.

Each server is a child in its own session, started per ../shared/SERVERS.md, waited for by
polling (never a fixed sleep) and stopped with SIGTERM, then SIGKILL if it lingers. The
system-wide servers on the standard ports are never touched.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port, port_open

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


class ServerFailed(AssertionError):
    """A private server exited or never became ready; carries the tail of its log."""


@dataclass(frozen=True)
class Server:
    """A running private server: its process, its log, and how to reach it."""

    process: subprocess.Popen[bytes]
    log_path: Path
    port: int

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports, each free a moment ago and bind-tested."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _spawn(argv: list[str], workdir: Path, env: dict[str, str], port: int) -> Server:
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(process, log_path, port)


def _wait_ready(server: Server, ready: Callable[[], bool], what: str) -> None:
    """Poll ``ready`` fast-then-slow; fail with the server's log if it exits or times out."""
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.005
    while True:
        if server.process.poll() is not None:
            raise ServerFailed(
                f"{what} exited with {server.process.returncode} before it was ready:\n"
                f"{server.log_tail()}"
            )
        if ready():
            # a stale server on the same port would also answer: ours must still be alive
            if server.process.poll() is None:
                return
            continue
        if time.monotonic() >= deadline:
            raise ServerFailed(f"{what} not ready after {START_TIMEOUT}s:\n{server.log_tail()}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def stop(server: Server) -> None:
    """SIGTERM the server's group, wait, SIGKILL what is left. Only our own PID's group."""
    process = server.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    else:
        process.wait()


def _clean_env(*prefixes: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


INFLUXDB_CONF = """\
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{dir}/meta"
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  auth-enabled = {auth}
"""


def _influx_pings(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=0.5) as response:
            return bool(response.status == 204)
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def private_influxd(workdir: Path, *, auth: bool = False) -> Iterator[str]:
    """A private InfluxDB 1.x on free loopback ports (HTTP and RPC); yields its base URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, rpc_port = free_ports(2)
    config = workdir / "influxdb.conf"
    config.write_text(
        INFLUXDB_CONF.format(
            dir=workdir, http_port=http_port, rpc_port=rpc_port, auth=str(auth).lower()
        )
    )
    argv = [INFLUXD, "run", "-config", str(config), "-pidfile", str(workdir / "influxd.pid")]
    # INFLUXDB_* variables would override the config file
    server = _spawn(argv, workdir, _clean_env("INFLUXDB_"), http_port)
    url = f"http://127.0.0.1:{http_port}"
    try:
        _wait_ready(server, lambda: _influx_pings(url), "influxd")
        yield url
    finally:
        stop(server)


def influx_query(url: str, query: str, *, auth: tuple[str, str] | None = None) -> None:
    """Run one InfluxQL statement (CREATE DATABASE, CREATE USER ...) through POST /query."""
    data = urllib.parse.urlencode({"q": query}).encode()
    request = urllib.request.Request(f"{url}/query", data=data, method="POST")
    if auth is not None:
        pair = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {pair}")
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def _redis_answers(port: int) -> bool:
    """Any RESP reply to PING (PONG or NOAUTH) means the server is serving."""
    if not port_open(port):
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+", b"-"))
    except OSError:
        return False


@contextlib.contextmanager
def private_redis(workdir: Path, *, password: str | None = None) -> Iterator[int]:
    """A private redis-server on a free loopback port, optionally with ``requirepass``."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
        "--pidfile", "",
    ]  # fmt: skip
    if password is not None:
        argv += ["--requirepass", password]
    server = _spawn(argv, workdir, dict(os.environ), port)
    try:
        _wait_ready(server, lambda: _redis_answers(port), "redis-server")
        yield port
    finally:
        stop(server)
