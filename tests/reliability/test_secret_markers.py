"""Secret markers pushed through every output path: nothing svcorch writes may carry one.

A unique marker goes into every place a catalogue holds a secret: a service's env, the env
file, the top-level env, the process environment (through ``${VAR}``), URL userinfo, a
``?token=`` query, an Authorization header, probe passwords, a webhook's URL and query, an
exec notifier's argument. Then the installed command runs over them with real processes and
real servers: an exec probe that echoes the environment (as given, base64 and URL-encoded),
an http probe against a server that echoes what it was sent (the Basic header svcorch built
from the URL's userinfo among it), RabbitMQ and Redis refusing the probe passwords, a real
daemon for up/restart/status/down, ``check --watch`` with a webhook and an exec notifier.

Every output, every file in the state directory and every notification payload is searched
for every marker in every spelling. The figure in docs/reliability.md ("Secrets") is this
test's count, checked against it:

    .venv/bin/pytest tests/reliability/test_secret_markers.py -q -s
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml

from tests.support import wait_until
from tests.support.cli import SVCORCH, assert_clean, run_svcorch
from tests.support.http import Received, Receiver, webhook_receiver

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"

ECHO_ENV = """\
import base64, os, urllib.parse
words = []
for name in ("DB_PASSWORD", "SHARED_SECRET", "API_TOKEN", "QUERY_TOKEN", "NOTIFY_TOKEN"):
    value = os.environ[name]
    words += [value, base64.b64encode(value.encode()).decode(), urllib.parse.quote(value, safe="")]
print("env:", *words)
"""
RECORDER = """\
import json, os, sys
event = json.load(sys.stdin)
env = {k: v for k, v in os.environ.items() if k.startswith("SVCORCH_") and k != "SVCORCH_TEST_RUN"}
with open(sys.argv[2], "a") as out:
    out.write(json.dumps({"stdin": event, "env": env}) + "\\n")
"""
# where each marker is pushed in (its name) and the user names sent with it in a Basic header
PLACES = {
    "service env DB_PASSWORD": None,
    "top-level env SHARED_SECRET": None,
    "env_file API_TOKEN": None,
    "process environment QUERY_TOKEN (?token= of an http probe)": None,
    "http probe URL userinfo": "probe",
    "http probe Authorization header": None,
    "amqp probe password": None,
    "redis probe URL userinfo": "",
    "webhook URL userinfo": "hook",
    "webhook URL ?token=": None,
    "env_file NOTIFY_TOKEN (exec notifier argument)": None,
}


def marker(index: int) -> str:
    # the `!` makes the URL-encoded spelling differ from the plain one
    return f"mk{index}x{secrets.token_hex(4)}!"


def spellings(value: str, user: str | None) -> dict[str, str]:
    """Every way the marker could come out: its core (inside any plain, URL-encoded or
    JSON-escaped spelling), base64 alone (both alphabets, padded or not), and base64 of
    ``user:value`` as a Basic header carries it."""
    found = {"plain/url-encoded": value.rstrip("!"), "url-encoded": quote(value, safe="")}
    found["form-encoded"] = quote_plus(value)
    encoded = {"base64": value} | ({"basic auth": f"{user}:{value}"} if user is not None else {})
    for kind, text in encoded.items():
        whole = base64.b64encode(text.encode()).decode()
        for variant in (whole, whole.rstrip("="), whole.replace("+", "-").replace("/", "_")):
            found[f"{kind} {variant}"] = variant
    return found


@dataclass
class Search:
    """Everything svcorch wrote, by where it was found."""

    outputs: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, label: str, text: str) -> None:
        assert label not in self.outputs, label
        self.outputs[label] = text

    def command(self, label: str, result: subprocess.CompletedProcess[str]) -> None:
        assert_clean(result)
        with self.lock:
            self.add(f"`svcorch {label}` stdout", result.stdout)
            self.add(f"`svcorch {label}` stderr", result.stderr)

    def leaks(self, markers: dict[str, str]) -> list[str]:
        found = []
        for label, text in self.outputs.items():
            # a rich table folds a long detail over lines: join them again to search
            joined = "".join(text.split())
            for place, value in markers.items():
                for kind, spelling in spellings(value, PLACES[place]).items():
                    if spelling in text or spelling in joined:
                        found.append(f"{place} ({kind}) in {label}")
        return found


class Background:
    """``svcorch ARGS`` running in the background, its output read as it comes."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str]) -> None:
        assert SVCORCH is not None
        self.process = subprocess.Popen(
            [SVCORCH, *args],
            cwd=cwd,
            env={**os.environ, **env},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.out)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.err)),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def stop(self) -> subprocess.CompletedProcess[str]:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(15)
        for reader in self.readers:
            reader.join()
        return subprocess.CompletedProcess([], code, "".join(self.out), "".join(self.err))


