"""Convert a supervisord.conf into a services.yaml skeleton, and say what did not carry over.

supervisord knows processes, not dependencies or readiness: ``priority`` is only a start-up
order, and a program counts as started once it has stayed up for ``startsecs``. The skeleton
keeps what maps (command, directory, environment, restart and stop settings). Where the user
must decide, it leaves a comment: ``depends_on`` and a ``ready`` probe. Everything dropped,
guessed or left as a placeholder is a warning ``file:line: message``. Nothing is printed here.
"""

from __future__ import annotations

import configparser
import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

import yaml

from svcorch.errors import UsageError
from svcorch.model import SERVICE_NAME


@dataclass(frozen=True)
class ImportResult:
    """The skeleton's text and every located warning, in file order."""

    yaml: str
    warnings: list[str]


def convert(text: str, *, source: str = "supervisord.conf") -> ImportResult:
    """Translate supervisord.conf ``text``. Raise UsageError if it is not supervisord syntax.

    ``source`` names the file in warnings. If it is an absolute path, ``%(here)s`` expands to
    its folder.
    """
    parser = _parse(text, source)
    positions = _Positions.scan(text)
    _require_supervisor_sections(parser, positions, source)
    here = PurePath(source).parent
    converter = _Converter(source, positions, str(here) if here.is_absolute() else None)
    return converter.run(parser)


# -- reading -----------------------------------------------------------------------------------

# Inline comments need whitespace before the ';', as supervisord's own parser requires.
_COMMENT = re.compile(r"(^|\s);.*$")
_SECTION = re.compile(r"\[(?P<header>.+)\]")  # configparser's own header syntax
_OPTION = re.compile(r"(?P<key>[^=:]*?)\s*[=:]")
_DAEMON_SECTIONS = frozenset({"supervisorctl", "unix_http_server", "inet_http_server"})
_SUPERVISOR_SECTIONS = _DAEMON_SECTIONS | {"supervisord", "include"}
_SUPERVISOR_PREFIXES = ("program:", "group:", "eventlistener:", "fcgi-program:", "rpcinterface:")


def _parse(text: str, source: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(
        interpolation=None,
        inline_comment_prefixes=(";",),
        empty_lines_in_values=False,
        default_section="\0no default section",  # supervisord gives [DEFAULT] no meaning
    )
    try:
        parser.read_string(text, source=source)
    except configparser.MissingSectionHeaderError as exc:
        raise UsageError(
            f"{source}:{exc.lineno}: not supervisord syntax: a setting before any [section]"
        ) from None
    except configparser.DuplicateSectionError as exc:
        raise UsageError(f"{source}:{exc.lineno}: section [{exc.section}] appears twice") from None
    except configparser.DuplicateOptionError as exc:
        raise UsageError(
            f"{source}:{exc.lineno}: key {exc.option!r} appears twice in [{exc.section}]"
        ) from None
    except configparser.ParsingError as exc:
        lineno = exc.errors[0][0]
        line = text.splitlines()[lineno - 1].strip()
        raise UsageError(
            f"{source}:{lineno}: not supervisord syntax: {line!r} is neither [section] nor"
            " key = value"
        ) from None
    return parser


@dataclass
class _Positions:
    """Line numbers of section headers and of each key's first line, by a light scan."""

    sections: dict[str, int] = field(default_factory=dict)
    keys: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def scan(cls, text: str) -> _Positions:
        positions = cls()
        section: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = _COMMENT.sub("", raw)
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace():
                continue  # a continuation line of the previous value
            if header := _SECTION.match(line.strip()):
                section = header.group("header")
                positions.sections.setdefault(section, number)
            elif section is not None and (option := _OPTION.match(line)):
                key = (section, option.group("key").strip().lower())
                positions.keys.setdefault(key, number)
        return positions

    def line(self, section: str, key: str | None = None) -> int:
        if key is not None and (section, key) in self.keys:
            return self.keys[(section, key)]
        return self.sections.get(section, 1)


def _require_supervisor_sections(
    parser: configparser.RawConfigParser, positions: _Positions, source: str
) -> None:
    for section in parser.sections():
        if section in _SUPERVISOR_SECTIONS or section.startswith(_SUPERVISOR_PREFIXES):
            return
    first = min(positions.sections.values(), default=1)
    raise UsageError(
        f"{source}:{first}: not a supervisord config: no [program:x], [group:x] or"
        " [supervisord] section"
    )


# -- translating values ------------------------------------------------------------------------

_EXPANSION = re.compile(
    r"%%"
    r"|%\((?P<name>[^)]*)\)(?P<spec>[-#0 +]*\d*(?:\.\d+)?[sdr])"
    r"|\{\{(?P<template>.*?)\}\}"
    r"|\{%(?P<block>.*?)%\}"
    r"|\$"
)
_WORDS = re.compile(r"[A-Za-z0-9]+")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})

