"""Kubernetes: one namespace; a Deployment (and a Service for its ports) per service, a Job
per oneshot nobody waits for; the gates as init containers.

Readiness: ``tcp``, ``http`` and ``exec`` probes become native ``readinessProbe`` handlers
(plus a ``startupProbe`` that gives up after the probe's ``timeout``, as svcorch does). A
dependency is waited for by an init container running ``svcorch check --wait`` from the
``--svcorch-image`` against the gate catalogue in a ConfigMap, through the dependency's
Service, so redis, amqp, mysql and influxdb probes gate in the cluster too.

Oneshots: a oneshot whose exit a service waits for (``completed``, or ``ready``, which means
the same for a oneshot) runs as an init container of every pod that waits for it, after the
gates of its own dependencies. Kubernetes runs init containers in order and starts the app
only after each exited 0: exactly ``completed``, with no API access, Role or token needed.
The price: it runs once per pod start of each waiting service, so it must be idempotent
(svcorch already runs it again on every ``up``). A oneshot nobody waits for is a Job.
"""

from __future__ import annotations

import shlex
from signal import Signals
from typing import Any
from urllib.parse import urlsplit

from svcorch.durations import format_duration
from svcorch.errors import UsageError
from svcorch.exporters import base, gates
from svcorch.exporters.base import Export, ExportFile, ExportRequest, Warnings
from svcorch.model import Condition, Kind, RestartPolicy, Service
from svcorch.probes.base import ProbeOptions
from svcorch.probes.exec import ExecOptions
from svcorch.probes.http import HttpOptions
from svcorch.probes.tcp import TcpOptions

GATES_MOUNT = "/etc/svcorch"
CONFIGMAP = "svcorch-gates"
# the secrets of the top-level env and env_file
SHARED_SECRET = "svcorch-env"  # noqa: S105 - a Secret's name, not a password
IN_CONTAINER_STATE = "/tmp/svcorch"  # noqa: S108 - inside the gate container, which check
# needs only for its crash log
NATIVE = ("tcp", "http", "exec")
WAITS_FOR_EXIT = (Condition.COMPLETED, Condition.READY)


def export(request: ExportRequest) -> Export:
    base.refuse_inline_secrets(request)
    images = base.images(request, "kubernetes")
    return _Kubernetes(request, images).run()


