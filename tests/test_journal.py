"""The event journal: whole lines, 0600, bounded by rotation, read back in order."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from svcorch.journal import BACKUPS, MAX_SIZE, EventRecord, Journal, journal_path


def record(
    seq: int, service: str = "web", at: float | None = None, **values: object
) -> EventRecord:
    fields: dict[str, object] = {
        "seq": seq,
        "time": 1_700_000_000.0 + seq if at is None else at,
        "service": service,
        "kind": "exited",
        "severity": "warning",
        "old": "ready",
        "new": "backoff",
        "detail": "restarting in 0.5s: exited with code 1",
        "pid": 4000 + seq,
        **values,
    }
    return EventRecord(**fields)  # type: ignore[arg-type]


def test_records_go_in_as_json_lines_and_come_back_in_order(tmp_path: Path) -> None:
    journal = Journal(journal_path(tmp_path))
    for seq in range(1, 6):
        journal.append(record(seq, service="web" if seq % 2 else "db"))
    journal.close()
    path = tmp_path / "events.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == record(1).to_dict()
    assert [r.seq for r in journal.read()] == [1, 2, 3, 4, 5]
    assert [r.seq for r in journal.read(services=["db"])] == [2, 4]
    assert [r.seq for r in journal.read(since=1_700_000_004.0)] == [4, 5]
    assert journal.last_seq() == 5


def test_the_journal_is_bounded_by_rotation(tmp_path: Path) -> None:
    journal = Journal(journal_path(tmp_path), max_size=2_000, backups=2)
    for seq in range(1, 101):
        journal.append(record(seq))
    journal.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all(p.stat().st_size < 2_000 + 300 for p in tmp_path.iterdir())
    kept = [r.seq for r in journal.read()]
    # the newest are kept, oldest first, without a gap
    assert kept == list(range(kept[0], 101)) and kept[0] > 1
    assert journal.last_seq() == 100
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tmp_path.iterdir())


def test_the_defaults_bound_the_journal_to_four_megabytes() -> None:
    assert (MAX_SIZE, BACKUPS) == (1_000_000, 3)  # docs/operations.md: "at most 4 MB"


def test_garbage_and_a_torn_last_line_are_skipped(tmp_path: Path) -> None:
    journal = Journal(journal_path(tmp_path))
    journal.append(record(1))
    journal.close()
    with (tmp_path / "events.jsonl").open("a") as handle:
        handle.write("not json\n")
        handle.write('{"seq": "2", "time": 1}\n')  # a wrong type is not a record
        handle.write(json.dumps(record(3).to_dict()) + "\n")
        handle.write('{"seq": 4, "time": 17000')  # a write cut short
    assert [r.seq for r in journal.read()] == [1, 3]
    assert journal.last_seq() == 3


def test_an_empty_or_missing_journal_reads_as_nothing(tmp_path: Path) -> None:
    journal = Journal(journal_path(tmp_path))
    assert journal.read() == []
    assert journal.last_seq() == 0


def test_last_seq_reads_from_the_end_across_chunks(tmp_path: Path) -> None:
    journal = Journal(journal_path(tmp_path), max_size=10_000_000)
    for seq in range(1, 2001):  # ~400 kB: several 64 kB chunks back from the end
        journal.append(record(seq, detail="x" * 100))
    journal.close()
    assert journal.last_seq() == 2000


def test_appending_after_a_reopen_continues_the_file(tmp_path: Path) -> None:
    Journal(journal_path(tmp_path)).append(record(1))
    again = Journal(journal_path(tmp_path))
    again.append(record(2))
    again.close()
    assert [r.seq for r in again.read()] == [1, 2]
