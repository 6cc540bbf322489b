"""influxdb: ready when /ping answers, /health passes where it exists, and the database exists.

Works against 1.x (``database``, checked with ``SHOW DATABASES``) and 2.x (``bucket``).
Retryable: refused, timeouts, /health failing, a database or bucket not created yet (a
migrate oneshot may create it later). Fatal: 401/403 (the credentials are wrong), a
``bucket`` asked of a server without the v2 API.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from svcorch.probes.base import (
    Credentials,
    Probe,
    ProbeContext,
    ProbeOptions,
    ProbeResult,
    ProbeType,
    bounded_check,
    error_chain,
    error_text,
    network_words,
    redact_url,
    remaining,
    spoken,
)

UNAUTHORIZED = (401, 403)
NOT_FOUND = 404


class InfluxdbOptions(ProbeOptions):
    type: Literal["influxdb"] = "influxdb"
    url: str = Field(default="http://127.0.0.1:8086", description="http:// or https:// base URL")
    token: str = Field(default="", description="2.x API token, or user:password on 1.8+")
    org: str = "-"
    username: str | None = Field(default=None, description="1.x user (HTTP basic auth)")
    password: str | None = None
    database: str | None = Field(default=None, description="1.x database that must exist")
    bucket: str | None = Field(default=None, description="2.x bucket that must exist")
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        shown = redact_url(value)
        try:
            parts = urllib.parse.urlsplit(value)
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"invalid influxdb url {shown!r}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"influxdb url must be http://host:port or https://..., got {shown!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.database is not None and self.bucket is not None:
            raise ValueError("give `database` (InfluxDB 1.x) or `bucket` (2.x), not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both `username` and `password`, or neither")
        return self

    def target(self) -> str:
        where = redact_url(self.url)
        if self.database is not None:
            return f"{where} database={self.database}"
        if self.bucket is not None:
            return f"{where} bucket={self.bucket}"
        return where

    def secrets(self) -> list[str]:
        found = super().secrets()
        if self.username is not None and self.password:
            found.append(Credentials(f"{self.username}:{self.password}"))  # Basic auth
        return found

    def authorization(self) -> str | None:
        """The Authorization header for the 1.x /query endpoint, if any credentials are set."""
        if self.username is not None and self.password is not None:
            pair = f"{self.username}:{self.password}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        if self.token:
            return f"Token {self.token}"
        return None


class InfluxdbProbe:
    def __init__(self, options: InfluxdbOptions) -> None:
        self.options = options

    def check(self, deadline: float) -> ProbeResult:
        return bounded_check(self.options, deadline, self._attempt)

    def _attempt(self, stop_at: float) -> ProbeResult:
        from influxdb_client.client.influxdb_client import InfluxDBClient

        timeout = remaining(stop_at)
        client: Any = InfluxDBClient(
            url=self.options.url,
            token=self.options.token,
            org=self.options.org,
            timeout=max(1, int(timeout * 1000)),
            verify_ssl=self.options.verify_tls,
        )
        try:
            problem = self._ping(client, timeout) or self._health(client, timeout)
            if problem is not None:
                return problem
            if self.options.database is not None:
                return self._database(self.options.database, stop_at)
            if self.options.bucket is not None:
                return self._bucket(client, self.options.bucket, timeout)
            return ProbeResult.passed("ping ok")
        finally:
            client.close()

    def _ping(self, client: Any, timeout: float) -> ProbeResult | None:
        from influxdb_client.service.ping_service import PingService

        # InfluxDBClient.ping() answers False and swallows the reason; the service raises it
        try:
            PingService(client.api_client).get_ping()  # type: ignore[no-untyped-call]
        except Exception as exc:  # urllib3 and client errors alike: the server is not there yet
            return _failed_http(exc, "ping", timeout)
        return None

    def _health(self, client: Any, timeout: float) -> ProbeResult | None:
        from influxdb_client.service.health_service import HealthService

        try:
            health = HealthService(client.api_client).get_health()  # type: ignore[no-untyped-call]
        except Exception as exc:
            if getattr(exc, "status", None) == NOT_FOUND:
                return None  # 1.x before 1.8 has no /health: /ping is all it offers
            return _failed_http(exc, "health", timeout)
        if health.status != "pass":
            words = spoken(f"{health.status}: {health.message}")
            return ProbeResult.failed(f"health {words}", retryable=True)
        return None

    def _database(self, database: str, stop_at: float) -> ProbeResult:
        import ssl
        import urllib.error
        import urllib.request

        # the client's query API is v2-only; SHOW DATABASES is the 1.x way to ask
        query = urllib.parse.urlencode({"q": "SHOW DATABASES"})
        request = urllib.request.Request(f"{self.options.url}/query?{query}")  # noqa: S310
        authorization = self.options.authorization()
        if authorization is not None:
            request.add_header("Authorization", authorization)
        context = None
        if not self.options.verify_tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        timeout = remaining(stop_at)
        try:
            with urllib.request.urlopen(  # noqa: S310 - the scheme is validated as http(s)
                request, timeout=timeout, context=context
            ) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return _failed_http(exc, "SHOW DATABASES", timeout)
        except ValueError as exc:
            return ProbeResult.failed(f"SHOW DATABASES: {error_text(exc)}", retryable=True)
        except Exception as exc:  # refused, reset, timed out, not HTTP: may all heal
            return _failed_http(exc, "SHOW DATABASES", timeout)
        if database in _database_names(body):
            return ProbeResult.passed(f"database {database!r} exists")
        return ProbeResult.failed(
            f"database {database!r} does not exist (yet: retrying, a migration may create it)",
            retryable=True,
        )

    def _bucket(self, client: Any, bucket: str, timeout: float) -> ProbeResult:
        try:
            found = client.buckets_api().find_bucket_by_name(bucket)
        except Exception as exc:
            if getattr(exc, "status", None) == NOT_FOUND:
                return ProbeResult.failed(
                    "the server has no /api/v2/buckets (InfluxDB 1.x: use `database`)",
                    retryable=False,
                )
            return _failed_http(exc, "buckets", timeout)
        if found is None:
            return ProbeResult.failed(
                f"bucket {bucket!r} does not exist (yet: retrying, a setup step may create it)",
                retryable=True,
            )
        return ProbeResult.passed(f"bucket {bucket!r} exists")


def _failed_http(exc: Exception, step: str, timeout: float) -> ProbeResult:
    """401/403 are fatal; any other status or network error may heal."""
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    if isinstance(status, int):
        words = spoken(_server_words(exc))
        return ProbeResult.failed(
            f"{step}: HTTP {status}{': ' + words if words else ''}",
            retryable=status not in UNAUTHORIZED,
        )
    return ProbeResult.failed(f"{step}: {_network_sentence(exc, timeout)}", retryable=True)


def _network_sentence(exc: Exception, timeout: float) -> str:
    """urllib3's ``HTTPConnectionPool(host=..., port=...): Max retries exceeded ... (Caused by
    NewConnectionError('<urllib3.connection.HTTPConnection object at 0x...>: ...'))`` said as
    ``Connection refused``; an answer that is not HTTP, with the server's first words."""
    from http.client import BadStatusLine, RemoteDisconnected

    for error in error_chain(exc):
        if isinstance(error, BadStatusLine) and not isinstance(error, RemoteDisconnected):
            return f"not an HTTP answer: {spoken(str(error))}"
    return network_words(exc, timeout) or error_text(exc)


def _server_words(exc: Exception) -> str:
    """The ``error`` or ``message`` the server put in its JSON body, else the reason."""
    import urllib.error

    body: object = getattr(exc, "body", None)
    if body is None and isinstance(exc, urllib.error.HTTPError):
        try:
            body = exc.read()
        except OSError:
            body = None
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str) and body.strip():
        try:
            parsed = json.loads(body)
        except ValueError:
            return body.strip()[:300]
        if isinstance(parsed, dict):
            return str(parsed.get("error") or parsed.get("message") or body.strip())[:300]
        return body.strip()[:300]
    return str(getattr(exc, "reason", "") or "")


def _database_names(body: object) -> set[str]:
    """Names from a 1.x SHOW DATABASES answer: results[0].series[0].values[*][0]."""
    names: set[str] = set()
    if not isinstance(body, dict):
        return names
    for result in body.get("results") or []:
        for series in result.get("series") or []:
            names.update(str(row[0]) for row in series.get("values") or [] if row)
    return names


def _create(options: ProbeOptions, context: ProbeContext) -> Probe:
    assert isinstance(options, InfluxdbOptions)
    return InfluxdbProbe(options)


PROBE_TYPE = ProbeType(name="influxdb", options=InfluxdbOptions, create=_create)
