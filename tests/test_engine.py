"""The engine's scheduling logic: real service processes, fake probes the test controls.

The fake probe factory decides when each service is "ready", so order, gating, blocking,
restarts and liveness are tested deterministically; the CLI-level tests in tests/runtime/
run the same paths with real TCP probes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import yaml

from svcorch import catalogue as catalogue_module
from svcorch.engine import Engine, Event, Outcome, State
from svcorch.probes.base import ProbeContext, ProbeOptions, ProbeResult
from svcorch.state import StateFile, StateLayout, ensure_state_dir
from tests.support.procs import python_service, service_env

SLEEPER = ["/bin/sleep", "300"]
LIVENESS_PORT = 2  # the fake tells a liveness probe from a readiness probe by its port
FAST = {"period": "20ms", "timeout": "5s"}
TIMEOUT = 10.0


class FakeProbes:
    """A probe factory whose answers the test sets: ``ready[name]`` / ``alive[name]``.

    A probe passes while its flag is True and fails (retryably) otherwise; ``fatal`` names
    services whose readiness probe fails for good. Attempts are counted per service and kind.
    """

    def __init__(self) -> None:
        self.ready: dict[str, bool] = {}
        self.alive: dict[str, bool] = {}
        self.fatal: set[str] = set()
        self.attempts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, options: ProbeOptions, context: ProbeContext) -> FakeProbe:
        kind = "liveness" if getattr(options, "port", None) == LIVENESS_PORT else "ready"
        return FakeProbe(self, context.service, kind)


class FakeProbe:
    def __init__(self, owner: FakeProbes, service: str, kind: str) -> None:
        self.owner = owner
        self.service = service
        self.kind = kind

    def check(self, deadline: float) -> ProbeResult:
        owner = self.owner
        with owner._lock:
            owner.attempts[self.service, self.kind] += 1
        if self.kind == "ready" and self.service in owner.fatal:
            return ProbeResult.failed("refused for good", retryable=False)
        flags = owner.ready if self.kind == "ready" else owner.alive
        if flags.get(self.service, self.kind == "liveness"):
            return ProbeResult.passed(f"{self.kind} ok")
        return ProbeResult.failed(f"{self.kind} not yet", retryable=True)


def ready_probe() -> dict[str, Any]:
    return {"type": "tcp", "port": 1, **FAST}


def liveness_probe(threshold: int = 2) -> dict[str, Any]:
    return {"type": "tcp", "port": LIVENESS_PORT, "failure_threshold": threshold, **FAST}


def service(command: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"command": command or SLEEPER, "ready": ready_probe(), **spec}


class Harness:
    """An engine over a catalogue written from ``services``, with every event recorded."""

    def __init__(self, tmp_path: Path, services: dict[str, Any]) -> None:
        path = tmp_path / "services.yaml"
        path.write_text(yaml.safe_dump({"version": 1, "services": services}))
        self.catalogue = catalogue_module.load(path, environ=service_env())
        self.layout = StateLayout(ensure_state_dir(tmp_path / "state"))
        self.probes = FakeProbes()
        self.events: list[Event] = []
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "use the harness inside `async with`"
        return self._engine

    async def __aenter__(self) -> Harness:
        self._engine = Engine(
            self.catalogue, self.layout, probe_factory=self.probes, environ=service_env()
        )
        self._engine.subscribe(self.events.append)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.engine.down(self.engine.graph.names, timeout=5)
        await self.engine.close()

    def state(self, name: str) -> State:
        return self.engine.runtimes[name].state

    def pid(self, name: str) -> int | None:
        record = self.engine.runtimes[name].record
        return record.pid if record else None

    def first(self, name: str, new: State) -> float:
        """When ``name`` first entered ``new`` (the event's wall-clock time)."""
        return next(e.time for e in self.events if e.service == name and e.new is new)

    def count(self, name: str, new: State) -> int:
        return sum(1 for e in self.events if e.service == name and e.new is new)

    def index(self, name: str, new: State) -> int:
        return next(i for i, e in enumerate(self.events) if e.service == name and e.new is new)

    def last(self, name: str, new: State) -> int:
        return max(i for i, e in enumerate(self.events) if e.service == name and e.new is new)

    def up(self, *names: str, rollback: bool = False) -> asyncio.Task[Outcome]:
        selected = self.engine.graph.select_up(names or self.engine.graph.names)
        return asyncio.get_running_loop().create_task(self.engine.up(selected, rollback=rollback))


async def until(condition: Callable[[], object], message: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` on the loop until it holds; fail the test at ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.005)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), 60)

    asyncio.run(bounded())


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- starting --------------------------------------------------------------------------------


def test_a_dependent_starts_only_after_its_dependency_is_ready(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"db": service(), "web": service(depends_on=["db"])})

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["web"] = True
            up = h.up()
            await until(lambda: h.probes.attempts["db", "ready"] >= 5, "db probed 5 times")
            assert h.state("db") is State.STARTING
            assert h.state("web") is State.WAITING
            assert h.pid("web") is None
            h.probes.ready["db"] = True
            outcome = await up
            assert outcome.ok
            assert set(outcome.done) == {"db", "web"}
            assert h.index("db", State.READY) < h.index("web", State.STARTING)
            await h.engine.flush()
            records = StateFile(h.layout.state_file).load()
            assert records["db"].ready_at is not None
            assert records["web"].started_at is not None
            assert records["db"].ready_at <= records["web"].started_at

    run(scenario)


def test_independent_services_start_in_parallel(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"a": service(), "b": service(), "c": service()})

    async def scenario() -> None:
        async with harness as h:
            up = h.up()
            # nobody is ready, yet all three were spawned: none waits for another
            await until(lambda: all(h.state(n) is State.STARTING for n in "abc"), "three starting")
            assert all(alive(h.pid(n)) for n in "abc")
            for name in "abc":
                h.probes.ready[name] = True
            assert (await up).ok

    run(scenario)


def test_condition_started_releases_the_dependent_before_ready(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {"broker": service(), "worker": service(depends_on={"broker": "started"})},
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["worker"] = True
            up = h.up()
            await until(lambda: h.state("worker") is State.READY, "worker ready")
            assert h.state("broker") is State.STARTING
            h.probes.ready["broker"] = True
            assert (await up).ok

    run(scenario)


def test_a_failed_dependency_blocks_its_dependents_and_fails_the_up(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {
            "db": service(),
            "cache": service(),
            "web": service(depends_on=["db", "cache"]),
            "cron": service(depends_on=["web"]),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.fatal.add("db")
            h.probes.ready["cache"] = True
            outcome = await h.up()
            assert not outcome.ok
            assert [f.service for f in outcome.failed] == ["db"]
            assert "refused for good" in outcome.failed[0].reason
            assert set(outcome.blocked) == {"web", "cron"}
            assert h.pid("web") is None and h.pid("cron") is None
            assert "dependency db is failed" in h.engine.runtimes["web"].detail
            # a failed start leaves no process behind; what did start stays up
            assert not alive(h.pid("db"))
            assert h.state("cache") is State.READY and alive(h.pid("cache"))

    run(scenario)


def test_a_child_that_exits_before_ready_fails_even_with_exit_code_0(tmp_path: Path) -> None:
    script = "import sys; print('booting'); print('BOOT FAILED', flush=True); sys.exit(0)"
    harness = Harness(
        tmp_path,
        {"rabbit": service([sys.executable, "-c", script]), "app": service(depends_on=["rabbit"])},
    )

    async def scenario() -> None:
        async with harness as h:
            outcome = await h.up()
            assert not outcome.ok
            (failure,) = outcome.failed
            assert failure.service == "rabbit"
            assert failure.reason == "exited with code 0 before ready"
            assert "BOOT FAILED" in failure.log_tail
            assert outcome.blocked == ("app",)

    run(scenario)


def test_oneshot_exit_0_releases_completed_dependents(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {
            "migrate": {"command": ["/bin/sh", "-c", "echo migrated"], "oneshot": True},
            "web": service(depends_on={"migrate": "completed"}),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["web"] = True
            outcome = await h.up()
            assert outcome.ok
            assert h.state("migrate") is State.COMPLETED
            assert h.index("migrate", State.COMPLETED) < h.index("web", State.STARTING)
            # a second up leaves the completed oneshot alone
            again = await h.up()
            assert again.ok and again.done == () and set(again.already) == {"migrate", "web"}
            assert h.count("migrate", State.RUNNING) == 1

    run(scenario)


def test_oneshot_nonzero_exit_fails_and_blocks(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {
            "migrate": {"command": ["/bin/sh", "-c", "echo no database; exit 4"], "oneshot": True},
            "web": service(depends_on={"migrate": "completed"}),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            outcome = await h.up()
            assert not outcome.ok
            assert outcome.failed[0].reason == "exited with code 4"
            assert "no database" in outcome.failed[0].log_tail
            assert outcome.blocked == ("web",)

    run(scenario)


def test_rollback_stops_what_this_up_started_in_reverse_order(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {
            "db": service(),
            "web": service(depends_on=["db"]),
            "bad": service(depends_on=["web"]),
            "other": service(),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(db=True, other=True)
            assert (await h.up("other")).ok
            other = h.pid("other")
            h.probes.ready["web"] = True
            h.probes.fatal.add("bad")
            outcome = await h.up("bad", rollback=True)
            assert not outcome.ok
            assert {h.state(n) for n in ("db", "web", "bad")} == {State.STOPPED}
            assert h.index("web", State.STOPPED) < h.index("db", State.STOPPING)
            # what was up before this up stays up
            assert h.state("other") is State.READY and alive(other)

    run(scenario)


def test_two_concurrent_ups_start_each_service_once(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"db": service(), "web": service(depends_on=["db"])})

    async def scenario() -> None:
        async with harness as h:
            first, second = h.up(), h.up()
            await until(lambda: h.state("db") is State.STARTING, "db starting")
            h.probes.ready.update(db=True, web=True)
            one, two = await first, await second
            assert one.ok and two.ok
            assert h.count("db", State.STARTING) == 1
            assert h.count("web", State.STARTING) == 1
            assert set(one.done) | set(two.done) == {"db", "web"}

    run(scenario)


def test_up_on_a_failed_start_with_a_restart_policy_retries_before_failing(
    tmp_path: Path,
) -> None:
    # the first start exits at once, the second stays up: the up waits through the retry
    marker = tmp_path / "second-time"
    flaky = ["/bin/sh", "-c", f"[ -e {marker} ] || {{ touch {marker}; exit 1; }}; exec sleep 300"]
    restart = {"policy": "on-failure", "backoff": "50ms", "max_restarts": 3}
    harness = Harness(
        tmp_path,
        {"flaky": service(flaky, restart=restart), "app": service(depends_on=["flaky"])},
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(app=True)
            up = h.up()
            # the probe passes only once the second process runs
            await until(lambda: h.count("flaky", State.STARTING) == 2, "second start")
            h.probes.ready["flaky"] = True
            outcome = await up
            assert outcome.ok, outcome
            assert h.engine.runtimes["flaky"].restarts == 1
            assert h.state("app") is State.READY

    run(scenario)


# --- supervision -----------------------------------------------------------------------------


def test_restart_with_backoff_then_fatal(tmp_path: Path) -> None:
    crashing = python_service("exit_with", 3, "--after", "0.05")
    restart = {"policy": "on-failure", "backoff": "50ms", "max_backoff": "200ms"}
    harness = Harness(
        tmp_path, {"crashy": service(crashing, restart={**restart, "max_restarts": 2})}
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["crashy"] = True
            first = await h.up()
            assert first.ok  # ready before it crashed
            await until(lambda: h.state("crashy") is State.FATAL, "fatal", timeout=20)
            runtime = h.engine.runtimes["crashy"]
            assert runtime.restarts == 2
            assert h.count("crashy", State.BACKOFF) == 2
            assert "2 restarts within 60s" in runtime.detail
            assert "code 3" in runtime.detail
            backoffs = [e.detail for e in h.events if e.new is State.BACKOFF]
            assert backoffs[0].startswith("restarting in 0.05s")
            assert backoffs[1].startswith("restarting in 0.1s")
            # fatal stays down until the next explicit up, which starts afresh
            status = {row.service: row for row in h.engine.status()}
            assert status["crashy"].state == "fatal" and status["crashy"].pid is None
            again = await h.up()
            assert again.done == ("crashy",)

    run(scenario)


def test_a_liveness_failure_restarts_the_service(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"web": service(liveness=liveness_probe(threshold=2))})

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["web"] = True
            assert (await h.up()).ok
            before = h.pid("web")
            await until(lambda: h.probes.attempts["web", "liveness"] >= 2, "liveness checks")
            h.probes.alive["web"] = False
            await until(lambda: h.state("web") is State.UNREADY, "unready")
            await until(lambda: h.count("web", State.BACKOFF) == 1, "restart")
            h.probes.alive["web"] = True
            await until(lambda: h.count("web", State.READY) == 2, "ready again")
            assert h.pid("web") != before and not alive(before) and alive(h.pid("web"))
            assert h.engine.runtimes["web"].restarts == 1
            stopping = next(e for e in h.events if e.new is State.STOPPING)
            assert stopping.detail == "liveness failed 2 times: liveness not yet"

    run(scenario)


def test_a_restart_cascades_only_to_dependents_that_asked(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {
            "db": service(liveness=liveness_probe(threshold=1)),
            "worker": service(depends_on={"db": {"restart_on_dependency": True}}),
            "report": service(depends_on=["worker"]),
            "web": service(depends_on=["db"]),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(db=True, worker=True, report=True, web=True)
            assert (await h.up()).ok
            pids = {n: h.pid(n) for n in ("db", "worker", "report", "web")}
            h.probes.alive["db"] = False
            await until(lambda: h.count("worker", State.STOPPED) == 1, "worker stopped")
            h.probes.alive["db"] = True
            await until(lambda: h.count("report", State.READY) == 2, "report back")
            assert h.index("report", State.STOPPED) < h.index("worker", State.STOPPING)
            assert h.index("worker", State.STOPPED) < h.index("db", State.BACKOFF)
            # worker started again only after db was ready again, report after worker
            assert h.last("db", State.READY) < h.last("worker", State.STARTING)
            assert h.last("worker", State.READY) < h.last("report", State.STARTING)
            for name in ("db", "worker", "report"):
                assert h.pid(name) != pids[name] and alive(h.pid(name))
            # web did not ask: it kept running, degraded while db was away
            assert h.pid("web") == pids["web"] and h.count("web", State.STOPPING) == 0
            assert h.count("web", State.DEGRADED) == 1
            await until(lambda: h.state("web") is State.READY, "web ready again")

    run(scenario)


def test_an_exit_with_policy_no_is_shown_as_exited_with_its_code(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"job": service(python_service("exit_with", 7, "--after", 0.1))})

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["job"] = True
            assert (await h.up()).ok
            await until(lambda: h.state("job") is State.EXITED, "exited")
            (row,) = h.engine.status()
            assert row.state == "exited(7)" and row.pid is None and row.exit_code == 7

    run(scenario)


# --- stopping --------------------------------------------------------------------------------


def test_down_stops_dependents_first_and_independent_branches_in_parallel(
    tmp_path: Path,
) -> None:
    harness = Harness(
        tmp_path,
        {
            "db": service(),
            "api": service(depends_on=["db"]),
            "jobs": service(depends_on=["db"]),
            "web": service(depends_on=["api"]),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(db=True, api=True, jobs=True, web=True)
            assert (await h.up()).ok
            pids = {n: h.pid(n) for n in ("db", "api", "jobs", "web")}
            outcome = await h.engine.down(h.engine.graph.names)
            assert outcome.ok and set(outcome.done) == set(pids)
            assert h.index("web", State.STOPPED) < h.index("api", State.STOPPING)
            assert h.index("api", State.STOPPED) < h.index("db", State.STOPPING)
            assert h.index("jobs", State.STOPPED) < h.index("db", State.STOPPING)
            # jobs does not wait for the web -> api chain
            assert h.index("jobs", State.STOPPING) < h.index("api", State.STOPPING)
            assert not any(alive(pid) for pid in pids.values())

    run(scenario)


def test_a_term_ignoring_service_is_killed_at_its_stop_timeout(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {"stubborn": service(python_service("ignore_term"), stop={"timeout": "300ms"})},
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["stubborn"] = True
            assert (await h.up()).ok
            log = h.layout.service_log("stubborn")
            await until(lambda: "ready" in log.read_text(), "the handler installed")
            pid = h.pid("stubborn")
            started = time.monotonic()
            await h.engine.down(["stubborn"])
            took = time.monotonic() - started
            assert not alive(pid)
            assert 0.3 <= took < 3
            assert h.engine.runtimes["stubborn"].detail == (
                "killed after 0.3s (did not stop on SIGTERM)"
            )
            assert "ignoring SIGTERM" in log.read_text()

    run(scenario)


def test_down_of_a_service_never_started_is_nothing_to_do(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"db": service()})

    async def scenario() -> None:
        async with harness as h:
            outcome = await h.engine.down(["db"])
            assert outcome.ok and outcome.done == () and outcome.already == ("db",)

    run(scenario)


# --- adoption --------------------------------------------------------------------------------


def test_a_new_engine_adopts_live_services_and_marks_dead_ones_exited(tmp_path: Path) -> None:
    services = {"db": service(), "web": service(depends_on=["db"])}
    first = Harness(tmp_path, services)
    second = Harness(tmp_path, services)
    popens: list[Any] = []

    async def start() -> None:
        engine = Engine(first.catalogue, first.layout, probe_factory=first.probes)
        first.probes.ready.update(db=True, web=True)
        assert (await engine.up(["db", "web"])).ok
        popens.extend(r.popen for r in engine.runtimes.values())
        engine.persist_now()
        # the "daemon" dies here: its tasks end, its children live on

    async def adopt() -> None:
        db, web = (p.pid for p in popens)
        os.kill(web, signal.SIGKILL)
        await until(lambda: not alive(web), "web killed")
        async with second as h:
            assert h.engine.adopt(StateFile(h.layout.state_file).load()) == ["db"]
            await until(lambda: h.state("db") is State.READY, "db adopted as ready")
            assert h.state("web") is State.EXITED
            rows = {row.service: row for row in h.engine.status()}
            assert rows["db"].pid == db and rows["db"].state == "ready"
            assert rows["web"].state == "exited(?)" and rows["web"].pid is None
            outcome = await h.engine.down(h.engine.graph.names)
            assert "db" in outcome.done
            assert not alive(db)

    asyncio.run(start())
    try:
        asyncio.run(adopt())
    finally:
        for popen in popens:  # they were this test process's children: reap them
            if popen.poll() is None:
                popen.kill()
            popen.wait()


def test_a_retried_start_never_shows_its_dependents_a_failure(tmp_path: Path) -> None:
    # the worker asked to restart with db: stopping it must not let the up see db "failed"
    marker = tmp_path / "second-time"
    flaky = ["/bin/sh", "-c", f"[ -e {marker} ] || {{ touch {marker}; exit 1; }}; exec sleep 300"]
    harness = Harness(
        tmp_path,
        {
            "db": service(flaky, restart={"policy": "on-failure", "backoff": "50ms"}),
            "worker": service(depends_on={"db": {"restart_on_dependency": True}}),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["worker"] = True
            up = h.up()
            await until(lambda: h.count("db", State.STARTING) == 2, "second start")
            h.probes.ready["db"] = True
            outcome = await up
            assert outcome.ok, outcome
            assert h.count("db", State.FAILED) == 0
            assert h.count("worker", State.BLOCKED) == 0
            backoff = next(e for e in h.events if e.new is State.BACKOFF)
            assert backoff.detail == "restarting in 0.05s: exited with code 1 before ready"

    run(scenario)


def test_an_up_during_a_down_starts_the_service_again_after_it_stopped(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {"slow": service(python_service("ignore_term"), stop={"timeout": "300ms"})},
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["slow"] = True
            assert (await h.up()).ok
            old = h.pid("slow")
            log = h.layout.service_log("slow")
            await until(lambda: "ready" in log.read_text(), "the handler installed")
            down = asyncio.get_running_loop().create_task(h.engine.down(["slow"]))
            await until(lambda: h.state("slow") is State.STOPPING, "stopping")
            outcome = await h.up()
            await down
            assert outcome.ok and outcome.done == ("slow",)
            assert h.state("slow") is State.READY
            assert not alive(old) and alive(h.pid("slow")) and h.pid("slow") != old
            assert h.index("slow", State.STOPPED) < h.last("slow", State.WAITING)

    run(scenario)


def test_an_up_joining_one_in_progress_reports_what_became_ready(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"db": service()})

    async def scenario() -> None:
        async with harness as h:
            first = h.up()
            await until(lambda: h.state("db") is State.STARTING, "db starting")
            second = h.up()
            await until(lambda: h.probes.attempts["db", "ready"] >= 2, "probed")
            h.probes.ready["db"] = True
            one, two = await first, await second
            assert one.done == ("db",) and one.already == ()
            assert two.done == ("db",) and two.already == ()
            assert h.count("db", State.STARTING) == 1

    run(scenario)


def test_probes_that_hang_do_not_hold_up_the_others(tmp_path: Path) -> None:
    # an attempt against a silent server holds a worker thread until its deadline; "web"
    # sorts after them, so its attempts queue behind theirs unless the pool is big enough
    silent = [f"silent{i}" for i in range(8)]
    harness = Harness(tmp_path, {**{name: service() for name in silent}, "web": service()})

    class Hanging(FakeProbes):
        def __call__(self, options: ProbeOptions, context: ProbeContext) -> FakeProbe:
            probe = super().__call__(options, context)
            if context.service.startswith("silent"):
                probe.check = hang  # type: ignore[method-assign]
            return probe

    def hang(deadline: float) -> ProbeResult:
        time.sleep(1)
        return ProbeResult.failed("no answer", retryable=True)

    harness.probes = Hanging()

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["web"] = True
            up = h.up()
            await until(lambda: h.state("web") is State.READY, "web ready", timeout=0.7)
            up.cancel()

    run(scenario)


def test_a_stop_command_runs_before_the_signal(tmp_path: Path) -> None:
    marker = tmp_path / "asked-to-stop"
    command = f"echo stopping politely; touch {marker}"
    harness = Harness(tmp_path, {"broker": service(stop={"command": command, "timeout": "5s"})})

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["broker"] = True
            assert (await h.up()).ok
            pid = h.pid("broker")
            outcome = await h.engine.down(["broker"])
            assert outcome.done == ("broker",)
            assert marker.exists() and not alive(pid)
            log = h.layout.service_log("broker").read_text().splitlines()
            assert log[-2:] == ["--- svcorch: stop command for broker ---", "stopping politely"]

    run(scenario)


def test_a_down_during_an_up_ends_that_up(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"db": service(), "web": service(depends_on=["db"])})

    async def scenario() -> None:
        async with harness as h:
            up = h.up()
            await until(lambda: h.state("db") is State.STARTING, "db starting")
            stopped = await h.engine.down(["db", "web"])
            assert stopped.done == ("db",) and stopped.already == ("web",)
            outcome = await asyncio.wait_for(up, 5)
            assert not outcome.ok
            assert {f.service: f.reason for f in outcome.failed} == {
                "db": "stopped while starting (a down or restart)",
                "web": "stopped while starting (a down or restart)",
            }
            assert h.state("db") is State.STOPPED and h.state("web") is State.STOPPED

    run(scenario)


def test_a_service_removed_from_the_catalogue_is_stopped_when_it_is_reloaded(
    tmp_path: Path,
) -> None:
    harness = Harness(tmp_path, {"db": service(), "old": service(depends_on=["db"])})
    smaller = tmp_path / "smaller"
    smaller.mkdir()
    reduced = Harness(smaller, {"db": service()}).catalogue

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(db=True, old=True)
            assert (await h.up()).ok
            old, db = h.pid("old"), h.pid("db")
            h.engine.load(reduced)
            assert h.engine.anything_running()
            await until(lambda: not alive(old), "the removed service stopped")
            assert [row.service for row in h.engine.status()] == ["db"]
            assert alive(db)
            stopping = next(e for e in h.events if e.service == "old" and e.new is State.STOPPING)
            assert stopping.detail == "removed from the catalogue"
            await h.engine.down(["db"])
            assert not h.engine.anything_running()

    run(scenario)


def test_a_probe_that_raises_fails_its_service_and_nothing_else(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path, {"buggy": service(), "fine": service(), "app": service(depends_on=["buggy"])}
    )

    class Buggy(FakeProbes):
        def __call__(self, options: ProbeOptions, context: ProbeContext) -> FakeProbe:
            probe = super().__call__(options, context)
            if context.service == "buggy":
                probe.check = explode  # type: ignore[method-assign]
            return probe

    def explode(deadline: float) -> ProbeResult:
        raise RuntimeError("probe plugin bug")

    harness.probes = Buggy()

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["fine"] = True
            outcome = await asyncio.wait_for(h.up(), 10)
            assert [(f.service, f.reason) for f in outcome.failed] == [
                ("buggy", "internal error: RuntimeError: probe plugin bug")
            ]
            assert outcome.blocked == ("app",)
            assert not alive(h.engine.runtimes["buggy"].record.pid)  # type: ignore[union-attr]
            await until(lambda: h.state("fine") is State.READY, "fine ready")

    run(scenario)
