"""Connection settings, read once from ``BKDEMO_*`` environment variables.

Every value has a loopback default so that ``python -m bkdemo.migrate`` works against servers
on their standard ports. Nothing here is ever logged with its password: use ``redact``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class Settings:
    mysql_host: str
    mysql_port: int
    mysql_user: str
    mysql_password: str
    mysql_db: str
    redis_url: str
    amqp_url: str
    influx_url: str
    influx_db: str
    refresh_seconds: float
    queue_prefix: str
    key_prefix: str

    def queue(self, name: str) -> str:
        """The real queue name: a prefix lets several copies share one RabbitMQ vhost."""
        return f"{self.queue_prefix}{name}"


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@functools.cache
def load() -> Settings:
    return Settings(
        mysql_host=_env("BKDEMO_MYSQL_HOST", "127.0.0.1"),
        mysql_port=int(_env("BKDEMO_MYSQL_PORT", "3306")),
        mysql_user=_env("BKDEMO_MYSQL_USER", "root"),
        mysql_password=os.environ.get("BKDEMO_MYSQL_PASSWORD", ""),
        mysql_db=_env("BKDEMO_MYSQL_DB", "bkdemo"),
        redis_url=_env("BKDEMO_REDIS_URL", "redis://127.0.0.1:6379/0"),
        amqp_url=_env("BKDEMO_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        influx_url=_env("BKDEMO_INFLUX_URL", "http://127.0.0.1:8086").rstrip("/"),
        influx_db=_env("BKDEMO_INFLUX_DB", "bkdemo"),
        refresh_seconds=float(_env("BKDEMO_REFRESH_SECONDS", "5")),
        queue_prefix=os.environ.get("BKDEMO_QUEUE_PREFIX", ""),
        key_prefix=_env("BKDEMO_KEY_PREFIX", "bkdemo"),
    )


def redact(url: str) -> str:
    """``amqp://guest:***@host:5672//``: the URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
