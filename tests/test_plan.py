"""Plans: which services an invocation touches and in what order, profiles included."""

from __future__ import annotations

from typing import Any

import pytest

from svcorch import plan
from svcorch.errors import UnknownService, UsageError
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue, Kind

TCP = {"type": "tcp", "port": 1}


def catalogue(services: dict[str, dict[str, Any]]) -> tuple[Catalogue, ServiceGraph]:
    for spec in services.values():
        if not spec.get("external"):
            spec.setdefault("command", "true")
    model = Catalogue.model_validate({"version": 1, "services": services})
    return model, ServiceGraph.from_catalogue(model)


@pytest.fixture
def stack() -> tuple[Catalogue, ServiceGraph]:
    return catalogue(
        {
            "db": {"external": True, "ready": TCP},
            "cache": {"ready": TCP},
            "migrate": {"oneshot": True, "depends_on": ["db"]},
            "web": {
                "ready": {"type": "tcp", "port": 8000},
                "depends_on": {"db": "ready", "migrate": "completed", "cache": "started"},
            },
            "worker": {"depends_on": ["cache", "migrate"], "profiles": ["workers"]},
            "flower": {"depends_on": ["worker"], "profiles": ["debug"]},
        }
    )


def test_up_plan_steps_say_what_each_service_waits_for(
    stack: tuple[Catalogue, ServiceGraph],
) -> None:
    model, graph = stack
    up = plan.up_plan(model, graph, plan.select_up(model, graph, ["web"], []))
    assert up.order == ["cache", "db", "migrate", "web"]
    assert [[s.service for s in wave] for wave in up.generations] == [
        ["cache", "db"],
        ["migrate"],
        ["web"],
    ]
    steps = {s.service: s for wave in up.generations for s in wave}
    assert steps["db"].kind is Kind.EXTERNAL
    assert steps["migrate"].kind is Kind.ONESHOT
    assert steps["migrate"].probe is None
    assert steps["web"].probe == "tcp"
    assert steps["web"].waits_for == (
        ("cache", "started"),
        ("db", "ready"),
        ("migrate", "completed"),
    )


def test_up_plan_json_shape(stack: tuple[Catalogue, ServiceGraph]) -> None:
    model, graph = stack
    data = plan.up_plan(model, graph, {"db", "migrate"}).to_json()
    assert data == {
        "action": "up",
        "order": ["db", "migrate"],
        "generations": [["db"], ["migrate"]],
        "steps": [
            {"service": "db", "kind": "external", "probe": "tcp", "waits_for": []},
            {
                "service": "migrate",
                "kind": "oneshot",
                "probe": None,
                "waits_for": [{"service": "db", "condition": "ready"}],
            },
        ],
    }


def test_down_plan_stops_dependents_first(stack: tuple[Catalogue, ServiceGraph]) -> None:
    model, graph = stack
    down = plan.down_plan(model, graph, plan.select_down(model, graph, ["cache"], []))
    assert [[s.service for s in wave] for wave in down.generations] == [
        ["flower"],
        ["web", "worker"],
        ["cache"],
    ]
    steps = {s.service: s for wave in down.generations for s in wave}
    assert steps["cache"].waits_for == (("web", "stopped"), ("worker", "stopped"))
    assert down.to_json()["action"] == "down"


def test_down_without_names_is_everything_whatever_the_profiles(
    stack: tuple[Catalogue, ServiceGraph],
) -> None:
    model, graph = stack
    assert plan.select_down(model, graph, [], []) == set(model.services)


def test_profiles_follow_compose(stack: tuple[Catalogue, ServiceGraph]) -> None:
    model, graph = stack
    # no profile: only services without profiles
    assert plan.select_up(model, graph, [], []) == {"db", "cache", "migrate", "web"}
    # a profile adds its services, and their dependencies come whatever their own profiles
    assert plan.select_up(model, graph, [], ["workers"]) == {
        "db",
        "cache",
        "migrate",
        "web",
        "worker",
    }
    assert plan.select_up(model, graph, [], ["debug"]) == {
        "db",
        "cache",
        "migrate",
        "web",
        "worker",
        "flower",
    }
    assert plan.select_up(model, graph, [], ["workers", "debug"]) == set(model.services)
    # a service named on the command line is started even if its profile is not selected
    assert plan.select_up(model, graph, ["flower"], []) == {
        "flower",
        "worker",
        "cache",
        "migrate",
        "db",
    }
    # a profile no service has is a typo, not an empty selection
    with pytest.raises(UsageError, match="unknown profile 'debgu' \\(did you mean 'debug'\\?\\)"):
        plan.profile_selection(model, ["debgu"])


def test_unknown_names(stack: tuple[Catalogue, ServiceGraph]) -> None:
    model, graph = stack
    with pytest.raises(UnknownService, match="did you mean 'worker'"):
        plan.select_up(model, graph, ["workr"], [])
    with pytest.raises(UnknownService, match="did you mean 'cache'"):
        plan.select_down(model, graph, ["cach"], [])


def test_an_empty_selection_is_an_empty_plan(stack: tuple[Catalogue, ServiceGraph]) -> None:
    model, graph = stack
    empty = plan.up_plan(model, graph, set())
    assert empty.order == []
    assert empty.to_json() == {"action": "up", "order": [], "generations": [], "steps": []}
