"""A service speaking the systemd notify protocol: ``notifier.py MODE``.

ready     STATUS=booting, then READY=1 with STATUS=serving, then sleeps
outsider  a grandchild in its own session sends READY=1 (must be refused), then the service
          itself says STATUS=outsider sent and never READY=1
watchdog  READY=1, then WATCHDOG=1 every 50 ms for PINGS pings (argv[2]), then silence
mainpid   MAINPID=1 (not ours: refused), then MAINPID of a child in its group, then READY=1
"""

from __future__ import annotations

import os
import socket
import sys
import time


def send(text: str) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.encode(), address)


def main() -> None:
    mode = sys.argv[1]
    if mode == "ready":
        send("STATUS=booting")
        time.sleep(0.05)
        send("READY=1\nSTATUS=serving")
    elif mode == "outsider":
        pid = os.fork()
        if pid == 0:
            os.setsid()  # another session, another group: not of this run
            send("READY=1\nSTATUS=outsider says ready")
            os._exit(0)
        os.waitpid(pid, 0)
        send("STATUS=outsider sent")
    elif mode == "watchdog":
        send("READY=1")
        for _ in range(int(sys.argv[2])):
            time.sleep(0.05)
            send("WATCHDOG=1")
    elif mode == "mainpid":
        send("MAINPID=1")
        child = os.fork()
        if child == 0:
            time.sleep(300)
            os._exit(0)
        send(f"MAINPID={child}")
        send("READY=1")
    time.sleep(300)


if __name__ == "__main__":
    main()
