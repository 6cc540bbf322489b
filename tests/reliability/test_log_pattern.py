"""Issue 8 point 5, as reported: `pattern: '(a+)+$'` against lines of 27 `a`s and a `!`
stalled `status` for 8.5 s. With RE2 the probe's attempts take microseconds, so the daemon
answers while the service keeps printing such lines and its probe keeps failing.

    .venv/bin/pytest tests/reliability/test_log_pattern.py -q -s -p no:cacheprovider
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from svcorch import control
from tests.runtime.conftest import Stack, stop_popen
from tests.support import wait_until

LINE = "a" * 27 + "!"
ANSWER_BOUND = 0.5  # seconds for the daemon to answer a status (it takes milliseconds)


@pytest.fixture
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="svc-", dir="/tmp"))
    made = Stack(root)
    try:
        yield made
    finally:
        made.run("down", "--timeout", "2s")
        shutil.rmtree(root, ignore_errors=True)


def test_an_evil_log_pattern_never_stalls_status(stack: Stack) -> None:
    # 5,000 near-matches at once, then one more every 10 ms, never a match
    script = (
        "import sys, time\n"
        f"print('{LINE}\\n' * 5000, end='', flush=True)\n"
        f"while True:\n    print('{LINE}', flush=True)\n    time.sleep(0.01)\n"
    )
    stack.write(
        {
            "evil": {
                "command": [sys.executable, "-c", script],
                "ready": {"type": "log", "pattern": "(a+)+$", "timeout": "30s", "period": "100ms"},
            }
        }
    )
    up = stack.popen("up")
    try:
        wait_until(
            lambda: stack.log("evil").count(LINE) >= 5000,
            timeout=20,
            message="the service to print its lines",
        )
        assert stack.status()["evil"]["state"] == "starting"  # the real CLI, once
        # the daemon's own answer time, without a CLI's start: this is what a stall shows in
        worst = 0.0
        for _ in range(20):
            started = time.monotonic()
            with control.Connection(stack.state_dir / "svcorch.sock") as connection:
                rows = connection.request({"op": "status"})["services"]
            worst = max(worst, time.monotonic() - started)
            assert rows[0]["state"] == "starting"  # probing, failing, never stuck
        print(f"\nlog-pattern: 20 status requests while probing, worst answer {worst:.3f}s")
        assert worst < ANSWER_BOUND
    finally:
        stop_popen(up)
