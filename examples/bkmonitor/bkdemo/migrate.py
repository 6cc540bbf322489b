"""Create the MySQL database, its tables and the InfluxDB database; safe to run again.

Run as ``python -m bkdemo.migrate``. Exits 1 with one line on stderr when a server is
unreachable or refuses, so an orchestrator can show the reason as it is.
"""

from __future__ import annotations

import sys

import pymysql

from bkdemo import store
from bkdemo.settings import Settings, load


class MigrationFailed(Exception):
    """One line saying which server failed and why."""


def migrate_mysql(settings: Settings) -> None:
    where = f"MySQL at {settings.mysql_host}:{settings.mysql_port}"
    try:
        with store.mysql(settings, database=False) as connection:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{settings.mysql_db}`"
                    " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
            connection.select_db(settings.mysql_db)
            with connection.cursor() as cursor:
                for statement in store.SCHEMA:
                    cursor.execute(statement)
    except pymysql.MySQLError as exc:
        raise MigrationFailed(f"{where}: {exc}") from exc


def migrate_influx(settings: Settings) -> None:
    # CREATE DATABASE is a no-op in InfluxDB 1.x when the database already exists.
    name = settings.influx_db.replace("\\", "\\\\").replace('"', '\\"')
    try:
        store.influx_query(settings, f'CREATE DATABASE "{name}"', database=False)
    except store.InfluxError as exc:
        raise MigrationFailed(str(exc)) from exc


def main() -> int:
    settings = load()
    if "`" in settings.mysql_db:
        print("migrate: BKDEMO_MYSQL_DB must not contain a backquote", file=sys.stderr)
        return 2
    try:
        migrate_mysql(settings)
        migrate_influx(settings)
    except MigrationFailed as exc:
        print(f"migrate: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(
        f"migrate: MySQL database {settings.mysql_db} and InfluxDB database "
        f"{settings.influx_db} are ready"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
