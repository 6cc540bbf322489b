"""The two data stores the demo writes to: MySQL (alerts, snapshots) and InfluxDB 1.x (events).

InfluxDB 1.6 has no ``/api/v2/write``, so points go to the 1.x ``/write`` endpoint as line
protocol, and databases are created through ``/query``. Plain urllib keeps that explicit.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pymysql

from bkdemo.settings import Settings

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS alerts (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        task_id VARCHAR(64) NOT NULL UNIQUE,
        metric VARCHAR(128) NOT NULL,
        value DOUBLE NOT NULL,
        severity VARCHAR(16) NOT NULL,
        created_at DATETIME(6) NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS resource_snapshots (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        taken_at DATETIME(6) NOT NULL,
        total INT NOT NULL,
        by_severity TEXT NOT NULL
    )""",
)


class InfluxError(Exception):
    """InfluxDB refused a request or could not be reached."""


def mysql(settings: Settings, *, database: bool = True) -> pymysql.Connection[Any]:
    """A new autocommit connection; ``database=False`` for creating the database itself."""
    return pymysql.connect(
        host=settings.mysql_host,
        port=settings.mysql_port,
        user=settings.mysql_user,
        password=settings.mysql_password,
        database=settings.mysql_db if database else None,
        connect_timeout=3,
        read_timeout=10,
        write_timeout=10,
        autocommit=True,
    )


def influx_request(settings: Settings, path: str, params: dict[str, str], body: bytes) -> bytes:
    """POST to InfluxDB 1.x; raise InfluxError with the server's own message on failure."""
    url = f"{settings.influx_url}{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            payload: bytes = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()
        raise InfluxError(f"InfluxDB {path} answered {exc.code}: {detail}") from exc
    except OSError as exc:
        raise InfluxError(f"cannot reach InfluxDB at {settings.influx_url}: {exc}") from exc
    # /query reports statement errors inside a 200 response.
    if path == "/query":
        for result in json.loads(payload or b"{}").get("results", []):
            if "error" in result:
                raise InfluxError(f"InfluxDB query failed: {result['error']}")
    return payload


def influx_query(settings: Settings, query: str, *, database: bool = True) -> Any:
    params = {"q": query}
    if database:
        params["db"] = settings.influx_db
    return json.loads(influx_request(settings, "/query", params, b""))


def _escape_tag(value: str) -> str:
    # Line protocol: commas, spaces and equals signs in tag values are backslash-escaped.
    return value.replace("\\", "\\\\").replace(",", r"\,").replace(" ", r"\ ").replace("=", r"\=")


def event_line(metric: str, severity: str, value: float, timestamp_ns: int) -> str:
    return (
        f"events,metric={_escape_tag(metric)},severity={_escape_tag(severity)} "
        f"value={float(value)!r} {timestamp_ns}"
    )


def write_event(settings: Settings, line: str) -> None:
    params = {"db": settings.influx_db, "precision": "ns"}
    influx_request(settings, "/write", params, line.encode())
