"""Definitions, fingerprints and the change lines `up` prints when it recreates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from svcorch.catalogue import load
from svcorch.fingerprint import changes, definition, fingerprint
from svcorch.model import Catalogue

KEY = b"k" * 32


def load_with(tmp_path: Path, env: dict[str, str]) -> Catalogue:
    path = tmp_path / "services.yaml"
    path.write_text(
        "version: 1\n"
        "env:\n  MODE: ${MODE:-development}\n"
        "services:\n"
        "  web:\n    command: gunicorn app\n    env:\n      DB_PASSWORD: ${DB_PASSWORD:-one}\n"
    )
    return load(path, environ=env)


def test_the_definition_holds_the_declared_environment_not_the_shell(tmp_path: Path) -> None:
    catalogue = load_with(tmp_path, {"MODE": "production", "TERM": "xterm"})
    defn = definition(catalogue, catalogue.services["web"])
    assert defn["env"] == {"MODE": "production", "DB_PASSWORD": "one"}
    assert defn["command"] == ["gunicorn", "app"]
    assert "xterm" not in json.dumps(defn)


def test_change_lines_name_the_keys_and_mask_secrets(tmp_path: Path) -> None:
    old_catalogue = load_with(tmp_path, {})
    new_catalogue = load_with(tmp_path, {"MODE": "production", "DB_PASSWORD": "two-Sekr1t"})
    old = definition(old_catalogue, old_catalogue.services["web"])
    new = definition(new_catalogue, new_catalogue.services["web"])
    lines = changes(old, new)
    assert lines == ["env DB_PASSWORD changed (secret)", "env MODE development → production"]
    assert "Sekr1t" not in " ".join(lines)


def test_added_removed_and_url_passwords() -> None:
    old = {"env": {"A": "1", "BROKER": "amqp://u:pw1@h/"}, "ports": []}
    new = {"env": {"B": "2", "BROKER": "amqp://u:pw2@h/"}, "ports": [8000]}
    lines = changes(old, new)
    assert "env A removed (was 1)" in lines
    assert "env B added: 2" in lines
    assert "env BROKER amqp://u:***@h/ → amqp://u:***@h/" in lines
    assert "ports (none) → 8000" in lines
    assert "pw1" not in " ".join(lines) and "pw2" not in " ".join(lines)


def test_fingerprints_are_keyed_stable_and_sensitive() -> None:
    defn = {"command": ["redis-server"], "env": {"REDIS_PASSWORD": "hunter2"}}
    assert fingerprint(defn, KEY) == fingerprint(dict(defn), KEY)
    assert fingerprint(defn, KEY) != fingerprint(defn, b"x" * 32)
    assert fingerprint(defn, KEY) != fingerprint({**defn, "command": ["redis"]}, KEY)
    plain = hashlib.sha256(
        json.dumps(defn, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert not plain.startswith(fingerprint(defn, KEY))


def test_a_description_or_profile_change_is_not_a_new_process(tmp_path: Path) -> None:
    catalogue = load_with(tmp_path, {})
    web = catalogue.services["web"]
    other = web.model_copy(update={"description": "the web app", "profiles": ["web"]})
    assert definition(catalogue, web) == definition(catalogue, other)


def test_user_and_group_are_part_of_the_definition_replicas_and_autostart_not(
    tmp_path: Path,
) -> None:
    """The definition dumps the service model: a new key is in it unless excluded on purpose."""
    path = tmp_path / "services.yaml"

    def service(extra: str) -> dict[str, object]:
        path.write_text(f"version: 1\nservices:\n  w:\n    command: run\n{extra}")
        catalogue = load(path, environ={}, check_accounts=False)
        return definition(catalogue, catalogue.services["w"])

    plain = service("")
    as_user = service("    user: nobody\n    group: nogroup\n")
    assert changes(plain, as_user) == ["group (none) → nogroup", "user (none) → nobody"]
    assert service("    replicas: 3\n    autostart: false\n") == plain
