"""render: secrets masked, dot/mermaid/tree drawings, plan text, and the JSON Schema.

The schema is checked the way an editor uses it: the shipped services.yaml, as written (short
forms, ``${VAR}`` in numbers, ``x-`` keys), must be valid against it, and typos must not.
No JSON Schema library is a dependency, so a small validator for the keywords the schema
uses lives here.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from svcorch import render
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue
from svcorch.plan import down_plan, up_plan
from svcorch.probes import registry

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def stack() -> tuple[Catalogue, ServiceGraph]:
    model = Catalogue.model_validate(
        {
            "version": 1,
            "name": "shop",
            "services": {
                "db": {"external": True, "ready": {"type": "tcp", "port": 5432}},
                "migrate": {"oneshot": True, "command": "migrate", "depends_on": ["db"]},
                "web": {
                    "command": "gunicorn",
                    "ready": {"type": "http", "url": "http://127.0.0.1:8000/healthz"},
                    "depends_on": {"db": "ready", "migrate": "completed"},
                },
            },
        }
    )
    return model, ServiceGraph.from_catalogue(model)


def plain(renderable: Any) -> str:
    console = Console(width=200, no_color=True, highlight=False, soft_wrap=True)
    with console.capture() as captured:
        console.print(renderable, end="")
    return captured.get()


# -- secrets ------------------------------------------------------------------------------------


def test_redact_masks_secret_keys_and_url_passwords_anywhere() -> None:
    data = {
        "env": {
            "MYSQL_PASSWORD": "hunter2",
            "API_TOKEN": "t0k3n",
            "CLIENT_SECRET": "s3cret",
            "EMPTY_PASSWORD": "",
            "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
            "CACHE_URL": "redis://127.0.0.1:6379/0",
            "PLAIN": "password is not a secret here",
        },
        "command": "celery --broker amqp://u:p@ss@h:5672// worker --db redis://:pw@h/0",
        "ready": {"type": "mysql", "password": "pw", "port": 3306},
        "headers": {"Authorization": "Bearer abc", "Accept": "text/plain"},
        "argv": ["--url", "http://admin:admin@localhost/"],
    }
    assert render.redact(data) == {
        "env": {
            "MYSQL_PASSWORD": "***",
            "API_TOKEN": "***",
            "CLIENT_SECRET": "***",
            "EMPTY_PASSWORD": "",
            "BROKER_URL": "amqp://guest:***@127.0.0.1:5672//",
            "CACHE_URL": "redis://127.0.0.1:6379/0",
            "PLAIN": "password is not a secret here",
        },
        "command": "celery --broker amqp://u:***@h:5672// worker --db redis://:***@h/0",
        "ready": {"type": "mysql", "password": "***", "port": 3306},
        "headers": {"Authorization": "***", "Accept": "text/plain"},
        "argv": ["--url", "http://admin:***@localhost/"],
    }


# -- drawings -----------------------------------------------------------------------------------


def test_dot_has_one_node_per_service_and_one_edge_per_dependency(
    stack: tuple[Catalogue, ServiceGraph],
) -> None:
    model, graph = stack
    text = render.dot(model, graph)
    assert text.startswith('digraph "shop" {\n')
    assert text.endswith("}\n")
    nodes = re.findall(r'^  "([a-z]+)" \[label="([^"]*)"(.*)\];$', text, re.MULTILINE)
    assert [(name, label) for name, label, _ in nodes] == [
        ("db", "db\\n[tcp]\\nexternal"),
        ("migrate", "migrate\\n[started]\\noneshot"),
        ("web", "web\\n[http]"),
    ]
    attributes = {name: rest for name, _, rest in nodes}
    assert "shape=cylinder" in attributes["db"]
    assert "dashed" in attributes["migrate"]
    edges = re.findall(r"^  .* -> .*;$", text, re.MULTILINE)
    assert edges == [
        '  "db" -> "migrate";',
        '  "db" -> "web";',
        '  "migrate" -> "web" [label="completed"];',
    ]


def test_dot_quotes_names_that_need_it() -> None:
    model = Catalogue.model_validate(
        {"version": 1, "name": 'my "app"', "services": {"a.b-c": {"command": "x"}}}
    )
    text = render.dot(model, ServiceGraph.from_catalogue(model))
    assert 'digraph "my \\"app\\"" {' in text
    assert '  "a.b-c" [label="a.b-c\\n[started]"];' in text


def test_dot_with_timings_labels_and_colours_each_service(
    stack: tuple[Catalogue, ServiceGraph],
) -> None:
    model, graph = stack
    text = render.dot(model, graph, {"db": 0.5, "web": 2.0})
    assert '"web" [label="web\\n[http]\\n2.00s", fillcolor="#ff8c3c"]' in text
    assert "db\\n[tcp]\\nexternal\\n0.50s" in text


def test_mermaid(stack: tuple[Catalogue, ServiceGraph]) -> None:
    model, graph = stack
    assert render.mermaid(model, graph) == "\n".join(
        [
            "graph TD",
            '    s0[("db<br/>tcp")]',
            '    s1[/"migrate<br/>started"/]',
            '    s2["web<br/>http"]',
            "    s0 --> s1",
            "    s0 --> s2",
            "    s1 -->|completed| s2",
            "",
        ]
    )


def test_tree_shows_each_top_service_with_what_it_needs(
    stack: tuple[Catalogue, ServiceGraph],
) -> None:
    model, graph = stack
    assert plain(render.tree(model, graph)).splitlines() == [
        "shop",
        "└── web  http",
        "    ├── db  tcp  external",
        "    └── migrate  started  oneshot  (waits: completed)",
        "        └── db  tcp  external",
    ]


def test_tree_draws_shared_dependencies_once() -> None:
    # ten layers of three, each service needing the whole layer below: drawn naively, the
    # top would repeat 3**9 paths; drawn once each, it is one line per service and edge
    layers = [[f"l{layer}-{i}" for i in range(3)] for layer in range(10)]
    services: dict[str, Any] = {name: {"command": "x"} for name in layers[0]}
    for below, layer in itertools.pairwise(layers):
        services.update({name: {"command": "x", "depends_on": below} for name in layer})
    model = Catalogue.model_validate({"version": 1, "services": services})
    lines = plain(render.tree(model, ServiceGraph.from_catalogue(model))).splitlines()
    assert len(lines) == 1 + 3 + 9 * 9  # the root, the tops, one line per dependency edge
    # layers 1-8: each service under three dependents, expanded under the first only
    assert sum("(see above)" in line for line in lines) == 8 * 3 * 2
    assert lines[1:4] == ["├── l9-0  started", "│   ├── l8-0  started", "│   │   ├── l7-0  started"]


# -- plans --------------------------------------------------------------------------------------


def test_plan_text(stack: tuple[Catalogue, ServiceGraph]) -> None:
    model, graph = stack
    assert plain(render.plan_text(up_plan(model, graph, set(model.services)))).splitlines() == [
        "start plan: 3 services in 3 waves",
        "wave 1",
        "  db  wait for tcp",
        "wave 2",
        "  migrate  run to completion  after: db ready",
        "wave 3",
        "  web  start, ready by http  after: db ready, migrate completed",
    ]
    assert plain(render.plan_text(down_plan(model, graph, {"web"}))).splitlines() == [
        "stop plan: 1 service in 1 wave",
        "wave 1",
        "  web  stop",
    ]
    assert plain(render.plan_text(down_plan(model, graph, {"db", "migrate"}))).splitlines() == [
        "stop plan: 2 services in 2 waves",
        "wave 1",
        "  migrate  stop",
        "wave 2",
        "  db  leave running (external)  after: migrate",
    ]


# -- the JSON Schema ------------------------------------------------------------------------------

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def schema_errors(value: Any, schema: Any, root: dict[str, Any], where: str = "") -> list[str]:
    """Errors of ``value`` against ``schema`` for the keywords svcorch's schema uses."""
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{where}: not allowed"]
    if "$ref" in schema:
        found = schema_errors(value, root["$defs"][schema["$ref"].split("/")[-1]], root, where)
        if found:
            return found
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, n) for n in names):
            return [f"{where}: {value!r} is not of type {schema['type']}"]
    errors = _scalar_errors(value, schema, where)
    if isinstance(value, list):
        errors += _array_errors(value, schema, root, where)
    if isinstance(value, dict):
        errors += _object_errors(value, schema, root, where)
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            passing = [s for s in schema[keyword] if not schema_errors(value, s, root, where)]
            if not passing or (keyword == "oneOf" and len(passing) > 1):
                errors.append(f"{where}: {len(passing)} of {keyword} match")
    return errors


