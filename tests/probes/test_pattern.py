"""Catalogue regexes (log `pattern`, http `body`) match in linear time, and what RE2 cannot
do is refused by `svcorch validate` with one located line (docs/probes.md, "Patterns")."""

from __future__ import annotations

import http.server
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from svcorch.probes.base import ProbeContext
from svcorch.probes.pattern import compile_pattern
from tests.probes.helpers import attempt, make
from tests.support.cli import assert_clean, run_svcorch

EVIL = r"(a+)+$"  # catastrophic for a backtracking matcher
EVIL_LINE = "a" * 27 + "!"  # Python's re: ~10 s on this machine; every extra `a` doubles it
INSTANT = 0.1  # seconds; RE2 takes microseconds


def test_the_evil_pattern_is_instant_in_the_log_probe(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text((EVIL_LINE + "\n") * 200 + EVIL_LINE)  # complete lines and a pending one
    context = ProbeContext(service="svc", base_dir=tmp_path, log_path=log, log_offset=0)
    probe = make("log", context, pattern=EVIL)
    started = time.monotonic()
    result = probe.check(time.monotonic() + 5)
    took = time.monotonic() - started
    assert not result.ok
    assert result.retryable
    assert took < INSTANT, f"{took:.3f}s"


def test_the_evil_pattern_still_matches_what_it_should(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text(EVIL_LINE + "\n" + "a" * 27 + "\n")
    context = ProbeContext(service="svc", base_dir=tmp_path, log_path=log, log_offset=0)
    result = make("log", context, pattern=EVIL).check(time.monotonic() + 5)
    assert result.ok, result.detail
    assert result.detail == "matched: " + "a" * 27


class EvilBody(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (EVIL_LINE * 2000).encode()  # 56 KB of near-matches, under the 64 KiB read
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def evil_server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EvilBody)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_the_evil_pattern_is_instant_on_an_http_body(evil_server: str) -> None:
    started = time.monotonic()
    result = attempt("http", url=evil_server, body=EVIL)
    took = time.monotonic() - started
    assert not result.ok
    assert "the body does not match" in result.detail
    assert took < 1.0, f"{took:.3f}s"  # a real HTTP round trip; the match itself is nothing


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "backreferences are not supported"),
        (r"(?P<word>\w+) (?P=word)", "backreferences are not supported"),
        (r"ready(?= now)", "lookahead and lookbehind are not supported"),
        (r"(?<!not )ready", "lookahead and lookbehind are not supported"),
        (r"ready\Z", r"\Z is not supported (RE2 spells it \z)"),
        (r"(?>a+)b", "atomic groups and possessive repeats are not supported"),
        (r"a*+b", "atomic groups and possessive repeats are not supported"),
        (r"(?x) ready", "only the flags i, m, s and U are supported"),
        ("(unclosed", "missing ): (unclosed"),
        ("a{1001}", "invalid repetition size: {1001}"),
        (r"\pL{1000}\pL{1000}\pL{1000}", "pattern too large - compile failed"),
    ],
)
def test_what_re2_cannot_do_is_refused_saying_why(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match="svcorch uses RE2 syntax") as caught:
        compile_pattern(pattern)
    assert str(caught.value).startswith(reason + ";")


@pytest.mark.parametrize(
    ("pattern", "line"),
    [
        (r"(?i)READY to accept", "Ready to accept connections"),
        (r"^\d+ workers? up$", "12 workers up"),
        (r"listening on (?P<port>\d+)", "listening on 8000"),
        (r"\bstarted\b", "worker started ok"),
        (r"[[:alpha:]]+: ok\z", "db: ok"),
        (r"\Astarted .*? in \d+ms", "started web in 12ms"),
        (r"(?U)up a+", "up aaa"),
        (r"(?m)^ready$", "ready"),
        (r"(?s)ready.", "ready."),
        (r"\p{Greek}+", "αβγ"),
    ],
)
def test_the_python_syntax_people_use_works(pattern: str, line: str) -> None:
    assert compile_pattern(pattern).search(line) is not None


def _validate(folder: Path, ready: str) -> tuple[int, str, str]:
    text = f"""
        version: 1
        services:
          web:
            command: sleep 60  # a program that exists: validate's preflight stays quiet
            ready: {ready}
        """
    (folder / "services.yaml").write_text(textwrap.dedent(text).lstrip("\n"))
    result = run_svcorch("validate", cwd=folder)
    assert_clean(result)
    return result.returncode, result.stderr, result.stdout


def test_validate_refuses_a_backreference_with_one_located_line(tmp_path: Path) -> None:
    code, stderr, stdout = _validate(tmp_path, r"{type: log, pattern: '(\w+) \1'}")
    assert (code, stdout) == (2, "")
    # one line, located at the value, and no RE2 log output of its own on stderr
    assert stderr.splitlines() == [
        r"services.yaml:5:33: service 'web': ready.pattern: invalid pattern '(\\w+) \\1':"
        " backreferences are not supported; svcorch uses RE2 syntax, which matches in"
        " linear time (see docs/probes.md)"
    ]


def test_validate_refuses_lookbehind_in_an_http_body(tmp_path: Path) -> None:
    code, stderr, _ = _validate(
        tmp_path, "{type: http, url: 'http://127.0.0.1:8000/', body: '(?<=db: )up'}"
    )
    assert code == 2
    lines = stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("services.yaml:5:")
    assert (
        "invalid body regex '(?<=db: )up': lookahead and lookbehind are not supported" in (lines[0])
    )


def test_validate_accepts_the_evil_pattern_since_it_is_harmless_here(tmp_path: Path) -> None:
    code, stderr, stdout = _validate(tmp_path, "{type: log, pattern: '(a+)+$'}")
    assert (code, stderr) == (0, "")
    assert "ok" in stdout


def test_re2_loads_only_where_a_pattern_is_compiled(tmp_path: Path) -> None:
    """RE2 is light (a few ms) but still loaded on first use only, like probe clients."""
    # an http probe without `body`: its module (and probes.pattern) load, RE2 need not
    (tmp_path / "services.yaml").write_text(
        "version: 1\nservices:\n  web: {command: x, ready: {type: http, url: 'http://h/'}}\n"
    )
    script = (
        "import contextlib, io, sys\n"
        "from svcorch.cli import run\n"
        "for argv in (['--help'], ['validate']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        run(argv)\n"
        "print('re2' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