def echo_request(request: Received) -> bytes:
    """A careless health page: it says what it was sent, credentials and all."""
    auth = request.headers.get("Authorization", "")
    decoded = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else ""
    return f"auth={auth} decoded={decoded} path={request.path}".encode()


@pytest.fixture
def servers() -> Iterator[tuple[Receiver, Receiver]]:
    with (
        webhook_receiver(get_body=echo_request, get_status=503) as page,
        webhook_receiver() as hook,
    ):
        yield page, hook


def write_project(folder: Path, markers: list[str], page: str, hook: str) -> None:
    (folder / "echo_env.py").write_text(ECHO_ENV)
    (folder / "record.py").write_text(RECORDER)
    (folder / ".env").write_text(f"API_TOKEN={markers[2]}\nNOTIFY_TOKEN={markers[10]}\n")
    page_host = page.removeprefix("http://")
    hook_host = hook.removeprefix("http://")
    catalogue = {
        "version": 1,
        "env_file": ".env",
        "env": {"SHARED_SECRET": markers[1]},
        "services": {
            "app": {
                "command": ["sleep", "300"],
                "env": {"DB_PASSWORD": markers[0]},
                "ready": {"type": "exec", "command": [sys.executable, "echo_env.py"]},
            },
            "web": {
                "external": True,
                "ready": {
                    "type": "http",
                    "url": f"http://probe:{quote(markers[4], safe='')}@{page_host}/health"
                    "?token=${QUERY_TOKEN}",
                    "timeout": "1s",
                },
            },
            "api": {
                "external": True,
                "ready": {
                    "type": "http",
                    "url": f"{page}/api",
                    "headers": {"Authorization": f"Bearer {markers[5]}"},
                    "timeout": "1s",
                },
            },
            "mq": {
                "external": True,
                "ready": {"type": "amqp", "password": markers[6], "timeout": "5s"},
            },
            "cache": {
                "external": True,
                "ready": {
                    "type": "redis",
                    "url": f"redis://:{quote(markers[7], safe='')}@127.0.0.1:6379/0",
                    "timeout": "5s",
                },
            },
        },
        "notify": [
            {
                "type": "webhook",
                "url": f"http://hook:{quote(markers[8], safe='')}@{hook_host}/hook"
                f"?token={quote(markers[9], safe='')}",
            },
            {
                "type": "exec",
                "command": [sys.executable, "record.py", "${NOTIFY_TOKEN}", "notified.jsonl"],
            },
        ],
    }
    (folder / "services.yaml").write_text(yaml.safe_dump(catalogue, sort_keys=False))


def recorded(folder: Path) -> int:
    record = folder / "notified.jsonl"
    return len(record.read_text().splitlines()) if record.exists() else 0


