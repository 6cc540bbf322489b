"""The commands that need no running process, through the installed ``svcorch`` command."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from svcorch import __version__
from tests.support.cli import assert_clean, run_svcorch

STACK = """
version: 1
name: shop
env:
  DB_PASSWORD: ${DB_PASSWORD:-hunter2}
  BROKER_URL: amqp://shop:${BROKER_SECRET:-s3cret}@127.0.0.1:5672//
  DATA_DIR: ${SVCORCH_STATE_DIR}/data
services:
  db:
    external: true
    ready: {type: mysql, port: 3306, user: shop, password: "${DB_PASSWORD:-hunter2}"}
  cache:
    command: redis-server --port 6379
    ready: {type: tcp, port: 6379}
  migrate:
    oneshot: true
    command: python migrate.py
    depends_on: [db]
  web:
    command: gunicorn app -b 127.0.0.1:8000
    depends_on:
      db: ready
      cache: started
      migrate: completed
    ready: {type: http, url: "http://127.0.0.1:8000/healthz"}
  worker:
    command: celery worker --broker amqp://shop:s3cret@127.0.0.1:5672//
    depends_on: [cache, migrate]
    profiles: [workers]
  flower:
    command: celery flower
    depends_on: [worker]
    profiles: [debug]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "services.yaml").write_text(STACK.lstrip("\n"))
    return tmp_path


