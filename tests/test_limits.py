"""Every bound of docs/catalogue.md "Limits", at its edge: the most it lets through, and the
first it refuses, with the message the docs quote. Numbers are written out, not taken from the
constants, so changing a bound fails here until the docs say the new one."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from svcorch import supervisor, yamlsrc
from svcorch.catalogue import load
from svcorch.errors import CatalogueError

T = TypeVar("T")
MIB = 1024 * 1024
SMALL = "version: 1\nservices: {a: {command: sleep 1}}\n"


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # problems name the file as given: keep it short
    return tmp_path


def write(text: str | bytes, name: str = "services.yaml") -> str:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    Path(name).write_bytes(data)
    return name


def problems(target: str = "services.yaml", environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(CatalogueError) as caught:
        within(lambda: load(target, environ=environ or {}))
    return [str(p) for p in caught.value.problems]


def within(call: Callable[[], T], seconds: float = 30.0) -> T:
    """``call()``, failing (not hanging the suite) if it blocks, as a FIFO read would."""
    outcome: list[T | BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed back to the test's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds:g}s: it blocked"
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def service(body: str, *top: str) -> str:
    return write("\n".join(["version: 1", *top, "services:", f"  a: {{{body}}}"]) + "\n")


# -- files -----------------------------------------------------------------------------------


def test_a_catalogue_of_4_mib_is_read_and_one_byte_more_is_refused() -> None:
    def padded(size: int) -> str:
        return SMALL + "#" * (size - len(SMALL) - 1) + "\n"  # one comment line

    write(padded(4 * MIB))
    assert os.path.getsize("services.yaml") == 4 * MIB
    assert within(lambda: load("services.yaml", environ={})).services["a"]
    write(padded(4 * MIB + 1))
    assert problems() == ["services.yaml: is larger than 4 MiB, the most svcorch reads"]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: os.mkfifo("pipe") or "pipe", "pipe: is a named pipe (FIFO), not a regular file"),
        (lambda: "/dev/zero", "/dev/zero: is a character device, not a regular file"),
        (lambda: ".", ".: is a directory, not a file"),
        (
            lambda: os.symlink("/dev/zero", "link") or "link",
            "link: is a character device, not a regular file",
        ),
    ],
    ids=["fifo", "dev-zero", "directory", "link-to-dev-zero"],
)
def test_only_a_regular_file_is_read_as_the_catalogue(
    make: Callable[[], str], expected: str
) -> None:
    assert problems(make()) == [expected]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda: os.mkfifo("vars.env") or "vars.env",
            "env_file 'vars.env': is a named pipe (FIFO), not a regular file",
        ),
        (lambda: "/dev/zero", "env_file '/dev/zero': is a character device, not a regular file"),
        (lambda: "/", "env_file '/': is a directory, not a file"),
    ],
    ids=["fifo", "dev-zero", "directory"],
)
def test_only_a_regular_file_is_read_as_an_env_file(make: Callable[[], str], expected: str) -> None:
    service("command: sleep 1", f"env_file: {make()}")
    assert problems() == [f"services.yaml:2:11: {expected}"]


def test_an_env_file_of_1_mib_is_read_and_one_byte_more_is_refused() -> None:
    head = "A=1\n"
    write(head + "#" * (MIB - len(head) - 1) + "\n", "vars.env")
    service("command: sleep 1", "env_file: vars.env")
    assert load("services.yaml", environ={}).dotenv == {"A": "1"}
    write(head + "#" * (MIB - len(head)) + "\n", "vars.env")
    assert problems() == [
        "services.yaml:2:11: env_file 'vars.env': is larger than 1 MiB, the most svcorch reads"
    ]


def test_the_daemon_never_waits_on_a_fifo_when_it_checks_for_changes() -> None:
    os.mkfifo("pipe")
    stamp = within(lambda: supervisor._stamp(Path("pipe")))
    assert stamp == ("pipe", "")


# -- the YAML --------------------------------------------------------------------------------


def nested(levels: int) -> str:
    """A catalogue whose deepest value is ``levels`` mappings and lists down (the root is 1)."""
    lists = levels - 1
    return "version: 1\nservices: {}\nx-deep: " + "[" * lists + "]" * lists + "\n"


def test_64_levels_of_nesting_are_read_and_65_are_refused() -> None:
    assert yamlsrc.load(nested(64), "services.yaml").problems == []
    write(nested(65))
    assert problems() == [
        "services.yaml:3:72: mappings and lists nested more than 64 deep; svcorch reads at most"
        " 64 levels"
    ]


def values(count: int) -> str:
    """``count`` values and keys in all: the root, two keys, two values and a list's items."""
    return "a: b\nc: [" + "x," * (count - 5) + "]\n"


