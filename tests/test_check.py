"""commands/check.py: selection, change detection across rounds, the watch loop, log offsets.

The CLI behaviour (real servers, signals, notifiers end to end) is in tests/cli/test_check_cli.py.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from svcorch import catalogue as catalogue_module
from svcorch.commands import check
from svcorch.commands.check import CheckRow, Watch, health_changes, last_start_offset
from svcorch.errors import UnknownService, UsageError
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue, Service, WebhookNotifier
from svcorch.notify import Delivery, HealthChange, Notifications
from svcorch.probes.base import ProbeResult
from svcorch.state import StateLayout
from tests.support import free_port, silent_tcp_server


def load(tmp_path: Path, text: str) -> tuple[Catalogue, ServiceGraph]:
    path = tmp_path / "services.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    catalogue = catalogue_module.load(path, environ={})
    return catalogue, ServiceGraph.from_catalogue(catalogue)


def row(service: str, ok: bool, detail: str = "") -> CheckRow:
    return CheckRow(service, "tcp", f"tcp://127.0.0.1:1/{service}", ok, 1.0, detail)


# -- selection ---------------------------------------------------------------------------------

STACK = """
version: 1
services:
  redis: {external: true, ready: {type: tcp, port: 6379}}
  web:
    command: sleep 1
    depends_on: [redis]
    ready: {type: http, url: "http://127.0.0.1:8000/"}
  worker: {command: sleep 1, depends_on: [redis]}
  flower:
    command: sleep 1
    profiles: [debug]
    depends_on: [broker]
    ready: {type: tcp, port: 5555}
  broker:
    external: true
    profiles: [debug]
    ready: {type: tcp, port: 5672}
"""


def names(services: list[object]) -> list[str]:
    return [s.name for s in services]  # type: ignore[attr-defined]


def test_no_names_checks_the_active_profiles_services_that_have_a_probe(tmp_path: Path) -> None:
    catalogue, graph = load(tmp_path, STACK)
    assert names(check.select(catalogue, graph, [], [])) == ["redis", "web"]
    assert names(check.select(catalogue, graph, [], ["debug"])) == [
        "redis",
        "web",
        "flower",
        "broker",
    ]


def test_named_services_are_checked_exactly_whatever_their_profile(tmp_path: Path) -> None:
    catalogue, graph = load(tmp_path, STACK)
    assert names(check.select(catalogue, graph, ["flower", "redis"], [])) == ["redis", "flower"]


def test_a_named_service_without_a_probe_is_a_usage_error(tmp_path: Path) -> None:
    catalogue, graph = load(tmp_path, STACK)
    with pytest.raises(UsageError, match=r"^no readiness probe to check for 'worker'$"):
        check.select(catalogue, graph, ["web", "worker"], [])
    with pytest.raises(UnknownService, match=r"'wbe' \(did you mean 'web'\?\)"):
        check.select(catalogue, graph, ["wbe"], [])


# -- one round, in parallel --------------------------------------------------------------------


def test_once_runs_every_probe_in_parallel_and_keeps_catalogue_order(tmp_path: Path) -> None:
    with silent_tcp_server() as silent_a, silent_tcp_server() as silent_b:
        closed = free_port()
        catalogue, graph = load(
            tmp_path,
            f"""
            version: 1
            services:
              a: {{external: true, ready: {{type: redis, port: {silent_a}, attempt_timeout: 0.5s}}}}
              b: {{external: true, ready: {{type: redis, port: {silent_b}, attempt_timeout: 0.5s}}}}
              c: {{external: true, ready: {{type: tcp, port: {closed}}}}}
            """,
        )
        services = check.select(catalogue, graph, [], [])
        started = time.monotonic()
        rows = check.once(catalogue, StateLayout(tmp_path / "state"), services)
        took = time.monotonic() - started
    assert [(r.service, r.ok) for r in rows] == [("a", False), ("b", False), ("c", False)]
    assert rows[2].detail == "Connection refused"
    assert 0.5 <= took < 0.9, took  # one attempt timeout (+10%), not two
    assert all(0.5 <= r.latency_ms / 1000 < 0.6 for r in rows[:2]), rows


def test_a_probe_that_raises_fails_its_service_only(tmp_path: Path) -> None:
    catalogue, graph = load(
        tmp_path,
        """
        version: 1
        services:
          good: {external: true, ready: {type: tcp, port: 1}}
          buggy: {external: true, ready: {type: mysql, password: hunter2}}
        """,
    )

    def attempt(service: Service) -> ProbeResult:
        if service.name == "buggy":
            raise RuntimeError("cannot parse hunter2")
        return ProbeResult.passed("fine", elapsed=0.001)

    rows = check._parallel(check.select(catalogue, graph, [], []), attempt)
    assert [(r.service, r.ok, r.detail) for r in rows] == [
        ("good", True, "fine"),
        ("buggy", False, "probe raised RuntimeError: cannot parse ***"),
    ]


def test_latency_is_the_servers_answer_not_the_client_import(tmp_path: Path) -> None:
    # the system Redis (see tests/probes): a fresh interpreter, so redis-py is not imported yet
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from svcorch import catalogue
        from svcorch.commands import check
        from svcorch.graph import ServiceGraph
        from svcorch.state import StateLayout
        loaded = catalogue.load(sys.argv[1], environ={})
        services = check.select(loaded, ServiceGraph.from_catalogue(loaded), [], [])
        assert "redis" not in sys.modules
        [row] = check.once(loaded, StateLayout(Path(sys.argv[2])), services)
        print(row.ok, row.detail, row.latency_ms)
        """
    )
    path = tmp_path / "services.yaml"
    path.write_text("version: 1\nservices:\n  r: {external: true, ready: {type: redis}}\n")
    result = subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    ok, detail, latency = result.stdout.split()
    assert (ok, detail) == ("True", "PONG")
    # importing redis-py takes ~70 ms here; a PING over loopback about 1 ms
    assert float(latency) < 30, result.stdout


