"""The control socket against hostile clients: a real daemon supervising a real service,
fed generated garbage, oversized and deep messages, half lines and clients that never send.

Every message gets one `error` (or `result`) line, never an internal error; the daemon keeps
answering pings meanwhile and drops silent clients after REQUEST_TIMEOUT; the service is
never disturbed. docs/reliability.md ("Control socket") quotes the summary this module
prints with `-s`:

    .venv/bin/pytest tests/reliability/test_control_socket.py -q -s -p no:cacheprovider
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcorch import control
from tests.runtime.conftest import Stack, tcp_service
from tests.support import free_port

READ_LIMIT = 64 * 1024 * 1024
PING_BOUND = 2.0  # seconds a ping may take while the daemon is being abused (2 busy cores)
# requests that would act or load a catalogue: generated ones always carry a bad `file`
ACTING = ("up", "down", "restart", "plan")


@dataclass
class Figures:
    trials: int = 0
    passed: int = 0
    worst_answer: float = 0.0
    worst_ping: float = 0.0
    peak_rss: int = 0
    notes: list[str] = field(default_factory=list)


FIGURES = Figures()


@dataclass(frozen=True)
class Daemon:
    stack: Stack
    pid: int
    service_pid: int

    @property
    def socket(self) -> str:
        return str(self.stack.state_dir / "svcorch.sock")


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    root = Path(tempfile.mkdtemp(prefix="svc-", dir="/tmp"))
    stack = Stack(root)
    stack.write({"a": tcp_service(free_port())})
    try:
        stack.ok("up")
        pid = stack.daemon_pid()
        assert pid is not None
        service_pid = stack.status()["a"]["pid"]
        yield Daemon(stack, pid, service_pid)
        # whatever was thrown at it, it still supervises its service, undisturbed
        assert stack.daemon_pid() == pid
        assert stack.status()["a"]["pid"] == service_pid
        assert stack.status()["a"]["state"] == "ready"
        # and nothing it met was unexpected: no traceback, no asyncio complaint
        log = stack.daemon_log()
        assert "Traceback" not in log
        assert " ERROR " not in log
        assert "Exception" not in log
    finally:
        stack.run("down", "--timeout", "2s")
        shutil.rmtree(root, ignore_errors=True)
        if FIGURES.trials:
            print(
                f"\ncontrol-socket: {FIGURES.trials} trials, {FIGURES.passed} passed,"
                f" worst answer {FIGURES.worst_answer:.3f}s, worst ping meanwhile"
                f" {FIGURES.worst_ping:.3f}s, daemon RSS peak {FIGURES.peak_rss / 2**20:.1f} MiB"
            )
            for note in FIGURES.notes:
                print(f"  {note}")


def connect(daemon: Daemon, timeout: float = 30.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(daemon.socket)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    size = 0
    while size < READ_LIMIT:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def exchange(daemon: Daemon, payload: bytes) -> tuple[list[dict[str, Any]], float]:
    """Send ``payload``, close our side, read every line the daemon answers."""
    started = time.monotonic()
    with connect(daemon) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = read_all(sock)
    took = time.monotonic() - started
    return [json.loads(line) for line in data.splitlines()], took


def ping(daemon: Daemon) -> float:
    answers, took = exchange(daemon, b'{"op": "ping"}\n')
    assert answers == [{"result": {"ok": True, "pid": daemon.pid}}]
    FIGURES.worst_ping = max(FIGURES.worst_ping, took)
    assert took < PING_BOUND, f"ping took {took:.2f}s"
    return took


def rss(daemon: Daemon) -> int:
    size = psutil.Process(daemon.pid).memory_info().rss
    FIGURES.peak_rss = max(FIGURES.peak_rss, size)
    return size


def assert_refused(answers: list[dict[str, Any]], words: str = "") -> None:
    assert len(answers) == 1, answers
    error = answers[0].get("error")
    assert isinstance(error, str), answers
    assert "internal error" not in error
    assert "\n" not in error
    assert answers[0].get("exit_code") in (1, 2), answers
    assert words in error, error


def trial(daemon: Daemon, payload: bytes) -> list[dict[str, Any]]:
    FIGURES.trials += 1
    answers, took = exchange(daemon, payload)
    FIGURES.worst_answer = max(FIGURES.worst_answer, took)
    # one final answer, after at most notices/accepted/events lines; never an internal error
    assert answers, f"no answer to {payload[:80]!r}"
    final = answers[-1]
    assert "result" in final or "error" in final, answers
    if "error" in final:
        assert_refused(answers[-1:])
    ping(daemon)
    FIGURES.passed += 1
    return answers


# --- generated messages --------------------------------------------------------------------

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=24,
)
# `events` streams until the client leaves (docs/control.md): it has no one answer to judge
ANSWERED = [op for op in control.OPS if op != "events"]
OPS = st.sampled_from([*ANSWERED, "", "PING", "reboot", "status\x00"]) | VALUES
# an action whose every field is sound would really start or stop the service: each one
# generated here carries a `file` no client of ours sends, so it must be refused
BAD_FILES = (
    st.sampled_from(["services.yaml", "", "../x", "/a\x00b"])
    | st.integers()
    | st.lists(st.text(max_size=3), max_size=2)
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    message: dict[str, Any] = {"op": draw(OPS)}
    for key in ("file", "environ", "services", "profiles", "rollback", "timeout", "extra"):
        if draw(st.booleans()):
            message[key] = draw(VALUES)
    if message["op"] in ACTING:
        message["file"] = draw(BAD_FILES)
    return json.dumps(message).encode() + b"\n"


def deep(depth: int, opener: bytes, closer: bytes, core: bytes = b"") -> bytes:
    """A status request whose `services` nests ``depth`` levels (one more with the outer)."""
    return b'{"op": "status", "services": ' + opener * depth + core + closer * depth + b"}\n"


MESSAGES = st.one_of(
    requests(),
    st.binary(max_size=300).map(lambda raw: raw + b"\n"),
    VALUES.map(lambda value: json.dumps(value).encode() + b"\n"),
    st.integers(min_value=33, max_value=200_000).map(lambda d: deep(d, b"[", b"]")),
    st.integers(min_value=33, max_value=2_000).map(lambda d: deep(d, b'{"a":', b"}", b"1")),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass") + b"\n"),
)


@settings(
    max_examples=300,
    derandomize=True,  # the same messages every run: CI judges the code, not the draw
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(payload=MESSAGES)
def test_generated_messages_get_one_clear_answer(daemon: Daemon, payload: bytes) -> None:
    trial(daemon, payload)


# --- the bounds, one by one ----------------------------------------------------------------


def test_an_oversized_line_is_refused_without_being_buffered_whole(daemon: Daemon) -> None:
    before = rss(daemon)
    for payload in (
        b"x" * (control.MAX_REQUEST + 1024 * 1024),  # no newline at all
        b'{"op": "ping", "pad": "' + b"x" * (control.MAX_REQUEST + 1024) + b'"}\n',
    ):
        FIGURES.trials += 1
        with connect(daemon) as sock:
            # the daemon answers and closes while we are still sending: send from a thread
            sender = threading.Thread(target=_send_ignoring_reset, args=(sock, payload))
            started = time.monotonic()
            sender.start()
            answers = [json.loads(line) for line in read_all(sock).splitlines()]
            took = time.monotonic() - started
            sender.join(30)
        assert_refused(answers, f"request longer than {control.MAX_REQUEST >> 20} MiB")
        FIGURES.worst_answer = max(FIGURES.worst_answer, took)
        ping(daemon)
        FIGURES.passed += 1
    grown = rss(daemon) - before
    FIGURES.notes.append(f"oversized lines: daemon RSS grew {grown / 2**20:.1f} MiB")
    assert grown < 4 * control.MAX_REQUEST  # bounded by the limit, not by what was sent


def _send_ignoring_reset(sock: socket.socket, payload: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(payload)


def test_a_line_just_under_the_bound_is_served(daemon: Daemon) -> None:
    pad = b"x" * (control.MAX_REQUEST - 100)
    answers = trial(daemon, b'{"op": "ping", "pad": "' + pad + b'"}\n')
    assert answers == [{"result": {"ok": True, "pid": daemon.pid}}]


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (deep(100_000, b"[", b"]"), "nested deeper than 32 levels"),
        (deep(32, b'{"a":', b"}", b"1"), "nested deeper than 32 levels"),
        (b'{"op": "status", "servi', "garbled message"),  # half a line, then our side shut
        (b'{"op": "down", "timeout": 1e999}\n', "`timeout` must be seconds"),
        (b'{"op": "down", "timeout": NaN}\n', "`timeout` must be seconds"),
        (b'{"op": "up", "services": [' + b"9" * 5000 + b"]}\n", "garbled message"),
        (b'{"op": "up", "file": "/x", "environ": {"A=B": "1"}}\n', "bad variable 'A=B'"),
        (b'{"op": "status", "services": ["nope"]}\n', "unknown service"),
    ],
)
def test_each_bad_message_gets_its_own_words(daemon: Daemon, payload: bytes, words: str) -> None:
    answers = trial(daemon, payload)
    assert_refused(answers, words)


def test_silent_and_half_open_clients_are_dropped_and_stall_nobody(daemon: Daemon) -> None:
    """50 clients that never send and 50 that send half a line and wait: the daemon keeps
    answering everyone else at once, and drops each of them after REQUEST_TIMEOUT."""
    silent = [connect(daemon, timeout=control.REQUEST_TIMEOUT + 20) for _ in range(50)]
    half = [connect(daemon, timeout=control.REQUEST_TIMEOUT + 20) for _ in range(50)]
    opened = time.monotonic()
    try:
        for sock in half:
            sock.sendall(b'{"op": "status", "serv')
        pings = 0
        while time.monotonic() - opened < control.REQUEST_TIMEOUT - 1:
            ping(daemon)
            pings += 1
            time.sleep(0.05)  # pacing, not waiting: a ping every 50 ms is plenty
        status, _ = exchange(daemon, b'{"op": "status"}\n')
        assert status[-1]["result"]["services"][0]["state"] == "ready"
        closed_after = []
        for sock in silent + half:
            assert read_all(sock) == b""  # closed by the daemon, no answer: nobody asked
            closed_after.append(time.monotonic() - opened)
        FIGURES.trials += 100
        FIGURES.passed += 100
        FIGURES.notes.append(
            f"100 silent/half-open clients: dropped after {min(closed_after):.1f}-"
            f"{max(closed_after):.1f}s, {pings} pings answered meanwhile"
        )
        assert min(closed_after) >= control.REQUEST_TIMEOUT - 1
        assert max(closed_after) < control.REQUEST_TIMEOUT + 10
    finally:
        for sock in silent + half:
            sock.close()
    ping(daemon)
    assert math.isfinite(rss(daemon))


def test_many_clients_at_once_are_all_answered(daemon: Daemon) -> None:
    results: list[float] = []

    def one() -> None:
        results.append(ping(daemon))

    threads = [threading.Thread(target=one) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    FIGURES.trials += 100
    assert len(results) == 100
    FIGURES.passed += 100
