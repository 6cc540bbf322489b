"""amqp: ready when a connection and a channel open (and, if given, a queue exists).

Retryable: refused, reset, timeouts, a handshake the broker closes while booting, a broker
closing with CONNECTION_FORCED, a queue not declared yet (a worker that starts later may
declare it). Fatal: login refused (ACCESS_REFUSED), unknown or forbidden vhost (NOT_ALLOWED),
access to the queue refused.

Details are sentences with the broker's own words where it said some, never pika's reprs
(``Timeout during AMQP handshake'127.0.0.1'/(<AddressFamily.AF_INET: 2>, ...``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal
from urllib.parse import quote, unquote

from pydantic import Field

from svcorch.probes.base import (
    Probe,
    ProbeContext,
    ProbeOptions,
    ProbeResult,
    ProbeType,
    UrlOrPartsOptions,
    bounded_check,
    error_chain,
    network_words,
    remaining,
    split_server_url,
)

if TYPE_CHECKING:
    import pika

PORTS = {False: 5672, True: 5671}
SCHEMES = {"amqp": False, "amqps": True}
# AMQP reply codes that no amount of waiting fixes
FATAL_REPLY_CODES = {403: "access refused", 530: "not allowed"}
NOT_FOUND = 404
# pika wraps the broker's words in its own: "... ConnectionClosedByBroker: (403) 'ACCESS_...'"
_BROKER_WORDS = re.compile(r"\((\d{3})\) '(.*?)'")


@dataclass(frozen=True)
class AmqpEndpoint:
    host: str
    port: int
    vhost: str
    user: str
    password: str
    tls: bool


class AmqpOptions(UrlOrPartsOptions):
    url_parts: ClassVar[frozenset[str]] = frozenset(
        {"host", "port", "vhost", "user", "password", "tls"}
    )

    type: Literal["amqp"] = "amqp"
    url: str | None = Field(
        default=None, description="amqp://user:password@host:port/vhost (vhost %2F is /)"
    )
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535, description="5672, or 5671 with tls")
    vhost: str = "/"
    user: str = "guest"
    password: str = "guest"  # noqa: S105 - RabbitMQ's well-known default, as in pika
    tls: bool = False
    queue: str | None = Field(default=None, description="must exist (passive declare)")

    @classmethod
    def parse_url(cls, url: str) -> AmqpEndpoint:
        return parse_amqp_url(url)

    def endpoint(self) -> AmqpEndpoint:
        if self.url is not None:
            return parse_amqp_url(self.url)
        port = self.port or PORTS[self.tls]
        return AmqpEndpoint(self.host, port, self.vhost, self.user, self.password, self.tls)

    def target(self) -> str:
        point = self.endpoint()
        scheme = "amqps" if point.tls else "amqp"
        host = f"[{point.host}]" if ":" in point.host else point.host
        user = quote(point.user, safe="")
        return f"{scheme}://{user}:***@{host}:{point.port}/{quote(point.vhost, safe='')}"


def parse_amqp_url(url: str) -> AmqpEndpoint:
    """``amqp://user:pw@host:port/vhost`` -> endpoint. An empty path is the vhost ``/``."""
    parts = split_server_url(url, "amqp", ("amqp", "amqps"))
    tls = SCHEMES[parts.scheme]
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return AmqpEndpoint(
        host=parts.hostname or "",  # split_server_url refused an empty host
        port=parts.port or PORTS[tls],
        vhost=vhost,
        user=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password is not None else "guest",
        tls=tls,
    )


