"""The pydantic model on its own: forms it accepts, rules it enforces, immutability."""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from svcorch.model import (
    Catalogue,
    Condition,
    Dependency,
    Kind,
    Liveness,
    RestartPolicy,
    RestartSpec,
    Service,
    StopSpec,
    parse_signal,
)
from svcorch.probes.tcp import TcpOptions


def service(**spec: Any) -> Service:
    spec.setdefault("command", "true")
    return Service.model_validate(spec)


def error_of(spec: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Service.model_validate(spec)
    return caught.value.errors()[0]["msg"].removeprefix("Value error, ")


# -- depends_on ---------------------------------------------------------------------------------


def test_depends_on_list_form_waits_for_ready() -> None:
    assert service(depends_on=["db", "cache"]).depends_on == {
        "db": Dependency(condition=Condition.READY),
        "cache": Dependency(condition=Condition.READY),
    }


def test_depends_on_mapping_short_and_full_forms() -> None:
    depends_on = service(
        depends_on={
            "db": "started",
            "migrate": {"condition": "completed"},
            "cache": None,
            "broker": {"condition": "ready", "restart_on_dependency": True},
        }
    ).depends_on
    assert depends_on["db"].condition is Condition.STARTED
    assert depends_on["migrate"].condition is Condition.COMPLETED
    assert depends_on["cache"] == Dependency()
    assert depends_on["broker"].restart_on_dependency is True
    assert depends_on["cache"].restart_on_dependency is False


def test_depends_on_rejects_what_is_not_a_name_or_a_condition() -> None:
    assert error_of({"command": "x", "depends_on": ["a", {"b": "completed"}]}) == (
        "expected service names, got {'b': 'completed'} (for a condition use a mapping:"
        " `depends_on: {name: completed}`)"
    )
    assert "'ready', 'started' or 'completed'" in error_of(
        {"command": "x", "depends_on": {"a": "healthy"}}
    )
    assert service(depends_on=[1]).depends_on == {"1": Dependency()}
    assert error_of({"command": "x", "depends_on": "db"}) == (
        "expected a list of service names or a mapping, got 'db'"
    )


# -- restart, stop, signals ---------------------------------------------------------------------


def test_restart_policy_no_survives_yaml_reading_it_as_false() -> None:
    spec = yaml.safe_load("restart: {policy: no}\ncommand: x")
    assert spec["restart"]["policy"] is False  # what YAML 1.1 does with a bare `no`
    assert service(**spec).restart.policy is RestartPolicy.NO
    assert RestartSpec.model_validate({"policy": "on-failure"}).policy is RestartPolicy.ON_FAILURE


def test_restart_defaults_and_durations() -> None:
    restart = RestartSpec.model_validate({"policy": "always", "backoff": "500ms", "window": 120})
    assert restart.backoff == timedelta(milliseconds=500)
    assert restart.window == timedelta(minutes=2)
    assert restart.max_backoff == timedelta(seconds=30)
    assert restart.max_restarts == 5
    assert restart.model_dump(mode="json")["backoff"] == "500ms"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("TERM", signal.SIGTERM),
        ("SIGINT", signal.SIGINT),
        ("quit", signal.SIGQUIT),
        (" hup ", signal.SIGHUP),
        (9, signal.SIGKILL),
        (signal.SIGUSR1, signal.SIGUSR1),
    ],
)
def test_signals_by_name_or_number(value: object, expected: signal.Signals) -> None:
    assert parse_signal(value) is expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("FOO", "unknown signal 'FOO' (e.g. TERM, INT, QUIT, HUP)"),
        (999, "unknown signal number 999"),
        (True, "expected a signal name like TERM, got True"),
    ],
)
def test_bad_signals(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_signal(value)


def test_stop_spec_serialises_the_signal_by_its_short_name() -> None:
    stop = StopSpec.model_validate({"signal": "INT", "timeout": "15s", "command": "x stop"})
    assert stop.signal is signal.SIGINT
    assert stop.model_dump(mode="json") == {"signal": "INT", "timeout": "15s", "command": "x stop"}
    assert StopSpec().signal is signal.SIGTERM


# -- kinds: managed, oneshot, external ----------------------------------------------------------


def test_kinds() -> None:
    probe = {"type": "tcp", "port": 5432}
    assert service().kind is Kind.MANAGED
    assert service(oneshot=True).kind is Kind.ONESHOT
    assert Service.model_validate({"external": True, "ready": probe}).kind is Kind.EXTERNAL
    # an external service may keep its command, so `external: ${USE_SYSTEM_DB:-false}` switches
    assert service(external="true", ready=probe).kind is Kind.EXTERNAL


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"external": True, "oneshot": True, "ready": {"type": "tcp", "port": 1}},
            "a service cannot be both external and oneshot",
        ),
        (
            {"external": True},
            "an external service needs a `ready` probe (that is all svcorch does)",
        ),
        ({}, "missing `command` (or set `external: true`)"),
        (
            {"command": "x", "oneshot": True, "restart": {"policy": "always"}},
            "a oneshot cannot have restart policy 'always'",
        ),
        ({"command": "  "}, "command must not be empty"),
        ({"command": []}, "command must not be empty"),
        ({"command": "echo 'unterminated"}, "cannot split command: No closing quotation"),
    ],
)
def test_kind_rules(spec: dict[str, Any], message: str) -> None:
    assert error_of(spec) == message


