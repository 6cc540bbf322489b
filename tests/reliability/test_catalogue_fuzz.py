"""No catalogue can crash, hang or exhaust svcorch (issue 8, point 2; docs/reliability.md).

A hypothesis-driven fuzzer: 1,000 generated bad catalogues (hostile constructs with drawn sizes,
and mutations of the shipped services.yaml), each loaded in a subprocess whose address space is
capped at 200 MiB, each held to: no exit 3, no traceback, under 1 s of CPU (and 5 s of wall
time) per command, under 200 MiB of peak RSS, and one located line per problem. Then the
hostile files the issue names, through the installed ``svcorch`` command, every catalogue
command on them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcorch.limits import MAX_CATALOGUE_BYTES
from tests.support.cli import assert_clean, run_svcorch
from tests.support.hostile_catalogues import (
    MEMORY_LIMIT,
    TIME_LIMIT,
    Case,
    LoaderWorker,
    Outcome,
    hostile_cases,
    mutated_cases,
)

HOSTILE_EXAMPLES = 500
MUTATED_EXAMPLES = 500


def fuzz(strategy: st.SearchStrategy[Case], examples: int) -> list[Outcome]:
    """Run ``examples`` cases drawn from ``strategy`` through one worker; fail on the first
    that breaks a promise (hypothesis then shrinks it to the smallest such case)."""
    outcomes: list[Outcome] = []
    with LoaderWorker() as worker:

        @settings(
            max_examples=examples,
            # the same cases every run: CI judges the code, not the luck of the draw; new
            # ground is explored by `benchmarks/fuzz_catalogue.py --seed N`
            derandomize=True,
            deadline=None,  # time is judged per command, in CPU, by the worker
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(case=strategy)
        def one(case: Case) -> None:
            outcome = worker.run(case)
            outcomes.append(outcome)
            problems = outcome.violations()
            assert not problems, "\n".join(problems)

        one()
    return outcomes


def assert_measured(outcomes: list[Outcome], examples: int) -> None:
    """The run did what it claims: every case ran and was measured."""
    assert len(outcomes) >= examples
    assert all(outcome.runs for outcome in outcomes)
    assert max(o.peak_rss for o in outcomes) < MEMORY_LIMIT
    assert max(o.cpu for o in outcomes) < TIME_LIMIT
    # a load that refused nothing would prove nothing: most cases are refused, with exit 2
    refused = sum(o.runs[0]["code"] == 2 for o in outcomes)
    assert refused > examples // 2, f"only {refused} of {len(outcomes)} cases were refused"


def test_hostile_constructs_are_refused_within_bounds() -> None:
    outcomes = fuzz(hostile_cases(), HOSTILE_EXAMPLES)
    assert_measured(outcomes, HOSTILE_EXAMPLES)
    kinds = {o.case.kind.split(" ")[0] for o in outcomes}
    assert len(kinds) > 20, kinds  # the families were all drawn from, not one over and over


def test_mutations_of_the_shipped_catalogue_are_refused_within_bounds() -> None:
    outcomes = fuzz(mutated_cases(), MUTATED_EXAMPLES)
    assert_measured(outcomes, MUTATED_EXAMPLES)
    # some mutations leave the file valid: those went through config, graph and up --dry-run
    assert any(len(o.runs) > 1 for o in outcomes)


# -- the files of the issue, through the installed command ------------------------------------


def _bomb(folder: Path) -> str:
    lines = ["version: 1", 'x-l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        lines.append(f"x-l{level}: &l{level} [" + ",".join([f"*l{level - 1}"] * 9) + "]")
    lines.append("services: {a: {command: sleep 1}}")
    return _write(folder, "\n".join(lines) + "\n")


def _write(folder: Path, text: str, name: str = "services.yaml") -> str:
    (folder / name).write_text(text, encoding="utf-8")
    return name


def _service(body: str, *top: str) -> Callable[[Path], str]:
    return lambda folder: _write(
        folder, "\n".join(["version: 1", *top, "services:", f"  a: {{{body}}}"]) + "\n"
    )


def _fifo(folder: Path) -> str:
    os.mkfifo(folder / "pipe")
    return "pipe"


def _fifo_env(folder: Path) -> str:
    os.mkfifo(folder / "pipe")
    return _service("command: sleep 1", "env_file: pipe")(folder)


def _too_large(folder: Path) -> str:
    text = "version: 1\nservices: {a: {command: sleep 1}}\n"
    padding = "#" * 99 + "\n"
    return _write(folder, text + padding * (MAX_CATALOGUE_BYTES // 100))


HOSTILE_FILES: dict[str, tuple[Callable[[Path], str], str]] = {
    "billion laughs under x-": (
        _bomb,
        "services.yaml:7:16: alias *l4 expands the document to more than 150,000 values and"
        " keys (an alias bomb?)",
    ),
    "1,000-level nesting": (
        _service("command: sleep 1, env: {A: " + "[" * 1000 + "]" * 1000 + "}"),
        "services.yaml:3:94: mappings and lists nested more than 64 deep; svcorch reads at most"
        " 64 levels",
    ),
    "recursive alias": (
        _service("command: sleep 1", "x-r: &r [*r]"),
        "services.yaml:2:10: invalid YAML: alias *r is used inside its own anchor &r"
        " (a recursive alias)",
    ),
    "<<: *self": (
        lambda folder: _write(folder, "version: 1\nservices:\n  a: &s\n    <<: *s\n"),
        "services.yaml:4:9: invalid YAML: alias *s is used inside its own anchor &s"
        " (a recursive alias)",
    ),
    "50,000-deep interpolation": (
        _service('command: "' + "${A:-" * 50_000 + "x" + "}" * 50_000 + '"'),
        "services.yaml:3:16: a value of 300,001 characters; svcorch reads at most 65,536 in one"
        " value",
    ),
    "10,000-deep interpolation": (
        _service('command: "' + "${A:-" * 10_000 + "x" + "}" * 10_000 + '"'),
        "services.yaml:3:16: service 'a': command: braces nested more than 32 deep in"
        " '${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${'...",
    ),
    "4,301-digit integer": (
        _service("command: sleep 1, ports: [" + "9" * 4301 + "]"),
        "services.yaml:3:33: invalid YAML: an integer of 4,301 digits; svcorch reads at most 4,300",
    ),
    "env_file: /dev/zero": (
        _service("command: sleep 1", "env_file: /dev/zero"),
        "services.yaml:2:11: env_file '/dev/zero': is a character device, not a regular file",
    ),
    "a FIFO as -f": (_fifo, "pipe: is a named pipe (FIFO), not a regular file"),
    "a FIFO as env_file": (
        _fifo_env,
        "services.yaml:2:11: env_file 'pipe': is a named pipe (FIFO), not a regular file",
    ),
    "/dev/zero as -f": (
        lambda _: "/dev/zero",
        "/dev/zero: is a character device, not a regular file",
    ),
    "a directory as -f": (lambda _: ".", ".: is a directory, not a file"),
    "a file over 4 MiB": (
        _too_large,
        "services.yaml: is larger than 4 MiB, the most svcorch reads",
    ),
    "= in an env key": (
        _service('command: sleep 1, env: {"A=B": 1}'),
        "services.yaml:3:31: service 'a': env: variable name 'A=B' contains '=', which the"
        " environment cannot hold",
    ),
    "NUL in an env key": (
        _service('command: sleep 1, env: {"A\\0B": 1}'),
        "services.yaml:3:31: service 'a': env: variable name 'A\\x00B' contains a NUL character"
        " (\\0), which no argument, path or variable can hold",
    ),
    "NUL in a command": (
        _service('command: "sleep\\0 1"'),
        "services.yaml:3:16: service 'a': command: the value contains a NUL character (\\0),"
        " which no argument, path or variable can hold",
    ),
    "ready.period: 0": (
        _service("command: sleep 1, ready: {type: tcp, port: 1, period: 0}"),
        "services.yaml:3:61: service 'a': ready.period: must be at least 10ms, got 0s (a shorter"
        " pause would keep svcorch busy in a loop)",
    ),
}
# every catalogue command, not only validate, on the two files that took the old loader down
# for good (the rest share the same load; each run of the command costs half a second of CPU)
EVERY_COMMAND = ("billion laughs under x-", "a FIFO as -f")
COMMANDS = (("validate",), ("config",), ("graph", "--dot"), ("up", "--dry-run"), ("check",))


@pytest.mark.parametrize(
    ("name", "command"),
    [(name, ("validate",)) for name in HOSTILE_FILES]
    + [(name, command) for name in EVERY_COMMAND for command in COMMANDS[1:]],
    ids=lambda value: value if isinstance(value, str) else " ".join(value),
)
def test_the_issues_files_get_one_located_line_and_exit_2(
    name: str, command: tuple[str, ...], tmp_path: Path
) -> None:
    make, expected = HOSTILE_FILES[name]
    target = make(tmp_path)
    result = run_svcorch("-f", target, *command, cwd=tmp_path, timeout=30)
    assert_clean(result)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [expected]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_fifo, "svcorch: pipe: is a named pipe (FIFO), not a regular file"),
        (lambda _: "/dev/zero", "svcorch: /dev/zero: is a character device, not a regular file"),
        (
            lambda folder: (
                (folder / "bad.conf").write_bytes(b"\xff\xfe[program:x]\n") and "bad.conf"
            ),
            "svcorch: bad.conf: not UTF-8 text (byte 0)",
        ),
    ],
    ids=["fifo", "dev-zero", "not-utf8"],
)
def test_import_supervisor_reads_only_a_regular_text_file(
    make: Callable[[Path], str], expected: str, tmp_path: Path
) -> None:
    result = run_svcorch("import-supervisor", make(tmp_path), cwd=tmp_path, timeout=30)
    assert_clean(result)
    assert (result.returncode, result.stderr.splitlines()) == (2, [expected])
