from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from svcorch.probes.base import ProbeContext
from tests.probes.helpers import ATTEMPT, TOLERANCE, attempt, make, options
from tests.support import wait_until
from tests.support.procs import gone


def context(base_dir: Path, **env: str) -> ProbeContext:
    return ProbeContext(service="svc", base_dir=base_dir, env=env)


def test_exit_0_passes_with_the_last_line_as_detail(tmp_path: Path) -> None:
    result = attempt("exec", context(tmp_path), command=["sh", "-c", "echo one; echo ready"])
    assert result.ok, result.detail
    assert result.detail == "exit 0: ready"


def test_non_zero_exit_is_retryable_with_the_output(tmp_path: Path) -> None:
    result = attempt("exec", context(tmp_path), command="sh -c 'echo not yet >&2; exit 3'")
    assert not result.ok
    assert result.retryable
    assert result.detail == "exit 3: not yet"


def test_shell_string(tmp_path: Path) -> None:
    result = attempt("exec", context(tmp_path), command="test -d . && echo ok", shell=True)
    assert result.ok, result.detail


def test_relative_cwd_and_environment_layers(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    result = attempt(
        "exec",
        context(tmp_path, FROM_CONTEXT="c", BOTH="context"),
        command='echo "$(basename "$PWD") $FROM_CONTEXT $BOTH $HOME"',
        shell=True,
        cwd="sub",
        env={"BOTH": "options"},
    )
    assert result.ok, result.detail
    assert result.detail.startswith("exit 0: sub c options /")


def test_missing_program_is_fatal(tmp_path: Path) -> None:
    result = attempt("exec", context(tmp_path), command=["svcorch-no-such-program"])
    assert not result.ok
    assert not result.retryable
    assert "cannot run 'svcorch-no-such-program'" in result.detail


def test_missing_cwd_is_fatal(tmp_path: Path) -> None:
    result = attempt("exec", context(tmp_path), command="true", cwd="nowhere")
    assert not result.ok
    assert not result.retryable
    assert "does not exist" in result.detail


def test_timeout_kills_the_whole_group_on_time(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = f"sleep 30 & echo $! > {pidfile}; echo started; wait"
    probe = make("exec", context(tmp_path), command=script, shell=True, attempt_timeout=ATTEMPT)
    started = time.monotonic()
    result = probe.check(time.monotonic() + 30)
    took = time.monotonic() - started
    assert not result.ok
    assert result.retryable
    assert result.detail == "timed out after 0.5s: started"
    assert took < ATTEMPT * TOLERANCE
    # SIGKILL is delivered at once but the process takes a moment to die
    wait_until(lambda: gone(int(pidfile.read_text())), timeout=2, message="sleep killed")


def test_background_leftovers_are_killed_after_success(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    result = attempt(
        "exec", context(tmp_path), command=f"sleep 30 & echo $! > {pidfile}", shell=True
    )
    assert result.ok, result.detail
    wait_until(lambda: gone(int(pidfile.read_text())), timeout=2, message="sleep killed")


def test_secret_env_values_are_scrubbed(tmp_path: Path) -> None:
    result = attempt(
        "exec",
        context(tmp_path),
        command=[sys.executable, "-c", "import os; print(os.environ['DB_PASSWORD']); exit(1)"],
        env={"DB_PASSWORD": "exec-s3cret-pw"},
    )
    assert not result.ok
    assert result.detail == "exit 1: ***"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"command": ""}, "must not be empty"),
        ({"command": []}, "must not be empty"),
        ({"command": "echo 'unbalanced"}, "cannot split command"),
    ],
)
def test_bad_options_fail_at_load(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        options("exec", **values)
