#!/usr/bin/env python3
"""A service whose grandchild escapes its process group, as daemonising helpers do.

Double fork: the child calls setsid() and forks the grandchild, then exits, so the grandchild
is in a session (and process group) of its own, reparented to init, and a killpg of the
service's group misses it. --pidfile gets "LEADER GRANDCHILD", written atomically once the
grandchild runs; then the leader prints `escaped GRANDCHILD` and waits for a signal. Both
die on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


def _grandchild(ready_fd: int) -> None:
    os.setsid()
    if os.fork() != 0:
        os._exit(0)  # the child: its job was the setsid and the fork
    os.write(ready_fd, f"{os.getpid()}\n".encode("ascii"))
    os.close(ready_fd)
    while True:
        signal.pause()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pidfile", type=Path, required=True)
    args = parser.parse_args()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        _grandchild(write_end)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end) as pipe:
        grandchild = int(pipe.readline())
    partial = args.pidfile.with_name(args.pidfile.name + ".partial")
    partial.write_text(f"{os.getpid()} {grandchild}\n")
    partial.replace(args.pidfile)
    print(f"escaped {grandchild}", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
