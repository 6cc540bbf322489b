#!/usr/bin/env python3
"""Fork N grandchildren that sleep forever in the same process group, then wait.

--pidfile gets this process's pid and then each grandchild's, one a line, written
atomically once all exist. Killing only this process leaves the grandchildren running.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, required=True)
    parser.add_argument("--pidfile", type=Path, default=None)
    args = parser.parse_args()
    pids = [os.getpid()]
    for _ in range(args.children):
        pid = os.fork()
        if pid == 0:
            while True:
                signal.pause()
        pids.append(pid)
    text = "".join(f"{pid}\n" for pid in pids)
    if args.pidfile is not None:
        partial = args.pidfile.with_name(args.pidfile.name + ".partial")
        partial.write_text(text)
        partial.replace(args.pidfile)
    print("forked " + " ".join(map(str, pids[1:])), flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
