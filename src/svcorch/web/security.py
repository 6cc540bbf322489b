"""Who may read and who may act: the bind rule, the token, and cross-site requests.

Secure by default: a loopback bind serves reads to whoever can reach it (the same machine);
any other bind needs a token for everything. Actions always need the token, and are refused
when they come from another site (a page elsewhere must not drive a local svcorch through
the user's browser).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from svcorch.errors import UsageError

TOKEN_ENV = "SVCORCH_WEB_TOKEN"  # noqa: S105 - the variable's name, not a token
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MIN_TOKEN = 16  # characters: a guessable token is no token
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
SAME_SITE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site values of our own page


class Headers(Protocol):
    def get(self, name: str, default: None = None) -> str | None: ...


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[::1]:PORT`` or ``:PORT`` (loopback)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--bind: {text!r} is not HOST:PORT (e.g. 127.0.0.1:8765)")
    host = host.strip("[]") or DEFAULT_HOST
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(token_file: Path | None, environ: dict[str, str]) -> str | None:
    """The token from ``--token-file`` (first line), else ``SVCORCH_WEB_TOKEN``."""
    if token_file is not None:
        try:
            mode = token_file.stat().st_mode
            text = token_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--token-file: cannot read {token_file}: {exc.strerror}") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            # as ssh refuses a readable key: a token others can read is theirs too
            raise UsageError(
                f"--token-file: {token_file} is readable by others; chmod 600 {token_file}"
            )
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        return _checked(token, f"--token-file {token_file}")
    token = environ.get(TOKEN_ENV, "").strip()
    return _checked(token, TOKEN_ENV) if token else None


def _checked(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN:
        raise UsageError(f"{where}: the token must be at least {MIN_TOKEN} characters")
    return token


def new_token() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def write_token(path: Path, token: str) -> None:
    """The generated token, 0600, for the page's user to paste (never printed)."""
    from svcorch.statedir import open_private

    with os.fdopen(open_private(path, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as handle:
        handle.write(token + "\n")


@dataclass(frozen=True)
class Guard:
    """The rules for one server: its bind host and port, and its token."""

    host: str
    port: int
    token: str

    @property
    def open_reads(self) -> bool:
        """Reads need no token only on a loopback bind."""
        return is_loopback(self.host)

    def _authorized(self, headers: Headers) -> bool:
        given = headers.get("Authorization") or ""
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer":
            return False
        # constant time: how long a refusal takes must not tell how much of a guess was right
        return hmac.compare_digest(value.strip().encode(), self.token.encode())

    def _host_ok(self, headers: Headers) -> bool:
        """On a loopback bind, the Host header must name the loopback: a DNS-rebinding page
        (evil.example resolving to 127.0.0.1) sends its own name there."""
        if not self.open_reads:
            return True
        host = (headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in LOOPBACK_NAMES or is_loopback(name.strip("[]"))

    def check_page(self, headers: Headers) -> Refusal | None:
        """The page and its assets: no token (they hold no data), the Host rule still."""
        if not self._host_ok(headers):
            return Refusal(403, "forbidden: the Host header does not name this server")
        return None

    def check_read(self, headers: Headers) -> Refusal | None:
        if not self._host_ok(headers):
            return Refusal(403, "forbidden: the Host header does not name this server")
        if not self.open_reads and not self._authorized(headers):
            return Refusal(401, "unauthorized: send Authorization: Bearer <token>")
        return None

    def check_action(self, headers: Headers) -> Refusal | None:
        refusal = self.check_read(headers)
        if refusal is not None:
            return refusal
        if not self._authorized(headers):
            return Refusal(401, "unauthorized: actions need Authorization: Bearer <token>")
        refusal = self._cross_site(headers)
        if refusal is not None:
            return refusal
        kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            # a form post cannot send this type without a CORS preflight, which is never granted
            return Refusal(
                415, "unsupported media type: actions take Content-Type: application/json"
            )
        return None

    def _cross_site(self, headers: Headers) -> Refusal | None:
        """Browsers say where a request comes from; a page of another site is refused."""
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site not in SAME_SITE:
            return Refusal(403, f"forbidden: a cross-site request ({site})")
        origin = headers.get("Origin")
        if origin == "null":
            return Refusal(403, "forbidden: a request from an opaque origin")
        if origin is not None and not self._same_origin(origin, headers):
            return Refusal(403, f"forbidden: a request from another origin ({origin})")
        return None

    def _same_origin(self, origin: str, headers: Headers) -> bool:
        host = headers.get("Host") or ""
        return origin in {f"http://{host}", f"https://{host}"}
