"""The waiting loop against real servers (and a scripted probe where only the logic is under
test: the clock and the sleeps)."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from svcorch.probes.base import ProbeOptions, ProbeResult
from svcorch.probes.wait import backoff_delays, check_once, wait_ready, wait_ready_async
from tests.probes.conftest import REDIS_PASSWORD, require_system
from tests.probes.helpers import make, options
from tests.support import free_port, silent_tcp_server

LATE = 0.3  # seconds until the late listener opens


@pytest.fixture
def late_listener() -> Iterator[tuple[int, list[float]]]:
    """A port that starts listening LATE seconds from now; yields it and [opened_at]."""
    port = free_port()
    opened: list[float] = []
    listener = socket.socket()

    def open_it() -> None:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        opened.append(time.monotonic())

    timer = threading.Timer(LATE, open_it)
    timer.start()
    try:
        yield port, opened
    finally:
        timer.cancel()
        timer.join()
        listener.close()


def test_backoff_is_fast_then_capped_at_the_period() -> None:
    delays = backoff_delays(0.1)
    first = [next(delays) for _ in range(14)]
    assert first[:3] == pytest.approx([0.01, 0.012, 0.0144])
    assert first == sorted(first)
    assert first[-1] == 0.1
    assert next(backoff_delays(0.005)) == 0.005


def test_a_service_that_becomes_ready_is_noticed_promptly(
    late_listener: tuple[int, list[float]],
) -> None:
    port, opened = late_listener
    chosen = options("tcp", port=port, timeout=5, period=0.1)
    result = wait_ready(make("tcp", port=port), chosen)
    noticed = time.monotonic()
    assert result.ok, result.detail
    assert opened
    assert noticed - opened[0] < 0.1 + 0.1  # within one period (plus one quick attempt)
    assert result.elapsed == pytest.approx(LATE, abs=0.15)


def test_timeout_message_names_probe_target_error_and_time() -> None:
    port = free_port()
    chosen = options("tcp", port=port, timeout=0.3, period=0.05)
    started = time.monotonic()
    result = wait_ready(make("tcp", port=port), chosen)
    took = time.monotonic() - started
    assert not result.ok
    assert re.fullmatch(
        rf"tcp probe tcp://127\.0\.0\.1:{port}: gave up after 0\.3\ds: Connection refused",
        result.detail,
    ), result.detail
    assert 0.3 <= took < 0.4


def test_redis_timeout_message() -> None:
    port = free_port()
    chosen = options("redis", port=port, timeout=0.2, period=0.05)
    result = wait_ready(make("redis", port=port), chosen)
    assert result.detail.startswith(f"redis probe redis://127.0.0.1:{port}/0: gave up after 0.2")
    assert result.detail.endswith(": Connection refused")


def test_fatal_ends_at_once_with_the_servers_words() -> None:
    port = require_system("mysql")
    password = "wait-s3cret-mysql-pw"
    chosen = options("mysql", port=port, password=password, timeout=30)
    result = wait_ready(make("mysql", port=port, password=password), chosen)
    assert not result.ok
    assert not result.retryable
    assert re.match(
        r"mysql probe mysql://root:\*\*\*@127\.0\.0\.1:3306/: fatal after 0\.\d\ds: "
        r"MySQL error 1045: Access denied for user 'root'@",
        result.detail,
    ), result.detail
    assert result.elapsed < 1
    assert password not in result.detail


@pytest.mark.parametrize(
    ("type_name", "values", "password"),
    [
        ("redis", {"url": "redis://:{pw}@127.0.0.1:{port}/0"}, "wrong-redis-s3cret"),
        ("amqp", {"url": "amqp://guest:{pw}@127.0.0.1:5672/%2F"}, "wrong-amqp-s3cret"),
        ("mysql", {"password": "{pw}"}, "wrong-mysql-s3cret"),
    ],
)
def test_secrets_never_appear_in_any_detail(
    redis_with_password: int, type_name: str, values: dict[str, str], password: str
) -> None:
    if type_name != "redis":
        require_system(type_name)
    filled = {
        key: value.format(pw=password, port=redis_with_password) for key, value in values.items()
    }
    chosen = options(type_name, timeout=5, **filled)
    probe = make(type_name, **filled)
    once = check_once(probe, chosen)
    waited = wait_ready(probe, chosen)
    assert not waited.ok
    assert not waited.retryable
    for text in (once.detail, waited.detail, chosen.target()):
        assert password not in text
    assert REDIS_PASSWORD not in waited.detail


def test_a_dead_process_ends_the_wait() -> None:
    port = free_port()
    chosen = options("tcp", port=port, timeout=30, period=0.05)
    calls: list[int] = []

    def alive() -> bool:
        calls.append(1)
        return len(calls) < 3

    started = time.monotonic()
    result = wait_ready(make("tcp", port=port), chosen, is_alive=alive)
    assert time.monotonic() - started < 0.5
    assert not result.ok
    assert not result.retryable
    assert "process exited after" in result.detail
    assert "(last attempt: Connection refused)" in result.detail


def test_ready_but_dead_is_not_ready() -> None:
    """A stale server on the port answers the probe; the service itself has exited."""
    with silent_tcp_server() as port:
        chosen = options("tcp", port=port, timeout=5)
        alive = iter([True, False])
        result = wait_ready(make("tcp", port=port), chosen, is_alive=lambda: next(alive))
    assert not result.ok
    assert "process exited" in result.detail


def test_cancellation_is_immediate() -> None:
    port = free_port()
    chosen = options("tcp", port=port, timeout=30, period=5)
    cancelled = threading.Event()
    timer = threading.Timer(0.2, cancelled.set)
    started = time.monotonic()
    timer.start()
    result = wait_ready(make("tcp", port=port), chosen, cancelled=cancelled)
    took = time.monotonic() - started
    timer.join()
    assert not result.ok
    assert "cancelled after" in result.detail
    # the backoff had grown towards period=5s: only an immediate cancel ends it this soon
    assert 0.2 <= took < 1.0


class Scripted:
    """A probe whose answers are given in advance: for the loop's logic, not for servers."""

    def __init__(self, *results: ProbeResult) -> None:
        self.results = list(results)
        self.deadlines: list[float] = []

    def check(self, deadline: float) -> ProbeResult:
        self.deadlines.append(deadline)
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_backoff_between_attempts_and_giving_up_at_the_timeout() -> None:
    clock = FakeClock()
    probe = Scripted(ProbeResult.failed("refused", retryable=True))
    chosen = ProbeOptions(type="fake", timeout=4, period=0.5)
    result = wait_ready(probe, chosen, clock=clock, sleep=clock.sleep)
    assert clock.slept[:4] == pytest.approx([0.01, 0.012, 0.0144, 0.01728])
    assert max(clock.slept) == 0.5
    assert sum(clock.slept) == pytest.approx(4.0)
    assert result.detail == "fake probe fake: gave up after 4.0s: refused"
    assert result.retryable


