"""`svcorch web` under hostile clients: half requests, vanishing streams, too many streams,
a daemon killed under an open stream, garbage. Bounds are in docs/reliability.md#web."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import time

import psutil

from svcorch.web.server import MAX_STREAMS, REQUEST_TIMEOUT
from tests.support import wait_until
from tests.web.conftest import Web, stack, web
from tests.web.test_api import SseReader

__all__ = ["stack", "web"]  # the fixtures, for pytest

HALF_REQUESTS = 40
VANISHING = 20
GARBAGE = 200


def _threads(web: Web) -> int:
    assert web.popen is not None
    return psutil.Process(web.popen.pid).num_threads()


def _half_request(web: Web) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=REQUEST_TIMEOUT + 10)
    sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end
    return sock


def test_half_requests_neither_starve_the_server_nor_stay(web: Web) -> None:
    web.start()
    held = [_half_request(web) for _ in range(HALF_REQUESTS)]
    started = time.monotonic()
    assert web.get("/api/status", timeout=3).status == 200
    assert time.monotonic() - started < 3
    for sock in held:  # each is closed by the server after REQUEST_TIMEOUT
        assert sock.recv(1) == b""
        sock.close()
    assert time.monotonic() - started < REQUEST_TIMEOUT + 10


def _abort(reader: SseReader) -> None:
    """Close with a reset (SO_LINGER 0), as a crashed browser does. The reader's thread is
    woken first (SHUT_RD sends nothing): while it blocks in recv, close() would not close."""
    reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    reader.sock.shutdown(socket.SHUT_RD)
    reader._thread.join(5)
    reader.sock.close()


def test_streams_that_vanish_free_their_threads(web: Web) -> None:
    web.stack.ok("up")
    web.start()
    baseline = _threads(web)
    readers = [SseReader(web, "/api/events") for _ in range(VANISHING)]
    wait_until(lambda: all(r.events for r in readers), timeout=20, message="every stream's history")
    assert _threads(web) >= baseline + VANISHING
    for reader in readers:
        _abort(reader)
    wait_until(lambda: _threads(web) <= baseline + 1, timeout=5, message="threads released")


def test_streams_beyond_the_cap_are_refused_with_503(web: Web) -> None:
    web.start()
    readers = [SseReader(web, "/api/events") for _ in range(MAX_STREAMS)]
    wait_until(lambda: all(r.head for r in readers), timeout=30, message="every stream open")
    refused = web.get("/api/events", timeout=5)
    assert refused.status == 503 and "too many open streams" in refused.json()["error"]
    _abort(readers[0])
    wait_until(lambda: _accepts_a_stream(web), timeout=5, message="a place freed")
    for reader in readers[1:]:
        reader.close()


def _accepts_a_stream(web: Web) -> bool:
    reader = SseReader(web, "/api/events")
    try:
        wait_until(lambda: reader.head, timeout=5)
        return reader.head.startswith(b"HTTP/1.0 200")
    finally:
        reader.close()


def test_the_stream_goes_on_across_a_killed_daemon(web: Web) -> None:
    web.start()
    assert web.post("/api/up").status == 200
    stream = SseReader(web, "/api/events")
    wait_until(lambda: stream.events, timeout=10)
    pid = web.stack.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: web.stack.daemon_pid() is None, timeout=10)
    before = len(stream.events)
    assert web.post("/api/services/worker/restart").status == 503  # no daemon: told, not hung
    assert web.post("/api/up").status == 200  # a new daemon adopts the services
    assert web.post("/api/services/worker/restart").status == 200

    def worker_ready_again() -> bool:
        return any(
            json.loads(e["data"])["service"] == "worker" and json.loads(e["data"])["new"] == "ready"
            for e in stream.events[before:]
        )

    wait_until(worker_ready_again, timeout=30, message="the new daemon's events on the old stream")
    seqs = [json.loads(e["data"])["seq"] for e in stream.events]
    assert seqs == sorted(set(seqs))  # nothing twice, nothing out of order
    stream.close()


def _garbage(rng: random.Random) -> bytes:
    methods = [b"GET", b"POST", b"PUT", b"\x00\xff", b"G\rET", b"OPTIONS", b"HEAD"]
    paths = [
        b"/api/up",
        b"/api/services/%00/restart",
        b"/api/services/" + b"x" * 5000 + b"/logs",
        b"/metrics?lines=-1",
        b"/api/events?last_event_id=9" * 50,
        b"/../../etc/passwd",
        b"/api/services/db/logs?lines=99999999999999999999",
        b"*",
        b"/\xff\xfe",
    ]
    headers = [
        b"Content-Length: -5",
        b"Content-Length: 99999999",
        b"Content-Type: application/json",
        b"Authorization: Bearer " + bytes(rng.randrange(256) for _ in range(40)),
        b"Last-Event-ID: -1",
        b"Host: " + b"h" * 3000,
        b"X: \x00\x01",
    ]
    line = (
        rng.choice(methods)
        + b" "
        + rng.choice(paths)
        + b" "
        + rng.choice([b"HTTP/1.1", b"HTTP/9", b""])
    )
    chosen = rng.sample(headers, rng.randrange(len(headers)))
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    return line + b"\r\n" + b"\r\n".join(chosen) + b"\r\n\r\n" + body


def test_garbage_gets_4xx_never_a_traceback(web: Web) -> None:
    web.start()
    rng = random.Random(15)
    statuses = []
    for _ in range(GARBAGE):
        with socket.create_connection(("127.0.0.1", web.port), timeout=REQUEST_TIMEOUT + 5) as sock:
            sock.sendall(_garbage(rng))
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert b"Traceback" not in reply
        if reply:
            statuses.append(int(reply.split(b" ", 2)[1]))
    # no daemon runs, no token was right: a bad request, a refusal, or nothing to act on
    assert statuses and all(400 <= s < 500 for s in statuses), sorted(set(statuses))
    assert web.get("/api/status").status == 200
