from __future__ import annotations

import socket

from tests.probes.helpers import attempt, options
from tests.support import free_port


def test_listening_port_passes() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        result = attempt("tcp", port=listener.getsockname()[1])
    assert result.ok, result.detail


def test_closed_port_is_retryable() -> None:
    result = attempt("tcp", port=free_port())
    assert not result.ok
    assert result.retryable
    assert result.detail == "Connection refused"


def test_target() -> None:
    assert options("tcp", port=8000).target() == "tcp://127.0.0.1:8000"
