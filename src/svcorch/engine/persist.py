"""The state file, written off the loop: atomic, in order, coalesced.

An fsync takes milliseconds and the loop spawns and probes meanwhile, so writes run on one
writer thread: a write never waits behind probe attempts, and writes land in the order their
snapshots were taken. All transitions of one loop turn, and all made while a write is under
way, become one atomic write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from svcorch.state import ServiceRecord, StateFile

log = logging.getLogger("svcorch.engine")

Snapshot = Callable[[], dict[str, ServiceRecord]]


class StateWriter:
    """Keeps ``state.json`` in step with the engine's runtimes."""

    def __init__(self, state_file: StateFile, snapshot: Snapshot) -> None:
        self.state_file = state_file
        self._snapshot = snapshot  # taken on the loop, so it is consistent
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="svcorch-state")
        self._dirty = False
        self._writing: asyncio.Task[None] | None = None

    @property
    def pending(self) -> bool:
        """Never written yet, or a change not written yet."""
        return self._dirty or self._writing is None

    def schedule(self) -> None:
        """Write soon, off the loop."""
        self._dirty = True
        if self._writing is None or self._writing.done():
            self._writing = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty:
            self._dirty = False
            records = self._snapshot()
            try:
                await loop.run_in_executor(self._executor, self.state_file.save, records)
            except Exception:
                log.exception("could not write %s", self.state_file.path)

    async def flush(self) -> None:
        """Return once the file holds every transition made so far."""
        while self._writing is not None and not self._writing.done():
            # shielded: a caller that is cancelled must not abort a write half-way
            await asyncio.shield(self._writing)

    def write_now(self) -> None:
        """Write at once, on this thread (for a process about to exit)."""
        self._dirty = False
        try:
            self.state_file.save(self._snapshot())
        except Exception:
            log.exception("could not write %s", self.state_file.path)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
