"""Convert a supervisord.conf into a services.yaml skeleton, and say what did not carry over.

supervisord knows processes, not dependencies or readiness: ``priority`` is only a start-up
order, and a program counts as started once it has stayed up for ``startsecs``. The skeleton
keeps what maps (command, directory, environment, restart and stop settings). Where the user
must decide, it leaves a comment: ``depends_on`` and a ``ready`` probe. Everything dropped,
guessed or left as a placeholder is a warning ``file:line: message``. Nothing is printed here.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import yaml

from svcorch.errors import UsageError
from svcorch.importers import ini
from svcorch.model import SERVICE_NAME


@dataclass(frozen=True)
class ImportResult:
    """The skeleton's text and every located warning, in file order."""

    yaml: str
    warnings: list[str]


def convert(
    text: str,
    *,
    source: str = "supervisord.conf",
    read: ini.ReadFile = ini.read_text,
    environ: Mapping[str, str] | None = None,
) -> ImportResult:
    """Translate supervisord.conf ``text`` and the files its ``[include]`` names (read with
    ``read``, globbed relative to ``source``'s folder). Raise UsageError if it is not
    supervisord syntax.

    ``source`` names the file in warnings, as given. If it is an absolute path, ``%(here)s``
    expands to its folder; otherwise to ``${SUPERVISOR_HERE}``, with a warning.
    """
    config = ini.load(text, source, read=read, environ=environ)
    _require_supervisor_sections(config)
    return _Converter(config).run()


def _require_supervisor_sections(config: ini.Config) -> None:
    for section in config.sections:
        if section in _SUPERVISOR_SECTIONS or section.startswith(_SUPERVISOR_PREFIXES):
            return
    first = min((s.origin for s in config.sections.values()), key=lambda o: o.line, default=None)
    where = first or ini.Origin(config.main, 1)
    raise UsageError(
        f"{where}: not a supervisord config: no [program:x], [group:x] or [supervisord] section"
    )


_DAEMON_SECTIONS = frozenset({"supervisorctl", "unix_http_server", "inet_http_server"})
_SUPERVISOR_SECTIONS = _DAEMON_SECTIONS | {"supervisord", "include"}
_SUPERVISOR_PREFIXES = ("program:", "group:", "eventlistener:", "fcgi-program:", "rpcinterface:")


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
        "user",
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
    """One ``[program:x]`` in svcorch terms: its service name, where it was, its YAML lines
    and the notes (every loss and guess) shown as comments above it."""

    name: str
    section: str
    origin: ini.Origin
    body: list[str]


@dataclass(frozen=True)
class _Group:
    name: str
    origin: ini.Origin
    members: list[str]
    priority: str | None


_ENV_ONLY = re.compile(r"%\(ENV_(?P<name>[^)]*)\)s")
_LISTENER_EVENTS = {
    "PROCESS_STATE": "every state change below",
    "PROCESS_STATE_STARTING": "starting",
    "PROCESS_STATE_RUNNING": "ready",
    "PROCESS_STATE_BACKOFF": "backoff",
    "PROCESS_STATE_STOPPING": "stopping",
    "PROCESS_STATE_STOPPED": "stopped",
    "PROCESS_STATE_EXITED": "exited",
    "PROCESS_STATE_FATAL": "fatal (restart budget spent)",
}


