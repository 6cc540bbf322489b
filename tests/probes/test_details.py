"""Every client probe's failure detail is a sentence, never a client library's repr.

Each probe meets the servers a booting or broken host offers: a closed port, a listener that
never answers, one that hangs up at once, one that speaks another protocol (with a terminal
escape in it). Whatever the library raised, the detail reads like the others
(``no answer within 0.5s``, ``Connection refused``), with the server's own words where it
gave some, and nothing of ``<urllib3.connection.HTTPConnection object at 0x...>``.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from svcorch.probes.amqp import AmqpOptions, AmqpProbe
from tests.probes.helpers import attempt
from tests.support import free_port, hang_up_tcp_server, silent_tcp_server

GARBAGE = b"garbage\x1b[31m here\r\n\r\n"


def _options(type_name: str, port: int) -> dict[str, Any]:
    if type_name in ("http", "influxdb"):
        return {"url": f"http://127.0.0.1:{port}/"}
    return {"port": port}


@contextlib.contextmanager
def refused() -> Iterator[int]:
    yield free_port()


SERVERS: dict[str, Callable[[], contextlib.AbstractContextManager[int]]] = {
    "refused": refused,
    "silent": silent_tcp_server,
    "hang-up": hang_up_tcp_server,
    "garbage": lambda: hang_up_tcp_server(GARBAGE),
}
# what each probe says of each server, where the words are ours to promise
EXPECTED = {
    ("redis", "refused"): "Connection refused",
    ("amqp", "refused"): "Connection refused",
    ("http", "refused"): "Connection refused",
    ("influxdb", "refused"): "ping: Connection refused",
    ("mysql", "refused"): "MySQL error 2003: Can't connect to MySQL server on '127.0.0.1'"
    " (Connection refused)",
    ("redis", "silent"): "no answer within 0.5s",
    ("amqp", "silent"): "no answer within 0.5s",
    ("http", "silent"): "no answer within 0.5s",
    ("mysql", "silent"): "no answer within 0.5s",
    ("amqp", "hang-up"): "the server closed the connection without answering in AMQP",
    ("http", "hang-up"): "the server closed the connection without answering",
    ("influxdb", "hang-up"): "ping: the server closed the connection without answering",
    ("mysql", "hang-up"): "MySQL error 2013: Lost connection to MySQL server during query",
    ("redis", "garbage"): "not a Redis server's answer: garbage\\x1b[31m here",
    ("http", "garbage"): "not an HTTP answer: garbage\\x1b[31m here",
}
# the marks of a repr, an errno prefix or a raw control character
REPR = re.compile(
    r"<[a-zA-Z_.]+[ >]|0x[0-9a-f]{6,}|\[Errno|\bb['\"]|\x1b|[A-Z][A-Za-z]+(Error|Exception)\b"
    r"|HTTPConnectionPool|Caused by|AddressFamily|^\(\d+, "
)


@pytest.mark.parametrize("server", sorted(SERVERS))
@pytest.mark.parametrize("type_name", ["redis", "amqp", "mysql", "influxdb", "http"])
def test_a_failure_is_said_in_a_sentence(type_name: str, server: str) -> None:
    with SERVERS[server]() as port:
        result = attempt(type_name, attempt_timeout=0.5, **_options(type_name, port))
    assert not result.ok
    assert result.retryable  # none of these is a configuration error
    assert not REPR.search(result.detail), result.detail
    expected = EXPECTED.get((type_name, server))
    if expected is not None:
        assert result.detail == expected
    elif server == "silent":  # the client's own timeout and svcorch's bound race: either says so
        assert re.fullmatch(r"(ping: )?no answer within 0\.[45]\d*s", result.detail), result.detail


def test_pikas_own_handshake_timeout_is_said_as_no_answer() -> None:
    """pika's stack timeout may fire before svcorch's bound: its repr (``Timeout during AMQP
    handshake'127.0.0.1'/(<AddressFamily.AF_INET: 2>, ...``) must not become the detail."""
    probe = AmqpProbe(AmqpOptions.model_validate({"type": "amqp", "port": 1}))
    with silent_tcp_server() as port:
        probe = AmqpProbe(AmqpOptions.model_validate({"type": "amqp", "port": port}))
        result = probe._attempt(time.monotonic() + 0.3)  # no bound around it: pika's timeout
    assert result.detail == "no answer within 0.3s"
    assert result.retryable
