"""The probe interface: one attempt is ``check(deadline) -> ProbeResult``.

A failed attempt is a value, not an exception. Options are frozen pydantic models that the
catalogue validates; each probe type registers its options model and a factory.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Protocol, Self
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from svcorch.durations import Duration

# re-exported: probe modules and plugins find them beside the rest of the probe interface
from svcorch.redaction import SECRET_WORDS as SECRET_WORDS  # noqa: PLC0414
from svcorch.redaction import Credentials as Credentials  # noqa: PLC0414
from svcorch.redaction import Redactor as Redactor  # noqa: PLC0414
from svcorch.redaction import entry_secrets as entry_secrets  # noqa: PLC0414
from svcorch.redaction import header_secrets as header_secrets  # noqa: PLC0414
from svcorch.redaction import is_secret_key as is_secret_key  # noqa: PLC0414
from svcorch.redaction import redact as redact  # noqa: PLC0414
from svcorch.redaction import redact_url as redact_url  # noqa: PLC0414


def split_server_url(url: str, kind: str, schemes: tuple[str, str]) -> SplitResult:
    """Split a ``scheme://user:pw@host:port/path`` server URL, or ValueError saying why not.

    ``schemes`` is the plain and the TLS spelling. Options belong in probe keys, so a query
    or fragment is refused. Messages show the URL with its password masked.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"invalid {kind} url {shown!r}: {exc}") from None
    if parts.scheme not in schemes:
        raise ValueError(
            f"{kind} url must start with {schemes[0]}:// or {schemes[1]}://, got {shown!r}"
        )
    if not parts.hostname:
        raise ValueError(f"{kind} url has no host: {shown!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{kind} url: give options as probe keys, not in the query: {shown!r}")
    return parts


def error_text(exc: BaseException) -> str:
    """An error's own words: ``Connection refused``, not ``[Errno 111] Connection refused``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = _ERRNO.sub("", str(exc)).strip()
    return text or type(exc).__name__


_ERRNO = re.compile(r"\[Errno -?\d+\] ")
_CHAIN_LIMIT = 16  # client libraries nest a few levels; a cycle must not hang us
SPOKEN_LIMIT = 200


def no_answer(seconds: float) -> str:
    """What every probe says when the server stayed silent: ``no answer within 1s``.

    To the hundredth: a client's timeout is the budget less the few milliseconds the attempt
    took to start (0.496s of 0.5s), and it is the budget the user set.
    """
    shown = round(seconds, 2) or seconds
    return f"no answer within {shown:g}s"


def error_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every error it wraps, outermost first.

    Client libraries wrap the error that says what happened in their own: as the cause or
    context (redis, pymysql), in ``.reason`` (urllib3), ``.exception`` and ``.exceptions``
    (pika) or in their arguments (urllib3's ``ProtocolError('Connection aborted.', ...)``).
    """
    chain: list[BaseException] = []
    pending = [exc]
    while pending and len(chain) < _CHAIN_LIMIT:
        current = pending.pop(0)
        if any(current is seen for seen in chain):
            continue
        chain.append(current)
        inner: list[object] = [
            getattr(current, "exception", None),
            getattr(current, "reason", None),
            *list(getattr(current, "exceptions", None) or ())[-1:],
            *current.args,
            current.__cause__,
            current.__context__,
        ]
        pending += [item for item in inner if isinstance(item, BaseException)]
    return chain


def network_words(exc: BaseException, timeout: float) -> str | None:
    """What a network failure was, as a sentence: ``no answer within 1s`` for any timeout in
    the chain, else the OS's words (``Connection refused``); None when it was neither."""
    from http.client import RemoteDisconnected

    chain = error_chain(exc)
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        return no_answer(timeout)
    if any(isinstance(e, RemoteDisconnected) for e in chain):
        return "the server closed the connection without answering"
    for error in chain:
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
    return None


