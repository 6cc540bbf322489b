"""The JSON Schema of services.yaml, for editors (``svcorch schema``).

It describes the file as written, before interpolation: the short forms, ``${VAR}`` where a
number is expected, ``x-`` keys, and every registered probe type spelled out.
"""

from __future__ import annotations

from datetime import timedelta
from signal import Signals
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from svcorch.durations import format_duration
from svcorch.model import SERVICE_NAME, SUPPORTED_VERSIONS, Catalogue


class _SchemaGenerator(GenerateJsonSchema):
    """Defaults spelled as users write them: ``30s`` rather than ISO's ``PT30S``, ``TERM``
    rather than 15 (an editor shows them as hints, and ``PT30S`` is not even valid input)."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        if isinstance(dft, Signals):
            return dft.name.removeprefix("SIG")
        return super().encode_default(dft)


# Any value may be written as `${VAR}` and only becomes a number or a boolean once
# interpolated (`port: ${REDIS_PORT:-6379}`, `external: ${BASE_EXTERNAL:-false}`)
INTERPOLATED = {"type": "string", "pattern": r"\$\{?[A-Za-z_]", "description": "${VAR} form"}
_SCALAR_TYPES = ("integer", "number", "boolean")
_ANNOTATIONS = ("title", "description", "default")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of services.yaml, with every registered probe type spelled out.

    It describes the file as written, before interpolation: the short forms (``depends_on: [a]``,
    ``redis: ready``, a flat ``liveness``), ``${VAR}`` where a number is expected, ``x-`` keys.
    """
    from svcorch.probes import registry

    schema = Catalogue.model_json_schema(mode="validation", schema_generator=_SchemaGenerator)
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    variants: list[dict[str, Any]] = []
    for probe_type in registry.all_types():
        sub = probe_type.options.model_json_schema(
            mode="validation", ref_template="#/$defs/{model}", schema_generator=_SchemaGenerator
        )
        defs.update(sub.pop("$defs", {}))
        title = sub.get("title", probe_type.name)
        # `type` has a default in each options model, but it is what selects the model
        sub["required"] = ["type", *(r for r in sub.get("required", []) if r != "type")]
        defs[title] = sub
        variants.append(sub)
    defs["ProbeOptions"] = {
        "title": "Probe",
        "description": "a readiness probe: {type: ..., ...options}",
        "oneOf": [{"$ref": f"#/$defs/{v['title']}"} for v in variants],
    }
    defs["Liveness"] = _liveness_schema(defs["Liveness"], variants)
    service: dict[str, Any] = defs["Service"]["properties"]
    service.pop("name", None)  # the key under `services`, not a key users write
    service["depends_on"] = _depends_on_schema(service["depends_on"])
    properties: dict[str, Any] = schema["properties"]
    for internal in ("path", "dotenv", "replica_services", "groups"):
        properties.pop(internal, None)  # filled in by the loader, not keys users write
    properties["services"]["propertyNames"] = {"pattern": SERVICE_NAME.pattern}
    for env in (properties["env"], service["env"]):
        env["additionalProperties"] = {"type": ["string", "number", "boolean", "null"]}
    schema["patternProperties"] = {"^x-": {}}  # extension keys, for YAML anchors
    schema = dict(_allow_interpolation(schema))
    # read before any interpolation, so never `${VAR}`
    schema["properties"]["version"] = {"title": "Version", "enum": list(SUPPORTED_VERSIONS)}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "svcorch services.yaml"
    return schema


def _liveness_schema(nested: dict[str, Any], variants: list[dict[str, Any]]) -> dict[str, Any]:
    """Users write liveness flat, ``{type: http, url: ..., failure_threshold: 3}``."""
    threshold = nested["properties"]["failure_threshold"]
    flat = [
        {**v, "properties": {**v["properties"], "failure_threshold": threshold}} for v in variants
    ]
    return {
        "title": "Liveness",
        "description": nested.get("description", ""),
        "anyOf": [*flat, {k: v for k, v in nested.items() if k not in _ANNOTATIONS}],
    }


def _depends_on_schema(mapping: dict[str, Any]) -> dict[str, Any]:
    """A list of names, or name -> condition (``redis: ready``), full form, or nothing."""
    return {
        "title": mapping.get("title", "Depends On"),
        "description": "services to wait for: a list of names, or name -> condition",
        "anyOf": [
            {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            {
                "type": "object",
                "additionalProperties": {
                    "anyOf": [
                        {"$ref": "#/$defs/Condition"},
                        {"$ref": "#/$defs/Dependency"},
                        {"type": "null"},
                    ]
                },
            },
        ],
    }


def _allow_interpolation(node: Any) -> Any:
    """Every integer, number and boolean in the schema also accepts a ``${VAR}`` string."""
    if isinstance(node, list):
        return [_allow_interpolation(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {
        key: value if key in ("const", "enum", "default") else _allow_interpolation(value)
        for key, value in node.items()
    }
    if isinstance(node.get("type"), str) and node["type"] in _SCALAR_TYPES:
        outer = {key: node.pop(key) for key in _ANNOTATIONS if key in node}
        return {**outer, "anyOf": [node, INTERPOLATED]}
    return node
