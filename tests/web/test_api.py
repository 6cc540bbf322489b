"""The API against a real daemon and real services, through urllib."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from tests.support import wait_until
from tests.web.conftest import TOKEN, Web

SECRET = "hunter2-secret-value"


def _states(web: Web) -> dict[str, str]:
    answer = web.get("/api/status")
    assert answer.status == 200, answer.body
    return {row["service"]: row["state"] for row in answer.json()}


def test_status_graph_and_analyze_are_the_clis_json(web: Web) -> None:
    web.stack.ok("up")
    web.start()
    status = web.get("/api/status")
    assert status.status == 200
    assert status.headers["Content-Type"] == "application/json"
    assert status.json() == _without_times(json.loads(web.stack.ok("status", "--json")), status)
    graph = web.get("/api/graph")
    assert graph.json() == json.loads(web.stack.ok("graph", "--json"))
    assert web.get("/api/analyze").json() == json.loads(web.stack.ok("analyze", "--json"))


def _without_times(cli: list[dict[str, Any]], answer: Any) -> list[dict[str, Any]]:
    """The CLI's rows with the web's uptimes (they grow between the two calls)."""
    web_rows = {row["service"]: row for row in answer.json()}
    return [{**row, "uptime": web_rows[row["service"]]["uptime"]} for row in cli]


def test_no_secret_in_any_answer(web: Web) -> None:
    web.stack.ok("up")
    assert SECRET in web.stack.log("api")  # the service did log it
    web.start()
    logs = web.get("/api/services/api/logs?lines=50")
    assert logs.status == 200
    assert "connecting with ***" in logs.json()["lines"]  # as docs/web.md says
    for path in ("/api/status", "/api/graph", "/api/analyze", "/api/services/api/logs", "/metrics"):
        assert SECRET.encode() not in web.get(path).body, path
    restart = web.post("/api/services/api/restart")
    assert SECRET.encode() not in restart.body


def test_up_restart_and_stop_with_the_clis_outcomes(web: Web) -> None:
    web.start()
    up = web.post("/api/up", {"services": ["worker"]})
    assert up.status == 200, up.body
    assert up.json()["action"] == "up" and up.json()["ok"] is True
    assert set(up.json()["done"]) == {"db", "api", "worker"}
    pid = web.stack.status("api")["api"]["pid"]
    restart = web.post("/api/services/api/restart", {"timeout": 5})
    assert restart.status == 200 and restart.json()["action"] == "restart"
    assert web.stack.status("api")["api"]["pid"] != pid
    stop = web.post("/api/services/worker/stop")
    assert stop.status == 200 and stop.json()["done"] == ["worker"]
    assert _states(web)["worker"] == "stopped"
    down = web.post("/api/down")
    assert down.status == 200 and down.json()["ok"] is True
    assert set(_states(web).values()) == {"stopped"}


def test_a_failed_up_is_a_conflict_with_the_outcome(web: Web) -> None:
    web.stack.write(
        {"bad": {"command": ["false"], "ready": {"type": "tcp", "port": 1, "timeout": "2s"}}}
    )
    web.start()
    answer = web.post("/api/up")
    assert answer.status == 409
    assert answer.json()["ok"] is False and answer.json()["failed"][0]["service"] == "bad"


def test_bad_requests_get_4xx_json(web: Web) -> None:
    web.start()
    cases = [
        ("GET", "/api/services/nope/logs", None, 404, "unknown service 'nope'"),
        ("POST", "/api/services/nope/restart", {}, 404, "unknown service 'nope'"),
        ("GET", "/api/nothing", None, 404, "not found: /api/nothing"),
        ("POST", "/api/status", {}, 405, "method not allowed"),
        ("POST", "/api/up", {"services": "worker"}, 400, "`services` must be a list"),
        ("POST", "/api/up", b"{nope", 400, "the body is not JSON"),
        ("POST", "/api/up", b"[]", 400, "must be a JSON object"),
        ("POST", "/api/services/api/stop", {"timeout": -1}, 400, "`timeout` must be"),
        ("GET", "/api/services/api/logs?lines=x", None, 400, "lines must be a number"),
        ("GET", "/api/events?last_event_id=x", None, 400, "Last-Event-ID must be"),
        ("POST", "/api/services/api/restart", {}, 503, "no svcorch daemon is running"),
    ]
    for method, path, body, status, message in cases:
        answer = web.request(method, path, body=body, token=TOKEN)
        assert answer.status == status, (path, answer.body)
        assert answer.headers["Content-Type"] == "application/json", path
        error = answer.json()
        assert message in error["error"] and error["status"] == status, (path, error)
        assert b"Traceback" not in answer.body


def test_a_garbled_request_line_gets_json_not_a_traceback(web: Web) -> None:
    web.start()
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.1 and more words\r\n\r\n")
        reply = b""
        while chunk := raw.recv(4096):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400")
    assert json.loads(body)["status"] == 400


def test_logs_tail_and_follow(web: Web) -> None:
    web.stack.ok("up")
    web.start()
    tail = web.get("/api/services/db/logs?lines=1").json()
    assert tail["service"] == "db" and len(tail["lines"]) == 1
    lines: list[str] = []
    stream = SseReader(web, "/api/services/db/logs?follow=1&lines=0")
    web.stack.ok("restart", "db")  # a restart writes a header and `ready on` to the log
    wait_until(lambda: any("ready on" in e["data"] for e in stream.events), timeout=20)
    lines = [json.loads(e["data"])["line"] for e in stream.events]
    assert all(e["event"] == "line" for e in stream.events)
    assert any("ready on" in line for line in lines)
    stream.close()


class SseReader:
    """An SSE client on a raw socket (urllib buffers): parsed events as they arrive."""

    def __init__(self, web: Web, path: str, headers: dict[str, str] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", web.port), timeout=30)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
        self.events: list[dict[str, str]] = []
        self.head = b""
        self.arrived: list[float] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        try:
            while chunk := self.sock.recv(65536):
                buffer += chunk
                if not self.head and b"\r\n\r\n" in buffer:
                    self.head, _, buffer = buffer.partition(b"\r\n\r\n")
                while self.head and b"\n\n" in buffer:
                    block, _, buffer = buffer.partition(b"\n\n")
                    event = _parse(block.decode())
                    if "data" in event:
                        self.events.append(event)
                        self.arrived.append(time.time())
        except OSError:
            return

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader; close() alone would not
        self._thread.join(5)
        self.sock.close()


def _parse(block: str) -> dict[str, str]:
    event: dict[str, str] = {"event": "message"}
    for line in block.splitlines():
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[name] = event[name] + "\n" + value if name == "data" and "data" in event else value
    return event


def test_events_stream_live_and_resume_from_last_event_id(web: Web) -> None:
    web.stack.ok("up")
    web.start()
    stream = SseReader(web, "/api/events")
    assert stream.head.startswith(b"HTTP/1.0 200") or wait_until(lambda: stream.head, timeout=10)
    assert b"text/event-stream" in stream.head
    wait_until(lambda: stream.events, timeout=10, message="history")
    before = len(stream.events)
    web.post("/api/services/worker/restart")
    wait_until(
        lambda: any(
            json.loads(e["data"])["service"] == "worker" and json.loads(e["data"])["new"] == "ready"
            for e in stream.events[before:]
        ),
        timeout=20,
        message="worker ready again, live",
    )
    records = [json.loads(e["data"]) for e in stream.events]
    assert [int(e["id"]) for e in stream.events] == [r["seq"] for r in records]
    assert [r["seq"] for r in records] == sorted({r["seq"] for r in records})
    stream.close()
    # a client that saw up to the middle gets exactly the rest, nothing twice
    middle = records[len(records) // 2]["seq"]
    resumed = SseReader(web, "/api/events", {"Last-Event-ID": str(middle)})
    later = [r["seq"] for r in records if r["seq"] > middle]
    wait_until(lambda: len(resumed.events) >= len(later), timeout=10, message="the rest")
    assert [json.loads(e["data"])["seq"] for e in resumed.events][: len(later)] == later
    resumed.close()


def test_openapi_and_page_and_assets_are_served(web: Web) -> None:
    web.start()
    spec = web.get("/openapi.json")
    assert spec.status == 200 and spec.json()["openapi"].startswith("3.")
    page = web.get("/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert b"/static/app.js" in page.body
    for asset in ("app.js", "app.css"):
        assert web.get(f"/static/{asset}").status == 200
    assert web.get("/static/../cli.py").status == 404
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
