"""Notifiers: tell someone when a service's health changes (``check --watch``) or the daemon
sees a service crash, restart, recover, ... (``svcorch.alerts``).

``webhook`` POSTs the event as JSON; ``exec`` runs a command with the event as JSON on
stdin and ``SVCORCH_*`` variables. Each notifier has its own worker thread and queue, so
events reach it in the order they happened (a retried "failing" never lands after the
"recovered" that followed it) and a slow notifier never holds up another one. A failing
attempt is reported and retried with backoff; it never stops the watch.

Secrets never leave in an event: probe details are scrubbed before they get here, and a
notifier's own credentials (URL userinfo, secret headers) are scrubbed from every report.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import re
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableSet, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from svcorch.model import ExecNotifier, Notifier, WebhookNotifier
from svcorch.redaction import Redactor, is_secret_key, redact, redact_url

if TYPE_CHECKING:
    from urllib.request import OpenerDirector

RETRY_FIRST = 0.5  # seconds before the first retry
RETRY_MAX = 10.0  # the backoff doubles up to this
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie")


class Message(Protocol):
    """What a notifier sends: a ``HealthChange`` of ``check --watch`` or a daemon ``Alert``."""

    @property
    def service(self) -> str: ...

    @property
    def event(self) -> str: ...

    def to_dict(self) -> dict[str, object]: ...

    def environment(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class HealthChange:
    """A service went from ok to failing or back; what every notifier receives."""

    service: str
    probe: str
    target: str
    ok: bool
    previous: bool | None  # None: the first round of a watch found it failing
    detail: str
    time: float  # seconds since the epoch, when the round that saw it ended
    catalogue: str  # its name, else the absolute path of services.yaml
    host: str  # where the watch runs: one receiver may hear from many machines

    @property
    def event(self) -> str:
        return "recovered" if self.ok else "failing"

    def to_dict(self) -> dict[str, object]:
        return {"event": self.event, **asdict(self)}

    def environment(self) -> dict[str, str]:
        """The ``SVCORCH_*`` variables an exec notifier gets."""
        return {
            "SVCORCH_EVENT": self.event,
            "SVCORCH_SERVICE": self.service,
            "SVCORCH_PROBE": self.probe,
            "SVCORCH_TARGET": self.target,
            "SVCORCH_OK": "1" if self.ok else "0",
            "SVCORCH_DETAIL": self.detail,
            "SVCORCH_TIME": f"{self.time:.3f}",
            "SVCORCH_CATALOGUE": self.catalogue,
            "SVCORCH_HOST": self.host,
        }


@dataclass(frozen=True)
class Delivery:
    """What became of one attempt to notify: reported to the user, never raised.

    ``retry_in`` is set when the attempt failed and another one follows after that many
    seconds; a delivery with ``retry_in`` None is the last word on that event.
    """

    notifier: str
    service: str
    event: str
    ok: bool
    attempts: int
    detail: str
    retry_in: float | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class NotifyFailed(Exception):
    """One attempt failed; the message is safe to show (the caller scrubs it again)."""


def describe(notifier: Notifier) -> str:
    """How reports name a notifier: ``webhook http://u:***@host/path``, ``exec page-oncall``."""
    if isinstance(notifier, WebhookNotifier):
        return f"webhook {redact_url(notifier.url)}"
    command = notifier.command
    if isinstance(command, str):
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
    else:
        words = list(command)
    # the program only: its arguments may hold a token
    return f"exec {os.path.basename(words[0]) if words else ''}"


def notifier_secrets(notifier: Notifier) -> list[str]:
    """Every credential in a notifier's options, to scrub from what we report."""
    found: list[str] = []
    if isinstance(notifier, WebhookNotifier):
        password = _url_password(notifier.url)
        if password:
            found.append(password)
        for name, value in notifier.headers.items():
            if name.lower() in SECRET_HEADERS or is_secret_key(name):
                found.append(value)
                found.extend(value.split()[1:])  # "Bearer abc": the credential alone
    else:
        command = notifier.command
        text = command if isinstance(command, str) else " ".join(command)
        found.extend(unquote(match) for match in _USERINFO_PASSWORD.findall(text))
    return found


