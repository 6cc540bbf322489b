"""Real servers for probe tests: the system's Redis, MariaDB and RabbitMQ on their standard
loopback ports (never stopped or reconfigured), and private ones started here once a session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import port_open
from tests.support.servers import influx_query, private_influxd, private_redis

SYSTEM_PORTS = {"redis": 6379, "mysql": 3306, "amqp": 5672}
REDIS_PASSWORD = "redis-s3cret-pw"
INFLUX_USER = "admin"
INFLUX_PASSWORD = "influx-s3cret-pw"


def require_system(kind: str) -> int:
    """The system server's port; skip (saying which) when it is not running here."""
    port = SYSTEM_PORTS[kind]
    if not port_open(port):
        pytest.skip(f"the system {kind} server is not listening on 127.0.0.1:{port}")
    return port


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private InfluxDB 1.x without auth, with database ``probe_db``; yields its URL."""
    with private_influxd(tmp_path_factory.mktemp("influxd")) as url:
        influx_query(url, "CREATE DATABASE probe_db")
        yield url


@pytest.fixture(scope="session")
def influxd_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private InfluxDB 1.x with auth enabled and an admin user; yields its URL."""
    with private_influxd(tmp_path_factory.mktemp("influxd-auth"), auth=True) as url:
        # the first user may be created without credentials; it must be an admin
        influx_query(
            url, f"CREATE USER {INFLUX_USER} WITH PASSWORD '{INFLUX_PASSWORD}' WITH ALL PRIVILEGES"
        )
        influx_query(url, "CREATE DATABASE probe_db", auth=(INFLUX_USER, INFLUX_PASSWORD))
        yield url


@pytest.fixture(scope="session")
def redis_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private redis-server with ``requirepass``; yields its port."""
    with private_redis(tmp_path_factory.mktemp("redis"), password=REDIS_PASSWORD) as port:
        yield port