class _Kubernetes:
    def __init__(self, request: ExportRequest, images: dict[str, str]) -> None:
        self.request = request
        self.images = images
        self.namespace = request.project
        self.labels = base.unique_labels(request.graph.start_order())
        self.warnings = Warnings(request.graph.start_order())
        self.inline = {
            s.name
            for s in request.services()
            if s.kind is Kind.ONESHOT and any(c in WAITS_FOR_EXIT for _, c in request.waiters(s))
        }
        self.checked: dict[str, dict[str, Any]] = {}  # the gate catalogue's services

    # -- the whole export ---------------------------------------------------------------------

    def run(self) -> Export:
        workloads: list[dict[str, Any]] = []
        services: list[dict[str, Any]] = []
        for service in self.request.services():
            if service.kind is Kind.MANAGED:
                workloads.append(self.deployment(service))
                if base.probe_ports(service):
                    services.append(self.service_object(service))
            elif service.kind is Kind.ONESHOT and service.name not in self.inline:
                workloads.append(self.job(service))
            elif service.kind is Kind.ONESHOT:
                self.warn_inline(service)
            self.warn_edges(service)
        built = gates.build(self.namespace, self.checked)
        if self.checked and not self.request.svcorch_image:
            raise UsageError(
                "export kubernetes: init containers wait for dependencies with `svcorch check`:"
                " pass --svcorch-image IMAGE (an image with svcorch installed)"
            )
        objects = [self.namespace_object()]
        if self.checked:
            objects.append(
                self.meta("v1", "ConfigMap", CONFIGMAP) | {"data": {"gates.yaml": built.text}}
            )
        objects += services + workloads
        return Export(
            files={
                "00-namespace.yaml": ExportFile(_documents(objects[:1])),
                "10-secrets.yaml": ExportFile(_documents(self.secrets(built)), secret=True),
                f"20-{self.namespace}.yaml": ExportFile(_documents(objects[1:])),
            },
            warnings=self.warnings.lines(),
        )

    def meta(self, api: str, kind: str, name: str, labels: bool = False) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "namespace": self.namespace}
        if labels:
            metadata["labels"] = self.selector(name)
        return {"apiVersion": api, "kind": kind, "metadata": metadata}

    def selector(self, label: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": label, "app.kubernetes.io/part-of": self.namespace}

    def namespace_object(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}

    def secrets(self, built: gates.Gates) -> list[dict[str, Any]]:
        """One Secret for the catalogue's own secret variables, one per service for those in
        its own ``env``, and one for the gates' probe passwords."""
        catalogue = self.request.catalogue
        shared = base.secret_variables({**catalogue.dotenv, **catalogue.env})
        found = [self.meta("v1", "Secret", SHARED_SECRET) | _secret_data(shared)] if shared else []
        for service in self.request.services():
            own = base.secret_variables(service.env)
            if own and service.kind is not Kind.EXTERNAL:
                name = self.labels[service.name] + "-env"
                found.append(self.meta("v1", "Secret", name) | _secret_data(own))
        if built.secrets:
            found.append(self.meta("v1", "Secret", CONFIGMAP) | _secret_data(built.secrets))
        return found

    # -- workloads ----------------------------------------------------------------------------

    def deployment(self, service: Service) -> dict[str, Any]:
        label = self.labels[service.name]
        policy = service.restart.policy
        if policy is not RestartPolicy.ALWAYS:
            self.warnings.add(
                service.name,
                f"restart policy {policy.value!r}: a Deployment restarts its pod after every"
                " exit (restartPolicy Always)",
            )
        self.warn_restart_details(service)
        if service.replicas > 1:
            base.warn_replicas(self.warnings, self.request.catalogue, service, "a Deployment")
        return self.meta("apps/v1", "Deployment", label, labels=True) | {
            "spec": {
                "replicas": service.replicas,
                "selector": {"matchLabels": self.selector(label)},
                "template": {
                    "metadata": {"labels": self.selector(label)},
                    "spec": self.pod(service, "Always"),
                },
            }
        }

    def job(self, service: Service) -> dict[str, Any]:
        label = self.labels[service.name]
        retries = service.restart.max_restarts
        limit = 0 if service.restart.policy is RestartPolicy.NO else retries
        return self.meta("batch/v1", "Job", label, labels=True) | {
            "spec": {
                "backoffLimit": limit,
                # replicas of a oneshot: that many pods, all at once, each to completion
                **(
                    {"completions": service.replicas, "parallelism": service.replicas}
                    if service.replicas > 1
                    else {}
                ),
                "template": {
                    "metadata": {"labels": self.selector(label)},
                    "spec": self.pod(service, "Never"),
                },
            }
        }

    def service_object(self, service: Service) -> dict[str, Any]:
        label = self.labels[service.name]
        ports = [
            {"name": f"port-{port}", "port": port, "targetPort": port, "protocol": "TCP"}
            for port in base.probe_ports(service)
        ]
        return self.meta("v1", "Service", label, labels=True) | {
            "spec": {"selector": self.selector(label), "ports": ports}
        }

    def pod(self, service: Service, restart: str) -> dict[str, Any]:
        init = self.init_containers(service)
        spec: dict[str, Any] = {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": base.seconds(service.stop.timeout, minimum=0),
        }
        if init:
            spec["initContainers"] = init
        spec["containers"] = [self.main_container(service)]
        uid, gid = base.numeric_ids(service, self.warnings, "securityContext")
        if uid is not None or gid is not None:
            context = {"runAsUser": uid, "runAsGroup": gid}
            spec["securityContext"] = {k: v for k, v in context.items() if v is not None}
        if any(c["name"].startswith("gate-") for c in init):
            spec["volumes"] = [{"name": CONFIGMAP, "configMap": {"name": CONFIGMAP}}]
        return spec

    # -- containers ---------------------------------------------------------------------------

    def container(self, service: Service, name: str) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": name,
            "image": self.images[service.name],
            "args": [_no_expansion(word) for word in service.argv()],
        }
        cwd = service.cwd
        if cwd is not None and cwd.startswith("/"):
            container["workingDir"] = cwd
        elif cwd is not None:
            self.warnings.add(
                service.name,
                f"cwd {cwd!r} is relative to the catalogue's folder: the container starts in"
                " its image's working directory (give an absolute cwd for containers)",
            )
        env = self.env(service)
        if env:
            container["env"] = env
        return container

    def env(self, service: Service) -> list[dict[str, Any]]:
        plain, secret = base.environment(self.request.catalogue, service)
        entries: list[dict[str, Any]] = [
            {"name": k, "value": _no_expansion(v)} for k, v in plain.items()
        ]
        for key in secret:
            owner = self.labels[service.name] + "-env" if key in service.env else SHARED_SECRET
            entries.append(
                {"name": key, "valueFrom": {"secretKeyRef": {"name": owner, "key": key}}}
            )
        return entries

    def main_container(self, service: Service) -> dict[str, Any]:
        container = self.container(service, self.labels[service.name])
        ports = base.probe_ports(service) if service.kind is Kind.MANAGED else []
        if ports:
            container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
        if service.kind is Kind.MANAGED:
            container |= self.probes(service)
        pre_stop = self.pre_stop(service)
        if pre_stop:
            container["lifecycle"] = {"preStop": {"exec": {"command": pre_stop}}}
        return container

    def pre_stop(self, service: Service) -> list[str] | None:
        """``stop.command`` first, then ``stop.signal`` to PID 1 if it is not TERM (which
        Kubernetes sends itself once preStop ends), waiting until the process is gone."""
        stop = service.stop
        if stop.command is None and stop.signal is Signals.SIGTERM:
            return None
        script = []
        if stop.command is not None:
            words = shlex.split(stop.command) if isinstance(stop.command, str) else stop.command
            script.append(shlex.join(words))
        if stop.signal is not Signals.SIGTERM:
            signal_name = stop.signal.name.removeprefix("SIG")
            script.append(f"kill -{signal_name} 1")
            script.append("while kill -0 1 2>/dev/null; do sleep 1; done")
        return ["/bin/sh", "-c", "; ".join(script)]

    def init_containers(self, service: Service) -> list[dict[str, Any]]:
        """Gates and inline oneshots in start order: for each oneshot this pod waits for, its
        own gates and then the oneshot; last, the gate of the service itself."""
        steps: list[dict[str, Any]] = []
        ran: set[str] = set()

        def visit(current: Service) -> None:
            for dependency, condition, _ in self.request.dependencies(current):
                waits = dependency.name in self.inline and condition in WAITS_FOR_EXIT
                if waits and dependency.name not in ran:
                    ran.add(dependency.name)
                    visit(dependency)
                    name = "run-" + self.labels[dependency.name]
                    steps.append(self.container(dependency, name))
            gate = self.gate(current)
            if gate is not None:
                steps.append(gate)

        visit(service)
        return steps

    def gate(self, service: Service) -> dict[str, Any] | None:
        waited: list[Service] = []
        for dependency, condition, _ in self.request.dependencies(service):
            if dependency.name in self.inline and condition in WAITS_FOR_EXIT:
                continue
            if condition is Condition.STARTED:
                self.warnings.add(
                    service.name,
                    f"waits for {dependency.name!r} to start: Kubernetes starts pods in no"
                    " order, so it may start first",
                )
                continue
            if self.gate_probe(service, dependency):
                waited.append(dependency)
        if not waited:
            return None
        timeout = max(d.ready.timeout for d in waited if d.ready is not None)
        command = ["svcorch", "-f", f"{GATES_MOUNT}/gates.yaml", "--state-dir", IN_CONTAINER_STATE]
        command += ["check", "--wait", "--timeout", format_duration(timeout)]
        container: dict[str, Any] = {
            "name": "gate-" + self.labels[service.name],
            "image": self.request.svcorch_image or "",
            "command": command + [d.name for d in waited],
            "volumeMounts": [{"name": CONFIGMAP, "mountPath": GATES_MOUNT, "readOnly": True}],
        }
        if self.has_gate_secrets(waited):
            container["envFrom"] = [{"secretRef": {"name": CONFIGMAP}}]
        return container

    def has_gate_secrets(self, waited: list[Service]) -> bool:
        built = gates.build(self.namespace, {d.name: self.checked[d.name] for d in waited})
        return bool(built.secrets)

    def gate_probe(self, waiter: Service, dependency: Service) -> bool:
        """Put the dependency's check into the gate catalogue; False (and a warning) when it
        cannot be checked from another pod."""
        if dependency.name in self.checked:
            return True
        options = dependency.ready
        reason = None
        if options is None:
            reason = "it has no readiness probe"
        elif options.type == "log":
            reason = "its log probe reads a file no other pod can see"
        elif options.type == "exec":
            ports = base.probe_ports(dependency)
            if ports:
                # a Service forwards only to ready pods, and the exec readinessProbe decides
                # readiness: a connection through the Service means the exec probe passed
                probe = {"type": "tcp", "host": self.labels[dependency.name], "port": ports[0]}
                probe |= {"timeout": format_duration(options.timeout)}
                self.checked[dependency.name] = {"ready": probe}
                return True
            reason = "its exec probe runs in its own container, and it declares no port"
        elif base.endpoint(options) is None:
            reason = f"its {options.type} probe does not connect over the network"
        if reason is not None:
            self.warnings.add(
                waiter.name,
                f"cannot wait for {dependency.name!r} ({reason}): it starts without waiting",
            )
            return False
        assert options is not None
        self.checked[dependency.name] = {"ready": self.remote_probe(dependency, options)}
        return True

    def remote_probe(self, service: Service, options: ProbeOptions) -> dict[str, Any]:
        document = base.probe_document(options)
        point = base.endpoint(options)
        if service.kind is Kind.EXTERNAL:
            if point is not None and base.is_loopback(point[0]):
                self.warnings.add(
                    service.name,
                    f"external, probed at {point[0]}: in a pod that is the pod itself (give"
                    " the server's address in the probe)",
                )
            return document
        return base.with_host(options, document, self.labels[service.name])

    # -- probes -------------------------------------------------------------------------------

    def probes(self, service: Service) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if service.ready is not None:
            handler = self.handler(service, service.ready, "readiness")
            if handler is not None:
                timing = _timing(service.ready)
                found["startupProbe"] = (
                    handler | timing | {"failureThreshold": base.attempts(service.ready)}
                )
                found["readinessProbe"] = handler | timing | {"failureThreshold": 3}
        if service.liveness is not None:
            live = self.handler(service, service.liveness.probe, "liveness")
            if live is not None:
                found["livenessProbe"] = (
                    live
                    | _timing(service.liveness.probe)
                    | {"failureThreshold": service.liveness.failure_threshold}
                )
        return found

    def handler(self, service: Service, options: ProbeOptions, role: str) -> dict[str, Any] | None:
        if isinstance(options, TcpOptions):
            return {"tcpSocket": _with_host({"port": options.port}, options.host)}
        if isinstance(options, HttpOptions):
            return self.http(service, options, role)
        if isinstance(options, ExecOptions):
            return self.exec(service, options, role)
        point = base.endpoint(options)
        if point is None or not base.is_loopback(point[0]):
            self.warnings.add(
                service.name, f"{role} {options.type} probe: Kubernetes has no equivalent; left out"
            )
            return None
        detail = " (the gates of its dependents run the full probe)" if role == "readiness" else ""
        self.warnings.add(
            service.name,
            f"{role} {options.type} probe: Kubernetes has none; the pod's {role}Probe is a TCP"
            f" connect to port {point[1]}{detail}",
        )
        return {"tcpSocket": {"port": point[1]}}

    def http(self, service: Service, options: HttpOptions, role: str) -> dict[str, Any]:
        url = urlsplit(options.url)
        get: dict[str, Any] = {
            "path": (url.path or "/") + (f"?{url.query}" if url.query else ""),
            "port": url.port or (443 if url.scheme == "https" else 80),
            "scheme": url.scheme.upper(),
        }
        get = _with_host(get, url.hostname or "127.0.0.1")
        plain = {k: v for k, v in options.headers.items() if not _secret_header(k)}
        if plain:
            get["httpHeaders"] = [{"name": k, "value": v} for k, v in plain.items()]
        lost = []
        if url.password is not None or len(plain) < len(options.headers):
            lost.append("its credentials (a probe cannot read a Secret)")
        if options.body:
            lost.append("the body check")
        if options.method != "GET":
            lost.append("HEAD (Kubernetes sends GET)")
        if tuple(options.status) != ("2xx", "3xx"):
            lost.append("the accepted statuses (Kubernetes accepts 200-399)")
        if url.scheme == "https" and options.verify_tls:
            lost.append("certificate verification")
        if lost:
            self.warnings.add(service.name, f"{role} http probe: without " + ", ".join(lost))
        return {"httpGet": get}

    def exec(self, service: Service, options: ExecOptions, role: str) -> dict[str, Any]:
        hidden = [k for k, v in options.env.items() if base.is_secret_value(k, v)]
        if hidden:
            self.warnings.add(
                service.name,
                f"{role} exec probe: {', '.join(hidden)} not written (a probe cannot read a"
                " Secret; the container's own environment has the service's secrets)",
            )
        env = {k: v for k, v in options.env.items() if k not in hidden}
        return {"exec": {"command": base.exec_argv(options.argv(), options.cwd, env)}}

    # -- warnings -----------------------------------------------------------------------------

    def warn_inline(self, service: Service) -> None:
        waiting = ", ".join(w.name for w, c in self.request.waiters(service) if c in WAITS_FOR_EXIT)
        message = (
            f"runs as an init container in the pod of each service that waits for it"
            f" ({waiting}), once per pod start"
        )
        if service.restart.policy is RestartPolicy.NO:
            message += "; Kubernetes retries a failed init container (restart policy 'no')"
        self.warnings.add(service.name, message)

    def warn_edges(self, service: Service) -> None:
        for dependency, _, restart in self.request.dependencies(service):
            if restart:
                self.warnings.add(
                    service.name,
                    f"restart_on_dependency on {dependency.name!r}: Kubernetes does not restart"
                    " a pod when another restarts",
                )
        if service.liveness is not None and service.kind is not Kind.MANAGED:
            self.warnings.add(service.name, "liveness: only a Deployment's container has one")

    def warn_restart_details(self, service: Service) -> None:
        lost = base.restart_details_set(service)
        if lost:
            self.warnings.add(
                service.name,
                f"restart {base.restart_summary(service, lost)}: Kubernetes' own back-off"
                " (CrashLoopBackOff) applies",
            )


def _secret_header(name: str) -> bool:
    return base.is_secret_value(name, "") or name.lower() in ("authorization", "cookie")


def _with_host(handler: dict[str, Any], host: str) -> dict[str, Any]:
    """A loopback host is the pod itself, where Kubernetes probes by default."""
    return handler if base.is_loopback(host) else handler | {"host": host}


def _timing(options: ProbeOptions) -> dict[str, int]:
    return {
        "periodSeconds": base.seconds(options.period),
        "timeoutSeconds": base.seconds(_attempt(options)),
    }


def _attempt(options: ProbeOptions) -> Any:
    from datetime import timedelta

    return timedelta(seconds=options.effective_attempt_timeout())


def _no_expansion(text: str) -> str:
    """Kubernetes expands ``$(VAR)`` in args and env values; ``$$`` keeps a ``$`` as is."""
    return text.replace("$(", "$$(")


def _secret_data(values: dict[str, str]) -> dict[str, Any]:
    return {"type": "Opaque", "stringData": dict(values)}


def _documents(objects: list[dict[str, Any]]) -> str:
    header = "# Written by `svcorch export kubernetes`.\n"
    return header + base.yaml_text(objects, documents=True)
