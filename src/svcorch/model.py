"""The catalogue model: frozen pydantic v2 models for services.yaml, unknown keys rejected.

Positions and interpolation live in ``catalogue.py``; this module only says what is valid.
"""

from __future__ import annotations

import re
import shlex
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from signal import Signals
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializeAsAny,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from svcorch.durations import Duration, Interval, Size
from svcorch.probes import registry
from svcorch.probes.base import ProbeOptions

SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
SUPPORTED_VERSIONS = (1,)
MAX_LOG_BACKUPS = 1000


class Condition(StrEnum):
    """What a dependent waits for."""

    READY = "ready"
    STARTED = "started"
    COMPLETED = "completed"


class RestartPolicy(StrEnum):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class Kind(StrEnum):
    """How svcorch treats a service: spawned and kept, run to completion, or only waited for."""

    MANAGED = "managed"
    ONESHOT = "oneshot"
    EXTERNAL = "external"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def probe_options_from(value: Any) -> Any:
    """Turn a ``{type: ..., ...}`` mapping into the registered type's options model."""
    if value is None or isinstance(value, ProbeOptions) or not isinstance(value, dict):
        return value
    type_name = value.get("type")
    if not isinstance(type_name, str):
        raise ValueError("a probe needs 'type' (one of: " + ", ".join(registry.names()) + ")")
    probe_type = registry.get(type_name)
    if probe_type is None:
        raise ValueError(f"unknown probe type {type_name!r}")
    return probe_type.options.model_validate(value)


class Dependency(_Frozen):
    """One edge: the dependent waits until the dependency meets ``condition``."""

    condition: Condition = Condition.READY
    restart_on_dependency: bool = Field(
        default=False,
        description="stop this service while the dependency restarts, start it again after",
    )

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"condition": value}
        if value is None:
            return {}
        return value


