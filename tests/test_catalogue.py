"""Loading services.yaml: precedence of variable sources, env files, and every located problem."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from svcorch import catalogue as catalogue_module
from svcorch.catalogue import load, service_environment
from svcorch.errors import CatalogueError
from svcorch.model import Catalogue, Condition, Kind


def write(folder: Path, text: str, name: str = "services.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(folder: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    path = write(folder, text)
    with pytest.raises(CatalogueError) as caught:
        load(path, environ=environ or {})
    return [str(p).removeprefix(str(folder) + os.sep) for p in caught.value.problems]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # problems name the file as given: keep it short
    return tmp_path


# -- a valid catalogue --------------------------------------------------------------------------


def test_a_full_catalogue_loads_with_defaults_filled(folder: Path) -> None:
    path = write(
        folder,
        """
        version: 1
        name: shop
        x-probe: &probe {type: tcp, port: 5432}
        services:
          db:
            external: true
            ready: *probe
          migrate:
            oneshot: true
            command: python manage.py migrate
            depends_on: [db]
          web:
            command: gunicorn app
            depends_on:
              db: ready
              migrate: completed
            restart: {policy: on-failure}
            profiles: [web]
        notify:
          - {type: webhook, url: "http://127.0.0.1:9/hook"}
        logs: {max_size: 20MB, backups: 3}
        """,
    )
    catalogue = load(path, environ={})
    assert isinstance(catalogue, Catalogue)
    assert catalogue.name == "shop"
    assert catalogue.path == path
    assert catalogue.base_dir == folder
    assert list(catalogue.services) == ["db", "migrate", "web"]
    assert [s.kind for s in catalogue.services.values()] == [
        Kind.EXTERNAL,
        Kind.ONESHOT,
        Kind.MANAGED,
    ]
    assert catalogue.service("web").depends_on["migrate"].condition is Condition.COMPLETED
    assert catalogue.logs.max_size == 20_000_000
    assert catalogue.notify[0].type == "webhook"


# -- where variables come from ------------------------------------------------------------------

PRECEDENCE = """
    version: 1
    env:
      A: top
      B: top
      C: top
    services:
      s:
        command: echo ${A} ${B} ${C}
        env: {OWN: "${C}"}
    """


def test_interpolation_precedence_process_env_then_env_file_then_top_level_env(
    folder: Path,
) -> None:
    write(folder, "A=dotenv\nB=dotenv\n", ".env")
    catalogue = load(write(folder, PRECEDENCE), environ={"A": "process"})
    assert catalogue.service("s").command == "echo process dotenv top"
    assert catalogue.service("s").env == {"OWN": "top"}
    assert catalogue.dotenv == {"A": "dotenv", "B": "dotenv"}


def test_what_a_service_process_sees(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(folder, "B=dotenv\nD=dotenv\n", ".env")
    path = write(
        folder,
        """
        version: 1
        env: {C: top, D: top}
        services:
          s:
            command: x
            env: {D: own}
        """,
    )
    monkeypatch.setenv("A", "os")
    monkeypatch.setenv("B", "os")
    monkeypatch.setenv("C", "os")
    catalogue = load(path)
    env = service_environment(catalogue, catalogue.service("s"))
    # os.environ < env_file < top-level env < the service's env
    assert (env["A"], env["B"], env["C"], env["D"]) == ("os", "dotenv", "top", "own")


def test_env_beside_the_file_is_read_only_when_no_env_file_is_declared(folder: Path) -> None:
    write(folder, "A=dotenv\n", ".env")
    write(folder, "A=other\n", "other.env")
    text = "version: 1\nenv_file: other.env\nservices: {s: {command: 'echo ${A}'}}\n"
    assert load(write(folder, text), environ={}).service("s").command == "echo other"
    text = "version: 1\nservices: {s: {command: 'echo ${A}'}}\n"
    assert load(write(folder, text), environ={}).service("s").command == "echo dotenv"


def test_env_file_list_later_files_win_and_paths_are_relative_to_the_catalogue(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "conf").mkdir()
    write(folder / "conf", "A=base\nB=base\n", "base.env")
    write(folder / "conf", "B=local\n", "local.env")
    path = write(
        folder,
        """
        version: 1
        env_file: [conf/base.env, "conf/${FLAVOUR}.env"]
        services: {s: {command: 'echo ${A} ${B}'}}
        """,
    )
    monkeypatch.chdir("/")
    catalogue = load(path, environ={"FLAVOUR": "local"})
    assert catalogue.service("s").command == "echo base local"


def test_top_level_env_sees_the_process_env_and_env_file(folder: Path) -> None:
    write(folder, "REGION=eu\n", ".env")
    path = write(
        folder,
        """
        version: 1
        env:
          CONF: conf.${ENVIRONMENT:-development}.${REGION}
          DEBUG: true
          PORT: 8000
        services: {s: {command: x}}
        """,
    )
    catalogue = load(path, environ={"ENVIRONMENT": "production"})
    assert catalogue.env == {"CONF": "conf.production.eu", "DEBUG": "true", "PORT": "8000"}


def test_x_keys_are_ignored_and_not_interpolated(folder: Path) -> None:
    path = write(
        folder,
        """
        version: 1
        x-note: ${NOT_SET_ANYWHERE}
        x-common: &common {command: sleep 1, restart: {policy: always}}
        services:
          a: {<<: *common}
          b: {<<: *common, command: sleep 2}
        """,
    )
    catalogue = load(path, environ={})
    assert catalogue.service("a").command == "sleep 1"
    assert catalogue.service("b").command == "sleep 2"
    assert catalogue.service("b").restart.policy == "always"


# -- problems -----------------------------------------------------------------------------------


def test_the_issue_examples(folder: Path) -> None:
    assert problems(
        folder,
        """
        version: 1
        services:
          redis: {command: redis-server}
          web:
            command: gunicorn
            depends_on: [redsi]
          worker:
            comand: celery
          db:
            command: x
            env:
              MYSQL_PASSWORD: ${MYSQL_PASSWORD:?set it in .env}
        """,
    ) == [
        "services.yaml:6:18: service 'web': depends_on names unknown service 'redsi'"
        " (did you mean 'redis'?)",
        "services.yaml:8:5: service 'worker': unknown key 'comand' (did you mean 'command'?)",
        "services.yaml:12:23: service 'db': env.MYSQL_PASSWORD: ${MYSQL_PASSWORD:?set it in"
        " .env} — set it in .env",
    ]


def test_cycles_in_dependency_order_one_line_each_with_other_problems(folder: Path) -> None:
    assert problems(
        folder,
        """
        version: 1
        services:
          web: {command: x, depends_on: [worker]}
          worker: {command: x, depends_on: [beat]}
          beat: {command: x, depends_on: [web]}
          a: {command: x, depends_on: [b]}
          b: {command: x, depends_on: {a: started}, comand: y}
          c: {command: x, depends_on: [c]}
        """,
    ) == [
        "services.yaml:7:45: service 'b': unknown key 'comand' (did you mean 'command'?)",
        "services.yaml:8:32: service 'c': depends on itself",
        # arrows follow start order: beat starts before worker, worker before web
        "services.yaml: dependency cycle: a -> b -> a",
        "services.yaml: dependency cycle: beat -> worker -> web -> beat",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "services.yaml: the file is empty (start with `version: 1` and `services:`)"),
        ("# nothing\n", "services.yaml: the file is empty"),
        (
            "- a\n- b\n",
            "services.yaml:1:1: expected a mapping with `version` and `services` at the top,"
            " got list",
        ),
        ("just text\n", "services.yaml:1:1: expected a mapping"),
        (
            "version: 2\nservices: {}\n",
            "services.yaml:1:10: unsupported version 2 (this svcorch reads version 1)",
        ),
        ("version: '1'\nservices: {}\n", "services.yaml:1:10: unsupported version '1'"),
        ("services: {}\n", "services.yaml:1:1: missing `version` (add `version: 1` at the top)"),
        (
            "version: 1\n",
            "services.yaml:1:1: missing `services` (a mapping of service name to its definition)",
        ),
        (
            "version: 1\nservices:\n  a: b\n    c: d\n",
            "services.yaml:4:6: invalid YAML: mapping values are not allowed here",
        ),
        ("version: 1\nversion: 1\nservices: {}\n", "services.yaml:2:1: duplicate key 'version'"),
    ],
    ids=[
        "empty",
        "comment-only",
        "list",
        "scalar",
        "version-2",
        "version-string",
        "no-version",
        "no-services",
        "invalid-yaml",
        "duplicate-top-key",
    ],
)
def test_file_level_problems_are_one_line(folder: Path, text: str, expected: str) -> None:
    found = problems(folder, text)
    assert len(found) == 1, found
    assert found[0].startswith(expected)


def test_missing_unreadable_and_directory_files(folder: Path) -> None:
    with pytest.raises(CatalogueError) as caught:
        load(folder / "nope.yaml")
    assert [str(p) for p in caught.value.problems] == [
        f"{folder / 'nope.yaml'}: no such file (give one with -f PATH or SVCORCH_FILE)"
    ]
    with pytest.raises(CatalogueError, match="is a directory, not a file"):
        load(folder)
    (folder / "latin1.yaml").write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(CatalogueError, match=r"not UTF-8 text \(byte 20\)"):
        load(folder / "latin1.yaml")


def test_every_kind_of_service_problem_is_located(folder: Path) -> None:
    assert problems(
        folder,
        """
        version: 1
        servics: {}
        path: /etc
        services:
          Web: {command: x}
          a:
            name: a
            command: x
            restart: {policy: sometimes}
            stop: {signal: FOO, timeout: 3 parsecs}
            ready: {type: tpc, port: 1}
          b:
            command: "${NOT_SET}"
            ready: {type: tcp, port: 99999, hots: x}
            liveness: {type: tcp, failure_threshold: 0}
          c:
            command: x
            depends_on: [a, {b: completed}]
            ports: [http]
          d:
            command: x
            depends_on: {a: completed, c: whenever}
        """,
    ) == [
        "services.yaml:2:1: unknown key 'servics' (did you mean 'services'?)",
        "services.yaml:3:1: unknown key 'path'",
        "services.yaml:5:3: invalid service name 'Web': use lowercase letters, digits and _ . -"
        " (starting with a letter or digit)",
        "services.yaml:7:5: service 'a': unknown key 'name' (the service's name is its key"
        " under `services`)",
        "services.yaml:9:23: service 'a': restart.policy: Input should be 'no', 'on-failure'"
        " or 'always'",
        "services.yaml:10:20: service 'a': stop.signal: unknown signal 'FOO' (e.g. TERM, INT,"
        " QUIT, HUP)",
        "services.yaml:10:34: service 'a': stop.timeout: invalid duration '3 parsecs' (use e.g."
        " 250ms, 30s, 2m, 1h)",
        "services.yaml:11:19: service 'a': ready.type: unknown probe type 'tpc' (did you mean"
        " 'tcp'?)",
        "services.yaml:13:14: service 'b': command: variable NOT_SET is not set (used in"
        " ${NOT_SET}); set it in the environment or env_file, or give a default:"
        " ${NOT_SET:-default}",
        "services.yaml:14:30: service 'b': ready.port: Input should be less than or equal to 65535",
        "services.yaml:14:37: service 'b': ready: unknown key 'hots' (did you mean 'host'?)",
        "services.yaml:15:15: service 'b': liveness: missing required key 'port'",
        "services.yaml:15:46: service 'b': liveness.failure_threshold: Input should be greater"
        " than or equal to 1",
        "services.yaml:18:17: service 'c': depends_on: expected service names, got {'b':"
        " 'completed'} (for a condition use a mapping: `depends_on: {name: completed}`)",
        "services.yaml:19:13: service 'c': ports.0: expected an integer, got 'http'",
        # reported with the rest since the conditions are checked on the raw file
        "services.yaml:22:21: service 'd': condition 'completed' needs a oneshot, and 'a' is"
        " not one (use 'ready' or 'started')",
        "services.yaml:22:35: service 'd': depends_on.c.condition: Input should be 'ready',"
        " 'started' or 'completed'",
    ]


def test_wrong_types_are_said_in_yaml_words_once_per_value(folder: Path) -> None:
    assert problems(
        folder,
        """
        version: 1
        env_file: 3
        services:
          a:
          b: {command: 42, ready: tcp, depends_on: a, profiles: web, shell: maybe}
          c: {command: x, restart: {max_restarts: many}, stop: {command: {a: 1}}}
          str: {command: x, env: {str: [1]}}
        """,
    ) == [
        "services.yaml:2:11: env_file must be a path or a list of paths",
        "services.yaml:4:5: service 'a': expected a mapping, got nothing",
        # `str | list[str]` fails once per member: one line, not `command.str` and
        # `command.list[str]`
        "services.yaml:5:16: service 'b': command: expected a string or a list, got 42",
        "services.yaml:5:27: service 'b': ready: expected a mapping, got 'tcp'",
        "services.yaml:5:44: service 'b': depends_on: expected a list of service names or a"
        " mapping, got 'a'",
        "services.yaml:5:57: service 'b': profiles: expected a list, got 'web'",
        "services.yaml:5:69: service 'b': shell: expected true or false, got 'maybe'",
        "services.yaml:6:43: service 'c': restart.max_restarts: expected an integer, got 'many'",
        "services.yaml:6:66: service 'c': stop.command: expected a string or a list, got {'a': 1}",
        # a service or variable called like a type keeps its name
        "services.yaml:7:32: service 'str': env.str: expected a string, got [1]",
    ]


def test_completed_needs_a_oneshot(folder: Path) -> None:
    assert problems(
        folder,
        """
        version: 1
        services:
          db: {command: x}
          web:
            command: x
            depends_on: {db: completed}
        """,
    ) == [
        "services.yaml:6:22: service 'web': condition 'completed' needs a oneshot, and 'db' is"
        " not one (use 'ready' or 'started')"
    ]


def test_env_file_problems_point_at_the_env_file(folder: Path) -> None:
    write(folder, "GOOD=1\nnot an assignment\n", "bad.env")
    assert problems(
        folder,
        """
        version: 1
        env_file: [bad.env, missing.env, "${UNSET_DIR}/x.env"]
        services: {s: {command: x}}
        """,
    ) == [
        "services.yaml:2:21: env_file 'missing.env': No such file or directory",
        "services.yaml:2:34: env_file: variable UNSET_DIR is not set (used in ${UNSET_DIR});"
        " set it in the environment or env_file, or give a default: ${UNSET_DIR:-default}",
        "bad.env:2: expected KEY=value, got 'not an assignment'",
    ]


def test_top_level_env_problems(folder: Path) -> None:
    assert problems(
        folder,
        """
        version: 1
        env:
          A: ${REQUIRED:?give REQUIRED a value}
        services: {s: {command: x}}
        """,
    ) == ["services.yaml:3:6: ${REQUIRED:?give REQUIRED a value} — give REQUIRED a value"]


def test_liveness_flat_and_nested_forms(folder: Path) -> None:
    path = write(
        folder,
        """
        version: 1
        services:
          a:
            command: x
            liveness: {type: tcp, port: 1, period: 5s, failure_threshold: 2}
          b:
            command: x
            liveness: {probe: {type: tcp, port: 1}, failure_threshold: 4}
        """,
    )
    catalogue = load(path, environ={})
    a, b = catalogue.service("a").liveness, catalogue.service("b").liveness
    assert a is not None
    assert b is not None
    assert (a.failure_threshold, a.probe.period.total_seconds()) == (2, 5.0)
    assert (b.failure_threshold, b.probe.type) == (4, "tcp")
    # a probe problem is reported once, without a follow-on "not a valid dictionary"
    assert problems(
        folder,
        """
        version: 1
        services:
          a:
            command: x
            liveness: {type: tcp}
          b:
            command: x
            liveness: {probe: {type: tcp}, failure_threshold: 4}
        """,
    ) == [
        "services.yaml:5:15: service 'a': liveness: missing required key 'port'",
        "services.yaml:8:23: service 'b': liveness.probe: missing required key 'port'",
    ]


def test_probe_types_are_validated_by_their_own_model(folder: Path) -> None:
    found = problems(
        folder,
        """
        version: 1
        services:
          s:
            command: x
            ready: {port: 1}
        """,
    )
    assert len(found) == 1
    assert found[0].startswith("services.yaml:5:12: service 's': ready: missing probe `type`")


def test_problems_without_a_catalogue_module_state(folder: Path) -> None:
    # loading twice gives the same answer: nothing is cached between loads
    text = "version: 1\nservices: {a: {command: x, depends_on: [b]}}\n"
    first = problems(folder, text)
    assert problems(folder, text) == first
    assert catalogue_module.DEFAULT_FILE == "services.yaml"
