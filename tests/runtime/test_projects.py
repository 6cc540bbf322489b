"""One state directory, one project: side by side when named apart, refused when not.

Through the installed command, without --state-dir (the default is what is tested), with
real processes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runtime.conftest import COMMAND_TIMEOUT, SVCORCH, tcp_service
from tests.support import free_port, port_open
from tests.support.procs import service_env


class Folder:
    """A folder of catalogues, each command run there as a user would: `svcorch -f FILE`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in service_env().items() if not k.startswith("SVCORCH_")}
        self.env["SVCORCH_TEST_RUN"] = service_env()["SVCORCH_TEST_RUN"]
        self.env["COLUMNS"] = "200"
        self.started: list[list[str]] = []  # the global options of each up, to down them

    def write(self, file: str, services: dict[str, Any], **top: Any) -> None:
        (self.root / file).write_text(yaml.safe_dump({"version": 1, **top, "services": services}))

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        if "up" in args:
            self.started.append(list(args[: args.index("up")]))
        return subprocess.run(
            [SVCORCH, *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.root,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = self.run(*args, env=env)
        assert result.returncode == 0, (
            f"{args}: {result.returncode}\n{result.stdout}{result.stderr}"
        )
        return result.stdout

    def status(self, *options: str) -> dict[str, dict[str, Any]]:
        return {row["service"]: row for row in json.loads(self.ok(*options, "status", "--json"))}


@pytest.fixture
def folder() -> Iterator[Folder]:
    root = Path(tempfile.mkdtemp(prefix="prj-", dir="/tmp"))
    made = Folder(root)
    try:
        yield made
    finally:
        for options in reversed(made.started):
            made.run(*options, "down", "--timeout", "2s")
        shutil.rmtree(root, ignore_errors=True)


def test_two_projects_named_apart_run_side_by_side_in_one_folder(folder: Folder) -> None:
    shop, blog = free_port(), free_port()
    folder.write("services.yaml", {"web": tcp_service(shop)}, name="shop")
    folder.write("blog.yaml", {"web": tcp_service(blog)}, name="blog")
    assert "1 ready in" in folder.ok("up")
    assert "1 ready in" in folder.ok("-f", "blog.yaml", "up")
    assert port_open(shop) and port_open(blog)

    # the first project keeps .svcorch/, the other one gets .svcorch/projects/blog/
    shared = folder.root / ".svcorch"
    assert (shared / "project").read_text() == "shop\n"
    assert (shared / "projects" / "blog" / "project").read_text() == "blog\n"
    assert (shared / "logs" / "web.log").read_text().count("start #1") == 1
    assert (shared / "projects" / "blog" / "logs" / "web.log").exists()
    shop_pid = folder.status()["web"]["pid"]
    blog_pid = folder.status("-f", "blog.yaml")["web"]["pid"]
    assert shop_pid != blog_pid

    assert "1 stopped in" in folder.ok("-f", "blog.yaml", "down")
    assert not port_open(blog) and port_open(shop)
    assert folder.status()["web"]["pid"] == shop_pid


def test_a_copy_of_the_catalogue_is_refused_against_the_running_daemon(folder: Folder) -> None:
    port = free_port()
    folder.write("services.yaml", {"worker": tcp_service(port)}, name="shop")
    # the copy's worker is broken; it must not replace the healthy one
    broken = {"command": "false", "ready": {"type": "tcp", "port": free_port()}}
    folder.write("copy.yaml", {"worker": broken}, name="shop")
    folder.ok("up")
    pid = folder.status()["worker"]["pid"]

    refused = folder.run("-f", "copy.yaml", "restart", "worker")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr == (
        "svcorch: the daemon of .svcorch runs project 'shop' from services.yaml, not copy.yaml;"
        " to run copy.yaml beside it, name it apart (-p NAME) or give it --state-dir DIR;"
        " to switch to it, `svcorch down` first\n"
    )
    assert folder.run("-f", "copy.yaml", "status").stderr == refused.stderr
    assert folder.status()["worker"]["pid"] == pid and port_open(port)

    # the way out: named apart, the copy is a project of its own (its broken worker fails
    # there, and the running one is untouched)
    apart = folder.run("-f", "copy.yaml", "-p", "copy", "up")
    assert apart.returncode == 1
    assert "worker failed" in apart.stdout
    assert (folder.root / ".svcorch" / "projects" / "copy" / "project").exists()
    assert folder.status()["worker"]["pid"] == pid and port_open(port)


def test_another_projects_state_dir_given_explicitly_is_refused(folder: Folder) -> None:
    folder.write("services.yaml", {"web": tcp_service(free_port())}, name="shop")
    folder.write("blog.yaml", {"web": tcp_service(free_port())}, name="blog")
    folder.ok("up")
    for command in (["up"], ["status"], ["logs"], ["down"]):
        refused = folder.run("--state-dir", ".svcorch", "-f", "blog.yaml", *command)
        assert refused.returncode == 2, command
        assert refused.stderr == (
            "svcorch: .svcorch serves project 'shop', not 'blog' (blog.yaml);"
            " use another --state-dir (or none: each project gets its own)\n"
        )
    assert folder.status()["web"]["state"] == "ready"


def test_p_runs_the_same_catalogue_as_another_project(folder: Folder) -> None:
    first, second = free_port(), free_port()
    service = tcp_service(0)
    port = f"${{PORT:-{first}}}"
    service["command"] = [*service["command"][:3], port, *service["command"][4:]]
    service["ready"]["port"] = port
    folder.write("services.yaml", {"web": service}, name="shop")
    folder.ok("up")
    folder.ok("-p", "shop-eu", "up", env={"PORT": str(second)})
    assert port_open(first) and port_open(second)
    assert folder.status()["web"]["pid"] != folder.status("-p", "shop-eu")["web"]["pid"]
    # the environment variable names the project too, as COMPOSE_PROJECT_NAME does
    by_env = json.loads(folder.ok("status", "--json", env={"SVCORCH_PROJECT_NAME": "shop-eu"}))
    assert by_env[0]["pid"] == folder.status("-p", "shop-eu")["web"]["pid"]
    folder.ok("-p", "shop-eu", "down", env={"PORT": str(second)})
    assert not port_open(second) and port_open(first)


def test_a_state_dir_from_before_projects_is_kept_by_its_stack(folder: Folder) -> None:
    # what an earlier svcorch left: .svcorch/ with logs and data, and no project recorded
    shared = folder.root / ".svcorch"
    (shared / "logs").mkdir(parents=True)
    (shared / "data").mkdir()
    (shared / "logs" / "web.log").write_text("an earlier run\n")
    folder.write(
        "services.yaml",
        {"web": {**tcp_service(free_port()), "env": {"DATA": "${SVCORCH_STATE_DIR}/data"}}},
        name="bkmonitor",
    )
    folder.ok("up")
    assert (shared / "project").read_text() == "bkmonitor\n"
    assert "an earlier run" in (shared / "logs" / "web.log").read_text()
    config = folder.ok("config")
    assert f"DATA: {shared}/data" in config


def test_the_daemon_checks_the_project_of_each_request(folder: Folder) -> None:
    """docs/control.md: another project is an error with exit code 2; a request without a
    project (a client from before projects) is served."""
    from svcorch import control

    folder.write("services.yaml", {"web": tcp_service(free_port())}, name="shop")
    folder.ok("up")
    socket_path = folder.root / ".svcorch" / "svcorch.sock"

    def ask(message: dict[str, Any]) -> dict[str, Any]:
        connection = control.connect(socket_path)
        assert connection is not None
        with connection:
            return connection.request(message)

    assert ask({"op": "status"})["services"][0]["state"] == "ready"
    with pytest.raises(control.RemoteError) as refused:
        ask({"op": "status", "project": "blog", "file": str(folder.root / "blog.yaml")})
    assert refused.value.exit_code == 2
    assert "serves project 'shop', not 'blog'" in str(refused.value)