def _array_errors(
    value: list[Any], schema: dict[str, Any], root: dict[str, Any], where: str
) -> list[str]:
    errors = []
    for index, item in enumerate(value):
        errors += schema_errors(item, schema.get("items", {}), root, f"{where}[{index}]")
    if schema.get("uniqueItems") and len({json.dumps(v) for v in value}) != len(value):
        errors.append(f"{where}: items are not unique")
    return errors


def _scalar_errors(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    errors = []
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if _is_type(value, "number") and value < schema.get("minimum", value):
        errors.append(f"{where}: {value} < {schema['minimum']}")
    if _is_type(value, "number") and value > schema.get("maximum", value):
        errors.append(f"{where}: {value} > {schema['maximum']}")
    return errors


def _object_errors(
    value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], where: str
) -> list[str]:
    errors = [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in value]
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    for key, item in value.items():
        if "propertyNames" in schema:
            errors += schema_errors(key, schema["propertyNames"], root, f"{where}.{key} (name)")
        matched = [s for p, s in patterns.items() if re.search(p, key)]
        if key in properties:
            errors += schema_errors(item, properties[key], root, f"{where}.{key}")
        elif matched:
            for sub in matched:
                errors += schema_errors(item, sub, root, f"{where}.{key}")
        elif "additionalProperties" in schema:
            extra = schema["additionalProperties"]
            if extra is False:
                errors.append(f"{where}: unknown key {key!r}")
            else:
                errors += schema_errors(item, extra, root, f"{where}.{key}")
    return errors


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return render.json_schema()


