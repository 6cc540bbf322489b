from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from svcorch.probes.base import Probe, ProbeContext, ProbeResult
from svcorch.probes.log import LogProbe
from tests.probes.helpers import make, options

PATTERN = r"Ready to accept connections"


def probe_for(log: Path, offset: int = 0, pattern: str = PATTERN) -> LogProbe:
    context = ProbeContext(service="svc", base_dir=log.parent, log_path=log, log_offset=offset)
    probe = make("log", context, pattern=pattern)
    assert isinstance(probe, LogProbe)
    return probe


def check(probe: Probe) -> ProbeResult:
    return probe.check(time.monotonic() + 5)


def test_missing_file_is_retryable(tmp_path: Path) -> None:
    result = check(probe_for(tmp_path / "svc.log"))
    assert not result.ok
    assert result.retryable
    assert "does not exist yet" in result.detail


def test_match_after_more_lines_arrive(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("booting\n")
    probe = probe_for(log)
    assert not check(probe).ok
    with log.open("a") as out:
        out.write("loading data\n* Ready to accept connections tcp\n")
    result = check(probe)
    assert result.ok, result.detail
    assert result.detail == "matched: * Ready to accept connections tcp"


def test_lines_before_the_offset_belong_to_an_earlier_start(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("Ready to accept connections (last run)\nstopped\n")
    probe = probe_for(log, offset=log.stat().st_size)
    assert not check(probe).ok
    with log.open("a") as out:
        out.write("Ready to accept connections\n")
    assert check(probe).ok


def test_reads_on_from_its_position(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("a" * 100 + "\n")
    probe = probe_for(log)
    check(probe)
    assert probe.position == 101
    with log.open("a") as out:
        out.write("b\n")
    check(probe)
    assert probe.position == 103


def test_a_line_split_across_writes(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("Ready to acc")
    probe = probe_for(log)
    assert not check(probe).ok
    with log.open("a") as out:
        out.write("ept connections\n")
    assert check(probe).ok


def test_copytruncate_restarts_from_the_top(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("old line that is fairly long\n" * 10)
    probe = probe_for(log)
    assert not check(probe).ok
    with log.open("r+") as out:  # truncate in place, as logrotate's copytruncate does
        out.truncate(0)
    with log.open("a") as out:
        out.write("Ready to accept connections\n")
    assert check(probe).ok


def test_rotation_by_rename_follows_the_new_file(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("x" * 10 + "\n")
    probe = probe_for(log)
    assert not check(probe).ok
    os.rename(log, tmp_path / "svc.log.1")
    # the new file is longer than our position, so only its inode tells it apart
    log.write_text("y" * 20 + "\nReady to accept connections\n")
    assert check(probe).ok


def test_no_log_file_is_fatal(tmp_path: Path) -> None:
    probe = make("log", ProbeContext(service="svc", base_dir=tmp_path), pattern="x")
    result = check(probe)
    assert not result.ok
    assert not result.retryable


def test_bad_pattern_fails_at_load() -> None:
    with pytest.raises(ValidationError, match="invalid pattern"):
        options("log", pattern="(unclosed")
