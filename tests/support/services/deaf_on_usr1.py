#!/usr/bin/env python3
"""Listen on 127.0.0.1:PORT; on SIGUSR1 stop listening but keep running; exit 0 on SIGTERM.

A liveness probe on PORT then fails while the process is still alive: a hung server.
Says `ready on PORT` once listening and `deaf now` after SIGUSR1.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deaf: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, _: deaf.append(signum))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(16)
    listener.settimeout(0.05)  # so a SIGUSR1 is acted on promptly
    print(f"ready on {args.port}", flush=True)
    while not deaf:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        conn.close()
    listener.close()
    print("deaf now", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
