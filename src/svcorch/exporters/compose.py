"""Compose (the compose specification, as Debian's docker-compose 1.29 reads it).

``depends_on`` carries every condition: a oneshot's exit is ``service_completed_successfully``;
an exec readiness probe becomes the service's ``healthcheck`` (interval = the probe's period,
``start_period`` = its timeout) and dependents wait with ``service_healthy``; a network probe
(tcp, http, redis, amqp, mysql, influxdb) is run by a ``wait-<name>`` service from the
``--svcorch-image`` (``svcorch check --wait`` with the gate catalogue mounted read-only),
which dependents wait for with ``service_completed_successfully``: a healthcheck runs inside
the service's own image, which has no redis or amqp client to run such a probe with.

Secrets go into env files (written 0600) named in ``env_file``, never into ``environment``.
"""

from __future__ import annotations

from typing import Any

from svcorch.durations import format_duration
from svcorch.errors import UsageError
from svcorch.exporters import base, gates
from svcorch.exporters.base import Export, ExportFile, ExportRequest, Warnings
from svcorch.model import Condition, Kind, RestartPolicy, Service
from svcorch.probes.base import ProbeOptions
from svcorch.probes.exec import ExecOptions

FILE = "docker-compose.yaml"
GATES_IN_CONTAINER = "/etc/svcorch/gates.yaml"
SHARED_SECRETS = "catalogue.secrets.env"
GATES_SECRETS = "svcorch-gates.secrets.env"
IN_CONTAINER_STATE = "/tmp/svcorch"  # noqa: S108 - inside the wait container: a crash log only


def export(request: ExportRequest) -> Export:
    base.refuse_inline_secrets(request)
    images = base.images(request, "compose")
    return _Compose(request, images).run()