def test_150_000_values_are_read_and_one_more_is_refused() -> None:
    assert yamlsrc.load(values(150_000), "s.yaml").problems == []
    assert [str(p) for p in yamlsrc.load(values(150_001), "s.yaml").problems] == [
        "s.yaml:2:299995: the document holds more than 150,000 values and keys; svcorch reads"
        " at most that"
    ]


def bomb(levels: int) -> str:
    lines = ['x-l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        lines.append(f"x-l{level}: &l{level} [" + ",".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(["version: 1", *lines, "services: {a: {command: sleep 1}}"]) + "\n"


def test_an_alias_counts_as_all_it_stands_for() -> None:
    assert yamlsrc.load(bomb(5), "s.yaml").problems == []  # 74,732 values once expanded
    assert len(bomb(9)) <= 500  # a 500-byte "billion laughs", under ignored x- keys
    write(bomb(9))
    assert problems() == [
        "services.yaml:7:16: alias *l4 expands the document to more than 150,000 values and keys"
        " (an alias bomb?)"
    ]


def aliased_text(aliases: int) -> str:
    return "- &s " + "x" * 65_536 + "\n" + "- *s\n" * aliases


def test_4_mib_of_text_is_read_and_more_is_refused_even_through_aliases() -> None:
    assert yamlsrc.load(aliased_text(63), "services.yaml").problems == []  # 64 x 64 KiB
    assert [str(p) for p in yamlsrc.load(aliased_text(64), "services.yaml").problems] == [
        "services.yaml:65:3: alias *s expands the document to more than 4 MiB of text"
        " (an alias bomb?)"
    ]


def test_a_value_of_65_536_characters_is_read_and_one_more_is_refused() -> None:
    service("command: " + "x" * 65_536)
    assert len(load("services.yaml", environ={}).services["a"].argv()[0]) == 65_536
    service("command: " + "x" * 65_537)
    assert problems() == [
        "services.yaml:3:16: a value of 65,537 characters; svcorch reads at most 65,536 in one"
        " value"
    ]


def test_an_integer_of_4_300_digits_is_read_and_4_301_are_refused() -> None:
    service("command: sleep 1", "x-n: " + "9" * 4300)
    load("services.yaml", environ={})
    service("command: sleep 1, ports: [" + "9" * 4301 + "]")
    assert problems() == [
        "services.yaml:3:33: invalid YAML: an integer of 4,301 digits; svcorch reads at most 4,300"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x: &r [*r]\n", "s.yaml:1:8: invalid YAML: alias *r is used inside its own anchor &r"),
        ("a: &self\n  <<: *self\n", "s.yaml:2:7: invalid YAML: alias *self is used inside its"),
    ],
    ids=["list", "merge-self"],
)
def test_an_alias_inside_its_own_anchor_is_refused(text: str, expected: str) -> None:
    (problem,) = yamlsrc.load(text, "s.yaml").problems
    assert str(problem).startswith(expected)
    assert str(problem).endswith("(a recursive alias)")


