"""systemd: one unit per service plus ``<project>.target``.

``Requires=`` + ``After=`` from ``depends_on``. ``After=`` waits for the dependency's start
job, and a unit's start job ends only when the service is ready: ``Type=exec`` and an
``ExecStartPost=svcorch check --wait`` of its own readiness probe (``Type=notify`` for a probe
type named ``notify``, whose service tells systemd itself); a oneshot is ``Type=oneshot`` +
``RemainAfterExit=yes``, whose start job ends when it exited 0 (``completed``); an external
service is a oneshot unit that only waits for its probe. Secrets go to ``EnvironmentFile=``s
written 0600.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

from svcorch.durations import format_duration
from svcorch.exporters import base, gates
from svcorch.exporters.base import Export, ExportFile, ExportRequest, Warnings
from svcorch.model import Condition, Kind, RestartPolicy, Service

# what systemd itself searches for a bare ExecStart name, after svcorch's own bin directory
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PLAIN_WORD = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def export(request: ExportRequest) -> Export:
    base.refuse_inline_secrets(request)
    return _Systemd(request).run()


class _Systemd:
    def __init__(self, request: ExportRequest) -> None:
        self.request = request
        self.project = request.project
        self.warnings = Warnings(request.graph.start_order())
        self.checked: dict[str, dict[str, object]] = {}
        self.bindir = str(Path(sys.executable).parent)

    def unit(self, name: str) -> str:
        return f"{self.project}-{name}.service"

    def path(self, name: str) -> str:
        return str(self.request.out_dir / name)

    def run(self) -> Export:
        bodies = {s.name: self.service_unit(s) for s in self.request.services()}
        built = gates.build(self.project, self.checked)
        files: dict[str, ExportFile] = {}
        for service in self.request.services():
            text = bodies[service.name]
            if self.has_gate_secrets(service.name):
                text = text.replace("[Service]\n", f"[Service]\n{self.gate_env_line()}", 1)
            files[self.unit(service.name)] = ExportFile(text)
        files[f"{self.project}.target"] = ExportFile(self.target())
        if self.checked:
            files[base.GATES_FILE] = ExportFile(built.text)
        files |= base.secret_env_files(self.request, self.project, built.secrets, _env_file)
        logs = str(self.request.state_dir / "logs")
        directories = (logs,) if any(_log_probe(s) for s in self.request.services()) else ()
        return Export(files=files, warnings=self.warnings.lines(), directories=directories)

    def has_gate_secrets(self, name: str) -> bool:
        if name not in self.checked:
            return False
        return bool(gates.build(self.project, {name: self.checked[name]}).secrets)

    def gate_env_line(self) -> str:
        return f"EnvironmentFile={_escape(self.path(base.GATES_ENV))}\n"

    def target(self) -> str:
        wants = " ".join(self.unit(s.name) for s in self.request.services())
        return (
            "# Written by `svcorch export systemd`.\n"
            "[Unit]\n"
            f"Description={_escape(self.project)} (every service; exported by svcorch)\n"
            f"Wants={wants}\n"
            "\n[Install]\n"
            "WantedBy=multi-user.target\n"
        )

    # -- one unit -----------------------------------------------------------------------------

    def service_unit(self, service: Service) -> str:
        lines = ["# Written by `svcorch export systemd`.", "[Unit]"]
        lines.append(f"Description={_escape(self.description(service))}")
        lines.append(f"PartOf={self.project}.target")
        lines += self.ordering(service)
        restart = service.restart
        if restart.policy is not RestartPolicy.NO:
            lines.append(f"StartLimitIntervalSec={base.seconds(restart.window)}")
            lines.append(f"StartLimitBurst={restart.max_restarts + 1}")
        lines += ["", "[Service]"]
        if service.kind is Kind.EXTERNAL:
            lines += self.external(service)
        else:
            lines += self.spawned(service)
        lines += ["", "[Install]", f"WantedBy={self.project}.target", ""]
        return "\n".join(lines)

    def description(self, service: Service) -> str:
        text = f"{self.project} {service.name}"
        return text + (f": {service.description}" if service.description else "")

    def ordering(self, service: Service) -> list[str]:
        lines = []
        for dependency, condition, restart in self.request.dependencies(service):
            unit = self.unit(dependency.name)
            if condition is Condition.STARTED:
                self.warnings.add(
                    service.name,
                    f"waits for {dependency.name!r} to start: systemd's After= waits until it"
                    " is ready (its start job includes the readiness check)",
                )
            lines += [f"Requires={unit}", f"After={unit}"]
            if restart:
                # a stop or restart of the dependency is propagated to this unit
                lines.append(f"PartOf={unit}")
        return lines

    def external(self, service: Service) -> list[str]:
        assert service.ready is not None  # the model requires a probe for external services
        self.checked[service.name] = self.check_entry(service)
        return [
            "Type=oneshot",
            "RemainAfterExit=yes",
            f"ExecStart={self.gate_command(service)}",
            f"TimeoutStartSec={self.start_timeout(service)}",
        ]

    def account(self, service: Service) -> list[str]:
        """``User=``/``Group=`` (systemd adds the user's supplementary groups and HOME itself);
        replicas have no plain-unit form: a warning."""
        lines = []
        if service.user is not None:
            lines.append(f"User={_escape(service.user)}")
        if service.group is not None:
            lines.append(f"Group={_escape(service.group)}")
        if service.replicas > 1:
            self.warnings.add(
                service.name,
                f"replicas: {service.replicas}: exported as one unit (systemd runs N copies as"
                " a template unit NAME@.service with instances NAME@0 .. NAME@N-1; write it by"
                " hand)",
            )
        return lines

    def spawned(self, service: Service) -> list[str]:
        lines = [f"Type={self.type(service)}"]
        if service.kind is Kind.ONESHOT:
            lines.append("RemainAfterExit=yes")
        lines.append(f"WorkingDirectory={_escape(str(self.cwd(service)))}")
        lines += self.account(service)
        lines += self.environment(service)
        log = _log_probe(service)
        if log:
            header = f"--- svcorch: {service.name} start #0 (systemd) ---"
            lines.append(f"ExecStartPre=/bin/echo {_word(header)}")
        lines.append(f"ExecStart={self.command(service)}")
        if (
            service.ready is not None
            and service.kind is Kind.MANAGED
            and self.type(service) == "exec"
        ):
            self.checked[service.name] = self.check_entry(service)
            lines.append(f"ExecStartPost={self.gate_command(service)}")
            lines.append(f"TimeoutStartSec={self.start_timeout(service)}")
        lines += self.stop(service)
        lines += self.restart(service)
        if log:
            lines.append(f"StandardOutput=append:{_escape(self.log_path(service))}")
            lines.append("StandardError=inherit")
        if service.liveness is not None:
            self.warnings.add(
                service.name,
                "liveness: systemd has no probe of its own (only the watchdog of services"
                " that notify it); not exported",
            )
        return lines

    def type(self, service: Service) -> str:
        if service.kind is Kind.ONESHOT:
            return "oneshot"
        if service.ready is not None and service.ready.type == "notify":
            return "notify"
        return "exec"

    def cwd(self, service: Service) -> Path:
        base_dir = self.request.catalogue.base_dir.absolute()
        return (base_dir / service.cwd) if service.cwd else base_dir

    def environment(self, service: Service) -> list[str]:
        plain, secret = base.environment(self.request.catalogue, service)
        plain = {"PATH": f"{self.bindir}:{SYSTEM_PATH}", **plain}
        lines = [f"Environment={_assignment(k, v)}" for k, v in plain.items()]
        if any(k not in service.env for k in secret):
            lines.append(f"EnvironmentFile={_escape(self.path(self.project + '.secrets.env'))}")
        if any(k in service.env for k in secret):
            own = f"{self.project}-{service.name}.secrets.env"
            lines.append(f"EnvironmentFile={_escape(self.path(own))}")
        return lines

    def command(self, service: Service) -> str:
        argv = service.argv()
        program = self.resolve(service, argv[0])
        return " ".join(_word(w) for w in [program, *argv[1:]])

    def resolve(self, service: Service, program: str) -> str:
        """systemd wants a full path (it searches only the system's directories): resolve it
        as svcorch would, from the service's directory and svcorch's own bin directory first."""
        if "/" in program:
            return str(self.cwd(service) / program)
        found = shutil.which(program, path=f"{self.bindir}:{SYSTEM_PATH}")
        if found is None:
            self.warnings.add(
                service.name,
                f"program {program!r} is not on this host's PATH: the unit names it as is",
            )
            return program
        return found

    def stop(self, service: Service) -> list[str]:
        lines = []
        if service.stop.command is not None:
            stop = service.stop.command
            argv = shlex.split(stop) if isinstance(stop, str) else list(stop)
            program = self.resolve(service, argv[0])
            lines.append("ExecStop=" + " ".join(_word(w) for w in [program, *argv[1:]]))
        lines += [
            f"KillSignal={service.stop.signal.name}",
            "KillMode=control-group",
            f"TimeoutStopSec={base.seconds(service.stop.timeout, minimum=0)}",
        ]
        return lines

    def restart(self, service: Service) -> list[str]:
        policy = service.restart.policy
        lines = [f"Restart={policy.value}"]
        if policy is not RestartPolicy.NO:
            lines.append(f"RestartSec={format_duration(service.restart.backoff)}")
        lost = base.restart_details_set(service, ("max_restarts", "window", "backoff"))
        if lost and policy is not RestartPolicy.NO:
            self.warnings.add(
                service.name,
                f"restart {base.restart_summary(service, lost)}: systemd 252 restarts every"
                " RestartSec, without a growing delay",
            )
        return lines

    # -- the readiness gate -------------------------------------------------------------------

    def check_entry(self, service: Service) -> dict[str, object]:
        assert service.ready is not None
        document = base.probe_document(service.ready)
        if service.ready.type == "exec":
            # the gate catalogue lives elsewhere: the probe's directory must not move
            probe_cwd = getattr(service.ready, "cwd", None)
            # (its environment is the unit's own: ExecStartPost inherits it)
            document["cwd"] = str(self.cwd(service) / probe_cwd if probe_cwd else self.cwd(service))
        return {"ready": document}

    def gate_command(self, service: Service) -> str:
        assert service.ready is not None
        argv = [
            self.request.svcorch,
            "-f",
            self.path(base.GATES_FILE),
            "--state-dir",
            str(self.request.state_dir),
            "check",
            "--wait",
            "--timeout",
            format_duration(service.ready.timeout),
            service.name,
        ]
        return " ".join(_word(w) for w in argv)

    def start_timeout(self, service: Service) -> int:
        """Long enough for the gate to end by itself: its timeout, one attempt, a margin."""
        assert service.ready is not None
        attempt = service.ready.effective_attempt_timeout()
        return base.seconds(service.ready.timeout) + int(attempt) + 5

    def log_path(self, service: Service) -> str:
        return str(self.request.state_dir / "logs" / f"{service.name}.log")


def _log_probe(service: Service) -> bool:
    return (
        service.ready is not None and service.ready.type == "log" and service.kind is Kind.MANAGED
    )


def _escape(text: str) -> str:
    """``%`` starts a unit specifier; ``%%`` is a literal one."""
    return text.replace("%", "%%")


def _word(word: str) -> str:
    """One word of an Exec line: plain, or double-quoted with C escapes; ``$`` doubled
    (systemd expands ``$VAR`` there) and ``%`` doubled (specifiers)."""
    word = _escape(word).replace("$", "$$")
    if _PLAIN_WORD.match(word.replace("%%", "")):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _assignment(key: str, value: str) -> str:
    """``Environment="KEY=value"``: quoted, so spaces and quotes survive."""
    text = _escape(f"{key}={value}").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _env_file(values: dict[str, str]) -> str:
    """systemd's EnvironmentFile syntax: double quotes, with ``\\``, ``"``, ``$`` and `` ` ``
    escaped by a backslash."""
    lines = ["# Written by `svcorch export systemd`: secrets, keep this file private."]
    for key, value in values.items():
        escaped = re.sub(r'([\\"$`])', r"\\\1", value)
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"
