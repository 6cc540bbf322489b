"""A supervisord event listener that acknowledges every event (speaks the listener protocol)."""

import sys

while True:
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    header = dict(token.split(":") for token in sys.stdin.readline().split())
    sys.stdin.read(int(header["len"]))
    sys.stdout.write("RESULT 2\nOK")
    sys.stdout.flush()
