"""Dependencies hold at all times: real service processes killed with SIGKILL, fake probes the
test controls (see tests/test_engine.py), and every run's events replayed to check that no
service was ever started while a dependency was not in its condition.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

from svcorch.engine import State
from tests.support.replay import Transition, edges_of, starts_while_down
from tests.test_engine import Harness, alive, liveness_probe, run, service, until

QUICK = {"policy": "always", "backoff": "50ms", "max_backoff": "200ms"}


def kill(harness: Harness, name: str) -> int:
    pid = harness.pid(name)
    assert pid is not None and alive(pid), f"{name} is not running"
    os.kill(pid, signal.SIGKILL)
    return pid


def no_start_while_down(harness: Harness) -> None:
    transitions = [
        Transition(e.service, e.old.value, e.new.value, e.detail) for e in harness.events
    ]
    assert starts_while_down(transitions, edges_of(harness.catalogue)) == []


def after(harness: Harness, index: int, name: str, new: State) -> list[Any]:
    return [e for e in harness.events[index:] if e.service == name and e.new is new]


def test_dependents_are_degraded_while_a_dependency_is_down_and_ready_after(
    tmp_path: Path,
) -> None:
    harness = Harness(
        tmp_path,
        {
            "db": service(restart=QUICK),
            "worker": service(depends_on=["db"]),
            "beat": service(depends_on=["db", "worker"]),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(db=True, worker=True, beat=True)
            assert (await h.up()).ok
            pids = {n: h.pid(n) for n in ("worker", "beat")}
            ready_at = h.engine.runtimes["worker"].ready_at
            h.probes.ready["db"] = False  # its restart will not be ready until we say
            kill(h, "db")
            await until(lambda: h.state("beat") is State.DEGRADED, "beat degraded")
            rows = {row.service: row for row in h.engine.status()}
            assert rows["worker"].state == "degraded"
            assert rows["worker"].detail == "db is down"
            # what stands on a degraded service is degraded too, and says so in one event
            assert rows["beat"].detail == "db is down; worker is degraded"
            assert h.count("beat", State.DEGRADED) == 1
            # the crash and the lost dependency are warnings, with the signal named
            crash = next(e for e in h.events if e.service == "db" and e.new is State.BACKOFF)
            assert crash.detail == "restarting in 0.05s: killed by SIGKILL"
            assert crash.level == logging.WARNING and crash.to_dict()["level"] == "warning"
            degraded = next(e for e in h.events if e.new is State.DEGRADED)
            assert degraded.level == logging.WARNING
            # the cause comes before its effects
            assert h.index("db", State.BACKOFF) < h.index("worker", State.DEGRADED)
            h.probes.ready["db"] = True
            await until(lambda: h.state("beat") is State.READY, "beat ready again")
            assert h.state("worker") is State.READY
            assert h.engine.runtimes["worker"].detail == "db ready again"
            assert h.engine.runtimes["beat"].detail == "db, worker ready again"
            # they kept running throughout, ready since their start (analyze reads ready_at)
            assert {n: h.pid(n) for n in ("worker", "beat")} == pids
            assert h.engine.runtimes["worker"].ready_at == ready_at
            assert all(alive(pid) for pid in pids.values())
            no_start_while_down(h)

    run(scenario)


def test_a_crash_while_a_dependency_is_down_waits_for_it_and_spends_no_budget(
    tmp_path: Path,
) -> None:
    harness = Harness(
        tmp_path,
        {
            "broker": service(restart=QUICK),
            # one restart allowed: a crash that counted would leave none for later
            "worker": service(depends_on=["broker"], restart={**QUICK, "max_restarts": 1}),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(broker=True, worker=True)
            assert (await h.up()).ok
            h.probes.ready["broker"] = False
            kill(h, "broker")
            await until(lambda: h.state("worker") is State.DEGRADED, "worker degraded")
            mark = len(h.events)
            kill(h, "worker")
            await until(lambda: h.state("worker") is State.WAITING, "worker waiting")
            waiting = h.engine.runtimes["worker"]
            assert waiting.detail == "for broker ready (killed by SIGKILL)"
            (why,) = after(h, mark, "worker", State.WAITING)
            assert why.level == logging.WARNING  # its only word of the crash: a warning
            # the broker's restarts keep failing their probe: the worker stays unstarted
            await until(lambda: h.probes.attempts["broker", "ready"] >= 20, "broker probed")
            assert h.state("worker") is State.WAITING and h.pid("worker") is not None
            assert not alive(h.pid("worker"))
            assert after(h, mark, "worker", State.STARTING) == []
            assert after(h, mark, "worker", State.BACKOFF) == []
            h.probes.ready["broker"] = True
            await until(lambda: h.state("worker") is State.READY, "worker ready")
            assert h.last("broker", State.READY) < h.last("worker", State.STARTING)
            assert len(waiting.restart_times) == 0 and waiting.restarts == 1
            # its budget is whole: a crash of its own now is restarted, not fatal
            kill(h, "worker")
            await until(lambda: h.count("worker", State.READY) == 3, "worker back again")
            assert h.count("worker", State.FATAL) == 0
            no_start_while_down(h)

    run(scenario)


def test_a_backoff_that_ends_while_a_dependency_is_down_waits_for_it(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {
            "broker": service(restart={**QUICK, "backoff": "300ms"}),
            "worker": service(depends_on=["broker"], restart={**QUICK, "backoff": "50ms"}),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(broker=True, worker=True)
            assert (await h.up()).ok
            kill(h, "worker")  # its own crash first: a counted restart with backoff
            await until(lambda: h.state("worker") is State.BACKOFF, "worker backing off")
            h.probes.ready["broker"] = False
            kill(h, "broker")
            await until(lambda: h.state("worker") is State.WAITING, "worker waiting")
            assert h.engine.runtimes["worker"].detail == "for broker ready"
            await until(lambda: h.probes.attempts["broker", "ready"] >= 10, "broker probed")
            assert h.state("worker") is State.WAITING
            h.probes.ready["broker"] = True
            await until(lambda: h.state("worker") is State.READY, "worker ready")
            assert h.engine.runtimes["worker"].restarts == 1
            no_start_while_down(h)

    run(scenario)


def test_a_start_under_way_when_its_dependency_dies_is_stopped_and_waits(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"db": service(restart=QUICK), "web": service(depends_on=["db"])})

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["db"] = True
            up = h.up()
            await until(lambda: h.state("web") is State.STARTING, "web starting")
            first = h.pid("web")
            h.probes.ready["db"] = False
            kill(h, "db")
            await until(lambda: h.state("web") is State.WAITING, "web waiting")
            assert not alive(first)
            stopping = next(e for e in h.events if e.service == "web" and e.new is State.STOPPING)
            assert stopping.detail == "db is down"
            assert h.engine.runtimes["web"].detail == (
                "for db ready (start interrupted: db is down)"
            )
            await until(lambda: h.probes.attempts["db", "ready"] >= 10, "db probed")
            assert h.state("web") is State.WAITING
            h.probes.ready.update(db=True, web=True)
            outcome = await up
            assert outcome.ok, outcome
            assert h.state("web") is State.READY and alive(h.pid("web"))
            assert len(h.engine.runtimes["web"].restart_times) == 0  # no budget spent
            no_start_while_down(h)

    run(scenario)


def test_restart_on_dependency_stops_top_down_and_starts_bottom_up_after_a_crash(
    tmp_path: Path,
) -> None:
    harness = Harness(
        tmp_path,
        {
            "db": service(restart=QUICK),
            "worker": service(depends_on={"db": {"restart_on_dependency": True}}),
            "report": service(depends_on=["worker"]),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(db=True, worker=True, report=True)
            assert (await h.up()).ok
            old = {n: h.pid(n) for n in ("worker", "report")}
            h.probes.ready["db"] = False
            kill(h, "db")
            await until(lambda: h.state("report") is State.WAITING, "report waiting")
            await until(lambda: h.state("worker") is State.WAITING, "worker waiting")
            assert not alive(old["worker"]) and not alive(old["report"])
            assert h.index("report", State.STOPPED) < h.index("worker", State.STOPPING)
            stopping = next(
                e for e in h.events if e.service == "worker" and e.new is State.STOPPING
            )
            assert stopping.detail == "db is down (restart_on_dependency)"
            await until(lambda: h.probes.attempts["db", "ready"] >= 10, "db probed")
            assert h.state("worker") is State.WAITING and h.state("report") is State.WAITING
            h.probes.ready["db"] = True
            await until(lambda: h.state("report") is State.READY, "report back")
            assert h.last("db", State.READY) < h.last("worker", State.STARTING)
            assert h.last("worker", State.READY) < h.last("report", State.STARTING)
            no_start_while_down(h)

    run(scenario)


def test_paused_dependents_wait_through_a_fatal_dependency_and_return_with_it(
    tmp_path: Path,
) -> None:
    harness = Harness(
        tmp_path,
        {
            "db": service(restart={**QUICK, "max_restarts": 1}),
            "worker": service(depends_on={"db": {"restart_on_dependency": True}}),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(db=True, worker=True)
            assert (await h.up()).ok
            h.probes.fatal.add("db")  # its restart fails for good: db becomes failed
            kill(h, "db")
            await until(lambda: h.state("db") is State.FAILED, "db failed")
            await until(lambda: h.state("worker") is State.WAITING, "worker waiting")
            # waiting, not blocked: an up of db alone brings the worker back too
            h.probes.fatal.discard("db")
            assert (await h.up("db")).ok
            await until(lambda: h.state("worker") is State.READY, "worker back")
            no_start_while_down(h)

    run(scenario)


def test_liveness_is_not_held_against_a_degraded_service(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {
            "db": service(restart=QUICK),
            "web": service(depends_on=["db"], liveness=liveness_probe(threshold=2)),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(db=True, web=True)
            assert (await h.up()).ok
            web = h.pid("web")
            h.probes.ready["db"] = False
            kill(h, "db")
            await until(lambda: h.state("web") is State.DEGRADED, "web degraded")
            h.probes.alive["web"] = False  # its health check fails because db is away
            checked = h.probes.attempts["web", "liveness"]
            await until(lambda: h.probes.attempts["db", "ready"] >= 30, "db probed")
            assert h.state("web") is State.DEGRADED and h.pid("web") == web
            assert h.probes.attempts["web", "liveness"] <= checked + 1
            h.probes.alive["web"] = True
            h.probes.ready["db"] = True
            await until(lambda: h.state("web") is State.READY, "web ready again")
            assert h.pid("web") == web and alive(web)
            assert h.count("web", State.STOPPING) == 0 and h.count("web", State.UNREADY) == 0

    run(scenario)


def test_a_process_killed_by_a_signal_is_shown_with_its_signal(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"job": service()})

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["job"] = True
            assert (await h.up()).ok
            kill(h, "job")
            await until(lambda: h.state("job") is State.EXITED, "exited")
            (row,) = h.engine.status()
            assert row.state == "exited(SIGKILL)" and row.exit_code == -9
            assert row.detail == "killed by SIGKILL"
            exited = h.events[-1]
            assert exited.new is State.EXITED and exited.level == logging.WARNING

    run(scenario)


def test_restarts_loop_rather_than_nest(tmp_path: Path) -> None:
    # each restart used to await the next from inside the last: a long-lived service would
    # grow its coroutine chain by one link per restart until Python's recursion limit
    harness = Harness(tmp_path, {"crashy": service(restart={**QUICK, "max_restarts": 50})})

    def chain(task: asyncio.Task[None] | None) -> int:
        assert task is not None
        depth, coroutine = 0, task.get_coro()
        while coroutine is not None:
            depth += 1
            coroutine = getattr(coroutine, "cr_await", None)
        return depth

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["crashy"] = True
            assert (await h.up()).ok
            depths = []
            for round_ in range(1, 5):
                kill(h, "crashy")
                await until(lambda r=round_: h.count("crashy", State.READY) == r + 1, "back")
                depths.append(chain(h.engine.runtimes["crashy"].task))
            assert len(set(depths)) == 1, depths

    run(scenario)


def test_on_failure_restarts_a_death_by_signal_but_not_an_exit_0(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {
            "killed": service(restart={"policy": "on-failure", "backoff": "50ms"}),
            "done": service(
                ["/bin/sh", "-c", "sleep 0.3; exit 0"],
                restart={"policy": "on-failure", "backoff": "50ms"},
            ),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(killed=True, done=True)
            assert (await h.up()).ok
            kill(h, "killed")
            await until(lambda: h.count("killed", State.READY) == 2, "killed back")
            await until(lambda: h.state("done") is State.EXITED, "done exited")
            rows = {row.service: row for row in h.engine.status()}
            assert rows["done"].state == "exited(0)" and rows["done"].restarts == 0

    run(scenario)


def test_a_wrapper_that_passes_its_childs_status_on_shows_the_signal(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    wrapper = ["/bin/sh", "-c", f'sleep 300 & echo $! > {pidfile}; wait "$!"; exit $?']
    harness = Harness(tmp_path, {"wrapped": service(wrapper)})

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["wrapped"] = True
            assert (await h.up()).ok
            await until(lambda: pidfile.exists() and pidfile.read_text().strip(), "child pid")
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
            await until(lambda: h.state("wrapped") is State.EXITED, "exited")
            (row,) = h.engine.status()
            assert row.state == "exited(137)"
            assert row.detail == "exited with code 137 (128 + SIGKILL)"

    run(scenario)


def test_a_failing_liveness_probe_is_one_event_per_change_not_one_per_attempt(
    tmp_path: Path,
) -> None:
    harness = Harness(tmp_path, {"web": service(liveness=liveness_probe(threshold=4))})

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready["web"] = True
            assert (await h.up()).ok
            h.probes.alive["web"] = False
            await until(lambda: h.count("web", State.BACKOFF) == 1, "restart")
            unready = [e for e in h.events if e.new is State.UNREADY]
            assert [e.detail for e in unready] == [
                "liveness failed: liveness not yet (restart after 4 in a row)"
            ]
            stopping = next(e for e in h.events if e.new is State.STOPPING)
            assert stopping.detail == "liveness failed 4 times: liveness not yet"
            assert stopping.level == logging.WARNING

    run(scenario)


def test_an_explicit_restart_while_a_dependency_is_down_waits_for_it(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path, {"db": service(restart=QUICK), "worker": service(depends_on=["db"])}
    )

    async def scenario() -> None:
        async with harness as h:
            h.probes.ready.update(db=True, worker=True)
            assert (await h.up()).ok
            h.probes.ready["db"] = False
            kill(h, "db")
            await until(lambda: h.state("worker") is State.DEGRADED, "worker degraded")
            restart = asyncio.get_running_loop().create_task(h.engine.restart(["worker"]))
            await until(lambda: h.state("worker") is State.WAITING, "worker waiting")
            assert h.engine.runtimes["worker"].detail == "for db ready"
            await until(lambda: h.probes.attempts["db", "ready"] >= 10, "db probed")
            assert h.state("worker") is State.WAITING and not restart.done()
            h.probes.ready["db"] = True
            outcome = await restart
            assert outcome.ok and outcome.action == "restart"
            assert h.last("db", State.READY) < h.last("worker", State.STARTING)
            no_start_while_down(h)

    run(scenario)


def test_giving_up_is_an_error_and_a_blocked_start_a_warning(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path,
        {
            "db": service(["/bin/sh", "-c", "exit 3"], restart={**QUICK, "max_restarts": 1}),
            "web": service(depends_on=["db"]),
        },
    )

    async def scenario() -> None:
        async with harness as h:
            outcome = await h.up()
            assert not outcome.ok and outcome.blocked == ("web",)
            levels = {(e.service, e.new): e.to_dict()["level"] for e in h.events}
            assert levels["db", State.BACKOFF] == "warning"
            assert levels["db", State.FATAL] == "error"
            assert levels["web", State.BLOCKED] == "warning"
            assert levels["db", State.STARTING] == "info"

    run(scenario)
