"""The Celery app: RabbitMQ carries tasks, Redis keeps results and the RedBeat schedule.

Queues follow bk-monitor's split: ``monitor`` for alert processing and ``celery_resource``
for the periodic resource refresh, so one slow refresh never delays an alert.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from bkdemo import settings as bkdemo_settings

settings = bkdemo_settings.load()

# Beat wakes at least this often; it also bounds how long a new beat waits for a lock.
BEAT_MAX_LOOP_SECONDS = min(5.0, settings.refresh_seconds)

# How long the web waits for the broker to confirm one message before it answers 503.
CONFIRM_TIMEOUT_SECONDS = 5.0


def _durable(name: str) -> Queue:
    queue = settings.queue(name)
    return Queue(queue, Exchange(queue, type="direct", durable=True), queue, durable=True)


app = Celery("bkdemo", include=["bkdemo.tasks"])
app.conf.update(
    broker_url=settings.amqp_url,
    broker_connection_retry_on_startup=True,
    # Nothing accepted is lost: a publish returns only once the broker has confirmed the
    # message (publisher confirms), which RabbitMQ does for a persistent message on a durable
    # queue once it is on disk. Without it, a message still in the broker's buffers when the
    # node is killed is gone, although the web answered 202 for it.
    broker_transport_options={"confirm_publish": True},
    task_default_delivery_mode="persistent",
    task_queues=[_durable("celery"), _durable("monitor"), _durable("celery_resource")],
    result_backend=settings.redis_url,
    # Several copies of the demo (tests, other stacks) can share one Redis server.
    result_backend_transport_options={"global_keyprefix": f"{settings.key_prefix}:"},
    result_expires=3600,
    task_default_queue=settings.queue("celery"),
    task_routes={
        "record_event": {"queue": settings.queue("monitor")},
        "refresh_resources": {"queue": settings.queue("celery_resource")},
    },
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    beat_scheduler="redbeat.RedBeatScheduler",
    beat_max_loop_interval=BEAT_MAX_LOOP_SECONDS,
    redbeat_redis_url=settings.redis_url,
    redbeat_key_prefix=f"{settings.key_prefix}:redbeat",
    # The lock is re-extended on every tick. A beat that dies without releasing it (SIGKILL)
    # blocks its successor until the lock expires: a few ticks, not RedBeat's 25 minutes.
    redbeat_lock_timeout=int(BEAT_MAX_LOOP_SECONDS * 5),
    beat_schedule={
        "refresh-resources": {
            "task": "refresh_resources",
            "schedule": settings.refresh_seconds,
        },
    },
)