# What each key means to svcorch. Keys not listed here are unknown and dropped with a warning.
_MAPPED = frozenset(
    [
        "command",
        "directory",
        "environment",
        "autorestart",
        "startretries",
        "stopwaitsecs",
        "stopsignal",
        "priority",
        "numprocs",
        "numprocs_start",
        "process_name",
        "autostart",
        "startsecs",
        "exitcodes",
    ]
)
_LOG_KEYS = frozenset(
    [
        "redirect_stderr",
        "stdout_logfile",
        "stdout_logfile_maxbytes",
        "stdout_logfile_backups",
        "stdout_capture_maxbytes",
        "stdout_events_enabled",
        "stdout_syslog",
        "stderr_logfile",
        "stderr_logfile_maxbytes",
        "stderr_logfile_backups",
        "stderr_capture_maxbytes",
        "stderr_events_enabled",
        "stderr_syslog",
    ]
)
_GROUP_KILL_KEYS = frozenset({"stopasgroup", "killasgroup"})
_UNSUPPORTED = {
    "user": "svcorch runs every service as the user that runs svcorch",
    "umask": "svcorch does not change the umask; set it in a wrapper script if needed",
    "serverurl": "there is no supervisord server for a child to talk to",
}


def template_variable(placeholder: str) -> str:
    """``{{.app_code}}`` -> ``TEMPLATE_APP_CODE``; ``{{ settings.X }}`` -> ``TEMPLATE_SETTINGS_X``.

    The prefix marks the value as a leftover template, so no real variable is picked up by chance.
    """
    words = _WORDS.findall(placeholder)
    return "TEMPLATE_" + ("_".join(words).upper() if words else "VALUE")


def _scalar(value: str) -> str:
    """One YAML scalar on one line, quoted only when YAML needs it (``'no'``, ``': '``)."""
    dumped = yaml.safe_dump(value, allow_unicode=True, width=2**31 - 1)
    return dumped.removesuffix("\n").removesuffix("\n...")


@dataclass(frozen=True)
class _Program:
    """The parts of one ``[program:x]`` the renderer needs, each already in svcorch terms."""

    name: str
    section: str
    line: int
    body: list[str]