# `scheme://user:password@` anywhere in a command line, quoted or not
_USERINFO_PASSWORD = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:([^\s/'\"]+)@")


def _url_password(text: str) -> str | None:
    if "://" not in text:
        return None
    try:
        return urlsplit(text).password
    except ValueError:
        return None


# -- webhook -----------------------------------------------------------------------------------


def webhook_request(notifier: WebhookNotifier, body: bytes) -> tuple[str, dict[str, str]]:
    """The URL to POST to and its headers.

    urllib does not send a URL's userinfo: it would look up ``user:pw@host`` as a host name.
    So ``https://user:pw@host/`` becomes basic auth, unless an Authorization header is given.
    """
    parts = urlsplit(notifier.url)
    headers = {"Content-Type": "application/json", "User-Agent": "svcorch-notify"}
    headers.update(notifier.headers)
    url = notifier.url
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        url = urlunsplit(parts._replace(netloc=netloc))
        if not any(name.lower() == "authorization" for name in headers):
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    return url, headers


def _opener() -> OpenerDirector:
    import urllib.request

    class RefuseRedirects(urllib.request.HTTPRedirectHandler):
        # urllib turns a redirected POST into a GET without the body, which would look
        # like a delivery; a 3xx is reported as the failure it is
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    return urllib.request.build_opener(RefuseRedirects)


def post(notifier: WebhookNotifier, body: bytes) -> None:
    """One POST of ``body``; raises NotifyFailed unless the answer is 2xx."""
    import urllib.error
    import urllib.request

    url, headers = webhook_request(notifier, body)
    # http(s) only: the model checks the scheme
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
    try:
        with _opener().open(request, timeout=notifier.timeout.total_seconds()) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        raise NotifyFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise NotifyFailed(str(text)) from None
    except TimeoutError:
        raise NotifyFailed(f"no answer within {notifier.timeout.total_seconds():g}s") from None
    except OSError as exc:  # reset while reading the answer, ...
        raise NotifyFailed(exc.strerror or str(exc)) from None
    if not 200 <= status < 300:
        raise NotifyFailed(f"HTTP {status}")


# -- exec --------------------------------------------------------------------------------------


def _argv(notifier: ExecNotifier) -> list[str]:
    command = notifier.command
    if notifier.shell:
        return ["/bin/sh", "-c", command if isinstance(command, str) else shlex.join(command)]
    return shlex.split(command) if isinstance(command, str) else list(command)


def run_command(
    notifier: ExecNotifier,
    body: bytes,
    env: Mapping[str, str],
    cwd: str,
    children: MutableSet[subprocess.Popen[bytes]] | None = None,
) -> None:
    """Run the command with ``body`` on stdin; raises NotifyFailed unless it exits 0 in time.

    Files, not pipes: a background process the command leaves behind (``page-oncall &``)
    would hold a pipe open and a reader would wait for it forever. On timeout the whole
    process group is killed, in case the command is a shell running something else.
    ``children`` holds the command while it runs, so that a closing daemon can end it.
    """
    timeout = notifier.timeout.total_seconds()
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as output:
        stdin.write(body)
        stdin.seek(0)
        try:
            process = subprocess.Popen(
                _argv(notifier),
                stdin=stdin,
                stdout=output,
                stderr=output,
                env={**os.environ, **env},
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise NotifyFailed(exc.strerror or str(exc)) from None
        if children is not None:
            children.add(process)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise NotifyFailed(f"no exit within {timeout:g}s (killed)") from None
        finally:
            if children is not None:
                children.discard(process)
        if code != 0:
            output.seek(0)
            lines = output.read().decode("utf-8", "replace").strip().splitlines()
            said = f": {lines[-1].strip()}" if lines else ""
            how = f"killed by signal {-code}" if code < 0 else f"exited {code}"
            raise NotifyFailed(how + said)


# -- delivery ----------------------------------------------------------------------------------


def backoff(first: float = RETRY_FIRST, most: float = RETRY_MAX) -> Iterator[float]:
    """Delays before each retry: ``first``, doubling, never above ``most``."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)


Send = Callable[[Notifier, Message, bytes], None]


class Notifications:
    """Sends each message to every notifier in the background, in order, with retries."""

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        base_dir: str,
        on_delivery: Callable[[Delivery], None],
        *,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
        send: Send | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.base_dir = base_dir
        # the catalogue's secrets: the last defence for what leaves (payloads, variables)
        # and for the reports of each attempt
        self.redactor = redactor or Redactor()
        self.on_delivery = on_delivery
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.transport: Send = send or self._send
        self.stop = threading.Event()
        self._deadline: float | None = None  # set by a close with a timeout
        self._children: set[subprocess.Popen[bytes]] = set()  # exec commands running now
        self._workers: list[tuple[queue.Queue[Message | None], threading.Thread]] = []
        for index, notifier in enumerate(notifiers):
            pending: queue.Queue[Message | None] = queue.Queue()
            thread = threading.Thread(
                target=self._work,
                args=(notifier, pending),
                name=f"svcorch-notify-{index}",
                daemon=True,
            )
            thread.start()
            self._workers.append((pending, thread))

    def send(self, change: Message) -> None:
        if isinstance(change, HealthChange):
            # the daemon's event messages come scrubbed already (EventLog.scrub)
            change = replace(
                change,
                detail=self.redactor.text(change.detail),
                target=self.redactor.text(change.target),
            )
        for pending, _ in self._workers:
            pending.put(change)

    def send_to(self, index: int, message: Message) -> None:
        """To the ``index``-th notifier only (each daemon notifier damps on its own)."""
        self._workers[index][0].put(message)

    def close(self, timeout: float | None = None) -> None:
        """Stop retrying; what is queued gets one last attempt, bounded by its timeout.

        ``timeout``: wait at most that long in all (a daemon on its way out): nothing is
        attempted after it, and an attempt under way then ends with the process (the
        workers are daemon threads).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._deadline = deadline
        self.stop.set()
        for pending, _ in self._workers:
            pending.put(None)
        for _, thread in self._workers:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if deadline is not None:
            self._end_children()

    def _end_children(self) -> None:
        """Commands still running at the deadline go, with their process groups: nobody
        would be left to enforce their timeout."""
        for child in list(self._children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        for _, thread in self._workers:
            thread.join(1.0)  # each reaps its command

    def _work(self, notifier: Notifier, pending: queue.Queue[Message | None]) -> None:
        while (change := pending.get()) is not None:
            try:
                self._deliver(notifier, change)
            except Exception as exc:  # a bug must not silence this notifier for the watch
                failure = Delivery(
                    notifier.type, change.service, change.event, False, 0,
                    f"internal error: {type(exc).__name__}",
                )  # fmt: skip
                with contextlib.suppress(Exception):
                    self.on_delivery(failure)

    def _send(self, notifier: Notifier, change: Message, body: bytes) -> None:
        if isinstance(notifier, WebhookNotifier):
            post(notifier, body)
        else:
            run_command(notifier, body, change.environment(), self.base_dir, self._children)

    def _deliver(self, notifier: Notifier, change: Message) -> None:
        body = json.dumps(change.to_dict()).encode()
        name = self.redactor.text(describe(notifier))
        secrets = notifier_secrets(notifier)
        delays = backoff(self.retry_first, self.retry_max)
        attempts = 0
        while True:
            if self._deadline is not None and time.monotonic() >= self._deadline:
                # closed with a timeout (a daemon exiting): what is left is not attempted
                self.on_delivery(
                    Delivery(name, change.service, change.event, False, attempts, "not sent:"
                             " svcorch was exiting")
                )  # fmt: skip
                return
            attempts += 1
            try:
                self.transport(notifier, change, body)
            except Exception as exc:  # a notifier's failure is a report, never the watch's end
                error = self.redactor.text(redact(str(exc) or type(exc).__name__, secrets))
                last = attempts > notifier.retries or self.stop.is_set()
                delay = None if last else next(delays)
                self.on_delivery(
                    Delivery(name, change.service, change.event, False, attempts, error, delay)
                )
                if delay is None:
                    return
                # stopped while waiting: the next attempt is the last one
                self.stop.wait(delay)
                continue
            self.on_delivery(Delivery(name, change.service, change.event, True, attempts, "sent"))
            return
