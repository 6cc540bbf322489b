"""Events: every transition of a service is one ``Event``, made in one place.

The bus sets the new state, stamps the times ``analyze`` reads, logs the transition, hands the
event to every subscriber (the CLI's live view, the daemon's clients, the state file) and wakes
whoever waits for a condition over the services' states.

``classify`` says what a transition means to an operator (its ``EventKind`` and ``Severity``):
the daemon's journal, ``svcorch events`` and the notifiers all use it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

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

    def note(self, runtime: Runtime, detail: str) -> None:
        """A new detail for the same state (a notify service's ``STATUS=``): shown by status
        and kept in the state file, but no transition, so no event and no reaction."""
        runtime.detail = self.redact(detail)
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


# -- what a transition means to an operator ---------------------------------------------------


class Severity(StrEnum):
    """How much a transition asks of an operator; notifiers send what is at least theirs."""

    INFO = "info"
    WARNING = "warning"  # a crash that is being healed, a dependency down, a start retried
    ERROR = "error"  # down and not coming back by itself
    CRITICAL = "critical"  # gave up: too many restarts

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {severity: rank for rank, severity in enumerate(Severity)}


class EventKind(StrEnum):
    """What happened, in the words an operator acts on (docs/operations.md, Alerts)."""

    WAITING = "waiting"  # for its dependencies
    STARTED = "started"
    READY = "ready"
    COMPLETED = "completed"  # a oneshot exited 0
    EXITED = "exited"  # exited on its own, with its code or signal
    BACKOFF = "backoff"  # a start failed; retried after the backoff
    RESTARTED = "restarted"  # started again by its restart policy or liveness
    LIVENESS_FAILED = "liveness-failed"
    RECOVERED = "recovered"  # ready again after a problem
    FAILED = "failed"  # a start failed for good
    FATAL = "fatal"  # too many restarts: stays down
    BLOCKED = "blocked"  # not started: a dependency failed
    DEGRADED = "degraded"  # running, but a dependency it needs is down
    RECREATED = "recreated"  # stopped to run a changed definition (detail "recreate: ...")
    STOPPING = "stopping"
    STOPPED = "stopped"


_RUNNING = frozenset({State.READY, State.UNREADY, State.DEGRADED, State.RUNNING})
_HEALTHY = frozenset({State.READY, State.COMPLETED})
_QUIET_EXIT = ("exited with code 0", "exited while no svcorch daemon was watching")


def classify(
    old: State, new: State, detail: str, *, troubled: bool = False
) -> tuple[EventKind, Severity]:
    """The kind and severity of one transition; the one place they are decided.

    ``troubled``: the service had a problem (an event at warning or above) and has not been
    healthy since, so becoming ready again is a recovery.
    """
    if new in _HEALTHY and (troubled or old is State.UNREADY):
        return EventKind.RECOVERED, Severity.INFO
    fixed = _KINDS.get(new)
    return fixed if fixed is not None else _by_context(old, new, detail)


def _by_context(old: State, new: State, detail: str) -> tuple[EventKind, Severity]:
    """The states whose kind depends on where the service came from, or why."""
    if new is State.STOPPING:
        if detail.startswith("liveness failed"):
            return EventKind.LIVENESS_FAILED, Severity.WARNING  # threshold reached: restarting
        recreate = detail.startswith("recreate")
        return (EventKind.RECREATED if recreate else EventKind.STOPPING), Severity.INFO
    if new in (State.STARTING, State.RUNNING):
        restarted = old is State.BACKOFF
        return (EventKind.RESTARTED if restarted else EventKind.STARTED), Severity.INFO
    if new is State.BACKOFF:
        # a running process that ended on its own is a crash; anything else is a start retried
        crashed = old in _RUNNING
        return (EventKind.EXITED if crashed else EventKind.BACKOFF), Severity.WARNING
    if new is State.EXITED:
        quiet = detail.startswith(_QUIET_EXIT)
        return EventKind.EXITED, Severity.WARNING if quiet else Severity.ERROR
    raise ValueError(f"no kind for {old.value} -> {new.value}")  # a new State: add it here


_KINDS: dict[State, tuple[EventKind, Severity]] = {
    State.WAITING: (EventKind.WAITING, Severity.INFO),
    State.PROBING: (EventKind.STARTED, Severity.INFO),
    State.READY: (EventKind.READY, Severity.INFO),
    State.COMPLETED: (EventKind.COMPLETED, Severity.INFO),
    State.UNREADY: (EventKind.LIVENESS_FAILED, Severity.INFO),  # below its threshold yet
    State.FAILED: (EventKind.FAILED, Severity.ERROR),
    State.FATAL: (EventKind.FATAL, Severity.CRITICAL),
    State.BLOCKED: (EventKind.BLOCKED, Severity.WARNING),
    State.DEGRADED: (EventKind.DEGRADED, Severity.WARNING),
    State.STOPPED: (EventKind.STOPPED, Severity.INFO),
}


class Classifier:
    """Kinds for one stream of events: remembers which services are in trouble, so that
    their next ready (or completion) is reported as ``recovered``."""

    def __init__(self) -> None:
        self._troubled: set[str] = set()

    def __call__(self, event: Event) -> tuple[EventKind, Severity]:
        troubled = event.service in self._troubled
        kind, severity = classify(event.old, event.new, event.detail, troubled=troubled)
        if severity.rank >= Severity.WARNING.rank:
            self._troubled.add(event.service)
        elif event.new in _HEALTHY or event.new is State.STOPPED:
            # healthy again, or stopped on purpose: the incident is over
            self._troubled.discard(event.service)
        return kind, severity