class RestartSpec(_Frozen):
    policy: RestartPolicy = RestartPolicy.NO
    max_restarts: int = Field(default=5, ge=0)
    window: Duration = Field(
        default=timedelta(seconds=60), description="max_restarts counts restarts within this"
    )
    backoff: Interval = timedelta(seconds=1)
    max_backoff: Interval = timedelta(seconds=30)
    reset_after: Duration = Field(
        default=timedelta(seconds=30),
        description="backoff starts again from `backoff` after the service stayed ready this long",
    )

    @field_validator("policy", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `no` as False; users mean the policy named "no"
        if value is False:
            return "no"
        if value is True:
            return "always"
        return value


def parse_signal(value: Any) -> Signals:
    """``TERM``, ``SIGTERM``, ``term`` or ``15`` -> ``signal.SIGTERM``."""
    if isinstance(value, Signals):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return Signals(value)
        except ValueError:
            raise ValueError(f"unknown signal number {value}") from None
    if isinstance(value, str):
        name = value.strip().upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        try:
            return Signals[name]
        except KeyError:
            raise ValueError(f"unknown signal {value!r} (e.g. TERM, INT, QUIT, HUP)") from None
    raise ValueError(f"expected a signal name like TERM, got {value!r}")


SignalName = Annotated[
    Signals,
    BeforeValidator(parse_signal),
    PlainSerializer(lambda sig: sig.name.removeprefix("SIG"), return_type=str),
    WithJsonSchema({"type": ["string", "integer"], "description": "TERM, INT, QUIT, HUP, ..."}),
]


class StopSpec(_Frozen):
    signal: SignalName = Signals.SIGTERM
    timeout: Duration = timedelta(seconds=10)
    command: str | list[str] | None = Field(
        default=None, description="run first (e.g. rabbitmqctl stop), then the signal"
    )


class Liveness(_Frozen):
    """A probe checked every ``probe.period`` once ready; N failures in a row restart."""

    probe: SerializeAsAny[ProbeOptions]
    failure_threshold: int = Field(default=3, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _flat_form(cls, value: Any) -> Any:
        # users write `liveness: {type: http, url: ..., failure_threshold: 3}`
        if isinstance(value, dict) and "type" in value:
            options = dict(value)
            threshold = options.pop("failure_threshold", 3)
            return {"probe": options, "failure_threshold": threshold}
        return value

    @field_validator("probe", mode="before")
    @classmethod
    def _probe(cls, value: Any) -> Any:
        return probe_options_from(value)


class Service(_Frozen):
    """One entry under ``services:``."""

    name: str = Field(default="", exclude=True, description="the key under services")
    description: str | None = None
    command: str | list[str] | None = Field(
        default=None, description="a string (split like a shell would) or an argv list"
    )
    shell: bool = Field(default=False, description="run `command` with /bin/sh -c")
    cwd: str | None = Field(default=None, description="relative to the catalogue's folder")
    env: dict[str, str] = Field(default_factory=dict)
    depends_on: dict[str, Dependency] = Field(default_factory=dict)
    ready: SerializeAsAny[ProbeOptions] | None = None
    liveness: Liveness | None = None
    restart: RestartSpec = Field(default_factory=RestartSpec)
    stop: StopSpec = Field(default_factory=StopSpec)
    profiles: list[str] = Field(default_factory=list)
    autostart: bool = Field(
        default=True,
        description="false: an `up` without names leaves it alone (name it, or a profile of"
        " its, to start it); `autostart: ${START_X:-true}` makes it a switch",
    )
    external: bool = Field(
        default=False,
        description="never started or stopped, only probed; `command` and `ports` are then"
        " ignored, so one entry can switch with `external: ${USE_SYSTEM_REDIS:-false}`",
    )
    oneshot: bool = Field(default=False, description="must exit 0; dependents may wait for it")
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=list, description="must be free before the service is spawned"
    )
    image: str | None = Field(
        default=None,
        description="the container image for `svcorch export kubernetes|compose`; svcorch's"
        " own runtime ignores it",
    )
    replicas: int = Field(
        default=1,
        ge=1,
        description="run N processes of this service (`name#0` .. `name#N-1`), each with"
        " SVCORCH_REPLICA and `${replica}` set to its index; ready when all are ready",
    )
    user: str | None = Field(
        default=None,
        description="run as this account (name or uid): its uid, gid, supplementary groups,"
        " HOME, USER and LOGNAME; svcorch must run as root to switch",
    )
    group: str | None = Field(
        default=None, description="run with this primary group (name or gid) instead of the user's"
    )

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, value: Any) -> Any:
        return _stringify_env(value)

    @field_validator("depends_on", mode="before")
    @classmethod
    def _list_form(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, str):
            raise ValueError(f"expected a list of service names or a mapping, got {value!r}")
        if isinstance(value, list):
            # a list holds names only; `[a, {b: completed}]` would otherwise become a service
            # called "{'b': 'completed'}" that no check knows about
            names: dict[str, Any] = {}
            for entry in value:
                if isinstance(entry, bool) or not isinstance(entry, str | int):
                    raise ValueError(
                        f"expected service names, got {entry!r} (for a condition use a mapping:"
                        " `depends_on: {name: completed}`)"
                    )
                names[str(entry)] = {}
            return names
        return value

    @field_validator("ready", mode="before")
    @classmethod
    def _probe(cls, value: Any) -> Any:
        return probe_options_from(value)

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None and not (value.strip() if isinstance(value, str) else value):
            raise ValueError("command must not be empty")
        # only quotes and backslashes can make shlex fail; it is slow, so skip plain commands
        if isinstance(value, str) and any(c in value for c in "'\"\\"):
            try:
                shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split command: {exc}") from None
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Service:
        if self.external and self.oneshot:
            raise ValueError("a service cannot be both external and oneshot")
        if self.external and self.ready is None:
            raise ValueError("an external service needs a `ready` probe (that is all svcorch does)")
        if self.external and self.outside_probe() is None:
            raise ValueError(
                "an external service with `ready: {type: notify}` needs a `liveness` probe"
                " (svcorch starts nothing, so nothing can notify it; the liveness probe is"
                " its readiness)"
            )
        if not self.external and self.command is None:
            raise ValueError("missing `command` (or set `external: true`)")
        if self.oneshot and self.restart.policy is RestartPolicy.ALWAYS:
            raise ValueError("a oneshot cannot have restart policy 'always'")
        if self.external and self.replicas > 1:
            raise ValueError("an external service cannot have replicas (svcorch starts none)")
        return self

    def outside_probe(self) -> ProbeOptions | None:
        """What a probe from outside the process can check of readiness: ``ready``, or,
        when that is ``notify`` (only the process's own word), the liveness probe with the
        readiness's ``timeout`` and ``period``."""
        ready = self.ready
        if ready is not None and ready.type == "notify":
            probe = self.liveness.probe if self.liveness is not None else None
            if probe is None or probe.type == "notify":
                return None
            # waited for as a readiness: the readiness's own timing, not every liveness period
            return probe.model_copy(update={"timeout": ready.timeout, "period": ready.period})
        return ready

    @property
    def kind(self) -> Kind:
        if self.external:
            return Kind.EXTERNAL
        return Kind.ONESHOT if self.oneshot else Kind.MANAGED

    def argv(self) -> list[str]:
        """The argv to execute: shell-split, or ``/bin/sh -c`` when ``shell: true``."""
        if self.command is None:
            return []
        if self.shell:
            text = self.command if isinstance(self.command, str) else shlex.join(self.command)
            return ["/bin/sh", "-c", text]
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)


