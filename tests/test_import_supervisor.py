"""svcorch.importers.supervisor: supervisord.conf -> a services.yaml skeleton plus warnings."""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from svcorch import catalogue
from svcorch.errors import UsageError
from svcorch.importers.supervisor import ImportResult, convert
from svcorch.interpolate import interpolate

DATA = Path(__file__).parent / "data" / "supervisord.conf"


def services(result: ImportResult) -> dict[str, Any]:
    document = yaml.safe_load(result.yaml)
    assert document["version"] == 1
    found: dict[str, Any] = document["services"]
    return found


@pytest.fixture(scope="module")
def bkmonitor() -> ImportResult:
    return convert(DATA.read_text())


# -- the bk-monitor file ---------------------------------------------------------------------


def test_every_program_becomes_a_service_in_file_order(bkmonitor: ImportResult) -> None:
    assert list(services(bkmonitor)) == [
        "app_code_uwsgi",
        "bkmonitor_celery",
        "bkmonitor_celery_resource",
        "bkmonitor_beat",
        "bkmonitor_healthz",
    ]


def test_commands_keep_their_flags_and_translate_expansions(bkmonitor: ImportResult) -> None:
    found = services(bkmonitor)
    assert found["app_code_uwsgi"]["command"] == (
        "/cache/.bk/env/bin/gunicorn wsgi -w 4 -t 8 -p ${TEMPLATE_APP_CONTAINER_PATH}run/nginx.pid"
        " -b unix:${TEMPLATE_APP_CONTAINER_PATH}run/nginx.sock"
        " -e SCRIPT_NAME=/o/${TEMPLATE_APP_CODE} -e DJANGO_SETTINGS_MODULE=settings"
        " --timeout 300 --max-requests 1000"
    )
    # %(program_name)s expands, %% is a literal percent sign, an inline ; comment is dropped
    assert found["bkmonitor_celery"]["command"] == (
        "/cache/.bk/env/bin/python ${APP_PATH}/code/manage.py celery worker"
        " -n bkmonitor_celery@%h -l INFO --autoscale=6,1"
    )
    # %(group_name)s is the [group:bkmonitor] the program belongs to
    assert found["bkmonitor_celery_resource"]["command"] == (
        "/cache/.bk/env/bin/python ${APP_PATH}/code/manage.py celery worker"
        " -n bkmonitor-resource@%h -l INFO --autoscale=4,1 -Q celery_resource"
    )
    assert found["bkmonitor_beat"]["command"].endswith(
        "celery beat -S redbeat.RedBeatScheduler -l INFO"
    )
    assert found["bkmonitor_celery"]["cwd"] == "${APP_PATH}/code/"
    assert found["bkmonitor_healthz"]["cwd"] == "${TEMPLATE_SETTINGS_BASE_DIR}/code"


def test_environment_becomes_env_with_dollars_escaped(bkmonitor: ImportResult) -> None:
    document = yaml.safe_load(bkmonitor.yaml)
    assert document["env"] == {
        "BK_ENV": "production",
        "DJANGO_CONF_MODULE": "conf.worker.production.${BKAPP_DEPLOY_PLATFORM}",
    }
    assert document["services"]["bkmonitor_celery"]["env"] == {
        "DJANGO_CONF_MODULE": "conf.worker.${ENVIRONMENT}.tencent",
        "C_FORCE_ROOT": "true",
        "PRICE": "$$5",
    }
    assert "env" not in document["services"]["app_code_uwsgi"]
    assert "# env: fill in (supervisord.conf had environment = {{.environment}})" in bkmonitor.yaml


