from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from svcorch.probes.base import ProbeContext
from tests.probes.conftest import require_system
from tests.probes.helpers import ATTEMPT, TOLERANCE, attempt, options, timed_attempt
from tests.support import free_port, silent_tcp_server


def test_select_1_as_root() -> None:
    port = require_system("mysql")
    result = attempt("mysql", port=port)
    assert result.ok, result.detail
    assert result.detail.startswith("SELECT 1 ok (server ")


def test_existing_database() -> None:
    port = require_system("mysql")
    result = attempt("mysql", port=port, database="mysql")
    assert result.ok, result.detail


def test_wrong_password_is_fatal_with_the_servers_words() -> None:
    port = require_system("mysql")
    result = attempt("mysql", port=port, password="not-the-root-pw")
    assert not result.ok
    assert not result.retryable
    assert result.detail.startswith("MySQL error 1045: Access denied for user 'root'@")
    assert "not-the-root-pw" not in result.detail


def test_unknown_database_is_fatal() -> None:
    port = require_system("mysql")
    result = attempt("mysql", port=port, database="svcorch_no_such_db")
    assert not result.ok
    assert not result.retryable
    assert result.detail == "MySQL error 1049: Unknown database 'svcorch_no_such_db'"


def test_closed_port_is_retryable() -> None:
    result = attempt("mysql", port=free_port())
    assert not result.ok
    assert result.retryable
    assert result.detail.startswith("MySQL error 2003: Can't connect to MySQL server on ")
    assert result.detail.endswith("(Connection refused)"), "the OS's words, not [Errno 111]"


def test_missing_socket_is_retryable(tmp_path: Path) -> None:
    context = ProbeContext(service="db", base_dir=tmp_path)
    result = attempt("mysql", context, unix_socket="run/mysqld.sock")
    assert not result.ok
    assert result.retryable
    assert "2003" in result.detail


def test_silent_server_times_out_on_time() -> None:
    with silent_tcp_server() as port:
        result, took = timed_attempt("mysql", port=port)
    assert not result.ok
    assert result.retryable
    assert ATTEMPT * 0.9 <= took < ATTEMPT * TOLERANCE


def test_target_hides_the_password() -> None:
    chosen = options("mysql", user="app", password="pw", database="shop")
    assert chosen.target() == "mysql://app:***@127.0.0.1:3306/shop"
    assert chosen.secrets() == ["pw"]


def test_socket_and_port_together_fail_at_load() -> None:
    with pytest.raises(ValidationError, match="either `unix_socket` or `host`/`port`"):
        options("mysql", unix_socket="/run/mysqld/mysqld.sock", port=3307)
