"""A chatty service's log stays near ``logs.max_size``: the size is checked every
ROTATE_EVERY seconds, so the log passes max_size by at most what the service writes in that
time (docs/catalogue.md; the figure in docs/reliability.md comes from this test)."""

from __future__ import annotations

import contextlib
import os
import time

from svcorch.engine.core import ROTATE_EVERY
from tests.runtime.conftest import Stack
from tests.support import wait_until

LINE = 4096
PAUSE = 0.01  # ~400 KB/s: a log that grows fast enough to show the check interval
MAX_SIZE = 64 * 1024
WRITER = (
    "import sys, time\n"
    "while True:\n"
    f"    sys.stdout.write('x' * {LINE - 1} + '\\n'); sys.stdout.flush(); time.sleep({PAUSE})\n"
)


def test_a_log_passes_max_size_by_at_most_one_check_interval_of_output(stack: Stack) -> None:
    stack.write(
        {"chatty": {"command": ["python3", "-c", WRITER]}},
        logs={"max_size": f"{MAX_SIZE}b", "backups": 1},
    )
    stack.ok("up")
    path = stack.state_dir / "logs" / "chatty.log"
    wait_until(lambda: (stack.state_dir / "logs" / "chatty.log.1").exists(), timeout=10)
    largest = 0
    started = time.monotonic()
    while time.monotonic() - started < 3.0:
        with contextlib.suppress(FileNotFoundError):
            largest = max(largest, os.stat(path).st_size)
        time.sleep(0.005)
    stack.ok("down")
    rate = LINE / PAUSE  # bytes per second, at most (sleep only adds time)
    bound = MAX_SIZE + rate * ROTATE_EVERY
    # twice the interval's output: a loaded machine delays a check by a tick or so
    assert largest <= MAX_SIZE + 2 * rate * ROTATE_EVERY, (largest, bound)
    print(f"largest log seen: {largest} bytes; max_size {MAX_SIZE}; bound {bound:.0f}")