def test_restart_policies_and_stop_settings(bkmonitor: ImportResult) -> None:
    found = services(bkmonitor)
    restart = {name: service["restart"] for name, service in found.items()}
    assert restart == {
        "app_code_uwsgi": {"policy": "always"},
        "bkmonitor_celery": {"policy": "always", "max_restarts": 5},
        "bkmonitor_celery_resource": {"policy": "on-failure"},
        "bkmonitor_beat": {"policy": "no"},
        "bkmonitor_healthz": {"policy": "on-failure"},  # supervisord's default: unexpected
    }
    stop = {name: service.get("stop") for name, service in found.items()}
    assert stop == {
        "app_code_uwsgi": None,
        "bkmonitor_celery": {"timeout": "10s"},
        "bkmonitor_celery_resource": {"timeout": "10s"},
        "bkmonitor_beat": {"signal": "INT", "timeout": "30s"},
        "bkmonitor_healthz": {"signal": "QUIT"},
    }
    assert found["bkmonitor_healthz"]["autostart"] is False  # autostart = false
    assert found["bkmonitor_beat"]["replicas"] == 2  # numprocs = 2
    assert found["bkmonitor_beat"]["user"] == "blueking"


def test_each_service_asks_for_depends_on_and_a_ready_probe(bkmonitor: ImportResult) -> None:
    text = bkmonitor.yaml
    assert text.count("# depends_on: fill in (supervisord has no dependencies;") == 5
    celery = text[text.index("  bkmonitor_celery:") : text.index("  bkmonitor_celery_resource:")]
    assert "    # depends_on: fill in (supervisord has no dependencies; priority=20)\n" in celery
    beat = text[text.index("  bkmonitor_beat:") : text.index("  bkmonitor_healthz:")]
    assert "# ready: fill in a probe (supervisord only waited startsecs=5" in beat
    assert "# logs: svcorch keeps its own (svcorch logs NAME); dropped redirect_stderr," in celery


def test_warnings_name_the_line_and_what_to_do(bkmonitor: ImportResult) -> None:
    assert bkmonitor.warnings == [
        "supervisord.conf:7: [program: {{.app_code}}_uwsgi] becomes service 'app_code_uwsgi'"
        " (names must match ^[a-z0-9][a-z0-9_.-]*$ and be unique)",
        "supervisord.conf:8: [program: {{.app_code}}_uwsgi] command: template placeholders"
        " left for you to fill in: {{.app_container_path}} as ${TEMPLATE_APP_CONTAINER_PATH},"
        " {{.app_code}} as ${TEMPLATE_APP_CODE} (set in the environment or an env_file,"
        " or edit the value)",
        "supervisord.conf:9: [program: {{.app_code}}_uwsgi] directory: template placeholder"
        " left for you to fill in: {{.app_container_path}} as ${TEMPLATE_APP_CONTAINER_PATH}"
        " (set in the environment or an env_file, or edit the value)",
        "supervisord.conf:13: [program: {{.app_code}}_uwsgi] environment is the template"
        " placeholder {{.environment}}: fill in env: by hand, or list the variables in an"
        " env_file",
        "supervisord.conf:35: [program:bkmonitor_celery_resource] exitcodes=0,2: svcorch's"
        " on-failure restarts after any non-zero exit",
        "supervisord.conf:47: [program:bkmonitor_beat] process_name=%(program_name)s_"
        "%(process_num)02d: svcorch names its processes after the service (NAME#0 .. NAME#N-1"
        " for replicas)",
        "supervisord.conf:49: [program:bkmonitor_beat] unknown key 'beat_mode' dropped",
        "supervisord.conf:53: [program:bkmonitor_healthz] directory: template placeholder left"
        " for you to fill in: {{ settings.BASE_DIR }} as ${TEMPLATE_SETTINGS_BASE_DIR}"
        " (set in the environment or an env_file, or edit the value)",
        "supervisord.conf:58: [group:bkmonitor] kept as a comment on its programs"
        " (bkmonitor_celery, bkmonitor_celery_resource, bkmonitor_beat): svcorch has no groups;"
        " start them together with `svcorch up NAME...`",
        "supervisord.conf:61: [eventlistener:crashmail] not converted: PROCESS_STATE_EXITED map"
        " to `notify:` (commented in the output); its command speaks supervisord's listener"
        " protocol",
    ]


def test_every_warning_is_also_a_comment_in_the_yaml(bkmonitor: ImportResult) -> None:
    for warning in bkmonitor.warnings:
        assert warning in bkmonitor.yaml, warning


