from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.probes.conftest import REDIS_PASSWORD, require_system
from tests.probes.helpers import ATTEMPT, TOLERANCE, attempt, options, timed_attempt
from tests.support import free_port, silent_tcp_server


def test_ping_answers_pong() -> None:
    port = require_system("redis")
    result = attempt("redis", port=port)
    assert result.ok, result.detail
    assert result.detail == "PONG"


def test_url_with_database_and_role() -> None:
    port = require_system("redis")
    result = attempt("redis", url=f"redis://127.0.0.1:{port}/2", role="master")
    assert result.ok, result.detail
    assert result.detail == "PONG, role master"


def test_wrong_role_is_retryable_and_says_so() -> None:
    port = require_system("redis")
    result = attempt("redis", port=port, role="replica")
    assert not result.ok
    assert result.retryable
    assert "role is master, expected replica" in result.detail


def test_closed_port_is_retryable() -> None:
    port = free_port()
    result = attempt("redis", port=port)
    assert not result.ok
    assert result.retryable
    assert "Connection refused" in result.detail


def test_password_server_accepts_the_right_password(redis_with_password: int) -> None:
    result = attempt("redis", port=redis_with_password, password=REDIS_PASSWORD)
    assert result.ok, result.detail


def test_wrong_password_is_fatal_with_the_servers_words(redis_with_password: int) -> None:
    wrong = "not-the-redis-pw"
    url = f"redis://:{wrong}@127.0.0.1:{redis_with_password}/0"
    result = attempt("redis", url=url)
    assert not result.ok
    assert not result.retryable
    assert "invalid username-password pair" in result.detail
    assert wrong not in result.detail
    assert result.elapsed < 1


def test_missing_password_is_fatal(redis_with_password: int) -> None:
    result = attempt("redis", port=redis_with_password)
    assert not result.ok
    assert not result.retryable
    assert "Authentication required" in result.detail


def test_silent_server_times_out_on_time() -> None:
    with silent_tcp_server() as port:
        result, took = timed_attempt("redis", port=port)
    assert not result.ok
    assert result.retryable
    assert took < ATTEMPT * TOLERANCE
    assert took >= ATTEMPT * 0.9


def test_target_hides_the_password() -> None:
    chosen = options("redis", url="rediss://app:pw%40x@10.0.0.1:6380/3")
    assert chosen.target() == "rediss://app:***@10.0.0.1:6380/3"
    assert set(chosen.secrets()) >= {"pw@x"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "http://127.0.0.1:6379"}, "redis:// or rediss://"),
        ({"url": "redis://127.0.0.1:6379/x"}, "database number"),
        ({"url": "redis://127.0.0.1:99999"}, "invalid redis url"),
        ({"url": "redis://127.0.0.1", "port": 1}, "either `url` or port"),
        ({"role": "primary"}, "role"),
    ],
)
def test_bad_options_fail_at_load(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        options("redis", **values)


def test_load_errors_never_show_a_password() -> None:
    with pytest.raises(ValidationError) as caught:
        options("redis", url="http://:hunter2pw@127.0.0.1")
    assert all("hunter2pw" not in error["msg"] for error in caught.value.errors())
