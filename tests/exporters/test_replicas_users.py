"""`replicas:` and `user:`/`group:` in each export target, read back with the target's own
tools: `docker-compose config`, kubernetes-validate, `systemd-analyze verify` and
supervisord's parser; what a target cannot express is a warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.exporters.test_exporters import has, load, run
from tests.support.accounts import unprivileged_user

BIN = Path(sys.executable).parent


def text(user: str) -> str:
    return f"""\
version: 1
name: scaled
services:
  worker:
    command: /bin/sleep 1000
    image: worker:1
    replicas: 3
    user: {user}
    group: nogroup
  shard:
    command: /bin/sleep 100${{replica}}
    image: shard:1
    replicas: 2
"""


def test_compose_deploy_replicas_and_user(tmp_path: Path) -> None:
    user = unprivileged_user().pw_name
    export = run("compose", load(tmp_path, text(user)), tmp_path)
    out = tmp_path / "c"
    out.mkdir()
    for name, file in export.files.items():
        (out / name).write_text(file.text)
    compose = shutil.which("docker-compose")
    assert compose is not None, "docker-compose is missing: run scripts/setup.sh"
    checked = subprocess.run(
        [compose, "-f", "docker-compose.yaml", "config"],
        cwd=out, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    assert services["worker"]["deploy"]["replicas"] == 3
    assert services["worker"]["user"] == f"{user}:nogroup"
    assert has(export, "'shard'", "command differ per replica", "compose runs 2 identical copies")


def test_kubernetes_replicas_and_security_context(tmp_path: Path) -> None:
    account = unprivileged_user()
    export = run("kubernetes", load(tmp_path, text(account.pw_name)), tmp_path)
    out = tmp_path / "k"
    out.mkdir()
    for name, file in export.files.items():
        (out / name).write_text(file.text)
    checked = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "--kubernetes-version", "1.37.0",
         *sorted(str(p) for p in out.glob("*.yaml"))],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    objects = [o for f in out.glob("*.yaml") for o in yaml.safe_load_all(f.read_text()) if o]
    worker = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "worker"
    )
    assert worker["spec"]["replicas"] == 3
    import grp

    assert worker["spec"]["template"]["spec"]["securityContext"] == {
        "runAsUser": account.pw_uid,
        "runAsGroup": grp.getgrnam("nogroup").gr_gid,
    }
    assert has(export, "'worker'", f"user '{account.pw_name}'", "exported as")


def test_systemd_user_group_and_a_replicas_warning(tmp_path: Path) -> None:
    user = unprivileged_user().pw_name
    export = run("systemd", load(tmp_path, text(user)), tmp_path)
    out = tmp_path / "u"
    out.mkdir()
    for name, file in export.files.items():
        (out / name).write_text(file.text)
    unit = (out / "scaled-worker.service").read_text()
    assert f"User={user}\n" in unit and "Group=nogroup\n" in unit
    units = [str(p) for p in sorted(out.glob("scaled*.service"))] + [str(out / "scaled.target")]
    checked = subprocess.run(
        ["systemd-analyze", "verify", *units],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{out}:"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "User=" not in checked.stderr and "Group=" not in checked.stderr, checked.stderr
    assert has(export, "'worker'", "replicas: 3: exported as one unit")


def test_supervisord_numprocs_and_user_as_supervisord_reads_them(tmp_path: Path) -> None:
    user = unprivileged_user().pw_name
    export = run("supervisord", load(tmp_path, text(user)), tmp_path)
    out = tmp_path / "s"
    out.mkdir()
    for name, file in export.files.items():
        (out / name).write_text(file.text)
    (tmp_path / "state" / "logs").mkdir(parents=True)
    main = tmp_path / "main.conf"
    main.write_text(
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/s.pid\n"
        f"[include]\nfiles={out}/supervisord.conf\n"
    )
    from supervisor.options import ServerOptions

    options = ServerOptions()
    options.configfile = str(main)
    options.process_config(do_usage=False)
    processes = {
        process.name: process
        for group in options.process_group_configs
        for process in group.process_configs
    }
    workers = sorted(name for name in processes if "worker" in name)
    assert len(workers) == 3
    logs = sorted(processes[name].stdout_logfile for name in workers)
    assert logs == [str(tmp_path / "state" / "logs" / f"worker#{i}.log") for i in range(3)]
    import pwd

    assert {processes[name].uid for name in workers} == {pwd.getpwnam(user).pw_uid}
    assert has(export, "'worker'", "group 'nogroup'", "not exported")
    assert has(export, "'shard'", "command differ per replica")
