"""svcorch brings up private real servers (../shared/SERVERS.md) and takes them down again.

redis-server, mariadbd (its datadir initialised by a oneshot), epmd + rabbitmq-server and
influxd, each on a free port with its data under the temp state dir, gated by the redis,
mysql, amqp and influxdb probes; the private-server scripts are the project's own
(examples/stack). Afterwards nothing of theirs runs and no port is held.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest

from tests.runtime.conftest import Stack, events
from tests.support import free_port, port_open, wait_until
from tests.support.procs import gone

STACK_SCRIPTS = Path(__file__).resolve().parents[2] / "examples" / "stack"
NEEDED = ["redis-server", "mariadbd", "mariadb-install-db", "epmd", "influxd"]


def missing() -> list[str]:
    absent = [
        tool
        for tool in NEEDED
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        absent.append("rabbitmq-server")
    return absent


@pytest.mark.e2e
def test_the_base_layer_comes_up_gated_by_real_probes_and_leaves_nothing(stack: Stack) -> None:
    if missing():
        pytest.skip(f"not installed: {', '.join(missing())} (scripts/setup.sh installs them)")
    ports = {
        name: free_port()
        for name in ("REDIS_PORT", "EPMD_PORT", "AMQP_PORT", "AMQP_DIST_PORT", "MYSQL_PORT")
    }
    ports |= {"INFLUX_PORT": free_port(), "INFLUX_RPC_PORT": free_port()}
    script = {name: str(STACK_SCRIPTS / f"{name}.sh") for name in ("run-rabbitmq", "run-mariadb")}
    stack.write(
        {
            "redis": {
                "command": (
                    f"redis-server --port {ports['REDIS_PORT']} --bind 127.0.0.1"
                    " --dir ${SVCORCH_STATE_DIR} --save '' --appendonly no --daemonize no"
                    " --logfile '' --pidfile ''"
                ),
                "ports": [ports["REDIS_PORT"]],
                "ready": {"type": "redis", "port": ports["REDIS_PORT"], "timeout": "30s"},
            },
            "epmd": {
                "command": f"epmd -port {ports['EPMD_PORT']} -address 127.0.0.1",
                "ports": [ports["EPMD_PORT"]],
                "ready": {"type": "exec", "command": f"epmd -port {ports['EPMD_PORT']} -names"},
            },
            "rabbitmq": {
                "command": script["run-rabbitmq"],
                "depends_on": ["epmd"],
                "ports": [ports["AMQP_PORT"], ports["AMQP_DIST_PORT"]],
                "ready": {"type": "amqp", "port": ports["AMQP_PORT"], "timeout": "90s"},
                "stop": {"timeout": "15s"},
            },
            "mariadb-init": {
                "oneshot": True,
                "command": str(STACK_SCRIPTS / "init-mariadb.sh"),
            },
            "mysql": {
                "command": script["run-mariadb"],
                "depends_on": {"mariadb-init": "completed"},
                "ports": [ports["MYSQL_PORT"]],
                "ready": {"type": "mysql", "port": ports["MYSQL_PORT"], "timeout": "60s"},
            },
            "influxdb": {
                "command": str(STACK_SCRIPTS / "run-influxd.sh"),
                "ports": [ports["INFLUX_PORT"], ports["INFLUX_RPC_PORT"]],
                "ready": {
                    "type": "influxdb",
                    "url": f"http://127.0.0.1:{ports['INFLUX_PORT']}",
                    "timeout": "30s",
                },
            },
        },
        env={name: str(port) for name, port in ports.items()},
    )
    out = stack.ok("up", timeout=180)
    assert "6 ready in" in out
    probed = {name: detail for name, state, detail in events(out) if state == "ready"}
    # each gate was the real client's answer
    assert probed["redis"] == "PONG"
    assert probed["epmd"].startswith("exit 0: epmd: up and running on port ")
    assert probed["rabbitmq"] == "connection and channel open"
    assert probed["mysql"].startswith("SELECT 1 ok (server ")
    assert probed["influxdb"] == "ping ok"

    status = stack.status()
    assert {name: row["state"] for name, row in status.items()} == {
        "redis": "ready",
        "epmd": "ready",
        "rabbitmq": "ready",
        "mariadb-init": "completed",
        "mysql": "ready",
        "influxdb": "ready",
    }
    pids = [row["pid"] for row in status.values() if row["pid"]]
    # every server process, with its helpers (beam.smp, erl_child_setup, ...)
    everything = set(pids)
    for pid in pids:
        everything |= {child.pid for child in psutil.Process(pid).children(recursive=True)}
    assert all(port_open(port) for port in ports.values() if port != ports["AMQP_DIST_PORT"])

    out = stack.ok("down", timeout=120)
    assert "5 stopped in" in out
    wait_until(lambda: all(gone(pid) for pid in everything), timeout=10, message="all gone")
    assert not any(port_open(port) for port in ports.values())
