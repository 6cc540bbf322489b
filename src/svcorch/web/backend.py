"""What the web API does, in svcorch's terms: daemon requests, state and journal reads.

No HTTP here: every function returns the CLI's ``--json`` shapes or raises svcorch errors,
and ``server`` maps those to HTTP. The catalogue loader, the graph document and the
redactor are handed in by ``cli_web`` (the CLI's own), so the page shows exactly what the
commands print.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from svcorch import control
from svcorch.commands import daemon
from svcorch.errors import DaemonError, UsageError
from svcorch.redaction import NAME_KEYS
from svcorch.state import StateLayout

if TYPE_CHECKING:
    from svcorch.graph import ServiceGraph
    from svcorch.journal import EventRecord
    from svcorch.model import Catalogue
    from svcorch.redaction import Redactor

MAX_LINES = 10_000  # a logs request's tail, at most
DEFAULT_LINES = 100
MAX_TIMEOUT = 604_800.0  # a week, as the control protocol bounds it


@dataclass
class Backend:
    layout: StateLayout
    file: Path
    environ: dict[str, str]
    profiles: list[str]
    loader: Callable[[], tuple[Catalogue, ServiceGraph]]
    redactor: Callable[[], Redactor]
    graph_json: Callable[[Catalogue, ServiceGraph], dict[str, Any]]
    project: str  # the daemon refuses another project's requests (docs/control.md)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> tuple[Catalogue, ServiceGraph]:
        with self._lock:  # the CLI's loader keeps one catalogue per process
            return self.loader()

    def mask(self, data: Any) -> Any:
        """Everything a response holds passes here (the daemon masked its part already)."""
        return self.redactor().data(data, keep=NAME_KEYS)

    def check_known(self, names: list[str]) -> None:
        _, graph = self.load()
        graph.check_known(names)

    def status(self) -> list[dict[str, Any]]:
        from svcorch.commands import status

        rows = status.run(self.layout, [], self.load, self.identity())
        return [dict(row) for row in self.mask(rows)]

    def identity(self) -> dict[str, str]:
        """Who asks, as the CLI says it in every request."""
        return {"project": self.project, "file": str(self.file.absolute()), "cwd": os.getcwd()}

    def graph(self) -> dict[str, Any]:
        catalogue, graph = self.load()
        document: dict[str, Any] = self.mask(self.graph_json(catalogue, graph))
        return document

    def analyze(self) -> dict[str, Any]:
        from svcorch.commands import analyze

        _, graph = self.load()
        result: dict[str, Any] = self.mask(analyze.run(self.layout, graph).to_dict())
        return result

    def daemon_pid(self) -> int | None:
        return daemon.daemon_pid(self.layout)

    def logs(self, service: str, lines: int) -> list[str]:
        from svcorch.commands.logs import tail_lines

        self.check_known([service])
        redactor = self.redactor()
        return [redactor.text(line) for line in tail_lines(self.layout.service_log(service), lines)]

    def follow_logs(
        self, service: str, lines: int, stopped: Callable[[], bool]
    ) -> Iterator[list[str]]:
        """The last ``lines`` lines, then batches of new ones until ``stopped()``."""
        from svcorch.commands import logs

        self.check_known([service])
        redactor = self.redactor()
        first, followers = logs.open_followers(self.layout, [service], lines)
        yield [redactor.text(line) for _, line in first]
        delay = logs.POLL_FIRST
        while not stopped():
            batch = [line for follower in followers for line in follower.read_new()]
            if batch:
                yield [redactor.text(line) for line in batch]
            delay = logs.next_delay(delay, bool(batch))
            time.sleep(delay)

    def follow_events(
        self,
        services: list[str],
        after: int | None,
        emit: Callable[[EventRecord], None],
        stopped: Callable[[], bool],
    ) -> None:
        """History (the last ten, or everything after seq ``after``), then live events,
        across daemon restarts, until ``stopped()`` — ``svcorch events -f``'s follower."""
        from svcorch.commands import events

        since = None
        if after is not None:
            records = events.history(self.layout, None, services)
            later = [r for r in records if r.seq > after]
            if later:
                since = later[0].time
            elif records:
                since = records[-1].time
        redactor = self.redactor()

        def show(record: EventRecord) -> None:
            if after is None or record.seq > after:
                emit(type(record)(**redactor.data(record.to_dict(), keep=NAME_KEYS)))

        events.follow(self.layout, since, services, show, stopped)

    # -- acting ----------------------------------------------------------------------------

    def act(self, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        """up / down / restart as the CLI sends them; the daemon's result, as `--json`
        prints it. A down of everything ends the daemon: wait for it, as the CLI does."""
        message = {
            "op": op,
            **self.identity(),
            "environ": self.environ,
            "profiles": self.profiles,
            **fields,
        }
        for attempt in (1, 2):
            if op == "up":
                daemon.ensure(self.layout, self.file, self.environ, self.project)
            elif not daemon.running(self.layout):
                raise NoDaemon(f"no svcorch daemon is running for {self.layout.root}")
            try:
                result = daemon.request(self.layout, message)
                break
            except daemon.DaemonGone:
                if attempt == 2 or op != "up":
                    raise
        exiting = control.valid_pid(result.pop("daemon_exiting", None))
        if exiting is not None:
            daemon.wait_exit(self.layout, exiting)
        masked: dict[str, Any] = self.mask(result)
        return masked


class NoDaemon(DaemonError):
    """Nothing to restart or stop: no daemon runs (an up starts one)."""


def names_field(body: dict[str, Any], key: str = "services") -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"bad request: `{key}` must be a list of service names")
    return list(value)


def timeout_field(body: dict[str, Any]) -> float | None:
    value = body.get("timeout")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_TIMEOUT
    ):
        raise UsageError(f"bad request: `timeout` must be seconds from 0 to {MAX_TIMEOUT:g}")
    return float(value)


def bool_field(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise UsageError(f"bad request: `{key}` must be true or false")
    return value
