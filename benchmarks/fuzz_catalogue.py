"""Hostile catalogues: trials, passed, worst time and worst memory (docs/reliability.md).

    .venv/bin/python benchmarks/fuzz_catalogue.py [--cases 1000] [--seed N]

Two measurements, each case in the fuzzer's worker subprocess (address space capped at
200 MiB; the peak RSS is the kernel's high-water mark, reset before each case):

- generated: ``--cases`` catalogues drawn by hypothesis from the fuzzer's strategies
  (tests/support/hostile_catalogues.py), half hostile constructs with drawn sizes, half
  mutations of the shipped services.yaml; the same strategies and checks as
  tests/reliability/test_catalogue_fuzz.py;
- at the limits: fixed inputs, the issue's files and the largest input each bound lets
  through (or the first it refuses), to show the worst a file within the limits costs.

A case passes when no command exits 3 or shows a traceback, each command takes under 1 s of
CPU (and 5 s of wall time), the peak RSS stays under 200 MiB and every problem is one
located line. Times are CPU seconds (wall in brackets): on a shared machine wall time says
more about the neighbours than about svcorch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' support package

from tests.support.hostile_catalogues import (
    MIB,
    Case,
    LoaderWorker,
    Outcome,
    hostile_cases,
    mutated_cases,
)

from svcorch import limits, yamlsrc
from svcorch.interpolate import MAX_NESTING


def _yaml(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _bomb(width: int, levels: int) -> bytes:
    lines = ["version: 1", "x-l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"x-l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return _yaml(*lines, "services: {a: {command: sleep 1}}")


def _values(count: int) -> bytes:
    """A catalogue of ``count`` values and keys in all: 11 and a list's items."""
    items = count - 11
    return _yaml(
        "version: 1", "services: {a: {command: sleep 1}}", "x-many: [" + "a," * items + "]"
    )


def _keys(count: int) -> bytes:
    """A catalogue of ``count`` values and keys in all, nearly all unknown keys of a service
    (keys cost more to read than items of a list, and each is a problem)."""
    keys = (count - 9) // 2
    return _yaml(
        "version: 1",
        "services:",
        "  a:",
        "    command: sleep 1",
        *(f"    comand{i}: x" for i in range(keys)),
    )


def _text(characters: int) -> bytes:
    """A 64 KiB string aliased until the document holds ``characters`` of text."""
    chunk = yamlsrc.MAX_SCALAR
    aliases = characters // chunk - 1  # and the anchor itself, and the rest of the file
    return _yaml(
        "version: 1",
        "services: {a: {command: sleep 1}}",
        f'x-s: &s "{"x" * chunk}"',
        "x-many: [" + ", ".join(["*s"] * (aliases - 1)) + "]",
    )


def _limit_cases() -> list[Case]:
    """Inputs at each bound: the largest it lets through, the first it refuses."""
    most = limits.MAX_CATALOGUE_BYTES
    small = _yaml("version: 1", "services: {a: {command: sleep 1}}")
    pad = b"#" * 99 + b"\n"
    deep = "x-deep: " + "[" * 62 + "]" * 62  # 62 lists in the root mapping: 63 levels
    long_value = "x" * yamlsrc.MAX_SCALAR
    dotenv_most = limits.MAX_ENV_FILE_BYTES
    cases = [
        Case("file of 4 MiB (the most)", (("services.yaml", (small + pad * most)[:most]),)),
        Case("file of 4 MiB + 1 byte", (("services.yaml", (small + pad * most)[: most + 1]),)),
        Case(
            f"{yamlsrc.MAX_VALUES:,} values (the most)",
            (("services.yaml", _values(yamlsrc.MAX_VALUES)),),
        ),
        Case(
            f"{yamlsrc.MAX_VALUES + 1:,} values",
            (("services.yaml", _values(yamlsrc.MAX_VALUES + 1)),),
        ),
        Case(
            f"{yamlsrc.MAX_VALUES // 2:,} unknown keys",
            (("services.yaml", _keys(yamlsrc.MAX_VALUES)),),
        ),
        Case("alias bomb 9^9 under x-", (("services.yaml", _bomb(9, 9)),)),
        Case("alias bomb 2^40 under x-", (("services.yaml", _bomb(2, 40)),)),
        Case(
            "4 MiB of text through aliases (nearly the most)",
            (("services.yaml", _text(yamlsrc.MAX_TEXT)),),
        ),
        Case("nesting 63 deep", (("services.yaml", _yaml("version: 1", "services: {}", deep)),)),
        Case(
            "64 KiB command (the most)",
            (
                (
                    "services.yaml",
                    _yaml("version: 1", f"services: {{a: {{command: {long_value}}}}}"),
                ),
            ),
        ),
        Case(
            f"interpolation {MAX_NESTING} deep",
            (
                (
                    "services.yaml",
                    _yaml(
                        "version: 1",
                        'services: {a: {command: "'
                        + "${A:-" * MAX_NESTING
                        + "x"
                        + "}" * MAX_NESTING
                        + '"}}',
                    ),
                ),
            ),
        ),
        Case(
            "interpolation past its 4 MiB budget",
            (
                (
                    "services.yaml",
                    _yaml(
                        "version: 1",
                        f"env: {{LONG: {'x' * 60_000}}}",
                        "services: {a: {command: sleep 1, env: {"
                        + ", ".join(f'V{i}: "${{LONG}}"' for i in range(80))
                        + "}}}",
                    ),
                ),
            ),
        ),
        Case(
            "env_file of 1 MiB (the most)",
            (
                (
                    "services.yaml",
                    _yaml("version: 1", "env_file: big.env", "services: {a: {command: x}}"),
                ),
                ("big.env", (b"A=1\n" + b"# padding\n" * dotenv_most)[:dotenv_most]),
            ),
        ),
        Case(
            "env_file /dev/zero",
            (
                (
                    "services.yaml",
                    _yaml("version: 1", "env_file: /dev/zero", "services: {a: {command: x}}"),
                ),
            ),
        ),
        Case("-f a FIFO", (), target="pipe", fifos=("pipe",)),
        Case("-f /dev/zero", (), target="/dev/zero"),
        *_issue_cases(),
    ]
    return cases


