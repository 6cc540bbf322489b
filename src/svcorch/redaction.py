"""Keeping secrets out of output: secret-named keys, URL passwords, known secret values.

Standard library only, so that rendering output never pays for pydantic or a client library.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit, urlunsplit

SECRET_WORDS = ("password", "passwd", "token", "secret", "api_key", "apikey", "credentials")


def is_secret_key(key: str) -> bool:
    """Keys named like a secret are never shown."""
    lowered = key.lower().replace("-", "_")  # X-Api-Key is a header spelling of api_key
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


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``, in its plain and URL-quoted spellings.

    Servers and client libraries echo what they were given (a DSN, a header); a detail that
    reaches the terminal, the state file or a notifier must not carry a password.
    """
    spellings: set[str] = set()
    for secret in secrets:
        if secret:
            spellings.update((secret, unquote(secret), quote(secret, safe="")))
    # longest first, so a secret that contains another is replaced whole
    for spelling in sorted(spellings, key=len, reverse=True):
        if spelling:
            text = text.replace(spelling, "***")
    return text
