"""The API's OpenAPI 3.1 document, written by hand (tests/web/test_openapi.py holds it to
``server.ROUTES`` both ways, so a route cannot be added or dropped without it)."""

from __future__ import annotations

from typing import Any

from svcorch import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
}
NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "A service of the catalogue",
    "schema": {"type": "string"},
}
NOT_FOUND = {"404": {"$ref": "#/components/responses/NotFound"}}
UNAVAILABLE = {"503": {"$ref": "#/components/responses/Unavailable"}}
CATALOGUE = {"422": {"$ref": "#/components/responses/BadCatalogue"}}


def _action(summary: str, body: str, with_name: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": _ref(body)}},
        },
        "responses": {
            "200": _json(_ref("Outcome"), "Done: every touched service is where it was asked"),
            "409": _json(_ref("Outcome"), "Done, but not every service made it (CLI exit 1)"),
            "415": {"$ref": "#/components/responses/Unsupported"},
            **ERRORS,
            **NOT_FOUND,
            **CATALOGUE,
            **UNAVAILABLE,
        },
    }
    if with_name:
        operation["parameters"] = [NAME]
    return {"post": operation}


def _read(summary: str, response: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "responses": {"200": response, **ERRORS, **CATALOGUE},
            **extra,
        }
    }


PATHS: dict[str, Any] = {
    "/": _read(
        "The page: live table, graph, timeline and logs",
        {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
    ),
    "/static/{asset}": _read(
        "The page's script and style sheet (shipped in the package)",
        {"description": "An asset", "content": {"text/javascript": {}, "text/css": {}}},
        parameters=[
            {
                "name": "asset",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": ["app.js", "app.css"]},
            }
        ],
    ),
    "/api/status": _read(
        "Every service's row, as `svcorch status --json`",
        _json({"type": "array", "items": _ref("StatusRow")}, "Status rows in start order"),
    ),
    "/api/graph": _read(
        "The dependency graph, as `svcorch graph --json`", _json(_ref("Graph"), "The graph")
    ),
    "/api/analyze": _read(
        "The critical chain of the last up, as `svcorch analyze --json`",
        _json(_ref("Analysis"), "Start -> ready timings"),
    ),
    "/api/events": _read(
        "Server-Sent Events: the journal's records, the last ten (or all after"
        " Last-Event-ID) then live ones, as `svcorch events -f --json`; each event's id is"
        " the record's seq",
        {
            "description": "An event stream; each `data:` is one EventRecord",
            "content": {"text/event-stream": {"schema": _ref("EventRecord")}},
        },
        parameters=[
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "Resume after this seq",
                "schema": {"type": "integer", "minimum": 0},
            },
            {
                "name": "last_event_id",
                "in": "query",
                "required": False,
                "description": "The same, for clients that cannot set the header",
                "schema": {"type": "integer", "minimum": 0},
            },
            {
                "name": "services",
                "in": "query",
                "required": False,
                "description": "Comma-separated service names (default: all)",
                "schema": {"type": "string"},
            },
        ],
    ),
    "/api/services/{name}/logs": _read(
        "The last lines of a service's log; with follow, an event stream of new lines",
        {
            "description": "`{service, lines}`; with follow, an SSE stream of"
            " `event: line` with `{service, line}`",
            "content": {
                "application/json": {"schema": _ref("LogTail")},
                "text/event-stream": {"schema": _ref("LogLine")},
            },
        },
        parameters=[
            NAME,
            {
                "name": "lines",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "maximum": 10000, "default": 100},
            },
            {
                "name": "follow",
                "in": "query",
                "required": False,
                "schema": {"type": "boolean", "default": False},
            },
        ],
    ),
    "/api/services/{name}/restart": _action(
        "Restart a service and its dependents (`svcorch restart NAME`)", "StopBody", True
    ),
    "/api/services/{name}/stop": _action(
        "Stop a service and its dependents (`svcorch down NAME`)", "StopBody", True
    ),
    "/api/up": _action("Start services and their dependencies (`svcorch up`)", "UpBody", False),
    "/api/down": _action("Stop services and their dependents (`svcorch down`)", "DownBody", False),
    "/metrics": _read(
        "Prometheus metrics",
        {"description": "The text exposition format", "content": {"text/plain": {}}},
    ),
    "/openapi.json": _read("This document", _json({"type": "object"}, "OpenAPI 3.1")),
}

