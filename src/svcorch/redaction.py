"""Keeping secrets out of everything svcorch writes.

Two kinds of rule, applied together by a :class:`Redactor`:

- **by value**: every secret value a catalogue holds (variables named like a secret, URL
  passwords, secret query parameters, credential headers, probe and notifier options), in
  every spelling a program may echo it in: as given, URL-encoded, JSON-escaped, base64 on its
  own or inside a longer base64 text, and ``user:password`` in base64 as a Basic header
  carries it;
- **by shape**: text that looks like a credential whoever wrote it: ``scheme://user:pw@``,
  ``?token=...``, ``Authorization: Bearer ...``.

The daemon, the engine, ``check``, the notifiers and the CLI each build one redactor from
the catalogue (and the environment it was resolved in) and pass everything they write
through it. Standard library only, so output code never pays for pydantic or a client
library; the catalogue is read by duck typing.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

MASK = "***"
SECRET_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "token",
    "secret",
    "api_key",
    "apikey",
    "credential",
)
# the last word of a name that makes it a secret: API_KEY, ACCESS_KEY, REDIS_AUTH, DB_PASS
_SECRET_LAST_WORDS = frozenset({"key", "auth", "pass", "pw", "pwd"})
# headers whose value is a credential whatever it is called
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie")
# A value shorter than this is not searched for in free text: a `TOKEN_TTL: 60` would mask
# every "60" in every pid and duration. It is still masked as a secret-named key's value.
MIN_FREE_TEXT = 4
# values of secret-named variables that are switches, not secrets (`API_TOKEN_AUTH: true`)
_NOT_SECRETS = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null", MASK})
# keys of svcorch's messages whose values are names and states, never secrets: kept as they
# are by ``Redactor.data`` (a secret equal to a service's name must not unname it)
NAME_KEYS = frozenset(
    {"service", "services", "done", "already", "blocked", "pending", "op", "action"}
    | {"old", "new", "state", "kind", "probe", "event"}
)
# a base64 run shorter than this inside a longer text is too likely to match by chance
_MIN_BASE64_CORE = 8
_B64 = "[A-Za-z0-9+/_-]"

# `scheme://user:password@`, also inside a longer string such as a command line
# (`celery --broker amqp://u:pw@host//`); the password runs to the last `@` before the host
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://([^\s:/@]*):)([^\s/]+)@")
# `?name=value` / `&name=value` (`;` too): judged by the name. The value ends where the URL
# does; a colon ends it only before a space or the end (`...?token=x: gave up after 1s`).
_QUERY_PARAMETER = re.compile(r"([?&;])([A-Za-z0-9_.\-\[\]]+)=((?:[^&#\s'\"<>:]|:(?!\s|$))*)")
# `Authorization: Basic xyz`, `"authorization": "Bearer xyz"`, `Proxy-Authorization=Token xyz`
_AUTHORIZATION = re.compile(
    r"(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:basic|bearer|token|digest|negotiate|ntlm)\s+)?)([^\s\"',;}]+)",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)  # the same few option and variable names, over and over
def is_secret_key(key: str) -> bool:
    """Keys named like a secret are never shown: ``DB_PASSWORD``, ``X-Api-Key``, ``API_KEY``."""
    lowered = key.lower().replace("-", "_")  # X-Api-Key is a header spelling of api_key
    if any(word in lowered for word in SECRET_WORDS):
        return True
    words = [word for word in re.split(r"[^a-z0-9]+", lowered) if word]
    # PWD alone is the shell's working directory, not a password
    return len(words) > 1 and words[-1] in _SECRET_LAST_WORDS


def redact_url(url: str) -> str:
    """``amqp://user:pw@host/?token=t`` -> ``amqp://user:***@host/?token=***``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    if parts.password is not None:
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        if port is not None:
            host = f"{host}:{port}"
        parts = parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}")
    if parts.query:
        parts = parts._replace(query=_QUERY_PARAMETER.sub(_mask_parameter, "?" + parts.query)[1:])
    return urlunsplit(parts)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***`` in each of its spellings.

    Servers and client libraries echo what they were given (a DSN, a header); a detail that
    reaches the terminal, the state file or a notifier must not carry a password.
    """
    return Redactor.of(secrets, min_length=1).text(text)


# -- finding secrets ---------------------------------------------------------------------------


class Credentials(str):
    """``user:password`` as a Basic header carries it, base64-encoded.

    Only its encoded spellings are secret: as plain text it shows the user name, and its
    password is a secret of its own (``amqp://shop:***@host``, not ``amqp://***@host``).
    """

    __slots__ = ()


def url_secrets(text: str) -> list[str]:
    """The credentials inside ``text``: URL passwords (and ``user:password``, for its base64
    form in a Basic header) and the values of secret-named query parameters."""
    found: list[str] = []
    if "://" in text:
        for match in _URL_USERINFO.finditer(text):
            user, password = match.group(2), match.group(3)
            if password != MASK:
                pair = Credentials(f"{unquote(user)}:{unquote(password)}")
                found += [password, unquote(password), pair]
    if "=" in text:
        for match in _QUERY_PARAMETER.finditer(text):
            if is_secret_key(match.group(2)) and match.group(3):
                found += [match.group(3), unquote_plus(match.group(3))]
    return found


def header_secrets(value: str) -> list[str]:
    """A credential header's value, its credential alone, and a Basic one decoded."""
    found = [value]
    words = value.split()
    if len(words) == 2:
        scheme, credential = words
        found.append(credential)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credential, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            if decoded:
                found += [Credentials(decoded), decoded.partition(":")[2]]
    return found


def entry_secrets(name: str, value: str) -> list[str]:
    """The secrets of one ``name: value`` entry (a variable, an option, a header)."""
    if not value:
        return []
    if name.lower() in SECRET_HEADERS:
        return header_secrets(value)
    if is_secret_key(name):
        return [value, *url_secrets(value)]
    return url_secrets(value)


def catalogue_secrets(catalogue: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value a catalogue holds, and those of the environment it was resolved in.

    The catalogue is walked by duck typing (pydantic models iterate as ``(field, value)``);
    only the fields the file set are read, since a default is printed in the docs and is no
    secret (RabbitMQ's ``guest``). A probe's own ``secrets()`` adds what only it knows.
    """
    found: list[str] = []
    for name, value in (environ or {}).items():
        found += entry_secrets(str(name), str(value))
    for name, value in (getattr(catalogue, "dotenv", None) or {}).items():
        found += entry_secrets(str(name), str(value))
    _walk(catalogue, found)
    return found


def _walk(value: Any, found: list[str], key: str = "") -> None:
    if isinstance(value, str):
        found += entry_secrets(key, value) if key else url_secrets(value)
    elif isinstance(value, dict):
        for name, item in value.items():
            _walk(item, found, str(name))
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, found, key)
    else:
        model, knows_secrets = _kind(type(value))
        if model:  # a pydantic model: the fields the file set
            for name in value.model_fields_set:
                _walk(getattr(value, name, None), found, name)
        if knows_secrets:  # a probe's own knowledge
            found += [secret for secret in value.secrets() if isinstance(secret, str)]


_KINDS: dict[type, tuple[bool, bool]] = {}


def _kind(cls: type) -> tuple[bool, bool]:
    """Whether instances are pydantic models, and have a ``secrets()`` of their own (asked
    once per class: pydantic's attribute lookup on a model class is slow)."""
    kind = _KINDS.get(cls)
    if kind is None:
        kind = (hasattr(cls, "__pydantic_fields__"), callable(getattr(cls, "secrets", None)))
        _KINDS[cls] = kind
    return kind


# -- masking -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Redactor:
    """Masks a fixed set of secret values, in every spelling, and credentials by shape.

    Build one per catalogue (``for_catalogue``) and pass everything written through
    ``text`` (a string) or ``data`` (a JSON-like structure).
    """

    spellings: tuple[str, ...] = ()
    cores: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    secrets: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def of(cls, secrets: Iterable[str], *, min_length: int = MIN_FREE_TEXT) -> Redactor:
        found: set[str] = set()
        cores: set[str] = set()
        kept: list[str] = []
        for secret in dict.fromkeys(secrets):
            if len(secret) < min_length or secret.lower() in _NOT_SECRETS:
                continue
            kept.append(secret)
            if isinstance(secret, Credentials):
                found.update(_base64_spellings(str(secret)))
            else:
                found.update(_spellings(secret))
            if len(secret) >= MIN_FREE_TEXT:
                cores.update(_base64_cores(secret.encode()))
        found = {s for s in found if len(s) >= min(min_length, MIN_FREE_TEXT)} - {MASK}
        # longest first, so a secret that contains another is replaced whole
        ordered = tuple(sorted(found, key=lambda s: (-len(s), s)))
        inner = tuple(sorted(cores - found, key=lambda s: (-len(s), s)))
        if not ordered:
            return cls()
        # a core is masked with the characters next to it that still carry bits of the
        # secret (a 4-character group holds parts of up to three bytes)
        alternatives = [_literal(s) for s in ordered]
        alternatives += [f"{_B64}{{0,3}}{re.escape(s)}{_B64}{{0,3}}=*" for s in inner]
        return cls(ordered, inner, re.compile("|".join(alternatives)), tuple(kept))

    def joined(self, other: Redactor) -> Redactor:
        """Masks what either masks."""
        if not other.secrets or set(other.secrets) <= set(self.secrets):
            return self
        return Redactor.of([*self.secrets, *other.secrets])

    @classmethod
    def for_catalogue(cls, catalogue: Any, environ: Mapping[str, str] | None = None) -> Redactor:
        """Every secret of ``catalogue`` and of the environment it was loaded with."""
        return cls.of(catalogue_secrets(catalogue, environ))

    @classmethod
    def for_environment(cls, environ: Mapping[str, str]) -> Redactor:
        """Before a catalogue is known: the environment's secrets and the shapes."""
        return cls.of(catalogue_secrets(None, environ))

    def text(self, text: str) -> str:
        if self.pattern is not None:
            text = self.pattern.sub(MASK, text)
        return redact_shapes(text)

    def __call__(self, text: str) -> str:
        return self.text(text)

    def data(self, value: Any, key: str = "", keep: frozenset[str] = frozenset()) -> Any:
        """A copy of a JSON-like structure with secret-named keys and every string masked.

        Values under a key in ``keep`` (service names, states) stay as they are: a secret
        that happens to equal a service's name must not unname it in every message.
        """
        if isinstance(value, Mapping):
            return {k: self.data(v, str(k), keep) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v, key, keep) for v in value]
        if isinstance(value, str):
            if key in keep:
                return value
            if value and key and (is_secret_key(key) or key.lower() in SECRET_HEADERS):
                return MASK
            return self.text(value)
        return value


def redact_shapes(text: str) -> str:
    """Credentials recognisable without knowing them: URL passwords, secret query
    parameters, Authorization headers."""
    if "://" in text:
        text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
    if "=" in text:
        text = _QUERY_PARAMETER.sub(_mask_parameter, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTHORIZATION.sub(rf"\1{MASK}", text)
    return text


def _mask_parameter(match: re.Match[str]) -> str:
    if not match.group(3) or not is_secret_key(match.group(2)):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}={MASK}"


def _spellings(secret: str) -> set[str]:
    """The ways ``secret`` may come back: URL-encoded, JSON-escaped, base64."""
    spellings = {secret, unquote(secret), unquote_plus(secret)}
    for plain in list(spellings):
        spellings.update((quote(plain, safe=""), quote(plain), quote_plus(plain)))
        spellings.add(json.dumps(plain)[1:-1])
    if len(secret) >= MIN_FREE_TEXT:  # a short one's base64 would match by chance
        for plain in {secret, unquote(secret)}:
            spellings.update(_base64_spellings(plain))
    return spellings


def _base64_spellings(plain: str) -> set[str]:
    whole = base64.b64encode(plain.encode()).decode()
    return _both_alphabets({whole, whole.rstrip("=")})


def _literal(spelling: str) -> str:
    """A pattern for ``spelling``; its percent-escapes in either case (``%2F`` or ``%2f``)."""
    return re.sub(
        r"%([0-9A-F])([0-9A-F])",
        lambda m: f"%[{m[1]}{m[1].lower()}][{m[2]}{m[2].lower()}]",
        re.escape(spelling),
    )


def _base64_cores(raw: bytes) -> set[str]:
    """The part of ``raw``'s base64 that is the same wherever it sits in a longer encoded
    text (a token inside an encoded JSON document), for each of the three alignments."""
    found = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode()
        # the 4-character groups made only of raw's bytes: those after the padding we
        # put in front, up to the last group raw fills completely
        first = -(-offset // 3) * 4
        last = (offset + len(raw)) // 3 * 4
        core = encoded[first:last]
        if len(core) >= _MIN_BASE64_CORE:
            found.add(core)
    return _both_alphabets(found)


def _both_alphabets(encoded: set[str]) -> set[str]:
    return encoded | {s.replace("+", "-").replace("/", "_") for s in encoded}
