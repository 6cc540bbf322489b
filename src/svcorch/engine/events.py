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

# How loud a transition is in the daemon log (and for whoever alerts on events): a service
# that gave up is an error; one that crashed, lost a dependency or is failing its liveness
# probe is a warning; starts, stops and recoveries are information.
ERROR_STATES = frozenset({State.FAILED, State.FATAL})
WARNING_STATES = frozenset(
    {State.BACKOFF, State.EXITED, State.DEGRADED, State.UNREADY, State.BLOCKED}
)


# ready again without a new start: the ready time stays the start's
RECOVERING = frozenset({State.UNREADY, State.DEGRADED})


def level_of(new: State) -> int:
    if new in ERROR_STATES:
        return logging.ERROR
    if new in WARNING_STATES:
        return logging.WARNING
    return logging.INFO


@dataclass(frozen=True)
class Event:
    """One transition of one service."""

    service: str
    old: State
    new: State
    time: float  # wall clock
    detail: str = ""
    pid: int | None = None
    level: int = logging.INFO  # logging's levels: WARNING for a crash or a lost dependency

    def to_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "old": self.old.value,
            "new": self.new.value,
            "time": self.time,
            "detail": self.detail,
            "pid": self.pid,
            "level": logging.getLevelName(self.level).lower(),
        }


class EventBus:
    """Transitions, their subscribers, and waiting for a condition on the states."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.subscribers: list[Callable[[Event], None]] = []
        self.changed = asyncio.Condition()
        self._on_change = on_change  # after every transition (the state file's writer)
        # secrets: every detail passes through it before anyone sees it (the engine sets it)
        self.redact: Callable[[str], str] = lambda text: text
        # the engine's own reactions to a transition (dependents following a dependency);
        # run after the subscribers, so every observer sees a cause before its effects
        self.reactions: list[Callable[[Runtime], None]] = []
        self._background: set[asyncio.Task[None]] = set()

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def set(
        self, runtime: Runtime, new: State, detail: str = "", *, level: int | None = None
    ) -> None:
        """Move ``runtime`` to ``new``: the one way a service changes state. ``level``
        overrides how loud it is (a restart that waits for a dependency is a warning)."""
        old = runtime.state
        detail = self.redact(detail)  # secrets: events, log, status and state see this
        runtime.state = new
        runtime.detail = detail
        now = time.time()
        if new is State.STARTING or new is State.RUNNING:
            runtime.started_at = now
            runtime.ready_at = None
        elif (new is State.READY and old not in RECOVERING) or new is State.COMPLETED:
            # a oneshot's completion is when it released its dependents: analyze counts it
            runtime.ready_at = now
        if level is None:
            level = level_of(new)
        event = Event(
            runtime.name,
            old,
            new,
            now,
            detail,
            runtime.record.pid if runtime.record else None,
            level,
        )
        log.log(
            level,
            "%s: %s -> %s%s",
            runtime.name,
            old.value,
            new.value,
            f" ({detail})" if detail else "",
        )
        for callback in list(self.subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not stop the engine
                log.exception("event subscriber failed")
        self._on_change()
        self._wake()
        for react in self.reactions:
            try:
                react(runtime)
            except Exception:  # the transition happened; a failed reaction is logged
                log.exception("reacting to %s's transition failed", runtime.name)

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