def test_the_skeleton_loads_as_a_catalogue_once_placeholders_are_set(
    bkmonitor: ImportResult, tmp_path: Path
) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(bkmonitor.yaml)
    environ = {
        "BKAPP_DEPLOY_PLATFORM": "tencent",
        "ENVIRONMENT": "production",
        "APP_PATH": "/data/app",
        "TEMPLATE_APP_CODE": "bkmonitor",
        "TEMPLATE_APP_CONTAINER_PATH": "/data/app/",
        "TEMPLATE_SETTINGS_BASE_DIR": "/data/app",
    }
    # user: blueking is the target host's account, not this one's
    loaded = catalogue.load(path, environ=environ, check_accounts=False)
    celery = loaded.services["bkmonitor_celery"]
    assert celery.argv()[-1] == "--autoscale=6,1"
    assert celery.env["PRICE"] == "$5"
    assert celery.env["DJANGO_CONF_MODULE"] == "conf.worker.production.tencent"
    assert loaded.services["bkmonitor_beat"].stop.timeout.total_seconds() == 30
    assert loaded.services["app_code_uwsgi"].cwd == "/data/app/code/"


def test_an_unset_placeholder_stops_the_catalogue_from_loading(
    bkmonitor: ImportResult, tmp_path: Path
) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(bkmonitor.yaml)
    with pytest.raises(catalogue.CatalogueError, match="TEMPLATE_APP_CONTAINER_PATH is not set"):
        catalogue.load(path, environ={})


# -- single features -------------------------------------------------------------------------


def test_names_are_made_valid_and_unique_with_a_warning() -> None:
    result = convert("[program:Web App]\ncommand=a\n[program:web-app]\ncommand=b\n")
    assert list(services(result)) == ["web-app", "web-app-2"]
    assert result.warnings == [
        "supervisord.conf:1: [program:Web App] becomes service 'web-app'"
        " (names must match ^[a-z0-9][a-z0-9_.-]*$ and be unique)",
        "supervisord.conf:3: [program:web-app] becomes service 'web-app-2'"
        " (names must match ^[a-z0-9][a-z0-9_.-]*$ and be unique)",
    ]


def test_process_num_here_and_host_node_name() -> None:
    text = (
        "[program:w]\n"
        "command=run -n w%(process_num)02d@%(host_node_name)s --conf %(here)s/app.ini\n"
        "numprocs_start=3\n"
    )
    absolute = convert(text, source="/etc/supervisor/supervisord.conf")
    assert services(absolute)["w"]["command"] == (
        "run -n w03@${HOSTNAME} --conf /etc/supervisor/app.ini"
    )
    assert absolute.warnings == [
        "/etc/supervisor/supervisord.conf:2: [program:w] command: %(host_node_name)s became"
        " ${HOSTNAME}"
    ]
    relative = convert(text, source="conf/supervisord.conf")
    assert "--conf ${SUPERVISOR_HERE}/app.ini" in services(relative)["w"]["command"]
    assert (
        "conf/supervisord.conf:2: [program:w] command: %(here)s (the folder of supervisord.conf)"
        " left as ${SUPERVISOR_HERE}: set it, or import with the file's absolute path"
    ) in relative.warnings


def test_environment_pairs_with_quoted_commas_and_a_bad_pair() -> None:
    result = convert(
        "[program:w]\ncommand=w\nenvironment=A=\"x,y\",B='q r', C = 3 ,oops,HOME=%(ENV_HOME)s\n"
    )
    assert services(result)["w"]["env"] == {"A": "x,y", "B": "q r", "C": "3", "HOME": "${HOME}"}
    assert result.warnings == [
        "supervisord.conf:3: [program:w] environment: cannot read 'oops'; dropped"
    ]


