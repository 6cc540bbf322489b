#!/usr/bin/env python3
"""Exit with CODE, after --after seconds."""

from __future__ import annotations

import argparse
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("code", type=int)
    parser.add_argument("--after", type=float, default=0.0)
    args = parser.parse_args()
    time.sleep(args.after)
    print(f"exiting with {args.code}", flush=True)
    return args.code


if __name__ == "__main__":
    sys.exit(main())