def valid(data: Any, schema: dict[str, Any]) -> list[str]:
    return schema_errors(data, schema, schema)


def test_the_schema_is_json_with_every_probe_type(schema: dict[str, Any]) -> None:
    assert json.loads(render.json_text(schema)) == schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    variants = schema["$defs"]["ProbeOptions"]["oneOf"]
    types = [schema["$defs"][v["$ref"].removeprefix("#/$defs/")] for v in variants]
    assert [t["properties"]["type"]["const"] for t in types] == registry.names()
    assert {"tcp", "http", "exec", "log", "redis", "amqp", "mysql", "influxdb"} <= set(
        registry.names()
    )
    assert all(t["required"][0] == "type" for t in types)
    for internal in ("path", "dotenv"):
        assert internal not in schema["properties"]
    assert "name" not in schema["$defs"]["Service"]["properties"]


def test_schema_defaults_are_spelled_as_users_write_them(schema: dict[str, Any]) -> None:
    stop = schema["$defs"]["StopSpec"]["properties"]
    assert stop["timeout"]["default"] == "10s"
    assert stop["signal"]["default"] == "TERM"
    assert schema["$defs"]["TcpOptions"]["properties"]["timeout"]["default"] == "1m"


def test_the_shipped_services_yaml_is_valid_as_written(schema: dict[str, Any]) -> None:
    data = yaml.safe_load((REPO / "services.yaml").read_text(encoding="utf-8"))
    assert valid(data, schema) == []


def test_the_short_forms_and_interpolations_are_valid(schema: dict[str, Any]) -> None:
    data = yaml.safe_load(
        """
        version: 1
        x-probe: &probe {type: tcp, port: 1}
        env: {DEBUG: true, PORT: 8000, NAME: x, EMPTY: null}
        services:
          db:
            external: ${USE_SYSTEM_DB:-false}
            ready: {type: tcp, port: "${DB_PORT:-5432}", timeout: 30, period: "${PERIOD:-1s}"}
          migrate:
            oneshot: true
            command: [python, migrate.py]
            depends_on: [db]
          web:
            command: gunicorn
            depends_on: {db: ready, migrate: {condition: completed}, cache: null}
            liveness: {type: http, url: "http://x/", failure_threshold: 3}
            restart: {policy: on-failure, max_restarts: "${RESTARTS:-5}", backoff: 500ms}
            stop: {signal: 15}
            ports: [8000, "${WEB_PORT:-8001}"]
            env: {WORKERS: 4}
          nested-liveness:
            command: x
            liveness: {probe: {type: tcp, port: 1}, failure_threshold: 2}
          cache: {command: x, ready: *probe}
        logs: {max_size: 20MB, backups: 3}
        """
    )
    assert valid(data, schema) == []


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({"version": 1, "servics": {}}, "unknown key 'servics'"),
        ({"version": 2, "services": {}}, "2 is not one of [1]"),
        ({"version": "${V}", "services": {}}, "'${V}' is not one of [1]"),
        ({"version": 1, "services": {"Web": {"command": "x"}}}, "does not match"),
        ({"version": 1, "services": {"a": {"comand": "x"}}}, "unknown key 'comand'"),
        (
            {"version": 1, "services": {"a": {"command": "x", "ready": {"type": "tpc"}}}},
            "services.a.ready: 0 of anyOf match",
        ),
        (
            {"version": 1, "services": {"a": {"command": "x", "ready": {"port": 1}}}},
            "services.a.ready: 0 of anyOf match",
        ),
        (
            {"version": 1, "services": {"a": {"command": "x", "ports": ["http"]}}},
            "0 of anyOf match",
        ),
        (
            {"version": 1, "services": {"a": {"command": "x", "depends_on": {"b": "healthy"}}}},
            "0 of anyOf match",
        ),
        (
            {"version": 1, "services": {"a": {"command": "x", "stop": {"timeout": "soon"}}}},
            "0 of anyOf match",
        ),
    ],
    ids=[
        "top-typo",
        "version",
        "version-interpolated",
        "name",
        "service-typo",
        "probe-type",
        "probe-without-type",
        "port",
        "condition",
        "duration",
    ],
)
def test_the_schema_rejects_typos(schema: dict[str, Any], document: Any, error: str) -> None:
    errors = valid(document, schema)
    assert any(error in e for e in errors), errors


def test_a_journal_line_is_time_severity_service_kind_detail() -> None:
    import time as clock

    from svcorch.render import journal_line

    moment = 1_700_000_000.25
    detail = "restarting in 0.05s: killed by SIGKILL"
    record = {"time": moment, "severity": "warning", "service": "web", "kind": "exited",
              "new": "backoff", "detail": detail}  # fmt: skip
    stamp = clock.strftime("%Y-%m-%d %H:%M:%S", clock.localtime(moment))
    assert journal_line(record, 6).plain == (
        f"{stamp}.250 WARNING  web    exited          {detail}"
    )
    quiet = journal_line({**record, "severity": "info", "kind": "stopped", "detail": ""}, 3)
    assert quiet.plain == f"{stamp}.250 INFO     web stopped"
