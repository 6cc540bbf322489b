"""Hostile catalogues for the loader, and a worker that runs svcorch on them under bounds.

Two families of hypothesis strategies:

- ``hostile_cases()``: the constructs a hostile tester writes on purpose, each with drawn
  sizes: alias bombs, deep nesting, recursive aliases, huge scalars and integers, deep and
  repeated interpolation, values the OS refuses, intervals that would spin, FIFOs and devices
  for ``-f`` and ``env_file``, odd text and tags, many problems, large dependency tangles;
- ``mutated_cases()``: the shipped ``services.yaml`` with a few random edits, of its text
  (deletions, insertions of hostile snippets and odd characters, duplicated lines, raw bytes)
  or of one of its values (a hostile value at a random place, a hostile key, a key removed).

``LoaderWorker`` runs the CLI on each case in one long-lived subprocess (``catalogue_worker``)
whose address space is capped, and ``violations`` says what a case broke: an exit 3, a
traceback, more than ``TIME_LIMIT`` for a command, more than ``MEMORY_LIMIT`` of peak RSS, a
problem line that is not one located line. Used by tests/reliability/test_catalogue_fuzz.py and
by benchmarks/fuzz_catalogue.py (the figures in docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (REPO / "services.yaml").read_text(encoding="utf-8")
WORKER = Path(__file__).with_name("catalogue_worker.py")

TIME_LIMIT = 1.0  # seconds of CPU, for each command on each case
# seconds of wall time: what CPU time cannot see (waiting on a FIFO) with room for a machine
# shared by busy neighbours (a load average of 9 on 2 cores makes 1 s of CPU take 4)
WALL_LIMIT = 5.0
MEMORY_LIMIT = 200 * 1024 * 1024  # peak RSS of the process, for each case
ADDRESS_SPACE = 200 * 1024 * 1024  # RLIMIT_AS of the worker: past it, a MemoryError
HANG_AFTER = 20.0  # seconds without an answer: the worker is stuck, and that is a finding
MAX_PROBLEM_LINES = 101  # catalogue.MAX_PROBLEMS, and the line counting the rest

MIB = 1024 * 1024
SCALAR = 64 * 1024  # yamlsrc.MAX_SCALAR, to draw sizes on both sides of it


# -- cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """Files to write in a fresh folder, and what ``-f`` names (relative or absolute)."""

    kind: str
    files: tuple[tuple[str, bytes], ...]
    target: str = "services.yaml"
    fifos: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (name, where it points)

    def __repr__(self) -> str:  # hypothesis prints it on failure: sizes, not megabytes
        shown = ", ".join(
            f"{name}: {len(data):,} bytes {data[:300]!r}" for name, data in self.files
        )
        return (
            f"Case({self.kind!r}, target={self.target!r}, files=[{shown}],"
            f" fifos={self.fifos}, links={self.links})"
        )

    def write(self, folder: Path) -> None:
        for name, data in self.files:
            (folder / name).write_bytes(data)
        for name in self.fifos:
            os.mkfifo(folder / name)
        for name, points_to in self.links:
            os.symlink(points_to, folder / name)


def _case(kind: str, text: str | bytes, **more: Any) -> Case:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    extra = tuple(more.pop("extra", ()))
    return Case(kind, (("services.yaml", data), *extra), **more)


def _catalogue(*lines: str, service: str = "  a: {command: sleep 1}") -> str:
    return "\n".join(["version: 1", *lines, "services:", service]) + "\n"


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's): NUL, surrogates and all."""
    return json.dumps(value)


# -- hostile constructs ------------------------------------------------------------------------