def test_argv() -> None:
    assert service(command="gunicorn wsgi -b '127.0.0.1:8000'").argv() == [
        "gunicorn",
        "wsgi",
        "-b",
        "127.0.0.1:8000",
    ]
    assert service(command=["echo", "a b"]).argv() == ["echo", "a b"]
    assert service(command="echo $HOME && true", shell=True).argv() == [
        "/bin/sh",
        "-c",
        "echo $HOME && true",
    ]
    assert service(command=["echo", "a b"], shell=True).argv() == ["/bin/sh", "-c", "echo 'a b'"]


# -- probes and liveness ------------------------------------------------------------------------


def test_ready_becomes_the_probe_types_own_options_model() -> None:
    ready = service(ready={"type": "tcp", "port": "6379", "timeout": "5s"}).ready
    assert isinstance(ready, TcpOptions)
    assert ready.port == 6379
    assert ready.host == "127.0.0.1"
    assert ready.timeout == timedelta(seconds=5)
    assert ready.period == timedelta(seconds=1)


def test_probe_problems() -> None:
    assert error_of({"command": "x", "ready": {"type": "tpc", "port": 1}}) == (
        "unknown probe type 'tpc'"
    )
    assert error_of({"command": "x", "ready": {"port": 1}}).startswith(
        "a probe needs 'type' (one of: tcp, http, exec, log, redis, amqp, mysql, influxdb"
    )


def test_liveness_is_written_flat_with_its_failure_threshold() -> None:
    liveness = service(liveness={"type": "tcp", "port": 80, "failure_threshold": 2}).liveness
    assert liveness == Liveness(probe=TcpOptions(port=80), failure_threshold=2)
    assert service(liveness={"type": "tcp", "port": 80}).liveness == Liveness(
        probe=TcpOptions(port=80), failure_threshold=3
    )


# -- env, ports, catalogue ------------------------------------------------------------------------


def test_env_values_become_strings_as_the_environment_holds_them() -> None:
    env = service(env={"PORT": 8000, "DEBUG": True, "OFF": False, "RATIO": 0.5, "NONE": None}).env
    assert env == {"PORT": "8000", "DEBUG": "true", "OFF": "false", "RATIO": "0.5", "NONE": ""}


def test_ports_accept_interpolated_strings_and_stay_in_range() -> None:
    assert service(ports=["6379", 8000]).ports == [6379, 8000]
    assert "less than or equal to 65535" in error_of({"command": "x", "ports": [70000]})


def test_catalogue_version_and_unknown_keys() -> None:
    services = {"a": {"command": "x"}}
    catalogue = Catalogue.model_validate({"version": 1, "services": services})
    assert catalogue.services["a"].name == "a"
    with pytest.raises(ValidationError, match="unsupported version 2"):
        Catalogue.model_validate({"version": 2, "services": services})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Catalogue.model_validate({"version": 1, "services": services, "servics": {}})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        service(comand="x")


def test_models_are_frozen() -> None:
    catalogue = Catalogue.model_validate(
        {"version": 1, "services": {"a": {"command": "x", "ready": {"type": "tcp", "port": 1}}}}
    )
    a = catalogue.services["a"]
    with pytest.raises(ValidationError, match="frozen"):
        a.command = "y"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        a.restart.policy = RestartPolicy.ALWAYS  # type: ignore[misc]
    assert a.ready is not None
    with pytest.raises(ValidationError, match="frozen"):
        a.ready.timeout = timedelta(0)  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        catalogue.version = 2  # type: ignore[misc]
    assert hash(a.stop) == hash(StopSpec())  # frozen models hash by value
