"""Properties of plans and cycle reports for any dependency graph hypothesis can think of."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcorch import plan
from svcorch.errors import DependencyCycle
from svcorch.graph import MAX_CYCLES_REPORTED, ServiceGraph
from svcorch.model import Catalogue

# modest: the whole file runs in about a second
PROPERTY = settings(max_examples=60, deadline=None)


@dataclass(frozen=True)
class Dag:
    """Services ``order[0..n)`` where a service may only depend on services before it."""

    order: tuple[str, ...]
    dependencies: dict[str, list[str]]

    def edges(self) -> list[tuple[str, str]]:
        return [(d, s) for s, needs in self.dependencies.items() for d in needs]


@st.composite
def dags(draw: st.DrawFn, min_size: int = 1, max_size: int = 12) -> Dag:
    size = draw(st.integers(min_size, max_size))
    # names in a random order, so alphabetical order says nothing about dependency order
    order = tuple(draw(st.permutations([f"svc-{i:02d}" for i in range(size)])))
    dependencies: dict[str, list[str]] = {}
    for index, name in enumerate(order):
        earlier = list(order[:index])
        needs = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        dependencies[name] = needs
    return Dag(order, dependencies)


def catalogue_of(dag: Dag) -> Catalogue:
    services = {
        name: {"command": "true", "depends_on": needs} for name, needs in dag.dependencies.items()
    }
    return Catalogue.model_validate({"version": 1, "services": services})


@PROPERTY
@given(dags(), st.data())
def test_up_puts_dependencies_first_and_down_puts_them_last(dag: Dag, data: st.DataObject) -> None:
    model = catalogue_of(dag)
    graph = ServiceGraph.from_catalogue(model)
    names = data.draw(st.lists(st.sampled_from(dag.order), max_size=3, unique=True))
    up = plan.up_plan(model, graph, plan.select_up(model, graph, names, []))
    down = plan.down_plan(model, graph, plan.select_down(model, graph, names, []))

    up_position = {name: i for i, name in enumerate(up.order)}
    down_position = {name: i for i, name in enumerate(down.order)}
    assert len(up_position) == len(up.order)
    assert len(down_position) == len(down.order)
    for dependency, dependent in dag.edges():
        if dependent in up_position:
            # whatever is started has what it needs started before it
            assert dependency in up_position
            assert up_position[dependency] < up_position[dependent]
        if dependency in down_position:
            # whatever is stopped has what needs it stopped before it
            assert dependent in down_position
            assert down_position[dependent] < down_position[dependency]
    if not names:
        assert set(up.order) == set(dag.order)
        assert set(down.order) == set(dag.order)


@PROPERTY
@given(dags())
def test_generations_are_antichains_and_start_as_early_as_possible(dag: Dag) -> None:
    graph = ServiceGraph.from_dependencies(dag.dependencies)
    waves = graph.generations()
    wave_of = {name: i for i, wave in enumerate(waves) for name in wave}
    assert sorted(wave_of) == sorted(dag.order)
    for wave in waves:
        members = set(wave)
        for name in wave:
            # nothing in a wave waits, directly or not, for anything in the same wave
            assert not nx.descendants(graph.dag, name) & members
    for name, index in wave_of.items():
        needs = dag.dependencies[name]
        # a service starts in the wave right after the last thing it needs
        assert index == (max(wave_of[d] for d in needs) + 1 if needs else 0)
    assert graph.stop_generations() == list(reversed(waves))


@st.composite
def dags_with_a_cycle(draw: st.DrawFn) -> tuple[Dag, list[str]]:
    """A DAG plus a back edge that closes a known path into a cycle.

    The path (in start order) gets its edges; the back edge makes its first service depend on
    its last, so the cycle is ``path[0] -> path[1] -> ... -> path[-1] -> path[0]``.
    """
    dag = draw(dags(min_size=2))
    positions = draw(
        st.lists(st.integers(0, len(dag.order) - 1), min_size=2, max_size=5, unique=True)
    )
    path = [dag.order[i] for i in sorted(positions)]
    dependencies = {name: list(needs) for name, needs in dag.dependencies.items()}
    for dependency, dependent in itertools.pairwise(path):
        if dependency not in dependencies[dependent]:
            dependencies[dependent].append(dependency)
    dependencies[path[0]].append(path[-1])
    return Dag(dag.order, dependencies), path


def _rotated(cycle: list[str]) -> tuple[str, ...]:
    start = cycle.index(min(cycle))
    return tuple(cycle[start:] + cycle[:start])


@PROPERTY
@given(dags_with_a_cycle())
def test_an_injected_cycle_is_always_reported(case: tuple[Dag, list[str]]) -> None:
    dag, path = case
    with pytest.raises(DependencyCycle) as caught:
        ServiceGraph.from_dependencies(dag.dependencies)
    reported = caught.value.cycles
    assert reported
    edges = set(Dag(dag.order, dag.dependencies).edges())
    back_edge = (path[-1], path[0])
    for cycle in reported:
        # a real, simple cycle, listed from its smallest name in dependency (start) order
        assert len(set(cycle)) == len(cycle)
        assert cycle[0] == min(cycle)
        closing = [*cycle, cycle[0]]
        assert all(step in edges for step in itertools.pairwise(closing))
        # the rest of the graph is acyclic, so every cycle goes through the back edge
        assert back_edge in set(itertools.pairwise(closing))
    every_cycle = list(nx.simple_cycles(nx.DiGraph(list(edges))))
    if len(every_cycle) <= MAX_CYCLES_REPORTED:
        assert {_rotated(c) for c in every_cycle} == set(reported)
        assert _rotated(path) in reported
