"""The control protocol's parsing: every message the daemon will not act on is a BadRequest
with one line saying why (the real daemon is fuzzed in tests/reliability)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from svcorch import control
from svcorch.control import (
    MAX_DEPTH,
    BadRequest,
    Request,
    decode,
    valid_pid,
)
from svcorch.state import StateLayout
from svcorch.supervisor import Daemon


def nested(depth: int) -> dict[str, Any]:
    """A ping ``depth`` objects deep, the outer one included."""
    value: Any = 1
    for _ in range(depth - 1):
        value = {"a": value}
    return {"op": "ping", "x": value}


def test_a_request_parses_to_its_fields() -> None:
    message = {
        "op": "down",
        "file": "/srv/app/services.yaml",
        "environ": {"PATH": "/usr/bin", "EMPTY": ""},
        "services": ["web"],
        "profiles": ["debug"],
        "timeout": 5,
        "from_the_future": {"ignored": True},
    }
    assert Request.parse(decode(json.dumps(message).encode())) == Request(
        op="down",
        file="/srv/app/services.yaml",
        environ={"PATH": "/usr/bin", "EMPTY": ""},
        services=("web",),
        profiles=("debug",),
        timeout=5.0,
    )
    assert Request.parse({"op": "ping"}) == Request(op="ping")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "garbled message: Expecting value: line 1 column 1 (char 0)"),
        (b"\xff\xfe", "garbled message: "),
        (b"[1, 2]", "garbled message: not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, f"nested deeper than {MAX_DEPTH} levels"),
        (b'{"op": "ping", "x": ' + b"[" * 500 + b"]" * 500 + b"}", "nested deeper than"),
        (b'{"op": ' + b"9" * 5000 + b"}", "garbled message: Exceeds the limit"),
    ],
)
def test_garbled_or_deep_lines_are_refused(line: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode(line)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 300
    assert caught.value.exit_code == 2


def test_the_depth_bound_is_exact() -> None:
    decode(json.dumps(nested(MAX_DEPTH)).encode())
    with pytest.raises(BadRequest, match="nested deeper"):
        decode(json.dumps(nested(MAX_DEPTH + 1)).encode())


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({}, "unknown request None"),
        ({"op": "reboot"}, "unknown request 'reboot'"),
        ({"op": ["up"]}, "unknown request (a JSON array)"),
        ({"op": "up", "file": "services.yaml"}, "`file` must be an absolute path"),
        ({"op": "up", "file": 7}, "`file` must be an absolute path, got 7"),
        ({"op": "up", "file": "/a\x00b"}, "`file` must be an absolute path"),
        ({"op": "up", "environ": ["PATH=/bin"]}, "`environ` must be an object"),
        ({"op": "up", "environ": {"A=B": "c"}}, "`environ` has a bad variable 'A=B'"),
        ({"op": "up", "environ": {"": "c"}}, "`environ` has a bad variable ''"),
        ({"op": "up", "environ": {"A": 1}}, "`environ` has a bad variable 'A'"),
        ({"op": "up", "environ": {"A": "x\x00y"}}, "`environ` has a bad variable 'A'"),
        ({"op": "up", "services": "web"}, "`services` must be a list of names, got 'web'"),
        ({"op": "up", "services": [1]}, "`services` must be a list of names"),
        ({"op": "up", "services": ["x" * 300]}, "`services` must be a list of names"),
        ({"op": "up", "profiles": {"a": 1}}, "`profiles` must be a list of names"),
        ({"op": "up", "rollback": "yes"}, "`rollback` must be true or false, got 'yes'"),
        ({"op": "up", "no_recreate": 1}, "`no_recreate` must be true or false, got 1"),
        ({"op": "down", "timeout": -1}, "`timeout` must be seconds from 0 to 604800, got -1"),
        ({"op": "down", "timeout": True}, "`timeout` must be seconds"),
        ({"op": "down", "timeout": 2**70}, "`timeout` must be seconds"),
        ({"op": "down", "timeout": float("nan")}, "`timeout` must be seconds"),
        ({"op": "down", "timeout": float("inf")}, "`timeout` must be seconds"),
    ],
)
def test_each_bad_field_is_named(message: dict[str, Any], error: str) -> None:
    with pytest.raises(BadRequest) as caught:
        Request.parse(message)
    assert error in str(caught.value)


@pytest.mark.parametrize(
    ("value", "pid"),
    [(4242, 4242), (-1, None), (0, None), (1, None), (2**70, None), (True, None), ("12", None)],
)
def test_a_pid_in_an_answer_is_used_only_when_it_is_one(value: object, pid: int | None) -> None:
    assert valid_pid(value) == pid


def test_the_daemon_drops_a_client_that_leaves_its_answers_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SEND_TIMEOUT, over a real socket pair: the peer never reads, the kernel buffer fills,
    and the daemon gives up on it instead of waiting forever (docs/control.md)."""
    monkeypatch.setattr(control, "SEND_TIMEOUT", 0.2)
    daemon = Daemon(StateLayout(tmp_path), tmp_path / "services.yaml", "test")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    async def scenario() -> float:
        _, writer = await asyncio.open_unix_connection(sock=ours)
        started = time.monotonic()
        for _ in range(50):  # 50 answers of 1 MiB each: far more than any socket buffer
            await daemon._send(writer, {"event": {"detail": "x" * (1 << 20)}})
        took = time.monotonic() - started
        assert writer.is_closing()
        return took

    try:
        took = asyncio.run(scenario())
    finally:
        theirs.close()
    assert took < 5.0  # one SEND_TIMEOUT, then every later send is skipped at once