class AmqpProbe:
    def __init__(self, options: AmqpOptions) -> None:
        self.options = options

    def check(self, deadline: float) -> ProbeResult:
        return bounded_check(self.options, deadline, self._attempt)

    def _attempt(self, stop_at: float) -> ProbeResult:
        import pika

        # pika logs each failed connect at ERROR; with no handler configured, Python would
        # print them to stderr. (svcorch's CLI and daemon drop them too: see logconfig.)
        logging.getLogger("pika").addHandler(logging.NullHandler())
        connection: pika.BlockingConnection | None = None
        timeout = remaining(stop_at)
        try:
            connection = pika.BlockingConnection(self._parameters(timeout))
            channel = connection.channel()
            if self.options.queue is not None:
                declared = channel.queue_declare(self.options.queue, passive=True)
                count = declared.method.message_count
                return ProbeResult.passed(f"queue {self.options.queue!r}: {count} messages")
            return ProbeResult.passed("connection and channel open")
        except Exception as exc:  # pika raises from many layers; each is judged below
            return self._judge(exc, timeout)
        finally:
            _close(connection)

    def _parameters(self, timeout: float) -> pika.ConnectionParameters:
        import ssl

        import pika

        point = self.options.endpoint()
        return pika.ConnectionParameters(
            host=point.host,
            port=point.port,
            virtual_host=point.vhost,
            credentials=pika.PlainCredentials(point.user, point.password),
            ssl_options=pika.SSLOptions(ssl.create_default_context()) if point.tls else None,
            connection_attempts=1,
            retry_delay=0,
            # socket_timeout bounds the TCP connect, stack_timeout the whole TCP+TLS+AMQP
            # handshake: a listener that never speaks ends here (checked against a silent one)
            socket_timeout=timeout,
            stack_timeout=timeout,
            blocked_connection_timeout=timeout,
        )

    def _judge(self, exc: Exception, timeout: float) -> ProbeResult:
        from pika import exceptions as pika_errors

        if isinstance(exc, pika_errors.ChannelClosedByBroker):
            words = f"{exc.reply_text} ({exc.reply_code})"
            if exc.reply_code == NOT_FOUND:
                return ProbeResult.failed(
                    f"{words}; retrying: a service that starts later may declare it",
                    retryable=True,
                )
            return ProbeResult.failed(words, retryable=exc.reply_code not in FATAL_REPLY_CODES)
        if isinstance(exc, pika_errors.ConnectionClosedByBroker):
            words = f"{exc.reply_text} ({exc.reply_code})"
            return ProbeResult.failed(words, retryable=exc.reply_code not in FATAL_REPLY_CODES)
        chain = error_chain(exc)
        fatal = (
            pika_errors.ProbableAuthenticationError,
            pika_errors.ProbableAccessDeniedError,
            pika_errors.AuthenticationError,
        )
        retryable = not any(isinstance(error, fatal) for error in chain)
        return ProbeResult.failed(_sentence(chain, timeout), retryable=retryable)


def _sentence(chain: list[BaseException], timeout: float) -> str:
    """What went wrong, from pika's nest of errors (AMQPConnectionError >
    AMQPConnectionWorkflowFailed > AMQPConnectorSocketConnectError > ConnectionRefusedError),
    whose outer layers say nothing and whose reprs are no reading for people."""
    from pika import exceptions as pika_errors

    for error in chain:  # the broker's own reply, where pika quotes it
        match = _BROKER_WORDS.search(repr(error.args))
        if match is not None:
            return f"{match.group(2)} ({match.group(1)})"
    words = network_words(chain[0], timeout)
    if words is not None:
        return words
    if any("StreamLostError" in repr(error) for error in chain):
        # pika calls a connection closed before the protocol header came back "incompatible"
        return "the server closed the connection without answering in AMQP"
    for error in chain:
        for name, sentence in _SENTENCES:
            if isinstance(error, getattr(pika_errors, name)):
                return sentence
    return f"the AMQP connection failed ({type(chain[-1]).__name__})"


# pika's errors that bring no words of the broker, said in ours
_SENTENCES = (
    (
        "ProbableAuthenticationError",
        "the broker closed the connection at login: wrong user or password?",
    ),
    (
        "ProbableAccessDeniedError",
        "the broker closed the connection when asked for the vhost: access denied?",
    ),
    ("AuthenticationError", "the broker offers no login mechanism svcorch can use (PLAIN)"),
    ("IncompatibleProtocolError", "the server does not speak AMQP 0-9-1"),
)


def _close(connection: pika.BlockingConnection | None) -> None:
    if connection is None or not connection.is_open:
        return
    # the broker may go away mid-close: the socket is released either way
    with contextlib.suppress(Exception):
        connection.close()


def _create(options: ProbeOptions, context: ProbeContext) -> Probe:
    assert isinstance(options, AmqpOptions)
    return AmqpProbe(options)


PROBE_TYPE = ProbeType(name="amqp", options=AmqpOptions, create=_create)