def test_bad_values_are_warned_about_not_guessed_silently() -> None:
    result = convert(
        "[program:w]\n"
        "command=w\n"
        "autorestart=sometimes\n"
        "stopsignal=BOGUS\n"
        "stopwaitsecs=ten\n"
        "umask=022\n"
        "command_prefix=x\n"
        "cmd={% if a %}b{% endif %}\n"
        "[include]\nfiles=conf.d/*.conf\n"
        "[weird]\nx=1\n"
    )
    service = services(result)["w"]
    assert service["restart"] == {"policy": "on-failure"}
    assert service["stop"] == {"timeout": "10s"}
    assert result.warnings == [
        "supervisord.conf:3: [program:w] autorestart=sometimes is not true, false or"
        " unexpected; converted as unexpected (on-failure)",
        "supervisord.conf:4: [program:w] stopsignal='BOGUS' is not a signal; svcorch will send"
        " TERM",
        "supervisord.conf:5: [program:w] stopwaitsecs=ten is not a whole number; using 10",
        "supervisord.conf:6: [program:w] umask dropped: svcorch does not change the umask; set it"
        " in a wrapper script if needed",
        "supervisord.conf:7: [program:w] unknown key 'command_prefix' dropped",
        "supervisord.conf:8: [program:w] unknown key 'cmd' dropped",
        "supervisord.conf:10: [include] files: 'conf.d/*.conf' matches no file",
        "supervisord.conf:11: [weird] skipped: not a supervisord section",
    ]


def test_stop_settings_alone_and_signal_spellings(tmp_path: Path) -> None:
    result = convert(
        "[program:a]\ncommand=a\nstopasgroup=true\n"
        "[program:b]\ncommand=b\nstopsignal=3\nkillasgroup=true\n"
        "[program:c]\ncommand=c\nstopsignal=sighup\n"
    )
    found = services(result)
    assert "stop" not in found["a"]
    assert found["b"]["stop"] == {"signal": "QUIT"}
    assert found["c"]["stop"] == {"signal": "HUP"}
    assert result.yaml.count("# stopasgroup/killasgroup: svcorch always signals") == 2
    assert result.warnings == []
    path = tmp_path / "services.yaml"
    path.write_text(result.yaml)
    assert catalogue.load(path, environ={}).services["a"].stop.timeout.total_seconds() == 10


def test_a_missing_command_is_left_for_the_loader_to_report() -> None:
    result = convert("[program:w]\ndirectory=/srv\n")
    assert "command" not in services(result)["w"]
    assert "# command: fill in (supervisord.conf gave none)" in result.yaml
    assert result.warnings == ["supervisord.conf:1: [program:w] has no command: add one"]


