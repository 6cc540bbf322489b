"""Every server of the shipped base layer comes back after a kill -9 of its real process.

The wrappers exec their servers, so the process svcorch watches is the server itself; a kill
is seen as ``killed by SIGKILL`` and ``policy: always`` restarts it. While it is away its
dependents are degraded, and ready again with it, without being restarted.
"""

from __future__ import annotations

import pytest

from tests.support.soak import kill_service, recovered, shipped_stack, wait_for

pytestmark = pytest.mark.e2e

# the server's program, and a dependent that must be degraded meanwhile and then ready again
SERVERS = {
    "redis": ("redis-server", "worker"),
    "epmd": ("epmd", "rabbitmq"),
    "mysql": ("mariadbd", "web"),
    "influxdb": ("influxd", "worker"),
}


def test_every_base_server_heals_after_kill_9() -> None:
    with shipped_stack() as stack:
        stack.ok("up", timeout=600)
        pids = {name: row["pid"] for name, row in stack.status().items()}
        for server, (program, dependent) in SERVERS.items():
            kill = kill_service(stack, server)
            assert kill.program == program
            kill.recovered_at = wait_for(
                lambda k=kill: recovered(stack, k), timeout=120, what=f"{server} back"
            )
            wait_for(stack.all_settled, timeout=120, what=f"everything ready after {server}")
            lines = [
                t
                for t in stack.transitions()
                if t.service in (server, dependent) and t.new in ("backoff", "degraded")
            ]
            assert any(
                t.service == server and t.level == "WARNING" and "killed by SIGKILL" in t.detail
                for t in lines
            ), lines
            assert any(
                t.service == dependent and t.detail.startswith(f"{server} is down") for t in lines
            ), lines
            print(f"{server}: back in {kill.recovery:.2f}s")
        # the dependents kept their processes: degraded, not restarted
        now = stack.status()
        for _, dependent in SERVERS.values():
            assert now[dependent]["pid"] == pids[dependent], dependent
