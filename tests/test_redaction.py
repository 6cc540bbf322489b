"""redaction: which values are secrets, every spelling of each masked, credentials by shape."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from svcorch import catalogue as catalogue_module
from svcorch.logconfig import OwnRecordsOnly, RedactingFormatter
from svcorch.redaction import (
    MASK,
    Credentials,
    Redactor,
    catalogue_secrets,
    is_secret_key,
    redact_shapes,
    redact_url,
)

SECRET = "S3cr3t/pw+!"  # `/` and `+` differ between the base64 alphabets; `!` gets URL-encoded


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "name",
    ["DB_PASSWORD", "passwd", "API_TOKEN", "client_secret", "X-Api-Key", "apikey",
     "GOOGLE_CREDENTIALS", "SSH_PASSPHRASE", "API_KEY", "AWS_SECRET_ACCESS_KEY", "REDIS_AUTH",
     "DB_PASS", "SMTP_PW", "MYSQL_PWD"],
)  # fmt: skip
def test_names_of_secrets(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name", ["PWD", "KEY", "KEY_PREFIX", "SSH_AUTH_SOCK", "MONKEY", "PATH", "BYPASS", "AUTHOR"]
)
def test_names_that_are_not_secrets(name: str) -> None:
    assert not is_secret_key(name)


@pytest.mark.parametrize(
    "spelling",
    [
        SECRET,
        quote(SECRET, safe=""),
        quote(SECRET),
        quote_plus(SECRET),
        quote(SECRET, safe="").replace("%2F", "%2f"),  # some encoders write %2f, or mix
        json.dumps(SECRET)[1:-1],
        b64(SECRET),
        b64(SECRET).rstrip("="),
        b64(SECRET).replace("+", "-").replace("/", "_"),
    ],
)
def test_every_spelling_of_a_secret_is_masked(spelling: str) -> None:
    masked = Redactor.of([SECRET]).text(f"before {spelling} after")
    assert masked == f"before {MASK} after"


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_a_secret_inside_a_longer_base64_text_is_masked_at_any_alignment(offset: int) -> None:
    """A token inside an encoded JSON document: whatever bytes come before it."""
    document = b64("x" * offset + json.dumps({"token": SECRET, "user": "app"}))
    masked = Redactor.of([SECRET]).text(document)
    assert MASK in masked
    # what is left decodes to nothing of the secret
    for piece in masked.split(MASK):
        for start in range(4):
            chunk = piece[start:]
            chunk = chunk[: len(chunk) // 4 * 4]
            decoded = base64.b64decode(chunk + "==", validate=False) if chunk else b""
            assert b"S3cr3t" not in decoded and b"pw+!" not in decoded


def test_basic_auth_credentials_are_secret_only_in_base64() -> None:
    redactor = Redactor.of([SECRET, Credentials(f"shop:{SECRET}")])
    text = f"amqp://shop:{SECRET}@h/ Authorization: Basic {b64('shop:' + SECRET)}"
    assert redactor.text(text) == f"amqp://shop:{MASK}@h/ Authorization: Basic {MASK}"


def test_short_values_and_switches_are_masked_only_under_their_name() -> None:
    redactor = Redactor.of(["60", "true", "abc"])
    assert redactor.text("pid 60 true abc") == "pid 60 true abc"
    data = {"TOKEN_TTL": "60", "API_TOKEN_AUTH": "true", "uptime": "60"}
    assert redactor.data(data) == {"TOKEN_TTL": MASK, "API_TOKEN_AUTH": MASK, "uptime": "60"}


def test_a_secret_that_is_an_ordinary_word_is_masked_wherever_it_appears() -> None:
    assert Redactor.of(["test"]).text("a test run: tests passed") == "a *** run: ***s passed"


def test_credentials_are_recognised_by_their_shape() -> None:
    text = (
        "celery --broker amqp://u:p@ss@h:5672// http://h/x?token=t0k3n&page=2&api_key=k:1: done"
        " {'Authorization': 'Basic Zm9vOmJhcg=='} proxy-authorization=Bearer xyz"
        " authorization failed"
    )
    assert redact_shapes(text) == (
        "celery --broker amqp://u:***@h:5672// http://h/x?token=***&page=2&api_key=***: done"
        " {'Authorization': 'Basic ***'} proxy-authorization=Bearer ***"
        " authorization failed"
    )
    assert redact_url("https://u:pw@h:8443/p?token=t&x=1") == "https://u:***@h:8443/p?token=***&x=1"


def test_names_and_states_in_messages_stay_as_they_are() -> None:
    redactor = Redactor.of(["redis-primary"])  # a password equal to a service's name
    event = {"event": {"service": "redis-primary", "new": "ready", "detail": "redis-primary ok"}}
    assert redactor.data(event, keep=frozenset({"service", "new"})) == {
        "event": {"service": "redis-primary", "new": "ready", "detail": f"{MASK} ok"}
    }


def test_the_catalogue_s_secrets_are_found_wherever_they_are(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("API_TOKEN=from-env-file\nPLAIN=not-secret\n")
    (tmp_path / "services.yaml").write_text(
        """\
