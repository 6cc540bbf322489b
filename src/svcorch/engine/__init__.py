"""The engine: one state machine per service, driven by events on one asyncio loop.

Only the loop touches service state, so there are no locks around it. Blocking work (probe
attempts, port scans, stop commands) runs in worker threads and comes back as results. A
child's exit is learnt from a pidfd registered with the loop, not from a thread per child.

Every transition is one ``Event``; the same events feed the CLI's live view, the state file,
``analyze`` and the daemon's log. Nothing else invents its own idea of a service's state.

The parts, each one thing to read:

- ``service``: one service's states, runtime record and the rules that read them
- ``events``: the event bus, the one way a state changes
- ``scheduler``: up, down and restart over the graph
- ``supervision``: the readiness gate, restart policy, liveness
- ``processes``: spawning, watching the exit, stopping by deadline
- ``persist``: the state file, written off the loop
- ``core``: the ``Engine`` that puts them together, adoption, status, housekeeping
"""

from __future__ import annotations

from svcorch.engine.core import Engine, registry_probe
from svcorch.engine.events import Event
from svcorch.engine.scheduler import Failure, Outcome
from svcorch.engine.service import (
    HAS_PROCESS,
    IN_PROGRESS,
    SETTLED_BAD,
    SETTLED_OK,
    ServiceStatus,
    State,
    status_of,
)

__all__ = [
    "HAS_PROCESS",
    "IN_PROGRESS",
    "SETTLED_BAD",
    "SETTLED_OK",
    "Engine",
    "Event",
    "Failure",
    "Outcome",
    "ServiceStatus",
    "State",
    "registry_probe",
    "status_of",
]
