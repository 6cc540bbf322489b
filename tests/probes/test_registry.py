from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pytest

from svcorch.probes import registry
from svcorch.probes.base import ProbeOptions

CLIENTS = ("redis", "pika", "pymysql", "influxdb_client")


@pytest.mark.parametrize("name", list(registry.BUILTIN))
def test_each_builtin_type_is_registered_under_its_name(name: str) -> None:
    probe_type = registry.get(name)
    assert probe_type is not None
    assert probe_type.name == name
    assert issubclass(probe_type.options, ProbeOptions)
    assert get_args(probe_type.options.model_fields["type"].annotation) == (name,)
    assert probe_type.options.model_config.get("frozen")
    assert probe_type.options.model_config.get("extra") == "forbid"


def test_unknown_keys_are_rejected() -> None:
    from pydantic import ValidationError

    probe_type = registry.get("redis")
    assert probe_type is not None
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        probe_type.options.model_validate({"type": "redis", "hots": "127.0.0.1"})


def _imported_clients(code: str) -> list[str]:
    check = f"{code}\nimport sys\nprint('CLIENTS:', *(m for m in {CLIENTS!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=60
    )
    marked = [line for line in out.stdout.splitlines() if line.startswith("CLIENTS:")]
    assert marked, out.stdout
    return marked[-1].split()[1:]


def test_loading_and_validating_every_probe_type_imports_no_client_library() -> None:
    code = (
        "from svcorch.probes import registry\n"
        "for t in registry.all_types(): t.options.model_json_schema()\n"
        "registry.get('redis').options.model_validate({'type': 'redis', 'url': 'redis://h'})\n"
        "registry.get('amqp').options.model_validate({'type': 'amqp', 'queue': 'q'})\n"
        "registry.get('mysql').options.model_validate({'type': 'mysql', 'database': 'd'})\n"
        "registry.get('influxdb').options.model_validate({'type': 'influxdb'})\n"
    )
    assert _imported_clients(code) == []


def test_svcorch_help_imports_no_client_library() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['svcorch', '--help']\n"
        "from svcorch.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    assert _imported_clients(code) == []
