"""Every catalogue error a user can make: exit 2, one located line each, never a traceback.

Each case runs the installed ``svcorch validate`` in a temporary directory holding the file.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.cli import assert_clean, run_svcorch


def validate(folder: Path, text: str | None, *args: str) -> tuple[int, list[str], str]:
    if text is not None:
        (folder / "services.yaml").write_text(textwrap.dedent(text).lstrip("\n"))
    result = run_svcorch(*args, "validate", cwd=folder)
    assert_clean(result)
    return result.returncode, result.stderr.splitlines(), result.stdout


CASES = {
    "unknown-dependency": (
        """
        version: 1
        services:
          redis: {command: redis-server}
          web:
            command: gunicorn app
            depends_on: [redsi]
        """,
        "services.yaml:6:18: service 'web': depends_on names unknown service 'redsi'"
        " (did you mean 'redis'?)",
    ),
    "unknown-key": (
        """
        version: 1
        services:
          worker:
            comand: celery worker
        """,
        "services.yaml:4:5: service 'worker': unknown key 'comand' (did you mean 'command'?)",
    ),
    "dependency-cycle": (
        """
        version: 1
        services:
          web: {command: x, depends_on: [beat]}
          worker: {command: x, depends_on: [web]}
          beat: {command: x, depends_on: [worker]}
        """,
        "services.yaml: dependency cycle: beat -> web -> worker -> beat",
    ),
    "duplicate-key": (
        """
        version: 1
        services: {}
        services:
          web: {command: x}
        """,
        "services.yaml:3:1: duplicate key 'services'",
    ),
    "required-variable": (
        """
        version: 1
        services:
          db:
            command: x
            env: {MYSQL_PASSWORD: "${MYSQL_PASSWORD:?set it in .env}"}
        """,
        "services.yaml:5:27: service 'db': env.MYSQL_PASSWORD: ${MYSQL_PASSWORD:?set it in .env}"
        " — set it in .env",
    ),
    "unset-variable": (
        """
        version: 1
        services:
          db:
            command: mysqld --port ${MYSQL_PORT}
        """,
        "services.yaml:4:14: service 'db': command: variable MYSQL_PORT is not set (used in"
        " ${MYSQL_PORT}); set it in the environment or env_file, or give a default:"
        " ${MYSQL_PORT:-default}",
    ),
    "invalid-yaml": (
        """
        version: 1
        services:
          a: b
            c: d
        """,
        "services.yaml:4:6: invalid YAML: mapping values are not allowed here",
    ),
    "empty-file": (
        "",
        "services.yaml: the file is empty (start with `version: 1` and `services:`)",
    ),
    "not-a-mapping": (
        """
        - web
        - worker
        """,
        "services.yaml:1:1: expected a mapping with `version` and `services` at the top, got list",
    ),
    "unsupported-version": (
        """
        version: 3
        services: {}
        """,
        "services.yaml:1:10: unsupported version 3 (this svcorch reads version 1)",
    ),
    "unknown-probe-type": (
        """
        version: 1
        services:
          cache:
            command: redis-server
            ready: {type: rdis, port: 6379}
        """,
        "services.yaml:5:19: service 'cache': ready.type: unknown probe type 'rdis'"
        " (did you mean 'redis'?)",
    ),
    "bad-probe-option": (
        """
        version: 1
        services:
          cache:
            command: redis-server
            ready:
              type: tcp
              port: 6379
              timeout: forever
        """,
        "services.yaml:8:16: service 'cache': ready.timeout: invalid duration 'forever'"
        " (use e.g. 250ms, 30s, 2m, 1h)",
    ),
    "unknown-probe-option": (
        """
        version: 1
        services:
          cache:
            command: redis-server
            ready: {type: tcp, port: 6379, hots: localhost}
        """,
        "services.yaml:5:36: service 'cache': ready: unknown key 'hots' (did you mean 'host'?)",
    ),
    "completed-on-a-service": (
        """
        version: 1
        services:
          db: {command: mysqld}
          web:
            command: x
            depends_on: {db: completed}
        """,
        "services.yaml:6:22: service 'web': condition 'completed' needs a oneshot, and 'db'"
        " is not one (use 'ready' or 'started')",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_error_is_one_located_line_and_exit_2(tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    code, lines, stdout = validate(tmp_path, text)
    assert (code, lines, stdout) == (2, [expected], "")


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    code, lines, _ = validate(tmp_path, None)
    assert (code, lines) == (
        2,
        ["services.yaml: no such file (give one with -f PATH or SVCORCH_FILE)"],
    )
    code, lines, _ = validate(tmp_path, None, "-f", "elsewhere/stack.yaml")
    assert (code, lines) == (
        2,
        ["elsewhere/stack.yaml: no such file (give one with -f PATH or SVCORCH_FILE)"],
    )


def test_every_problem_at_once_in_file_order(tmp_path: Path) -> None:
    code, lines, _ = validate(
        tmp_path,
        """
        version: 1
        services:
          redis:
            command: redis-server
            ready: {type: redis, port: 6379, timeout: 5 minutes}
          web:
            comand: gunicorn
            depends_on: [redsi, migrate]
          migrate:
            oneshot: true
            command: migrate --password ${DB_PASSWORD:?set DB_PASSWORD}
            depends_on: [web]
          worker:
            command: x
            restart: {policy: sometimes}
        """,
    )
    assert code == 2
    assert lines == [
        "services.yaml:5:47: service 'redis': ready.timeout: invalid duration '5 minutes'"
        " (use e.g. 250ms, 30s, 2m, 1h)",
        "services.yaml:7:5: service 'web': unknown key 'comand' (did you mean 'command'?)",
        "services.yaml:8:18: service 'web': depends_on names unknown service 'redsi'"
        " (did you mean 'redis'?)",
        "services.yaml:11:14: service 'migrate': command: ${DB_PASSWORD:?set DB_PASSWORD}"
        " — set DB_PASSWORD",
        "services.yaml:15:23: service 'worker': restart.policy: Input should be 'no',"
        " 'on-failure' or 'always'",
        "services.yaml: dependency cycle: migrate -> web -> migrate",
    ]