def test_a_file_without_programs_gives_an_empty_catalogue() -> None:
    result = convert("[supervisord]\nlogfile=/tmp/s.log\n")
    assert yaml.safe_load(result.yaml)["services"] == {}
    assert result.warnings == [
        "supervisord.conf:1: no [program:x] sections: the catalogue has no services"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("command = run\n[program:x]\n", "x.conf:1: not supervisord syntax: a setting before any"),
        (
            "[program:x]\ncommand=a\njust words\n",
            "x.conf:3: not supervisord syntax: 'just words' is neither [section] nor key = value",
        ),
        ("[tool.black]\nline-length = 100\n", "x.conf:1: not a supervisord config"),
        ("# only a comment\n", "x.conf:1: not a supervisord config"),
        ('{"services": {}}\n', "x.conf:1: not supervisord syntax"),
    ],
)
def test_not_supervisord_syntax_is_one_located_usage_error(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        convert(text, source="x.conf")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


# without ';' and '#': after whitespace either starts a comment, for supervisord as for us
COMMAND_CHARS = "".join(sorted(set(string.printable) - set("\t\n\r\x0b\x0c%{};#")))


@given(st.text(alphabet=COMMAND_CHARS, min_size=1).map(str.strip).filter(bool))
def test_any_plain_command_survives_yaml_and_interpolation(command: str) -> None:
    result = convert(f"[program:w]\ncommand = {command}\n")
    written = services(result)["w"]["command"]
    assert interpolate(written, lambda name: None) == command
    assert result.warnings == []


# -- the reader: as supervisord reads its files ----------------------------------------------


def test_inline_comments_with_either_prefix_and_crlf() -> None:
    result = convert(
        "[program:w]\r\ncommand = run --x=a;b   ; a comment\r\n"
        "directory = /srv # another\r\n; full line\r\n# full line\r\n"
    )
    service = services(result)["w"]
    assert service["command"] == "run --x=a;b"
    assert service["cwd"] == "/srv"


def test_a_command_over_several_lines_is_one_command() -> None:
    result = convert(
        "[program:w]\ncommand = run\n    --a 1   ; first\n\n    --b 2\nuser = nobody\n"
    )
    assert services(result)["w"]["command"] == "run --a 1 --b 2"
    assert services(result)["w"]["user"] == "nobody"


def test_duplicates_last_wins_with_a_warning_like_supervisord() -> None:
    result = convert(
        "[program:w]\ncommand=a\ncommand=b\n[program:w]\nstopwaitsecs=3\n", source="x.conf"
    )
    service = services(result)["w"]
    assert service["command"] == "b"
    assert service["stop"] == {"timeout": "3s"}
    assert result.warnings == [
        "x.conf:3: [program:w] command given again (first at x.conf:2): the last value wins,"
        " as in supervisord",
        "x.conf:4: [program:w] appears again (first at x.conf:1): merged, the later keys win,"
        " as in supervisord",
    ]


def test_includes_are_globbed_relative_to_the_including_file(tmp_path: Path) -> None:
    conf = tmp_path / "etc"
    (conf / "conf.d").mkdir(parents=True)
    (conf / "conf.d" / "b.conf").write_text("[program:b]\ncommand=b %(here)s\n")
    (conf / "conf.d" / "a.conf").write_text(
        "[program:a]\ncommand=a\n[include]\nfiles=nested/*.conf\n"
    )
    (conf / "main.conf").write_text("[supervisord]\n[include]\nfiles = conf.d/*.conf none/*.conf\n")
    # a relative path, as the user typed it from the folder above
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = convert((conf / "main.conf").read_text(), source="etc/main.conf")
    finally:
        os.chdir(here)
    assert list(services(result)) == ["a", "b"]  # the glob's files in sorted order
    assert services(result)["b"]["command"] == "b ${SUPERVISOR_HERE}/conf.d"
    assert "# [program:b] etc/conf.d/b.conf:1" in result.yaml  # each service notes its file
    assert result.warnings == [
        "etc/main.conf:3: [include] files: 'etc/none/*.conf' matches no file",
        "etc/conf.d/a.conf:4: [include] inside an included file is not followed (supervisord"
        " does not either)",
        "etc/conf.d/b.conf:2: [program:b] command: %(here)s (the folder of main.conf) left as"
        " ${SUPERVISOR_HERE}: set it, or import with the file's absolute path",
    ]


def test_here_is_the_folder_when_the_path_is_absolute(tmp_path: Path) -> None:
    path = tmp_path / "supervisord.conf"
    result = convert("[program:w]\ncommand=run %(here)s/x\n", source=str(path))
    assert services(result)["w"]["command"] == f"run {tmp_path}/x"
    assert result.warnings == []


def test_numprocs_become_replicas_with_process_num_forms(tmp_path: Path) -> None:
    result = convert(
        "[program:w]\ncommand=run --port 90%(process_num)02d --n %(process_num)d\n"
        "numprocs=3\nnumprocs_start=5\nprocess_name=%(program_name)s_%(process_num)s\n"
        "environment=IDX=%(process_num)d\n"
    )
    service = services(result)["w"]
    assert service["replicas"] == 3
    assert service["command"] == "run --port 90${replica+5:02} --n ${replica+5}"
    path = tmp_path / "services.yaml"
    path.write_text(result.yaml)
    from svcorch import replicas

    loaded = replicas.expand(catalogue.load(path, environ={}))
    assert [s.command for s in loaded.services.values()] == [
        "run --port 9005 --n 5",
        "run --port 9006 --n 6",
        "run --port 9007 --n 7",
    ]
    assert [s.env["IDX"] for s in loaded.services.values()] == ["5", "6", "7"]


def test_autostart_from_a_variable_keeps_its_name_and_case() -> None:
    result = convert("[program:w]\ncommand=a\nautostart=%(ENV_Start_W)s\n")
    assert "autostart: ${Start_W}" in result.yaml
    assert result.warnings == []