version: 1
env_file: .env
env:
  SHARED_SECRET: top-level-secret
  BROKER_URL: amqp://app:url-password@127.0.0.1:5672//
services:
  web:
    command: serve --db postgres://u:command-password@db/x
    env: {DB_PASSWORD: service-secret, HOOK: "https://h/x?access_token=query-token"}
    ready:
      type: http
      url: http://probe:probe-password@127.0.0.1:8080/health
      headers: {Authorization: "Basic dXNlcjpoZWFkZXItcGFzcw=="}
  mq:
    external: true
    ready: {type: amqp}
notify:
  - {type: webhook, url: "http://hook:hook-password@127.0.0.1:9/x?token=hook-token"}
  - {type: exec, command: [page, "https://u:pager-password@pager/"]}
"""
    )
    catalogue = catalogue_module.load(tmp_path / "services.yaml", environ={"CI_JOB_TOKEN": "ci"})
    found = set(catalogue_secrets(catalogue, {"CI_JOB_TOKEN": "ci-job-token", "HOME": "/root"}))
    assert {
        "from-env-file",
        "top-level-secret",
        "url-password",
        "command-password",
        "service-secret",
        "query-token",
        "probe-password",
        "header-pass",
        "hook-password",
        "hook-token",
        "pager-password",
        "ci-job-token",
    } <= found
    assert Credentials("probe:probe-password") in found
    assert "guest" not in found  # amqp's default password is in the docs, not a secret
    assert not {"not-secret", "/root"} & found


def test_the_daemon_log_keeps_svcorch_s_records_masked() -> None:
    formatter = RedactingFormatter("%(name)s: %(message)s", Redactor.of([SECRET]))
    try:
        raise RuntimeError(f"bad {SECRET}")
    except RuntimeError as exc:
        record = logging.LogRecord("svcorch.engine", 40, "", 0, "web: %s", (SECRET,), None)
        record.exc_info = (type(exc), exc, exc.__traceback__)
    text = formatter.format(record)
    assert SECRET not in text and "RuntimeError: bad ***" in text and "web: ***" in text
    own = OwnRecordsOnly()
    names = ["svcorch", "svcorch.engine", "asyncio", "py.warnings", "pika", "urllib3.connection"]
    passed = [n for n in names if own.filter(logging.LogRecord(n, 40, "", 0, "", None, None))]
    assert passed == ["svcorch", "svcorch.engine", "asyncio", "py.warnings"]


def test_a_reload_keeps_masking_the_secrets_of_earlier_loads(tmp_path: Path) -> None:
    """A running service keeps the environment it was launched with: after the password
    changed in .env and the daemon loaded the catalogue again, the old one may still be
    echoed by that service's probe."""
    import asyncio

    from svcorch.engine import Engine
    from svcorch.state import StateLayout, ensure_state_dir

    (tmp_path / "services.yaml").write_text(
        "version: 1\nservices:\n  app: {command: sleep 1, env: {DB_PASSWORD: '${PW}'}}\n"
    )

    async def reload() -> str:
        first = catalogue_module.load(tmp_path / "services.yaml", environ={"PW": "old-password"})
        layout = StateLayout(ensure_state_dir(tmp_path / "state"))
        engine = Engine(first, layout, environ={"PW": "old-password"})
        second = catalogue_module.load(tmp_path / "services.yaml", environ={"PW": "new-password"})
        engine.load(second, {"PW": "new-password"})
        await engine.close()
        return engine.bus.redact("old-password, new-password")

    assert asyncio.run(reload()) == f"{MASK}, {MASK}"
    both = Redactor.of(["first-one"]).joined(Redactor.of(["second-one"]))
    assert both.text("first-one second-one") == f"{MASK} {MASK}"