def _issue_cases() -> list[Case]:
    """The other files issue 8 names (its alias bomb, FIFOs and /dev/zero are above)."""

    def service(body: str, *top: str) -> tuple[tuple[str, bytes], ...]:
        return (("services.yaml", _yaml("version: 1", *top, "services:", f"  a: {{{body}}}")),)

    return [
        Case(
            "issue: 1,000-level nesting",
            service("command: x, env: {A: " + "[" * 1000 + "]" * 1000 + "}"),
        ),
        Case("issue: recursive alias", service("command: x", "x-r: &r [*r]")),
        Case(
            "issue: <<: *self",
            (("services.yaml", _yaml("version: 1", "services:", "  a: &s", "    <<: *s")),),
        ),
        Case(
            "issue: 50,000-deep interpolation",
            service('command: "' + "${A:-" * 50_000 + "x" + "}" * 50_000 + '"'),
        ),
        Case("issue: 4,301-digit integer", service("command: x, ports: [" + "9" * 4301 + "]")),
        Case("issue: FIFO as env_file", service("command: x", "env_file: pipe"), fifos=("pipe",)),
        Case("issue: = and NUL in env keys", service('command: x, env: {"A=B": 1, "C\\0D": 2}')),
        Case("issue: NUL in a command", service('command: "sleep\\0 1"')),
        Case(
            "issue: ready.period: 0", service("command: x, ready: {type: tcp, port: 1, period: 0}")
        ),
    ]


def _report(label: str, outcomes: list[Outcome], seconds: float) -> bool:
    passed = [o for o in outcomes if not o.violations()]
    crashed = sum(any(run["code"] == 3 for run in o.runs) for o in outcomes)
    slowest = max(outcomes, key=lambda o: o.cpu)
    largest = max(outcomes, key=lambda o: o.peak_rss)
    refused = sum(bool(o.runs) and o.runs[0]["code"] == 2 for o in outcomes)
    print(
        f"{label}: {len(outcomes)} trials, {len(passed)} passed, {crashed} exit 3;"
        f" {refused} refused, {len(outcomes) - refused} accepted; {seconds:.0f} s in all"
    )
    print(
        f"  worst time {slowest.cpu:.2f} s CPU ({slowest.seconds:.2f} s wall): {slowest.case.kind}"
    )
    print(f"  worst peak RSS {largest.peak_rss / MIB:.0f} MiB: {largest.case.kind}")
    for outcome in outcomes:
        for problem in outcome.violations():
            print(f"  FAILED {outcome.case.kind}: {problem[:300]}")
    return len(passed) == len(outcomes)


def generated(worker: LoaderWorker, cases: int, chosen_seed: int | None) -> list[Outcome]:
    outcomes: list[Outcome] = []
    strategy = st.one_of(hostile_cases(), mutated_cases())

    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        phases=["generate"],  # measure what is drawn; no shrinking of a failure here
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=strategy)
    def one(case: Case) -> None:
        outcomes.append(worker.run(case))

    if chosen_seed is not None:
        one = seed(chosen_seed)(one)
    one()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    ok = True
    with LoaderWorker() as worker:
        if args.cases:
            started = time.perf_counter()
            outcomes = generated(worker, args.cases, args.seed)
            ok &= _report("generated", outcomes, time.perf_counter() - started)
        started = time.perf_counter()
        fixed = [worker.run(case) for case in _limit_cases()]
        ok &= _report("at the limits", fixed, time.perf_counter() - started)
        for outcome in fixed:
            first = outcome.runs[0]["lines"][:1] if outcome.runs else [outcome.lost]
            print(
                f"    {outcome.case.kind}: exit {outcome.runs[0]['code'] if outcome.runs else '?'},"
                f" {outcome.cpu:.2f} s CPU, {outcome.peak_rss / MIB:.0f} MiB"
                + (f" — {first[0][:110]}" if first and first[0] else "")
            )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
