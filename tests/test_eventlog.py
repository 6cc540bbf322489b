"""The daemon's subscriber: classified, scrubbed, journaled, alerted; the `events` op."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from svcorch import catalogue as catalogue_module
from svcorch import control
from svcorch.engine.events import Event
from svcorch.engine.service import State
from svcorch.eventlog import FOLLOW_LAST, EventLog
from svcorch.journal import Journal, journal_path

TOKEN = "tok-Zq81-secret"
PASSWORD = "pw-Hq22-secret"
RECORDER = """\
import json, sys
with open(sys.argv[1], "a") as out:
    out.write(json.dumps(json.load(sys.stdin)) + "\\n")
"""


def write_catalogue(folder: Path, **top: Any) -> Path:
    (folder / "record.py").write_text(RECORDER)
    document = {
        "version": 1,
        "name": "shop",
        "env": {"API_TOKEN": TOKEN},
        "notify": [
            {
                "type": "exec",
                "command": [sys.executable, "record.py", "got.jsonl"],
                "damping": "0s",
            }
        ],
        "services": {
            "web": {
                "command": "sleep 100",
                "ready": {"type": "http", "url": f"http://admin:{PASSWORD}@127.0.0.1:9/"},
            },
            "db": {"command": "sleep 100"},
        },
        **top,
    }
    path = folder / "services.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def event(service: str, old: State, new: State, detail: str = "") -> Event:
    return Event(service, old, new, time.time(), detail, 123)


def received(folder: Path) -> list[dict[str, Any]]:
    path = folder / "got.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_detail_is_scrubbed_once_for_the_journal_the_stream_and_the_notifiers(
    tmp_path: Path,
) -> None:
    catalogue = catalogue_module.load(write_catalogue(tmp_path), environ={"HOME": "/root"})

    async def scenario() -> None:
        log = EventLog(tmp_path)
        log.configure(catalogue, {"DEPLOY_PASSWORD": "from-the-environment"})
        leaky = f"cannot start: token {TOKEN}, password {PASSWORD}, from-the-environment"
        log(event("web", State.WAITING, State.FAILED, leaky))
        await log.close()

    asyncio.run(scenario())
    [record] = Journal(journal_path(tmp_path)).read()
    assert record.detail == "cannot start: token ***, password ***, ***"
    assert (record.kind, record.severity, record.pid) == ("failed", "error", 123)
    [alert] = received(tmp_path)
    assert alert["detail"] == record.detail and alert["event"] == "failed"
    assert alert["catalogue"] == "shop"
    for name in ("events.jsonl", "got.jsonl"):
        text = (tmp_path / name).read_text()
        assert TOKEN not in text and PASSWORD not in text and "from-the-environment" not in text


def test_numbers_go_on_across_daemons(tmp_path: Path) -> None:
    async def one_daemon() -> None:
        log = EventLog(tmp_path)
        log(event("db", State.STOPPED, State.WAITING))
        log(event("db", State.WAITING, State.STARTING, "pid 1"))
        await log.close()

    asyncio.run(one_daemon())
    asyncio.run(one_daemon())
    assert [r.seq for r in Journal(journal_path(tmp_path)).read()] == [1, 2, 3, 4]


def test_a_follower_gets_history_then_live_events_without_a_gap(tmp_path: Path) -> None:
    """Over a real Unix socket, as the daemon serves it."""
    socket_path = tmp_path / "s.sock"

    async def scenario() -> list[dict[str, Any]]:
        log = EventLog(tmp_path)
        for n in range(FOLLOW_LAST + 5):
            log(event("db", State.STARTING, State.READY, f"old {n}"))

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = control.decode(await reader.readline())

            async def send(message: dict[str, Any]) -> None:
                writer.write(control.encode(message))
                await writer.drain()

            await log.serve(request, reader, send)
            writer.close()

        server = await asyncio.start_unix_server(serve, path=str(socket_path))
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        writer.write(control.encode({"op": "events", "services": ["db"], "since": None}))
        got: list[dict[str, Any]] = []
        while len(got) < FOLLOW_LAST:
            got.append(control.decode(await reader.readline()))
        log(event("web", State.STARTING, State.READY, "not followed"))
        log(event("db", State.READY, State.BACKOFF, "restarting in 1s: exited with code 1"))
        got.append(control.decode(await reader.readline()))
        await log.close()  # the daemon exits: the follower is told
        got.append(control.decode(await reader.readline()))
        writer.close()
        server.close()
        await server.wait_closed()
        return got

    got = asyncio.run(scenario())
    history = [m["event"]["detail"] for m in got[:FOLLOW_LAST]]
    assert history == [f"old {n}" for n in range(5, FOLLOW_LAST + 5)]
    live = got[FOLLOW_LAST]["event"]
    assert (live["service"], live["kind"], live["seq"]) == ("db", "exited", FOLLOW_LAST + 7)
    assert got[-1] == {"result": {"ok": True, "ended": "the daemon exited"}}


def test_a_new_catalogue_with_other_notifiers_replaces_the_alerter(tmp_path: Path) -> None:
    first = catalogue_module.load(write_catalogue(tmp_path), environ={})
    second = catalogue_module.load(write_catalogue(tmp_path, notify=[]), environ={})

    async def scenario() -> None:
        log = EventLog(tmp_path)
        log.configure(first, {})
        alerter = log.alerter
        log.configure(first, {})
        assert log.alerter is alerter  # same notifiers: the same alerter (and its windows)
        log.configure(second, {})
        assert log.alerter is None
        log(event("db", State.READY, State.FATAL, "3 restarts within 60s"))
        await log.close()

    asyncio.run(scenario())  # close() waited for deliveries: none were due
    assert received(tmp_path) == []