NULLABLE_NUMBER = {"type": ["number", "null"]}
SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "status"],
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    },
    "StatusRow": {
        "type": "object",
        "required": ["service", "kind", "state", "restarts"],
        "properties": {
            "service": {"type": "string"},
            "kind": {"type": "string", "enum": ["managed", "oneshot", "external"]},
            "state": {"type": "string"},
            "pid": {"type": ["integer", "null"]},
            "uptime": NULLABLE_NUMBER,
            "restarts": {"type": "integer"},
            "detail": {"type": ["string", "null"]},
            "exit_code": {"type": ["integer", "null"]},
            "started_at": NULLABLE_NUMBER,
            "ready_at": NULLABLE_NUMBER,
        },
    },
    "Graph": {
        "type": "object",
        "required": ["name", "nodes", "edges"],
        "properties": {
            "name": {"type": ["string", "null"]},
            "nodes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "kind"],
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "probe": {"type": ["object", "null"]},
                        "liveness": {"type": ["object", "null"]},
                    },
                },
            },
            "edges": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["from", "to", "condition"],
                    "properties": {
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "condition": {"type": "string"},
                        "restart_on_dependency": {"type": "boolean"},
                    },
                },
            },
        },
    },
    "Analysis": {
        "type": "object",
        "required": ["total", "critical_chain", "durations"],
        "properties": {
            "total": {"type": "number"},
            "critical_chain": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "service": {"type": "string"},
                        "started": {"type": "number"},
                        "ready": {"type": "number"},
                        "took": {"type": "number"},
                    },
                },
            },
            "durations": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    },
    "EventRecord": {
        "type": "object",
        "required": ["seq", "time", "service", "kind", "severity", "old", "new"],
        "properties": {
            "seq": {"type": "integer"},
            "time": {"type": "number"},
            "service": {"type": "string"},
            "kind": {"type": "string"},
            "severity": {"type": "string", "enum": ["info", "warning", "error"]},
            "old": {"type": "string"},
            "new": {"type": "string"},
            "detail": {"type": "string"},
            "pid": {"type": ["integer", "null"]},
        },
    },
    "LogTail": {
        "type": "object",
        "required": ["service", "lines"],
        "properties": {
            "service": {"type": "string"},
            "lines": {"type": "array", "items": {"type": "string"}},
        },
    },
    "LogLine": {
        "type": "object",
        "required": ["service", "line"],
        "properties": {"service": {"type": "string"}, "line": {"type": "string"}},
    },
    "Outcome": {
        "type": "object",
        "description": "As `svcorch up/down/restart --json` print it",
        "required": ["action", "ok"],
        "properties": {
            "action": {"type": "string", "enum": ["up", "down", "restart"]},
            "ok": {"type": "boolean"},
            "done": {"type": "array", "items": {"type": "string"}},
            "already": {"type": "array", "items": {"type": "string"}},
            "failed": {"type": "array", "items": {"type": "object"}},
            "blocked": {"type": "array", "items": {"type": "string"}},
            "pending": {"type": "array", "items": {"type": "string"}},
            "elapsed": {"type": "number"},
        },
    },
    "StopBody": {
        "type": "object",
        "properties": {"timeout": {"type": "number", "minimum": 0, "maximum": 604800}},
    },
    "DownBody": {
        "type": "object",
        "properties": {
            "services": {"type": "array", "items": {"type": "string"}},
            "timeout": {"type": "number", "minimum": 0, "maximum": 604800},
        },
    },
    "UpBody": {
        "type": "object",
        "properties": {
            "services": {"type": "array", "items": {"type": "string"}},
            "rollback": {"type": "boolean"},
            "no_recreate": {"type": "boolean"},
        },
    },
}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "svcorch web",
            "version": __version__,
            "description": "The stack svcorch supervises: status, graph, events, logs,"
            " timings and actions. Reads are open on a loopback bind; any other bind and every"
            " action need `Authorization: Bearer <token>`.",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "BadRequest": _error("A bad request (CLI exit 2)"),
                "Unauthorized": _error("No token, or a wrong one"),
                "Forbidden": _error("A cross-site request, or a foreign Host header"),
                "NotFound": _error("No such service or path"),
                "BadCatalogue": _error("The catalogue is invalid (CLI exit 2)"),
                "Unsupported": _error("An action without Content-Type: application/json"),
                "Unavailable": _error("No daemon runs, or it failed to answer"),
            },
        },
    }
