#!/usr/bin/env python3
"""Print some noise, then --line after --delay seconds; run until SIGTERM (exit 0)."""

from __future__ import annotations

import argparse
import signal
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--line", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("booting", flush=True)
    print("noise: loading modules", file=sys.stderr, flush=True)
    time.sleep(args.delay)
    print(args.line, flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
