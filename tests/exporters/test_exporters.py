"""The exporters as pure functions: the mappings and warnings the docs' table promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from svcorch import catalogue as catalogue_module
from svcorch.exporters import get
from svcorch.exporters.base import Export, ExportRequest
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue, Service
from svcorch.probes.base import ProbeOptions
from tests.exporters import readback

TEXT = """\
version: 1
name: edge
services:
  db:
    command: postgres -D /data
    image: postgres:16
    ports: [5432]
    ready: {type: tcp, port: 5432, timeout: 30s, period: 2s}
  queue:
    command: broker --port 5672
    image: broker:1
    ready: {type: exec, command: broker-ctl ping, timeout: 10s}
  api:
    command: api-server
    image: api:1
    depends_on:
      db: {condition: started, restart_on_dependency: true}
      queue: ready
    restart: {policy: no}
    stop: {command: api-server --drain, timeout: 20s}
"""


def load(tmp_path: Path, text: str = TEXT) -> Catalogue:
    path = tmp_path / "services.yaml"
    path.write_text(text)
    return catalogue_module.load(path, environ={})


def run(target: str, catalogue: Catalogue, tmp_path: Path) -> Export:
    request = ExportRequest(
        catalogue=catalogue,
        graph=ServiceGraph.from_catalogue(catalogue),
        out_dir=tmp_path / "out",
        state_dir=tmp_path / "state",
        svcorch="/usr/bin/svcorch",
        svcorch_image="svcorch:1",
    )
    return get(target)(request)


def has(export: Export, *parts: str) -> bool:
    return any(all(p in w for p in parts) for w in export.warnings)


def test_kubernetes_probe_handlers_and_gaps(tmp_path: Path) -> None:
    export = run("kubernetes", load(tmp_path), tmp_path)
    objects = [o for o in yaml.safe_load_all(export.files["20-edge.yaml"].text) if o]
    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] == "Deployment"
    }
    db = pods["db"]["containers"][0]
    assert db["readinessProbe"] == {
        "tcpSocket": {"port": 5432},
        "periodSeconds": 2,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    assert db["startupProbe"]["failureThreshold"] == 15  # 30s / 2s
    assert pods["queue"]["containers"][0]["readinessProbe"]["exec"] == {
        "command": ["broker-ctl", "ping"]
    }
    # queue's exec probe has no port: no other pod can check it
    assert has(export, "'api'", "cannot wait for 'queue'")
    assert has(export, "'api'", "waits for 'db' to start", "in no order")
    assert has(export, "'api'", "restart_on_dependency on 'db'")
    assert has(export, "'api'", "restart policy 'no'", "restartPolicy Always")
    api = pods["api"]
    assert "initContainers" not in api
    assert api["terminationGracePeriodSeconds"] == 20
    assert api["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == [
        "/bin/sh",
        "-c",
        "api-server --drain",
    ]


def test_compose_conditions(tmp_path: Path) -> None:
    export = run("compose", load(tmp_path), tmp_path)
    services = yaml.safe_load(export.files["docker-compose.yaml"].text)["services"]
    assert services["api"]["depends_on"] == {
        "db": {"condition": "service_started"},
        "queue": {"condition": "service_healthy"},
    }
    assert services["queue"]["healthcheck"] == {
        "test": ["CMD", "broker-ctl", "ping"],
        "interval": "1s",
        "timeout": "5s",
        "retries": 3,
        "start_period": "10s",
    }
    assert services["api"]["restart"] == "no"
    assert has(export, "'api'", "stop.command")
    assert has(export, "'api'", "restart_on_dependency on 'db'")


def test_systemd_conditions_and_stop(tmp_path: Path) -> None:
    export = run("systemd", load(tmp_path), tmp_path)
    api = readback.unit_settings(export.files["edge-api.service"].text)
    assert api["Requires"] == ["edge-db.service", "edge-queue.service"]
    assert api["PartOf"] == ["edge.target", "edge-db.service"]  # restart_on_dependency
    assert api["ExecStop"] == ["api-server --drain"]  # not on this host's PATH: named as is
    assert has(export, "'api'", "program 'api-server' is not on this host's PATH")
    assert has(export, "'api'", "waits for 'db' to start", "After=")
    assert (api["KillSignal"], api["TimeoutStopSec"], api["Restart"]) == (
        ["SIGTERM"],
        ["20"],
        ["no"],
    )
    db = readback.unit_settings(export.files["edge-db.service"].text)
    assert db["ExecStartPost"] == [
        f"/usr/bin/svcorch -f {tmp_path}/out/svcorch-gates.yaml --state-dir {tmp_path}/state"
        " check --wait --timeout 30s db"
    ]
    assert db["TimeoutStartSec"] == ["40"]  # 30s + a 5s attempt + 5s


class NotifyOptions(ProbeOptions):
    type: Literal["notify"] = "notify"


def test_systemd_type_notify_for_a_notify_probe(tmp_path: Path) -> None:
    catalogue = load(tmp_path)
    services: dict[str, Any] = dict(catalogue.services)
    services["db"] = Service.model_validate(
        {**services["db"].model_dump(exclude={"ready"}), "name": "db", "ready": NotifyOptions()}
    )
    export = run("systemd", catalogue.model_copy(update={"services": services}), tmp_path)
    db = readback.unit_settings(export.files["edge-db.service"].text)
    assert db["Type"] == ["notify"] and "ExecStartPost" not in db


def test_supervisord_refuses_what_its_parser_would_cut(tmp_path: Path) -> None:
    text = TEXT.replace("command: api-server\n", "command: api-server --motd 'a ;b'\n")
    with pytest.raises(Exception, match=r"'api': its command holds ' #' or ' ;'"):
        run("supervisord", load(tmp_path, text), tmp_path)
