"""A deployment is a snapshot: restarts keep it, an up with a changed definition recreates
exactly what changed and names the changed keys (docs/operations.md, "Switching environment").

Real CLI, real daemon, real processes: each service appends the MODE it was started with to a
file, so the test reads what every start really ran with.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import yaml

from tests.runtime.conftest import Stack
from tests.support import wait_until


def _catalogue(stack: Stack, *, extra_env: dict[str, str] | None = None) -> None:
    def recorder(name: str) -> dict[str, Any]:
        return {
            # $$: the shell expands MODE, not svcorch's interpolation
            "command": ["/bin/sh", "-c", f'echo "$$MODE" >> {name}.modes; exec sleep 600'],
            "restart": {"policy": "always", "backoff": "50ms"},
            "env": {"MODE": "${MODE:-development}", **(extra_env or {})},
        }

    stack.write(
        {
            "db": {"command": ["/bin/sh", "-c", "exec sleep 600"]},
            "app": {**recorder("app"), "depends_on": ["db"]},
        },
        name="snap",  # a copy of the file is the same project (its name)
    )


def _modes(stack: Stack, name: str = "app") -> list[str]:
    path = stack.root / f"{name}.modes"
    return path.read_text().split() if path.exists() else []


def _with(stack: Stack, **env: str) -> dict[str, str]:
    saved = dict(stack.env)
    stack.env.update(env)
    return saved


def test_an_environment_switch_recreates_what_changed_and_restarts_keep_the_snapshot(
    stack: Stack,
) -> None:
    _catalogue(stack)
    stack.ok("up")
    assert _modes(stack) == ["development"]
    db_pid = stack.status()["db"]["pid"]

    saved = _with(stack, MODE="production")
    out = stack.ok("up")
    stack.env = saved
    assert "recreate app: env MODE development → production" in out
    assert _modes(stack) == ["development", "production"]
    assert stack.status()["db"]["pid"] == db_pid  # unchanged: left alone

    # a plain restart, from a shell without MODE, keeps the deployment's production
    stack.ok("restart", "app")
    assert _modes(stack) == ["development", "production", "production"]

    # so does an autorestart after a crash
    os.kill(stack.status()["app"]["pid"], signal.SIGKILL)
    wait_until(lambda: len(_modes(stack)) == 4, timeout=15, message="the autorestart")
    assert _modes(stack)[-1] == "production"


def test_no_recreate_keeps_them_and_status_marks_the_drift(stack: Stack) -> None:
    _catalogue(stack)
    stack.ok("up")
    saved = _with(stack, MODE="staging")
    out = stack.ok("up", "--no-recreate")
    stack.env = saved
    assert "recreate" not in out
    assert _modes(stack) == ["development"]
    row = stack.status()["app"]
    assert row["changed_on_disk"] == ["env MODE development → staging"]
    table = stack.ok("status")
    assert "changed on disk: env MODE development → staging" in table


def test_dry_run_shows_the_recreate_plan_and_acts_on_nothing(stack: Stack) -> None:
    _catalogue(stack)
    stack.ok("up")
    pid = stack.status()["app"]["pid"]
    saved = _with(stack, MODE="qa")
    out = stack.ok("up", "--dry-run")
    plan = json.loads(stack.ok("up", "--dry-run", "--json"))
    stack.env = saved
    assert "would recreate app: env MODE development → qa" in out
    assert plan["recreate"] == {"app": ["env MODE development → qa"]}
    assert stack.status()["app"]["pid"] == pid
    assert _modes(stack) == ["development"]


def test_an_edited_command_is_marked_then_applied_by_up(stack: Stack) -> None:
    _catalogue(stack)
    stack.ok("up")
    document = yaml.safe_load(stack.file.read_text())
    document["services"]["db"]["command"][-1] = "exec sleep 601"
    stack.file.write_text(yaml.safe_dump(document))
    changed = stack.status()["db"]["changed_on_disk"]
    assert len(changed) == 1 and changed[0].startswith("command ")
    assert "sleep 600 → " in changed[0] and changed[0].endswith("sleep 601")
    out = stack.ok("up")
    assert "recreate db: command" in out
    assert stack.status()["db"]["changed_on_disk"] == []


def test_a_changed_secret_is_named_never_shown(stack: Stack) -> None:
    _catalogue(stack, extra_env={"DB_PASSWORD": "${DB_PASSWORD:-first-Sekr1t}"})
    stack.ok("up")
    saved = _with(stack, DB_PASSWORD="second-Sekr1t")
    out = stack.ok("up")
    stack.env = saved
    assert "recreate app: env DB_PASSWORD changed (secret)" in out
    assert "Sekr1t" not in out
    assert "Sekr1t" not in (stack.state_dir / "state.json").read_text()
    assert "Sekr1t" not in stack.daemon_log()


def test_a_copy_of_the_catalogue_cannot_restart_with_its_own_definition(stack: Stack) -> None:
    """`-f copy.yaml restart worker` once replaced the healthy worker with the copy's
    broken definition: now the copy is refused (same project, another file) and the
    running service is left as it is."""
    _catalogue(stack)
    stack.ok("up")
    pid = stack.status()["app"]["pid"]
    copy = stack.root / "copy.yaml"
    copy.write_text(stack.file.read_text().replace("exec sleep 600", "exit 7"))
    original = stack.file
    stack.file = Path(copy)
    try:
        refused = stack.run("restart", "app")
    finally:
        stack.file = original
    assert refused.returncode == 2, refused
    assert len(refused.stderr.strip().splitlines()) == 1
    row = stack.status()["app"]
    assert row["state"] == "ready" and row["pid"] == pid
