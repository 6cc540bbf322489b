"""A real `svcorch web` beside a real daemon and real services, on free ports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.conftest import Stack, stop_popen, tcp_service
from tests.support import free_port, port_open, wait_until
from tests.support.procs import python_service

TOKEN = "t0ken-for-the-web-tests-0123456789"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Web:
    """The `svcorch web` process of one Stack, and an HTTP client for it."""

    stack: Stack
    port: int
    host: str = "127.0.0.1"
    popen: subprocess.Popen[str] | None = None
    token: str | None = TOKEN
    output: Path = Path("/dev/null")

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        environ = dict(self.stack.env if env is None else env)
        # a file, not a pipe: an unread pipe fills up and would block the server's access log
        self.output = self.stack.root / f"web-{self.port}.out"
        self.popen = subprocess.Popen(
            self.stack.argv("web", "--bind", f"{self.host}:{self.port}", *args),
            stdout=self.output.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
            env=environ,
            cwd=self.stack.root,
        )
        wait_until(
            lambda: port_open(self.port, self.host) or self.popen.poll() is not None,  # type: ignore[union-attr]
            timeout=20,
            message="svcorch web listening",
        )
        assert self.popen.poll() is None, self.output.read_text()
        return self.popen

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        timeout: float = 60.0,
    ) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, dict(exc.headers), exc.read())

    def get(self, path: str, **kw: Any) -> Answer:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        kw.setdefault("token", self.token)
        return self.request("POST", path, body if body is not None else {}, **kw)

    def stop(self) -> str:
        if self.popen is None:
            return ""
        stop_popen(self.popen)
        self.popen = None
        return self.output.read_text()


@pytest.fixture
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="svw-", dir="/tmp"))
    made = Stack(root)
    try:
        yield made
    finally:
        if made.file.exists():
            made.run("down", "--timeout", "2s")
        shutil.rmtree(root, ignore_errors=True)


def small_stack(stack: Stack, secret: str = "hunter2-secret-value") -> None:
    """db <- api <- worker, each a real TCP service; api holds a secret in its env."""
    db, api, worker = free_port(), free_port(), free_port()
    stack.write(
        {
            "db": tcp_service(db),
            "api": {
                **tcp_service(api, 0.2),
                # the service logs its secret: the API must never show it
                "command": "echo connecting with $$API_PASSWORD && exec "
                + " ".join(python_service("tcp_ready", "--port", api, "--delay", 0.2)),
                "shell": True,
                "depends_on": ["db"],
                "env": {"API_PASSWORD": secret},
            },
            "worker": {**tcp_service(worker), "depends_on": ["api"]},
        }
    )


@pytest.fixture
def web(stack: Stack) -> Iterator[Web]:
    small_stack(stack)
    stack.env["SVCORCH_WEB_TOKEN"] = TOKEN
    made = Web(stack, free_port())
    try:
        yield made
    finally:
        made.stop()


def env_without_token(stack: Stack) -> dict[str, str]:
    return {k: v for k, v in stack.env.items() if k != "SVCORCH_WEB_TOKEN"}


__all__ = ["TOKEN", "Answer", "Web", "env_without_token", "os", "small_stack"]
