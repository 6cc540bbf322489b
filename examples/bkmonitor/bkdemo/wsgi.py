"""The web tier as a plain WSGI callable, served by gunicorn (``bkdemo.wsgi:app``).

GET  /healthz       200 when this process can reach MySQL and the broker, else 503 and why
POST /events        {"metric": str, "value": number, "severity": str} -> 202 {"task_id": ...}
                    once the broker has confirmed the task's message; 503 while it cannot
GET  /events/<id>   whether the event's alert row is stored yet
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from amqp.exceptions import AMQPError, MessageNacked
from kombu import Connection
from kombu.exceptions import KombuError

from bkdemo import store
from bkdemo.celery_app import CONFIRM_TIMEOUT_SECONDS, settings
from bkdemo.settings import redact
from bkdemo.tasks import record_event

StartResponse = Callable[[str, list[tuple[str, str]]], object]
Response = tuple[HTTPStatus, dict[str, Any]]

SEVERITIES = frozenset({"info", "warning", "critical"})
METRIC = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
TASK_ID = re.compile(r"^[0-9a-f-]{36}$")
MAX_BODY = 16 * 1024


# What publishing raises while the broker is away, restarting or refusing the message:
# connection errors after kombu's retries, a nack, a confirm that did not come in time.
BROKER_ERRORS = (KombuError, AMQPError, MessageNacked, OSError)


class BadRequest(Exception):
    """The client sent something we refuse; the message goes back in the 400 body."""


class Unavailable(Exception):
    """A server the request needs is away; the message goes back in the 503 body."""


def _check_mysql() -> str | None:
    try:
        with store.mysql(settings) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure is a health verdict, not a crash
        return f"mysql: {exc}"
    return None


def _check_broker() -> str | None:
    try:
        with Connection(settings.amqp_url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
    except Exception as exc:  # any failure is a health verdict, not a crash
        return f"broker: {exc}"
    return None


def healthz() -> Response:
    problems = [p for p in (_check_mysql(), _check_broker()) if p is not None]
    if problems:
        return HTTPStatus.SERVICE_UNAVAILABLE, {"status": "fail", "reason": "; ".join(problems)}
    return HTTPStatus.OK, {"status": "ok", "mysql": "ok", "broker": "ok"}


def parse_event(body: bytes) -> tuple[str, float, str, str | None]:
    """metric, value, severity and the client's optional event id (an idempotency key)."""
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise BadRequest("body must be a JSON object")
    unknown = sorted(set(event) - {"metric", "value", "severity", "id"})
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)}")
    metric, value, severity = event.get("metric"), event.get("value"), event.get("severity")
    if not isinstance(metric, str) or not METRIC.match(metric):
        raise BadRequest("metric must be 1-128 characters of letters, digits and _ . : -")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest("value must be a finite number")
    if severity not in SEVERITIES:
        raise BadRequest(f"severity must be one of {', '.join(sorted(SEVERITIES))}")
    event_id = event.get("id")
    if event_id is not None and not (isinstance(event_id, str) and TASK_ID.match(event_id)):
        raise BadRequest("id must be a UUID like 1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    return metric, float(value), severity, event_id


def post_event(body: bytes) -> Response:
    """202 only once the broker has confirmed the message: an accepted event is on disk in a
    durable queue. While the broker is away the client gets 503 and should send it again;
    with the same ``id`` (the task id), however often it is sent, it is stored once."""
    metric, value, severity, event_id = parse_event(body)
    try:
        result = record_event.apply_async(
            (metric, value, severity), task_id=event_id, confirm_timeout=CONFIRM_TIMEOUT_SECONDS
        )
    except BROKER_ERRORS as exc:
        text = str(exc).replace(settings.amqp_url, redact(settings.amqp_url))
        raise Unavailable(f"broker unavailable: {type(exc).__name__}: {text}") from exc
    return HTTPStatus.ACCEPTED, {"task_id": result.id}


def get_event(task_id: str) -> Response:
    if not TASK_ID.match(task_id):
        raise BadRequest("not a task id")
    with store.mysql(settings) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT metric, value, severity FROM alerts WHERE task_id = %s", (task_id,))
        row = cursor.fetchone()
    if row is None:
        return HTTPStatus.OK, {"task_id": task_id, "stored": False}
    metric, value, severity = row
    alert = {"metric": metric, "value": value, "severity": severity}
    return HTTPStatus.OK, {"task_id": task_id, "stored": True, "alert": alert}


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise BadRequest("bad Content-Length") from exc
    if length > MAX_BODY:
        raise BadRequest(f"body larger than {MAX_BODY} bytes")
    body: bytes = environ["wsgi.input"].read(length)
    return body


def route(environ: dict[str, Any]) -> Response:
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if path == "/healthz" and method == "GET":
        return healthz()
    if path == "/events" and method == "POST":
        return post_event(_read_body(environ))
    if path.startswith("/events/") and method == "GET":
        return get_event(path.removeprefix("/events/"))
    if path in ("/healthz", "/events") or path.startswith("/events/"):
        return HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{method} not allowed on {path}"}
    return HTTPStatus.NOT_FOUND, {"error": f"no route for {path}"}


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    try:
        status, payload = route(environ)
    except BadRequest as exc:
        status, payload = HTTPStatus.BAD_REQUEST, {"error": str(exc)}
    except Unavailable as exc:
        status, payload = HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)}
    body = json.dumps(payload).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response(f"{status.value} {status.phrase}", headers)
    return [body]
