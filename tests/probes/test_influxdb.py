from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.probes.conftest import INFLUX_PASSWORD, INFLUX_USER
from tests.probes.helpers import ATTEMPT, TOLERANCE, attempt, options, timed_attempt
from tests.support import free_port, silent_tcp_server
from tests.support.servers import influx_query


def test_ping_passes_on_1_6_without_health(influxd: str) -> None:
    result = attempt("influxdb", url=influxd)
    assert result.ok, result.detail


def test_existing_database(influxd: str) -> None:
    result = attempt("influxdb", url=influxd, database="probe_db")
    assert result.ok, result.detail
    assert result.detail == "database 'probe_db' exists"


def test_missing_database_is_retryable_until_created(influxd: str) -> None:
    name = f"later_db_{free_port()}"
    result = attempt("influxdb", url=influxd, database=name)
    assert not result.ok
    assert result.retryable
    assert f"database {name!r} does not exist" in result.detail
    influx_query(influxd, f"CREATE DATABASE {name}")
    assert attempt("influxdb", url=influxd, database=name).ok


def test_bucket_against_1_x_is_fatal(influxd: str) -> None:
    result = attempt("influxdb", url=influxd, bucket="metrics")
    assert not result.ok
    assert not result.retryable
    assert "use `database`" in result.detail


def test_credentials_pass_with_auth_enabled(influxd_auth: str) -> None:
    result = attempt(
        "influxdb",
        url=influxd_auth,
        database="probe_db",
        username=INFLUX_USER,
        password=INFLUX_PASSWORD,
    )
    assert result.ok, result.detail


def test_wrong_password_is_fatal_with_the_servers_words(influxd_auth: str) -> None:
    result = attempt(
        "influxdb",
        url=influxd_auth,
        database="probe_db",
        username=INFLUX_USER,
        password="not-the-influx-pw",
    )
    assert not result.ok
    assert not result.retryable
    assert result.detail == "SHOW DATABASES: HTTP 401: authorization failed"


def test_missing_credentials_are_fatal(influxd_auth: str) -> None:
    result = attempt("influxdb", url=influxd_auth, database="probe_db")
    assert not result.ok
    assert not result.retryable
    assert "HTTP 401" in result.detail


def test_closed_port_is_retryable() -> None:
    result = attempt("influxdb", url=f"http://127.0.0.1:{free_port()}")
    assert not result.ok
    assert result.retryable
    assert "Connection refused" in result.detail


def test_silent_server_times_out_on_time() -> None:
    with silent_tcp_server() as port:
        result, took = timed_attempt("influxdb", url=f"http://127.0.0.1:{port}")
    assert not result.ok
    assert result.retryable
    assert ATTEMPT * 0.9 <= took < ATTEMPT * TOLERANCE


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "ftp://127.0.0.1"}, "http://host:port"),
        ({"database": "a", "bucket": "b"}, "not both"),
        ({"username": "admin"}, "both `username` and `password`"),
    ],
)
def test_bad_options_fail_at_load(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        options("influxdb", **values)