# -- change detection --------------------------------------------------------------------------


def test_first_round_reports_failures_only() -> None:
    changes = health_changes(
        {}, [row("a", True), row("b", False, "refused")], now=5.0, catalogue="shop", host="h"
    )
    assert changes == [
        HealthChange("b", "tcp", "tcp://127.0.0.1:1/b", False, None, "refused", 5.0, "shop", "h")
    ]


def test_changes_are_transitions_only() -> None:
    previous = {"up": True, "down": False, "falls": True, "rises": False}
    rows = [row("up", True), row("down", False), row("falls", False, "x"), row("rises", True)]
    changes = health_changes(previous, rows, now=1.0, catalogue="c")
    assert [(c.service, c.event, c.previous) for c in changes] == [
        ("falls", "failing", True),
        ("rises", "recovered", False),
    ]


class Recorder:
    """A real Notifications whose transport records instead of posting."""

    def __init__(self) -> None:
        self.sent: list[HealthChange] = []
        self.deliveries: list[Delivery] = []
        self.notifications = Notifications(
            [WebhookNotifier(type="webhook", url="http://127.0.0.1:9/")],
            "/",
            self.deliveries.append,
            send=lambda _notifier, change, _body: self.sent.append(change),
        )


def test_watch_notifies_each_transition_across_rounds_in_order(tmp_path: Path) -> None:
    catalogue, _ = load(
        tmp_path,
        "version: 1\nname: shop\nservices:\n  a: {external: true, ready: {type: tcp, port: 1}}\n",
    )
    script = [
        [row("a", True), row("b", False, "refused")],  # b: failing (already, at start)
        [row("a", True), row("b", False, "refused")],  # nothing new
        [row("a", False, "reset"), row("b", True)],  # a failing, b recovered
        [row("a", False, "reset"), row("b", True)],  # nothing new
        [row("a", True), row("b", True)],  # a recovered
    ]
    rounds: list[tuple[int, list[str]]] = []
    stop = threading.Event()
    recorder = Recorder()

    def on_round(number: int, rows: list[CheckRow], changes: list[HealthChange]) -> None:
        rounds.append((number, [f"{c.service} {c.event}" for c in changes]))
        if number == len(script):
            stop.set()

    watch = Watch(
        catalogue,
        StateLayout(tmp_path),
        [],
        0.0,
        recorder.notifications,
        on_round,
        probe_round=lambda: script[len(rounds)],
    )
    assert watch.run(stop) == 5
    recorder.notifications.close()
    assert rounds == [
        (1, ["b failing"]),
        (2, []),
        (3, ["a failing", "b recovered"]),
        (4, []),
        (5, ["a recovered"]),
    ]
    assert [(c.service, c.event, c.previous, c.catalogue) for c in recorder.sent] == [
        ("b", "failing", None, "shop"),
        ("a", "failing", True, "shop"),
        ("b", "recovered", False, "shop"),
        ("a", "recovered", False, "shop"),
    ]
    assert all(d.ok for d in recorder.deliveries) and len(recorder.deliveries) == 4


