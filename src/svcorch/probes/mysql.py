"""mysql: ready when a login succeeds and ``SELECT 1`` answers (MySQL and MariaDB).

Fatal: the server refuses who we are or what we ask for (access denied, unknown database,
host not allowed, account locked, expired password). Everything else is retryable: refused,
lost connection, timeouts, "server shutdown in progress", "too many connections".
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, model_validator

from svcorch.probes.base import (
    Probe,
    ProbeContext,
    ProbeOptions,
    ProbeResult,
    ProbeType,
    bounded_check,
    error_text,
    network_words,
    no_answer,
    remaining,
)

if TYPE_CHECKING:
    from pymysql.connections import Connection

# MySQL/MariaDB error codes that waiting does not fix
FATAL_CODES = {
    1044: "access denied to database",
    1045: "access denied",
    1049: "unknown database",
    1130: "host not allowed",
    1251: "client does not support the authentication protocol",
    1698: "access denied (auth plugin)",
    1820: "password must be reset",
    1862: "password expired",
    3118: "account locked",
    4151: "account locked",
}


# the client's own errors for a connection that failed or broke (2003 can't connect, 2013
# lost connection): when they say it timed out, the probe says so as every probe does
CLIENT_NETWORK_CODES = {2003, 2006, 2013}


class MysqlOptions(ProbeOptions):
    type: Literal["mysql"] = "mysql"
    host: str = "127.0.0.1"
    port: int = Field(default=3306, ge=1, le=65535)
    unix_socket: str | None = Field(
        default=None, description="path of the server's socket; relative to the service's dir"
    )
    user: str = "root"
    password: str = ""
    database: str | None = Field(default=None, description="must exist and be accessible")

    @model_validator(mode="after")
    def _socket_or_tcp(self) -> Self:
        if self.unix_socket is not None and self.model_fields_set & {"host", "port"}:
            raise ValueError("give either `unix_socket` or `host`/`port`, not both")
        return self

    def target(self) -> str:
        auth = self.user + (":***" if self.password else "")
        database = self.database or ""
        if self.unix_socket is not None:
            return f"mysql://{auth}@localhost/{database}?unix_socket={self.unix_socket}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mysql://{auth}@{host}:{self.port}/{database}"


class MysqlProbe:
    def __init__(self, options: MysqlOptions, socket_path: Path | None) -> None:
        self.options = options
        self.socket_path = socket_path

    def check(self, deadline: float) -> ProbeResult:
        return bounded_check(self.options, deadline, self._attempt)

    def _attempt(self, stop_at: float) -> ProbeResult:
        import pymysql

        timeout = remaining(stop_at)
        try:
            connection = pymysql.connect(
                host=self.options.host,
                port=self.options.port,
                unix_socket=str(self.socket_path) if self.socket_path else None,
                user=self.options.user,
                password=self.options.password,
                database=self.options.database,
                connect_timeout=timeout,
                read_timeout=timeout,
                write_timeout=timeout,
            )
        except pymysql.MySQLError as exc:
            return _judge(exc, timeout)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                row = cursor.fetchone()
            version = connection.get_server_info()
        except pymysql.MySQLError as exc:
            return _judge(exc, timeout)
        finally:
            _close(connection)
        if row != (1,):
            return ProbeResult.failed(f"SELECT 1 returned {row!r}", retryable=True)
        return ProbeResult.passed(f"SELECT 1 ok (server {version})")


def _judge(exc: Exception, timeout: float) -> ProbeResult:
    """The server's words with its error number (``MySQL error 1045: Access denied for user
    ...``), not pymysql's tuple; a timeout or a refused connection said as every probe says
    it."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return ProbeResult.failed(_sentence(exc, code, timeout), retryable=code not in FATAL_CODES)


def _sentence(exc: Exception, code: int | None, timeout: float) -> str:
    message = exc.args[1] if code is not None and len(exc.args) > 1 else None
    if code is None or not isinstance(message, str):
        return network_words(exc, timeout) or error_text(exc)
    if code in CLIENT_NETWORK_CODES and "timed out" in message:
        return no_answer(timeout)
    return f"MySQL error {code}: {error_text(Exception(message))}"


def _close(connection: Connection[Any]) -> None:
    import pymysql

    # already closed by the server: the socket is released either way
    with contextlib.suppress(pymysql.MySQLError):
        connection.close()


def _create(options: ProbeOptions, context: ProbeContext) -> Probe:
    assert isinstance(options, MysqlOptions)
    socket_path = None
    if options.unix_socket is not None:
        socket_path = context.base_dir / options.unix_socket
    return MysqlProbe(options, socket_path)


PROBE_TYPE = ProbeType(name="mysql", options=MysqlOptions, create=_create)
