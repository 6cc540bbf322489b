"""Which services an invocation touches, and in what order: pure functions of the catalogue."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from svcorch.errors import UsageError
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue, Kind


@dataclass(frozen=True)
class Step:
    """One service in a plan: what it is and what it waits for."""

    service: str
    kind: Kind
    probe: str | None
    waits_for: tuple[tuple[str, str], ...]  # (dependency, condition) for up; dependents for down


@dataclass(frozen=True)
class Plan:
    action: str  # "up" or "down"
    generations: tuple[tuple[Step, ...], ...]

    @property
    def order(self) -> list[str]:
        return [step.service for wave in self.generations for step in wave]

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "order": self.order,
            "generations": [[s.service for s in wave] for wave in self.generations],
            "steps": [
                {
                    "service": s.service,
                    "kind": s.kind.value,
                    "probe": s.probe,
                    "waits_for": [{"service": d, "condition": c} for d, c in s.waits_for],
                }
                for wave in self.generations
                for s in wave
            ],
        }


def profile_selection(catalogue: Catalogue, profiles: Sequence[str]) -> list[str]:
    """Services active under ``profiles``: those with no profiles (unless ``autostart:
    false``), plus those matching one."""
    chosen = set(profiles)
    known = {p for service in catalogue.services.values() for p in service.profiles}
    unknown = sorted(chosen - known)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listed = ", ".join(sorted(known)) or "none"
        raise UsageError(
            f"unknown profile {unknown[0]!r}{hint}; profiles in the catalogue: {listed}"
        )
    return [
        name
        for name, service in catalogue.services.items()
        if chosen.intersection(service.profiles) or (not service.profiles and service.autostart)
    ]


def select_up(
    catalogue: Catalogue, graph: ServiceGraph, names: Sequence[str], profiles: Sequence[str]
) -> set[str]:
    """Named services (or the profile's) plus everything they need, whatever its profiles."""
    roots = list(names) if names else profile_selection(catalogue, profiles)
    return graph.select_up(roots)


def select_down(
    catalogue: Catalogue, graph: ServiceGraph, names: Sequence[str], profiles: Sequence[str]
) -> set[str]:
    """Named services plus everything that depends on them; no names: everything."""
    if not names:
        return set(graph.names)
    return graph.select_down(names)


def up_plan(catalogue: Catalogue, graph: ServiceGraph, selected: set[str]) -> Plan:
    """Waves bottom-up; each service with the dependencies it waits for, and how."""
    sub = graph.subgraph(selected)
    return _plan(
        "up",
        catalogue,
        sub.generations(),
        lambda name: tuple((d, sub.condition(d, name)) for d in sub.dependencies(name)),
    )


def down_plan(catalogue: Catalogue, graph: ServiceGraph, selected: set[str]) -> Plan:
    """Waves top-down; each service after the dependents that must stop first."""
    sub = graph.subgraph(selected)
    return _plan(
        "down",
        catalogue,
        sub.stop_generations(),
        lambda name: tuple((d, "stopped") for d in sub.dependents(name)),
    )


def _plan(
    action: str,
    catalogue: Catalogue,
    generations: list[list[str]],
    waits_for: Callable[[str], tuple[tuple[str, str], ...]],
) -> Plan:
    waves = tuple(
        tuple(
            Step(
                service=name,
                kind=catalogue.services[name].kind,
                probe=_probe_name(catalogue, name),
                waits_for=waits_for(name),
            )
            for name in wave
        )
        for wave in generations
    )
    return Plan(action, waves)


def _probe_name(catalogue: Catalogue, name: str) -> str | None:
    ready = catalogue.services[name].ready
    return ready.type if ready is not None else None
