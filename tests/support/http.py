"""A real HTTP receiver in a thread, for webhooks and http probes."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """An http.server in a thread: records every request, answers as told.

    ``answers`` are statuses for the next requests, in order (then 204 for POST,
    ``get_status`` for GET); ``get_body`` is what a GET gets back (a health page for the http
    probe).
    """

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    get_body: Callable[[Received], bytes] = lambda _: b"ok"
    get_status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self) -> list[dict[str, object]]:
        with self.lock:
            return [r.json() for r in self.requests if r.method == "POST"]

    def gets(self) -> int:
        with self.lock:
            return sum(r.method == "GET" for r in self.requests)

    def _answer(self, request: Received) -> tuple[int, bytes]:
        with self.lock:
            self.requests.append(request)
            status = self.answers.pop(0) if self.answers else 0
        if request.method == "GET":
            return status or self.get_status, self.get_body(request)
        return status or 204, b""


@contextlib.contextmanager
def webhook_receiver(**options: object) -> Iterator[Receiver]:
    receiver = Receiver(**options)  # type: ignore[arg-type]

    class Handler(http.server.BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Received(
                self.command, self.path, dict(self.headers.items()), self.rfile.read(length)
            )
            status, body = receiver._answer(request)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
