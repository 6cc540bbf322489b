"""Built-in probe types plus the ``svcorch.probes`` entry-point group.

Built-ins are listed by module path so that looking up ``tcp`` never imports ``pika``; each
module defines ``PROBE_TYPE`` and imports its client library only inside ``check``.
Plugins are scanned only when a name is not built in (or when every type is listed).
"""

from __future__ import annotations

import importlib
from functools import cache

from svcorch.errors import ProbeConfigError
from svcorch.probes.base import ProbeType

ENTRY_POINT_GROUP = "svcorch.probes"

BUILTIN: dict[str, str] = {
    "tcp": "svcorch.probes.tcp",
    "http": "svcorch.probes.http",
    "exec": "svcorch.probes.exec",
    "log": "svcorch.probes.log",
    "redis": "svcorch.probes.redis",
    "amqp": "svcorch.probes.amqp",
    "mysql": "svcorch.probes.mysql",
    "influxdb": "svcorch.probes.influxdb",
    "notify": "svcorch.probes.notify",
}


@cache
def _builtin(name: str) -> ProbeType:
    module = importlib.import_module(BUILTIN[name])
    probe_type: ProbeType = module.PROBE_TYPE
    return probe_type


@cache
def _plugins() -> dict[str, ProbeType]:
    from importlib.metadata import entry_points

    found: dict[str, ProbeType] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN:
            continue  # a plugin may add types, never replace a built-in
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken plugin must not break every catalogue
            raise ProbeConfigError(
                f"probe plugin {entry.name!r} ({entry.value}) failed to load: {exc}"
            ) from exc
        if not isinstance(loaded, ProbeType):
            raise ProbeConfigError(
                f"probe plugin {entry.name!r} ({entry.value}) is not a svcorch ProbeType"
            )
        found[entry.name] = loaded
    return found


def get(name: str) -> ProbeType | None:
    """The probe type called ``name``, or None when neither built in nor installed."""
    if name in BUILTIN:
        return _builtin(name)
    return _plugins().get(name)


def names() -> list[str]:
    """Every known type name: built-ins first, then plugins, for messages and the schema."""
    return [*BUILTIN, *sorted(_plugins())]


def all_types() -> list[ProbeType]:
    types = [_builtin(name) for name in BUILTIN]
    return [*types, *(_plugins()[name] for name in sorted(_plugins()))]