def test_watch_rounds_start_an_interval_apart_and_stop_ends_the_wait(tmp_path: Path) -> None:
    catalogue, _ = load(tmp_path, "version: 1\nservices: {}\n")
    starts: list[float] = []
    stop = threading.Event()
    recorder = Recorder()

    def probe_round() -> list[CheckRow]:
        starts.append(time.monotonic())
        return [row("a", True)]

    def on_round(number: int, rows: list[CheckRow], changes: list[HealthChange]) -> None:
        if number == 3:
            # stopping during the pause between rounds ends the watch now, not in 30 s
            threading.Timer(0.05, stop.set).start()

    watch = Watch(
        catalogue, StateLayout(tmp_path), [], 0.15, recorder.notifications, on_round, probe_round
    )
    started = time.monotonic()
    watch_interval = 0.15
    assert watch.run(stop) == 3
    recorder.notifications.close()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(watch_interval * 0.9 <= gap < watch_interval * 2 for gap in gaps), gaps
    assert time.monotonic() - started < 3 * watch_interval + 0.3
    assert recorder.sent == []


# -- a log probe needs a live run --------------------------------------------------------------

WORKER = """
version: 1
services:
  worker:
    command: celery worker
    ready: {type: log, pattern: 'worker@\\S+ ready\\.'}
"""


def record_run(layout: StateLayout, process: subprocess.Popen[bytes] | None) -> None:
    import psutil

    from svcorch.state import ServiceRecord, StateFile, ensure_state_dir

    ensure_state_dir(layout.root)
    record = ServiceRecord(name="worker", state="ready")
    if process is not None:
        record.pid = record.pgid = process.pid
        record.create_time = psutil.Process(process.pid).create_time()
    StateFile(layout.state_file).save({"worker": record})


def test_a_log_probe_passes_only_while_the_run_that_wrote_the_line_is_alive(
    tmp_path: Path,
) -> None:
    catalogue, graph = load(tmp_path, WORKER)
    services = check.select(catalogue, graph, [], [])
    layout = StateLayout(tmp_path / ".svcorch")
    layout.logs_dir.mkdir(parents=True)
    layout.service_log("worker").write_bytes(
        header("worker", 1) + b"worker@old ready.\n" + header("worker", 2) + b"booting\n"
    )

    def result() -> tuple[bool, str]:
        [found] = check.once(catalogue, layout, services)
        return found.ok, found.detail

    # no state at all (never started here): the old line proves nothing
    assert result() == (False, "not running (no live process in the state file)")
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        record_run(layout, process)
        # alive, but run #2 has not said "ready." yet: run #1's line does not count
        assert result()[0] is False
        with layout.service_log("worker").open("ab") as log:
            log.write(b"worker@new ready.\n")
        assert result() == (True, "matched: worker@new ready.")
    finally:
        process.kill()
        process.wait()
    # stopped: the line is still in the log, the worker is not running
    assert result() == (False, "not running (no live process in the state file)")


def test_an_unreadable_state_file_is_a_failed_row_not_a_crash(tmp_path: Path) -> None:
    catalogue, graph = load(tmp_path, WORKER)
    layout = StateLayout(tmp_path / ".svcorch")
    layout.root.mkdir()
    layout.state_file.write_text("{not json")
    [found] = check.once(catalogue, layout, check.select(catalogue, graph, [], []))
    assert not found.ok
    assert found.detail.startswith(f"state file {layout.state_file} is corrupt")


# -- where the current run's log begins --------------------------------------------------------


def header(service: str, number: int) -> bytes:
    return f"--- svcorch: {service} start #{number} at 2024-01-01 00:00:00: x ---\n".encode()


def test_the_last_start_header_of_this_service_is_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    first = header("web", 1) + b"old ready line\n"
    stop = b"--- svcorch: stop command for web ---\n"
    log.write_bytes(first + header("web", 2) + b"booting\n" + stop + b"stopping\n")
    assert last_start_offset(log, "web") == len(first)
    assert last_start_offset(log, "worker") == 0
    assert last_start_offset(tmp_path / "missing.log", "web") == 0
    log.write_bytes(header("web", 1) + b"only run\n")
    assert last_start_offset(log, "web") == 0


@pytest.mark.parametrize("shift", [-40, -1, 0, 1, 40])
def test_a_header_across_a_chunk_boundary_is_found(tmp_path: Path, shift: int) -> None:
    log = tmp_path / "web.log"
    tail = b"x" * (64 * 1024 + shift) + b"\n"  # puts the header around the chunk edge
    before = b"y" * 100_000 + b"\n"
    log.write_bytes(before + header("web", 7) + tail)
    assert last_start_offset(log, "web") == len(before)
