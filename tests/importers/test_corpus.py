"""The corpus of supervisord files in tests/data/supervisor: each converts to a catalogue that
validates, and the tree that can run here comes up under svcorch with the same processes
(command lines, users, working directories, the variables that differ per process) and the
same counts as under a real supervisord started from the same file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support import wait_until
from tests.support.accounts import unprivileged_user
from tests.support.cli import assert_clean, run_svcorch

CORPUS = Path(__file__).resolve().parents[1] / "data" / "supervisor"
TREE = CORPUS / "tree"
WATCHED = ("WORKER_ID", "QUEUE", "WEB_HOME", "STACK", "QUEUE_NAME", "CORPUS_STACK")
SUPERVISORD = shutil.which("supervisord", path=os.path.dirname(sys.executable))


@pytest.fixture
def corpus_env() -> Iterator[dict[str, str]]:
    user = unprivileged_user()
    # the programs' working directory: outside pytest's tmp (0700, root's), so the
    # unprivileged account can enter it
    run = Path(tempfile.mkdtemp(prefix="svcorch-corpus-"))
    run.chmod(0o755)
    try:
        yield {
            "CORPUS_TMP": str(run),
            "CORPUS_USER": user.pw_name,
            "CORPUS_BEAT": "true",
            "SUPERVISOR_HERE": str(TREE),
        }
    finally:
        shutil.rmtree(run, ignore_errors=True)


def _convert(path: Path, cwd: Path, env: dict[str, str]) -> tuple[str, str]:
    result = run_svcorch("import-supervisor", str(path), cwd=cwd, env=env)
    assert_clean(result)
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def _process(pid: int) -> tuple[str, str, str, tuple[str, ...]]:
    """What must match between the two runs: command line, user, cwd, watched variables."""
    proc = psutil.Process(pid)
    env = proc.environ()
    watched = tuple(f"{k}={env[k]}" for k in WATCHED if k in env)
    return (" ".join(proc.cmdline()), proc.username(), proc.cwd(), watched)


def _programs(pids: list[int]) -> Counter[tuple[str, str, str, tuple[str, ...]]]:
    return Counter(_process(pid) for pid in pids)


@pytest.fixture
def supervisord_run(corpus_env: dict[str, str]) -> Iterator[list[int]]:
    """supervisord (daemonized, as deployed) from the corpus's main file; its programs' pids."""
    if SUPERVISORD is None:
        pytest.skip("supervisord is not installed (pip install -e '.[test]')")
    run = Path(corpus_env["CORPUS_TMP"])
    env = {**os.environ, **corpus_env}
    subprocess.run([SUPERVISORD, "-c", str(TREE / "supervisord.conf")], env=env, check=True)
    pidfile = run / "supervisord.pid"
    wait_until(pidfile.exists, timeout=15, message="supervisord's pidfile")
    daemon = psutil.Process(int(pidfile.read_text()))
    expected = 6  # web, worker x3, beat, migrate (the listener is not a program)

    def programs() -> list[int]:
        pids = []
        for child in daemon.children():
            try:
                if "listener.py" not in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.Error:
                continue  # exited meanwhile: supervisord restarts it, or the count says so
        return pids

    try:
        wait_until(
            lambda: len(programs()) == expected, timeout=20, message="supervisord's programs"
        )
        yield programs()
    finally:
        daemon.send_signal(signal.SIGTERM)  # by pid: supervisord stops its programs
        daemon.wait(timeout=30)


def test_the_tree_converts_to_a_catalogue_that_validates(
    tmp_path: Path, corpus_env: dict[str, str]
) -> None:
    text, warnings = _convert(TREE / "supervisord.conf", tmp_path, corpus_env)
    (tmp_path / "services.yaml").write_text(text)
    checked = run_svcorch("validate", cwd=tmp_path, env=corpus_env)
    assert checked.returncode == 0, checked.stderr
    # every warning is in the YAML too, as a comment naming the same place
    for line in warnings.splitlines():
        place, _, message = line.partition(": ")
        assert f"{place}: {message}" in text, line


def test_the_same_processes_users_and_counts_as_supervisord(
    tmp_path: Path, corpus_env: dict[str, str], supervisord_run: list[int]
) -> None:
    expected = _programs(supervisord_run)
    text, _ = _convert(TREE / "supervisord.conf", tmp_path, corpus_env)
    (tmp_path / "services.yaml").write_text(text)
    env = {**corpus_env, "SVCORCH_STATE_DIR": str(tmp_path / "state")}
    up = run_svcorch("up", "--json", cwd=tmp_path, env=env, timeout=60)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        status = run_svcorch("status", "--json", cwd=tmp_path, env=env)
        import json

        rows = json.loads(status.stdout)
        assert sorted(r["service"] for r in rows) == [
            "beat",
            "migrate",
            "web",
            "worker#0",
            "worker#1",
            "worker#2",
        ]
        found = _programs([r["pid"] for r in rows])
    finally:
        down = run_svcorch("down", cwd=tmp_path, env=env, timeout=60)
        assert down.returncode == 0, down.stderr
    assert found == expected
    assert sum(found.values()) == 6
    users = {user for (_, user, _, _) in found}
    assert users == {"root", corpus_env["CORPUS_USER"]}


def test_autostart_from_the_environment_is_kept(tmp_path: Path, corpus_env: dict[str, str]) -> None:
    text, _ = _convert(TREE / "supervisord.conf", tmp_path, corpus_env)
    (tmp_path / "services.yaml").write_text(text)
    env = {**corpus_env, "CORPUS_BEAT": "false"}
    plan = run_svcorch("up", "--dry-run", "--json", cwd=tmp_path, env=env)
    import json

    assert plan.returncode == 0, plan.stderr
    assert "beat" not in json.loads(plan.stdout)["order"]
    named = run_svcorch("up", "beat", "--dry-run", "--json", cwd=tmp_path, env=env)
    assert json.loads(named.stdout)["order"] == ["beat"]


@pytest.mark.parametrize("path", sorted(p for p in CORPUS.glob("*.conf")), ids=lambda p: p.name)
def test_each_corpus_file_converts_to_a_catalogue_that_validates(
    path: Path, tmp_path: Path, corpus_env: dict[str, str]
) -> None:
    text, _ = _convert(path, tmp_path, corpus_env)
    (tmp_path / "services.yaml").write_text(text)
    env = {
        **corpus_env,
        "APP": "/srv/app",
        "QUEUE": "jobs",
        "PORT_BASE": "80",
        "START": "false",
        "RESTART": "true",
        "WORKERS": "2",
        "APP_USER": corpus_env["CORPUS_USER"],
    }
    checked = run_svcorch("validate", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr + text


def test_warnings_name_the_file_as_given_and_here_stays_a_variable() -> None:
    """docs/from-supervisor.md: `file:line: message`, the path as typed (not absolutized); a
    relative path leaves %(here)s as ${SUPERVISOR_HERE}, with a warning."""
    result = run_svcorch("import-supervisor", "tree/supervisord.conf", cwd=CORPUS)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("tree/") for line in lines), lines
    assert (
        "tree/conf.d/web.conf:9: [program:web] environment: %(here)s (the folder of"
        " supervisord.conf) left as ${SUPERVISOR_HERE}: set it, or import with the file's"
        " absolute path"
    ) in lines
    assert "WEB_HOME: ${SUPERVISOR_HERE}/conf.d" in result.stdout
