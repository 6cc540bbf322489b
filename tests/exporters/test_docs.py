"""docs/export.md's excerpts and warning lists are what the shipped stack exports today.

Each ``<!-- excerpt: TARGET FILE -->`` block is cut at ``...`` lines; every piece must appear
as is in that file of a fresh export, with the doc's stand-in paths (/srv/bkmonitor for the
repository, /etc/bkmonitor for --out, /srv/bkmonitor/.svcorch for the state directory). Each
``<!-- warnings: TARGET -->`` block must equal the export's warnings, line for line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.exporters.test_shipped_exports import IMAGES, REPO, SVCORCH_IMAGE
from tests.support.cli import assert_clean, run_svcorch

DOC = (REPO / "docs" / "export.md").read_text()
BLOCK = re.compile(r"<!-- (excerpt|warnings): (\S+)(?: (\S+))? -->\n```[a-z]*\n(.*?)\n```", re.S)
TARGETS = ("kubernetes", "compose", "systemd", "supervisord")


def exported(target: str, tmp_path: Path) -> tuple[Path, list[str]]:
    out, state = tmp_path / target, tmp_path / "state"
    extra = [*IMAGES, SVCORCH_IMAGE] if target in ("kubernetes", "compose") else []
    result = run_svcorch(
        "--state-dir", str(state), "export", target, "--out", str(out), *extra, cwd=REPO
    )
    assert_clean(result)
    assert result.returncode == 0, result.stderr
    return out, result.stderr.splitlines()


def as_documented(text: str, tmp_path: Path, target: str) -> str:
    for path, shown in (
        (tmp_path / target, "/etc/bkmonitor"),
        (tmp_path / "state", "/srv/bkmonitor/.svcorch"),
        (REPO, "/srv/bkmonitor"),
    ):
        text = text.replace(str(path), shown)
    return text


def test_every_target_has_its_excerpts_and_warnings() -> None:
    found = {(kind, target) for kind, target, _, _ in BLOCK.findall(DOC)}
    assert found == {(kind, t) for kind in ("excerpt", "warnings") for t in TARGETS}


@pytest.mark.parametrize("target", TARGETS)
def test_excerpts_and_warnings_match_a_fresh_export(target: str, tmp_path: Path) -> None:
    out, warnings = exported(target, tmp_path)
    for kind, block_target, name, body in BLOCK.findall(DOC):
        if block_target != target:
            continue
        if kind == "warnings":
            assert body.splitlines() == warnings
            continue
        text = as_documented((out / name).read_text(), tmp_path, target)
        for piece in body.split("\n...\n"):
            assert piece.strip("\n").removesuffix("\n...") in text, piece


def test_cli_doc_graph_json_example(tmp_path: Path) -> None:
    import json

    cli_doc = (REPO / "docs" / "cli.md").read_text()
    shown = [
        json.loads(line.strip().rstrip(",")) for line in cli_doc.splitlines() if '{"from": ' in line
    ]
    result = run_svcorch("--state-dir", str(tmp_path), "graph", "--json", "migrate", cwd=REPO)
    document = json.loads(result.stdout)
    assert shown == document["edges"]
    first = next(line for line in cli_doc.splitlines() if '{"name": "influxdb"' in line)
    assert json.loads(first.strip().rstrip(",")) == document["nodes"][0]
