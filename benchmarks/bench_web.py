"""`svcorch web` with a stack of N services, in headless chromium (selenium).

    .venv/bin/python benchmarks/bench_web.py [--services 200] [--loads 5] [--restarts 5]
                                             [--write docs/benchmarks.md]

The stack is bench_runtime's generated DAG (N services in 4 levels, two dependencies each),
every service a real process (`sleep`, ready once spawned: this measures the page, not
probes). Figures:

- page load: navigation start -> the table, graph and timeline of all N services drawn
  (the page's own `performance.now()` when it sets `body[data-loaded]`), median of --loads;
- event -> browser: a leaf service is restarted --restarts times through the API; for each of
  its transitions, the daemon's event time to the moment the page has drawn it (same
  machine, same clock), median and max over all;
- RSS of the daemon and of the web process with the page open and its event stream live.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import yaml
from bench_runtime import environment, free_ports, generate
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

SVCORCH = str(Path(sys.executable).with_name("svcorch"))
TOKEN = "bench-token-0123456789-abcdefgh"
MIB = 1024 * 1024


def wait(predicate, timeout: float = 60.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1000")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="svb-", dir="/tmp"))
    dag = generate(args.services, 4, 0.0)
    services = {
        name: {"command": ["sleep", "86400"], "depends_on": list(dag.dependencies[name])}
        for name in dag.names
    }
    file = root / "services.yaml"
    file.write_text(yaml.safe_dump({"version": 1, "name": "bench", "services": services}))
    env = {**environment(), "SVCORCH_WEB_TOKEN": TOKEN}
    base_argv = [SVCORCH, "-f", str(file), "--state-dir", str(root / "st")]
    port = free_ports(1)[0]
    web = None
    driver = None
    try:
        subprocess.run([*base_argv, "up"], env=env, check=True, capture_output=True)
        web = subprocess.Popen(
            [*base_argv, "web", "--bind", f"127.0.0.1:{port}"], env=env, stderr=subprocess.PIPE
        )
        url = f"http://127.0.0.1:{port}"
        wait(lambda: _answers(url), what="svcorch web")
        driver = browser()
        loads = []
        for _ in range(args.loads):
            driver.get(url + "/#token=" + TOKEN)
            wait(lambda: driver.execute_script("return document.body.dataset.loaded"), what="load")
            rows = driver.execute_script(
                "return document.querySelectorAll('#services tbody tr').length"
            )
            assert rows == len(dag.names), rows
            loads.append(driver.execute_script("return window.svcorch.loadMs"))
        leaf = dag.levels[-1][0]
        raw = RawStream(port, time.time())
        for _ in range(args.restarts):
            count = len(driver.execute_script("return window.svcorch.latencies"))
            _post(url + f"/api/services/{leaf}/restart")
            wait(
                lambda seen=count: (
                    len(driver.execute_script("return window.svcorch.latencies")) >= seen + 4
                ),
                what="the restart's events on the page",
            )
        latencies = driver.execute_script("return window.svcorch.latencies")
        daemon = _daemon(root / "st")
        figures = {
            "services": len(dag.names),
            "page_load_ms": statistics.median(loads),
            "event_ms_median": statistics.median(latencies) * 1000,
            "event_ms_max": max(latencies) * 1000,
            "events": len(latencies),
            "raw_ms_median": statistics.median(raw.latencies) * 1000,
            "daemon_rss_mib": daemon.memory_info().rss / MIB,
            "web_rss_mib": psutil.Process(web.pid).memory_info().rss / MIB,
        }
    finally:
        if driver is not None:
            driver.quit()
        if web is not None:
            web.terminate()
            web.wait(10)
        subprocess.run([*base_argv, "down"], env=env, check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    if args.write:
        _write(args.write, figures, " ".join(sys.argv[1:]))
    return 0


class RawStream:
    """A plain SSE client on a socket: each event's arrival minus its daemon time, so the
    web process's share of the trip is told apart from the browser's."""

    def __init__(self, port: int, after: float) -> None:
        self.after = after
        self.latencies: list[float] = []
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        try:
            while chunk := self.sock.recv(65536):
                buffer += chunk
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    for line in block.split(b"\n"):
                        if line.startswith(b"data: {"):
                            record = json.loads(line[6:])
                            if record["time"] >= self.after:
                                self.latencies.append(time.time() - record["time"])
        except OSError:
            return


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/openapi.json", timeout=1):
            return True
    except OSError:
        return False


def _post(url: str) -> None:
    request = urllib.request.Request(
        url,
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert json.load(response)["ok"]


def _daemon(state_dir: Path) -> psutil.Process:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "svcorch.supervisor" in cmdline and str(state_dir) in cmdline:
            return proc
    raise SystemExit("no daemon found")


def _write(path: Path, f: dict[str, float], arguments: str) -> None:
    start, end = "<!-- bench_web:start -->", "<!-- bench_web:end -->"
    command = f"python benchmarks/bench_web.py {arguments}".rstrip()
    block = (
        f"{start}\n`{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, headless"
        f" chromium):\n\n"
        "| services | page load (median) | event -> SSE client, median | event -> page, median"
        " | event -> page, max | daemon RSS, page open | web process RSS |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {f['services']} | {f['page_load_ms']:.0f} ms | {f['raw_ms_median']:.0f} ms"
        f" | {f['event_ms_median']:.0f} ms"
        f" | {f['event_ms_max']:.0f} ms ({f['events']} events) | {f['daemon_rss_mib']:.1f} MiB"
        f" | {f['web_rss_mib']:.1f} MiB |\n{end}"
    )
    content = path.read_text()
    if start in content and end in content:
        content = content[: content.index(start)] + block + content[content.index(end) + len(end) :]
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    path.write_text(content)


if __name__ == "__main__":
    sys.exit(main())
