"""Every crash alerts: kill -9 at varying moments, a hanging notifier beside a good one.

The figures in docs/reliability.md (Alerts) come from
``.venv/bin/pytest tests/reliability/test_crash_alerts.py -s -q``, which prints them.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import time
from functools import partial
from typing import Any

from tests.runtime.conftest import Stack, tcp_service
from tests.runtime.test_events import alerts, healed, recorder
from tests.support import free_port, wait_until

TRIALS = 8
# quick restarts, and a budget no trial spends: each kill must be an `exited`, never `fatal`
QUICK = {"policy": "on-failure", "backoff": "50ms", "max_backoff": "100ms", "max_restarts": 100}
LIMIT = 3.0  # seconds from the kill to the notifier running: the promise of docs/operations.md


def _alert_for(stack: Stack, pid: int) -> dict[str, Any] | None:
    for alert in alerts(stack):
        event = alert["event"]
        if event["event"] == "exited" and event["pid"] == pid:
            return alert
    return None


def test_every_kill_9_healed_by_the_policy_alerts_within_3s(stack: Stack) -> None:
    stack.write(
        {"web": tcp_service(free_port(), restart=QUICK)},
        notify=recorder(stack, damping="0s"),  # every crash on its own, not in a summary
    )
    stack.ok("up")
    rng = random.Random(10)
    latencies = []
    for _ in range(TRIALS):
        pid = stack.records()["web"]["pid"]
        # the trial's variable: the kill lands right after the recovery (the previous alert's
        # command may still be running) or up to 300 ms into the new run
        time.sleep(rng.choice([0.0, rng.uniform(0.0, 0.3)]))
        os.kill(pid, signal.SIGKILL)
        killed = time.time()
        alert = wait_until(partial(_alert_for, stack, pid), 10, f"the alert for {pid}")
        assert isinstance(alert, dict)
        latencies.append(float(alert["got"]) - killed)
        healed(stack, "web", pid)
    print(
        f"\nkill -9 -> alert: {sum(t < LIMIT for t in latencies)}/{TRIALS} within {LIMIT:g} s;"
        f" median {statistics.median(latencies) * 1000:.0f} ms,"
        f" worst {max(latencies) * 1000:.0f} ms"
    )
    assert max(latencies) < LIMIT


def test_a_hanging_notifier_delays_neither_the_restart_nor_the_other_notifier(
    stack: Stack,
) -> None:
    hanging = {"type": "exec", "command": "sleep 60", "shell": True, "timeout": "30s"}
    stack.write(
        {"web": tcp_service(free_port(), restart=QUICK)},
        notify=[hanging, *recorder(stack)],
    )
    stack.ok("up")
    pid = stack.records()["web"]["pid"]
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    healed(stack, "web", pid)
    healed_in = time.time() - killed
    alert = wait_until(lambda: _alert_for(stack, pid), 10, "the good notifier's alert")
    assert isinstance(alert, dict)
    latency = float(alert["got"]) - killed
    print(f"\nwith a hanging notifier: healed in {healed_in:.2f} s, alert after {latency:.2f} s")
    assert latency < LIMIT
    assert healed_in < 2.0
