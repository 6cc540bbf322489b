"""The gate catalogue: the probes that ``svcorch check --wait`` runs where a target has no
readiness gate of its own (Kubernetes init containers, compose wait services, systemd's
ExecStartPost, supervisord's program wrappers).

Each checked service becomes an external service with its readiness probe, rewritten for
where the check runs (a loopback host becomes the dependency's Service name in a cluster).
No secret is written: a password becomes ``${SVCORCH_<SERVICE>_<FIELD>}`` and its value goes
to the target's secret store (a Secret, an env file written 0600), from which the check's
environment fills it in. Every other ``$`` is doubled, so the values arrive as exported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from svcorch.exporters.base import env_var_name, url_password, yaml_text
from svcorch.redaction import is_secret_key

_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie")


@dataclass(frozen=True)
class Gates:
    """The gate catalogue's text, the secrets it refers to, and the services it can check."""

    text: str
    secrets: dict[str, str]
    services: tuple[str, ...]


def build(project: str, checks: Mapping[str, Mapping[str, Any]]) -> Gates:
    """``checks``: service name -> its external definition (``ready`` and maybe ``env``)."""
    secrets: dict[str, str] = {}
    services: dict[str, Any] = {}
    for name, definition in checks.items():
        entry: dict[str, Any] = {"external": True}
        for key, value in definition.items():
            entry[key] = _hide(value, (name, key), secrets)
        services[name] = entry
    document = {"version": 1, "name": f"{project}-gates", "services": services}
    header = (
        "# Written by `svcorch export`: the readiness probes that `svcorch check --wait` runs\n"
        "# before a service may start. ${SVCORCH_*} variables come from the secret store.\n"
    )
    text = header + yaml_text(document)
    return Gates(text=text, secrets=secrets, services=tuple(checks))


def _hide(value: Any, path: tuple[str, ...], secrets: dict[str, str]) -> Any:
    """``value`` with secrets replaced by variables and every other ``$`` doubled."""
    if isinstance(value, dict):
        return {k: _hide_item(str(k), v, path, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v, path, secrets) for v in value]
    if isinstance(value, str):
        return _hide_url(value, path, secrets)
    return value


def _hide_item(key: str, value: Any, path: tuple[str, ...], secrets: dict[str, str]) -> Any:
    secret_key = is_secret_key(key) or key.lower() in _SECRET_HEADERS
    if isinstance(value, str) and secret_key:
        return _variable(value, (*path, key), secrets)
    return _hide(value, (*path, key), secrets)


def _hide_url(value: str, path: tuple[str, ...], secrets: dict[str, str]) -> str:
    password = url_password(value)
    if password is None:
        return _escape(value)
    scheme_end = value.index("://") + 3
    at = value.index("@", scheme_end)
    userinfo = value[scheme_end:at]
    user = userinfo.split(":", 1)[0]
    variable = _variable(password, (*path, "password"), secrets)
    return _escape(value[:scheme_end] + user + ":") + variable + _escape(value[at:])


def _variable(value: str, path: tuple[str, ...], secrets: dict[str, str]) -> str:
    name = env_var_name("SVCORCH", *(p for p in path if p != "ready"))
    secrets[name] = value
    return "${" + name + "}"


def _escape(text: str) -> str:
    return text.replace("$", "$$")
