"""Regular expressions from the catalogue, matched in time linear in the text.

Python's ``re`` backtracks: ``(a+)+$`` against 27 ``a``s and a ``!`` takes seconds, and a
probe attempt cannot be interrupted while ``re`` runs (it holds the GIL), so one catalogue
line could stall the daemon's loop. RE2 (google-re2) builds an automaton instead: no input
makes it slower than linear. The price is its syntax: no backreferences, no lookaround.
Those are refused when the catalogue loads, with a sentence that says why (docs/probes.md).
"""

from __future__ import annotations

import re
from typing import Protocol

SYNTAX_HINT = "svcorch uses RE2 syntax, which matches in linear time (see docs/probes.md)"

# RE2's complaint (its words name the construct) -> what we tell people used to Python's re
_UNSUPPORTED = (
    (re.compile(r"escape sequence: \\[1-9g]|operator: \(\?P$"), "backreferences are not supported"),
    (re.compile(r"operator: \(\?<?[=!]"), "lookahead and lookbehind are not supported"),
    (re.compile(r"escape sequence: \\Z"), r"\Z is not supported (RE2 spells it \z)"),
    (
        re.compile(r"operator: \(\?>|repetition operator: .*\+$"),
        "atomic groups and possessive repeats are not supported",
    ),
    (re.compile(r"operator: \(\?[a-zA-Z]*[^imsU)]"), "only the flags i, m, s and U are supported"),
)


class Pattern(Protocol):
    """A compiled pattern: ``search`` answers whether (and where) the text matches."""

    @property
    def pattern(self) -> str: ...

    def search(self, text: str) -> object | None: ...


def compile_pattern(pattern: str) -> Pattern:
    """The compiled pattern, or ``ValueError`` saying in one sentence what is wrong."""
    # imported on first use: `svcorch --help` and catalogues without patterns never load it
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would print its own complaint on stderr
    try:
        compiled: Pattern = re2.compile(pattern, options=options)
    except re2.error as exc:
        raise ValueError(_explain(exc)) from None
    return compiled


def _explain(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else str(exc)
    if isinstance(reason, bytes):
        reason = reason.decode(errors="replace")
    for complaint, words in _UNSUPPORTED:
        if complaint.search(reason):
            return f"{words}; {SYNTAX_HINT}"
    return f"{reason}; {SYNTAX_HINT}"