def test_the_benchmarks_2000_services_use_less_than_60_percent_of_each_bound() -> None:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_catalogue.py"
    spec = importlib.util.spec_from_file_location("bench_catalogue", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    text = bench.generate(2000)
    builder = yamlsrc._Builder(yamlsrc._Loader(text), "bench.yaml", yamlsrc.Document(None))
    builder.build()
    assert len(text.encode()) < 4 * MIB * 0.6
    assert builder.values < 150_000 * 0.6
    assert builder.text < 4 * MIB * 0.6


# -- interpolation ---------------------------------------------------------------------------


def braces(levels: int) -> str:
    return '"' + "${A:-" * levels + "x" + "}" * levels + '"'


def test_32_levels_of_braces_are_interpolated_and_33_are_refused() -> None:
    service(f"command: {braces(32)}")
    assert load("services.yaml", environ={}).services["a"].command == "x"
    service(f"command: {braces(33)}")
    assert problems() == [
        "services.yaml:3:16: service 'a': command: braces nested more than 32 deep in"
        " '${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${'..."
    ]


def test_a_value_of_65_536_characters_after_interpolation_and_not_one_more() -> None:
    service('command: "${LONG}${LONG}"')
    assert load("services.yaml", environ={"LONG": "x" * 32_768}).services["a"].command
    assert problems(environ={"LONG": "x" * 32_769}) == [
        "services.yaml:3:16: service 'a': command: longer than 65,536 characters once variables"
        " are substituted (in '${LONG}${LONG}')"
    ]


def profile_uses(count: int) -> str:
    profiles = ", ".join(['"${LONG}"'] * count)
    return service(f"command: sleep 1, profiles: [{profiles}]")


def test_interpolation_makes_at_most_4_mib_of_text_in_the_whole_file() -> None:
    long = {"LONG": "x" * 60_000}
    profile_uses(69)  # 4,140,000 characters
    assert len(load("services.yaml", environ=long).services["a"].profiles) == 69
    profile_uses(70)  # 4,200,000: past 4 MiB (4,194,304)
    assert problems(environ=long) == [
        "services.yaml:3:795: service 'a': profiles.69: variables expand the file past 4 MiB of"
        " text, the most svcorch reads"
    ]


# -- problems --------------------------------------------------------------------------------


def test_the_first_100_problems_are_listed_then_one_line_for_the_rest() -> None:
    keys = "\n".join(f"    comand{i}: x" for i in range(150))
    write(f"version: 1\nservices:\n  a:\n    command: sleep 1\n{keys}\n")
    found = problems()
    assert len(found) == 101
    assert (
        found[0]
        == "services.yaml:5:5: service 'a': unknown key 'comand0' (did you mean 'command'?)"
    )
    assert found[-1] == (
        "services.yaml: only the first 100 problems are listed; fix them and run again for the rest"
    )


# -- pauses and backups ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "column", "where"),
    [
        ("ready: {type: tcp, port: 1, period: %s}", 61, "ready.period"),
        ("liveness: {type: tcp, port: 1, period: %s}", 64, "liveness.period"),
        ("restart: {backoff: %s}", 44, "restart.backoff"),
        ("restart: {max_backoff: %s}", 48, "restart.max_backoff"),
    ],
)
def test_a_pause_in_a_loop_is_at_least_10ms(body: str, column: int, where: str) -> None:
    service("command: sleep 1, " + body % "10ms")
    load("services.yaml", environ={})
    for short, shown in (("9ms", "9ms"), ("0", "0s")):
        service("command: sleep 1, " + body % short)
        assert problems() == [
            f"services.yaml:3:{column}: service 'a': {where}: must be at least 10ms, got {shown}"
            " (a shorter pause would keep svcorch busy in a loop)"
        ]


def test_at_most_1000_log_backups() -> None:
    service("command: sleep 1", "logs: {backups: 1000}")
    assert load("services.yaml", environ={}).logs.backups == 1000
    service("command: sleep 1", "logs: {backups: 1001}")
    assert problems() == ["services.yaml:2:17: logs.backups: at most 1000 backups, got 1001"]