class _Converter:
    def __init__(self, source: str, positions: _Positions, here: str | None) -> None:
        self.source = source
        self.positions = positions
        self.here = here
        self.warnings: list[tuple[int, str]] = []
        self.names: set[str] = set()
        self.group_of: dict[str, str] = {}

    def warn(self, line: int, message: str) -> None:
        self.warnings.append((line, message))

    def run(self, parser: configparser.RawConfigParser) -> ImportResult:
        self.read_groups(parser)
        top_env: dict[str, str] = {}
        programs: list[_Program] = []
        ignored: list[str] = []
        for section in parser.sections():
            values = dict(parser.items(section))
            line = self.positions.line(section)
            if section.startswith("program:"):
                programs.append(self.program(section, values))
            elif section == "supervisord":
                top_env = self.supervisord(values)
                ignored.append(section)
            elif section in _DAEMON_SECTIONS or section.startswith("rpcinterface:"):
                ignored.append(section)
            elif section.startswith("group:"):
                continue  # read_groups reported it
            elif section == "include":
                self.warn(line, "[include] files are not read: convert each of them too")
            elif section.startswith(("eventlistener:", "fcgi-program:")):
                kind = section.split(":", 1)[0]
                self.warn(line, f"[{section}] skipped: svcorch has no {kind} sections")
            else:
                self.warn(line, f"[{section}] skipped: not a supervisord section")
        if not programs:
            self.warn(1, "no [program:x] sections: the catalogue has no services")
        text = _render(self.source, top_env, programs, ignored)
        ordered = sorted(self.warnings, key=lambda warning: warning[0])
        return ImportResult(text, [f"{self.source}:{line}: {msg}" for line, msg in ordered])

    # -- sections ------------------------------------------------------------------------------

    def read_groups(self, parser: configparser.RawConfigParser) -> None:
        sections = parser.sections()
        programs = {
            s.removeprefix("program:").strip() for s in sections if s.startswith("program:")
        }
        for section in sections:
            if not section.startswith("group:"):
                continue
            group = section.removeprefix("group:").strip()
            members = [m.strip() for m in parser.get(section, "programs", fallback="").split(",")]
            members = [m for m in members if m]
            for member in members:
                self.group_of[member] = group
            line = self.positions.line(section)
            missing = [m for m in members if m not in programs]
            if missing:
                self.warn(line, f"[{section}] names unknown programs: {', '.join(missing)}")
            self.warn(
                line,
                f"[{section}] has no svcorch equivalent: its programs"
                f" ({', '.join(members) or 'none'}) are converted one by one;"
                " start them together with `svcorch up NAME...` or give them a common profile",
            )

    def supervisord(self, values: Mapping[str, str]) -> dict[str, str]:
        """Only ``environment`` matters: supervisord passes it to every program."""
        if "environment" not in values:
            return {}
        context = {"here": self.here}
        text = self.translate(values["environment"], "supervisord", "environment", context)
        return self.environment(text, "supervisord")

    def program(self, section: str, values: Mapping[str, str]) -> _Program:
        raw_name = section.removeprefix("program:").strip()
        line = self.positions.line(section)
        name = self.service_name(raw_name, section, line)
        numprocs = self.integer(values, section, "numprocs", default=1)
        start = self.integer(values, section, "numprocs_start", default=0)
        context: dict[str, str | None] = {
            "program_name": raw_name,
            "group_name": self.group_of.get(raw_name, raw_name),
            "process_num": str(start),
            "numprocs": str(numprocs),
            "here": self.here,
        }
        if numprocs > 1:
            self.warn(
                self.positions.line(section, "numprocs"),
                f"[{section}] numprocs={numprocs}: svcorch runs one process per service;"
                f" converted as one with process_num={start}; copy the service for the others",
            )
        return _Program(name, section, line, self.program_body(section, values, context))

    def program_body(
        self, section: str, values: Mapping[str, str], context: Mapping[str, str | None]
    ) -> list[str]:
        priority = values.get("priority", "999").strip()
        startsecs = values.get("startsecs", "1").strip()
        body = [
            f"# depends_on: fill in (supervisord has no dependencies; priority={priority})",
            f"# ready: fill in a probe (supervisord only waited startsecs={startsecs} for the"
            " process to stay up)",
        ]
        if "command" in values:
            command = " ".join(values["command"].split("\n"))
            body.append(f"command: {_scalar(self.translate(command, section, 'command', context))}")
        else:
            self.warn(self.positions.line(section), f"[{section}] has no command: add one")
            body.append("# command: fill in (supervisord.conf gave none)")
        if "directory" in values:
            cwd = self.translate(values["directory"], section, "directory", context)
            body.append(f"cwd: {_scalar(cwd)}")
        body += self.program_env(section, values, context)
        body += self.restart(section, values)
        body += self.stop(section, values)
        body += self.autostart(section, values)
        body += self.dropped(section, values)
        return body

    # -- keys ----------------------------------------------------------------------------------

    def program_env(
        self, section: str, values: Mapping[str, str], context: Mapping[str, str | None]
    ) -> list[str]:
        if "environment" not in values:
            return []
        raw = values["environment"].strip()
        if re.fullmatch(r"\{\{.*?\}\}", raw):
            self.warn(
                self.positions.line(section, "environment"),
                f"[{section}] environment is the template placeholder {raw}: fill in env: by"
                " hand, or list the variables in an env_file",
            )
            return [f"# env: fill in (supervisord.conf had environment = {raw})"]
        text = self.translate(raw, section, "environment", context)
        env = self.environment(text, section)
        return ["env:", *(f"  {_scalar(k)}: {_scalar(v)}" for k, v in env.items())] if env else []

    def environment(self, text: str, section: str) -> dict[str, str]:
        """``KEY="v",KEY2=v2`` -> a mapping; a malformed pair is a warning, not a guess."""
        line = self.positions.line(section, "environment")
        env: dict[str, str] = {}
        for pair in _split_pairs(text):
            key, equals, value = pair.partition("=")
            key = key.strip()
            if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                self.warn(line, f"[{section}] environment: cannot read {pair.strip()!r}; dropped")
                continue
            env[key] = _unquote(value.strip())
        return env

    def restart(self, section: str, values: Mapping[str, str]) -> list[str]:
        setting = values.get("autorestart", "unexpected").strip().lower()
        if setting in _TRUE:
            policy = "always"
        elif setting in _FALSE:
            policy = "no"
        else:
            policy = "on-failure"
            if setting != "unexpected":
                self.warn(
                    self.positions.line(section, "autorestart"),
                    f"[{section}] autorestart={setting!r} is not true, false or unexpected;"
                    " converted as unexpected (on-failure)",
                )
        note = (
            "  # supervisord's default autorestart=unexpected"
            if "autorestart" not in values
            else ""
        )
        lines = ["restart:", f"  policy: {_scalar(policy)}{note}"]
        if "startretries" in values:
            retries = self.integer(values, section, "startretries", default=3)
            lines.append(f"  max_restarts: {retries}  # from startretries")
        exitcodes = values.get("exitcodes", "0").replace(" ", "")
        if exitcodes != "0" and policy == "on-failure":
            self.warn(
                self.positions.line(section, "exitcodes"),
                f"[{section}] exitcodes={exitcodes}: svcorch's on-failure restarts after any"
                " non-zero exit",
            )
        return lines

    def stop(self, section: str, values: Mapping[str, str]) -> list[str]:
        lines: list[str] = []
        if "stopsignal" in values:
            name = _signal_name(values["stopsignal"])
            if name is not None:
                lines.append(f"  signal: {name}")
            else:
                self.warn(
                    self.positions.line(section, "stopsignal"),
                    f"[{section}] stopsignal={values['stopsignal'].strip()!r} is not a signal;"
                    " svcorch will send TERM",
                )
        if "stopwaitsecs" in values:
            seconds = self.integer(values, section, "stopwaitsecs", default=10)
            lines.append(f"  timeout: {seconds}s")
        block = ["stop:", *lines] if lines else []
        if values.keys() & _GROUP_KILL_KEYS:
            # beside `stop:`, not under it: a comment alone there would make `stop` null
            block.append("# stopasgroup/killasgroup: svcorch always signals the process group")
        return block

    def autostart(self, section: str, values: Mapping[str, str]) -> list[str]:
        setting = values.get("autostart", "true").strip().lower()
        if setting in _FALSE:
            return [
                "# autostart=false: started only when named (`svcorch up NAME`)"
                " or with --profile manual",
                "profiles: [manual]",
            ]
        if setting not in _TRUE:
            self.warn(
                self.positions.line(section, "autostart"),
                f"[{section}] autostart={setting!r} is not true or false; treated as true",
            )
        return []

    def dropped(self, section: str, values: Mapping[str, str]) -> list[str]:
        lines: list[str] = []
        logs = sorted(values.keys() & _LOG_KEYS)
        if logs:
            lines.append(
                "# logs: svcorch keeps its own (svcorch logs NAME); dropped " + ", ".join(logs)
            )
        for key in values:
            line = self.positions.line(section, key)
            if key in _UNSUPPORTED:
                self.warn(line, f"[{section}] {key} dropped: {_UNSUPPORTED[key]}")
            elif key not in _MAPPED | _LOG_KEYS | _GROUP_KILL_KEYS:
                self.warn(line, f"[{section}] unknown key {key!r} dropped")
        return lines

    def integer(self, values: Mapping[str, str], section: str, key: str, *, default: int) -> int:
        if key not in values:
            return default
        text = values[key].strip()
        if text.isdigit():
            return int(text)
        self.warn(
            self.positions.line(section, key),
            f"[{section}] {key}={text!r} is not a whole number; using {default}",
        )
        return default

    # -- names and expansions ------------------------------------------------------------------

    def service_name(self, raw: str, section: str, line: int) -> str:
        readable = re.sub(r"\{\{(.*?)\}\}", lambda m: "_".join(_WORDS.findall(m.group(1))), raw)
        name = re.sub(r"[^a-z0-9_.-]+", "-", readable.lower()).lstrip("_.-")
        name = name or f"program-{line}"
        unique, counter = name, 2
        while unique in self.names:
            unique, counter = f"{name}-{counter}", counter + 1
        self.names.add(unique)
        if unique != raw:
            self.warn(
                line,
                f"[{section}] becomes service {unique!r} (names must match"
                f" {SERVICE_NAME.pattern} and be unique)",
            )
        return unique

    def translate(
        self, value: str, section: str, key: str, context: Mapping[str, str | None]
    ) -> str:
        """supervisord's ``%(...)s`` and template ``{{...}}`` -> svcorch's ``${...}``."""
        line = self.positions.line(section, key)
        placeholders: dict[str, str] = {}

        def replace(match: re.Match[str]) -> str:
            text = match.group(0)
            if text == "%%":
                return "%"
            if text == "$":
                return "$$"  # svcorch would read a lone $ as the start of a variable
            if match.group("template") is not None:
                variable = template_variable(match.group("template"))
                placeholders[text] = variable
                return f"${{{variable}}}"
            if match.group("block") is not None:
                self.warn(line, f"[{section}] {key}: template block {text} left as written")
                return text
            return self.expansion(match.group("name"), match.group("spec"), expand, context, where)

        def expand(raw: str) -> str:
            return _EXPANSION.sub(replace, raw)

        where = (line, section, key)
        result = expand(value)
        if placeholders:
            listed = ", ".join(f"{p} as ${{{v}}}" for p, v in placeholders.items())
            plural = "s" if len(placeholders) > 1 else ""
            self.warn(
                line,
                f"[{section}] {key}: template placeholder{plural} left for you to fill in:"
                f" {listed} (set in the environment or an env_file, or edit the value)",
            )
        return result

    def expansion(
        self,
        name: str,
        spec: str,
        expand: Callable[[str], str],
        context: Mapping[str, str | None],
        where: tuple[int, str, str],
    ) -> str:
        if name.startswith("ENV_"):
            return f"${{{name.removeprefix('ENV_')}}}"
        value = context.get(name)
        if value is None:
            return self.unresolved(name, spec, where)
        if name in ("process_num", "numprocs"):
            return ("%" + spec) % (int(value) if spec.endswith("d") else value)
        return expand(value)  # program_name may itself hold a template placeholder

    def unresolved(self, name: str, spec: str, where: tuple[int, str, str]) -> str:
        line, section, key = where
        if name == "here":
            self.warn(
                line,
                f"[{section}] {key}: %(here)s (the folder of supervisord.conf) left as"
                " ${SUPERVISOR_HERE}: set it, or import with the file's absolute path",
            )
            return "${SUPERVISOR_HERE}"
        if name == "host_node_name":
            self.warn(line, f"[{section}] {key}: %(host_node_name)s became ${{HOSTNAME}}")
            return "${HOSTNAME}"
        variable = "SUPERVISOR_" + ("_".join(_WORDS.findall(name)).upper() or "VALUE")
        self.warn(
            line, f"[{section}] {key}: unknown expansion %({name}){spec} left as ${{{variable}}}"
        )
        return f"${{{variable}}}"


