"""How long a refused `svcorch up` takes: the preflight's figure in docs/operations.md.

    .venv/bin/python benchmarks/bench_preflight.py [--runs 7] [--write docs/operations.md]

A catalogue shaped like the shipped stack (11 services in 5 waves, each a real process
that would take 2 s to become ready), two of them broken as the issue found them: a program
that does not exist (`celeryy`) and a declared port already held by another process. The
whole command is timed, process start to exit, as a user waits for it:

- **cold**: no daemon runs, so `svcorch up` starts one (which then finds nothing to do and
  exits);
- **warm**: a daemon already runs (it supervises one other service);
- **validate**: `svcorch validate` reporting the same problems as warnings.

Every run checks the exit code (1; validate 0), that both problems are named, and that no
service was started (no log file). The load average is printed with the figures: the
machine is shared, and a busy one stretches every process start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TCP_READY = ROOT / "tests" / "support" / "services" / "tcp_ready.py"
SVCORCH = str(Path(sys.executable).with_name("svcorch"))
WAVES = [["redis", "epmd", "mariadb-init", "influxdb"], ["rabbitmq", "mysql"], ["migrate"],
         ["web", "worker", "worker-resource"], ["beat"]]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _catalogue(held: int) -> dict[str, object]:
    services: dict[str, object] = {}
    before: list[str] = []
    for wave in WAVES:
        for name in wave:
            port = held if name == "web" else _free_port()
            command = [sys.executable, str(TCP_READY), "--port", str(port), "--delay", "2"]
            if name == "worker":
                command = ["celeryy", "-A", "app", "worker"]
            services[name] = {
                "command": command,
                "ports": [port],
                "depends_on": list(before),
                "ready": {"type": "tcp", "port": port},
            }
        before = list(wave)
    services["other"] = {
        "command": [sys.executable, str(TCP_READY), "--port", str(_free_port())],
        "profiles": ["other"],
    }
    return {"version": 1, "name": "bench", "services": services}


def _timed(args: list[str], cwd: Path, expect: int) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [SVCORCH, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    took = time.perf_counter() - started
    if done.returncode != expect:
        raise SystemExit(f"svcorch {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return took, done.stderr


def _check(stderr: str, folder: Path, held: int) -> None:
    if (
        "worker: program 'celeryy' not found" not in stderr
        or f"port {held} is in use" not in stderr
    ):
        raise SystemExit(f"a problem was not named:\n{stderr}")
    logs = folder / ".svcorch" / "logs"
    started = [p.name for p in logs.glob("*.log") if p.name != "other.log"] if logs.exists() else []
    if started:
        raise SystemExit(f"services were started: {started}")


def measure(runs: int) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp(prefix="pf-", dir="/tmp"))
    held = _free_port()
    holder = subprocess.Popen(
        [sys.executable, str(TCP_READY), "--port", str(held)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    figures: dict[str, list[float]] = {"cold": [], "warm": [], "validate": []}
    try:
        assert holder.stdout is not None
        holder.stdout.readline()  # "ready on PORT"
        (folder / "services.yaml").write_text(yaml.safe_dump(_catalogue(held)))
        for _ in range(runs):
            took, stderr = _timed(["up"], folder, 1)
            _check(stderr, folder, held)
            figures["cold"].append(took)
            took, stderr = _timed(["validate"], folder, 0)
            _check(stderr, folder, held)
            figures["validate"].append(took)
        _timed(["up", "other"], folder, 0)  # a daemon now runs
        try:
            for _ in range(runs):
                took, stderr = _timed(["up"], folder, 1)
                _check(stderr, folder, held)
                figures["warm"].append(took)
        finally:
            _timed(["down"], folder, 0)
    finally:
        holder.terminate()
        holder.wait()
        shutil.rmtree(folder, ignore_errors=True)
    return figures


def table(figures: dict[str, list[float]]) -> str:
    rows = [
        "| command | median | slowest |",
        "|---|---|---|",
        *(
            f"| {label} | {statistics.median(figures[key]):.2f} s | {max(figures[key]):.2f} s |"
            for key, label in (
                ("cold", "`svcorch up`, no daemon running (refused)"),
                ("warm", "`svcorch up`, a daemon running (refused)"),
                ("validate", "`svcorch validate` (the same problems as warnings)"),
            )
        ),
    ]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", type=Path, help="replace the figures' block in this file")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    figures = measure(args.runs)
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    text = table(figures)
    print(text)
    print(load)
    if args.write:
        start, end = "<!-- bench_preflight:start -->", "<!-- bench_preflight:end -->"
        block = (
            f"{start}\n`python benchmarks/bench_preflight.py --runs {args.runs}` "
            f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {load}):\n\n{text}\n{end}"
        )
        content = args.write.read_text()
        if start in content and end in content:
            head, tail = content[: content.index(start)], content[content.index(end) + len(end) :]
            content = head + block + tail
        else:
            content = content.rstrip() + "\n\n" + block + "\n"
        args.write.write_text(content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