class _Converter:
    def __init__(self, config: ini.Config) -> None:
        self.config = config
        self.warnings: list[tuple[ini.Origin, str | None, str]] = list(config.warnings)
        self.names: set[str] = set()
        self.group_of: dict[str, _Group] = {}
        self.daemon_cwd: str | None = None
        self.top_env: dict[str, str] = {}

    def warn(self, origin: ini.Origin, section: str | None, message: str) -> None:
        self.warnings.append((origin, section, message))

    def run(self) -> ImportResult:
        sections = self.config.sections
        groups = self.read_groups()
        if "supervisord" in sections:
            self.supervisord(sections["supervisord"])
        programs: list[_Program] = []
        ignored: list[str] = []
        listeners: list[str] = []
        for name, section in sections.items():
            if name.startswith("program:"):
                programs.append(self.program(section))
            elif name in _DAEMON_SECTIONS | {"supervisord"} or name.startswith("rpcinterface:"):
                ignored.append(name)
            elif name.startswith(("group:", "include")):
                continue  # read_groups and the reader reported them
            elif name.startswith("eventlistener:"):
                listeners += self.listener(section)
            elif name.startswith("fcgi-program:"):
                self.warn(
                    section.origin,
                    None,
                    f"[{name}] skipped: svcorch has no fcgi-program (a socket shared by"
                    " processes it opens itself); run the program with its own socket",
                )
            else:
                self.warn(section.origin, None, f"[{name}] skipped: not a supervisord section")
        if not programs:
            origin = ini.Origin(self.config.main, 1)
            self.warn(origin, None, "no [program:x] sections: the catalogue has no services")
        order = {file: index for index, file in enumerate(self.config.files)}
        ordered = sorted(self.warnings, key=lambda w: (order.get(w[0].file, 0), w[0].line))
        text = _render(self, programs, ignored, groups, listeners, ordered)
        return ImportResult(text, [f"{origin}: {message}" for origin, _, message in ordered])

    # -- sections ------------------------------------------------------------------------------

    def read_groups(self) -> list[_Group]:
        sections = self.config.sections
        programs = {
            s.removeprefix("program:").strip() for s in sections if s.startswith("program:")
        }
        groups = []
        for name, section in sections.items():
            if not name.startswith("group:"):
                continue
            members = [m.strip() for m in section.values.get("programs", "").split(",")]
            group = _Group(
                name.removeprefix("group:").strip(),
                section.origin,
                [m for m in members if m],
                section.values.get("priority"),
            )
            groups.append(group)
            for member in group.members:
                self.group_of[member] = group
            missing = [m for m in group.members if m not in programs]
            if missing:
                self.warn(
                    section.origin, None, f"[{name}] names unknown programs: {', '.join(missing)}"
                )
            priority = f", priority={group.priority}" if group.priority else ""
            self.warn(
                section.origin,
                None,
                f"[{name}] kept as a comment on its programs ({', '.join(group.members) or 'none'}"
                f"{priority}): svcorch has no groups; start them together with"
                " `svcorch up NAME...`",
            )
        return groups

    def supervisord(self, section: ini.Section) -> None:
        """``environment`` (passed to every program) and ``directory`` (their default cwd)."""
        context: dict[str, str | None] = {"here": self.here(section)}
        values = section.values
        if "environment" in values:
            text = self.translate(values["environment"], section, "environment", context)
            self.top_env = self.environment(text, section)
        if "directory" in values:
            self.daemon_cwd = self.translate(values["directory"], section, "directory", context)
        if "user" in values:
            self.warn(
                section.at("user"),
                None,
                f"[supervisord] user={values['user']}: svcorch runs as whoever starts it (root,"
                " to switch users); each program's user= became its user:",
            )

    def program(self, section: ini.Section) -> _Program:
        raw_name = section.name.removeprefix("program:").strip()
        name = self.service_name(raw_name, section)
        values = section.values
        group = self.group_of.get(raw_name)
        replicas = self.count(section, "numprocs", default=1)
        start = self.integer(section, "numprocs_start", default=0)
        context: dict[str, str | None] = {
            "program_name": raw_name,
            "group_name": group.name if group else raw_name,
            "numprocs": str(replicas),
            "here": self.here(section),
        }
        own_env = self.raw_environment(values.get("environment", ""))
        body = self.comments(section, group)
        body += self.command(section, context, replicas, start, own_env)
        body += self.cwd(section, context, replicas, start, own_env)
        body += self.program_env(section, context, replicas, start, own_env)
        body += self.replicas(section, replicas, start)
        body += self.account(section, context, own_env)
        body += self.restart(section)
        body += self.stop(section)
        body += self.autostart(section)
        body += self.dropped(section)
        return _Program(name, section.name, section.origin, body)

    def comments(self, section: ini.Section, group: _Group | None) -> list[str]:
        values = section.values
        priority = values.get("priority", "999").strip()
        startsecs = values.get("startsecs", "1").strip()
        lines = [
            f"# depends_on: fill in (supervisord has no dependencies; priority={priority})",
            f"# ready: fill in a probe (supervisord only waited startsecs={startsecs} for the"
            " process to stay up)",
        ]
        if group is not None:
            priority = f" priority={group.priority}" if group.priority else ""
            lines.append(
                f"# group: {group.name} ([group:{group.name}] {group.origin}{priority};"
                f" programs={','.join(group.members)}): `svcorch up {' '.join(group.members)}`"
            )
        return lines

    def listener(self, section: ini.Section) -> list[str]:
        """An event listener: which of its events svcorch reports, and what is not kept."""
        values = section.values
        events = [e.strip() for e in values.get("events", "").split(",") if e.strip()]
        mapped = [e for e in events if e in _LISTENER_EVENTS]
        unmapped = [e for e in events if e not in _LISTENER_EVENTS]
        command = " ".join(values.get("command", "").split())
        lines = [f"[{section.name}] {section.origin}: events={','.join(events) or '(none)'}"]
        if mapped:
            states = ", ".join(f"{e} = {_LISTENER_EVENTS[e]}" for e in mapped)
            lines.append(
                f"  mapped: {states}; svcorch reports a service turning unhealthy and"
                " recovering to the `notify:` receivers of `svcorch check --watch`"
            )
        if unmapped:
            lines.append(
                f"  not mapped: {', '.join(unmapped)} (svcorch has no tick, log, communication"
                " or supervisor-state events)"
            )
        lines.append(
            f"  not run: command={command or '(none)'} speaks supervisord's listener protocol"
            " (READY/RESULT on stdin/stdout); an exec notifier gets the event as JSON on stdin"
            " and SVCORCH_* variables. A listener that stops everything when a process dies"
            " has no svcorch equivalent: restart policies and `fatal` keep the rest running"
        )
        self.warn(
            section.origin,
            None,
            f"[{section.name}] not converted: "
            + (
                f"{', '.join(mapped)} map to `notify:` (commented in the output); "
                if mapped
                else ""
            )
            + (f"no svcorch event for {', '.join(unmapped)}; " if unmapped else "")
            + "its command speaks supervisord's listener protocol",
        )
        return lines

    # -- keys ----------------------------------------------------------------------------------

    def command(
        self,
        section: ini.Section,
        context: dict[str, str | None],
        replicas: int | str,
        start: int,
        own_env: Mapping[str, str],
    ) -> list[str]:
        if "command" not in section.values:
            self.warn(section.origin, section.name, f"[{section.name}] has no command: add one")
            return ["# command: fill in (supervisord.conf gave none)"]
        command = " ".join(section.values["command"].split("\n"))
        value = self.translate(
            command, section, "command", context, replicas=(replicas, start), own_env=own_env
        )
        return [f"command: {_scalar(value)}"]

    def cwd(
        self,
        section: ini.Section,
        context: dict[str, str | None],
        replicas: int | str,
        start: int,
        own_env: Mapping[str, str],
    ) -> list[str]:
        if "directory" in section.values:
            cwd = self.translate(
                section.values["directory"],
                section,
                "directory",
                context,
                replicas=(replicas, start),
                own_env=own_env,
            )
            return [f"cwd: {_scalar(cwd)}"]
        if self.daemon_cwd is not None:
            return [f"cwd: {_scalar(self.daemon_cwd)}  # from [supervisord] directory="]
        return []

    def replicas(self, section: ini.Section, replicas: int | str, start: int) -> list[str]:
        values = section.values
        lines: list[str] = []
        if replicas != 1:
            shown = _scalar(replicas) if isinstance(replicas, str) else str(replicas)
            lines.append(f"replicas: {shown}  # from numprocs")
            if start:
                lines.append(
                    f"# numprocs_start={start}: replica i is supervisord's process_num {start}+i"
                    " (${replica+" + str(start) + "} in the values above)"
                )
        name = values.get("process_name", "%(program_name)s").strip()
        if name != "%(program_name)s":
            note = f"process_name={name}: svcorch names its processes after the service" + (
                " (NAME#0 .. NAME#N-1 for replicas)" if replicas != 1 else ""
            )
            self.warn(section.at("process_name"), section.name, f"[{section.name}] {note}")
        return lines

    def account(
        self, section: ini.Section, context: dict[str, str | None], own_env: Mapping[str, str]
    ) -> list[str]:
        if "user" not in section.values:
            return []
        user = self.translate(
            section.values["user"].strip(), section, "user", context, own_env=own_env
        )
        return [f"user: {_scalar(user)}"]

    def program_env(
        self,
        section: ini.Section,
        context: dict[str, str | None],
        replicas: int | str,
        start: int,
        own_env: Mapping[str, str],
    ) -> list[str]:
        if "environment" not in section.values:
            return []
        raw = section.values["environment"].strip()
        if re.fullmatch(r"\{\{.*?\}\}", raw):
            self.warn(
                section.at("environment"),
                section.name,
                f"[{section.name}] environment is the template placeholder {raw}: fill in env: by"
                " hand, or list the variables in an env_file",
            )
            return [f"# env: fill in (supervisord.conf had environment = {raw})"]
        text = self.translate(raw, section, "environment", context, replicas=(replicas, start))
        env = self.environment(text, section)
        return ["env:", *(f"  {_scalar(k)}: {_scalar(v)}" for k, v in env.items())] if env else []

    def raw_environment(self, text: str) -> dict[str, str]:
        """The program's own environment before expansion: supervisord lets its other keys
        use these as ``%(ENV_X)s``, which svcorch's ``${X}`` would not find."""
        env: dict[str, str] = {}
        for pair in _split_pairs(" ".join(text.split("\n"))):
            key, equals, value = pair.partition("=")
            if equals and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
                env[key.strip()] = _unquote(value.strip())
        return env

    def environment(self, text: str, section: ini.Section) -> dict[str, str]:
        """``KEY="v",KEY2=v2`` -> a mapping; a malformed pair is a warning, not a guess."""
        env: dict[str, str] = {}
        for pair in _split_pairs(" ".join(text.split("\n"))):
            key, equals, value = pair.partition("=")
            key = key.strip()
            if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                self.warn(
                    section.at("environment"),
                    section.name,
                    f"[{section.name}] environment: cannot read {pair.strip()!r}; dropped",
                )
                continue
            env[key] = _unquote(value.strip())
        return env

    def restart(self, section: ini.Section) -> list[str]:
        values = section.values
        raw = values.get("autorestart", "unexpected").strip()
        setting = raw.lower()
        if setting in _TRUE:
            policy = "always"
        elif setting in _FALSE:
            policy = "no"
        else:
            policy = "on-failure"
            if _ENV_ONLY.fullmatch(raw):
                self.warn(
                    section.at("autorestart"),
                    section.name,
                    f"[{section.name}] autorestart={raw}: a restart policy cannot come from a"
                    " variable in svcorch (true, false, unexpected are always, no, on-failure);"
                    " converted as unexpected (on-failure)",
                )
            elif setting != "unexpected":
                self.warn(
                    section.at("autorestart"),
                    section.name,
                    f"[{section.name}] autorestart={raw} is not true, false or unexpected;"
                    " converted as unexpected (on-failure)",
                )
        note = (
            "  # supervisord's default autorestart=unexpected"
            if "autorestart" not in values
            else ""
        )
        lines = ["restart:", f"  policy: {_scalar(policy)}{note}"]
        if "startretries" in values:
            retries = self.count(section, "startretries", default=3)
            lines.append(f"  max_restarts: {retries}  # from startretries")
        exitcodes = values.get("exitcodes", "0").replace(" ", "")
        if exitcodes != "0" and policy == "on-failure":
            self.warn(
                section.at("exitcodes"),
                section.name,
                f"[{section.name}] exitcodes={exitcodes}: svcorch's on-failure restarts after any"
                " non-zero exit",
            )
        return lines

    def stop(self, section: ini.Section) -> list[str]:
        values = section.values
        lines: list[str] = []
        if "stopsignal" in values:
            name = _signal_name(values["stopsignal"])
            if name is not None:
                lines.append(f"  signal: {name}")
            else:
                self.warn(
                    section.at("stopsignal"),
                    section.name,
                    f"[{section.name}] stopsignal={values['stopsignal'].strip()!r} is not a"
                    " signal; svcorch will send TERM",
                )
        if "stopwaitsecs" in values:
            seconds = self.count(section, "stopwaitsecs", default=10)
            lines.append(f"  timeout: {seconds}s")
        block = ["stop:", *lines] if lines else []
        if values.keys() & _GROUP_KILL_KEYS:
            # beside `stop:`, not under it: a comment alone there would make `stop` null
            block.append("# stopasgroup/killasgroup: svcorch always signals the process group")
        return block

    def autostart(self, section: ini.Section) -> list[str]:
        raw = section.values.get("autostart", "true").strip()
        if env := _ENV_ONLY.fullmatch(raw):
            return [f"autostart: ${{{env.group('name')}}}  # from autostart={raw}: true or false"]
        setting = raw.lower()
        if setting in _FALSE:
            return ["autostart: false  # started only when named (`svcorch up NAME`)"]
        if setting not in _TRUE:
            self.warn(
                section.at("autostart"),
                section.name,
                f"[{section.name}] autostart={raw} is not true or false; treated as true",
            )
        return []

    def dropped(self, section: ini.Section) -> list[str]:
        values = section.values
        lines: list[str] = []
        logs = sorted(values.keys() & _LOG_KEYS)
        if logs:
            lines.append(
                "# logs: svcorch keeps its own (svcorch logs NAME); dropped " + ", ".join(logs)
            )
        for key in values:
            origin = section.at(key)
            if key in _UNSUPPORTED:
                self.warn(
                    origin, section.name, f"[{section.name}] {key} dropped: {_UNSUPPORTED[key]}"
                )
            elif key not in _MAPPED | _LOG_KEYS | _GROUP_KILL_KEYS:
                self.warn(origin, section.name, f"[{section.name}] unknown key {key!r} dropped")
        return lines

    def integer(self, section: ini.Section, key: str, *, default: int) -> int:
        if key not in section.values:
            return default
        text = section.values[key].strip()
        if text.isdigit():
            return int(text)
        self.warn(
            section.at(key),
            section.name,
            f"[{section.name}] {key}={text} is not a whole number; using {default}",
        )
        return default

    def count(self, section: ini.Section, key: str, *, default: int) -> int | str:
        """A whole number, or ``${X}`` for ``%(ENV_X)s`` (svcorch reads it at load time)."""
        text = section.values.get(key, "").strip()
        if env := _ENV_ONLY.fullmatch(text):
            return f"${{{env.group('name')}}}"
        return self.integer(section, key, default=default)

    # -- names and expansions ------------------------------------------------------------------

    def here(self, section: ini.Section) -> str:
        """``%(here)s`` of a section: its file's folder when the path is absolute, otherwise
        ``${SUPERVISOR_HERE}`` (the main file's folder), plus the way to the included file."""
        folder = os.path.dirname(section.origin.file)
        if os.path.isabs(folder):
            return folder
        main = os.path.dirname(self.config.main)
        relative = os.path.relpath(folder or ".", main or ".")
        return "${SUPERVISOR_HERE}" + ("" if relative == "." else f"/{relative}")

    def service_name(self, raw: str, section: ini.Section) -> str:
        readable = re.sub(r"\{\{(.*?)\}\}", lambda m: "_".join(_WORDS.findall(m.group(1))), raw)
        name = re.sub(r"[^a-z0-9_.-]+", "-", readable.lower()).lstrip("_.-")
        name = name or f"program-{section.origin.line}"
        unique, counter = name, 2
        while unique in self.names:
            unique, counter = f"{name}-{counter}", counter + 1
        self.names.add(unique)
        if unique != raw:
            self.warn(
                section.origin,
                section.name,
                f"[{section.name}] becomes service {unique!r} (names must match"
                f" {SERVICE_NAME.pattern} and be unique)",
            )
        return unique

    def translate(
        self,
        value: str,
        section: ini.Section,
        key: str,
        context: Mapping[str, str | None],
        *,
        replicas: tuple[int | str, int] = (1, 0),
        own_env: Mapping[str, str] | None = None,
    ) -> str:
        """supervisord's ``%(...)s`` and template ``{{...}}`` -> svcorch's ``${...}``."""
        origin = section.at(key)
        placeholders: dict[str, str] = {}
        where = _Where(origin, section.name, key, replicas, own_env or {})

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
                self.warn(
                    origin,
                    section.name,
                    f"[{section.name}] {key}: template block {text} left as written",
                )
                return text
            return self.expansion(match.group("name"), match.group("spec"), expand, context, where)

        def expand(raw: str) -> str:
            return _EXPANSION.sub(replace, raw)

        result = expand(value)
        if placeholders:
            listed = ", ".join(f"{p} as ${{{v}}}" for p, v in placeholders.items())
            plural = "s" if len(placeholders) > 1 else ""
            self.warn(
                origin,
                section.name,
                f"[{section.name}] {key}: template placeholder{plural} left for you to fill in:"
                f" {listed} (set in the environment or an env_file, or edit the value)",
            )
        return result

    def expansion(
        self,
        name: str,
        spec: str,
        expand: Callable[[str], str],
        context: Mapping[str, str | None],
        where: _Where,
    ) -> str:
        if name.startswith("ENV_"):
            return self.env_value(name.removeprefix("ENV_"), expand, where)
        if name == "process_num":
            return self.process_num(spec, where)
        if name == "here":
            return self.here_value(context, where)
        value = context.get(name)
        if value is None:
            return self.unresolved(name, spec, where)
        if name == "numprocs":
            return ("%" + spec) % (int(value) if spec.endswith("d") and value.isdigit() else value)
        return expand(value)  # program_name may itself hold a template placeholder

    def env_value(self, variable: str, expand: Callable[[str], str], where: _Where) -> str:
        """``%(ENV_X)s`` -> ``${X}`` (its case kept); the program's own ``environment=``
        value if it sets X (svcorch's ``${X}`` does not look there)."""
        if variable in where.own_env:
            return expand(where.own_env[variable])
        return f"${{{variable}}}"

    def here_value(self, context: Mapping[str, str | None], where: _Where) -> str:
        here = context.get("here") or "${SUPERVISOR_HERE}"
        if here.startswith("${SUPERVISOR_HERE}"):
            self.warn(
                where.origin,
                where.section,
                f"[{where.section}] {where.key}: %(here)s (the folder of"
                f" {os.path.basename(self.config.main)}) left as ${{SUPERVISOR_HERE}}: set"
                " it, or import with the file's absolute path",
            )
        return here

    def process_num(self, spec: str, where: _Where) -> str:
        count, start = where.replicas
        if count == 1:
            return ("%" + spec) % (start if spec.endswith("d") else str(start))
        offset = f"+{start}" if start else ""
        width = re.fullmatch(r"0(\d+)d", spec)
        if width:
            return f"${{replica{offset}:0{width.group(1)}}}"
        if spec not in ("d", "s", "r"):
            self.warn(
                where.origin,
                where.section,
                f"[{where.section}] {where.key}: %(process_num){spec} became ${{replica{offset}}}"
                " (svcorch pads with zeros only: ${replica:0N})",
            )
        return f"${{replica{offset}}}"

    def unresolved(self, name: str, spec: str, where: _Where) -> str:
        if name == "host_node_name":
            self.warn(
                where.origin,
                where.section,
                f"[{where.section}] {where.key}: %(host_node_name)s became ${{HOSTNAME}}",
            )
            return "${HOSTNAME}"
        variable = "SUPERVISOR_" + ("_".join(_WORDS.findall(name)).upper() or "VALUE")
        self.warn(
            where.origin,
            where.section,
            f"[{where.section}] {where.key}: unknown expansion %({name}){spec} left as"
            f" ${{{variable}}}",
        )
        return f"${{{variable}}}"


