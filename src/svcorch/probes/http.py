"""http: ready when a request answers with an accepted status (and, if given, a matching body).

Redirects are not followed: a 3xx is itself an answer and counts as ready by default (a login
redirect proves the app is serving). Refused, reset, timeouts, an unaccepted status and a body
that does not match are all retryable; a certificate that fails verification is fatal.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator

from svcorch.probes.base import (
    Probe,
    ProbeContext,
    ProbeOptions,
    ProbeResult,
    ProbeType,
    bounded_check,
    entry_secrets,
    error_text,
    network_words,
    redact_url,
    remaining,
    spoken,
)
from svcorch.probes.pattern import compile_pattern

if TYPE_CHECKING:
    import ssl

BODY_LIMIT = 64 * 1024  # enough for any health page; a huge body is not read to the end
DETAIL_LIMIT = 200
_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)
_RANGE = re.compile(r"^(\d{3})\s*-\s*(\d{3})$")


def status_range(item: int | str) -> tuple[int, int]:
    """``200`` / ``"204"`` / ``"2xx"`` / ``"200-299"`` -> inclusive (low, high)."""
    text = str(item).strip()
    if text.isdigit():
        low = high = int(text)
    elif match := _CLASS.match(text):
        low, high = int(match.group(1)) * 100, int(match.group(1)) * 100 + 99
    elif match := _RANGE.match(text):
        low, high = int(match.group(1)), int(match.group(2))
    else:
        raise ValueError(f"invalid status {item!r} (use e.g. 200, '2xx' or '200-299')")
    if not 100 <= low <= high <= 599:
        raise ValueError(f"invalid status {item!r}: statuses run from 100 to 599")
    return low, high


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, int | str) else value


class HttpOptions(ProbeOptions):
    type: Literal["http"] = "http"
    url: str = Field(description="http:// or https:// URL; user:password@ becomes basic auth")
    method: Literal["GET", "HEAD"] = "GET"
    status: Annotated[tuple[int | str, ...], BeforeValidator(_as_list)] = Field(
        default=("2xx", "3xx"), description="accepted statuses: 200, '2xx', '200-299'"
    )
    body: str | None = Field(default=None, description="regex (RE2 syntax) the body must contain")
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        shown = redact_url(value)
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"invalid url {shown!r}: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"url must start with http:// or https://, got {shown!r}")
        if not parts.hostname:
            raise ValueError(f"url has no host: {shown!r}")
        return value

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        if not value:
            raise ValueError("status needs at least one accepted status")
        for item in value:
            status_range(item)
        return value

    @field_validator("body")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_pattern(value)
            except ValueError as exc:
                raise ValueError(f"invalid body regex {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _head_has_no_body(self) -> Self:
        if self.method == "HEAD" and self.body is not None:
            raise ValueError("a HEAD response has no body: drop `body` or use GET")
        return self

    def accepts(self, status: int) -> bool:
        return any(low <= status <= high for low, high in map(status_range, self.status))

    def target(self) -> str:
        shown = redact_url(self.url)
        return shown if self.method == "GET" else f"{self.method} {shown}"

    def secrets(self) -> list[str]:
        found = super().secrets()
        for name, value in self.headers.items():
            # "Bearer abc": the credential alone may be echoed back too
            found += entry_secrets(name, value)
        return found


class HttpProbe:
    def __init__(self, options: HttpOptions) -> None:
        self.options = options
        # linear time whatever the server sends: see probes/pattern.py
        self.body = compile_pattern(options.body) if options.body is not None else None

    def check(self, deadline: float) -> ProbeResult:
        return bounded_check(self.options, deadline, self._attempt)

    def _attempt(self, stop_at: float) -> ProbeResult:
        import http.client
        import ssl

        parts = urlsplit(self.options.url)
        timeout = remaining(stop_at)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=timeout, context=self._tls()
            )
        else:
            connection = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=timeout
            )
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(self.options.method, path, headers=self._headers())
            response = connection.getresponse()
            body = response.read(BODY_LIMIT) if self.options.method == "GET" else b""
        except ssl.SSLCertVerificationError as exc:
            # waiting does not make a certificate valid: fix it, or set verify_tls: false
            return ProbeResult.failed(error_text(exc), retryable=False)
        except (OSError, http.client.HTTPException) as exc:
            return ProbeResult.failed(_sentence(exc, timeout), retryable=True)
        finally:
            connection.close()
        return self._judge(response.status, response.reason, body)

    def _judge(self, status: int, reason: str, body: bytes) -> ProbeResult:
        text = body.decode(errors="replace")
        answer = f"HTTP {status} {reason}".rstrip()
        if not self.options.accepts(status):
            return ProbeResult.failed(f"{answer}{_snippet(text)}", retryable=True)
        if self.body is not None and self.body.search(text) is None:
            return ProbeResult.failed(
                f"{answer}, but the body does not match /{self.body.pattern}/{_snippet(text)}",
                retryable=True,
            )
        return ProbeResult.passed(answer)

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "svcorch-probe", "Connection": "close"}
        parts = urlsplit(self.options.url)
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        return headers | self.options.headers

    def _tls(self) -> ssl.SSLContext:
        import ssl

        context = ssl.create_default_context()
        if not self.options.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _sentence(exc: BaseException, timeout: float) -> str:
    """``no answer within 1s``, ``Connection refused``, or what was wrong with the answer."""
    import http.client

    if isinstance(exc, http.client.BadStatusLine) and not isinstance(
        exc, http.client.RemoteDisconnected
    ):
        return f"not an HTTP answer: {spoken(str(exc))}"
    if isinstance(exc, http.client.IncompleteRead):
        return f"the answer ended after {len(exc.partial)} bytes, before its announced end"
    return network_words(exc, timeout) or error_text(exc)


def _snippet(text: str) -> str:
    shown = spoken(text, DETAIL_LIMIT)
    return ": " + shown if shown else ""


def _create(options: ProbeOptions, context: ProbeContext) -> Probe:
    assert isinstance(options, HttpOptions)
    return HttpProbe(options)


PROBE_TYPE = ProbeType(name="http", options=HttpOptions, create=_create)
