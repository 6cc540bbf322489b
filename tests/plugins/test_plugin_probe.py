"""A probe type from an installed plugin: built with pip, found through its entry point.

The example plugin is installed with ``pip install --target`` into a temporary directory
that the checking subprocess puts on its path, not into the shared venv: the registry, and
so every other test and the CLI's list of types, would otherwise gain ``file-exists`` for
good. Entry points are read from the installed distribution metadata either way. Each run
builds into a fresh directory, so the test is idempotent and leaves nothing behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_SOURCE = Path(__file__).resolve().parent / "svcorch_probe_example"
NO_INDEX = ("No matching distribution", "Could not find a version", "NewConnectionError")

CHECK = """
import json, sys, time
from pathlib import Path
from svcorch.probes import registry
from svcorch.probes.base import ProbeContext

probe_type = registry.get("file-exists")
options = probe_type.options.model_validate({"type": "file-exists", "path": "flag"})
base = Path(sys.argv[1])
probe = probe_type.create(options, ProbeContext(service="svc", base_dir=base))
before = probe.check(time.monotonic() + 1)
(base / "flag").touch()
after = probe.check(time.monotonic() + 1)
try:
    probe_type.options.model_validate({"type": "file-exists", "path": ""})
    invalid = "accepted"
except ValueError as exc:
    invalid = str(exc)
print(json.dumps({
    "names": registry.names(),
    "module": type(probe).__module__,
    "before": [before.ok, before.retryable, before.detail],
    "after": [after.ok, after.detail],
    "invalid": invalid,
}))
"""


def _can_build_without_isolation() -> bool:
    """setuptools builds wheels itself from 70.1; before that it needs the wheel package."""
    import setuptools

    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _install(source: Path, target: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target)]
    if _can_build_without_isolation():
        command.append("--no-build-isolation")
    done = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        output = done.stdout + done.stderr
        if any(sign in output for sign in NO_INDEX):
            pytest.skip(f"cannot fetch the build backend from the package index: {output[-300:]}")
        pytest.fail(f"pip install failed:\n{output}")


def test_an_installed_plugin_is_found_by_name(tmp_path: Path) -> None:
    import json

    source = tmp_path / "src"
    shutil.copytree(PLUGIN_SOURCE, source)  # build in the copy: no build/ or egg-info here
    site = tmp_path / "site"
    _install(source, site)
    assert (site / "svcorch_probe_example").is_dir()

    base = tmp_path / "service"
    base.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(base)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["names"][:8] == ["tcp", "http", "exec", "log", "redis", "amqp", "mysql", "influxdb"]
    assert "file-exists" in seen["names"]
    assert seen["module"] == "svcorch_probe_example"
    assert seen["before"] == [False, True, f"{base / 'flag'} does not exist yet"]
    assert seen["after"] == [True, f"{base / 'flag'} exists"]
    assert "path must not be empty" in seen["invalid"]


def test_the_plugin_is_not_installed_in_this_venv() -> None:
    """The other test must not leak: this process's registry knows only the built-ins."""
    from svcorch.probes import registry

    assert registry.get("file-exists") is None
