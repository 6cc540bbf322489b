"""`svcorch up` / `svcorch down` as whole commands, next to an ideal reference orchestrator.

    .venv/bin/python benchmarks/bench_runtime.py [--runs 3] [--write docs/benchmarks.md]
    .venv/bin/python benchmarks/bench_runtime.py --services 20 --levels 4 --delay-ms 200

The stack is a generated DAG: N services in L levels, each depending on two services of the
level before, each a real process (tests/support/services/tcp_ready.py) that listens on its
own loopback port D ms after it starts. svcorch gets a catalogue with default probe settings.

The reference does only what any orchestrator must: one thread per service waits for its
dependencies, spawns the service, polls its port every 5 ms; for down, each thread waits for
its dependents to be gone, sends SIGTERM to the service's group and waits for it to exit.
Its down time is "the services' own stop time" in dependency order.

Goals (issue 4 §8, on 2 cores): up <= 1.10x the reference for N=20, L=4, D=200 ms and for
N=200; down within 150 ms of the reference's, in correct order; daemon RSS <= 50 MiB with
200 children. "Cold" is the usual case: no daemon runs, `svcorch up` starts one. "Warm" is
an up sent to a daemon that already runs (e.g. after `svcorch up` of something else).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
TCP_READY = ROOT / "tests" / "support" / "services" / "tcp_ready.py"
SVCORCH = str(Path(sys.executable).with_name("svcorch"))
POLL = 0.005  # the reference's probe interval
MIB = 1024 * 1024


# --- the stack -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dag:
    levels: tuple[tuple[str, ...], ...]
    dependencies: dict[str, tuple[str, ...]]
    ports: dict[str, int]
    delay: float

    @property
    def names(self) -> list[str]:
        return [name for level in self.levels for name in level]

    def dependents(self, name: str) -> list[str]:
        return [n for n, deps in self.dependencies.items() if name in deps]

    def argv(self, name: str) -> list[str]:
        port = str(self.ports[name])
        return [sys.executable, str(TCP_READY), "--port", port, "--delay", str(self.delay)]


def generate(services: int, levels: int, delay: float) -> Dag:
    per_level = max(2, services // levels)
    names = [
        tuple(f"s{level}-{index:03d}" for index in range(per_level)) for level in range(levels)
    ]
    dependencies: dict[str, tuple[str, ...]] = {}
    for level, members in enumerate(names):
        for index, name in enumerate(members):
            if level == 0:
                dependencies[name] = ()
            else:
                before = names[level - 1]
                dependencies[name] = (before[index], before[(index + 1) % len(before)])
    ports = free_ports(len(dependencies))
    return Dag(tuple(names), dependencies, dict(zip(dependencies, ports, strict=True)), delay)


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def write_catalogue(dag: Dag, path: Path, probe_period: str | None = None) -> None:
    """Default probe settings, or every readiness probe with ``period`` (the longest pause
    between attempts) set to ``probe_period``."""
    tuning = {} if probe_period is None else {"period": probe_period}
    services = {
        name: {
            "command": dag.argv(name),
            "depends_on": list(dag.dependencies[name]),
            "ready": {"type": "tcp", "port": dag.ports[name], **tuning},
        }
        for name in dag.names
    }
    path.write_text(yaml.safe_dump({"version": 1, "name": "bench", "services": services}))


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SVCORCH_")}


# --- the reference orchestrator ----------------------------------------------------------------


@dataclass
class Reference:
    dag: Dag
    popens: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def up(self) -> float:
        ready = {name: threading.Event() for name in self.dag.names}
        started = time.monotonic()

        def bring_up(name: str) -> None:
            for dependency in self.dag.dependencies[name]:
                ready[dependency].wait()
            self.popens[name] = subprocess.Popen(
                self.dag.argv(name),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=environment(),
            )
            while not port_open(self.dag.ports[name]):
                time.sleep(POLL)
            ready[name].set()

        run_threads(bring_up, self.dag.names)
        return time.monotonic() - started

    def down(self) -> float:
        stopped = {name: threading.Event() for name in self.dag.names}
        started = time.monotonic()

        def stop(name: str) -> None:
            for dependent in self.dag.dependents(name):
                stopped[dependent].wait()
            popen = self.popens[name]
            os.killpg(popen.pid, signal.SIGTERM)
            popen.wait()
            stopped[name].set()

        run_threads(stop, self.dag.names)
        return time.monotonic() - started

    def kill(self) -> None:
        for popen in self.popens.values():
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()


def run_threads(target: Callable[[str], None], names: list[str]) -> None:
    threads = [threading.Thread(target=target, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


# --- svcorch -----------------------------------------------------------------------------------


@dataclass
class Svcorch:
    dag: Dag
    root: Path

    @property
    def file(self) -> Path:
        return self.root / "services.yaml"

    @property
    def state_dir(self) -> Path:
        return self.root / "st"

    def command(self, *args: str) -> tuple[float, str]:
        argv = [SVCORCH, "-f", str(self.file), "--state-dir", str(self.state_dir), *args]
        started = time.monotonic()
        result = subprocess.run(
            argv, capture_output=True, text=True, env=environment(), check=False
        )
        took = time.monotonic() - started
        if result.returncode != 0:
            raise RuntimeError(f"svcorch {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return took, result.stdout

    def start_daemon(self) -> None:
        """A daemon with nothing up yet, as after `svcorch up` of something else."""
        subprocess.run(
            [
                sys.executable,
                "-m",
                "svcorch.supervisor",
                "--detach",
                "--state-dir",
                str(self.state_dir),
                "--file",
                str(self.file),
            ],
            env=environment(),
            stdout=subprocess.DEVNULL,
            check=True,
        )
        socket_path = self.state_dir / "svcorch.sock"
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not start")
            time.sleep(0.01)

    def daemon(self) -> psutil.Process | None:
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if "svcorch.supervisor" in cmdline and str(self.state_dir) in cmdline:
                return proc
        return None

    def check_stop_order(self, output: str) -> None:
        """Every service stopped before any of its dependencies began stopping."""
        order: dict[tuple[str, str], int] = {}
        for index, line in enumerate(output.splitlines()):
            match = re.match(r"^(\S+)\s+(stopping|stopped)\b", line)
            if match:
                order.setdefault((match[1], match[2]), index)
        for name, dependencies in self.dag.dependencies.items():
            for dependency in dependencies:
                if order[name, "stopped"] > order[dependency, "stopping"]:
                    raise RuntimeError(f"{dependency} began stopping before {name} stopped")

    def check_start_order(self) -> None:
        document = json.loads((self.state_dir / "state.json").read_text())
        records = {entry["name"]: entry for entry in document["services"]}
        for name, dependencies in self.dag.dependencies.items():
            for dependency in dependencies:
                if records[dependency]["ready_at"] > records[name]["started_at"]:
                    raise RuntimeError(f"{name} started before {dependency} was ready")


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Figures:
    label: str
    reference_up: list[float] = field(default_factory=list)
    reference_down: list[float] = field(default_factory=list)
    cold_up: list[float] = field(default_factory=list)
    warm_up: list[float] = field(default_factory=list)
    down: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)


def measure(
    services: int, levels: int, delay: float, runs: int, probe_period: str | None, warm: bool
) -> Figures:
    probes = "default probes" if probe_period is None else f"probe period {probe_period}"
    figures = Figures(f"N={services}, L={levels}, D={delay * 1000:g} ms, {probes}")
    for _ in range(runs):
        dag = generate(services, levels, delay)
        reference = Reference(dag)
        try:
            figures.reference_up.append(reference.up())
            figures.reference_down.append(reference.down())
        finally:
            reference.kill()
        with stack(dag, probe_period) as svcorch:
            figures.cold_up.append(svcorch.command("up")[0])
            svcorch.check_start_order()
            daemon = svcorch.daemon()
            if daemon is None:
                raise RuntimeError("no daemon after up")
            if len(daemon.children()) != len(dag.names):
                raise RuntimeError(f"the daemon has {len(daemon.children())} children")
            figures.rss.append(daemon.memory_info().rss / MIB)
            took, output = svcorch.command("down")
            svcorch.check_stop_order(output)
            figures.down.append(took)
            if warm:
                svcorch.start_daemon()
                figures.warm_up.append(svcorch.command("up")[0])
                svcorch.command("down")
    return figures


@contextlib.contextmanager
def stack(dag: Dag, probe_period: str | None) -> Iterator[Svcorch]:
    root = Path(tempfile.mkdtemp(prefix="svb-", dir="/tmp"))
    svcorch = Svcorch(dag, root)
    write_catalogue(dag, svcorch.file, probe_period)
    try:
        yield svcorch
    finally:
        with contextlib.suppress(Exception):
            svcorch.command("down", "--timeout", "2s")
        shutil.rmtree(root, ignore_errors=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


HEADER = (
    "| stack | reference up | svcorch up, cold | ratio | svcorch up, warm | ratio "
    "| reference down | svcorch down | difference | daemon RSS |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def row(f: Figures) -> str:
    ref_up, ref_down = median(f.reference_up), median(f.reference_down)
    cold, warm, down = median(f.cold_up), median(f.warm_up), median(f.down)
    warm_cells = f"{warm:.2f} s | {warm / ref_up:.2f}x" if f.warm_up else "- | -"
    return (
        f"| {f.label} | {ref_up:.2f} s | {cold:.2f} s | {cold / ref_up:.2f}x | {warm_cells} "
        f"| {ref_down * 1000:.0f} ms | {down * 1000:.0f} ms | {(down - ref_down) * 1000:+.0f} ms "
        f"| {max(f.rss, default=float('nan')):.1f} MiB |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--services", type=int, nargs="*", default=[20, 200])
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--delay-ms", type=float, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--probe-period",
        nargs="*",
        default=["default", "5ms"],
        help="readiness probe periods to compare ('default' = svcorch's own)",
    )
    parser.add_argument("--no-warm", action="store_true", help="skip the warm-daemon up")
    parser.add_argument("--write", type=Path, help="put the table into this markdown file")
    args = parser.parse_args()
    rows = []
    print(HEADER, flush=True)
    for services in args.services:
        for period in args.probe_period:
            figures = measure(
                services,
                args.levels,
                args.delay_ms / 1000,
                args.runs,
                None if period == "default" else period,
                not args.no_warm,
            )
            rows.append(row(figures))
            print(rows[-1], flush=True)
    if args.write:
        replace_table(args.write, HEADER + "\n" + "\n".join(rows), " ".join(sys.argv[1:]))
    return 0


def replace_table(path: Path, text: str, arguments: str) -> None:
    """Put the table between the bench_runtime markers of ``path`` (appended if absent)."""
    start, end = "<!-- bench_runtime:start -->", "<!-- bench_runtime:end -->"
    command = f"python benchmarks/bench_runtime.py {arguments}".rstrip()
    block = (
        f"{start}\n`{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, medians; "
        f"start and stop order checked on every run):\n\n{text}\n{end}"
    )
    content = path.read_text() if path.exists() else ""
    if start in content and end in content:
        content = content[: content.index(start)] + block + content[content.index(end) + len(end) :]
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    path.write_text(content)


if __name__ == "__main__":
    sys.exit(main())
