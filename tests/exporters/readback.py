"""Read each export back into the graph it enforces: edges (from, to, condition) and gates.

Each reader looks only at what the target will act on (init containers, depends_on as
`docker-compose config` normalised it, Requires=/After= and Type=, the programs' commands),
never at svcorch's own comments, so an export that loses an edge fails here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Edge = tuple[str, str, str]


@dataclass
class Enforced:
    """What an export makes a target do: edges, and per service the probe type its gate runs."""

    edges: set[Edge] = field(default_factory=set)
    gated: dict[str, str] = field(default_factory=dict)  # service -> probe type in the gates
    inline: dict[str, list[str]] = field(default_factory=dict)  # workload -> oneshots, in order


def expected_edges(graph: dict[str, Any]) -> set[Edge]:
    """`graph --json`'s edges; `ready` on a oneshot means its exit, as `completed` does."""
    kinds = {node["name"]: node["kind"] for node in graph["nodes"]}
    found = set()
    for edge in graph["edges"]:
        condition = edge["condition"]
        if kinds[edge["from"]] == "oneshot" and condition == "ready":
            condition = "completed"
        found.add((edge["from"], edge["to"], condition))
    return found


def probe_types(graph: dict[str, Any]) -> dict[str, str | None]:
    return {n["name"]: (n["probe"] or {}).get("type") for n in graph["nodes"]}


def _check_names(command: list[str]) -> list[str]:
    """The services a `svcorch ... check --wait --timeout T NAME...` waits for."""
    at = command.index("--timeout")
    assert command[at - 2 : at] == ["check", "--wait"], command
    return command[at + 2 :]


def _gates(text: str) -> dict[str, str]:
    document = yaml.safe_load(text)
    return {name: spec["ready"]["type"] for name, spec in document["services"].items()}


# -- Kubernetes -------------------------------------------------------------------------------


def kubernetes(folder: Path) -> tuple[Enforced, list[dict[str, Any]]]:
    objects = [
        o for path in sorted(folder.glob("*.yaml")) for o in yaml.safe_load_all(path.read_text())
    ]
    objects = [o for o in objects if o]
    found = Enforced()
    for config in (o for o in objects if o["kind"] == "ConfigMap"):
        found.gated = _gates(config["data"]["gates.yaml"])
    for workload in (o for o in objects if o["kind"] in ("Deployment", "Job")):
        pod = workload["spec"]["template"]["spec"]
        name = pod["containers"][0]["name"]
        steps = pod.get("initContainers", [])
        found.inline[name] = [
            c["name"].removeprefix("run-") for c in steps if c["name"].startswith("run-")
        ]
        for position, container in enumerate(steps):
            if container["name"].startswith("gate-"):
                owner = container["name"].removeprefix("gate-")
                found.edges |= {(d, owner, "ready") for d in _check_names(container["command"])}
            else:  # run-X: it runs after everything before it in the same pod
                oneshot = container["name"].removeprefix("run-")
                later = [c["name"].split("-", 1)[1] for c in steps[position + 1 :]] + [name]
                found.edges |= {(oneshot, x, "completed") for x in later}
    return found, objects


# -- compose ----------------------------------------------------------------------------------


def compose(config: dict[str, Any], gates_text: str | None) -> Enforced:
    """From `docker-compose config`'s output: compose's own reading of the file."""
    found = Enforced(gated=_gates(gates_text) if gates_text else {})
    services = config["services"]
    for name, spec in services.items():
        if name.startswith("wait-"):
            continue
        for dependency, wanted in (spec.get("depends_on") or {}).items():
            condition = wanted["condition"]
            if dependency.startswith("wait-"):
                waited = _check_names(services[dependency]["entrypoint"])
                found.edges |= {(d, name, "ready") for d in waited}
            elif condition == "service_completed_successfully":
                found.edges.add((dependency, name, "completed"))
            elif condition == "service_healthy":
                assert services[dependency]["healthcheck"]["test"][0] == "CMD"
                found.edges.add((dependency, name, "ready"))
            else:
                assert condition == "service_started", condition
                found.edges.add((dependency, name, "started"))
    return found


# -- systemd ----------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file (keys repeat: Requires=, After=)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def systemd(folder: Path, project: str) -> Enforced:
    found = Enforced(gated=_gates((folder / "svcorch-gates.yaml").read_text()))
    units = {
        path.name.removeprefix(f"{project}-").removesuffix(".service"): unit_settings(
            path.read_text()
        )
        for path in folder.glob(f"{project}-*.service")
    }
    for name, settings in units.items():
        requires = [
            u.removeprefix(f"{project}-").removesuffix(".service")
            for u in settings.get("Requires", [])
        ]
        after = [
            u.removeprefix(f"{project}-").removesuffix(".service")
            for u in settings.get("After", [])
        ]
        assert requires == after, name  # ordered after everything it requires
        for dependency in requires:
            oneshot = units[dependency]["Type"] == ["oneshot"]
            found.edges.add((dependency, name, "completed" if oneshot else "ready"))
        for post in settings.get("ExecStartPost", []):
            assert _check_names(shlex.split(post)) == [name]  # the unit gates on its own probe
    return found


# -- supervisord ------------------------------------------------------------------------------

_BANNER = re.compile(r"echo '--- svcorch: \S+ runs oneshot (\S+) first ---'")


def supervisord_steps(command: str) -> list[tuple[str, Any]]:
    """The wrapper's steps in order: ("gate", [names]) and ("run", oneshot)."""
    words = shlex.split(command)
    if words[:2] != ["/bin/sh", "-c"]:
        return []
    steps: list[tuple[str, Any]] = []
    for part in words[2].split(" || exit 1; "):
        match = _BANNER.search(part)
        if match:
            steps.append(("run", match.group(1)))
        elif " check --wait " in part:
            inner = part.removeprefix("( ").removesuffix(" )")
            argv = shlex.split(inner.split("exec ", 1)[-1])
            steps.append(("gate", _check_names(argv)))
    return steps


def supervisord(programs: dict[str, str], gates_text: str | None) -> Enforced:
    """``programs``: service name -> its command as supervisord reads it."""
    found = Enforced(gated=_gates(gates_text) if gates_text else {})
    for name, command in programs.items():
        steps = supervisord_steps(command)
        found.inline[name] = [value for kind, value in steps if kind == "run"]
        for index, (kind, value) in enumerate(steps):
            nxt = steps[index + 1] if index + 1 < len(steps) else None
            if kind == "gate":
                owner = nxt[1] if nxt is not None and nxt[0] == "run" else name
                found.edges |= {(d, owner, "ready") for d in value}
            else:
                later = [v for k, v in steps[index + 1 :] if k == "run"] + [name]
                found.edges |= {(value, x, "completed") for x in later}
    return found


def closure_ok(enforced: set[Edge], expected: set[Edge]) -> set[Edge]:
    """Expected edges the export does not enforce. A oneshot run in front of a service
    enforces its exit for everything after it in that pod or program, so `enforced` may hold
    more `completed` edges than the graph: those must follow from the graph's own."""
    return {edge for edge in expected if edge not in enforced}


def names_in(warnings: Iterable[str], *names: str) -> bool:
    return any(all(f"'{n}'" in w for n in names) for w in warnings)