# -- values the OS would refuse --------------------------------------------------------------

NUL = "the value contains a NUL character (\\0), which no argument, path or variable can hold"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('command: "sleep\\0 1"', f"3:16: service 'a': command: {NUL}"),
        ('command: [sleep, "\\0"]', f"3:24: service 'a': command.1: {NUL}"),
        ('command: sleep 1, cwd: "a\\0"', f"3:30: service 'a': cwd: {NUL}"),
        ('command: sleep 1, env: {A: "\\0"}', f"3:34: service 'a': env.A: {NUL}"),
        ('command: sleep 1, stop: {command: "\\0"}', f"3:41: service 'a': stop.command: {NUL}"),
        (
            'command: sleep 1, ready: {type: exec, command: "\\0"}',
            f"3:54: service 'a': ready.command: {NUL}",
        ),
        (
            'command: sleep 1, env: {A: "\\ud800"}',
            "3:34: service 'a': env.A: the value contains U+D800, a lone surrogate, which is not"
            " text",
        ),
        (
            'command: sleep 1, env: {"": 1}',
            "3:31: service 'a': env: an environment variable's name cannot be empty",
        ),
        (
            'command: sleep 1, env: {"A=B": 1}',
            "3:31: service 'a': env: variable name 'A=B' contains '=', which the environment"
            " cannot hold",
        ),
        (
            'command: sleep 1, env: {"A\\0B": 1}',
            "3:31: service 'a': env: variable name 'A\\x00B' contains a NUL character (\\0),"
            " which no argument, path or variable can hold",
        ),
    ],
    ids=[
        "command",
        "argv",
        "cwd",
        "env-value",
        "stop-command",
        "exec-probe",
        "surrogate",
        "empty-name",
        "equals-in-name",
        "nul-in-name",
    ],
)
def test_what_the_os_would_refuse_is_refused_with_its_place(body: str, expected: str) -> None:
    service(body)
    assert problems() == [f"services.yaml:{expected}"]


def test_one_value_takes_at_most_131_071_bytes() -> None:
    env = "A: " + "é" * 65_535  # two bytes each: 131,070 bytes, plus "A=" makes 131,072
    service(f"command: sleep 1, env: {{{env}}}")
    assert problems() == [
        "services.yaml:3:34: service 'a': env.A: A=value is 131,072 bytes long; the OS takes at"
        " most 131,071 in one argument or variable"
    ]
    service("command: sleep 1, env: {A: " + "é" * 65_534 + "}")
    assert len(load("services.yaml", environ={}).services["a"].env["A"]) == 65_534
    service("command: [echo, " + "é" * 65_536 + "]")
    assert problems() == [
        "services.yaml:3:23: service 'a': command.1: the value is 131,072 bytes long; the OS"
        " takes at most 131,071 in one argument or variable"
    ]


def test_a_command_and_environment_past_arg_max_are_refused() -> None:
    most = os.sysconf("SC_ARG_MAX")
    count = most // 60_000 + 1
    env = ", ".join(f"V{i}: {'x' * 60_000}" for i in range(count))
    service(f"command: sleep 1, env: {{{env}}}")
    (problem,) = problems()
    assert problem.startswith("services.yaml:3:16: service 'a': its command and environment take")
    assert problem.endswith(f"bytes; the OS takes at most {most:,} for both")


def test_an_env_file_value_follows_the_same_rules() -> None:
    write("A=x\0y\nB=" + "x" * 131_070 + "\nC=ok\n", "vars.env")
    service("command: sleep 1", "env_file: vars.env")
    assert problems() == [
        "vars.env:1: A: the value contains a NUL character (\\0), which no argument, path or"
        " variable can hold",
        "vars.env:2: B=value is 131,072 bytes long; the OS takes at most 131,071 in one argument"
        " or variable",
    ]