# the levels of svcorch.engine.events.Severity, lowest first (a test holds them equal)
SeverityName = Literal["info", "warning", "error", "critical"]


class _DaemonAlerts(_Frozen):
    """What a notifier takes of the daemon's events (``check --watch`` ignores these)."""

    min_severity: SeverityName = "warning"
    damping: Duration = timedelta(seconds=30)  # one alert per burst, then one summary


class WebhookNotifier(_DaemonAlerts):
    type: Literal["webhook"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = timedelta(seconds=5)
    retries: int = Field(default=3, ge=0)

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("a webhook url must start with http:// or https://")
        return value


class ExecNotifier(_DaemonAlerts):
    type: Literal["exec"]
    command: str | list[str]
    shell: bool = False
    timeout: Duration = timedelta(seconds=10)
    retries: int = Field(default=1, ge=0)


Notifier = Annotated[WebhookNotifier | ExecNotifier, Field(discriminator="type")]


class LogsSpec(_Frozen):
    max_size: Size = 50 * 1000 * 1000
    backups: int = Field(default=5, ge=0, le=MAX_LOG_BACKUPS)

    @field_validator("backups", mode="before")
    @classmethod
    def _few_backups(cls, value: Any) -> Any:
        # each rotation renames every backup in turn: a billion would occupy a thread for hours
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_LOG_BACKUPS:
            raise ValueError(f"at most {MAX_LOG_BACKUPS} backups, got {value}")
        return value


class Catalogue(_Frozen):
    """A whole services.yaml, interpolated and validated."""

    version: int
    name: str | None = None
    env_file: str | list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    services: dict[str, Service]
    notify: list[Notifier] = Field(default_factory=list)
    logs: LogsSpec = Field(default_factory=LogsSpec)
    path: Path = Field(default=Path("services.yaml"), exclude=True)
    dotenv: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)
    # replicas 1..N-1 of each service with `replicas: N` (the service itself is replica 0),
    # each interpolated with its own ${replica}; see svcorch.replicas
    replica_services: dict[str, list[Service]] = Field(
        default_factory=dict, exclude=True, repr=False
    )
    # after svcorch.replicas.expand: each replicated service's name -> its replicas' names
    groups: dict[str, tuple[str, ...]] = Field(default_factory=dict, exclude=True, repr=False)

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value not in SUPPORTED_VERSIONS:
            supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
            raise ValueError(f"unsupported version {value} (supported: {supported})")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, value: Any) -> Any:
        return _stringify_env(value)

    @field_validator("services", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        named: dict[str, Any] = {}
        for name, spec in value.items():
            if isinstance(spec, dict):
                spec = {**spec, "name": name}
            named[name] = spec
        return named

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def label(self) -> str:
        """``name``, or the file's path as given: what graph, --dot, --json and config show."""
        return self.name or str(self.path)

    def service(self, name: str) -> Service:
        return self.services[name]


def _stringify_env(value: Any) -> Any:
    # `PORT: 8000` and `DEBUG: true` are what users write; the environment holds strings
    if not isinstance(value, dict):
        return value
    converted: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            converted[key] = "true" if item else "false"
        elif isinstance(item, int | float):
            converted[key] = str(item)
        elif item is None:
            converted[key] = ""
        else:
            converted[key] = item
    return converted
