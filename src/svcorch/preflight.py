"""Preflight: what would make a start fail for certain, found before anything starts.

For each service about to start: its working directory exists, its program is found (on the
PATH the service itself will get, relative paths from its working directory) and may be
executed, and the ports it declares are free — naming who holds one. Every problem at once,
from one scan of the listening sockets, in well under a second. ``up`` and ``restart``
refuse to start anything while a problem remains; ``validate`` reports them as warnings.

A ``shell: true`` command is the shell's to resolve: only ``/bin/sh`` is checked.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from svcorch import process
from svcorch.model import Service


@dataclass(frozen=True)
class Launch:
    """One service about to start: where and with which environment."""

    service: Service
    cwd: Path
    env: Mapping[str, str]


def problems(launches: Sequence[Launch], *, own_groups: Collection[int] = ()) -> list[str]:
    """One line per problem, ``service: what``, in the order of ``launches``.

    ``own_groups``: process groups of services that are stopped before these start (a
    restart): the ports they hold now are theirs to give back, not a conflict.
    """
    found: list[str] = []
    claimed: dict[int, list[str]] = {}
    for launch in launches:
        found.extend(f"{launch.service.name}: {p}" for p in _program_problems(launch))
        for port in launch.service.ports:
            claimed.setdefault(port, []).append(launch.service.name)
    busy = process.ports_in_use(claimed, ignore_groups=own_groups)
    found.extend(f"{name}: {held}" for port, held in busy.items() for name in claimed[port])
    return found


def _program_problems(launch: Launch) -> list[str]:
    if not launch.cwd.is_dir():
        return [f"working directory {launch.cwd} does not exist"]
    argv = launch.service.argv()
    if not argv:
        return []  # the catalogue refuses an empty command of a service that runs one
    problem = _path_problem(launch, argv[0]) if os.sep in argv[0] else _search(launch, argv[0])
    return [problem] if problem else []


def _path_problem(launch: Launch, program: str) -> str | None:
    path = launch.cwd / program  # an absolute program stays itself
    if not path.is_file():
        return f"program {program} not found ({path} does not exist)"
    if not os.access(path, os.X_OK):
        return f"program {program} is not executable (chmod +x {path})"
    return None


def _search(launch: Launch, program: str) -> str | None:
    search = _search_path(launch)
    if shutil.which(program, path=search) is None:
        return f"program {program!r} not found on its PATH ({search})"
    return None


def _search_path(launch: Launch) -> str:
    """The PATH the child searches (exec's own rule: PATH, else the default), with relative
    entries taken from the service's working directory, as its exec would."""
    path = launch.env.get("PATH", os.defpath)
    return os.pathsep.join(
        entry if os.path.isabs(entry) else str(launch.cwd / entry)
        for entry in path.split(os.pathsep)
    )
