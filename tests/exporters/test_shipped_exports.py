"""The shipped services.yaml exported to all four targets, each checked by its own tool, then
read back: the edges, conditions and gates the target enforces are `svcorch graph --json`'s.

The shipped file has no `image:` keys (its services run this repository's scripts, which no
public image holds), so the container exports get one `--image` per service.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import yaml

from tests.exporters import readback
from tests.support import wait_until
from tests.support.cli import assert_clean, run_svcorch

REPO = Path(__file__).resolve().parents[2]
SERVICES = [
    "epmd", "influxdb", "mariadb-init", "redis", "mysql", "rabbitmq",
    "migrate", "web", "worker", "worker-resource", "beat",
]  # fmt: skip
IMAGES = [f"--image={s}=registry.example/bkmonitor/{s}:1.0" for s in SERVICES]
SVCORCH_IMAGE = "--svcorch-image=registry.example/svcorch:0.1"
BIN = Path(sys.executable).parent
# the stack's own secrets: the AMQP password (in BKDEMO_AMQP_URL and the amqp probe)
SECRET = "guest@127.0.0.1"


def export(target: str, out: Path, state: Path, *extra: str) -> list[str]:
    result = run_svcorch(
        "--state-dir", str(state), "export", target, "--out", str(out), *extra, cwd=REPO
    )
    assert_clean(result)
    assert result.returncode == 0, result.stderr
    return [line.removeprefix(f"warning: export {target}: ") for line in result.stderr.splitlines()]


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    state = tmp_path_factory.mktemp("state")
    result = run_svcorch("--state-dir", str(state), "graph", "--json", cwd=REPO)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def dag(graph: dict[str, Any]) -> nx.DiGraph[str]:
    built: nx.DiGraph[str] = nx.DiGraph()
    built.add_edges_from((e["from"], e["to"]) for e in graph["edges"])
    return built


def assert_same_graph(
    enforced: readback.Enforced, graph: dict[str, Any], warnings: list[str]
) -> set[readback.Edge]:
    """Ready edges exactly the graph's (minus those a warning names); every completed edge
    of the graph enforced, and no completed edge that the graph does not imply."""
    expected = readback.expected_edges(graph)
    unenforced = {e for e in expected if e not in enforced.edges}
    for dependency, dependent, _ in unenforced:
        assert readback.names_in(warnings, dependent, dependency), (dependency, dependent)
    ready = {e for e in enforced.edges if e[2] == "ready"}
    assert ready == {e for e in expected if e[2] == "ready"} - unenforced
    ancestors = dag(graph)
    for oneshot, later, condition in enforced.edges:
        if condition == "completed":
            assert oneshot in nx.ancestors(ancestors, later), (oneshot, later)
    return unenforced


# a notify readiness is heard only by the process's own manager: a gate outside it runs the
# service's liveness probe (the protocol probe) instead
HEARD_FROM_OUTSIDE = {"redis": "redis", "mysql": "mysql", "rabbitmq": "amqp", "web": "http"}


def assert_gates_run_each_probe(enforced: readback.Enforced, graph: dict[str, Any]) -> None:
    types = readback.probe_types(graph)
    for service, probe in enforced.gated.items():
        expected = types[service]
        if expected == "notify":
            expected = HEARD_FROM_OUTSIDE[service]
        assert probe == expected or (probe, expected) == ("tcp", "exec"), service


def assert_secrets_only_in_secret_files(out: Path, secret_files: set[str]) -> None:
    for path in out.iterdir():
        text = path.read_text()
        if path.name in secret_files:
            assert oct(path.stat().st_mode & 0o777) == "0o600", path.name
            assert SECRET in text or "SVCORCH_" in text, path.name
        else:
            assert SECRET not in text, path.name
            assert oct(path.stat().st_mode & 0o777) == "0o644", path.name


# -- Kubernetes -------------------------------------------------------------------------------


def test_kubernetes(tmp_path: Path, graph: dict[str, Any]) -> None:
    out = tmp_path / "k8s"
    warnings = export("kubernetes", out, tmp_path / "state", *IMAGES, SVCORCH_IMAGE)
    validate = BIN / "kubernetes-validate"
    assert validate.is_file(), "kubernetes-validate is missing: run scripts/setup.sh"
    files = sorted(str(p) for p in out.glob("*.yaml"))
    checked = subprocess.run(
        [validate, "--strict", "--kubernetes-version", "1.37.0", *files],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "passed for resource deployment/web" in checked.stdout
    enforced, objects = readback.kubernetes(out)
    unenforced = assert_same_graph(enforced, graph, warnings)
    # the one edge no pod can check: beat waits for a worker whose readiness is a log line
    assert unenforced == {("worker-resource", "beat", "ready")}
    assert_gates_run_each_probe(enforced, graph)
    assert enforced.inline["web"] == ["migrate"] and enforced.inline["mysql"] == ["mariadb-init"]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Job", "migrate") not in kinds  # it runs in front of each pod that waits for it
    assert {
        ("Service", s) for s in ("redis", "mysql", "rabbitmq", "influxdb", "epmd", "web")
    } <= kinds
    web = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "web")
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": 18000,
        "scheme": "HTTP",
    }
    assert container["startupProbe"]["failureThreshold"] == 60  # timeout 60s / period 1s
    assert container["livenessProbe"]["periodSeconds"] == 10
    assert container["livenessProbe"]["failureThreshold"] == 3
    assert web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 10
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
    assert {"name": "svcorch-env", "key": "BKDEMO_AMQP_URL"} in refs
    assert_secrets_only_in_secret_files(out, {"10-secrets.yaml"})


# -- compose ----------------------------------------------------------------------------------


def test_compose(tmp_path: Path, graph: dict[str, Any]) -> None:
    out = tmp_path / "compose"
    warnings = export("compose", out, tmp_path / "state", *IMAGES, SVCORCH_IMAGE)
    compose = shutil.which("docker-compose")
    assert compose is not None, "docker-compose is missing: run scripts/setup.sh"
    checked = subprocess.run(
        [compose, "-f", "docker-compose.yaml", "config"],
        cwd=out, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    config = yaml.safe_load(checked.stdout)
    enforced = readback.compose(config, (out / "svcorch-gates.yaml").read_text())
    expected = readback.expected_edges(graph)
    # compose can only wait until beat's worker started: that edge is weaker, and warned
    assert enforced.edges - expected == {("worker-resource", "beat", "started")}
    assert readback.names_in(warnings, "beat", "worker-resource")
    assert expected - enforced.edges == {("worker-resource", "beat", "ready")}
    assert_gates_run_each_probe(enforced, graph)
    epmd = config["services"]["epmd"]
    assert epmd["healthcheck"]["test"] == ["CMD", "epmd", "-port", "14369", "-names"]
    assert (epmd["healthcheck"]["interval"], epmd["healthcheck"]["start_period"]) == ("1s", "10s")
    assert config["services"]["rabbitmq"]["depends_on"] == {
        "epmd": {"condition": "service_healthy"}
    }
    web = config["services"]["web"]
    assert (web["stop_signal"], web["stop_grace_period"], web["restart"]) == (
        "SIGTERM",
        "10s",
        "always",
    )
    # the env file's secrets reach the container, as compose reads them
    assert web["environment"]["BKDEMO_AMQP_URL"] == "amqp://guest:guest@127.0.0.1:15673//"
    assert config["services"]["worker"]["command"][-3] == "monitor@%h"
    assert_secrets_only_in_secret_files(out, {"catalogue.secrets.env", "svcorch-gates.secrets.env"})


# -- systemd ----------------------------------------------------------------------------------


def test_systemd(tmp_path: Path, graph: dict[str, Any]) -> None:
    out = tmp_path / "units"
    warnings = export("systemd", out, tmp_path / "state")
    units = [*sorted(str(p) for p in out.glob("bkmonitor*.service")), str(out / "bkmonitor.target")]
    checked = subprocess.run(
        ["systemd-analyze", "verify", *units],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{out}:"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    # verify reports bad settings on stderr and still exits 0: both must be clean
    assert (checked.returncode, checked.stderr, checked.stdout) == (0, "", "")
    enforced = readback.systemd(out, "bkmonitor")
    assert assert_same_graph(enforced, graph, warnings) == set()
    assert enforced.edges == readback.expected_edges(graph)
    assert_gates_run_each_probe(enforced, graph)
    web = readback.unit_settings((out / "bkmonitor-web.service").read_text())
    # gunicorn tells systemd itself
    assert web["Type"] == ["notify"] and web["KillMode"] == ["control-group"]
    assert (web["Restart"], web["RestartSec"], web["StartLimitBurst"]) == (
        ["always"],
        ["1s"],
        ["6"],
    )
    migrate = readback.unit_settings((out / "bkmonitor-migrate.service").read_text())
    assert (migrate["Type"], migrate["RemainAfterExit"]) == (["oneshot"], ["yes"])
    worker = readback.unit_settings((out / "bkmonitor-worker.service").read_text())
    assert worker["ExecStart"][0].endswith("-n monitor@%%h -l info")
    assert worker["StandardOutput"] == [f"append:{tmp_path / 'state' / 'logs' / 'worker.log'}"]
    assert (tmp_path / "state" / "logs").is_dir()  # systemd opens it before the worker runs
    assert_secrets_only_in_secret_files(out, {"bkmonitor.secrets.env", "svcorch-gates.env"})


# -- supervisord ------------------------------------------------------------------------------


def supervisorctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "supervisorctl", "-c", str(config), *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def start_supervisord(folder: Path, include: Path) -> subprocess.Popen[bytes]:
    config = folder / "main.conf"
    config.write_text(
        f"[unix_http_server]\nfile={folder}/s.sock\n"
        f"[supervisord]\nlogfile={folder}/supervisord.log\npidfile={folder}/s.pid\n"
        "nodaemon=true\nuser=root\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{folder}/s.sock\n"
        f"[include]\nfiles={include}\n"
    )
    return subprocess.Popen(
        [BIN / "supervisord", "-c", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def stop_supervisord(daemon: subprocess.Popen[bytes]) -> None:
    daemon.terminate()
    daemon.wait(timeout=30)


def programs_as_read(config: Path) -> dict[str, str]:
    """Each program's command as supervisord's own parser reads it (``%%`` undone)."""
    from supervisor.options import ServerOptions

    options = ServerOptions()
    options.configfile = str(config)
    options.process_config(do_usage=False)
    return {
        process.name.removeprefix("bkmonitor-"): process.command
        for group in options.process_group_configs
        for process in group.process_configs
    }


def test_supervisord(tmp_path: Path, graph: dict[str, Any]) -> None:
    out = tmp_path / "supervisor"
    warnings = export("supervisord", out, tmp_path / "state")
    daemon = start_supervisord(tmp_path, out / "supervisord.conf")
    try:
        avail = wait_until(
            lambda: (r := supervisorctl(tmp_path / "main.conf", "avail")).returncode == 0 and r,
            timeout=30,
            message="supervisord answering on its socket",
        )
    finally:
        stop_supervisord(daemon)
    assert isinstance(avail, subprocess.CompletedProcess)
    listed = {line.split()[0] for line in avail.stdout.splitlines()}
    inline = {"mariadb-init", "migrate"}  # run in front of the programs that wait for them
    assert listed == {f"bkmonitor:bkmonitor-{s}" for s in SERVICES if s not in inline}
    assert all(" manual " in line for line in avail.stdout.splitlines())  # autostart=false
    programs = programs_as_read(tmp_path / "main.conf")
    enforced = readback.supervisord(programs, (out / "svcorch-gates.yaml").read_text())
    assert assert_same_graph(enforced, graph, warnings) == set()
    assert_gates_run_each_probe(enforced, graph)
    assert enforced.inline["web"] == ["migrate"] and enforced.inline["mysql"] == ["mariadb-init"]
    assert "-n monitor@%h -l info" in programs["worker"]
    assert_secrets_only_in_secret_files(out, {"bkmonitor.secrets.env", "svcorch-gates.env"})


def test_the_shipped_stack_exports_without_an_error_and_the_listed_gaps(tmp_path: Path) -> None:
    """`--strict` fails on the shipped stack's gaps (its log probes, the init containers...),
    one line each, exit 2: the warnings are real gaps, not noise that --strict ignores."""
    result = run_svcorch(
        "--state-dir", str(tmp_path), "export", "kubernetes", "--strict", *IMAGES, SVCORCH_IMAGE,
        "--out", str(tmp_path / "k8s"), cwd=REPO,
    )  # fmt: skip
    assert_clean(result)
    assert result.returncode == 2
    assert (
        "svcorch: export kubernetes: service 'beat': cannot wait for 'worker-resource'"
        " (its log probe reads a file no other pod can see): it starts without waiting"
    ) in result.stderr.splitlines()
    assert not (tmp_path / "k8s").exists()  # nothing written


def test_gate_catalogue_is_a_valid_catalogue(tmp_path: Path) -> None:
    """What the init containers and wait services run: `svcorch validate` accepts it with
    the secrets from its env file, and it holds no secret itself."""
    out = tmp_path / "compose"
    export("compose", out, tmp_path / "state", *IMAGES, SVCORCH_IMAGE)
    gates = out / "svcorch-gates.yaml"
    assert SECRET not in gates.read_text()
    secrets = dict(
        line.split("=", 1) for line in (out / "svcorch-gates.secrets.env").read_text().splitlines()
        if not line.startswith("#")
    )  # fmt: skip
    env = {k: v.strip("'") for k, v in secrets.items()}
    result = run_svcorch(
        "-f", str(gates), "--state-dir", str(tmp_path), "config", "--json", cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)["services"]
    assert resolved["rabbitmq"]["ready"]["host"] == "rabbitmq"  # loopback -> its service name
    assert resolved["rabbitmq"]["external"] is True