def spoken(text: str, limit: int = SPOKEN_LIMIT) -> str:
    """A server's own words made safe to print: one line, control characters shown as
    escapes (a terminal must not obey them), at most ``limit`` characters."""
    flat = " ".join(text.split())
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in flat)
    return shown if len(shown) <= limit else shown[:limit] + "..."


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one attempt (or of a whole wait)."""

    ok: bool
    detail: str
    retryable: bool = True
    elapsed: float = 0.0

    @classmethod
    def passed(cls, detail: str, elapsed: float = 0.0) -> ProbeResult:
        return cls(ok=True, detail=detail, retryable=False, elapsed=elapsed)

    @classmethod
    def failed(cls, detail: str, *, retryable: bool, elapsed: float = 0.0) -> ProbeResult:
        return cls(ok=False, detail=detail, retryable=retryable, elapsed=elapsed)

    def scrubbed(self, secrets: Iterable[str]) -> ProbeResult:
        """This result with every secret removed from its detail."""
        return replace(self, detail=redact(self.detail, secrets))


class ProbeOptions(BaseModel):
    """Options common to every probe type; each type subclasses this with its own keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type_name: ClassVar[str] = ""

    type: str
    timeout: Duration = timedelta(seconds=60)
    period: Duration = timedelta(seconds=1)
    attempt_timeout: Duration | None = None

    def effective_attempt_timeout(self) -> float:
        """Seconds one attempt may take: ``attempt_timeout``, else ``min(5s, timeout)``."""
        if self.attempt_timeout is not None:
            return self.attempt_timeout.total_seconds()
        return min(5.0, self.timeout.total_seconds())

    def target(self) -> str:
        """What the probe tries, for messages; never contains a secret."""
        return self.type

    def secrets(self) -> list[str]:
        """Every secret value in these options, so messages can be scrubbed of them.

        Only options the catalogue set count: a default is printed in the docs and is no
        secret (RabbitMQ's ``guest``), and masking it would hide a user named the same.
        """
        found: list[str] = []
        for name in sorted(self.model_fields_set):
            value = getattr(self, name)
            if isinstance(value, str):
                found += entry_secrets(name, value)
        return found


class UrlOrPartsOptions(ProbeOptions):
    """A server given either as ``url`` or as separate parts (host, port, ...), never both.

    Subclasses list their parts in ``url_parts`` and parse their scheme in ``parse_url``
    (raising ValueError with a message that shows the URL redacted).
    """

    url_parts: ClassVar[frozenset[str]] = frozenset()

    url: str | None = None

    @classmethod
    def parse_url(cls, url: str) -> object:
        raise NotImplementedError(f"{cls.__name__} must say how its URLs are read")

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is not None:
            cls.parse_url(value)
        return value

    @model_validator(mode="after")
    def _url_or_parts(self) -> Self:
        clash = self.model_fields_set & self.url_parts if self.url is not None else set()
        if clash:
            raise ValueError(f"give either `url` or {', '.join(sorted(clash))}, not both")
        return self


@dataclass(frozen=True)
class ProbeContext:
    """What a probe may know about the service it checks."""

    service: str
    base_dir: Path = field(default_factory=Path.cwd)
    env: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    log_offset: int = 0


class Probe(Protocol):
    """One readiness or liveness check. ``deadline`` is an absolute ``time.monotonic()``."""

    def check(self, deadline: float) -> ProbeResult: ...


@dataclass(frozen=True)
class ProbeType:
    """A registered probe type: its name, options model and factory."""

    name: str
    options: type[ProbeOptions]
    create: Callable[[ProbeOptions, ProbeContext], Probe]


MIN_BUDGET = 0.001


def attempt_budget(options: ProbeOptions, deadline: float) -> float:
    """Seconds this attempt may take: the attempt timeout, cut short by the overall deadline."""
    left = deadline - time.monotonic()
    return max(min(options.effective_attempt_timeout(), left), MIN_BUDGET)


def remaining(stop_at: float) -> float:
    """Seconds left until ``stop_at`` (a ``time.monotonic()``), never zero: clients reject 0."""
    return max(stop_at - time.monotonic(), MIN_BUDGET)


def run_bounded(
    attempt: Callable[[float], ProbeResult], budget: float, *, name: str = "probe"
) -> ProbeResult:
    """Run ``attempt(stop_at)`` in a daemon thread; stop waiting for it when the budget is spent.

    Each probe sets every client timeout from ``stop_at``, which ends a silent server's attempt
    on time. But some client steps take several timeouts in a row (pymysql's handshake reads,
    pika's connection workflow) and a server that trickles bytes resets a per-read timeout, so
    the caller's promise is kept here. An abandoned attempt still ends by its own timeouts
    shortly after and closes its own connection; nobody reads its answer.
    """
    started = time.monotonic()
    stop_at = started + budget
    results: list[ProbeResult] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            results.append(attempt(stop_at))
        except BaseException as exc:  # handed to the caller: a probe bug must not hide
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name=f"svcorch-probe-{name}", daemon=True).start()
    if not done.wait(budget):
        return ProbeResult.failed(
            no_answer(budget),
            retryable=True,
            elapsed=time.monotonic() - started,
        )
    if errors:
        raise errors[0]
    return replace(results[0], elapsed=time.monotonic() - started)


def bounded_check(
    options: ProbeOptions, deadline: float, attempt: Callable[[float], ProbeResult]
) -> ProbeResult:
    """One client attempt within its budget, its detail scrubbed of every secret in options."""
    budget = attempt_budget(options, deadline)
    return run_bounded(attempt, budget, name=options.type).scrubbed(options.secrets())
