"""/metrics parsed by prometheus_client's own parser; the OpenAPI document against the routes."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from svcorch.web.openapi import document
from svcorch.web.server import ROUTES
from tests.web.conftest import Web


def _samples(text: str) -> dict[tuple[str, str], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, sample.labels.get("service", ""))] = sample.value
    return found


def test_metrics_follow_the_stack(web: Web) -> None:
    web.start()
    samples = _samples(web.get("/metrics").body.decode())
    assert samples[("svcorch_daemon_up", "")] == 0
    assert samples[("svcorch_service_ready", "db")] == 0
    web.post("/api/up")
    answer = web.get("/metrics")
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = _samples(answer.body.decode())
    for service in ("db", "api", "worker"):
        assert samples[("svcorch_service_up", service)] == 1
        assert samples[("svcorch_service_ready", service)] == 1
        assert samples[("svcorch_service_restarts_total", service)] == 0
    # api waits 0.2 s before it listens: its start -> ready time says so
    assert samples[("svcorch_service_start_to_ready_seconds", "api")] >= 0.2
    assert samples[("svcorch_daemon_up", "")] == 1
    assert 5e6 < samples[("svcorch_daemon_resident_memory_bytes", "")] < 200e6
    web.post("/api/services/worker/stop")
    samples = _samples(web.get("/metrics").body.decode())
    assert samples[("svcorch_service_up", "worker")] == 0


def test_the_document_describes_exactly_the_routes() -> None:
    spec = document()
    served = {(route.path, route.method.lower()) for route in ROUTES}
    described = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert served == described


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if "$ref" in value else []
        return own + [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def test_the_document_is_complete() -> None:
    spec = document()
    assert spec["openapi"].startswith("3.1")
    for ref in _refs(spec):
        node: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]  # KeyError: a dangling $ref
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation["summary"], (path, method)
            assert "200" in operation["responses"], (path, method)
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}
            if method == "post":
                assert operation["security"] == [{"bearer": []}]
                assert {"401", "403", "415"} <= set(operation["responses"])
