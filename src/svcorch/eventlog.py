"""The daemon's events: each transition classified, scrubbed, journaled, streamed and alerted.

``EventLog`` subscribes to the engine's bus. For every event, on the engine's loop, it
decides the kind and severity (``engine.events.Classifier``), scrubs the detail of the
catalogue's secrets, appends one line to the journal, hands the record to every follower
(the control socket's ``events`` op) and posts it to the alerter. Nothing here waits: the
journal is one small write, followers and the alerter have queues, and delivering alerts
happens on the alerter's and the notifiers' threads.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from svcorch.alerts import Alerter
from svcorch.engine.events import Classifier, Event
from svcorch.journal import EventRecord, Journal, journal_path
from svcorch.model import Catalogue
from svcorch.notify import Delivery
from svcorch.redaction import Redactor

log = logging.getLogger("svcorch.events")

FOLLOW_BACKLOG = 10_000  # records a follower may lag behind before it is let go
FOLLOW_LAST = 10  # a follower that gave no `since` first gets the last ten, as tail -f does
CLOSE_TIMEOUT = 2.0  # seconds an exiting daemon gives its last alerts

Send = Callable[[dict[str, Any]], Awaitable[None]]


class _Follower:
    """One ``events`` client: the records it has yet to be sent, or why it was let go."""

    def __init__(self, services: set[str]) -> None:
        self.services = services
        self.queue: asyncio.Queue[EventRecord | None] = asyncio.Queue()
        self.ended = ""
        self.done = asyncio.Event()

    def offer(self, record: EventRecord) -> bool:
        """False once it lags too far behind (a client that stopped reading)."""
        if self.services and record.service not in self.services:
            return True
        if self.queue.qsize() >= FOLLOW_BACKLOG:
            self.end(f"fell {FOLLOW_BACKLOG} events behind")
            return False
        self.queue.put_nowait(record)
        return True

    def end(self, why: str) -> None:
        self.ended = why
        self.queue.put_nowait(None)


class EventLog:
    """Journal, followers and alerts for one daemon; touched only on the daemon's loop."""

    def __init__(self, state_dir: Path) -> None:
        self.journal = Journal(journal_path(state_dir))
        try:
            self.seq = self.journal.last_seq()  # numbers go on across daemons
        except OSError:
            self.seq = 0
        self.classify = Classifier()
        self.followers: set[_Follower] = set()
        self.alerter: Alerter | None = None
        self.host = socket.gethostname()
        self._redactor = Redactor()
        self._alerting: tuple[object, ...] | None = None
        self._journal_failed = False

    def configure(self, catalogue: Catalogue, environ: Mapping[str, str]) -> None:
        """Take a (re)loaded catalogue: its secrets, its name and its notifiers."""
        self._redactor = Redactor.for_catalogue(catalogue, environ)
        name = catalogue.name or str(catalogue.path.absolute())
        alerting = (tuple(catalogue.notify), name, str(catalogue.base_dir))
        if alerting == self._alerting:
            return
        self._alerting = alerting
        old, self.alerter = self.alerter, None
        if old is not None:
            # off the loop: its last deliveries may take a while
            asyncio.get_running_loop().run_in_executor(None, old.close, CLOSE_TIMEOUT)
        if catalogue.notify:
            self.alerter = Alerter(
                catalogue.notify,
                base_dir=str(catalogue.base_dir),
                catalogue=name,
                host=self.host,
                on_delivery=_log_delivery,
            )

    def scrub(self, detail: str) -> str:
        """The one place a detail is cleaned of secrets before anyone sees it."""
        return self._redactor.text(detail)

    def __call__(self, event: Event) -> None:
        """The bus's subscriber: runs on the loop, never waits."""
        kind, severity = self.classify(event)
        self.seq += 1
        record = EventRecord(
            seq=self.seq,
            time=event.time,
            service=event.service,
            kind=kind.value,
            severity=severity.value,
            old=event.old.value,
            new=event.new.value,
            detail=self.scrub(event.detail),
            pid=event.pid,
        )
        self._journal(record)
        for follower in list(self.followers):
            if not follower.offer(record):
                self.followers.discard(follower)
        if self.alerter is not None:
            self.alerter.post(record)

    def _journal(self, record: EventRecord) -> None:
        try:
            self.journal.append(record)
        except OSError as exc:
            if not self._journal_failed:  # once, not once per event on a full disk
                log.error("cannot write the event journal %s: %s", self.journal.path, exc)
            self._journal_failed = True
            self.journal.close()
        else:
            self._journal_failed = False

    # -- the `events` op -------------------------------------------------------------------

    async def serve(
        self, request: Mapping[str, Any], reader: asyncio.StreamReader, send: Send
    ) -> None:
        """History since ``since`` (or the last few), then every new event, until the
        client goes away or the daemon exits."""
        services = {str(name) for name in request.get("services") or []}
        since = request.get("since")
        since = float(since) if isinstance(since, int | float) else None
        follower = _Follower(services)
        self.followers.add(follower)  # before reading history: nothing falls in between
        upto = self.seq
        gone = asyncio.ensure_future(reader.read(1))  # EOF (or anything): the client left
        try:
            history = await asyncio.to_thread(self.journal.read, since=since, services=services)
            history = [record for record in history if record.seq <= upto]
            if since is None:
                history = history[-FOLLOW_LAST:]
            for record in history:
                await send({"event": record.to_dict()})
            await self._stream(follower, gone, send)
        finally:
            self.followers.discard(follower)
            gone.cancel()
            follower.done.set()

    async def _stream(self, follower: _Follower, gone: asyncio.Future[bytes], send: Send) -> None:
        while True:
            getter = asyncio.ensure_future(follower.queue.get())
            watched: set[asyncio.Future[Any]] = {getter, gone}
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                return  # the client left
            record = getter.result()
            if record is None:
                await send({"result": {"ok": True, "ended": follower.ended}})
                return
            await send({"event": record.to_dict()})

    async def close(self) -> None:
        """The daemon is exiting: followers are told, open windows summarised and sent."""
        await self.release_followers()
        if self.alerter is not None:
            await asyncio.to_thread(self.alerter.close, CLOSE_TIMEOUT)
        self.journal.close()

    async def release_followers(self) -> None:
        """End every follower's stream, before the server closes: from Python 3.12 on, a
        closing server waits for its connections, and a follower never leaves by itself."""
        followers = list(self.followers)
        for follower in followers:
            follower.end("the daemon exited")
        if followers:  # let them write their last line; a stuck client is not waited for
            waits: list[asyncio.Task[bool]] = [
                asyncio.create_task(follower.done.wait()) for follower in followers
            ]
            await asyncio.wait(waits, timeout=1)
            for wait in waits:
                wait.cancel()


def _log_delivery(delivery: Delivery) -> None:
    if delivery.ok:
        log.info(
            "notified %s about %s %s (attempt %d)",
            delivery.notifier,
            delivery.service,
            delivery.event,
            delivery.attempts,
        )
        return
    then = f"retry in {delivery.retry_in:g}s" if delivery.retry_in is not None else "gave up"
    log.warning(
        "notifying %s about %s %s failed (attempt %d): %s; %s",
        delivery.notifier,
        delivery.service,
        delivery.event,
        delivery.attempts,
        delivery.detail,
        then,
    )