def _signal_name(text: str) -> str | None:
    """``INT``, ``SIGINT`` or ``2`` -> ``INT``; None if it names no signal."""
    name = text.strip().upper().removeprefix("SIG")
    if name.isdigit():
        try:
            return signal.Signals(int(name)).name.removeprefix("SIG")
        except ValueError:
            return None
    return name if f"SIG{name}" in signal.Signals.__members__ else None


def _split_pairs(text: str) -> list[str]:
    """Split at commas outside double or single quotes; blank pieces are dropped."""
    pieces: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for char in text:
        if quote is None and char == ",":
            pieces.append("".join(current))
            current = []
            continue
        if char in "\"'" and quote in (None, char):
            quote = None if quote == char else char
        current.append(char)
    pieces.append("".join(current))
    return [piece for piece in pieces if piece.strip()]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


# -- writing -----------------------------------------------------------------------------------


def _render(
    source: str, top_env: Mapping[str, str], programs: list[_Program], ignored: list[str]
) -> str:
    lines = [
        f"# services.yaml skeleton converted from {source} by `svcorch import-supervisor`.",
        "# supervisord has no dependencies and no readiness checks: fill in each service's",
        "# depends_on and ready probe, then run `svcorch validate`.",
    ]
    if ignored:
        sections = ", ".join(f"[{name}]" for name in ignored)
        lines.append(f"# Not converted (settings of supervisord itself): {sections}")
    lines.append("version: 1")
    if top_env:
        lines.append("env:  # from [supervisord] environment")
        lines += [f"  {_scalar(key)}: {_scalar(value)}" for key, value in top_env.items()]
    if not programs:
        lines.append("services: {}")
    else:
        lines.append("services:")
    for program in programs:
        lines.append(f"  # [{program.section}] {source}:{program.line}")
        lines.append(f"  {program.name}:")
        lines += [f"    {body_line}" for body_line in program.body]
    return "\n".join(lines) + "\n"
