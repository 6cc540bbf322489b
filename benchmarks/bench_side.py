"""Side by side in one run: svcorch, the reference orchestrator and a real supervisord.

1. ``status``, start and stop of N independent programs (``sleep``), N = 20 and 200:
   svcorch (`svcorch status` / `up` / `down`, a daemon already running for `up`, as
   supervisord runs before `supervisorctl start all`), supervisord 4.x (`supervisorctl
   status` / `start all` / `stop all`, programs with `autostart=false`, `startsecs=0`), and
   a reference (spawn N, then killpg and wait each: the floor; it has no status).
2. Readiness lag of `ready: {type: notify}` against a TCP probe (svcorch's default timing) on
   redis-server (`--supervised systemd`) and gunicorn: start -> ready as svcorch recorded it
   (state.json), the only difference between the two runs being the probe.
3. The shipped stack's cold `up` (no daemon) against the critical chain of its servers' own
   ready times (`svcorch analyze --json`: the chain's start -> ready times, summed). Runs only
   when none of the stack's fixed ports is taken (another session may be running it).

Every figure is a median with its range (min-max) over ``--runs``; no figure is asserted.
``--write docs/benchmarks.md`` puts the tables between the bench_side markers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SVCORCH = str(BIN / "svcorch")
STACK_PORTS = (18000, 16379, 15673, 25673, 14369, 13306, 18086, 18088)


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SVCORCH_")}
    env.update(extra)
    return env


def timed(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(
        argv, cwd=cwd, env=env or environment(), capture_output=True, text=True, check=False
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return took


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def spread(values: list[float], unit: float = 1000.0, suffix: str = " ms") -> str:
    if not values:
        return "—"
    median = statistics.median(values) * unit
    low, high = min(values) * unit, max(values) * unit
    return f"{median:.0f}{suffix} ({low:.0f}-{high:.0f})"


# --- 1. status, start, stop ---------------------------------------------------------------------


def svcorch_programs(root: Path, count: int, runs: int) -> dict[str, list[float]]:
    services = {f"p{i}": {"command": "sleep 300"} for i in range(count)}
    (root / "services.yaml").write_text(json.dumps({"version": 1, "services": services}))
    base = [SVCORCH, "-f", str(root / "services.yaml"), "--state-dir", str(root / "st")]
    figures: dict[str, list[float]] = {"status": [], "start": [], "stop": []}
    try:
        for _ in range(runs):
            _start_daemon(root)
            figures["start"].append(timed([*base, "up"]))
            for _ in range(3):
                figures["status"].append(timed([*base, "status"]))
            figures["stop"].append(timed([*base, "down"]))
    finally:
        subprocess.run([*base, "down"], capture_output=True, check=False)
    return figures


def _start_daemon(root: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "svcorch.supervisor", "--detach", "--state-dir", str(root / "st"),
         "--file", str(root / "services.yaml")],
        env=environment(), stdout=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    wait_for((root / "st" / "svcorch.sock").exists, "the svcorch daemon")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.002
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def supervisord_programs(root: Path, count: int, runs: int) -> dict[str, list[float]]:
    sock = root / "sv.sock"
    conf = root / "supervisord.conf"
    programs = "".join(
        f"[program:p{i}]\ncommand=sleep 300\nautostart=false\nstartsecs=0\n"
        f"stopsignal=TERM\nstdout_logfile=NONE\nstderr_logfile=NONE\n\n"
        for i in range(count)
    )
    conf.write_text(
        textwrap.dedent(f"""\
        [unix_http_server]
        file={sock}
        chmod=0700

        [supervisord]
        logfile={root}/supervisord.log
        pidfile={root}/supervisord.pid
        nodaemon=true
        childlogdir={root}

        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

        [supervisorctl]
        serverurl=unix://{sock}

        """)
        + programs
    )
    daemon = subprocess.Popen(
        [str(BIN / "supervisord"), "-c", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    ctl = [str(BIN / "supervisorctl"), "-c", str(conf)]
    figures: dict[str, list[float]] = {"status": [], "start": [], "stop": []}

    def answers() -> bool:
        return subprocess.run([*ctl, "pid"], capture_output=True, check=False).returncode == 0

    try:
        wait_for(answers, "supervisord")
        for _ in range(runs):
            figures["start"].append(timed([*ctl, "start", "all"]))
            for _ in range(3):
                # supervisorctl status exits 3 when a program is not RUNNING: all are here
                figures["status"].append(timed([*ctl, "status"]))
            figures["stop"].append(timed([*ctl, "stop", "all"]))
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(30)
    return figures


def reference_programs(count: int, runs: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"status": [], "start": [], "stop": []}
    for _ in range(runs):
        started = time.monotonic()
        popens = [subprocess.Popen(["sleep", "300"], start_new_session=True) for _ in range(count)]
        figures["start"].append(time.monotonic() - started)
        started = time.monotonic()
        for popen in popens:
            os.killpg(popen.pid, signal.SIGTERM)
        for popen in popens:
            popen.wait()
        figures["stop"].append(time.monotonic() - started)
    return figures


def programs_table(counts: list[int], runs: int) -> str:
    lines = [
        "| N | measure | svcorch | supervisord (supervisorctl) | reference |",
        "|---|---|---|---|---|",
    ]
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="svside-", dir="/tmp") as one:
            ours = svcorch_programs(Path(one), count, runs)
        with tempfile.TemporaryDirectory(prefix="svside-", dir="/tmp") as two:
            theirs = supervisord_programs(Path(two), count, runs)
        reference = reference_programs(count, runs)
        for measure in ("status", "start", "stop"):
            lines.append(
                f"| {count} | {measure} | {spread(ours[measure])} | {spread(theirs[measure])} "
                f"| {spread(reference[measure])} |"
            )
        print("\n".join(lines[-3:]), flush=True)
    return "\n".join(lines)


# --- 2. notify against a TCP probe --------------------------------------------------------------


def ready_lag(root: Path, command: str, ready: dict[str, object], cwd: Path) -> float:
    document = {
        "version": 1,
        "services": {"svc": {"command": command, "cwd": str(cwd), "ready": ready}},
    }
    (root / "services.yaml").write_text(json.dumps(document))
    base = [SVCORCH, "-f", str(root / "services.yaml"), "--state-dir", str(root / "st")]
    try:
        timed([*base, "up"])
        state = json.loads((root / "st" / "state.json").read_text())
        (record,) = [r for r in state["services"] if r["name"] == "svc"]
        return float(record["ready_at"]) - float(record["started_at"])
    finally:
        subprocess.run([*base, "down"], capture_output=True, check=False)


def notify_table(runs: int) -> str:
    lines = [
        "| server | notify: start → ready | tcp probe: start → ready |",
        "|---|---|---|",
    ]
    app_dir = Path(tempfile.mkdtemp(prefix="svside-app-", dir="/tmp"))
    (app_dir / "wapp.py").write_text(
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"
    )
    servers: dict[str, Callable[[int], str]] = {
        "redis-server --supervised systemd": lambda port: (
            f"redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no "
            "--daemonize no --logfile '' --pidfile '' --supervised systemd"
        ),
        "gunicorn (1 worker)": lambda port: f"{BIN / 'gunicorn'} wapp:app -w 1 -b 127.0.0.1:{port}",
    }
    try:
        for label, command in servers.items():
            lags: dict[str, list[float]] = {"notify": [], "tcp": []}
            for _ in range(runs):
                for kind in ("notify", "tcp"):
                    port = free_port()
                    ready: dict[str, object] = (
                        {"type": "notify", "timeout": "30s"}
                        if kind == "notify"
                        else {"type": "tcp", "port": port, "timeout": "30s"}
                    )
                    with tempfile.TemporaryDirectory(prefix="svside-", dir="/tmp") as root:
                        lags[kind].append(ready_lag(Path(root), command(port), ready, app_dir))
            lines.append(f"| {label} | {spread(lags['notify'])} | {spread(lags['tcp'])} |")
            print(lines[-1], flush=True)
    finally:
        shutil.rmtree(app_dir, ignore_errors=True)
    return "\n".join(lines)


# --- 3. the shipped stack -----------------------------------------------------------------------


def ports_free() -> list[int]:
    busy = []
    for port in STACK_PORTS:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


@contextlib.contextmanager
def shipped_state() -> Iterator[list[str]]:
    root = Path(tempfile.mkdtemp(prefix="svside-stack-", dir="/tmp"))
    base = [SVCORCH, "-f", str(ROOT / "services.yaml"), "--state-dir", str(root)]
    try:
        yield base
    finally:
        subprocess.run([*base, "down"], capture_output=True, check=False, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def stack_table(runs: int) -> str:
    busy = ports_free()
    if busy:
        return f"(not measured: ports {busy} were taken by another run of the stack)"
    ups: list[float] = []
    chains: list[float] = []
    chain_names = ""
    for _ in range(runs):
        with shipped_state() as base:
            ups.append(timed([*base, "up"], cwd=ROOT))
            done = subprocess.run(
                [*base, "analyze", "--json"], cwd=ROOT, capture_output=True, text=True, check=True
            )
            analysis = json.loads(done.stdout)
            chain = analysis["critical_chain"]
            chains.append(sum(float(link["took"]) for link in chain))
            chain_names = " → ".join(str(link["service"]) for link in chain)
    ratios = [up / chain for up, chain in zip(ups, chains, strict=True)]
    return "\n".join(
        [
            "| shipped stack | cold `svcorch up` | critical chain: servers' own start → ready, summed | ratio |",  # noqa: E501
            "|---|---|---|---|",
            f"| {chain_names} | {spread(ups, 1, ' s')} | {spread(chains, 1, ' s')} "
            f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |",
        ]
    )


# --- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--programs", type=int, nargs="*", default=[20, 200])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-stack", action="store_true", help="skip the shipped stack")
    parser.add_argument("--write", type=Path, help="put the tables into this markdown file")
    args = parser.parse_args()
    tables = [programs_table(args.programs, args.runs), notify_table(args.runs)]
    if not args.no_stack:
        tables.append(stack_table(args.runs))
        print(tables[-1], flush=True)
    if args.write:
        replace_block(args.write, "\n\n".join(tables), " ".join(sys.argv[1:]))
    return 0


def replace_block(path: Path, text: str, arguments: str) -> None:
    start, end = "<!-- bench_side:start -->", "<!-- bench_side:end -->"
    command = f"python benchmarks/bench_side.py {arguments}".rstrip()
    block = (
        f"{start}\n`{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"medians with min-max):\n\n{text}\n{end}"
    )
    content = path.read_text() if path.exists() else ""
    if start in content and end in content:
        content = content[: content.index(start)] + block + content[content.index(end) + len(end) :]
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    path.write_text(content)


if __name__ == "__main__":
    sys.exit(main())
