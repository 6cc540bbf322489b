"""The dependency graph: generations, selection, critical path, cycles."""

from __future__ import annotations

import networkx as nx
import pytest

from svcorch.errors import DependencyCycle, UnknownService
from svcorch.graph import MAX_CYCLES_REPORTED, ServiceGraph, find_cycles

# the seed's stack: base layer, migrate, the app on top, beat last
STACK = {
    "mysql": [],
    "redis": [],
    "rabbitmq": [],
    "influxdb": [],
    "migrate": ["mysql", "influxdb"],
    "web": ["migrate", "mysql", "redis", "rabbitmq"],
    "worker": ["migrate", "rabbitmq", "redis"],
    "worker-resource": ["migrate", "rabbitmq", "redis"],
    "beat": ["redis", "rabbitmq", "worker-resource"],
}


@pytest.fixture
def stack() -> ServiceGraph:
    return ServiceGraph.from_dependencies(STACK)


def test_edges_go_from_dependency_to_dependent(stack: ServiceGraph) -> None:
    assert stack.dag.has_edge("mysql", "migrate")
    assert not stack.dag.has_edge("migrate", "mysql")
    assert stack.dependencies("web") == ["migrate", "mysql", "rabbitmq", "redis"]
    assert stack.dependents("migrate") == ["web", "worker", "worker-resource"]
    assert len(stack) == 9
    assert "beat" in stack
    assert "nope" not in stack


def test_generations_are_waves_in_start_order(stack: ServiceGraph) -> None:
    assert stack.generations() == [
        ["influxdb", "mysql", "rabbitmq", "redis"],
        ["migrate"],
        ["web", "worker", "worker-resource"],
        ["beat"],
    ]
    assert stack.start_order()[:4] == ["influxdb", "mysql", "rabbitmq", "redis"]
    assert stack.stop_generations() == list(reversed(stack.generations()))
    assert stack.stop_order()[0] == "beat"


def test_select_up_takes_every_transitive_dependency(stack: ServiceGraph) -> None:
    assert stack.select_up(["beat"]) == {
        "beat",
        "redis",
        "rabbitmq",
        "worker-resource",
        "migrate",
        "mysql",
        "influxdb",
    }
    assert stack.select_up(["redis", "migrate"]) == {"redis", "migrate", "mysql", "influxdb"}
    assert stack.select_up([]) == set()


def test_select_down_takes_every_transitive_dependent(stack: ServiceGraph) -> None:
    assert stack.select_down(["mysql"]) == {
        "mysql",
        "migrate",
        "web",
        "worker",
        "worker-resource",
        "beat",
    }
    assert stack.select_down(["beat"]) == {"beat"}


def test_unknown_names_are_a_usage_error_with_a_suggestion(stack: ServiceGraph) -> None:
    with pytest.raises(UnknownService) as caught:
        stack.select_up(["wrker", "zzz"])
    assert str(caught.value) == "unknown service 'wrker' (did you mean 'worker'?), 'zzz'"
    assert caught.value.exit_code == 2
    with pytest.raises(UnknownService, match="'redsi' \\(did you mean 'redis'\\?\\)"):
        stack.select_down(["redsi"])


def test_subgraph_keeps_edges_inside_the_selection(stack: ServiceGraph) -> None:
    sub = stack.subgraph(stack.select_up(["migrate"]))
    assert sub.generations() == [["influxdb", "mysql"], ["migrate"]]
    assert sorted(sub.dag.edges) == [("influxdb", "migrate"), ("mysql", "migrate")]


def test_critical_path_is_the_chain_that_decides_the_last_ready(stack: ServiceGraph) -> None:
    durations = {
        "mysql": 3.0,
        "influxdb": 1.0,
        "redis": 0.5,
        "rabbitmq": 6.0,
        "migrate": 2.0,
        "worker-resource": 1.5,
        "beat": 0.5,
        "web": 1.0,
    }
    path, total = stack.critical_path(durations)
    # rabbitmq (6) beats mysql+migrate (5) into worker-resource
    assert path == ["rabbitmq", "worker-resource", "beat"]
    assert total == pytest.approx(8.0)


def test_critical_path_edge_cases() -> None:
    assert ServiceGraph.from_dependencies({}).critical_path({}) == ([], 0.0)
    single = ServiceGraph.from_dependencies({"a": []})
    assert single.critical_path({}) == (["a"], 0.0)
    chain = ServiceGraph.from_dependencies({"a": [], "b": ["a"], "c": ["b"]})
    assert chain.critical_path({"a": 1, "c": 2}) == (["a", "b", "c"], 3.0)


def test_conditions_are_read_from_catalogue_edges() -> None:
    dag: nx.DiGraph[str] = nx.DiGraph()
    dag.add_edge("migrate", "web", condition="completed")
    dag.add_edge("db", "web")
    graph = ServiceGraph(dag)
    assert graph.condition("migrate", "web") == "completed"
    assert graph.condition("db", "web") == "ready"


# -- cycles -------------------------------------------------------------------------------------


def test_a_cycle_is_refused_in_dependency_order() -> None:
    with pytest.raises(DependencyCycle) as caught:
        ServiceGraph.from_dependencies(
            {"web": ["worker"], "worker": ["beat"], "beat": ["web"], "db": []}
        )
    # web needs worker, worker needs beat, beat needs web: start order beat -> worker -> web
    assert caught.value.cycles == (("beat", "worker", "web"),)
    assert str(caught.value) == "dependency cycle: beat -> worker -> web -> beat"
    assert caught.value.exit_code == 2


def test_every_cycle_is_listed() -> None:
    with pytest.raises(DependencyCycle) as caught:
        ServiceGraph.from_dependencies(
            {
                "a": ["b"],
                "b": ["a", "c"],
                "c": ["b"],
                "self": ["self"],
                "x": ["z"],
                "y": ["x"],
                "z": ["y"],
                "ok": [],
            }
        )
    assert caught.value.cycles == (
        ("a", "b"),
        ("b", "c"),
        ("self",),
        ("x", "y", "z"),
    )
    assert str(caught.value) == (
        "dependency cycle: a -> b -> a; b -> c -> b; self -> self; x -> y -> z -> x"
    )


def test_a_tangle_with_many_cycles_does_not_hide_another_cycle() -> None:
    # a complete graph on 6 nodes has hundreds of simple cycles, more than the cap
    dag: nx.DiGraph[str] = nx.complete_graph([f"k{i}" for i in range(6)], nx.DiGraph)
    dag.add_edges_from([("zz1", "zz2"), ("zz2", "zz1")])
    cycles = find_cycles(dag)
    assert len(cycles) <= MAX_CYCLES_REPORTED
    assert ["zz1", "zz2"] in cycles
    assert all(len(cycle) >= 2 for cycle in cycles)


def test_an_acyclic_graph_has_no_cycles(stack: ServiceGraph) -> None:
    assert find_cycles(stack.dag) == []
