"""``ready: {type: notify}``: the engine's NOTIFY_SOCKET, with real processes speaking it.

Real servers first (redis-server --supervised systemd, gunicorn's arbiter), then a test
service for what servers do not do on demand: a sender outside the run, a silent watchdog,
MAINPID.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from svcorch import catalogue as catalogue_module
from svcorch.engine import State
from svcorch.errors import CatalogueError
from svcorch.probes.base import ProbeContext
from svcorch.probes.notify import ONLY_THE_DAEMON, NotifyOptions
from svcorch.probes.registry import get
from tests.support.procs import python_service
from tests.support.servers import free_ports
from tests.test_engine import Harness, run, until

GUNICORN = Path(sys.executable).parent / "gunicorn"


def notify(**extra: Any) -> dict[str, Any]:
    return {"type": "notify", "timeout": "20s", **extra}


def test_redis_supervised_systemd_is_ready_on_its_own_word(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    (port,) = free_ports(1)
    command = (
        f"redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no "
        f"--daemonize no --logfile '' --pidfile '' --supervised systemd"
    )

    async def scenario() -> None:
        async with Harness(tmp_path, {"redis": {"command": command, "ready": notify()}}) as h:
            outcome = await h.up()
            assert outcome.ok, outcome
            runtime = h.engine.runtimes["redis"]
            assert runtime.state is State.READY
            # redis's own STATUS= line is the detail status shows
            assert runtime.detail == "Ready to accept connections"
            listener = runtime.notify
            assert listener is not None and listener.refused == 0
            # a one-off check cannot hear it, and says what the svcorch that can recorded
            from svcorch.commands.check import NotifiedToTheDaemon

            said = f"{ONLY_THE_DAEMON}; it says: ready (Ready to accept connections)"
            checker = NotifiedToTheDaemon(h.layout, h.catalogue.service("redis"))
            await until(lambda: checker.check(0.0).detail == said, "the state file's word")
            assert checker.check(0.0).ok
            sockets = list((h.layout.root / "notify").glob("redis.*.sock"))
            assert len(sockets) == 1
            assert stat.S_IMODE(sockets[0].stat().st_mode) == 0o600

    run(scenario)


def test_gunicorn_arbiter_is_ready_on_its_own_word(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    (tmp_path / "wapp.py").write_text(
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"
    )
    command = [str(GUNICORN), "wapp:app", "-w", "1", "-b", f"127.0.0.1:{port}"]
    services = {"web": {"command": command, "cwd": str(tmp_path), "ready": notify()}}

    async def scenario() -> None:
        async with Harness(tmp_path, services) as h:
            outcome = await h.up()
            assert outcome.ok, outcome
            assert h.engine.runtimes["web"].detail == "Gunicorn arbiter booted"

    run(scenario)


def test_status_lines_become_the_detail_and_ready_follows(tmp_path: Path) -> None:
    services = {"svc": {"command": python_service("notifier", "ready"), "ready": notify()}}

    async def scenario() -> None:
        async with Harness(tmp_path, services) as h:
            assert (await h.up()).ok
            assert h.engine.runtimes["svc"].detail == "serving"

    run(scenario)


def test_a_datagram_from_outside_the_run_is_never_heard(tmp_path: Path) -> None:
    ready = notify(timeout="1500ms")
    services = {"svc": {"command": python_service("notifier", "outsider"), "ready": ready}}

    async def scenario() -> None:
        async with Harness(tmp_path, services) as h:
            task = h.up()
            await until(
                lambda: h.engine.runtimes["svc"].detail == "outsider sent", "the service's STATUS"
            )
            listener = h.engine.runtimes["svc"].notify
            assert listener is not None and listener.refused == 1
            outcome = await task
            assert not outcome.ok
            runtime = h.engine.runtimes["svc"]
            assert runtime.state is State.FAILED
            assert runtime.detail == "no READY=1 within 1.5s (last STATUS: outsider sent)"

    run(scenario)


def test_a_silent_watchdog_restarts_the_service(tmp_path: Path) -> None:
    services = {
        "svc": {
            "command": python_service("notifier", "watchdog", 4),
            "ready": notify(watchdog="400ms"),
            "restart": {"policy": "always", "backoff": "10ms", "max_restarts": 5},
        }
    }

    async def scenario() -> None:
        async with Harness(tmp_path, services) as h:
            assert (await h.up()).ok
            first = h.pid("svc")
            await until(lambda: h.count("svc", State.BACKOFF) >= 1, "a watchdog restart")
            stopping = next(e for e in h.events if e.new is State.STOPPING)
            assert stopping.detail == "no WATCHDOG=1 within 0.4s"
            await until(lambda: h.count("svc", State.READY) >= 2, "ready again")
            assert h.pid("svc") != first

    run(scenario)


def test_mainpid_is_honoured_only_for_a_process_of_this_run(tmp_path: Path) -> None:
    services = {"svc": {"command": python_service("notifier", "mainpid"), "ready": notify()}}

    async def scenario() -> None:
        async with Harness(tmp_path, services) as h:
            assert (await h.up()).ok
            listener = h.engine.runtimes["svc"].notify
            leader = h.pid("svc")
            assert listener is not None and leader is not None
            assert listener.main_pid not in (None, 1, leader)
            assert listener.main_pid is not None and os.getpgid(listener.main_pid) == leader

    run(scenario)


def test_a_one_off_check_says_only_the_daemon_can_see_it(tmp_path: Path) -> None:
    options = NotifyOptions.model_validate({"type": "notify", "watchdog": "10s"})
    assert options.watchdog_seconds() == 10.0
    probe = get("notify").create(options, ProbeContext(service="svc"))  # type: ignore[union-attr]
    result = probe.check(0.0)
    assert not result.ok and not result.retryable
    assert result.detail == ONLY_THE_DAEMON


def test_an_external_service_with_notify_needs_a_liveness_probe(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text("version: 1\nservices:\n  db:\n    external: true\n    ready: {type: notify}\n")
    with pytest.raises(CatalogueError) as caught:
        catalogue_module.load(path, environ={})
    assert "an external service with `ready: {type: notify}` needs a `liveness` probe" in str(
        caught.value
    )


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("name", "liveness"), [("redis", "redis"), ("mysql", "mysql"), ("rabbitmq", "amqp")]
)
def test_the_shipped_base_layer_is_ready_on_notify_and_probed_when_external(
    name: str, liveness: str
) -> None:
    shipped = catalogue_module.load(REPO / "services.yaml", environ={"SVCORCH_STATE_DIR": "/x"})
    service = shipped.service(name)
    assert service.ready is not None and service.ready.type == "notify"
    external = catalogue_module.load(
        REPO / "services.yaml", environ={"BASE_EXTERNAL": "true", "SVCORCH_STATE_DIR": "/x"}
    )
    probe = external.service(name).outside_probe()
    assert probe is not None and probe.type == liveness


def test_check_of_a_notify_service_without_a_run_says_so(tmp_path: Path) -> None:
    from svcorch.commands.check import NotifiedToTheDaemon
    from svcorch.state import StateLayout, ensure_state_dir

    path = tmp_path / "services.yaml"
    path.write_text("version: 1\nservices:\n  svc:\n    command: x\n    ready: {type: notify}\n")
    service = catalogue_module.load(path, environ={}).service("svc")
    layout = StateLayout(ensure_state_dir(tmp_path / "state"))
    result = NotifiedToTheDaemon(layout, service).check(0.0)
    assert not result.ok
    assert result.detail == (
        f"{ONLY_THE_DAEMON}; no svcorch runs it (no live process in the state file)"
    )
