"""`svcorch up --foreground`: the same engine in this process, output streamed with prefixes.

Ctrl-C or SIGTERM does an ordered down of everything it started, then exits 130 / 143.
Each service's leader gets PDEATHSIG and a watchdog process holds the services' process
groups, so even a kill -9 of this process leaves nothing behind, grandchildren included.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass

from svcorch.commands.logs import POLL_FIRST, Follower, emit_new, next_delay
from svcorch.engine import HAS_PROCESS, Engine, Event, Outcome
from svcorch.errors import PreflightFailed, ProjectMismatch, UsageError
from svcorch.model import Catalogue
from svcorch.process import GroupWatchdog
from svcorch.project import claim
from svcorch.state import (
    StateFile,
    StateLayout,
    StateLock,
    ensure_state_dir,
    records_by_identity,
)


@dataclass
class Hooks:
    """How the foreground run talks to the terminal (the CLI supplies these)."""

    on_event: Callable[[Event], None]
    on_line: Callable[[str, str], None]
    on_outcome: Callable[[Outcome], None]
    on_stopping: Callable[[str], None]
    on_notice: Callable[[str], None] = lambda _: None  # a corrupt state file set aside


def run(
    catalogue: Catalogue,
    layout: StateLayout,
    selected: set[str],
    hooks: Hooks,
    environ: dict[str, str],
    project: str,
) -> int:
    ensure_state_dir(layout.root)
    lock = StateLock(layout.lock, blocking=False)
    if not lock.try_acquire():
        raise UsageError(
            f"another svcorch (a daemon or a foreground up) owns {layout.root}; "
            "use `svcorch down` first, or another --state-dir"
        )
    try:
        owner = claim(layout.root, project)
        if owner != project:  # claimed by another project since the CLI looked
            raise ProjectMismatch(f"{layout.root} serves project {owner!r}, not {project!r}")
        return asyncio.run(_main(catalogue, layout, selected, hooks, environ))
    finally:
        lock.release()


async def _main(
    catalogue: Catalogue,
    layout: StateLayout,
    selected: set[str],
    hooks: Hooks,
    environ: dict[str, str],
) -> int:
    engine = Engine(catalogue, layout, die_with_parent=True, environ=environ)
    problems = await engine.preflight(selected)
    if problems:
        await engine.close()
        raise PreflightFailed(problems)
    # we hold the lock: a corrupt file is ours to set aside, what it lost found by identity
    records, set_aside = StateFile(layout.state_file).load_or_set_aside(
        refind=lambda: records_by_identity(layout.root)
    )
    if set_aside is not None:
        hooks.on_notice(set_aside.message())
    watchdog = GroupWatchdog()
    engine.subscribe(lambda event: _guard(engine, watchdog, event))
    engine.adopt(records)
    engine.subscribe(hooks.on_event)
    engine.start_housekeeping()
    received: list[int] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def record(sig: int) -> None:  # the handler only records; the loop below acts
        received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, record, sig)
    streamer = loop.create_task(_stream(layout, sorted(selected), hooks.on_line))
    code = 0
    try:
        up = loop.create_task(engine.up(selected))
        stopper = loop.create_task(stop.wait())
        await asyncio.wait({up, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if up.done():
            outcome = up.result()
            hooks.on_outcome(outcome)
            if outcome.ok:
                await stop.wait()
            else:
                code = 1
        else:
            up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await up
        stopper.cancel()
        reason = signal.Signals(received[0]).name if received else "a failed start"
        hooks.on_stopping(reason)
        await engine.down(engine.graph.names)
    finally:
        streamer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await streamer
        await engine.close()
        watchdog.release()
    if received:
        return 128 + received[0]
    return code


def _guard(engine: Engine, watchdog: GroupWatchdog, event: Event) -> None:
    """The watchdog holds the group of every service that has a process now."""
    runtime = engine.runtimes.get(event.service)
    if runtime is None or runtime.record is None:
        return
    if event.new in HAS_PROCESS:
        watchdog.watch(runtime.record.pgid)
    elif not engine.processes.group_left(runtime):
        watchdog.forget(runtime.record.pgid)


async def _stream(
    layout: StateLayout, services: list[str], emit: Callable[[str, str], None]
) -> None:
    followers = [Follower(s, layout.service_log(s)) for s in services]
    for follower in followers:
        follower.start_at_end()
    delay = POLL_FIRST
    try:
        while True:
            delay = next_delay(delay, emit_new(followers, emit))
            await asyncio.sleep(delay)
    except asyncio.CancelledError:
        emit_new(followers, emit)  # whatever the services wrote while stopping
        raise
