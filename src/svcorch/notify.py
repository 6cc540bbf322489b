"""Notifiers: tell someone when a service's health changes (``check --watch``).

``webhook`` POSTs the event as JSON; ``exec`` runs a command with the event as JSON on
stdin and ``SVCORCH_*`` variables. A failing notifier is reported and retried with backoff in
the background; it never stops the watch. Secrets never leave in an event: probe details are
scrubbed before they get here, and notifier URLs are redacted in every report.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from svcorch.model import ExecNotifier, Notifier, WebhookNotifier
from svcorch.probes.base import redact_url

RETRY_FIRST = 0.5
RETRY_MAX = 10.0


@dataclass(frozen=True)
class HealthChange:
    service: str
    probe: str
    ok: bool
    previous: bool | None
    detail: str
    time: float
    catalogue: str

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["event"] = "recovered" if self.ok else "failing"
        return data


@dataclass(frozen=True)
class Delivery:
    """What became of one notification: reported to the user, never raised."""

    notifier: str
    service: str
    ok: bool
    attempts: int
    detail: str


def describe(notifier: Notifier) -> str:
    if isinstance(notifier, WebhookNotifier):
        return f"webhook {redact_url(notifier.url)}"
    argv = shlex.split(notifier.command) if isinstance(notifier.command, str) else notifier.command
    return f"exec {argv[0] if argv else ''}"


def _post(notifier: WebhookNotifier, body: bytes) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked by the model
        notifier.url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **notifier.headers},
    )
    try:
        with urllib.request.urlopen(  # noqa: S310 - the URL is the user's own webhook
            request, timeout=notifier.timeout.total_seconds()
        ) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise RuntimeError(str(exc.reason)) from None
    except TimeoutError:
        raise RuntimeError("timed out") from None
    if not 200 <= status < 300:
        raise RuntimeError(f"HTTP {status}")


def _run(notifier: ExecNotifier, change: HealthChange, body: bytes, base_dir: str) -> None:
    if isinstance(notifier.command, str):
        argv = (
            ["/bin/sh", "-c", notifier.command] if notifier.shell else shlex.split(notifier.command)
        )
    else:
        argv = list(notifier.command)
    env = {
        **os.environ,
        "SVCORCH_EVENT": "recovered" if change.ok else "failing",
        "SVCORCH_SERVICE": change.service,
        "SVCORCH_PROBE": change.probe,
        "SVCORCH_OK": "1" if change.ok else "0",
        "SVCORCH_DETAIL": change.detail,
    }
    try:
        finished = subprocess.run(
            argv,
            input=body,
            capture_output=True,
            env=env,
            cwd=base_dir,
            timeout=notifier.timeout.total_seconds(),
            start_new_session=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {notifier.timeout.total_seconds():g}s") from None
    except OSError as exc:
        raise RuntimeError(exc.strerror or str(exc)) from None
    if finished.returncode != 0:
        tail = finished.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"exited {finished.returncode}: {tail[0]}")


class Notifications:
    """Sends each change to every notifier in the background, with retries."""

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        base_dir: str,
        on_delivery: Callable[[Delivery], None],
        stop: threading.Event | None = None,
    ) -> None:
        self.notifiers = list(notifiers)
        self.base_dir = base_dir
        self.on_delivery = on_delivery
        self.stop = stop or threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="notify")

    def send(self, change: HealthChange) -> None:
        for notifier in self.notifiers:
            self.pool.submit(self._deliver, notifier, change)

    def _deliver(self, notifier: Notifier, change: HealthChange) -> None:
        body = json.dumps(change.to_dict()).encode()
        attempts = 0
        delay = RETRY_FIRST
        while True:
            attempts += 1
            try:
                if isinstance(notifier, WebhookNotifier):
                    _post(notifier, body)
                else:
                    _run(notifier, change, body, self.base_dir)
            except Exception as exc:
                error = redact_url(str(exc))
                if attempts > notifier.retries or self.stop.is_set():
                    self.on_delivery(
                        Delivery(describe(notifier), change.service, False, attempts, error)
                    )
                    return
                self.stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            self.on_delivery(Delivery(describe(notifier), change.service, True, attempts, "sent"))
            return

    def close(self) -> None:
        """No more retries; deliveries in flight finish within their own timeouts."""
        self.stop.set()
        self.pool.shutdown(wait=True)
