"""What docs/web.md tells a user, held to the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from svcorch import errors
from svcorch.control import RemoteError
from svcorch.web import metrics
from svcorch.web.security import MIN_TOKEN
from svcorch.web.server import KEEPALIVE, MAX_BODY, ROUTES, status_for
from tests.support.cli import run_svcorch

DOC = (Path(__file__).resolve().parents[2] / "docs" / "web.md").read_text()


def test_every_route_is_in_the_api_table() -> None:
    rows = set(re.findall(r"^\| `(GET|POST) (\S+)` \|", DOC, re.MULTILINE))
    assert rows == {(route.method, route.path) for route in ROUTES}


def test_the_default_bind_is_the_documented_one(tmp_path: Path) -> None:
    result = run_svcorch("web", "--help", cwd=tmp_path, env={"COLUMNS": "200"})
    assert "127.0.0.1:8765" in re.sub(r"\s+", "", result.stdout)
    assert "The default bind is `127.0.0.1:8765`." in DOC


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.UsageError("x"), 400),
        (errors.UnknownService("x"), 404),
        (errors.CatalogueError([errors.Problem("f", "x")]), 422),
        (errors.DaemonError("x"), 503),
        (RemoteError("x", 2), 400),
    ],
)
def test_the_status_code_table(error: errors.SvcorchError, status: int) -> None:
    assert status_for(error) == status
    name = type(error).__name__
    if name != "RemoteError":
        assert re.search(rf"`{name}`.*\| `{status}` \|", DOC), name


def test_the_numbers_of_the_page() -> None:
    assert f"at least {MIN_TOKEN} characters" in " ".join(DOC.split())
    assert f"every {KEEPALIVE:g} s" in DOC
    assert f"over {MAX_BODY // 1024} KiB" in DOC


def test_the_metrics_table_names_what_is_exposed() -> None:
    rows = [{"service": "a", "state": "ready", "restarts": 1, "uptime": 2.0}]
    text = metrics.exposition(metrics.Snapshot(rows, {"a": 0.5}, 42, 1024)).decode()
    samples = set(re.findall(r"^(svcorch_\w+)[{ ]", text, re.MULTILINE))
    documented = set(re.findall(r"^\| `(svcorch_\w+)` \|", DOC, re.MULTILINE))
    assert documented == samples - {"svcorch_service_restarts_created"}
