"""supervisord: a ``[program:<project>-<service>]`` per service, in ``[group:<project>]``.

supervisord knows no dependencies and no readiness (``priority`` only orders ``start all``),
so the gates live in each program's command: a ``/bin/sh -c`` wrapper that first runs
``svcorch check --wait`` on the dependencies (against the gate catalogue), runs in order the
oneshots whose exit it waits for (as Kubernetes' init containers do), then ``exec``s the
service, which so keeps the program's pid. ``supervisorctl start <project>:*`` starts every
program at once and each waits for what it needs. Programs never start with supervisord
(``autostart=false``): starting the stack is a decision, as with ``svcorch up``.

Secrets are not written into ``environment=``: the wrapper reads them from env files
written 0600.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

from svcorch.durations import format_duration
from svcorch.errors import UsageError
from svcorch.exporters import base, gates
from svcorch.exporters.base import Export, ExportFile, ExportRequest, Warnings
from svcorch.model import Condition, Kind, RestartPolicy, Service

_COMMENT = re.compile(r"\s[;#]")  # supervisord's inline comments
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WAITS_FOR_EXIT = (Condition.COMPLETED, Condition.READY)
FILE = "supervisord.conf"


def export(request: ExportRequest) -> Export:
    base.refuse_inline_secrets(request)
    return _Supervisord(request).run()


class _Supervisord:
    def __init__(self, request: ExportRequest) -> None:
        self.request = request
        self.project = request.project
        self.warnings = Warnings(request.graph.start_order())
        self.checked: dict[str, dict[str, object]] = {}
        self.bindir = str(Path(sys.executable).parent)
        self.inline = {
            s.name
            for s in request.services()
            if s.kind is Kind.ONESHOT and any(c in WAITS_FOR_EXIT for _, c in request.waiters(s))
        }
        generations = request.graph.generations()
        self.wave = {name: index for index, wave in enumerate(generations) for name in wave}

    def program(self, name: str) -> str:
        return f"{self.project}-{name}"

    def path(self, name: str) -> str:
        return str(self.request.out_dir / name)

    def run(self) -> Export:
        sections = []
        programs = []
        for service in self.request.services():
            if service.kind is Kind.EXTERNAL:
                continue  # only probed, by the gates of the programs that need it
            if service.name in self.inline:
                self.warn_inline(service)
                continue
            sections.append(self.section(service))
            programs.append(self.program(service.name))
        header = [
            "; Written by `svcorch export supervisord`: include it from supervisord.conf",
            "; ([include] files = ...) and start the stack with",
            f"; `supervisorctl start {self.project}:*`.",
            f"[group:{self.project}]",
            f"programs={','.join(programs)}",
            "",
        ]
        built = gates.build(self.project, self.checked)
        files = {FILE: ExportFile("\n".join(header) + "\n".join(sections))}
        if self.checked:
            files[base.GATES_FILE] = ExportFile(built.text)
        files |= base.secret_env_files(self.request, self.project, built.secrets, _env_file)
        logs = str(self.request.state_dir / "logs")
        return Export(files=files, warnings=self.warnings.lines(), directories=(logs,))

    # -- one program --------------------------------------------------------------------------

    def scale_and_account(self, service: Service) -> list[str]:
        """``replicas`` as ``numprocs`` (named NAME_0 .. NAME_N-1), ``user:`` as ``user=``."""
        lines = []
        if service.replicas > 1:
            lines += [
                f"numprocs={service.replicas}",
                "process_name=%(program_name)s_%(process_num)d",
            ]
            base.warn_replicas(self.warnings, self.request.catalogue, service, "supervisord")
        if service.user is not None:
            lines.append(f"user={service.user}")
        if service.group is not None:
            self.warnings.add(
                service.name,
                f"group {service.group!r}: supervisord runs a program with its user's own group"
                " only; not exported",
            )
        return lines

    def section(self, service: Service) -> str:
        plain, _ = base.environment(self.request.catalogue, service)
        plain = {"PATH": f"{self.bindir}:{SYSTEM_PATH}", **plain}
        # one log per replica, named as svcorch names it (`svcorch logs worker` reads them all)
        own = f"{service.name}#%(process_num)d" if service.replicas > 1 else service.name
        log = str(self.request.state_dir / "logs" / f"{own}.log")
        logs = self.request.catalogue.logs
        lines = [
            f"[program:{self.program(service.name)}]",
            f"command={_escape(self.command(service))}",
            f"directory={_escape(str(self.cwd(service)))}",
            "environment=" + ",".join(f"{k}={_quote(v)}" for k, v in plain.items()),
            "autostart=false",
            # dependents stop first: supervisord stops in reverse priority order
            f"priority={100 + 10 * self.wave[service.name]}",
        ]
        lines += self.restart(service)
        lines += self.stop(service)
        lines += self.scale_and_account(service)
        lines += [
            f"stdout_logfile={_escape(log)}",
            f"stdout_logfile_maxbytes={logs.max_size}",
            f"stdout_logfile_backups={logs.backups}",
            "redirect_stderr=true",
        ]
        if service.liveness is not None:
            self.warnings.add(service.name, "liveness: supervisord has no probes; not exported")
        for line in lines:
            if _COMMENT.search(line):
                key = line.split("=", 1)[0]
                raise UsageError(
                    f"export supervisord: service {service.name!r}: its {key} holds ' #' or"
                    " ' ;', which supervisord reads as the start of a comment"
                )
        return "\n".join(lines) + "\n"

    def restart(self, service: Service) -> list[str]:
        policy = service.restart.policy
        if service.kind is Kind.ONESHOT:
            lines = ["startsecs=0", "exitcodes=0"]
        else:
            lines = ["startsecs=1", "exitcodes=0"]
        autorestart = {
            RestartPolicy.NO: "false",
            RestartPolicy.ON_FAILURE: "unexpected",
            RestartPolicy.ALWAYS: "true",
        }[policy]
        lines += [f"autorestart={autorestart}", f"startretries={service.restart.max_restarts}"]
        lost = base.restart_details_set(service, ("max_restarts",))
        if lost and policy is not RestartPolicy.NO:
            self.warnings.add(
                service.name,
                f"restart {base.restart_summary(service, lost)}: supervisord retries after 1s,"
                " 2s, 3s, ... and restarts a running program at once",
            )
        return lines

    def stop(self, service: Service) -> list[str]:
        if service.stop.command is not None:
            self.warnings.add(service.name, "stop.command: supervisord stops with a signal only")
        return [
            f"stopsignal={service.stop.signal.name.removeprefix('SIG')}",
            f"stopwaitsecs={base.seconds(service.stop.timeout)}",
            "stopasgroup=true",
            "killasgroup=true",
        ]

    def cwd(self, service: Service) -> Path:
        base_dir = self.request.catalogue.base_dir.absolute()
        return (base_dir / service.cwd) if service.cwd else base_dir

    # -- the wrapper --------------------------------------------------------------------------

    def command(self, service: Service) -> str:
        steps = self.steps(service)
        argv = self.argv(service)
        if service.ready is not None and service.ready.type == "log":
            # the header the log probe reads from; \043 is '#', which supervisord would take
            # for the start of a comment after a space
            header = f"--- svcorch: {service.name} start \\0430 (supervisord) ---\\n"
            steps.append(f"printf -- {shlex.quote(header)}")
        secrets = self.sources(service)
        if not steps and not secrets:
            return shlex.join(argv)
        script = "; ".join(
            [*secrets, *(f"{step} || exit 1" for step in steps), f"exec {shlex.join(argv)}"]
        )
        return shlex.join(["/bin/sh", "-c", script])

    def sources(self, service: Service) -> list[str]:
        """Read the service's secrets into the environment (``set -a`` exports them)."""
        _, secret = base.environment(self.request.catalogue, service)
        files = []
        if any(k not in service.env for k in secret):
            files.append(self.path(f"{self.project}.secrets.env"))
        if any(k in service.env for k in secret):
            files.append(self.path(f"{self.project}-{service.name}.secrets.env"))
        if not files:
            return []
        return ["set -a", *(f". {shlex.quote(f)}" for f in files), "set +a"]

    def steps(self, service: Service) -> list[str]:
        """Shell commands before ``exec``: gates and inline oneshots, in start order."""
        steps: list[str] = []
        ran: set[str] = set()

        def visit(current: Service) -> None:
            for dependency, condition, _ in self.request.dependencies(current):
                if (
                    dependency.name in self.inline
                    and condition in WAITS_FOR_EXIT
                    and dependency.name not in ran
                ):
                    ran.add(dependency.name)
                    visit(dependency)
                    steps.append(self.run_inline(dependency, service))
            gate = self.gate(current)
            if gate:
                steps.append(gate)

        visit(service)
        return steps

    def run_inline(self, oneshot: Service, host: Service) -> str:
        """The oneshot in a subshell: its own directory, environment and secrets (the
        variables whose value differs from the program's)."""
        plain, _ = base.environment(self.request.catalogue, oneshot)
        hosts, _ = base.environment(self.request.catalogue, host)
        exports = [f"export {k}={shlex.quote(v)}" for k, v in plain.items() if hosts.get(k) != v]
        parts = [f"cd {shlex.quote(str(self.cwd(oneshot)))}", *exports, *self.sources(oneshot)]
        parts.append(f"exec {shlex.join(self.argv(oneshot))}")
        banner = f"--- svcorch: {host.name} runs oneshot {oneshot.name} first ---"
        return f"echo {shlex.quote(banner)} && ( " + "; ".join(parts) + " )"

    def gate(self, service: Service) -> str | None:
        waited = []
        for dependency, condition, restart in self.request.dependencies(service):
            if restart:
                self.warnings.add(
                    service.name,
                    f"restart_on_dependency on {dependency.name!r}: supervisord does not"
                    " restart a program when another restarts",
                )
            if dependency.name in self.inline and condition in WAITS_FOR_EXIT:
                continue
            if dependency.ready is None:
                continue  # ready once started: `start <project>:*` starts it too
            if condition is Condition.STARTED:
                continue
            self.checked[dependency.name] = self.check_entry(dependency)
            waited.append(dependency)
        if not waited:
            return None
        timeout = max(d.ready.timeout for d in waited if d.ready is not None)
        argv = [
            self.request.svcorch,
            "-f",
            self.path(base.GATES_FILE),
            "--state-dir",
            str(self.request.state_dir),
            "check",
            "--wait",
            "--timeout",
            format_duration(timeout),
            *(d.name for d in waited),
        ]
        gate_env = self.path(base.GATES_ENV)
        if any(gates.build(self.project, {d.name: self.checked[d.name]}).secrets for d in waited):
            return f"( set -a; . {shlex.quote(gate_env)}; set +a; exec {shlex.join(argv)} )"
        return shlex.join(argv)

    def check_entry(self, service: Service) -> dict[str, object]:
        assert service.ready is not None
        document = base.probe_document(service.ready)
        if service.ready.type == "exec":
            probe_cwd = getattr(service.ready, "cwd", None)
            document["cwd"] = str(self.cwd(service) / probe_cwd if probe_cwd else self.cwd(service))
        return {"ready": document}

    def argv(self, service: Service) -> list[str]:
        argv = service.argv()
        program = argv[0]
        if "/" in program:
            return [str(self.cwd(service) / program), *argv[1:]]
        found = shutil.which(program, path=f"{self.bindir}:{SYSTEM_PATH}")
        return [found or program, *argv[1:]]

    def warn_inline(self, service: Service) -> None:
        waiting = ", ".join(w.name for w, c in self.request.waiters(service) if c in WAITS_FOR_EXIT)
        self.warnings.add(
            service.name,
            f"runs inside the program of each service that waits for it ({waiting}), before"
            " it, once per start of that program",
        )


def _escape(text: str) -> str:
    """supervisord expands ``%(name)s`` in every value; ``%%`` is a literal ``%``."""
    return text.replace("%", "%%")


def _quote(value: str) -> str:
    """An ``environment=`` value: double-quoted (commas and spaces survive), ``%`` doubled."""
    return '"' + _escape(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _env_file(values: dict[str, str]) -> str:
    """Read with ``.`` by the program's /bin/sh wrapper: shell quoting."""
    lines = ["# Written by `svcorch export supervisord`: secrets, keep this file private."]
    lines += [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"
