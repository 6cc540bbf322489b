"""No client library talks to the terminal or fills daemon.log; a silent broker is one line.

An AMQP probe against a listener that accepts and never answers made pika write ``ERROR:``
lines and a traceback on stderr (under ``--json`` too, which then was not the only thing
printed) and its repr became the detail. Here the installed command meets such a listener:
stdout holds svcorch's output and nothing else (exactly one JSON document with ``--json``),
stderr is empty, the detail is ``no answer within 1s``, and the daemon's log has one line
for the failure and none of pika's.

    .venv/bin/pytest tests/reliability/test_library_noise.py -q -s
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import silent_tcp_server
from tests.support.cli import run_svcorch

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


@pytest.fixture
def silent_broker(tmp_path: Path) -> Iterator[Path]:
    """A catalogue whose one service is an AMQP broker that never says a word."""
    with silent_tcp_server() as port:
        probe = {"type": "amqp", "port": port, "timeout": "2s", "attempt_timeout": "1s"}
        catalogue = {"version": 1, "services": {"mq": {"external": True, "ready": probe}}}
        (tmp_path / "services.yaml").write_text(yaml.safe_dump(catalogue))
        yield tmp_path


def svcorch(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_svcorch(*args, cwd=folder, timeout=60)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr == ""  # no library's ERROR line, no traceback
    return result


def test_check_prints_svcorch_s_lines_only(silent_broker: Path) -> None:
    table = svcorch(silent_broker, "check").stdout.splitlines()
    assert len(table) == 2, table  # the header and mq's row
    assert re.fullmatch(r"mq +amqp +FAIL +\d+\.\d ms +no answer within 1s *", table[1]), table

    (row,) = json.loads(svcorch(silent_broker, "check", "--json").stdout)  # one document
    assert row["detail"] == "no answer within 1s"

    # attempts abandoned at their bound end later in their threads, as pika logs its failure
    (row,) = json.loads(svcorch(silent_broker, "check", "--wait", "--json").stdout)
    assert re.fullmatch(
        r"amqp probe amqp://guest:\*\*\*@127\.0\.0\.1:\d+/%2F: gave up after 2\.\ds:"
        r" no answer within (1|0\.\d+)s",
        row["detail"],
    ), row["detail"]


def test_up_and_the_daemon_log_have_one_line_for_the_failure(silent_broker: Path) -> None:
    text = svcorch(silent_broker, "up").stdout
    assert "mq failed: amqp probe" in text and "no answer within" in text
    # svcorch's own lines only: progress, the failure, the report of each service's state
    # and what still runs (docs/cli.md, "svcorch up")
    own = (
        r"mq +\w+|mq failed: |up failed after [\d.]+s; each service now:$|  mq +\w+$"
        r"|nothing is left running$|still running: |  `svcorch down` stops"
    )
    for line in text.splitlines():
        assert re.match(own, line), line
    result = json.loads(svcorch(silent_broker, "up", "--json").stdout)  # one document
    assert re.search(r": no answer within (1|0\.\d+)s$", result["failed"][0]["reason"])

    log = (silent_broker / ".svcorch" / "daemon.log").read_text()
    assert "pika" not in log
    assert "Traceback" not in log
    failures = [line for line in log.splitlines() if "probing -> failed" in line]
    assert len(failures) == 2  # one line per up
    assert all("no answer within" in line for line in failures)
    for line in log.splitlines():
        assert re.match(r"\d{4}-\d\d-\d\d [\d:,]+ [A-Z]+ svcorch\.", line), line


def test_no_log_record_of_any_library_reaches_the_cli_terminal() -> None:
    """What the CLI sets up at its start: a library's ERROR with a traceback, and a warning."""
    code = (
        "import logging, warnings\n"
        "from svcorch.logconfig import quiet_terminal\n"
        "quiet_terminal()\n"
        "try:\n"
        "    raise OSError('handshake failed')\n"
        "except OSError:\n"
        "    logging.getLogger('pika.adapters').exception('Connection workflow failed')\n"
        "logging.getLogger('urllib3').warning('Retrying')\n"
        "warnings.warn('Unverified HTTPS request')\n"
        "print('svcorch output')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout == "svcorch output\n"
    assert result.stderr == ""


def test_the_promise_is_in_the_docs() -> None:
    section = DOCS.read_text().partition("## Client libraries")[2].partition("\n## ")[0]
    assert "no answer within 1s" in section
    assert "pytest tests/reliability/test_library_noise.py" in section
