"""A soak of the shipped stack: events POSTed to the demo's web while services are killed -9.

Shared by the bounded CI test (tests/reliability/test_soak.py) and the long command
(benchmarks/soak.py). The stack is the repository's own services.yaml, run by the installed
``svcorch`` with free ports and a short state dir of its own (MariaDB's socket path must stay
under 108 bytes); only processes of this stack are ever signalled, each by its pid.

What a run establishes, from the outside and from svcorch's own records:

- accepted / lost / duplicated: every event the web answered 202 for is a row in MySQL's
  ``alerts`` exactly once (by task id) once the workers caught up;
- recovery per kill: from the kill to the service being ready again (its ``ready_at`` in
  state.json; for a gunicorn worker, the master's pool full again and /healthz answering);
- no dependent started while a dependency was down: daemon.log's transitions replayed
  against the catalogue's edges (tests.support.replay);
- the daemon's RSS before and after.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.support import free_port
from tests.support.replay import (
    Transition,
    edges_of,
    starts_while_down,
    transitions_from_daemon_log,
)

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "services.yaml"
SVCORCH = str(Path(sys.executable).with_name("svcorch"))
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
SETTLED = {"ready", "completed"}
RECEIVED = re.compile(r"Task record_event\[([0-9a-f-]{36})\] received")
MIB = 1024 * 1024


class SoakFailed(AssertionError):
    """The stack did not do what it must; the message says what and shows the evidence."""


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> Any:
    """Poll ``condition`` fast-then-slow until truthy; SoakFailed at ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise SoakFailed(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


class ShippedStack:
    """services.yaml on free ports in a fresh state dir, driven through the real command."""

    def __init__(self) -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix="svsoak", dir="/tmp"))
        self.ports = {name: free_port() for name in PORT_VARIABLES}
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SVCORCH_")},
            **{k: str(v) for k, v in self.ports.items()},
            "BKDEMO_REFRESH_SECONDS": "2",
        }
        if "SVCORCH_TEST_RUN" in os.environ:  # the test suite's leak marker reaches the daemon
            self.env["SVCORCH_TEST_RUN"] = os.environ["SVCORCH_TEST_RUN"]

    # -- the command ------------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SVCORCH, "-f", str(CATALOGUE), "--state-dir", str(self.state_dir), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, timeout: float = 300) -> str:
        result = self.run(*args, timeout=timeout)
        if result.returncode != 0:
            raise SoakFailed(f"svcorch {' '.join(args)}: {result.stdout}\n{result.stderr}")
        return result.stdout

    def status(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(self.ok("status", "--json"))
        return {row["service"]: row for row in rows}

    def records(self) -> dict[str, dict[str, Any]]:
        document = json.loads((self.state_dir / "state.json").read_text())
        return {entry["name"]: entry for entry in document["services"]}

    def daemon_log(self) -> str:
        path = self.state_dir / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def transitions(self) -> list[Transition]:
        return transitions_from_daemon_log(self.daemon_log())

    def daemon(self) -> psutil.Process:
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if "svcorch.supervisor" in cmdline and str(self.state_dir) in cmdline:
                return proc
        raise SoakFailed("no svcorch daemon runs for this stack")

    def all_settled(self) -> bool:
        return all(row["state"] in SETTLED for row in self.status().values())

    def processes(self) -> list[psutil.Process]:
        """Every process that carries this stack's state dir in its environment."""
        mine = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if proc.environ().get("SVCORCH_STATE_DIR") == str(self.state_dir):
                    mine.append(proc)
        return mine

    def close(self) -> None:
        """down, then SIGKILL by pid anything of this stack's that down left (a failure)."""
        with contextlib.suppress(Exception):
            self.run("down", "--timeout", "15s", timeout=120)
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- the data ---------------------------------------------------------------------------

    def mysql_rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        import pymysql

        with (
            pymysql.connect(
                host="127.0.0.1",
                port=self.ports["MYSQL_PORT"],
                user="root",
                password="",
                database="bkdemo",
                connect_timeout=3,
            ) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def stored(self, metric: str) -> dict[str, int]:
        """task_id -> how many rows, for this run's metric."""
        rows = self.mysql_rows(
            "SELECT task_id, COUNT(*) FROM alerts WHERE metric = %s GROUP BY task_id", metric
        )
        return {str(task_id): int(count) for task_id, count in rows}

    def redelivered(self, task_ids: set[str]) -> int:
        """How many of ``task_ids`` the monitor worker received more than once (its logs)."""
        received: Counter[str] = Counter()
        logs = sorted((self.state_dir / "logs").glob("worker.log*"))
        for path in logs:
            for match in RECEIVED.finditer(path.read_text(errors="replace")):
                received[match[1]] += 1
        return sum(1 for task_id in task_ids if received[task_id] > 1)

    def healthz(self) -> bool:
        url = f"http://127.0.0.1:{self.ports['WEB_PORT']}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False


# --- the load --------------------------------------------------------------------------------


@dataclass
class Load:
    """``total`` events POSTed at ``rate`` per second by a few threads, each with an id of its
    own. Whatever did not get a 202 (a 503, a refused or reset connection, a timeout) is sent
    again with the same id after a pause, as a careful client does: the demo stores an id once.
    """

    url: str
    total: int
    rate: float
    metric: str = field(default_factory=lambda: f"soak.{uuid.uuid4().hex[:8]}")
    threads: int = 8
    give_up_after: float = 180.0  # per event
    accepted: list[str] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)  # why an attempt was sent again
    failed: list[str] = field(default_factory=list)  # a 4xx/5xx other than 503, or given up
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, stop: threading.Event) -> None:
        started = time.monotonic()
        schedule = iter(range(self.total))
        schedule_lock = threading.Lock()

        def worker() -> None:
            while not stop.is_set():
                with schedule_lock:
                    index = next(schedule, None)
                if index is None:
                    return
                delay = started + index / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._send(index, stop)

        pool = [threading.Thread(target=worker, daemon=True) for _ in range(self.threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    def _send(self, index: int, stop: threading.Event) -> None:
        event_id = str(uuid.uuid4())
        body = json.dumps(
            {"metric": self.metric, "value": float(index), "severity": "info", "id": event_id}
        ).encode()
        deadline = time.monotonic() + self.give_up_after
        while not stop.is_set():
            why = self._attempt(body)
            if why is None:
                with self.lock:
                    self.accepted.append(event_id)
                return
            if why.startswith("HTTP ") and not why.startswith("HTTP 503"):
                with self.lock:
                    self.failed.append(why)
                return
            with self.lock:
                self.retries[why.split(":")[0]] += 1
            if time.monotonic() > deadline:
                with self.lock:
                    self.failed.append(f"no 202 within {self.give_up_after:g}s: {why}")
                return
            time.sleep(0.5)

    def _attempt(self, body: bytes) -> str | None:
        """None for a 202, else why not."""
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return None if response.status == 202 else f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}: {exc.read()[:200]!r}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"{type(reason).__name__}: {reason}"


# --- kills -----------------------------------------------------------------------------------


@dataclass
class Kill:
    service: str  # worker, rabbitmq, or "web-child" (one gunicorn worker)
    pid: int
    program: str
    at: float  # wall clock
    recovered_at: float | None = None

    @property
    def recovery(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.at


def gunicorn_workers(stack: ShippedStack) -> list[psutil.Process]:
    master = stack.status()["web"]["pid"]
    if master is None:
        return []
    try:
        return psutil.Process(master).children()
    except psutil.NoSuchProcess:
        return []


def kill_service(stack: ShippedStack, service: str) -> Kill:
    """kill -9 the service's real process: the one svcorch watches (the wrappers exec it),
    or for ``web-child`` one of gunicorn's workers, which svcorch never sees."""
    if service == "web-child":
        process = gunicorn_workers(stack)[0]
    else:
        pid = stack.status()[service]["pid"]
        if pid is None:
            raise SoakFailed(f"{service} has no process to kill")
        process = psutil.Process(pid)
    program = process.name()
    at = time.time()
    os.kill(process.pid, signal.SIGKILL)
    return Kill(service, process.pid, program, at)


def recovered(stack: ShippedStack, kill: Kill) -> float | None:
    """When the killed service was ready again (wall clock), or None while it is not."""
    if kill.service == "web-child":
        workers = gunicorn_workers(stack)
        if len(workers) >= 2 and kill.pid not in {w.pid for w in workers} and stack.healthz():
            return time.time()
        return None
    record = stack.records()[kill.service]
    ready_at = record["ready_at"]
    if record["state"] == "ready" and record["pid"] != kill.pid and ready_at and ready_at > kill.at:
        return float(ready_at)
    return None


# --- one run ---------------------------------------------------------------------------------


@dataclass
class Report:
    accepted: int
    stored_once: int
    lost: list[str]
    duplicated: dict[str, int]
    unexpected: int  # stored rows of ids that never got a 202 (given up by the client)
    retries: dict[str, int]  # attempts sent again, by why (HTTP 503, ConnectionRefusedError)
    redelivered: int  # tasks a worker ran more than once (a kill -9 mid-task); stored once
    failed: list[str]
    kills: list[Kill]
    starts_while_down: list[str]
    rss_before: int
    rss_after: int
    warnings: list[str]  # the daemon log's WARNING/ERROR transition lines
    tracebacks: int
    daemon_log_lines: int
    elapsed: float
    final_status: dict[str, str]

    def recovery_by_service(self) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for kill in self.kills:
            if kill.recovery is not None:
                found.setdefault(kill.service, []).append(kill.recovery)
        return found

    def summary(self) -> dict[str, Any]:
        recovery = {
            service: {
                "kills": len(times),
                "min": round(min(times), 2),
                "median": round(statistics.median(times), 2),
                "max": round(max(times), 2),
            }
            for service, times in self.recovery_by_service().items()
        }
        return {
            "accepted": self.accepted,
            "stored_once": self.stored_once,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "unexpected": self.unexpected,
            "retried": dict(self.retries),
            "redelivered": self.redelivered,
            "failed": len(self.failed),
            "recovery_seconds": recovery,
            "starts_while_down": len(self.starts_while_down),
            "daemon_rss_mib": {
                "before": round(self.rss_before / MIB, 1),
                "after": round(self.rss_after / MIB, 1),
            },
            "daemon_log": {
                "lines": self.daemon_log_lines,
                "warnings": len(self.warnings),
                "tracebacks": self.tracebacks,
            },
            "elapsed_seconds": round(self.elapsed, 1),
        }


@dataclass(frozen=True)
class Plan:
    """What to send and what to kill when (seconds after the load starts)."""

    events: int
    rate: float
    kills: tuple[tuple[float, str], ...]
    # the workers drain the backlog; an event still missing once no new one was stored for
    # this long is lost (a busy machine drains slowly, a lost event never comes)
    drain_stall: float = 90.0


def soak(stack: ShippedStack, plan: Plan, log: Callable[[str], None] = lambda _: None) -> Report:
    """Up the stack, run the load and the kills, wait for everything to settle, report."""
    started = time.monotonic()
    stack.ok("up", timeout=600)
    log(f"stack up in {time.monotonic() - started:.1f}s")
    rss_before = stack.daemon().memory_info().rss
    load = Load(
        f"http://127.0.0.1:{stack.ports['WEB_PORT']}/events", total=plan.events, rate=plan.rate
    )
    stop = threading.Event()
    sender = threading.Thread(target=load.run, args=(stop,), daemon=True)
    load_started = time.monotonic()
    sender.start()
    kills: list[Kill] = []
    try:
        for offset, service in sorted(plan.kills):
            pause = load_started + offset - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            # kill only a service that is back from the last kill: one outage at a time
            for earlier in kills:
                _await_recovery(stack, earlier, timeout=180)
            kill = kill_service(stack, service)
            log(f"+{time.monotonic() - load_started:.1f}s kill -9 {service} ({kill.program})")
            kills.append(kill)
        for kill in kills:
            _await_recovery(stack, kill, timeout=180)
        sender.join(timeout=plan.events / plan.rate + 300)
    finally:
        stop.set()
        sender.join(timeout=60)
    log(f"load done: {len(load.accepted)} accepted, retried {dict(load.retries)}")
    wait_for(stack.all_settled, timeout=180, what="every service ready again")
    accepted = set(load.accepted)
    drain(stack, accepted, load.metric, plan.drain_stall, log)
    stored = stack.stored(load.metric)
    daemon_log = stack.daemon_log()
    transitions = transitions_from_daemon_log(daemon_log)
    from svcorch import catalogue as catalogue_module

    catalogue = catalogue_module.load(
        CATALOGUE, environ={**stack.env, "SVCORCH_STATE_DIR": str(stack.state_dir)}
    )
    rss_after = stack.daemon().memory_info().rss
    return Report(
        accepted=len(accepted),
        stored_once=sum(1 for t in accepted if stored.get(t) == 1),
        lost=sorted(accepted - set(stored)),
        duplicated={t: n for t, n in stored.items() if n > 1},
        unexpected=len(set(stored) - accepted),
        retries=dict(load.retries),
        redelivered=stack.redelivered(accepted),
        failed=load.failed,
        kills=kills,
        starts_while_down=starts_while_down(transitions, edges_of(catalogue)),
        rss_before=rss_before,
        rss_after=rss_after,
        warnings=[
            f"{t.time} {t.level} {t.service}: {t.old} -> {t.new} ({t.detail})"
            for t in transitions
            if t.level in ("WARNING", "ERROR")
        ],
        tracebacks=daemon_log.count("Traceback (most recent call last)"),
        daemon_log_lines=len(daemon_log.splitlines()),
        elapsed=time.monotonic() - started,
        final_status={name: row["state"] for name, row in stack.status().items()},
    )


def drain(
    stack: ShippedStack,
    accepted: set[str],
    metric: str,
    stall: float,
    log: Callable[[str], None],
) -> None:
    """Wait until every accepted event is stored, or no new one was for ``stall`` seconds."""
    count, progress, said = -1, time.monotonic(), 0.0
    while True:
        stored = set(stack.stored(metric))
        if accepted <= stored:
            return
        now = time.monotonic()
        if len(stored) != count:
            count, progress = len(stored), now
            if now - said > 10:
                said = now
                log(f"draining: {len(accepted & stored)}/{len(accepted)} stored")
        elif now - progress > stall:
            return
        time.sleep(1.0)


def _await_recovery(stack: ShippedStack, kill: Kill, timeout: float) -> None:
    if kill.recovered_at is not None:
        return
    kill.recovered_at = wait_for(
        lambda: recovered(stack, kill),
        timeout=timeout,
        what=f"{kill.service} ready again after its kill -9",
    )


@contextlib.contextmanager
def shipped_stack() -> Iterator[ShippedStack]:
    stack = ShippedStack()
    try:
        yield stack
    finally:
        stack.close()
