"""The dependency graph: a networkx DiGraph with edges dependency -> dependent.

Arrows follow start order. Everything about order lives here: validation (cycles), selection
for up (a service plus what it needs) and down (a service plus what needs it), generations
(what may run in parallel), and the critical path for a given set of durations.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import networkx as nx

from svcorch.errors import DependencyCycle, UnknownService

if TYPE_CHECKING:
    from svcorch.model import Catalogue

MAX_CYCLES_REPORTED = 20


class ServiceGraph:
    """An acyclic graph of services. Construction rejects cycles."""

    def __init__(
        self, dag: nx.DiGraph[str], groups: Mapping[str, tuple[str, ...]] | None = None
    ) -> None:
        cycles = find_cycles(dag)
        if cycles:
            raise DependencyCycle(cycles)
        self.dag = dag
        # a replicated service's name -> its replicas' nodes (svcorch.replicas): a name a
        # user types stands for all of them
        self.groups: dict[str, tuple[str, ...]] = dict(groups or {})

    @classmethod
    def from_dependencies(cls, dependencies: Mapping[str, Iterable[str]]) -> ServiceGraph:
        """``{service: [its dependencies]}``; every dependency must be a key too."""
        dag: nx.DiGraph[str] = nx.DiGraph()
        dag.add_nodes_from(dependencies)
        for service, needs in dependencies.items():
            for dependency in needs:
                dag.add_edge(dependency, service)
        return cls(dag)

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue) -> ServiceGraph:
        dag: nx.DiGraph[str] = nx.DiGraph()
        for name, service in catalogue.services.items():
            dag.add_node(name, kind=service.kind.value)
        for name, service in catalogue.services.items():
            for dependency, edge in service.depends_on.items():
                dag.add_edge(dependency, name, condition=edge.condition.value)
        return cls(dag, catalogue.groups)

    # -- questions ---------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self.dag

    def __len__(self) -> int:
        return int(self.dag.number_of_nodes())

    @property
    def names(self) -> list[str]:
        return list(self.dag.nodes)

    def dependencies(self, name: str) -> list[str]:
        return sorted(self.dag.predecessors(name))

    def dependents(self, name: str) -> list[str]:
        return sorted(self.dag.successors(name))

    def condition(self, dependency: str, dependent: str) -> str:
        return str(self.dag.edges[dependency, dependent].get("condition", "ready"))

    def members(self, names: Iterable[str]) -> list[str]:
        """``names`` with each replicated service's name replaced by its replicas' names."""
        found: list[str] = []
        for name in names:
            found.extend(self.groups.get(name, (name,)))
        return found

    def check_known(self, names: Iterable[str]) -> None:
        unknown = [n for n in names if n not in self.dag and n not in self.groups]
        if unknown:
            import difflib

            parts = []
            for name in unknown:
                close = difflib.get_close_matches(name, [*self.groups, *self.names], n=1)
                parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise UnknownService("unknown service " + ", ".join(parts))

    def select_up(self, names: Iterable[str]) -> set[str]:
        """The named services plus everything they transitively depend on."""
        names = list(names)
        self.check_known(names)
        return _reachable(self.members(names), self.dag.predecessors)

    def select_down(self, names: Iterable[str]) -> set[str]:
        """The named services plus everything that transitively depends on them."""
        names = list(names)
        self.check_known(names)
        return _reachable(self.members(names), self.dag.successors)

    def subgraph(self, names: Iterable[str]) -> ServiceGraph:
        return ServiceGraph(nx.DiGraph(self.dag.subgraph(self.members(names))), self.groups)

    def generations(self) -> list[list[str]]:
        """Start order in waves: each wave depends only on earlier ones (sorted for stability)."""
        return [sorted(wave) for wave in nx.topological_generations(self.dag)]

    def start_order(self) -> list[str]:
        return list(itertools.chain.from_iterable(self.generations()))

    def stop_generations(self) -> list[list[str]]:
        """Stop order in waves: dependents before what they depend on."""
        return list(reversed(self.generations()))

    def stop_order(self) -> list[str]:
        return list(itertools.chain.from_iterable(self.stop_generations()))

    def critical_path(self, durations: Mapping[str, float]) -> tuple[list[str], float]:
        """The chain whose summed durations decide when the last service is ready.

        ``durations[name]`` is how long that service took from start to ready (0 if absent).
        """
        finish: dict[str, float] = {}
        via: dict[str, str | None] = {}
        for name in nx.topological_sort(self.dag):
            before = [(finish[p], p) for p in self.dag.predecessors(name)]
            start, parent = max(before, default=(0.0, None))
            finish[name] = start + float(durations.get(name, 0.0))
            via[name] = parent
        if not finish:
            return [], 0.0
        end = max(finish, key=lambda n: (finish[n], n))
        chain: list[str] = []
        cursor: str | None = end
        while cursor is not None:
            chain.append(cursor)
            cursor = via[cursor]
        return list(reversed(chain)), finish[end]


def _reachable(names: list[str], neighbours: Callable[[str], Iterator[str]]) -> set[str]:
    """``names`` and all reachable from them: one walk for all, where an ``nx.ancestors`` per
    name walks shared dependencies again for every name (quadratic for `up` of everything)."""
    found = set(names)
    pending = list(names)
    while pending:
        for neighbour in neighbours(pending.pop()):
            if neighbour not in found:
                found.add(neighbour)
                pending.append(neighbour)
    return found


def find_cycles(dag: nx.DiGraph[str]) -> list[list[str]]:
    """Every simple cycle (up to a cap), each in dependency order from its smallest name.

    Every strongly connected tangle is reported with at least one of its cycles, so a second,
    unrelated cycle is never hidden behind the cap by a first one with many cycles.
    """
    if nx.is_directed_acyclic_graph(dag):
        return []
    tangles = [
        component
        for component in nx.strongly_connected_components(dag)
        if len(component) > 1 or any(dag.has_edge(n, n) for n in component)
    ]
    per_tangle = max(1, MAX_CYCLES_REPORTED // len(tangles))
    found: list[list[str]] = []
    for component in tangles:
        cycles = nx.simple_cycles(dag.subgraph(component))
        for cycle in itertools.islice(cycles, per_tangle):
            start = cycle.index(min(cycle))
            found.append(cycle[start:] + cycle[:start])
    return sorted(found)