def test_no_secret_marker_reaches_any_output_or_file(
    tmp_path: Path, servers: tuple[Receiver, Receiver]
) -> None:
    page, hook = servers
    values = [marker(index) for index in range(len(PLACES))]
    markers = dict(zip(PLACES, values, strict=True))
    write_project(tmp_path, values, page.url, hook.url)
    env = {"QUERY_TOKEN": values[3]}
    search = Search()

    def svcorch(*args: str, codes: tuple[int, ...] = (0,)) -> Any:
        result = run_svcorch(*args, cwd=tmp_path, env=env, timeout=60)
        assert result.returncode in codes, (args, result.stdout, result.stderr)
        search.command(" ".join(args), result)
        return result

    # the commands that need no daemon are independent: run side by side (the probes
    # mostly wait on sockets); each watch's first round finds four services failing
    watches = {
        f"check --watch{' '.join(['', *more])}": Background(
            "check", "--watch", "--interval", "1s", *more, cwd=tmp_path, env=env
        )
        for more in ([], ["--json"])
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        alone = [
            pool.submit(svcorch, *args, codes=codes)
            for args, codes in (
                (["validate"], (0,)),
                (["config"], (0,)),
                (["config", "--json"], (0,)),
                (["check"], (1,)),
                (["check", "--json"], (1,)),
                (["check", "--wait", "--timeout", "1s"], (1,)),
            )
        ]
        rows = {row["service"]: row for row in json.loads(alone[4].result().stdout)}
        for future in alone:
            future.result()
    try:
        wait_until(lambda: len(hook.posts()) >= 8, 30, "four webhook deliveries per watch")
        wait_until(lambda: recorded(tmp_path) >= 8, 30, "four exec notifier runs per watch")
    finally:
        for label, running in watches.items():
            result = running.stop()
            assert result.returncode == 128 + signal.SIGTERM, result.stderr
            search.command(label, result)
    svcorch("up", codes=(1,))
    svcorch("restart", "app")
    svcorch("status")
    status = {row["service"]: row for row in json.loads(svcorch("status", "--json").stdout)}
    svcorch("down", "--json")

    state = tmp_path / ".svcorch"
    files = sorted(p for p in state.rglob("*") if p.is_file())
    for path in files:
        search.add(f"state dir: {path.relative_to(state)}", path.read_text(errors="replace"))
    payloads = [r.body.decode() for r in hook.requests if r.method == "POST"]
    search.add("webhook payloads", "\n".join(payloads))
    search.add(
        "exec notifier stdin and SVCORCH_* variables", (tmp_path / "notified.jsonl").read_text()
    )

    # the markers were used, not just written down: sent, echoed back, masked on the way out
    sent = [r for r in page.requests if r.method == "GET"]
    basic = base64.b64encode(f"probe:{values[4]}".encode()).decode()
    assert any(r.headers.get("Authorization") == f"Basic {basic}" for r in sent)
    assert any(r.headers.get("Authorization") == f"Bearer {values[5]}" for r in sent)
    assert any(f"token={values[3]}" in r.path for r in sent)
    assert rows["app"]["detail"].startswith("exit 0: env: *** *** ***")
    assert "auth=Basic *** decoded=probe:*** path=/health?token=***" in rows["web"]["detail"]
    assert "auth=*** decoded= path=/api" in rows["api"]["detail"]
    assert "ACCESS_REFUSED" in rows["mq"]["detail"]
    assert status["app"]["detail"].startswith("exit 0: env: *** *** ***")
    assert {"state.json", "daemon.log", "logs/app.log"} <= {
        str(p.relative_to(state)) for p in files
    }
    assert hook.requests[0].headers["Authorization"].startswith("Basic ")  # its own, as meant

    leaks = search.leaks(markers)
    # the state directory's files are counted apart: what svcorch keeps there may grow
    files_searched = sum(label.startswith("state dir: ") for label in search.outputs)
    figure = (
        f"{len(markers)} secret markers, {len(search.outputs) - files_searched} outputs and"
        f" notifications searched and every file of the state directory, {len(leaks)} found"
    )
    print(f"\n{figure} (state directory: {files_searched} files)")
    assert leaks == [], "\n".join(leaks)
    assert figure in " ".join(DOCS.read_text().split()), f"docs/reliability.md must say: {figure}"


def test_a_crash_log_and_its_message_carry_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An internal error (exit 3) writes its traceback to crash.log: masked like the rest."""
    from svcorch import cli, render

    secret = marker(0)
    (tmp_path / "services.yaml").write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "services": {"app": {"command": "sleep 1", "env": {"DB_PASSWORD": secret}}},
            }
        )
    )

    def broken(*_: object) -> None:  # a bug that puts a secret in its message
        raise RuntimeError(f"cannot render {secret} (base64 {base64.b64encode(secret.encode())!r})")

    monkeypatch.setattr(render, "resolved_catalogue", broken)
    state = tmp_path / "state"
    code = cli.run(
        ["-f", str(tmp_path / "services.yaml"), "--state-dir", str(state), "-v", "config"]
    )
    assert code == cli.EXIT_CRASH
    err = capsys.readouterr().err
    crash = (state / "crash.log").read_text()
    assert "RuntimeError: cannot render ***" in crash
    assert "Traceback" in err and "internal error: RuntimeError: cannot render ***" in err
    for text in (crash, err):
        for spelling in spellings(secret, None).values():
            assert spelling not in text


def test_the_figure_is_in_the_docs() -> None:
    section = DOCS.read_text().partition("## Secrets")[2].partition("\n## ")[0]
    assert re.search(
        r"\d+ secret markers, \d+ outputs and notifications searched and every file of the"
        r" state directory, 0 found",
        " ".join(section.split()),
    )
    assert "pytest tests/reliability/test_secret_markers.py" in section