def test_success_after_failures_keeps_the_probes_detail() -> None:
    clock = FakeClock()
    probe = Scripted(
        ProbeResult.failed("refused", retryable=True),
        ProbeResult.failed("LOADING", retryable=True),
        ProbeResult.passed("PONG"),
    )
    result = wait_ready(probe, ProbeOptions(type="fake"), clock=clock, sleep=clock.sleep)
    assert result.ok
    assert result.detail == "PONG"
    assert len(clock.slept) == 2


def test_each_attempt_gets_the_remaining_time_as_its_deadline() -> None:
    clock = FakeClock()
    probe = Scripted(ProbeResult.failed("refused", retryable=True))
    wait_ready(probe, ProbeOptions(type="fake", timeout=1), clock=clock, sleep=clock.sleep)
    remaining = [deadline - time.monotonic() for deadline in probe.deadlines]
    assert remaining[0] == pytest.approx(1.0, abs=0.05)
    assert remaining[-1] < 0.5


def test_check_once_scrubs_secrets() -> None:
    probe = Scripted(ProbeResult.failed("login hunter2 refused", retryable=False))
    assert check_once(probe, options("redis", password="hunter2")).detail == "login *** refused"


def test_async_notices_readiness(late_listener: tuple[int, list[float]]) -> None:
    port, opened = late_listener
    chosen = options("tcp", port=port, timeout=5, period=0.1)
    result = asyncio.run(wait_ready_async(make("tcp", port=port), chosen))
    assert result.ok, result.detail
    assert time.monotonic() - opened[0] < 0.2


def test_async_gives_up_with_the_same_message() -> None:
    port = free_port()
    chosen = options("tcp", port=port, timeout=0.2, period=0.05)
    result = asyncio.run(wait_ready_async(make("tcp", port=port), chosen))
    assert re.fullmatch(
        rf"tcp probe tcp://127\.0\.0\.1:{port}: gave up after 0\.2\ds: Connection refused",
        result.detail,
    ), result.detail


def test_async_stop_aborts_even_during_an_attempt() -> None:
    async def scenario(port: int) -> tuple[ProbeResult, float]:
        stop = asyncio.Event()
        chosen = options("redis", port=port, timeout=30, attempt_timeout=1)
        asyncio.get_running_loop().call_later(0.1, stop.set)
        started = time.monotonic()
        result = await wait_ready_async(
            make("redis", port=port, attempt_timeout=1), chosen, stop=stop
        )
        return result, time.monotonic() - started

    with silent_tcp_server() as port:
        result, took = asyncio.run(scenario(port))
    assert not result.ok
    assert not result.retryable
    assert "cancelled after" in result.detail
    assert took < 0.3


def test_async_dead_process() -> None:
    port = free_port()
    chosen = options("tcp", port=port, timeout=30, period=0.05)
    result = asyncio.run(wait_ready_async(make("tcp", port=port), chosen, is_alive=lambda: False))
    assert not result.ok
    assert result.detail == f"tcp probe tcp://127.0.0.1:{port}: process exited after 0.00s"


def test_amqp_default_credentials_read_as_in_the_target() -> None:
    port = free_port()
    chosen = options("amqp", port=port, timeout=0.1, period=0.05)
    result = wait_ready(make("amqp", port=port), chosen)
    assert result.detail.startswith(f"amqp probe amqp://guest:***@127.0.0.1:{port}/%2F: gave up")
