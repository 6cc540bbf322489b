"""Waiting for a probe: attempts with fast-then-slow backoff until ready, fatal or timed out.

One loop, two drivers: ``wait_ready`` blocks a thread (``svcorch check --wait``), and
``wait_ready_async`` runs each attempt in a worker thread under an asyncio loop (the engine).
Both end with one result whose detail says which probe, what it tried, why it stopped and
after how long, with every secret of the options scrubbed from it:

    redis probe redis://127.0.0.1:6379/0: gave up after 60.0s: Connection refused
    mysql probe mysql://root:***@127.0.0.1:3306/: fatal after 0.01s: (1045, "Access ...")
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from svcorch.probes.base import Probe, ProbeOptions, ProbeResult, redact


def backoff_delays(period: float, first: float = 0.01, factor: float = 1.2) -> Iterator[float]:
    """Delays between attempts: ``first``, growing by ``factor``, never above ``period``.

    Fast at first, because most services are ready within a second and every 100 ms of
    polling slack adds up along a dependency chain; slow later, to spare a struggling server.
    A gentle growth (1.2x) keeps the lag after a service becomes ready to about a sixth of
    the time it took, until the cap; 1.5x measured a third, which added up over four levels
    of the runtime benchmark.
    """
    delay = min(first, period)
    while True:
        yield delay
        delay = min(delay * factor, period)


def check_once(probe: Probe, options: ProbeOptions) -> ProbeResult:
    """One attempt, with the attempt timeout as its deadline; secrets scrubbed."""
    result = probe.check(time.monotonic() + options.effective_attempt_timeout())
    return result.scrubbed(options.secrets())


class _Run:
    """The bookkeeping both loops share: deadline, backoff, last result, final messages."""

    def __init__(self, options: ProbeOptions, clock: Callable[[], float]) -> None:
        self.options = options
        self.clock = clock
        self.started = clock()
        self.deadline = self.started + options.timeout.total_seconds()
        self.delays = backoff_delays(options.period.total_seconds())
        self.last: ProbeResult | None = None
        self.attempts = 0

    def probe_deadline(self) -> float:
        """The deadline for ``probe.check``, on ``time.monotonic()`` whatever our clock is."""
        return time.monotonic() + max(self.deadline - self.clock(), 0.0)

    def expired(self) -> bool:
        return self.attempts > 0 and self.clock() >= self.deadline

    def record(self, result: ProbeResult) -> ProbeResult | None:
        """The final result if this attempt ends the wait, else None (try again)."""
        self.last = result
        self.attempts += 1
        if result.ok:
            return ProbeResult.passed(self._scrub(result.detail), elapsed=self.elapsed())
        if not result.retryable:
            return self._final("fatal", retryable=False)
        if self.expired():
            return self.gave_up()
        return None

    def interrupted(
        self, *, stopped: bool, is_alive: Callable[[], bool] | None
    ) -> ProbeResult | None:
        """The final result if the wait must end before the next attempt, else None."""
        if stopped:
            return self.cancelled()
        if is_alive is not None and not is_alive():
            return self.exited()
        if self.expired():
            return self.gave_up()
        return None

    def settle(
        self, result: ProbeResult, is_alive: Callable[[], bool] | None
    ) -> ProbeResult | None:
        """``record``, and a success counts only if the process is still alive."""
        final = self.record(result)
        if final is not None and final.ok and is_alive is not None and not is_alive():
            return self.exited()
        return final

    def next_delay(self) -> float:
        return max(min(next(self.delays), self.deadline - self.clock()), 0.0)

    def gave_up(self) -> ProbeResult:
        # retryable: the cause was transient; whether to start over is the caller's policy
        return self._final("gave up", retryable=True)

    def exited(self) -> ProbeResult:
        return self._final("process exited", retryable=False, before=True)

    def cancelled(self) -> ProbeResult:
        return self._final("cancelled", retryable=False, before=True)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def _final(self, why: str, *, retryable: bool, before: bool = False) -> ProbeResult:
        elapsed = self.elapsed()
        # target() hides its own secrets; scrubbing it again would also hide a user named
        # like the password (RabbitMQ's guest/guest)
        head = f"{self.options.type} probe {self.options.target()}: {why} after {_seconds(elapsed)}"
        if self.last is not None:
            last = self._scrub(self.last.detail)
            head += f" (last attempt: {last})" if before else f": {last}"
        return ProbeResult.failed(head, retryable=retryable, elapsed=elapsed)

    def _scrub(self, text: str) -> str:
        return redact(text, self.options.secrets())


def _seconds(value: float) -> str:
    return f"{value:.2f}s" if value < 1 else f"{value:.1f}s"


def wait_ready(
    probe: Probe,
    options: ProbeOptions,
    *,
    is_alive: Callable[[], bool] | None = None,
    cancelled: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeResult:
    """Attempt until ready, a fatal failure, ``options.timeout``, death or cancellation.

    ``is_alive`` is asked before each attempt and after a success (a stale server on the same
    port must not make a dead service look ready). ``cancelled`` interrupts the wait between
    attempts at once; an attempt in progress ends by its own deadline.
    """
    run = _Run(options, clock)
    while True:
        stopped = cancelled is not None and cancelled.is_set()
        final = run.interrupted(stopped=stopped, is_alive=is_alive)
        if final is None:
            final = run.settle(probe.check(run.probe_deadline()), is_alive)
        if final is not None:
            return final
        delay = run.next_delay()
        if cancelled is not None:
            cancelled.wait(delay)
        else:
            sleep(delay)


async def wait_ready_async(
    probe: Probe,
    options: ProbeOptions,
    *,
    is_alive: Callable[[], bool] | None = None,
    stop: asyncio.Event | None = None,
) -> ProbeResult:
    """``wait_ready`` for an asyncio loop: attempts run in worker threads, ``stop`` aborts.

    When ``stop`` is set during an attempt, the result comes back at once; the worker thread
    finishes its attempt by its own deadline and its answer is dropped.
    """
    run = _Run(options, time.monotonic)
    while True:
        stopped = stop is not None and stop.is_set()
        final = run.interrupted(stopped=stopped, is_alive=is_alive)
        if final is not None:
            return final
        attempt = asyncio.ensure_future(asyncio.to_thread(probe.check, run.probe_deadline()))
        if not await _finished_unless_stopped(attempt, stop):
            return run.cancelled()
        final = run.settle(attempt.result(), is_alive)
        if final is not None:
            return final
        await _sleep_unless_stopped(stop, run.next_delay())


async def _finished_unless_stopped(
    attempt: asyncio.Future[ProbeResult], stop: asyncio.Event | None
) -> bool:
    """Await the attempt; False if ``stop`` was set first (the attempt is left to finish)."""
    if stop is None:
        await attempt
        return True
    stopper = asyncio.ensure_future(stop.wait())
    racing: set[asyncio.Future[Any]] = {attempt, stopper}
    try:
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if attempt.done():
        return True
    # retrieve its outcome later, so a late error is not reported as "never retrieved"
    attempt.add_done_callback(_discard)
    return False


async def _sleep_unless_stopped(stop: asyncio.Event | None, delay: float) -> None:
    """Sleep ``delay``; return early when ``stop`` is set (the loop then sees it)."""
    if stop is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


def _discard(future: asyncio.Future[ProbeResult]) -> None:
    if not future.cancelled():
        future.exception()