@dataclass(frozen=True)
class _Where:
    """The value being translated: where it is, and what its expansions may refer to."""

    origin: ini.Origin
    section: str
    key: str
    replicas: tuple[int | str, int]  # numprocs (or ${X}) and numprocs_start
    own_env: Mapping[str, str]


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
    converter: _Converter,
    programs: list[_Program],
    ignored: list[str],
    groups: list[_Group],
    listeners: list[str],
    warnings: list[tuple[ini.Origin, str | None, str]],
) -> str:
    config = converter.config
    lines = [
        f"# services.yaml skeleton converted from {config.main} by `svcorch import-supervisor`.",
        "# supervisord has no dependencies and no readiness checks: fill in each service's",
        "# depends_on and ready probe, then run `svcorch validate`.",
    ]
    if len(config.files) > 1:
        lines.append("# Read: " + ", ".join(config.files))
    if ignored:
        sections = ", ".join(f"[{name}]" for name in ignored)
        lines.append(f"# Not converted (settings of supervisord itself): {sections}")
    for group in groups:
        priority = f", priority={group.priority}" if group.priority else ""
        lines.append(
            f"# [group:{group.name}] {group.origin}: programs={','.join(group.members)}"
            f"{priority} (start together: `svcorch up {' '.join(group.members)}`)"
        )
    general = [(o, m) for o, section, m in warnings if not _is_program(section)]
    if general:
        lines.append("# Conversion notes:")
        lines += [f"#   {origin}: {message}" for origin, message in general]
    lines.append("version: 1")
    if converter.top_env:
        lines.append("env:  # from [supervisord] environment")
        lines += [f"  {_scalar(key)}: {_scalar(value)}" for key, value in converter.top_env.items()]
    if listeners:
        lines.append("# Event listeners:")
        lines += [f"#   {line}" for line in listeners]
        lines.append("# notify:  # receives health changes from `svcorch check --watch`")
        lines.append("#   - {type: exec, command: ./notify.sh}  # reads the event JSON on stdin")
    lines.append("services:" if programs else "services: {}")
    for program in programs:
        lines.append(f"  # [{program.section}] {program.origin}")
        for origin, section, message in warnings:
            if section == program.section:
                lines.append(f"  # note: {origin}: {message}")
        lines.append(f"  {program.name}:")
        lines += [f"    {body_line}" for body_line in program.body]
    return "\n".join(lines) + "\n"


def _is_program(section: str | None) -> bool:
    return section is not None and section.startswith("program:")
