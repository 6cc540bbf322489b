"""Events: every transition of a service is one ``Event``, made in one place.

The bus sets the new state, stamps the times ``analyze`` reads, logs the transition, hands the
event to every subscriber (the CLI's live view, the daemon's clients, the state file) and wakes
whoever waits for a condition over the services' states.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from svcorch.engine.service import Runtime, State

log = logging.getLogger("svcorch.engine")


@dataclass(frozen=True)
class Event:
    """One transition of one service."""

    service: str
    old: State
    new: State
    time: float  # wall clock
    detail: str = ""
    pid: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "old": self.old.value,
            "new": self.new.value,
            "time": self.time,
            "detail": self.detail,
            "pid": self.pid,
        }


class EventBus:
    """Transitions, their subscribers, and waiting for a condition on the states."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.subscribers: list[Callable[[Event], None]] = []
        self.changed = asyncio.Condition()
        self._on_change = on_change  # after every transition (the state file's writer)
        # secrets: every detail passes through it before anyone sees it (the engine sets it)
        self.redact: Callable[[str], str] = lambda text: text
        self._background: set[asyncio.Task[None]] = set()

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def set(self, runtime: Runtime, new: State, detail: str = "") -> None:
        """Move ``runtime`` to ``new``: the one way a service changes state."""
        old = runtime.state
        detail = self.redact(detail)  # secrets: events, log, status and state see this
        runtime.state = new
        runtime.detail = detail
        now = time.time()
        if new is State.STARTING or new is State.RUNNING:
            runtime.started_at = now
            runtime.ready_at = None
        elif (new is State.READY and old is not State.UNREADY) or new is State.COMPLETED:
            # a oneshot's completion is when it released its dependents: analyze counts it
            runtime.ready_at = now
        event = Event(
            runtime.name, old, new, now, detail, runtime.record.pid if runtime.record else None
        )
        log.info(
            "%s: %s -> %s%s", runtime.name, old.value, new.value, f" ({detail})" if detail else ""
        )
        for callback in list(self.subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not stop the engine
                log.exception("event subscriber failed")
        self._on_change()
        self._wake()

    def _wake(self) -> None:
        async def wake() -> None:
            async with self.changed:
                self.changed.notify_all()

        task = asyncio.get_running_loop().create_task(wake())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await self.changed.wait_for(predicate)
