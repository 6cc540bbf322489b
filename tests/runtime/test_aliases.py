"""`svcorch start`, `stop` and `ps`: what supervisorctl and compose users type, on real
processes."""

from __future__ import annotations

from tests.runtime.conftest import Stack, tcp_service
from tests.support import free_port, port_open


def test_start_stop_and_ps_are_up_down_and_status(stack: Stack) -> None:
    db, web = free_port(), free_port()
    stack.write({"db": tcp_service(db), "web": tcp_service(web, depends_on=["db"])})
    assert "2 ready in" in stack.ok("start", "web")
    assert port_open(db) and port_open(web)
    listed = stack.ok("ps")
    assert listed.splitlines()[0].split() == [
        "SERVICE",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "DETAIL",
    ]
    states = {line.split()[0]: line.split()[1] for line in listed.splitlines()[1:]}
    assert states == {"db": "ready", "web": "ready"}
    out = stack.ok("stop", "web")
    assert "1 stopped in" in out
    assert not port_open(web) and port_open(db)
    rows = stack.ok("ps", "--json")
    assert '"state": "stopped"' in rows and '"state": "ready"' in rows
    assert "1 stopped in" in stack.ok("stop")
    assert not port_open(db)
