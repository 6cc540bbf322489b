"""On a terminal, `svcorch up` shows a live table: each service's state, time and detail."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import time

from tests.runtime.conftest import Stack, tcp_service
from tests.support import free_port

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_terminal(stack: Stack, *args: str, timeout: float = 60.0) -> tuple[int, str]:
    """Run svcorch with a pseudo-terminal as its stdout, as a person at a shell would."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        stack.argv(*args),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**stack.env, "TERM": "xterm", "COLUMNS": "120", "LINES": "40"},
        cwd=stack.root,
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            assert time.monotonic() < deadline, "svcorch did not finish"
    finally:
        os.close(master)
        code = process.wait(timeout=timeout)
    return code, ANSI.sub(b"", output).decode("utf-8", "replace")


def test_up_on_a_terminal_draws_a_live_table(stack: Stack) -> None:
    db, web = free_port(), free_port()
    stack.write(
        {
            "db": tcp_service(db, delay=0.3),
            "web": tcp_service(web, delay=0.1, depends_on=["db"]),
        }
    )
    code, screen = run_in_terminal(stack, "up")
    assert code == 0, screen
    assert "SERVICE" in screen and "STATE" in screen and "TIME" in screen
    assert re.search(r"db\s+ready\s+\d+\.\ds\s+connected", screen), screen
    assert re.search(r"web\s+ready\s+\d+\.\ds\s+connected", screen), screen
    assert "2 ready in" in screen
    # not a terminal: one plain line per transition, nothing redrawn
    plain = stack.ok("down")
    assert "SERVICE" not in plain and "db" in plain
