"""What every exporter shares: the request, the result, environments split into plain and
secret values, probe endpoints, images, and the text escapes of each file format.

Exporters are pure: a request in, files (name -> text) and warnings out. Writing the files
and deciding what a warning means (``--strict``) is ``commands.export``'s job.
"""

from __future__ import annotations

import math
import pwd
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit

import yaml

from svcorch import accounts, replicas
from svcorch.errors import CatalogueError, Problem, UsageError
from svcorch.graph import ServiceGraph
from svcorch.model import Catalogue, Condition, Kind, Service
from svcorch.probes.base import ProbeOptions
from svcorch.redaction import is_secret_key

LOOPBACK = ("localhost", "::1", "ip6-localhost")
# where `svcorch check` finds the gate catalogue and its state inside a container
GATES_FILE = "svcorch-gates.yaml"
GATES_ENV = "svcorch-gates.env"


@dataclass(frozen=True)
class ExportRequest:
    """One export: the catalogue, the selected services' graph and the target's inputs.

    ``out_dir`` and ``state_dir`` are absolute: host exports (systemd, supervisord) name
    files by their full path, as the units and programs will see them.
    """

    catalogue: Catalogue
    graph: ServiceGraph
    out_dir: Path
    state_dir: Path
    svcorch: str = "svcorch"
    images: Mapping[str, str] = field(default_factory=dict)
    svcorch_image: str | None = None

    @property
    def project(self) -> str:
        return project_name(self.catalogue)

    def services(self) -> list[Service]:
        """The selected services in start order."""
        return [self.catalogue.services[name] for name in self.graph.start_order()]

    def dependencies(self, service: Service) -> list[tuple[Service, Condition, bool]]:
        """(dependency, condition, restart_on_dependency) in the catalogue's order."""
        return [
            (self.catalogue.services[name], edge.condition, edge.restart_on_dependency)
            for name, edge in service.depends_on.items()
            if name in self.graph
        ]

    def waiters(self, service: Service) -> list[tuple[Service, Condition]]:
        """The selected services that depend on ``service``, with their condition."""
        found = []
        for name in self.graph.dependents(service.name):
            waiter = self.catalogue.services[name]
            found.append((waiter, waiter.depends_on[service.name].condition))
        return found


@dataclass(frozen=True)
class ExportFile:
    """One file of an export. A secret file is written 0600 and masked in a preview."""

    text: str
    secret: bool = False


@dataclass(frozen=True)
class Export:
    """Files by name, the warnings, and folders the exported services will write into
    (created with the files: systemd and supervisord open a log before the program runs)."""

    files: dict[str, ExportFile]
    warnings: tuple[str, ...] = ()
    directories: tuple[str, ...] = ()


class Exporter(Protocol):
    """A target module: ``export(request) -> Export``."""

    def __call__(self, request: ExportRequest) -> Export: ...


class Warnings:
    """What a target could not express: one line per service and thing, grouped by service
    in start order."""

    def __init__(self, order: list[str]) -> None:
        self.order = {name: index for index, name in enumerate(order)}
        self.found: list[tuple[str, str]] = []

    def add(self, service: str, message: str) -> None:
        if (service, message) not in self.found:
            self.found.append((service, message))

    def lines(self) -> tuple[str, ...]:
        ordered = sorted(self.found, key=lambda item: self.order.get(item[0], len(self.order)))
        return tuple(f"service {service!r}: {message}" for service, message in ordered)


# -- names ------------------------------------------------------------------------------------


def project_name(catalogue: Catalogue) -> str:
    """The catalogue's ``name``, else its folder's, as a DNS label (Kubernetes needs one)."""
    raw = catalogue.name or catalogue.base_dir.absolute().name or "svcorch"
    return dns_label(raw)


