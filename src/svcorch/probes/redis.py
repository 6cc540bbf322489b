"""redis: ready when PING answers PONG (and, if asked, the server has the expected role).

Retryable: refused, reset, timeouts, ``LOADING`` (the dataset is still being read), a role
other than the expected one (a replica may yet be promoted). Fatal: authentication
(``WRONGPASS``, ``NOAUTH``, a password sent to a server without one) and ACL ``NOPERM``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal
from urllib.parse import unquote

from pydantic import Field

from svcorch.probes.base import (
    Probe,
    ProbeContext,
    ProbeOptions,
    ProbeResult,
    ProbeType,
    UrlOrPartsOptions,
    bounded_check,
    error_text,
    network_words,
    remaining,
    split_server_url,
    spoken,
)

DEFAULT_PORT = 6379
SCHEMES = ("redis", "rediss")
# what INFO says for each role the user may ask for
INFO_ROLE = {"master": "master", "replica": "slave"}


@dataclass(frozen=True)
class RedisEndpoint:
    """Where and how to connect, from either ``url`` or the separate keys."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool


class RedisOptions(UrlOrPartsOptions):
    url_parts: ClassVar[frozenset[str]] = frozenset(
        {"host", "port", "db", "username", "password", "tls"}
    )

    type: Literal["redis"] = "redis"
    url: str | None = Field(
        default=None, description="redis://[[user]:password@]host[:port][/db], or rediss://"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    db: int = Field(default=0, ge=0)
    username: str | None = None
    password: str | None = None
    tls: bool = False
    role: Literal["master", "replica"] | None = None

    @classmethod
    def parse_url(cls, url: str) -> RedisEndpoint:
        return parse_redis_url(url)

    def endpoint(self) -> RedisEndpoint:
        if self.url is not None:
            return parse_redis_url(self.url)
        return RedisEndpoint(self.host, self.port, self.db, self.username, self.password, self.tls)

    def target(self) -> str:
        point = self.endpoint()
        scheme = "rediss" if point.tls else "redis"
        auth = ""
        if point.username or point.password is not None:
            auth = (point.username or "") + (":***" if point.password is not None else "") + "@"
        return f"{scheme}://{auth}{_netloc_host(point.host)}:{point.port}/{point.db}"

    def secrets(self) -> list[str]:
        found = super().secrets()
        point = self.endpoint()
        if point.password:
            found.append(point.password)
        return found


def parse_redis_url(url: str) -> RedisEndpoint:
    """``redis://user:pw@host:port/db`` -> endpoint; ValueError names what is wrong."""
    parts = split_server_url(url, "redis", ("redis", "rediss"))
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"redis url: the path must be a database number, got {path!r}")
    return RedisEndpoint(
        host=parts.hostname or "",  # split_server_url refused an empty host
        port=parts.port or DEFAULT_PORT,
        db=int(path) if path else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=parts.scheme == "rediss",
    )


def _sentence(exc: BaseException, timeout: float) -> str:
    """The server's reply (``MASTERDOWN ...``), else what the network did, in a sentence."""
    from redis.exceptions import InvalidResponse, ResponseError

    if isinstance(exc, ResponseError):
        return error_text(exc)
    if isinstance(exc, InvalidResponse):
        return f"not a Redis server's answer: {spoken(_unquoted(str(exc)))}"
    return network_words(exc, timeout) or error_text(exc)


def _unquoted(text: str) -> str:
    """redis-py's ``Protocol Error: b'...'`` -> the bytes the server sent, as text."""
    import ast

    _, _, quoted = text.partition(": ")
    try:
        raw = ast.literal_eval(quoted)
    except (ValueError, SyntaxError):
        return quoted or text
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _netloc_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class RedisProbe:
    def __init__(self, options: RedisOptions) -> None:
        self.options = options

    def check(self, deadline: float) -> ProbeResult:
        return bounded_check(self.options, deadline, self._attempt)

    def _attempt(self, stop_at: float) -> ProbeResult:
        import redis
        from redis.backoff import NoBackoff
        from redis.exceptions import NoPermissionError
        from redis.retry import Retry

        point = self.options.endpoint()
        timeout = remaining(stop_at)
        client = redis.Redis(
            host=point.host,
            port=point.port,
            db=point.db,
            username=point.username,
            password=point.password,
            ssl=point.tls,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # redis-py retries 3 times with backoff by default; the wait loop owns retrying
            retry=Retry(NoBackoff(), 0),
            # RESP2: every server speaks it (HELLO needs Redis 6), and an unauthenticated
            # PING then gets the plain "NOAUTH Authentication required."
            protocol=2,
        )
        try:
            client.ping()
            role = None if self.options.role is None else client.info("replication").get("role")
        except redis.AuthenticationError as exc:
            return ProbeResult.failed(error_text(exc), retryable=False)
        except NoPermissionError as exc:
            return ProbeResult.failed(error_text(exc), retryable=False)
        except redis.BusyLoadingError as exc:
            return ProbeResult.failed(f"LOADING: {error_text(exc)}", retryable=True)
        except (redis.RedisError, OSError) as exc:
            # refused, reset, timed out, MASTERDOWN, max clients: all may heal
            return ProbeResult.failed(_sentence(exc, timeout), retryable=True)
        finally:
            client.close()
        return self._judge_role(role)

    def _judge_role(self, role: object) -> ProbeResult:
        wanted = self.options.role
        if wanted is None:
            return ProbeResult.passed("PONG")
        if role == INFO_ROLE[wanted]:
            return ProbeResult.passed(f"PONG, role {wanted}")
        shown = "replica" if role == "slave" else str(role)
        return ProbeResult.failed(
            f"PONG, but role is {shown}, expected {wanted} (retrying: roles change on failover)",
            retryable=True,
        )


def _create(options: ProbeOptions, context: ProbeContext) -> Probe:
    assert isinstance(options, RedisOptions)
    return RedisProbe(options)


PROBE_TYPE = ProbeType(name="redis", options=RedisOptions, create=_create)
