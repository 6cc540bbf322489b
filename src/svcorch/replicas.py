"""Replicas: a service with ``replicas: N`` runs as N services ``name#0`` .. ``name#N-1``.

The catalogue keeps what the user declared (one service, ``replicas: N``; replicas 1..N-1
interpolated with their own ``${replica}`` beside it). The runtime works on the *expanded*
catalogue: each replica is a service of its own (its own runtime, process, log, state record
and graph node), an edge to a replicated service becomes one edge to each replica (so a
dependent waits until all are ready), and the catalogue's ``groups`` lets every name a user
types (``worker``) stand for its replicas. ``#`` cannot appear in a declared name, so the
replicas' names never clash with a service's.
"""

from __future__ import annotations

from svcorch.model import Catalogue, Dependency, Service

SEPARATOR = "#"


def replica_name(service: str, index: int) -> str:
    return f"{service}{SEPARATOR}{index}"


def split(name: str) -> tuple[str, int | None]:
    """``worker#1`` -> ``("worker", 1)``; ``web`` -> ``("web", None)``."""
    base, separator, index = name.partition(SEPARATOR)
    if separator and index.isdigit():
        return base, int(index)
    return name, None


def instances(catalogue: Catalogue, name: str) -> list[Service]:
    """The declared service ``name`` as its replicas, in index order (itself if it has one)."""
    service = catalogue.services[name]
    if service.replicas <= 1:
        return [service]
    return [service, *catalogue.replica_services.get(name, [])]


def expand(catalogue: Catalogue) -> Catalogue:
    """The catalogue with each replicated service replaced by its replicas (idempotent)."""
    if catalogue.groups or all(s.replicas <= 1 for s in catalogue.services.values()):
        return catalogue
    groups = {
        name: tuple(replica_name(name, i) for i in range(service.replicas))
        for name, service in catalogue.services.items()
        if service.replicas > 1
    }
    services: dict[str, Service] = {}
    for name in catalogue.services:
        copies = instances(catalogue, name)
        names = groups.get(name, (name,))
        for replica, copy in zip(names, copies, strict=True):
            depends_on = _edges(copy.depends_on, groups)
            services[replica] = copy.model_copy(update={"name": replica, "depends_on": depends_on})
    return catalogue.model_copy(update={"services": services, "groups": groups})


def _edges(
    depends_on: dict[str, Dependency], groups: dict[str, tuple[str, ...]]
) -> dict[str, Dependency]:
    edges: dict[str, Dependency] = {}
    for dependency, edge in depends_on.items():
        for target in groups.get(dependency, (dependency,)):
            edges[target] = edge
    return edges
