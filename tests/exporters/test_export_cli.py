"""`svcorch export` and `svcorch graph --json` through the installed command: errors, secrets,
--strict, the preview, and a supervisord export whose gates really hold a service back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from tests.exporters.test_shipped_exports import (
    start_supervisord,
    stop_supervisord,
    supervisorctl,
)
from tests.support import free_port, wait_until
from tests.support.cli import assert_clean, run_svcorch

CATALOGUE = """\
version: 1
name: shop
env:
  BROKER_URL: amqp://shop:s3cret-pw@127.0.0.1:5672/
  LOG_LEVEL: info
services:
  cache:
    external: true
    ready: {type: redis, host: 127.0.0.1, port: 6379, timeout: 10s}
  setup:
    oneshot: true
    command: [sh, -c, "echo set up >> setup.out"]
  web:
    command: python3 -m http.server {port} --bind 127.0.0.1
    env: {API_TOKEN: tok-123, GREETING: "50% off $$5"}
    depends_on: {setup: completed, cache: ready}
    ports: [{port}]
    ready: {type: http, url: "http://127.0.0.1:{port}/", timeout: 20s}
    stop: {signal: INT, timeout: 5s}
    restart: {policy: on-failure, max_restarts: 2}
    profiles: [front]
"""


def catalogue(tmp_path: Path, text: str = CATALOGUE, port: int = 18080) -> Path:
    path = tmp_path / "services.yaml"
    path.write_text(text.replace("{port}", str(port)))
    return path


def svcorch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_svcorch("--state-dir", str(tmp_path / "state"), *args, cwd=tmp_path)
    assert_clean(result)
    return result


def test_graph_json_is_nodes_and_edges(tmp_path: Path) -> None:
    catalogue(tmp_path)
    result = svcorch(tmp_path, "graph", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["name"] == "shop"
    assert [n["name"] for n in document["nodes"]] == ["cache", "setup", "web"]
    web = document["nodes"][2]
    assert web == {
        "name": "web",
        "kind": "managed",
        "probe": {
            "type": "http",
            "target": "http://127.0.0.1:18080/",
            "timeout": "20s",
            "period": "1s",
        },
        "liveness": None,
    }
    assert document["nodes"][1]["kind"] == "oneshot" and document["nodes"][1]["probe"] is None
    assert document["edges"] == [
        {"from": "setup", "to": "web", "condition": "completed", "restart_on_dependency": False},
        {"from": "cache", "to": "web", "condition": "ready", "restart_on_dependency": False},
    ]
    # the global --json means the same; it no longer silently prints the tree
    assert json.loads(svcorch(tmp_path, "--json", "graph").stdout) == document
    clash = svcorch(tmp_path, "graph", "--json", "--dot")
    assert (clash.returncode, clash.stderr) == (
        2,
        "svcorch: choose one of --dot, --mermaid, --tree, --json\n",
    )


def test_missing_images_are_one_located_error(tmp_path: Path) -> None:
    catalogue(tmp_path)
    result = svcorch(tmp_path, "export", "compose", "--out", "out")
    assert result.returncode == 2
    assert result.stderr == (
        "services.yaml: export compose: 2 services have no image: setup, web (add `image:` to"
        " each, or pass --image NAME=IMAGE)\n"
    )
    # an `image:` key or --image each satisfy it; the local runtime ignores the key
    text = CATALOGUE.replace("  setup:\n", "  setup:\n    image: shop/setup:1\n")
    catalogue(tmp_path, text)
    assert svcorch(tmp_path, "validate").returncode == 0
    result = svcorch(
        tmp_path, "export", "compose", "--image", "web=shop/web:1", "--svcorch-image", "svcorch:0.1"
    )
    assert result.returncode == 0, result.stderr


def test_usage_errors(tmp_path: Path) -> None:
    catalogue(tmp_path)
    cases = {
        ("export", "kubernets"): "svcorch: unknown export target 'kubernets' (did you mean"
        " 'kubernetes'?); choose one of: kubernetes, compose, systemd, supervisord\n",
        ("export", "compose", "--image", "web"): "svcorch: --image 'web': expected NAME=IMAGE,"
        " e.g. web=registry/web:1.4\n",
        ("export", "compose", "--image", "wbe=x"): "svcorch: unknown service 'wbe' (did you"
        " mean 'web'?)\n",
        ("export", "kubernetes", "--image", "web=w", "--image", "setup=s"): "svcorch: export"
        " kubernetes: init containers wait for dependencies with `svcorch check`: pass"
        " --svcorch-image IMAGE (an image with svcorch installed)\n",
    }
    for args, message in cases.items():
        result = svcorch(tmp_path, *args)
        assert (result.returncode, result.stderr) == (2, message), args


def test_a_password_in_a_command_line_is_refused(tmp_path: Path) -> None:
    text = CATALOGUE.replace(
        "command: [sh, -c,", "command: [celery, --broker, 'amqp://u:pw@h//', sh, -c,"
    )
    catalogue(tmp_path, text)
    result = svcorch(tmp_path, "export", "systemd")
    assert result.returncode == 2
    assert result.stderr == (
        "svcorch: the command of 'setup' holds a password in a URL, which an export would"
        " write in plain text: pass it through `env` (e.g. BROKER_URL) instead\n"
    )


def test_preview_masks_secrets_and_out_writes_them_0600(tmp_path: Path) -> None:
    catalogue(tmp_path)
    images = ("--image", "web=shop/web:1", "--image", "setup=shop/setup:1")
    preview = svcorch(tmp_path, "export", "kubernetes", *images, "--svcorch-image", "svcorch:1")
    assert preview.returncode == 0, preview.stderr
    assert "# ==> 10-secrets.yaml <==" in preview.stdout
    assert "s3cret-pw" not in preview.stdout and "tok-123" not in preview.stdout
    assert "API_TOKEN: ***" in preview.stdout
    written = svcorch(
        tmp_path,
        "--json",
        "export",
        "kubernetes",
        *images,
        "--svcorch-image",
        "svcorch:1",
        "--out",
        "k8s",
    )
    outcome = json.loads(written.stdout)
    assert [Path(f).name for f in outcome["files"]] == [
        "00-namespace.yaml",
        "10-secrets.yaml",
        "20-shop.yaml",
    ]
    secrets = tmp_path / "k8s" / "10-secrets.yaml"
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert "s3cret-pw" in secrets.read_text() and "tok-123" in secrets.read_text()
    manifests = (tmp_path / "k8s" / "20-shop.yaml").read_text()
    assert "s3cret-pw" not in manifests and "tok-123" not in manifests
    web = next(o for o in yaml.safe_load_all(manifests) if o["kind"] == "Deployment")
    container = web["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["API_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "web-env", "key": "API_TOKEN"}
    }
    assert env["BROKER_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "svcorch-env", "key": "BROKER_URL"}
    }
    # stop.signal INT: a preStop sends it to the process and waits for it to end
    assert container["lifecycle"]["preStop"]["exec"]["command"] == [
        "/bin/sh", "-c", "kill -INT 1; while kill -0 1 2>/dev/null; do sleep 1; done",
    ]  # fmt: skip
    warnings = written.stderr.splitlines()
    assert (
        "warning: export kubernetes: service 'cache': external, probed at 127.0.0.1: in a pod"
        " that is the pod itself (give the server's address in the probe)"
    ) in warnings


def test_strict_turns_each_warning_into_an_error(tmp_path: Path) -> None:
    catalogue(tmp_path)
    images = ("--image", "web=shop/web:1", "--image", "setup=shop/setup:1")
    loose = svcorch(tmp_path, "export", "compose", *images, "--svcorch-image", "s:1", "--out", "c")
    assert loose.returncode == 0
    warned = [line.removeprefix("warning: ") for line in loose.stderr.splitlines()]
    assert warned == [
        "export compose: service 'cache': external, probed at 127.0.0.1: in a container that is"
        " the container itself (give the server's address in the probe)"
    ]
    strict = svcorch(
        tmp_path, "export", "compose", *images, "--svcorch-image", "s:1", "--strict", "--out", "d"
    )
    assert strict.returncode == 2
    assert strict.stderr.splitlines() == [f"svcorch: {line}" for line in warned]


def test_compose_escapes_and_env_files_survive_compose(tmp_path: Path) -> None:
    catalogue(tmp_path)
    images = ("--image", "web=shop/web:1", "--image", "setup=shop/setup:1")
    svcorch(tmp_path, "export", "compose", *images, "--svcorch-image", "s:1", "--out", "c")
    config = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yaml", "config"],
        cwd=tmp_path / "c", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert config.returncode == 0, config.stderr
    web = yaml.safe_load(config.stdout)["services"]["web"]
    # `$$5` in services.yaml is `$5`; `config` prints a compose file again, so `$$5` there
    assert web["environment"]["GREETING"] == "50% off $$5"
    assert web["environment"]["API_TOKEN"] == "tok-123"  # from web.secrets.env
    assert web["environment"]["BROKER_URL"] == "amqp://shop:s3cret-pw@127.0.0.1:5672/"
    assert web["profiles"] == ["front"]
    assert web["depends_on"] == {
        "setup": {"condition": "service_completed_successfully"},
        "wait-cache": {"condition": "service_completed_successfully"},
    }
    assert (web["restart"], web["stop_signal"], web["stop_grace_period"]) == (
        "on-failure:2",
        "SIGINT",
        "5s",
    )


def test_supervisord_gates_hold_the_program_until_its_dependencies_are_ready(
    tmp_path: Path,
) -> None:
    """A real supervisord runs the export: web's wrapper runs the oneshot, waits for Redis
    (the machine's, at 6379) with svcorch's own redis probe, then execs web; the log shows
    that order, and web answers with the environment the export gave it."""
    port = free_port()
    catalogue(tmp_path, port=port)
    result = svcorch(tmp_path, "export", "supervisord", "--out", "sv")
    assert result.returncode == 0, result.stderr
    daemon = start_supervisord(tmp_path, tmp_path / "sv" / "supervisord.conf")
    config = tmp_path / "main.conf"
    try:
        wait_until(
            lambda: supervisorctl(config, "avail").returncode == 0,
            timeout=30,
            message="supervisord",
        )
        started = supervisorctl(config, "start", "shop:*")
        assert "shop-web: started" in started.stdout, started.stdout + started.stderr
        log = tmp_path / "state" / "logs" / "web.log"
        wait_until(
            lambda: log.is_file() and "Serving HTTP" in log.read_text(),
            timeout=30,
            message="web serving",
        )
        text = log.read_text()
        assert (
            text.index("runs oneshot setup first")
            < text.index("cache")
            < text.index("Serving HTTP")
        )
        assert (tmp_path / "setup.out").read_text() == "set up\n"
    finally:
        supervisorctl(config, "stop", "shop:*")
        stop_supervisord(daemon)
