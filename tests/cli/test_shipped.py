"""The shipped services.yaml validates, plans and draws (and Graphviz renders the drawing)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.support.cli import assert_clean, run_svcorch

REPO = Path(__file__).resolve().parents[2]
BASE = ["epmd", "influxdb", "mariadb-init", "mysql", "rabbitmq", "redis"]
APP = ["beat", "migrate", "web", "worker", "worker-resource"]


def ok(*args: str, state: Path) -> str:
    result = run_svcorch("--state-dir", str(state), *args, cwd=REPO)
    assert_clean(result)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def test_validate_and_plan(tmp_path: Path) -> None:
    summary = ok("validate", state=tmp_path)
    assert summary.startswith("services.yaml: ok — 11 services (9 managed, 2 oneshot, 0 external)")
    plan = json.loads(ok("up", "--dry-run", "--json", state=tmp_path))
    assert plan["action"] == "up"
    assert sorted(plan["order"]) == sorted(BASE + APP)
    position = {name: i for i, name in enumerate(plan["order"])}
    # the seed's order: base layer, migrate, then the app, and beat after its worker
    assert max(position[s] for s in ("mysql", "influxdb")) < position["migrate"]
    assert position["migrate"] < min(position[s] for s in ("web", "worker", "worker-resource"))
    assert position["worker-resource"] < position["beat"]
    assert plan["generations"][-1] == ["beat"]
    down = json.loads(ok("down", "--dry-run", "--json", state=tmp_path))
    assert down["order"] == [n for wave in reversed(plan["generations"]) for n in wave]


def test_graph_dot_renders_with_graphviz(tmp_path: Path) -> None:
    text = ok("graph", "--dot", state=tmp_path)
    dot = shutil.which("dot")
    assert dot is not None, "graphviz's `dot` is not installed; run scripts/setup.sh"
    svg = subprocess.run(
        [dot, "-Tsvg"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    assert (svg.returncode, svg.stderr) == (0, "")
    assert svg.stdout.count('class="node"') == len(BASE + APP)
    assert '"migrate" -> "web" [label="completed"];' in text
    assert '"mariadb-init" -> "mysql" [label="completed"];' in text


def test_the_base_layer_restarts_on_any_exit_and_its_wrappers_exec_their_servers() -> None:
    from svcorch import catalogue
    from svcorch.model import Kind, RestartPolicy

    loaded = catalogue.load(REPO / "services.yaml", environ={"SVCORCH_STATE_DIR": "/tmp/x"})
    servers = [s for s in loaded.services.values() if s.name in BASE and s.kind is Kind.MANAGED]
    assert sorted(s.name for s in servers) == ["epmd", "influxdb", "mysql", "rabbitmq", "redis"]
    for server in servers:
        # a server's exit 0 is an outage too: on-failure would leave it down
        assert server.restart.policy is RestartPolicy.ALWAYS, server.name
    wrappers = sorted((REPO / "examples" / "stack").glob("run-*.sh"))
    assert len(wrappers) == 3
    for wrapper in wrappers:
        # the wrapper's process becomes the server, so svcorch sees the server's real exit
        script = wrapper.read_text().replace("\\\n", " ")  # continuation lines joined
        last = [line for line in script.splitlines() if line.strip()][-1]
        assert last.startswith("exec "), (wrapper.name, last)
    # RabbitMQ's own script execs erl only when `detached` is set; else it swallows the status
    assert "export detached=true" in (REPO / "examples/stack/run-rabbitmq.sh").read_text()
