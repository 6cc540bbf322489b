"""Soak the shipped stack: events POSTed to the demo's web while services are killed -9.

    .venv/bin/python benchmarks/soak.py [--events 3000] [--rate 30] [--worker-every 10]
        [--broker-at 45] [--web-child-at 70] [--write docs/reliability.md]

The repository's services.yaml runs on free ports in a fresh state dir (as in the e2e tests).
The load POSTs ``--events`` events at ``--rate`` per second, each with an id of its own, and
sends again (same id) whatever did not get a 202. Meanwhile the ``worker`` is killed -9 every
``--worker-every`` seconds, the RabbitMQ node (beam.smp) at ``--broker-at``, and one of
gunicorn's workers at ``--web-child-at``; each kill waits until the previous one's service is
ready again. Then it waits for everything to be ready and every accepted event to be stored,
and reports: accepted / lost / duplicated (by id, in MySQL), tasks run twice by a worker (and
stored once), recovery time per killed service (kill -9 to ready: min / median / max), starts
made while a dependency was down (daemon.log replayed against the catalogue), the daemon's
RSS before and after, and its log's size. ``tests/reliability/test_soak.py`` is the bounded
version CI runs; the logic is shared (tests/support/soak.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.soak import Plan, Report, shipped_stack, soak  # noqa: E402


def kills(args: argparse.Namespace, duration: float) -> tuple[tuple[float, str], ...]:
    planned = [(args.broker_at, "rabbitmq"), (args.web_child_at, "web-child")]
    if args.worker_every > 0:
        at = args.worker_every
        while at < duration:
            planned.append((at, "worker"))
            at += args.worker_every
    return tuple(sorted(planned))


def table(report: Report) -> str:
    summary = report.summary()
    rows = [
        "| accepted (202) | stored once | lost | duplicated | run twice by a worker, stored once |",
        "|---|---|---|---|---|",
        f"| {summary['accepted']} | {summary['stored_once']} | {summary['lost']} "
        f"| {summary['duplicated']} | {summary['redelivered']} |",
        "",
        "| killed (kill -9) | kills | recovery min | median | max |",
        "|---|---|---|---|---|",
    ]
    names = {
        "worker": "`worker` (celery)",
        "rabbitmq": "`rabbitmq` (beam.smp)",
        "web-child": "a gunicorn worker of `web`",
    }
    for service, figures in summary["recovery_seconds"].items():
        rows.append(
            f"| {names.get(service, service)} | {figures['kills']} | {figures['min']:.2f} s "
            f"| {figures['median']:.2f} s | {figures['max']:.2f} s |"
        )
    rss = summary["daemon_rss_mib"]
    daemon_log = summary["daemon_log"]
    retried = ", ".join(f"{n} after {why}" for why, n in summary["retried"].items()) or "none"
    rows += [
        "",
        f"- starts while a dependency was not in its condition: {summary['starts_while_down']}",
        f"- daemon RSS: {rss['before']} MiB before the load, {rss['after']} MiB after",
        f"- attempts the client sent again (same id): {retried}",
        f"- daemon.log: {daemon_log['lines']} lines, {daemon_log['warnings']} transitions at "
        f"WARNING or above, {daemon_log['tracebacks']} tracebacks (client libraries' records)",
        f"- whole run (cold up to settled): {summary['elapsed_seconds']} s",
    ]
    return "\n".join(rows)


def write(path: Path, command: str, text: str) -> None:
    start, end = "<!-- soak:start -->", "<!-- soak:end -->"
    when = f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)"
    block = f"{start}\n`{command}` {when}:\n\n{text}\n{end}"
    content = path.read_text() if path.exists() else ""
    if start in content and end in content:
        content = content[: content.index(start)] + block + content[content.index(end) + len(end) :]
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    path.write_text(content)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--worker-every", type=float, default=10.0)
    parser.add_argument("--broker-at", type=float, default=45.0)
    parser.add_argument("--web-child-at", type=float, default=70.0)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--write", type=Path, help="put the figures into this markdown file")
    args = parser.parse_args()
    plan = Plan(events=args.events, rate=args.rate, kills=kills(args, args.events / args.rate))
    with shipped_stack() as stack:
        report = soak(stack, plan, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report.summary(), indent=2))
    else:
        print(table(report))
    for problem in report.starts_while_down + report.failed + report.lost:
        print(f"problem: {problem}", file=sys.stderr)
    if args.write:
        arguments = " ".join(sys.argv[1:]).replace(f"--write {args.write}", "").strip()
        write(args.write, f"python benchmarks/soak.py {arguments}".rstrip(), table(report))
    healthy = not (report.lost or report.duplicated or report.starts_while_down or report.failed)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
