"""`svcorch up --foreground`: prefixed output, ordered down on SIGINT/SIGTERM, exit 130/143."""

from __future__ import annotations

import re
import signal

import pytest

from tests.runtime.conftest import Reader, Stack, position, stop_popen, tcp_service
from tests.support import free_port, port_open
from tests.support.procs import gone


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_foreground_streams_prefixed_output_and_stops_in_order_on_a_signal(
    stack: Stack, sig: signal.Signals, code: int
) -> None:
    db, web = free_port(), free_port()
    stack.write({"db": tcp_service(db, 0.1), "web": tcp_service(web, depends_on=["db"])})
    reader = Reader(stack.popen("up", "--foreground"))
    try:
        reader.wait_for(r"^2 ready in")
        reader.wait_for(rf"^db  \| ready on {db}$")
        reader.wait_for(rf"^web \| ready on {web}$")
        assert port_open(db) and port_open(web)
        pids = [row["pid"] for row in stack.status().values()]
        reader.popen.send_signal(sig)
        assert reader.finish() == code
    finally:
        stop_popen(reader.popen)
    out = reader.text
    assert f"stopping everything ({sig.name})" in out
    after = out[out.index("stopping everything") :]
    assert position(after, "web", "stopped") < position(after, "db", "stopping")
    assert all(gone(pid) for pid in pids)
    assert not port_open(db) and not port_open(web)
    assert {row["state"] for row in stack.status().values()} == {"stopped"}


def test_foreground_exits_1_when_a_service_fails(stack: Stack) -> None:
    db = free_port()
    stack.write(
        {
            "db": tcp_service(db),
            "broken": {
                "command": ["/bin/sh", "-c", "echo cannot start; exit 1"],
                "ready": {"type": "tcp", "port": free_port()},
                "depends_on": ["db"],
            },
        }
    )
    reader = Reader(stack.popen("up", "--foreground"))
    try:
        assert reader.finish() == 1
    finally:
        stop_popen(reader.popen)
    assert "broken failed: exited with code 1 before ready" in reader.text
    assert re.search(r"^broken \| cannot start$", reader.text, re.M)
    assert not port_open(db)


def test_a_daemon_up_is_refused_while_a_foreground_up_owns_the_state_dir(stack: Stack) -> None:
    db = free_port()
    stack.write({"db": tcp_service(db)})
    reader = Reader(stack.popen("up", "--foreground"))
    try:
        reader.wait_for(r"^1 ready in")
        result = stack.run("up")
        assert result.returncode == 1
        assert result.stderr.startswith(f"svcorch: another svcorch owns {stack.state_dir}: pid ")
        assert "a foreground `svcorch up`; Ctrl-C stops it" in result.stderr
        reader.popen.send_signal(signal.SIGINT)
        assert reader.finish() == 130
    finally:
        stop_popen(reader.popen)
    assert not port_open(db)