def ok(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = run_svcorch(*args, cwd=cwd, env=env)
    assert_clean(result)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def fails(*args: str, cwd: Path, code: int = 2) -> list[str]:
    result = run_svcorch(*args, cwd=cwd)
    assert_clean(result)
    assert result.returncode == code, (result.stdout, result.stderr)
    return result.stderr.splitlines()


# -- validate ---------------------------------------------------------------------------------


def test_validate_prints_a_one_line_summary(project: Path) -> None:
    assert ok("validate", cwd=project) == (
        "services.yaml: ok — 6 services (4 managed, 1 oneshot, 1 external), 7 dependencies,"
        " 4 start waves\n"
    )
    summary = json.loads(ok("validate", "--json", cwd=project))
    # warnings: what `up` would refuse here (a program this machine lacks, say); a list always
    assert isinstance(summary.pop("warnings"), list)
    assert summary == {
        "ok": True,
        "file": "services.yaml",
        "services": 6,
        "dependencies": 7,
        "managed": 4,
        "oneshot": 1,
        "external": 1,
    }


def test_the_file_comes_from_f_or_svcorch_file(project: Path) -> None:
    (project / "deploy").mkdir()
    shutil.move(project / "services.yaml", project / "deploy" / "stack.yaml")
    assert ok("-f", "deploy/stack.yaml", "validate", cwd=project).startswith(
        "deploy/stack.yaml: ok — 6 services"
    )
    env = {"SVCORCH_FILE": "deploy/stack.yaml"}
    assert ok("validate", cwd=project, env=env).startswith("deploy/stack.yaml: ok")


# -- graph ----------------------------------------------------------------------------------------


def test_graph_draws_a_tree_by_default(project: Path) -> None:
    assert ok("graph", cwd=project).splitlines() == [
        "shop",
        "├── web  http",
        "│   ├── cache  tcp  (waits: started)",
        "│   ├── db  mysql  external",
        "│   └── migrate  started  oneshot  (waits: completed)",
        "│       └── db  mysql  external",
        "└── flower  started",
        "    └── worker  started",
        "        ├── cache  tcp",
        "        └── migrate  started  oneshot  (see above)",
    ]
    assert ok("graph", "--tree", "migrate", cwd=project).splitlines() == [
        "shop",
        "└── migrate  started  oneshot",
        "    └── db  mysql  external",
    ]


def test_graph_dot_renders_with_graphviz(project: Path, tmp_path: Path) -> None:
    text = ok("graph", "--dot", cwd=project)
    assert text.startswith('digraph "shop" {')
    nodes = re.findall(r'^  "([a-z]+)" \[label="([^"]*)"', text, re.MULTILINE)
    assert dict(nodes) == {
        "cache": "cache\\n[tcp]",
        "db": "db\\n[mysql]\\nexternal",
        "migrate": "migrate\\n[started]\\noneshot",
        "web": "web\\n[http]",
        "worker": "worker\\n[started]",
        "flower": "flower\\n[started]",
    }
    assert sorted(re.findall(r'^  ("\S+" -> "\S+".*);$', text, re.MULTILINE)) == [
        '"cache" -> "web" [label="started"]',
        '"cache" -> "worker"',
        '"db" -> "migrate"',
        '"db" -> "web"',
        '"migrate" -> "web" [label="completed"]',
        '"migrate" -> "worker"',
        '"worker" -> "flower"',
    ]
    # graphviz is part of the project's setup (scripts/setup.sh): missing is a failure
    dot = shutil.which("dot")
    assert dot is not None, "graphviz's `dot` is not installed; run scripts/setup.sh"
    svg = subprocess.run(
        [dot, "-Tsvg"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    assert (svg.returncode, svg.stderr) == (0, "")
    assert "<svg" in svg.stdout
    assert svg.stdout.count('class="node"') == 6
    assert svg.stdout.count('class="edge"') == 7


def test_graph_mermaid_and_selection(project: Path) -> None:
    assert ok("graph", "--mermaid", "web", cwd=project).splitlines() == [
        "graph TD",
        '    s0["cache<br/>tcp"]',
        '    s1[("db<br/>mysql")]',
        '    s2[/"migrate<br/>started"/]',
        '    s3["web<br/>http"]',
        "    s0 -->|started| s3",
        "    s1 --> s2",
        "    s1 --> s3",
        "    s2 -->|completed| s3",
    ]
    assert fails("graph", "--dot", "--mermaid", cwd=project) == [
        "svcorch: choose one of --dot, --mermaid, --tree, --json"
    ]


# -- config and schema ----------------------------------------------------------------------------


def test_config_is_the_resolved_catalogue_with_secrets_masked(project: Path) -> None:
    state = project / "state"
    text = ok("--state-dir", str(state), "config", cwd=project)
    assert "hunter2" not in text
    assert "s3cret" not in text
    resolved = yaml.safe_load(text)
    assert resolved["env"] == {
        "DB_PASSWORD": "***",
        "BROKER_URL": "amqp://shop:***@127.0.0.1:5672//",
        "DATA_DIR": f"{state}/data",
    }
    assert resolved["services"]["db"]["ready"]["password"] == "***"
    assert resolved["services"]["db"]["ready"]["user"] == "shop"
    assert resolved["services"]["worker"]["command"] == (
        "celery worker --broker amqp://shop:***@127.0.0.1:5672//"
    )
    # defaults filled, durations as users write them
    assert resolved["services"]["web"]["ready"]["timeout"] == "1m"
    stop = resolved["services"]["web"]["stop"]
    assert stop == {"signal": "TERM", "timeout": "10s", "command": None}
    assert resolved["services"]["web"]["depends_on"]["migrate"]["condition"] == "completed"
    # --json, as the command's flag or the global one, is the same data
    assert json.loads(ok("--state-dir", str(state), "config", "--json", cwd=project)) == resolved
    assert json.loads(ok("--state-dir", str(state), "--json", "config", cwd=project)) == resolved


def test_state_dir_defaults_beside_the_catalogue_and_reads_svcorch_state_dir(
    project: Path,
) -> None:
    resolved = yaml.safe_load(ok("config", cwd=project))
    assert resolved["env"]["DATA_DIR"] == f"{project}/.svcorch/data"
    env = {"SVCORCH_STATE_DIR": "/tmp/elsewhere"}
    assert yaml.safe_load(ok("config", cwd=project, env=env))["env"]["DATA_DIR"] == (
        "/tmp/elsewhere/data"
    )


def test_schema_is_json_with_every_probe_type(project: Path) -> None:
    schema = json.loads(ok("schema", cwd=project))
    assert schema["title"] == "svcorch services.yaml"
    variants = [v["$ref"].split("/")[-1] for v in schema["$defs"]["ProbeOptions"]["oneOf"]]
    types = {schema["$defs"][v]["properties"]["type"]["const"] for v in variants}
    assert {"tcp", "http", "exec", "log", "redis", "amqp", "mysql", "influxdb"} <= types


# -- plans ----------------------------------------------------------------------------------------


def test_up_dry_run_prints_the_start_plan(project: Path) -> None:
    assert ok("up", "--dry-run", cwd=project).splitlines() == [
        "start plan: 4 services in 3 waves",
        "wave 1",
        "  cache  start, ready by tcp",
        "  db  wait for mysql",
        "wave 2",
        "  migrate  run to completion  after: db ready",
        "wave 3",
        "  web  start, ready by http  after: cache started, db ready, migrate completed",
    ]
    data = json.loads(ok("up", "--dry-run", "--json", cwd=project))
    assert {k: data[k] for k in ("action", "order", "generations")} == {
        "action": "up",
        "order": ["cache", "db", "migrate", "web"],
        "generations": [["cache", "db"], ["migrate"], ["web"]],
    }
    assert data["steps"][3] == {
        "service": "web",
        "kind": "managed",
        "probe": "http",
        "waits_for": [
            {"service": "cache", "condition": "started"},
            {"service": "db", "condition": "ready"},
            {"service": "migrate", "condition": "completed"},
        ],
    }


def test_profiles_select_like_compose(project: Path) -> None:
    def order(*args: str) -> list[str]:
        data = json.loads(ok(*args, "--json", cwd=project))
        assert data["action"] == "up"
        return list(data["order"])

    assert order("up", "--dry-run") == ["cache", "db", "migrate", "web"]
    assert order("--profile", "workers", "up", "--dry-run") == [
        "cache",
        "db",
        "migrate",
        "web",
        "worker",
    ]
    # flower's profile pulls in worker, whose own profile is not selected
    assert order("--profile", "debug", "up", "--dry-run")[-2:] == ["worker", "flower"]
    # naming a service starts it (and what it needs) whatever its profile
    assert order("up", "--dry-run", "worker") == ["cache", "db", "migrate", "worker"]
    # --profile after the command means the same; both places add up
    assert order("up", "--dry-run", "--profile", "workers") == order(
        "--profile", "workers", "up", "--dry-run"
    )
    assert order("--profile", "workers", "up", "--dry-run", "--profile", "debug")[-1] == "flower"
    # a profile nobody has is a typo
    typo = run_svcorch("up", "--dry-run", "--profile", "wrokers", cwd=project)
    assert typo.returncode == 2
    assert typo.stderr.strip() == (
        "svcorch: unknown profile 'wrokers' (did you mean 'workers'?); "
        "profiles in the catalogue: debug, workers"
    )


def test_down_dry_run_prints_the_stop_plan(project: Path) -> None:
    assert ok("down", "--dry-run", "migrate", cwd=project).splitlines() == [
        "stop plan: 4 services in 3 waves",
        "wave 1",
        "  flower  stop",
        "wave 2",
        "  web  stop",
        "  worker  stop  after: flower",
        "wave 3",
        "  migrate  stop  after: web, worker",
    ]
    data = json.loads(ok("--json", "down", "--dry-run", cwd=project))
    assert data["action"] == "down"
    # the start waves reversed: a service stops once everything that needs it has stopped
    assert data["generations"] == [["flower"], ["web", "worker"], ["migrate"], ["cache", "db"]]
    assert data["order"] == ["flower", "web", "worker", "migrate", "cache", "db"]


def test_an_unknown_service_on_the_command_line_is_one_line_exit_2(project: Path) -> None:
    assert fails("up", "--dry-run", "wrker", cwd=project) == [
        "svcorch: unknown service 'wrker' (did you mean 'worker'?)"
    ]
    assert fails("down", "--dry-run", "migrat", "nothing", cwd=project) == [
        "svcorch: unknown service 'migrat' (did you mean 'migrate'?), 'nothing'"
    ]
    assert fails("graph", "db", "wbe", cwd=project) == [
        "svcorch: unknown service 'wbe' (did you mean 'web'?)"
    ]


# -- the program itself ------------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    assert ok("--version", cwd=tmp_path) == f"svcorch {__version__}\n"
    module = subprocess.run(
        [sys.executable, "-m", "svcorch", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (module.returncode, module.stdout, module.stderr) == (0, f"svcorch {__version__}\n", "")


def test_usage_errors_exit_2_without_a_crash_log(project: Path) -> None:
    for args, message in [
        (("bogus",), "No such command 'bogus'."),
        (("up", "--dry-rn"), "No such option: --dry-rn"),
        (("--json=maybe", "validate"), "--json"),
    ]:
        lines = fails(*args, cwd=project)
        assert any(message in line for line in lines), lines
    help_text = run_svcorch(cwd=project)
    assert help_text.returncode == 2
    assert "Usage: svcorch" in help_text.stdout + help_text.stderr
    assert not (project / ".svcorch" / "crash.log").exists()


PLUGIN = '''
"""A probe plugin with a bug: validating its options raises something that is no ValueError."""
from typing import Literal

from pydantic import model_validator

from svcorch.probes.base import ProbeOptions, ProbeType


class BoomOptions(ProbeOptions):
    type: Literal["boom"] = "boom"

    @model_validator(mode="after")
    def _explode(self) -> "BoomOptions":
        raise RuntimeError("the plugin's own bug")


PROBE_TYPE = ProbeType(name="boom", options=BoomOptions, create=lambda options, context: None)
'''


def test_an_internal_error_exits_3_with_the_traceback_in_crash_log(tmp_path: Path) -> None:
    # a real plugin found through its entry point, kept out of the shared venv
    site = tmp_path / "site"
    (site / "boom_probe-0.1.dist-info").mkdir(parents=True)
    (site / "boom_probe.py").write_text(PLUGIN)
    (site / "boom_probe-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: boom-probe\nVersion: 0.1\n"
    )
    (site / "boom_probe-0.1.dist-info" / "entry_points.txt").write_text(
        "[svcorch.probes]\nboom = boom_probe:PROBE_TYPE\n"
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "services.yaml").write_text(
        textwrap.dedent(
            """
            version: 1
            services:
              a: {command: x, ready: {type: boom}}
            """
        )
    )
    result = run_svcorch("validate", cwd=project, env={"PYTHONPATH": str(site)})
    assert_clean(result)
    crash_log = project / ".svcorch" / "crash.log"
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"svcorch: internal error: RuntimeError: the plugin's own bug (traceback in {crash_log})"
    ]
    logged = crash_log.read_text()
    assert logged.startswith("Traceback (most recent call last):")
    # -v prints the traceback too, then the same one line
    verbose = run_svcorch("-v", "validate", cwd=project, env={"PYTHONPATH": str(site)})
    assert verbose.returncode == 3
    assert verbose.stderr.startswith("Traceback (most recent call last):")
    assert verbose.stderr.splitlines()[-1].startswith("svcorch: internal error: RuntimeError")
    assert "boom_probe.py" in logged
    assert logged.rstrip().endswith("RuntimeError: the plugin's own bug")
