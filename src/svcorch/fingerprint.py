"""What a service runs, as a comparable definition: its fingerprint and the changes between two.

A deployment is a snapshot: ``up`` resolves the catalogue and the caller's environment once,
and every later start of a service (autorestart, liveness, ``restart``) reuses what it was
started with. ``up`` with a changed catalogue or environment recreates exactly the services
whose definition changed, and says which keys changed (``env ENVIRONMENT development →
production``), secrets masked.

The definition covers what decides the process: its command, working directory, the
environment the catalogue declares (after interpolation: env_file, top-level env, its own
env), probes, stop and restart specs, ports and kind. Variables a service merely inherits from
the shell that ran ``up`` are frozen in the snapshot but are not part of the definition: a
different terminal must not recreate a stack. Declare a variable in ``env:`` to track it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from svcorch.model import Catalogue, Service
from svcorch.redaction import is_secret_key, redact_url

# keys of a service that do not change the process it runs (replicas: scaling adds or removes
# replicas; the others keep running)
NOT_THE_PROCESS = frozenset(
    {"name", "description", "depends_on", "profiles", "image", "replicas", "autostart"}
)
SHOWN = 60  # characters of a changed value shown in a change line

Definition = dict[str, Any]


def definition(catalogue: Catalogue, service: Service) -> Definition:
    """The comparable definition of ``service`` as ``catalogue`` resolves it."""
    data = service.model_dump(mode="json", exclude=set(NOT_THE_PROCESS))
    data["command"] = service.argv()
    data.pop("shell", None)  # folded into the argv
    cwd = catalogue.base_dir / service.cwd if service.cwd else catalogue.base_dir
    data["cwd"] = str(cwd.absolute())
    data["env"] = {**catalogue.dotenv, **catalogue.env, **service.env}
    return data


def fingerprint(defn: Definition, key: bytes) -> str:
    """A short stable keyed hash of a definition (stored in state.json: it reveals no value,
    and without the state dir's key it cannot be used to test guesses of a secret)."""
    text = json.dumps(defn, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:24]


def changes(old: Definition, new: Definition) -> list[str]:
    """What changed from ``old`` to ``new``, one line per key, secrets masked:
    ``env ENVIRONMENT development → production``, ``ready.port 8000 → 8001``."""
    lines: list[str] = []
    flat_old, flat_new = _flatten(old), _flatten(new)
    for key in sorted(flat_old.keys() | flat_new.keys()):
        before, after = flat_old.get(key), flat_new.get(key)
        if before == after:
            continue
        label = _label(key)
        if key not in flat_old:
            lines.append(f"{label} added: {_shown(key, after)}")
        elif key not in flat_new:
            lines.append(f"{label} removed (was {_shown(key, before)})")
        elif _secret(key):
            lines.append(f"{label} changed (secret)")
        else:
            lines.append(f"{label} {_shown(key, before)} → {_shown(key, after)}")
    return lines


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _label(key: str) -> str:
    # env.ENVIRONMENT -> "env ENVIRONMENT": the variable's name as the user wrote it
    return "env " + key[4:] if key.startswith("env.") else key


def _secret(key: str) -> bool:
    return is_secret_key(key.rsplit(".", 1)[-1])


def _shown(key: str, value: Any) -> str:
    if _secret(key):
        return "***"
    if isinstance(value, list):
        text = " ".join(str(part) for part in value)
    else:
        text = "" if value is None else str(value)
    text = redact_url(text)
    text = text if text else "(none)"
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"