@st.composite
def alias_bombs(draw: st.DrawFn) -> Case:
    width = draw(st.integers(2, 12))
    levels = draw(st.integers(2, 12))
    where = draw(st.sampled_from(["x-", "env", "command", "ports", "merge", "depends_on"]))
    if where == "merge":
        lines = ["x-m0: &m0 {" + ", ".join(f"k{i}: lol" for i in range(width)) + "}"]
        for level in range(1, levels):
            keys = ", ".join(f"k{i}: *m{level - 1}" for i in range(width))
            lines.append(f"x-m{level}: &m{level} {{{keys}}}")
        service = f"  a: {{command: sleep 1, <<: *m{levels - 1}}}"
        return _case(f"alias bomb {width}^{levels} merged", _catalogue(*lines, service=service))
    lines = ["x-l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"x-l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    top = f"*l{levels - 1}"
    service = {
        "x-": "  a: {command: sleep 1}",
        "env": f"  a: {{command: sleep 1, env: {{A: {top}}}}}",
        "command": f"  a: {{command: {top}}}",
        "ports": f"  a: {{command: sleep 1, ports: {top}}}",
        "depends_on": f"  a: {{command: sleep 1, depends_on: {top}}}",
    }[where]
    return _case(f"alias bomb {width}^{levels} in {where}", _catalogue(*lines, service=service))


@st.composite
def deep_nesting(draw: st.DrawFn) -> Case:
    depth = draw(st.one_of(st.integers(1, 80), st.integers(80, 3000), st.just(100_000)))
    style = draw(st.sampled_from(["flow-list", "flow-map", "block-map", "block-list", "mixed"]))
    where = draw(st.sampled_from(["x-", "env", "command", "top"]))
    if style.startswith("block"):
        depth = min(depth, 400)  # the indentation grows with the square of the depth
    if style == "flow-list":
        value = "[" * depth + "]" * depth
    elif style == "flow-map":
        value = "{a: " * depth + "1" + "}" * depth
    elif style == "mixed":
        value = "[{a: " * depth + "1" + "}]" * depth
    else:
        step = "- " if style == "block-list" else "a: "
        value = (
            "\n"
            + "".join("  " * (i + 2) + step + "\n" for i in range(depth))
            + "  " * (depth + 2)
            + "1"
        )
    kind = f"{style} nested {depth} deep in {where}"
    if where == "x-" or style.startswith("block"):
        return _case(kind, _catalogue(f"x-deep: {value}"))
    if where == "top":
        return _case(kind, _catalogue(f"name: {value}"))
    return _case(
        kind,
        _catalogue(
            service=f"  a: {{command: sleep 1, env: {{A: {value}}}}}"
            if where == "env"
            else f"  a: {{command: {value}}}"
        ),
    )


RECURSIVE = (
    "x-r: &r [*r]\n",
    "x-r: &r {a: *r}\n",
    "x-r: &r {<<: *r}\n",
    "x-r: &r {<<: [*r]}\n",
    "x-r: &r [1, [2, [3, *r]]]\n",
    "x-r: &r {a: [{b: *r}]}\n",
    "x-a: &a [&a 1, *a]\n",  # redefined: the alias means the inner, complete one
    "x-a: *nowhere\n",
    "x-a: &a {b: 1}\nx-b: {<<: [*a, 3]}\n",
    "x-a: &a [1]\nx-b: {<<: *a}\n",
    "x-a: {<<: 3}\n",
    "x-a: &k key\nx-b: {*k : 1}\n",
    "x-a: {? [a, b] : 1}\n",
    "x-a: {? {a: 1} : 1, ? {a: 1} : 2}\n",
)


@st.composite
def recursive_aliases(draw: st.DrawFn) -> Case:
    if draw(st.booleans()):
        text = draw(st.sampled_from(RECURSIVE))
        return _case("recursive or odd alias", _catalogue(text.rstrip("\n")))
    service = draw(
        st.sampled_from(
            [
                "  a: &s\n    command: sleep 1\n    <<: *s",
                "  a: &s {command: sleep 1, env: *s}",
                "  a: &s {command: sleep 1, depends_on: [*s]}",
                "  a: {command: sleep 1}\n  b: *a",
                "  a: &a {command: sleep 1}\n  b: *a\n  c: {<<: *a, depends_on: [a, b]}",
            ]
        )
    )
    return _case("recursive alias in a service", _catalogue(service=service))


@st.composite
def huge_scalars(draw: st.DrawFn) -> Case:
    size = draw(
        st.one_of(st.integers(SCALAR - 8, SCALAR + 8), st.integers(1, 300_000), st.just(3 * MIB))
    )
    char = draw(st.sampled_from(["x", "é", "🦄", " ", "'", "\\", "$$"]))
    style = draw(st.sampled_from(["plain", "double", "single", "literal"]))
    where = draw(st.sampled_from(["command", "description", "env", "key", "x-", "shell"]))
    text = (char * size)[:size] if char != " " else "a" + " " * max(0, size - 2) + "b"
    indent = {"x-": 2, "env": 8}.get(where, 6)  # a literal block's lines sit under its key
    if style == "double":
        scalar = _q(text)
    elif style == "single":
        scalar = "'" + text.replace("'", "''") + "'"
    elif style == "literal":
        scalar = "|\n" + " " * indent + text
    else:
        scalar = text if char not in "'\\ $" else "x" * size
    kind = f"{size:,}-character {style} scalar of {char!r} in {where}"
    if where == "x-":
        return _case(kind, _catalogue(f"x-big: {scalar}"))
    lines = {
        "key": f"    command: sleep 1\n    env:\n      {_q(text)}: 1",
        "command": f"    command: {scalar}",
        "shell": f"    shell: true\n    command: {scalar}",
        "description": f"    command: sleep 1\n    description: {scalar}",
        "env": f"    command: sleep 1\n    env:\n      A: {scalar}",
    }[where]
    return _case(kind, _catalogue(service=f"  a:\n{lines}"))


@st.composite
def huge_integers(draw: st.DrawFn) -> Case:
    digits = draw(st.one_of(st.integers(4295, 4305), st.integers(1, 30_000)))
    form = draw(st.sampled_from(["", "-", "+", "0x", "0o", "float", "underscore", "exp"]))
    number = {
        "": "9" * digits,
        "-": "-" + "9" * digits,
        "+": "+" + "1" * digits,
        "0x": "0x" + "f" * digits,
        "0o": "0o" + "7" * digits,
        "float": "9" * digits + ".5",
        "underscore": "_".join(["999"] * max(1, digits // 3)),
        "exp": f"1e{digits}",
    }[form]
    where = draw(
        st.sampled_from(["version", "ports", "max_restarts", "x-", "env", "timeout", "size"])
    )
    kind = f"{digits:,}-digit {form or 'decimal'} number as {where}"
    if where == "version":
        return _case(kind, f"version: {number}\nservices: {{a: {{command: sleep 1}}}}\n")
    if where == "x-":
        return _case(kind, _catalogue(f"x-n: {number}"))
    if where == "size":
        return _case(kind, _catalogue(f"logs: {{max_size: {number}}}"))
    if where == "timeout":
        return _case(
            kind, _catalogue(service=f"  a: {{command: sleep 1, stop: {{timeout: {number}}}}}")
        )
    body = {
        "ports": f"ports: [{number}]",
        "max_restarts": f"restart: {{max_restarts: {number}}}",
        "env": f"env: {{A: {number}}}",
    }[where]
    return _case(kind, _catalogue(service=f"  a: {{command: sleep 1, {body}}}"))


@st.composite
def deep_interpolation(draw: st.DrawFn) -> Case:
    depth = draw(st.one_of(st.integers(1, 40), st.integers(40, 60_000)))
    operator = draw(st.sampled_from([":-", "-", ":+", "+", ":?", "?"]))
    shape = draw(st.sampled_from(["nested", "unclosed", "braces", "dollars", "names"]))
    if shape == "nested":
        text = f"${{A{operator}" * depth + "x" + "}" * depth
    elif shape == "unclosed":
        text = "${A:-" * depth
    elif shape == "braces":
        text = "${A:-" + "{" * depth + "}" * depth + "}"
    elif shape == "dollars":
        text = "$$" * depth + "${" * min(depth, 3)
    else:
        text = "${" + "A" * depth + "}"
    where = draw(st.sampled_from(["command", "env", "top-env", "env_file", "port"]))
    kind = f"{shape} interpolation {depth} deep ({operator}) in {where}"
    if where == "top-env":
        return _case(kind, _catalogue(f"env: {{A: {_q(text)}}}"))
    if where == "env_file":
        return _case(kind, _catalogue(f"env_file: {_q(text)}"))
    body = {
        "command": f"command: {_q(text)}",
        "env": f"command: sleep 1, env: {{B: {_q(text)}}}",
        "port": f"command: sleep 1, ready: {{type: tcp, port: {_q(text)}}}",
    }[where]
    return _case(kind, _catalogue(service=f"  a: {{{body}}}"))


@st.composite
def repeated_interpolation(draw: st.DrawFn) -> Case:
    """A long variable used many times: each value stays bounded, and so does their sum."""
    length = draw(st.sampled_from([1, 100, 60_000, SCALAR, SCALAR + 1]))
    uses = draw(st.integers(1, 20_000))
    source = draw(st.sampled_from(["env", "env_file"]))
    through = draw(st.sampled_from(["one value", "many values", "alias"]))
    extra: tuple[tuple[str, bytes], ...] = ()
    lines: list[str] = []
    if source == "env":
        lines.append(f"env: {{LONG: {_q('x' * length)}}}")
    else:
        lines.append("env_file: vars.env")
        extra = (("vars.env", f"LONG={'x' * length}\n".encode()),)
    if through == "one value":
        service = f"  a: {{command: {_q('${LONG}' * uses)}}}"
    elif through == "many values":
        env = ", ".join(f"V{i}: ${{LONG}}" for i in range(min(uses, 5000)))
        service = f"  a: {{command: sleep 1, env: {{{env}}}}}"
    else:
        lines.append('x-v: &v {A: "${LONG} ${LONG}"}')
        count = min(uses, 400)  # valid catalogues of thousands of services are not hostile
        services = "\n".join(f"  s{i}: {{command: sleep 1, env: *v}}" for i in range(count))
        return _case(
            f"{length:,}-char variable through an alias in {count} services",
            _catalogue(*lines, service=services),
            extra=extra,
        )
    return _case(
        f"{length:,}-char variable used {uses}x in {through}",
        _catalogue(*lines, service=service),
        extra=extra,
    )


@st.composite
def many_problems(draw: st.DrawFn) -> Case:
    count = draw(st.one_of(st.integers(1, 200), st.integers(200, 40_000)))
    shape = draw(
        st.sampled_from(
            [
                "unknown keys",
                "unknown deps",
                "duplicate keys",
                "bad durations",
                "bad names",
                "cycle",
            ]
        )
    )
    if shape == "unknown keys":
        keys = "\n".join(f"    comand{i}: x" for i in range(count))
        return _case(
            f"{count} unknown keys", _catalogue(service=f"  a:\n    command: sleep 1\n{keys}")
        )
    if shape == "unknown deps":
        services = min(count, 2000)
        lines = [
            f"  s{i}: {{command: sleep 1, depends_on: [nope{i}, s{i}, x{i}]}}"
            for i in range(services)
        ]
        return _case(
            f"{services} services with unknown dependencies", _catalogue(service="\n".join(lines))
        )
    if shape == "duplicate keys":
        lines = "\n".join("    A: 1" for _ in range(count))
        return _case(
            f"{count} duplicate keys",
            _catalogue(service=f"  a:\n    command: sleep 1\n    env:\n{lines}"),
        )
    if shape == "bad durations":
        services = min(count, 3000)
        lines = [
            f"  s{i}: {{command: sleep 1, stop: {{timeout: forever}},"
            f" ready: {{type: tcp, port: 0, period: 0}}}}"
            for i in range(services)
        ]
        return _case(f"{services} services with bad values", _catalogue(service="\n".join(lines)))
    if shape == "bad names":
        services = min(count, 3000)
        lines = [f"  S_{i}!: {{command: sleep 1}}" for i in range(services)]
        return _case(f"{services} bad service names", _catalogue(service="\n".join(lines)))
    services = min(count, 60)
    lines = [
        f"  s{i}: {{command: sleep 1, depends_on: [{', '.join(f's{j}' for j in range(i))}]}}"
        if i
        else f"  s0: {{command: sleep 1, depends_on: [s{services - 1}]}}"
        for i in range(services)
    ]
    return _case(f"complete dependency graph of {services}", _catalogue(service="\n".join(lines)))


ENV_KEYS = (
    "A=B",
    "=A",
    "A=",
    "",
    "\0",
    "A\0B",
    "\ud800",
    "\udcff",
    "é",
    "A B",
    "\x1b[31m",
    "A" * 200_000,
)
BAD_STRINGS = (
    "\0",
    "a\0b",
    "\ud800x",
    "\udc80",
    "x" * 140_000,
    "é" * 40_000,
    "🦄" * 33_000,
    "\x1b]0;owned\x07",
    "a\nb",
    "\u202e",
)


@st.composite
def os_refused_values(draw: st.DrawFn) -> Case:
    value = _q(draw(st.sampled_from(BAD_STRINGS)))
    key = _q(draw(st.sampled_from(ENV_KEYS)))
    where = draw(
        st.sampled_from(
            [
                "env key",
                "top env key",
                "env value",
                "command",
                "command list",
                "shell",
                "cwd",
                "stop",
                "exec probe",
                "http url",
                "log path",
                "webhook header",
                "exec notifier",
                "service name",
                "depends_on",
                "description",
                "profiles",
            ]
        )
    )
    kind = f"value the OS refuses in {where}"
    bodies = {
        "env key": f"command: sleep 1, env: {{{key}: v}}",
        "env value": f"command: sleep 1, env: {{A: {value}}}",
        "command": f"command: {value}",
        "command list": f"command: [sleep, {value}]",
        "shell": f"command: {value}, shell: true",
        "cwd": f"command: sleep 1, cwd: {value}",
        "stop": f"command: sleep 1, stop: {{command: {value}}}",
        "exec probe": f"command: sleep 1, ready: {{type: exec, command: {value}}}",
        "http url": f"command: sleep 1, ready: {{type: http, url: {_q('http://127.0.0.1:1/')[:-1]}{value[1:]}}}",
        "log path": f"command: sleep 1, ready: {{type: log, pattern: x, path: {value}}}",
        "description": f"command: sleep 1, description: {value}",
        "profiles": f"command: sleep 1, profiles: [{value}]",
        "depends_on": f"command: sleep 1, depends_on: [{value}]",
    }
    if where == "top env key":
        return _case(kind, _catalogue(f"env: {{{key}: v}}"))
    if where == "webhook header":
        return _case(
            kind,
            _catalogue(
                "notify: [{type: webhook, url: 'http://127.0.0.1:1/',"
                f" headers: {{{key}: {value}}}}}]"
            ),
        )
    if where == "exec notifier":
        return _case(kind, _catalogue(f"notify: [{{type: exec, command: {value}}}]"))
    if where == "service name":
        return _case(kind, _catalogue(service=f"  {value}: {{command: sleep 1}}"))
    return _case(kind, _catalogue(service=f"  a: {{{bodies[where]}}}"))


INTERVALS = (
    "0",
    "0s",
    "0ms",
    "1ms",
    "9ms",
    "10ms",
    "-1",
    "-1s",
    ".nan",
    ".inf",
    "-.inf",
    "1e-9",
    "0.001",
    "0.01",
    "1e400",
    "''",
    "~",
    "[]",
    "9999999999h",
)


@st.composite
def spinning_intervals(draw: st.DrawFn) -> Case:
    value = draw(st.sampled_from(INTERVALS))
    where = draw(
        st.sampled_from(
            [
                "ready.period",
                "ready.timeout",
                "ready.attempt_timeout",
                "liveness.period",
                "restart.backoff",
                "restart.max_backoff",
                "restart.window",
                "stop.timeout",
                "logs.backups",
                "logs.max_size",
                "failure_threshold",
                "notify.timeout",
                "max_restarts",
            ]
        )
    )
    kind = f"{where}: {value}"
    if where.startswith("logs."):
        return _case(kind, _catalogue(f"logs: {{{where[5:]}: {value}}}"))
    if where == "notify.timeout":
        return _case(
            kind, _catalogue(f"notify: [{{type: exec, command: 'true', timeout: {value}}}]")
        )
    probe = "type: tcp, port: 1"
    bodies = {
        "ready.period": f"ready: {{{probe}, period: {value}}}",
        "ready.timeout": f"ready: {{{probe}, timeout: {value}}}",
        "ready.attempt_timeout": f"ready: {{{probe}, attempt_timeout: {value}}}",
        "liveness.period": f"liveness: {{{probe}, period: {value}}}",
        "failure_threshold": f"liveness: {{{probe}, failure_threshold: {value}}}",
        "restart.backoff": f"restart: {{policy: always, backoff: {value}}}",
        "restart.max_backoff": f"restart: {{policy: always, max_backoff: {value}}}",
        "restart.window": f"restart: {{policy: always, window: {value}}}",
        "max_restarts": f"restart: {{policy: always, max_restarts: {value}}}",
        "stop.timeout": f"stop: {{timeout: {value}}}",
    }
    return _case(kind, _catalogue(service=f"  a: {{command: sleep 1, {bodies[where]}}}"))


@st.composite
def special_files(draw: st.DrawFn) -> Case:
    """``-f`` or ``env_file`` naming what is not a small regular file."""
    what = draw(
        st.sampled_from(
            [
                "fifo",
                "/dev/zero",
                "/dev/null",
                "/dev/urandom",
                "directory",
                "missing",
                "link to /dev/zero",
                "link loop",
                "too large",
                "at the limit",
                "/proc/self/status",
                "/proc/self/mem",
            ]
        )
    )
    for_env = draw(st.booleans())
    name = "thing"
    fifos: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    extra: list[tuple[str, bytes]] = []
    if what == "fifo":
        fifos = (name,)
    elif what.startswith("/"):
        name = what
    elif what == "directory":
        name = "."
    elif what == "link to /dev/zero":
        links = ((name, "/dev/zero"),)
    elif what == "link loop":
        links = ((name, name),)
    elif what in ("too large", "at the limit"):
        limit = MIB if for_env else 4 * MIB
        size = limit + 1 if what == "too large" else limit
        filler = (b"# padding\n" * (size // 10 + 1))[:size]
        head = b"A=1\n" if for_env else _catalogue().encode()
        extra.append((name, (head + filler)[:size]))
    if for_env:
        return Case(
            f"env_file: {what}",
            (("services.yaml", _catalogue(f"env_file: {_q(name)}").encode()), *extra),
            fifos=fifos,
            links=links,
        )
    return Case(f"-f {what}", tuple(extra), target=name, fifos=fifos, links=links)


DOTENV_LINES = (
    "A=" + " " * 300_000 + "b",  # a regex that backtracks would take hours here
    "A=x" + " " * 300_000 + "#",
    "A=\0",
    "A=" + "x" * 140_000,
    "\0=1",
    "export",
    "=1",
    "A='unclosed",
    '"A"=1',
    "A=\udcff",
    "A=" + "é" * 70_000,
)


@st.composite
def env_file_contents(draw: st.DrawFn) -> Case:
    line = draw(st.sampled_from(DOTENV_LINES))
    raw = draw(st.sampled_from([b"", b"\xff\xfe", b"\xef\xbb\xbf"]))
    data = raw + (line + "\n").encode("utf-8", "surrogateescape" if "\udcff" in line else "strict")
    return Case(
        "env_file holding " + repr(line[:20]),
        (
            ("services.yaml", _catalogue("env_file: vars.env", "env: {B: ${A:-}}").encode()),
            ("vars.env", data),
        ),
    )


ODD_TEXTS = (
    b"",
    b"---\n",
    b"...\n",
    b"# only a comment\n",
    b"version: 1\n---\nversion: 1\n",
    b"\xff\xfe" + "version: 1\n".encode("utf-16-le"),
    b"\xef\xbb\xbfversion: 1\nservices: {a: {command: sleep 1}}\n",
    b"version: 1\r\nservices:\r\n  a: {command: sleep 1}\r\n",
    "version: 1\u2028services:\u2028  a: {command: sleep 1}\n".encode(),
    "version: 1\x85services: {a: {command: x}}\n".encode(),
    b"version: 1\nservices:\n\ta: {command: sleep 1}\n",
    b"version: 1\nservices: {a: {command: \x00}}\n",
    b"version: 1\nservices: {a: {command: \x1b[31m}}\n",
    b"version: 1\nservices: {a: {command: \xc3\x28}}\n",
    "version: 1\nservices: {\u202ea\u202c: {command: x}, a\u200b: {command: x}}\n".encode(),
    "version: 1\nservices: {e\u0301: {command: x}}\n".encode(),
    b"version: 1\nservices: {a: {command: sleep 1}}\n" + b" " * 100_000 + b"\n",
    b"version: 1\nservices: {a: {command: sleep 1}}\n" + b"x" * 100_000,
    b"[" * 100_000,
    b"{" * 100_000,
    b"- " * 100_000,
    b"&a " * 10_000 + b"x",
    b"!!" * 50_000,
    b"*" * 100_000,
    b'"' + b"\\" * 100_000,
    b"version: 1\nservices: {a: {command: '" + b"''" * 30_000 + b"'}}\n",
)
ODD_TAGS = (
    "!!binary AAAA",
    "!!binary '@@@'",
    "!!python/object/apply:os.system [echo owned]",
    "!!python/name:os.system",
    "!foo bar",
    "!!set {a, b}",
    "!!omap [{a: 1}]",
    "!!pairs [{a: 1}]",
    "!!timestamp 2020-02-30",
    "2020-02-30",
    "2020-13-01 25:61:61",
    "!!float x",
    "!!int x",
    "0x_",
    "0b",
    "!!str [a]",
    "!!map x",
    "!!null x",
    "!!bool maybe",
    "!<tag:yaml.org,2002:str> x",
    "!!merge x",
)


@st.composite
def odd_text(draw: st.DrawFn) -> Case:
    if draw(st.booleans()):
        return _case("odd text", draw(st.sampled_from(ODD_TEXTS)))
    if draw(st.booleans()):
        data = draw(st.binary(max_size=400))
        return _case("random bytes", data)
    tag = draw(st.sampled_from(ODD_TAGS))
    where = draw(st.sampled_from(["x-", "command", "port", "env", "version", "key"]))
    if where == "x-":
        return _case(f"tag {tag} in x-", _catalogue(f"x-t: {tag}"))
    if where == "version":
        return _case(f"tag {tag} as version", f"version: {tag}\nservices: {{a: {{command: x}}}}\n")
    if where == "key":
        return _case(f"tag {tag} as a key", _catalogue(f"x-t: {{? {tag}\n  : 1}}"))
    body = {"command": f"command: {tag}", "port": f"ports: [{tag}]", "env": f"env: {{A: {tag}}}"}
    service = f"  a: {{command: sleep 1, {body[where]}}}".replace(
        "command: sleep 1, command", "command"
    )
    return _case(f"tag {tag} in {where}", _catalogue(service=service))


def hostile_cases() -> st.SearchStrategy[Case]:
    """Every family of hostile constructs, each with drawn sizes and places."""
    return st.one_of(
        alias_bombs(),
        deep_nesting(),
        recursive_aliases(),
        huge_scalars(),
        huge_integers(),
        deep_interpolation(),
        repeated_interpolation(),
        many_problems(),
        os_refused_values(),
        spinning_intervals(),
        special_files(),
        env_file_contents(),
        odd_text(),
    )


# -- mutations of the shipped catalogue ----------------------------------------------------------

SNIPPETS = (
    "\0",
    "\ud800",
    "\t",
    "\r",
    "\x1b[2J",
    "\u202e",
    "\ufeff",
    "\u2028",
    "\x85",
    "🦄",
    "é",
    ":",
    ": ",
    "- ",
    "? ",
    "&a ",
    "*a",
    "*nowhere",
    "<<: *a",
    "!!binary",
    "!foo",
    "{",
    "}",
    "[",
    "]",
    "'",
    '"',
    "|",
    ">",
    "#",
    "%YAML 1.1",
    "---",
    "...",
    "${",
    "${A:-",
    "$$",
    "}",
    "=",
    "x-",
    "  ",
    "\n",
    "\n  ",
    "9" * 5000,
    "0",
    "-1",
    "0ms",
    ".nan",
    "~",
    "true",
    "no",
)
HOSTILE_VALUES = (
    "0",
    "-1",
    "0s",
    "0ms",
    "5ms",
    "-5s",
    ".inf",
    "-.inf",
    ".nan",
    "1e400",
    "9" * 4301,
    '"\\0"',
    '"a\\0b"',
    '"\\ud800"',
    "~",
    "[]",
    "{}",
    "true",
    "no",
    '"${X}"',
    '"${X:-${Y:-${Z}}}"',
    '"$${A}"',
    '"${"',
    "!!binary AAAA",
    "!foo bar",
    "2020-02-30",
    "0x_",
    "*nowhere",
    "[[[[[[[[[[]]]]]]]]]]",
    "{a: {a: {a: {a: 1}}}}",
    '"=BAD"',
    "yes",
    "0o777",
    "1_000",
    '"10ms"',
    '"99999999999999999999h"',
    '"1.5"',
    '"\\x1b[31m"',
    '"\\u202e"',
    "[" * 70 + "]" * 70,
    '"' + "A" * (SCALAR + 1) + '"',
    "[" + "a, " * 5000 + "]",
    '{"A=B": 1}',
    '{"": 1}',
    '{"\\0": 1}',
    '[sleep, "\\0"]',
    "-9223372036854775809",
)
HOSTILE_KEYS = (
    "comand",
    "x-foo",
    '""',
    '"A=B"',
    '"\\0"',
    "<<",
    "? [a]",
    "1",
    "~",
    "true",
    "é",
    '"\\ud800"',
    "services",
    "version",
)


def _spans(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is a key) of every scalar written in ``text``: the places a value mutation
    rewrites. Found once, on the text, so a mutation is a slice, not a YAML dump."""
    spans: list[tuple[int, int, bool]] = []
    pending: list[tuple[yaml.Node, bool]] = [(yaml.compose(text), False)]
    while pending:
        node, is_key = pending.pop()
        if isinstance(node, yaml.ScalarNode):
            spans.append((node.start_mark.index, node.end_mark.index, is_key))
        elif isinstance(node, yaml.SequenceNode):
            pending += [(item, False) for item in node.value]
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                pending += [(key, True), (value, False)]
    return sorted(spans)


SHIPPED_SPANS = _spans(SHIPPED)


@st.composite
def value_mutations(draw: st.DrawFn) -> Case:
    """The shipped catalogue with up to three of its scalars rewritten: a hostile value in
    place of a value, a hostile key in place of a key, or the scalar gone."""
    chosen = draw(st.sets(st.integers(0, len(SHIPPED_SPANS) - 1), min_size=1, max_size=3))
    text = SHIPPED
    for index in sorted(chosen, reverse=True):  # from the end: earlier offsets stay right
        start, end, is_key = SHIPPED_SPANS[index]
        if draw(st.integers(0, 4)) == 0:
            replacement = ""
        elif is_key:
            replacement = draw(st.sampled_from(HOSTILE_KEYS))
        else:
            replacement = draw(st.sampled_from(HOSTILE_VALUES))
        text = text[:start] + replacement + text[end:]
    return _case(f"shipped catalogue with {len(chosen)} rewritten scalars", text)


@st.composite
def text_mutations(draw: st.DrawFn) -> Case:
    text = SHIPPED
    edits = draw(st.integers(1, 5))
    for _ in range(edits):
        at = int(draw(st.floats(0, 1)) * len(text))
        action = draw(
            st.sampled_from(["insert", "insert", "delete", "duplicate line", "truncate", "indent"])
        )
        if action == "insert":
            piece = draw(st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=12)))
            text = text[:at] + piece + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 200)) :]
        elif action == "duplicate line":
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at)
            end = len(text) if end == -1 else end + 1
            text = text[:end] + text[start:end] + text[end:]
        elif action == "truncate":
            text = text[:at]
        else:
            start = text.rfind("\n", 0, at) + 1
            text = text[:start] + " " * draw(st.integers(1, 3)) + text[start:]
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # now and then a raw byte that is not UTF-8
        at = draw(st.integers(0, len(data)))
        data = data[:at] + bytes([draw(st.integers(0x80, 0xFF))]) + data[at:]
    return _case(f"shipped catalogue with {edits} text edits", data)


def mutated_cases() -> st.SearchStrategy[Case]:
    return st.one_of(value_mutations(), text_mutations())


# -- running cases -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the worker saw for one case (or that it never answered)."""

    case: Case
    runs: list[dict[str, Any]] = field(default_factory=list)
    peak_rss: int = 0
    lost: str | None = None  # the worker hung or died: why

    @property
    def seconds(self) -> float:
        """The slowest command's wall time."""
        return max((run["seconds"] for run in self.runs), default=0.0)

    @property
    def cpu(self) -> float:
        """The slowest command's CPU time."""
        return max((run["cpu"] for run in self.runs), default=0.0)

    def violations(self) -> list[str]:
        """Every promise the case broke, in words; empty when it kept them all."""
        if self.lost is not None:
            return [self.lost]
        found = []
        for run in self.runs:
            command = " ".join(run["argv"][2:])
            output = "\n".join(run["lines"][:40])
            if run["raised"]:
                found.append(f"{command}: raised past the CLI's boundary:\n{run['raised']}")
            if run["code"] not in (0, 1, 2):
                found.append(f"{command}: exit {run['code']}: {output}")
            if "Traceback" in output or "internal error" in output:
                found.append(f"{command}: a traceback or internal error: {output}")
            if run["cpu"] >= TIME_LIMIT:
                found.append(f"{command}: took {run['cpu']:.2f}s of CPU")
            if run["seconds"] >= WALL_LIMIT:
                found.append(f"{command}: took {run['seconds']:.2f}s")
        if self.peak_rss >= MEMORY_LIMIT:
            found.append(f"peak RSS {self.peak_rss / MIB:.0f} MiB")
        found += self._located_lines()
        return found

    def _located_lines(self) -> list[str]:
        """``validate`` on a bad file: one ``FILE[:LINE[:COL]]: message`` line per problem,
        the file being the catalogue or one it reads."""
        validate = self.runs[0]
        if validate["code"] != 2:
            return []
        if validate["line_count"] > MAX_PROBLEM_LINES:
            return [f"validate printed {validate['line_count']} lines"]
        names = {Path(self.case.target).name, *(name for name, _ in self.case.files), "."}
        bad = []
        for line in validate["lines"]:
            match = _LOCATED.match(line)
            if match is None or not (match.group(1).startswith("/") or match.group(1) in names):
                bad.append(line)
        return [f"validate: not a located problem line: {line!r}" for line in bad[:3]]


_LOCATED = re.compile(r"^(.+?)(?::\d+){0,2}: \S")


class LoaderWorker:
    """One ``catalogue_worker`` subprocess, restarted should a case kill or hang it."""

    def __init__(self, address_space: int = ADDRESS_SPACE) -> None:
        self.address_space = address_space
        self.root = Path(tempfile.mkdtemp(prefix="svcorch-fuzz-"))
        self.process: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.cases = 0

    def __enter__(self) -> LoaderWorker:
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _start(self) -> None:
        state = self.root / "state"
        state.mkdir(exist_ok=True)
        env = {**os.environ, "SVCORCH_STATE_DIR": str(state)}
        env.pop("SVCORCH_FILE", None)
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), str(self.address_space), str(REPO / "services.yaml")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.root,
        )
        self.lines = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None
        lines = self.lines

        def read() -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        ready = self.lines.get(timeout=60)
        if ready is None or "ready" not in ready:
            raise RuntimeError(f"the worker did not start: {self._stderr()}")

    def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()  # our own child, by its Popen: never by name
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def _stderr(self) -> str:
        process = self.process
        if process is None or process.stderr is None or process.poll() is None:
            return ""
        return process.stderr.read()[-3000:]

    def run(self, case: Case) -> Outcome:
        self.cases += 1
        folder = self.root / f"case{self.cases}"
        folder.mkdir()
        try:
            case.write(folder)
            return self._ask(case, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _ask(self, case: Case, folder: Path) -> Outcome:
        assert self.process is not None and self.process.stdin is not None
        request = json.dumps({"cwd": str(folder), "file": case.target})
        try:
            self.process.stdin.write(request + "\n")
            self.process.stdin.flush()
            line = self.lines.get(timeout=HANG_AFTER)
        except queue.Empty:
            self.process.kill()
            self.process.wait()
            self._start()
            return Outcome(case, lost=f"no answer within {HANG_AFTER:g}s: the loader hung")
        except BrokenPipeError:
            line = None
        if line is None:
            why = self._stderr()
            self._stop()
            self._start()
            return Outcome(case, lost=f"the worker died: {why}")
        answer = json.loads(line)
        return Outcome(case, runs=answer["runs"], peak_rss=answer["peak_rss"])
