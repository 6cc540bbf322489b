from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.probes.conftest import require_system
from tests.probes.helpers import ATTEMPT, TOLERANCE, attempt, options, timed_attempt
from tests.support import free_port, silent_tcp_server


def test_connection_and_channel_open() -> None:
    port = require_system("amqp")
    result = attempt("amqp", port=port)
    assert result.ok, result.detail


def test_url_with_default_vhost() -> None:
    port = require_system("amqp")
    result = attempt("amqp", url=f"amqp://guest:guest@127.0.0.1:{port}/%2F")
    assert result.ok, result.detail


def test_existing_queue_passes() -> None:
    import pika

    port = require_system("amqp")
    queue = f"svcorch-probe-test-{free_port()}"
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        connection.channel().queue_declare(queue, auto_delete=False, exclusive=False)
        result = attempt("amqp", port=port, queue=queue)
        assert result.ok, result.detail
        assert queue in result.detail
    finally:
        connection.channel().queue_delete(queue)
        connection.close()


def test_missing_queue_is_retryable_and_says_why() -> None:
    port = require_system("amqp")
    result = attempt("amqp", port=port, queue="svcorch-no-such-queue")
    assert not result.ok
    assert result.retryable
    assert "NOT_FOUND - no queue 'svcorch-no-such-queue'" in result.detail
    assert "may declare it" in result.detail


def test_wrong_password_is_fatal_with_the_brokers_words() -> None:
    port = require_system("amqp")
    result = attempt("amqp", port=port, password="not-the-guest-pw")
    assert not result.ok
    assert not result.retryable
    assert "ACCESS_REFUSED" in result.detail
    assert "not-the-guest-pw" not in result.detail
    assert result.elapsed < 1


def test_unknown_vhost_is_fatal() -> None:
    port = require_system("amqp")
    result = attempt("amqp", url=f"amqp://guest:guest@127.0.0.1:{port}/svcorch-nope")
    assert not result.ok
    assert not result.retryable
    assert "vhost svcorch-nope not found" in result.detail


def test_closed_port_is_retryable() -> None:
    result = attempt("amqp", port=free_port())
    assert not result.ok
    assert result.retryable
    assert result.detail == "Connection refused"


def test_silent_server_times_out_on_time() -> None:
    with silent_tcp_server() as port:
        result, took = timed_attempt("amqp", port=port)
    assert not result.ok
    assert result.retryable
    assert ATTEMPT * 0.9 <= took < ATTEMPT * TOLERANCE


def test_target_and_url_parsing() -> None:
    chosen = options("amqp", url="amqps://app:pw@mq.local/prod")
    assert chosen.target() == "amqps://app:***@mq.local:5671/prod"
    assert options("amqp").target() == "amqp://guest:***@127.0.0.1:5672/%2F"
    assert options("amqp", url="amqp://h").target() == "amqp://guest:***@h:5672/%2F"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "redis://127.0.0.1"}, "amqp:// or amqps://"),
        ({"url": "amqp://127.0.0.1/?heartbeat=5"}, "not in the query"),
        ({"url": "amqp://127.0.0.1", "vhost": "x"}, "either `url` or vhost"),
        ({"port": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_options_fail_at_load(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        options("amqp", **values)
