"""Replaying a stack's transitions to check what the engine promised about dependencies.

Independent of the engine's own rules on purpose: the conditions are restated here from
docs/catalogue.md, so a bug in the engine's ``condition_met`` cannot hide itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from svcorch.model import Catalogue, Kind

# a start: the moment a process is spawned (or an external service probed)
START_STATES = frozenset({"starting", "running", "probing"})
DAEMON_LOG_LINE = re.compile(
    r"^(?P<time>\S+ \S+) (?P<level>[A-Z]+) svcorch\.engine\[\d+\]: "
    r"(?P<service>[^:\s]+): (?P<old>[a-z]+) -> (?P<new>[a-z]+)(?: \((?P<detail>.*)\))?$"
)


@dataclass(frozen=True)
class Transition:
    service: str
    old: str
    new: str
    detail: str = ""
    level: str = "INFO"
    time: str = ""


@dataclass(frozen=True)
class Edge:
    dependency: str
    condition: str  # ready, started or completed
    oneshot: bool  # whether the dependency is a oneshot


def transitions_from_daemon_log(text: str) -> list[Transition]:
    """Every transition the daemon logged, in order (one loop writes them, so order is real)."""
    found = []
    for line in text.splitlines():
        match = DAEMON_LOG_LINE.match(line)
        if match:
            found.append(
                Transition(
                    match["service"],
                    match["old"],
                    match["new"],
                    match["detail"] or "",
                    match["level"],
                    match["time"],
                )
            )
    return found


def condition_holds(state: str, edge: Edge) -> bool:
    """docs/catalogue.md's table of conditions, over state names."""
    if edge.oneshot:
        if edge.condition == "started":
            return state in ("running", "completed")
        return state == "completed"
    if edge.condition == "started":
        return state in ("starting", "ready", "unready", "degraded")
    return state in ("ready", "unready")


def starts_while_down(
    transitions: Iterable[Transition], edges: Mapping[str, list[Edge]]
) -> list[str]:
    """Each start of a service at a moment one of its dependencies was not in its condition,
    as a readable line; [] when the promise held throughout."""
    states: dict[str, str] = {}
    broken = []
    for index, event in enumerate(transitions):
        states[event.service] = event.new
        if event.new not in START_STATES or event.detail.startswith("adopted"):
            continue
        for edge in edges.get(event.service, []):
            state = states.get(edge.dependency, "stopped")
            if not condition_holds(state, edge):
                broken.append(
                    f"#{index} {event.time} {event.service} -> {event.new} while "
                    f"{edge.dependency} was {state} (needs {edge.condition})"
                )
    return broken


def edges_of(catalogue: Catalogue) -> dict[str, list[Edge]]:
    """Each service's dependency edges, as the catalogue declares them."""
    return {
        name: [
            Edge(
                dependency,
                edge.condition.value,
                catalogue.services[dependency].kind is Kind.ONESHOT,
            )
            for dependency, edge in service.depends_on.items()
        ]
        for name, service in catalogue.services.items()
    }
