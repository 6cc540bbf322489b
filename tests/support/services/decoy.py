#!/usr/bin/env python3
"""A bystander: a process svcorch must never signal. It notes every catchable signal it gets.

Each of SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGCONT is appended to
--record by name instead of acting on it (SIGKILL and SIGSTOP cannot be caught: a decoy that
is gone or stopped was signalled too). Writes `ready` to --record once the handlers are in.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

CAUGHT = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCONT")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    fd = os.open(args.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def note(number: int, _frame: object) -> None:
        os.write(fd, f"{signal.Signals(number).name}\n".encode("ascii"))

    for name in CAUGHT:
        signal.signal(getattr(signal, name), note)
    os.write(fd, b"ready\n")
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
