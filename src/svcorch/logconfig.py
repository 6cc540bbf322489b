"""Where log records go: never to the terminal; only svcorch's own to daemon.log, masked.

Client libraries log freely: pika logs each failed connect at ERROR with a traceback, urllib3
each retry, and without a handler Python prints WARNING and above to stderr. The terminal
belongs to svcorch's own output (``--json`` must be exactly one JSON document), and a probe's
failure is already one line with the server's words in its detail; so the CLI gives those
records nowhere to go, and the daemon's log keeps svcorch's records only, with every secret
the catalogue holds masked.
"""

from __future__ import annotations

import logging
from pathlib import Path

from svcorch.redaction import Redactor

DAEMON_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
# records from these loggers (and their children) reach daemon.log: svcorch's own, the
# event loop's (an error there is svcorch's bug), Python warnings and the root logger
OWN_LOGGERS = ("svcorch", "asyncio", "py.warnings", "root", "__main__")


def quiet_terminal() -> None:
    """In the CLI: no log record, svcorch's or a library's, is printed.

    A handler that drops them stops Python's last-resort one (stderr, WARNING and up);
    warnings become records too, so a library's ``InsecureRequestWarning`` goes the same way.
    """
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    logging.captureWarnings(True)


class OwnRecordsOnly(logging.Filter):
    """Passes svcorch's records, drops a client library's (its words are in the detail)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return any(
            record.name == name or record.name.startswith(name + ".") for name in OWN_LOGGERS
        )


class RedactingFormatter(logging.Formatter):
    """Formats a record, traceback included, then masks every secret in the whole text.

    ``redactor`` is replaced when the daemon loads a changed catalogue.
    """

    def __init__(self, fmt: str = DAEMON_FORMAT, redactor: Redactor | None = None) -> None:
        super().__init__(fmt)
        self.redactor = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.text(super().format(record))


def to_daemon_log(path: Path, redactor: Redactor | None = None) -> RedactingFormatter:
    """Send svcorch's records (INFO and up) to ``path``; the formatter, to update its redactor."""
    handler = logging.FileHandler(path, encoding="utf-8")
    formatter = RedactingFormatter(redactor=redactor)
    handler.setFormatter(formatter)
    handler.addFilter(OwnRecordsOnly())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return formatter
