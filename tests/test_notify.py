"""Notifiers against a real HTTP receiver and real commands: payloads, retries, reports."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from svcorch.model import ExecNotifier, WebhookNotifier
from svcorch.notify import (
    Delivery,
    HealthChange,
    Notifications,
    backoff,
    describe,
    notifier_secrets,
    webhook_request,
)
from tests.support import free_port, wait_until
from tests.support.http import webhook_receiver
from tests.support.procs import gone

SECRET = "S3cr3t-pw!"


# -- helpers -----------------------------------------------------------------------------------


def change(ok: bool = False, service: str = "redis", **values: object) -> HealthChange:
    fields: dict[str, object] = {
        "service": service,
        "probe": "redis",
        "target": "redis://127.0.0.1:6379/0",
        "ok": ok,
        "previous": not ok,
        "detail": "PONG" if ok else "Connection refused",
        "time": 1700000000.5,
        "catalogue": "shop",
        "host": "box",
        **values,
    }
    return HealthChange(**fields)  # type: ignore[arg-type]


def webhook(url: str, **values: object) -> WebhookNotifier:
    return WebhookNotifier.model_validate({"type": "webhook", "url": url, **values})


def command(argv: list[str], **values: object) -> ExecNotifier:
    return ExecNotifier.model_validate({"type": "exec", "command": argv, **values})


class Reports:
    """Collects deliveries from notifier threads; waits for the final ones."""

    def __init__(self) -> None:
        self.items: list[Delivery] = []
        self.lock = threading.Lock()

    def __call__(self, delivery: Delivery) -> None:
        with self.lock:
            self.items.append(delivery)

    def final(self) -> list[Delivery]:
        with self.lock:
            return [d for d in self.items if d.ok or d.retry_in is None]

    def wait_final(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        wait_until(lambda: len(self.final()) >= count, timeout, f"{count} final deliveries")
        return self.final()


@contextlib.contextmanager
def notifications(*notifiers: object, base_dir: Path | None = None) -> Iterator[Reports]:
    reports = Reports()
    sender = Notifications(
        list(notifiers),  # type: ignore[arg-type]
        str(base_dir or Path.cwd()),
        reports,
        retry_first=0.05,
        retry_max=0.2,
    )
    reports.sender = sender  # type: ignore[attr-defined]
    try:
        yield reports
    finally:
        sender.close()


def send(reports: Reports, event: HealthChange) -> None:
    reports.sender.send(event)  # type: ignore[attr-defined]


# -- the event ---------------------------------------------------------------------------------


def test_event_json_says_what_changed_and_where() -> None:
    assert change(ok=False, previous=None).to_dict() == {
        "event": "failing",
        "service": "redis",
        "probe": "redis",
        "target": "redis://127.0.0.1:6379/0",
        "ok": False,
        "previous": None,
        "detail": "Connection refused",
        "time": 1700000000.5,
        "catalogue": "shop",
        "host": "box",
    }
    assert change(ok=True).to_dict()["event"] == "recovered"


def test_exec_environment_carries_the_event() -> None:
    assert change(ok=True).environment() == {
        "SVCORCH_EVENT": "recovered",
        "SVCORCH_SERVICE": "redis",
        "SVCORCH_PROBE": "redis",
        "SVCORCH_TARGET": "redis://127.0.0.1:6379/0",
        "SVCORCH_OK": "1",
        "SVCORCH_DETAIL": "PONG",
        "SVCORCH_TIME": "1700000000.500",
        "SVCORCH_CATALOGUE": "shop",
        "SVCORCH_HOST": "box",
    }


def test_backoff_doubles_up_to_its_ceiling() -> None:
    delays = backoff(0.5, 3.0)
    assert [next(delays) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


# -- naming and secrets ------------------------------------------------------------------------


def test_webhook_userinfo_becomes_basic_auth_and_leaves_the_url() -> None:
    url, headers = webhook_request(webhook("https://alert:pa%3Ass@hooks.example:8443/x?a=1"), b"")
    assert url == "https://hooks.example:8443/x?a=1"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"alert:pa:ss").decode()
    assert headers["Content-Type"] == "application/json"


def test_an_explicit_authorization_header_wins_over_userinfo() -> None:
    notifier = webhook("http://u:p@127.0.0.1/x", headers={"Authorization": "Bearer tok"})
    _, headers = webhook_request(notifier, b"")
    assert headers["Authorization"] == "Bearer tok"


def test_the_catalogue_s_secrets_never_leave_in_a_payload_or_a_variable(tmp_path: Path) -> None:
    """The last defence: a detail that still held a secret (a plugin probe that echoed one)
    reaches neither the webhook's body nor an exec notifier's stdin and variables."""
    from svcorch.redaction import Redactor

    script = tmp_path / "record.py"
    script.write_text(
        "import json, os, sys\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('SVCORCH_')}\n"
        "with open('got.json', 'w') as out:\n"
        "    json.dump({'stdin': json.load(sys.stdin), 'env': env}, out)\n"
    )
    leaky = change(detail=f"HTTP 500: bad password {SECRET}", target=f"http://h/?key={SECRET}")
    with webhook_receiver() as receiver:
        reports = Reports()
        sender = Notifications(
            [webhook(receiver.url + "/hook"), command([sys.executable, str(script)], retries=0)],
            str(tmp_path),
            reports,
            redactor=Redactor.of([SECRET]),
        )
        try:
            sender.send(leaky)
            assert all(d.ok for d in reports.wait_final(2))
        finally:
            sender.close()
        (body,) = [json.loads(request.body) for request in receiver.requests]
    got = json.loads((tmp_path / "got.json").read_text())
    for payload in (body, got["stdin"]):
        assert payload["detail"] == "HTTP 500: bad password ***"
        assert payload["target"] == "http://h/?key=***"
    assert got["env"]["SVCORCH_DETAIL"] == "HTTP 500: bad password ***"
    assert got["env"]["SVCORCH_TARGET"] == "http://h/?key=***"


def test_notifiers_are_named_without_their_secrets() -> None:
    hook = webhook(f"http://alert:{SECRET}@127.0.0.1:9/x", headers={"X-Api-Key": "k3y"})
    assert describe(hook) == "webhook http://alert:***@127.0.0.1:9/x"
    assert set(notifier_secrets(hook)) == {SECRET, "k3y"}
    run = command(["/opt/bin/page-oncall", "--token", "t0k", f"https://u:{SECRET}@pager/"])
    assert describe(run) == "exec page-oncall"
    assert notifier_secrets(run) == [SECRET]
    assert describe(ExecNotifier(type="exec", command="./page 'a b'", shell=True)) == "exec page"


# -- webhook delivery --------------------------------------------------------------------------


def test_webhook_posts_the_event_as_json_with_its_headers() -> None:
    with (
        webhook_receiver() as receiver,
        notifications(
            webhook(f"http://alert:{SECRET}@{receiver.url[7:]}/hook", headers={"X-Api-Key": "k3y"})
        ) as reports,
    ):
        send(reports, change(ok=False))
        [delivery] = reports.wait_final(1)
    assert delivery == Delivery(
        f"webhook http://alert:***@{receiver.url[7:]}/hook", "redis", "failing", True, 1, "sent"
    )
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.json() == change(ok=False).to_dict()
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Api-Key"] == "k3y"
    assert (
        request.headers["Authorization"]
        == "Basic " + base64.b64encode(f"alert:{SECRET}".encode()).decode()
    )


def test_a_failing_webhook_is_reported_at_every_attempt_and_retried_until_it_works() -> None:
    with (
        webhook_receiver(answers=[500, 503]) as receiver,
        notifications(webhook(receiver.url, retries=3)) as reports,
    ):
        send(reports, change())
        reports.wait_final(1)
    assert [(d.ok, d.attempts, d.detail, d.retry_in) for d in reports.items] == [
        (False, 1, "HTTP 500 Internal Server Error", 0.05),
        (False, 2, "HTTP 503 Service Unavailable", 0.1),
        (True, 3, "sent", None),
    ]
    assert len(receiver.posts()) == 3


def test_a_webhook_that_never_answers_gives_up_after_its_retries() -> None:
    port = free_port()
    with notifications(webhook(f"http://u:{SECRET}@127.0.0.1:{port}/x", retries=2)) as reports:
        send(reports, change())
        reports.wait_final(1)
    assert [(d.ok, d.attempts, d.retry_in is None) for d in reports.items] == [
        (False, 1, False),
        (False, 2, False),
        (False, 3, True),
    ]
    assert {d.detail for d in reports.items} == {"Connection refused"}
    assert all(SECRET not in d.notifier + d.detail for d in reports.items)


def test_a_redirect_is_a_failure_not_a_silent_get() -> None:
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        with notifications(webhook(url, retries=0)) as reports:
            send(reports, change())
            [delivery] = reports.wait_final(1)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert (delivery.ok, delivery.detail) == (False, "HTTP 302 Found")


def test_each_notifier_gets_events_in_order_and_a_failing_one_holds_up_no_other() -> None:
    closed = free_port()
    # the first POST fails: "failing" is retried, and must still land before "recovered"
    with (
        webhook_receiver(answers=[500]) as receiver,
        notifications(
            webhook(f"http://127.0.0.1:{closed}/", retries=1),
            webhook(receiver.url, retries=3),
        ) as reports,
    ):
        send(reports, change(ok=False))
        send(reports, change(ok=True))
        wait_until(lambda: len(receiver.posts()) == 3, message="3 posts")
        reports.wait_final(4)
    assert [p["event"] for p in receiver.posts()] == ["failing", "failing", "recovered"]
    final = {(d.notifier.split()[1], d.event): d.ok for d in reports.final()}
    assert final == {
        (f"http://127.0.0.1:{closed}/", "failing"): False,
        (f"http://127.0.0.1:{closed}/", "recovered"): False,
        (receiver.url, "failing"): True,
        (receiver.url, "recovered"): True,
    }


def test_close_stops_retrying_at_once_with_one_last_report() -> None:
    port = free_port()
    reports = Reports()
    sender = Notifications([webhook(f"http://127.0.0.1:{port}/", retries=100)], "/", reports)
    sender.send(change())
    wait_until(lambda: reports.items, message="the first attempt")
    started = time.monotonic()
    sender.close()  # the next retry would come in 0.5 s, then 1 s, ...
    assert time.monotonic() - started < 0.4
    assert reports.items[-1].retry_in is None
    assert reports.items[-1].attempts == 2


# -- exec delivery -----------------------------------------------------------------------------

RECORDER = """\
import json, os, sys
event = json.load(sys.stdin)
env = {k: v for k, v in os.environ.items() if k.startswith("SVCORCH_") and k != "SVCORCH_TEST_RUN"}
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"event": event, "env": env, "cwd": os.getcwd()}) + "\\n")
"""


def test_exec_gets_the_event_on_stdin_and_svcorch_variables(tmp_path: Path) -> None:
    (tmp_path / "record.py").write_text(RECORDER)
    with notifications(
        command([sys.executable, "record.py", "got.jsonl"]), base_dir=tmp_path
    ) as reports:
        send(reports, change(ok=False))
        send(reports, change(ok=True))
        assert [d.ok for d in reports.wait_final(2)] == [True, True]
    lines = [json.loads(line) for line in (tmp_path / "got.jsonl").read_text().splitlines()]
    assert [line["event"] for line in lines] == [change().to_dict(), change(ok=True).to_dict()]
    assert lines[1]["env"] == change(ok=True).environment()
    assert lines[0]["cwd"] == str(tmp_path)  # relative commands resolve beside services.yaml


def test_exec_failure_reports_the_exit_status_and_last_line_and_is_retried(tmp_path: Path) -> None:
    script = f"echo noise; echo 'pager down: https://u:{SECRET}@pager/' >&2; exit 3"
    with notifications(
        ExecNotifier(type="exec", command=script, shell=True, retries=1),
        command([str(tmp_path / "missing")], retries=0),
    ) as reports:
        send(reports, change())
        reports.wait_final(2)
    shell = [d for d in reports.items if d.notifier == "exec echo"]
    assert [(d.attempts, d.detail, d.retry_in) for d in shell] == [
        (1, "exited 3: pager down: https://u:***@pager/", 0.05),
        (2, "exited 3: pager down: https://u:***@pager/", None),
    ]
    [missing] = [d for d in reports.items if d.notifier == "exec missing"]
    assert (missing.ok, missing.detail) == (False, "No such file or directory")


def test_exec_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # the shell waits on a child: killing only the shell would leave `sleep` behind
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    with notifications(
        ExecNotifier(
            type="exec", command=script, shell=True, timeout=timedelta(seconds=0.5), retries=0
        )
    ) as reports:
        started = time.monotonic()
        send(reports, change())
        [delivery] = reports.wait_final(1)
    assert time.monotonic() - started < 3
    assert delivery.detail == "no exit within 0.5s (killed)"
    wait_until(lambda: gone(int(pidfile.read_text())), 3, "the sleep to be killed")


def test_exec_that_leaves_a_background_process_does_not_hang_delivery(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # the background sleep inherits stdout and stderr: a pipe would stay open for 30 s
    script = f"sleep 30 & echo $! > {pidfile}; exit 0"
    try:
        with notifications(ExecNotifier(type="exec", command=script, shell=True)) as reports:
            started = time.monotonic()
            send(reports, change())
            [delivery] = reports.wait_final(1)
        assert delivery.ok
        assert time.monotonic() - started < 3
    finally:
        if pidfile.exists():
            pid = int(pidfile.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: gone(pid), 3, "the background sleep to go")


def test_a_notifier_that_raises_unexpectedly_is_a_report_not_a_dead_thread() -> None:
    calls: list[str] = []

    def flaky(notifier: object, event: HealthChange, body: bytes) -> None:
        calls.append(event.event)
        if len(calls) == 1:
            raise ValueError("surprise")

    reports = Reports()
    sender = Notifications(
        [webhook("http://127.0.0.1:9/")], "/", reports, retry_first=0.01, send=flaky
    )
    try:
        sender.send(change(ok=False))
        sender.send(change(ok=True))
        reports.wait_final(2)
    finally:
        sender.close()
    assert [(d.event, d.ok, d.detail) for d in reports.items] == [
        ("failing", False, "surprise"),
        ("failing", True, "sent"),
        ("recovered", True, "sent"),
    ]


@pytest.mark.parametrize("retries", [0, 2])
def test_attempts_are_retries_plus_one(retries: int) -> None:
    def refuse(notifier: object, event: HealthChange, body: bytes) -> None:
        raise OSError("nope")

    reports = Reports()
    sender = Notifications(
        [webhook("http://127.0.0.1:9/", retries=retries)],
        "/",
        reports,
        retry_first=0.01,
        send=refuse,
    )
    try:
        sender.send(change())
        [last] = reports.wait_final(1)
    finally:
        sender.close()
    assert last.attempts == retries + 1
    assert len(reports.items) == retries + 1