def dns_label(name: str) -> str:
    """``worker_resource`` -> ``worker-resource``: lowercase letters, digits and ``-``,
    starting with a letter, at most 63 characters (RFC 1035, what Services require)."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not label or not label[0].isalpha():
        label = "s-" + label
    return label[:63].rstrip("-")


def unique_labels(names: list[str]) -> dict[str, str]:
    """Each service's DNS label; two services that would share one are a usage error."""
    labels: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        label = dns_label(name)
        if label in seen:
            raise UsageError(
                f"services {seen[label]!r} and {name!r} both become {label!r} in a name that"
                " allows only lowercase letters, digits and '-': rename one"
            )
        seen[label] = name
        labels[name] = label
    return labels


def env_var_name(*parts: str) -> str:
    """``SVCORCH_RABBITMQ_PASSWORD``: a variable name from words."""
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).strip("_").upper() for p in parts if p)


# -- environment ------------------------------------------------------------------------------


def is_secret_value(key: str, value: str) -> bool:
    """Secret-named variables and values holding a URL password (``amqp://u:pw@...``)."""
    return is_secret_key(key) or url_password(value) is not None


def secret_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` that are secrets (``is_secret_value``): what every target
    writes to a secret store instead of inline."""
    return {k: v for k, v in env.items() if is_secret_value(k, v)}


def secret_env_files(
    request: ExportRequest,
    project: str,
    gate_secrets: Mapping[str, str],
    env_file: Callable[[dict[str, str]], str],
) -> dict[str, ExportFile]:
    """The 0600 env files of a target that reads secrets from files (systemd, supervisord):
    the catalogue's shared ones, each service's own, the gates'; ``env_file`` writes one in
    the target's syntax."""
    catalogue = request.catalogue
    files = {}
    shared = secret_variables({**catalogue.dotenv, **catalogue.env})
    if shared:
        files[f"{project}.secrets.env"] = ExportFile(env_file(shared), secret=True)
    for service in request.services():
        own = secret_variables(service.env)
        if own:
            name = f"{project}-{service.name}.secrets.env"
            files[name] = ExportFile(env_file(own), secret=True)
    if gate_secrets:
        files[GATES_ENV] = ExportFile(env_file(dict(gate_secrets)), secret=True)
    return files


def url_password(value: str) -> str | None:
    """The password of a URL's userinfo as written (still percent-encoded), or None."""
    parts = _split(value)
    if parts is None or "@" not in parts.netloc:
        return None
    userinfo = parts.netloc.rsplit("@", 1)[0]
    return userinfo.split(":", 1)[1] if ":" in userinfo else None


def _split(value: str) -> SplitResult | None:
    if "://" not in value:
        return None
    try:
        return urlsplit(value)
    except ValueError:
        return None


def environment(catalogue: Catalogue, service: Service) -> tuple[dict[str, str], dict[str, str]]:
    """What the service's process sees from the catalogue (env_file < env < its own env),
    split into plain values and secrets. The exporting shell's own environment is not part
    of it: the target has its own."""
    merged = {**catalogue.dotenv, **catalogue.env, **service.env}
    plain = {k: v for k, v in merged.items() if not is_secret_value(k, v)}
    secret = {k: v for k, v in merged.items() if is_secret_value(k, v)}
    return plain, secret


def command_secrets(service: Service) -> list[str]:
    """URL passwords written into the command line itself."""
    return [p for word in service.argv() if (p := url_password(word)) is not None]


def refuse_inline_secrets(request: ExportRequest) -> None:
    """A password in a command line would be written into the export as is: refuse."""
    found = [s.name for s in request.services() if command_secrets(s)]
    if found:
        listed = ", ".join(repr(n) for n in found)
        raise UsageError(
            f"the command of {listed} holds a password in a URL, which an export would write"
            " in plain text: pass it through `env` (e.g. BROKER_URL) instead"
        )


# -- images -----------------------------------------------------------------------------------


def images(request: ExportRequest, target: str) -> dict[str, str]:
    """Every spawned service's image (``--image`` over ``image:``); one located error listing
    every service that has none."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for service in request.services():
        if service.kind is Kind.EXTERNAL:
            continue
        image = request.images.get(service.name) or service.image
        if image:
            found[service.name] = image
        else:
            missing.append(service.name)
    if missing:
        listed = ", ".join(missing)
        noun = "service has" if len(missing) == 1 else "services have"
        raise CatalogueError(
            [
                Problem(
                    str(request.catalogue.path),
                    f"export {target}: {len(missing)} {noun} no image: {listed} (add `image:`"
                    " to each, or pass --image NAME=IMAGE)",
                )
            ]
        )
    return found


# -- probes -----------------------------------------------------------------------------------

DEFAULT_PORTS = {"http": 80, "https": 443, "redis": 6379, "rediss": 6379, "amqp": 5672}
DEFAULT_PORTS |= {"amqps": 5671, "mysql": 3306, "influxdb": 8086}


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def endpoint(options: ProbeOptions) -> tuple[str, int] | None:
    """The (host, port) a network probe connects to; None for exec, log and sockets."""
    point = getattr(options, "endpoint", None)
    if callable(point):  # redis and amqp know their own defaults and URL forms
        resolved = point()
        return str(resolved.host), int(resolved.port)
    url = getattr(options, "url", None)
    if isinstance(url, str):
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, DEFAULT_PORTS.get(options.type, 80))
        return parts.hostname or "", port
    if getattr(options, "unix_socket", None):
        return None
    host, given = getattr(options, "host", None), getattr(options, "port", None)
    if isinstance(host, str) and isinstance(given, int):
        return host, given
    if isinstance(host, str) and options.type in DEFAULT_PORTS:
        return host, DEFAULT_PORTS[options.type]
    return None


def probe_ports(service: Service) -> list[int]:
    """The service's declared ports, then those its own loopback probes connect to."""
    ports = list(service.ports)
    for options in (service.ready, service.liveness.probe if service.liveness else None):
        point = endpoint(options) if options is not None else None
        if point is not None and is_loopback(point[0]) and point[1] not in ports:
            ports.append(point[1])
    return ports


def probe_document(options: ProbeOptions) -> dict[str, Any]:
    """The probe as the user wrote it (fields set, JSON types): what a catalogue holds."""
    data: dict[str, Any] = options.model_dump(mode="json", exclude_unset=True)
    data["type"] = options.type
    return data


def with_host(options: ProbeOptions, data: dict[str, Any], host: str) -> dict[str, Any]:
    """``data`` with a loopback host (in ``host`` or in ``url``) replaced by ``host``."""
    updated = dict(data)
    url = data.get("url")
    if isinstance(url, str):
        parts = urlsplit(url)
        if parts.hostname and is_loopback(parts.hostname):
            userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
            port = f":{parts.port}" if parts.port else ""
            updated["url"] = parts._replace(netloc=f"{userinfo}{host}{port}").geturl()
        return updated
    current = getattr(options, "host", None)
    if isinstance(current, str) and is_loopback(current):
        updated["host"] = host
    return updated


def seconds(value: timedelta, minimum: int = 1) -> int:
    """Whole seconds, rounded up: a target that counts in seconds never waits less."""
    return max(minimum, math.ceil(value.total_seconds()))


def attempts(options: ProbeOptions) -> int:
    """How many periods fit in the probe's timeout: its failure threshold on a target."""
    period = max(options.period.total_seconds(), 1.0)
    return max(1, math.ceil(options.timeout.total_seconds() / period))


# -- quoting ----------------------------------------------------------------------------------


def shell_join(argv: list[str]) -> str:
    return shlex.join(argv)


def exec_argv(argv: list[str], cwd: str | None, env: Mapping[str, str]) -> list[str]:
    """An exec probe's argv with its own ``cwd`` and ``env`` applied by ``sh``/``env``,
    for targets whose probe is a bare command line (Kubernetes, compose)."""
    if env:
        argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
    if cwd:
        argv = ["/bin/sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", cwd, *argv]
    return argv


RESTART_DETAILS = ("max_restarts", "window", "backoff", "max_backoff", "reset_after")


def restart_details_set(service: Service, expressible: tuple[str, ...] = ()) -> list[str]:
    """The restart settings the user wrote that a target cannot express (defaults are the
    target's own behaviour, documented once; a value the user chose deserves a warning)."""
    chosen = service.restart.model_fields_set
    return [key for key in RESTART_DETAILS if key in chosen and key not in expressible]


def restart_summary(service: Service, keys: list[str]) -> str:
    from svcorch.durations import format_duration

    parts = []
    for key in keys:
        value = getattr(service.restart, key)
        parts.append(f"{key} {format_duration(value) if isinstance(value, timedelta) else value}")
    return ", ".join(parts)


def secret_values(request: ExportRequest) -> list[str]:
    """Every secret an export of ``request`` may hold, for masking a preview."""
    found: list[str] = []
    for service in request.services():
        found += base_secrets(request.catalogue, service)
    return [value for value in found if value]


def base_secrets(catalogue: Catalogue, service: Service) -> list[str]:
    found = list(environment(catalogue, service)[1].values())
    for options in (service.ready, service.liveness.probe if service.liveness else None):
        if options is not None:
            found += options.secrets()
            found += [
                p
                for v in probe_document(options).values()
                if isinstance(v, str) and (p := url_password(v))
            ]
    return found


class _NoAliases(yaml.SafeDumper):
    """Every object written out in full: anchors (``&id001``) confuse readers and some tools."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def yaml_text(data: Any, *, documents: bool = False) -> str:
    options: dict[str, Any] = {"sort_keys": False, "allow_unicode": True, "width": 100}
    dump = yaml.dump_all if documents else yaml.dump
    text: str = dump(data, Dumper=_NoAliases, **options)
    return text


# -- replicas and accounts --------------------------------------------------------------------


def replica_differences(catalogue: Catalogue, service: Service) -> list[str]:
    """The keys whose value differs between the service's replicas (``${replica}`` in them):
    a target whose replicas are identical copies cannot express those."""
    copies = replicas.instances(catalogue, service.name)
    first = copies[0].model_dump(mode="json", exclude={"name"})
    return sorted(
        {
            key
            for copy in copies[1:]
            for key, value in copy.model_dump(mode="json", exclude={"name"}).items()
            if first.get(key) != value
        }
    )


def warn_replicas(warnings: Warnings, catalogue: Catalogue, service: Service, target: str) -> None:
    """Per-replica values that ``target``'s identical replicas would lose, as a warning."""
    differing = replica_differences(catalogue, service)
    if differing:
        warnings.add(
            service.name,
            f"{', '.join(differing)} differ per replica (${{replica}}): {target} runs"
            f" {service.replicas} identical copies with replica 0's values",
        )


def numeric_ids(service: Service, warnings: Warnings, target: str) -> tuple[int | None, int | None]:
    """``user:``/``group:`` as numbers (a target that takes no names): a number as given, a
    name resolved on this host (with a warning: the target's ids may differ), else None."""
    found: list[int | None] = []
    for key, value, find in (
        ("user", service.user, accounts.find_user),
        ("group", service.group, accounts.find_group),
    ):
        if value is None:
            found.append(None)
        elif value.isdigit():
            found.append(int(value))
        else:
            try:
                entry = find(value)
            except accounts.AccountError:
                warnings.add(
                    service.name,
                    f"{key} {value!r}: {target} needs a number and this host has no such"
                    f" {key}; not exported",
                )
                found.append(None)
                continue
            number = entry.pw_uid if isinstance(entry, pwd.struct_passwd) else entry.gr_gid
            warnings.add(
                service.name,
                f"{key} {value!r}: {target} takes a number; exported as {number}, this host's"
                " (check it on the target)",
            )
            found.append(number)
    return found[0], found[1]
