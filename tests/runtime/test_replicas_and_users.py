"""`replicas: N` and `user:`/`group:` with real processes: N processes of one service, each
with its index; dependents wait for all; status, restart, down and adoption per replica; a
service running as an unprivileged account with its groups and HOME; refusal when svcorch is
not root."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import psutil
import yaml

from svcorch import catalogue as catalogue_module
from svcorch.engine import Engine
from svcorch.state import StateLayout, ensure_state_dir
from tests.runtime.conftest import Stack, position
from tests.support import wait_until
from tests.support.accounts import unprivileged_user
from tests.support.procs import TCP_READY, gone

LOG_READY = {"type": "log", "pattern": "^ready on", "timeout": "15s"}
REPLICAS = ["worker#0", "worker#1", "worker#2"]


def _worker(**extra: object) -> dict[str, object]:
    return {
        "command": [sys.executable, str(TCP_READY), "--port", "0", "--delay", "0.${replica}"],
        "replicas": 3,
        "env": {"INDEX": "${replica}", "PADDED": "w${replica+1:02}"},
        "ready": LOG_READY,
        **extra,
    }


def _web() -> dict[str, object]:
    return {
        "command": [sys.executable, str(TCP_READY), "--port", "0"],
        "ready": LOG_READY,
        "depends_on": ["worker"],
    }


def test_replicas_run_with_their_index_and_dependents_wait_for_all(stack: Stack) -> None:
    stack.write({"worker": _worker(), "web": _web()})
    out = stack.ok("up")
    last_ready = max(position(out, name, "ready") for name in REPLICAS)
    assert position(out, "web", "starting") > last_ready
    rows = stack.status()
    assert list(rows) == [*REPLICAS, "web"]
    pids = [rows[name]["pid"] for name in REPLICAS]
    assert len(set(pids)) == 3
    for index, pid in enumerate(pids):
        env = psutil.Process(pid).environ()
        assert env["SVCORCH_REPLICA"] == str(index)
        assert env["SVCORCH_SERVICE"] == "worker"
        assert env["INDEX"] == str(index)
        assert env["PADDED"] == f"w{index + 1:02}"
        assert psutil.Process(pid).cmdline()[-1] == f"0.{index}"
    assert list(stack.status("worker")) == REPLICAS  # the service's name stands for all
    assert "ready on" in stack.log("worker#2")  # one log per replica

    restarted = stack.ok("restart", "worker")
    assert position(restarted, "web", "stopped") < position(restarted, "worker#0", "stopping")
    new = stack.status()
    assert all(gone(pid) for pid in pids)
    assert all(new[name]["state"] == "ready" for name in [*REPLICAS, "web"])

    stack.ok("down", "worker")
    assert {row["state"] for row in stack.status().values()} == {"stopped"}
    # the daemon's journal names each replica; the service's name asks for all of them
    journal = [json.loads(line) for line in stack.ok("events", "worker", "--json").splitlines()]
    assert {entry["service"] for entry in journal} == set(REPLICAS)


def test_each_replica_is_adopted_by_the_next_daemon(stack: Stack) -> None:
    stack.write({"worker": _worker()})
    stack.ok("up")
    before = {name: row["pid"] for name, row in stack.status().items()}
    daemon = stack.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: gone(daemon), message="the daemon gone")
    out = stack.ok("up", "--json")
    assert json.loads(out)["already"] == REPLICAS
    assert {name: row["pid"] for name, row in stack.status().items()} == before
    stack.ok("down")
    assert all(gone(pid) for pid in before.values())


def test_scaling_down_stops_the_replicas_no_longer_declared(stack: Stack) -> None:
    stack.write({"worker": _worker()})
    stack.ok("up")
    pids = {name: row["pid"] for name, row in stack.status().items()}
    stack.write({"worker": _worker(replicas=2)})
    stack.ok("up")
    wait_until(lambda: gone(pids["worker#2"]), message="worker#2 stopped")
    rows = stack.status()
    assert list(rows) == REPLICAS[:2]
    # scaling is not a change of definition: the remaining replicas keep running
    assert [rows[n]["pid"] for n in REPLICAS[:2]] == [pids[n] for n in REPLICAS[:2]]


def _python_for_anyone() -> str:
    """A Python the unprivileged account may execute (the venv's may live under /root)."""
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def test_a_service_runs_as_its_user_with_groups_and_home(stack: Stack) -> None:
    user = unprivileged_user()
    stack.write(
        {
            "svc": {
                "command": [_python_for_anyone(), str(TCP_READY), "--port", "0"],
                "user": user.pw_name,
                "group": "nogroup",
                "ready": LOG_READY,
            }
        }
    )
    stack.ok("up")
    proc = psutil.Process(stack.status()["svc"]["pid"])
    import grp

    nogroup = grp.getgrnam("nogroup").gr_gid
    assert proc.uids().real == proc.uids().effective == user.pw_uid
    assert proc.gids().real == proc.gids().effective == nogroup
    status = Path(f"/proc/{proc.pid}/status").read_text()
    groups = next(line for line in status.splitlines() if line.startswith("Groups:"))
    assert sorted(int(g) for g in groups.split()[1:]) == sorted(
        set(os.getgrouplist(user.pw_name, nogroup))
    )
    env = proc.environ()
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (
        user.pw_dir,
        user.pw_name,
        user.pw_name,
    )
    stack.ok("down")


def test_an_unknown_user_is_one_located_line(stack: Stack) -> None:
    stack.write({"svc": {"command": ["true"], "user": "no-such-account-here"}})
    result = stack.run("validate")
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "service 'svc': user: no such user 'no-such-account-here' on this host"
    )
    assert result.stderr.count("\n") == 1


def test_not_root_and_another_user_is_refused_in_one_line() -> None:
    """The engine run by an unprivileged process (a forked child that dropped root)."""
    user = unprivileged_user()
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"svcorch-refuse-{os.getpid()}"
    ensure_state_dir(root / "st")
    (root / "services.yaml").write_text(
        yaml.safe_dump({"version": 1, "services": {"svc": {"command": ["true"], "user": "root"}}})
    )
    for path in (root, root / "st", root / "st" / "logs", root / "services.yaml"):
        os.chown(path, user.pw_uid, user.pw_gid)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            catalogue = catalogue_module.load(root / "services.yaml", environ={})
            engine = Engine(catalogue, StateLayout(root / "st"))

            async def up() -> str:
                outcome = await engine.up(["svc"])
                await engine.close()
                return outcome.failed[0].reason if outcome.failed else "started"

            os.write(write_end, asyncio.run(up()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        reason = pipe.read()
    os.waitpid(child, 0)
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    assert reason == (
        f"cannot start 'svc': svcorch runs as uid {user.pw_uid}, not root, and cannot switch"
        " to user 'root' (uid 0, gid 0): run svcorch as root, or remove user:/group:"
    )
