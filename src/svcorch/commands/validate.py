"""`svcorch validate`: beyond the catalogue's own problems, what `up` would refuse to start.

The preflight of `up` (``svcorch.preflight``) over every service the profiles select, with
the environment a daemon started from this shell would give them. Services of this state
directory that run now hold their own ports: those are not reported.
"""

from __future__ import annotations

from collections.abc import Mapping

from svcorch import plan, preflight
from svcorch.catalogue import process_environment
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue, Kind
from svcorch.state import StateError, StateFile, StateLayout


def warnings(
    catalogue: Catalogue,
    graph: ServiceGraph,
    layout: StateLayout,
    profiles: list[str],
    environ: Mapping[str, str],
) -> list[str]:
    selected = plan.select_up(catalogue, graph, [], profiles)
    launches = []
    for name in graph.subgraph(selected).start_order():
        service = catalogue.services[name]
        if service.kind is Kind.EXTERNAL:
            continue
        cwd = catalogue.base_dir / service.cwd if service.cwd else catalogue.base_dir
        env = process_environment(catalogue, service, environ, layout.root)
        launches.append(preflight.Launch(service, cwd, env))
    return preflight.problems(launches, own_groups=_running_groups(layout))


def _running_groups(layout: StateLayout) -> set[int]:
    from svcorch import process

    try:
        records = StateFile(layout.state_file).load()
    except StateError:
        return set()
    return {
        recorded.pgid
        for record in records.values()
        if (recorded := record.process()) is not None and process.is_same_process(recorded)
    }