class _Compose:
    def __init__(self, request: ExportRequest, images: dict[str, str]) -> None:
        self.request = request
        self.images = images
        self.warnings = Warnings(request.graph.start_order())
        self.checked: dict[str, dict[str, Any]] = {}
        self.waiters: dict[str, list[Service]] = {}  # wait-<name> -> the services using it

    def run(self) -> Export:
        services: dict[str, Any] = {}
        for service in self.request.services():
            if service.kind is not Kind.EXTERNAL:
                services[service.name] = self.service(service)
        built = gates.build(self.request.project, self.checked)
        for name, users in self.waiters.items():
            wait = "wait-" + name
            if wait in self.request.catalogue.services:
                raise UsageError(
                    f"export compose: the gate of {name!r} would be called {wait!r}, which is"
                    " already a service: rename it"
                )
            secret = bool(gates.build(self.request.project, {name: self.checked[name]}).secrets)
            services[wait] = self.wait_service(name, users, secret)
        files = {FILE: ExportFile(self.document(services))}
        if self.checked:
            files[base.GATES_FILE] = ExportFile(built.text)
        files |= self.secret_files(built)
        return Export(files=files, warnings=self.warnings.lines())

    def document(self, services: dict[str, Any]) -> str:
        header = "# Written by `svcorch export compose`. Check it with `docker-compose config`.\n"
        body = base.yaml_text({"services": _escape(services)})
        return header + body

    def secret_files(self, built: gates.Gates) -> dict[str, ExportFile]:
        catalogue = self.request.catalogue
        files = {}
        shared = base.secret_variables({**catalogue.dotenv, **catalogue.env})
        if shared:
            files[SHARED_SECRETS] = ExportFile(_env_file(shared), secret=True)
        for service in self.request.services():
            own = base.secret_variables(service.env)
            if own and service.kind is not Kind.EXTERNAL:
                files[f"{service.name}.secrets.env"] = ExportFile(_env_file(own), secret=True)
        if built.secrets:
            files[GATES_SECRETS] = ExportFile(_env_file(built.secrets), secret=True)
        return files

    # -- one service --------------------------------------------------------------------------

    def service(self, service: Service) -> dict[str, Any]:
        entry: dict[str, Any] = {"image": self.images[service.name], "command": service.argv()}
        if service.cwd is not None and service.cwd.startswith("/"):
            entry["working_dir"] = service.cwd
        elif service.cwd is not None:
            self.warnings.add(
                service.name,
                f"cwd {service.cwd!r} is relative to the catalogue's folder: the container"
                " starts in its image's working directory (give an absolute cwd for containers)",
            )
        plain, secret = base.environment(self.request.catalogue, service)
        if plain:
            entry["environment"] = plain
        env_files = self.env_files(service, secret)
        if env_files:
            entry["env_file"] = env_files
        if service.ports:
            entry["expose"] = [str(p) for p in service.ports]
        depends = self.depends_on(service)
        if depends:
            entry["depends_on"] = depends
        healthcheck = self.healthcheck(service)
        if healthcheck:
            entry["healthcheck"] = healthcheck
        entry |= self.stop(service)
        entry["restart"] = self.restart(service)
        if service.profiles:
            entry["profiles"] = list(service.profiles)
        entry |= self.scale_and_account(service)
        return entry

    def scale_and_account(self, service: Service) -> dict[str, Any]:
        """``replicas`` as ``deploy.replicas``, ``user:``/``group:`` as ``user: name:group``."""
        entry: dict[str, Any] = {}
        if service.replicas > 1:
            entry["deploy"] = {"replicas": service.replicas}
            base.warn_replicas(self.warnings, self.request.catalogue, service, "compose")
        if service.user is not None or service.group is not None:
            user = service.user or ""
            entry["user"] = f"{user}:{service.group}" if service.group else user
            if not user:
                self.warnings.add(
                    service.name, "group without user: compose's user: needs the user too"
                )
                del entry["user"]
        if not service.autostart:
            self.warnings.add(
                service.name,
                "autostart: false: compose starts every service without profiles; give it a"
                " profile",
            )
        return entry

    def env_files(self, service: Service, secret: dict[str, str]) -> list[str]:
        files = []
        if any(k not in service.env for k in secret):
            files.append(SHARED_SECRETS)
        if any(k in service.env for k in secret):
            files.append(f"{service.name}.secrets.env")
        return files

    def depends_on(self, service: Service) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for dependency, condition, restart in self.request.dependencies(service):
            if restart:
                self.warnings.add(
                    service.name,
                    f"restart_on_dependency on {dependency.name!r}: compose does not restart"
                    " a service when its dependency restarts",
                )
            name, wanted = self.condition(service, dependency, condition)
            if name is not None:
                found[name] = {"condition": wanted}
        return found

    def condition(
        self, service: Service, dependency: Service, condition: Condition
    ) -> tuple[str | None, str]:
        """Which compose service to wait for, and for what."""
        if dependency.kind is Kind.ONESHOT and condition is not Condition.STARTED:
            return dependency.name, "service_completed_successfully"
        external = dependency.kind is Kind.EXTERNAL
        if condition is Condition.STARTED and not external:
            return dependency.name, "service_started"
        options = dependency.ready
        if options is None:
            return dependency.name, "service_started"
        if options.type == "exec" and not external:
            return dependency.name, "service_healthy"
        if base.endpoint(options) is not None:
            self.check(dependency, options)
            self.waiters.setdefault(dependency.name, []).append(service)
            return "wait-" + dependency.name, "service_completed_successfully"
        self.warnings.add(
            service.name,
            f"cannot wait for {dependency.name!r} to be ready ({options.type} probe): it waits"
            + (" for nothing" if external else " only until it started"),
        )
        return (None, "") if external else (dependency.name, "service_started")

    def check(self, dependency: Service, options: ProbeOptions) -> None:
        document = base.probe_document(options)
        if dependency.kind is Kind.EXTERNAL:
            point = base.endpoint(options)
            if point is not None and base.is_loopback(point[0]):
                self.warnings.add(
                    dependency.name,
                    f"external, probed at {point[0]}: in a container that is the container"
                    " itself (give the server's address in the probe)",
                )
        else:
            document = base.with_host(options, document, dependency.name)
        self.checked[dependency.name] = {"ready": document}

    def wait_service(self, name: str, users: list[Service], secrets: bool) -> dict[str, Any]:
        if not self.request.svcorch_image:
            raise UsageError(
                "export compose: wait services check readiness with `svcorch check`: pass"
                " --svcorch-image IMAGE (an image with svcorch installed)"
            )
        dependency = self.request.catalogue.services[name]
        assert dependency.ready is not None
        entry: dict[str, Any] = {
            "image": self.request.svcorch_image,
            "entrypoint": [
                "svcorch",
                "-f",
                GATES_IN_CONTAINER,
                "--state-dir",
                IN_CONTAINER_STATE,
                "check",
                "--wait",
                "--timeout",
                format_duration(dependency.ready.timeout),
                name,
            ],
            "volumes": [f"./{base.GATES_FILE}:{GATES_IN_CONTAINER}:ro"],
        }
        if secrets:
            entry["env_file"] = [GATES_SECRETS]
        if dependency.kind is not Kind.EXTERNAL:
            entry["depends_on"] = {name: {"condition": "service_started"}}
        entry["restart"] = "no"
        # active whenever one of the services waiting for it is
        if all(u.profiles for u in users):
            entry["profiles"] = sorted({p for u in users for p in u.profiles})
        return entry

    def healthcheck(self, service: Service) -> dict[str, Any] | None:
        if service.liveness is not None:
            self.warnings.add(
                service.name,
                "liveness: not exported (compose never restarts an unhealthy container)",
            )
        options = service.ready
        if not isinstance(options, ExecOptions) or service.kind is not Kind.MANAGED:
            return None
        test = ["CMD", *base.exec_argv(options.argv(), options.cwd, options.env)]
        return {
            "test": test,
            "interval": format_duration(options.period),
            "timeout": format_duration(_attempt(options)),
            "retries": 3,
            "start_period": format_duration(options.timeout),
        }

    def stop(self, service: Service) -> dict[str, str]:
        if service.stop.command is not None:
            self.warnings.add(service.name, "stop.command: compose stops with a signal only")
        return {
            "stop_signal": service.stop.signal.name,
            "stop_grace_period": format_duration(service.stop.timeout),
        }

    def restart(self, service: Service) -> str:
        policy = service.restart.policy
        expressible: tuple[str, ...] = (
            ("max_restarts",) if policy is RestartPolicy.ON_FAILURE else ()
        )
        lost = base.restart_details_set(service, expressible)
        if lost:
            self.warnings.add(
                service.name,
                f"restart {base.restart_summary(service, lost)}: Docker's own restart delay"
                " applies (100ms, doubling)",
            )
        if policy is RestartPolicy.ON_FAILURE:
            return f"on-failure:{service.restart.max_restarts}"
        return "always" if policy is RestartPolicy.ALWAYS else "no"


def _attempt(options: ProbeOptions) -> Any:
    from datetime import timedelta

    return timedelta(seconds=options.effective_attempt_timeout())


def _env_file(values: dict[str, str]) -> str:
    """python-dotenv's syntax (what compose reads): single quotes keep ``$`` literal; a
    backslash or a quote inside is escaped with a backslash."""
    lines = ["# Written by `svcorch export compose`: secrets, keep this file private."]
    for key, value in values.items():
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        lines.append(f"{key}='{escaped}'")
    return "\n".join(lines) + "\n"


def _escape(value: Any) -> Any:
    """Compose interpolates ``$VAR`` in the file; ``$$`` is a literal ``$``."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value
