"""The probe interface: one attempt is ``check(deadline) -> ProbeResult``.

A failed attempt is a value, not an exception. Options are frozen pydantic models that the
catalogue validates; each probe type registers its options model and a factory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

from svcorch.durations import Duration

SECRET_WORDS = ("password", "passwd", "token", "secret", "api_key", "apikey", "credentials")


def is_secret_key(key: str) -> bool:
    """Keys named like a secret are never shown."""
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def redact_url(url: str) -> str:
    """``amqp://user:pw@host/`` -> ``amqp://user:***@host/``; other text unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


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
        """Every secret value in these options, so messages can be scrubbed of them."""
        found: list[str] = []
        for name, value in self:
            if isinstance(value, str) and value:
                if is_secret_key(name):
                    found.append(value)
                else:
                    password = _url_password(value)
                    if password:
                        found.append(password)
        return found


def _url_password(value: str) -> str | None:
    if "://" not in value:
        return None
    try:
        return urlsplit(value).password
    except ValueError:
        return None


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
