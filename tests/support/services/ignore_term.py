#!/usr/bin/env python3
"""Ignore SIGTERM (saying `ignoring SIGTERM` each time) and run until SIGKILL.

Prints `ready` once the handler is installed (and the listener open, with --port).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
    listener = None
    if args.port is not None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", args.port))
        listener.listen(16)
    print("ready", flush=True)
    while True:
        if listener is None:
            signal.pause()
        else:
            conn, _ = listener.accept()  # retried after the handler runs (PEP 475)
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
