#!/usr/bin/env python3
"""Listen on 127.0.0.1:PORT after --delay seconds, say `ready on PORT`, exit 0 on SIGTERM.

Accepts connections and closes them at once (so the server side holds TIME_WAIT).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--exit-after", type=float, default=None)
    args = parser.parse_args()
    # raising from the handler interrupts sleep() and accept() alike
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(args.delay)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(16)
    print(f"ready on {listener.getsockname()[1]}", flush=True)
    deadline = None if args.exit_after is None else time.monotonic() + args.exit_after
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return 0
            listener.settimeout(remaining)
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
