"""The two tasks: store one alert event, and periodically summarise the alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from celery import Task

from bkdemo import store
from bkdemo.celery_app import app, settings

RETRYABLE = (OSError, store.InfluxError, store.pymysql.err.OperationalError)


@app.task(
    name="record_event",
    bind=True,
    autoretry_for=RETRYABLE,
    retry_backoff=True,
    max_retries=5,
)
def record_event(self: Task, metric: str, value: float, severity: str) -> dict[str, Any]:
    """Write the alert row and the time-series point; safe to run twice for one task id."""
    task_id = self.request.id
    now = datetime.now(UTC)
    with store.mysql(settings) as connection, connection.cursor() as cursor:
        # INSERT IGNORE: a retried or redelivered task must not store the alert twice.
        cursor.execute(
            "INSERT IGNORE INTO alerts (task_id, metric, value, severity, created_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (task_id, metric, value, severity, now.replace(tzinfo=None)),
        )
        # The point's time is the row's, whichever run stored it: InfluxDB keeps one point per
        # series and time, so a second run rewrites the same point instead of adding one.
        cursor.execute("SELECT created_at FROM alerts WHERE task_id = %s", (task_id,))
        row = cursor.fetchone()
    stored_at = row[0].replace(tzinfo=UTC) if row else now
    timestamp_ns = int(stored_at.timestamp()) * 1_000_000_000 + stored_at.microsecond * 1000
    store.write_event(settings, store.event_line(metric, severity, value, timestamp_ns))
    return {"task_id": task_id, "metric": metric, "severity": severity}


@app.task(name="refresh_resources", autoretry_for=RETRYABLE, max_retries=2)
def refresh_resources() -> dict[str, int]:
    """Count alerts per severity and keep the result as a timestamped snapshot."""
    with store.mysql(settings) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT severity, COUNT(*) FROM alerts GROUP BY severity")
        counts = {str(severity): int(count) for severity, count in cursor.fetchall()}
        cursor.execute(
            "INSERT INTO resource_snapshots (taken_at, total, by_severity) VALUES (%s, %s, %s)",
            (
                datetime.now(UTC).replace(tzinfo=None),
                sum(counts.values()),
                json.dumps(counts, sort_keys=True),
            ),
        )
    return counts
