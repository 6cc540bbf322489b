"""Interpolation (compose's forms) and dotenv parsing."""

from __future__ import annotations

import pytest

from svcorch.interpolate import InterpolationError, interpolate, parse_dotenv

ENV = {"SET": "value", "EMPTY": "", "PORT": "6379", "HOST": "db"}


def expand(text: str, env: dict[str, str] | None = None) -> str:
    return interpolate(text, (ENV if env is None else env).get)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("${SET}", "value"),
        ("$SET", "value"),
        ("$SET/x and ${SET}y", "value/x and valuey"),
        ("${EMPTY}", ""),
        # :- unset or empty -> default; - only unset
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${SET:-d}", "value"),
        ("${UNSET-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET:-}", ""),
        # :+ set and non-empty -> alternative; + set (even empty)
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${UNSET:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        # required forms pass through a set value
        ("${SET:?must be set}", "value"),
        ("${EMPTY?must be set}", ""),
        # $$ is a literal $, never the start of a variable
        ("$$", "$"),
        ("$${SET}", "${SET}"),
        ("cost: $$5", "cost: $5"),
        ("price $5 and $", "price $5 and $"),
        # defaults may hold variables, defaults, and braces of their own
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${UNSET:-redis://${HOST}:${PORT}/0}", "redis://db:6379/0"),
        ("${UNSET:-{a}}", "{a}"),
        ("conf.${UNSET:-development}.${HOST:-x}", "conf.development.db"),
    ],
)
def test_every_form(text: str, expected: str) -> None:
    assert expand(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "${MISSING}",
            "variable MISSING is not set (used in ${MISSING}); set it in the environment or"
            " env_file, or give a default: ${MISSING:-default}",
        ),
        ("a $MISSING b", "variable MISSING is not set (used in $MISSING)"),
        ("${MISSING:?set it in .env}", "${MISSING:?set it in .env} — set it in .env"),
        ("${EMPTY:?set it in .env}", "${EMPTY:?set it in .env} — set it in .env"),
        ("${MISSING?needed}", "${MISSING?needed} — needed"),
        ("${MISSING:?}", "${MISSING:?} — MISSING is required"),
        ("${MISSING:?need ${HOST}}", "${MISSING:?need ${HOST}} — need db"),
        ("x ${SET", "unclosed '${' in 'x ${SET'"),
        ("${UNSET:-${SET}", "unclosed '${' in '${UNSET:-${SET}'"),
        ("${1BAD}", "invalid variable name in '${1BAD}'"),
        ("${}", "invalid variable name in '${}'"),
        ("${SET:x}", "invalid modifier ':x' in ${SET:x}"),
        ("${UNSET:-${INNER_MISSING}}", "variable INNER_MISSING is not set"),
    ],
)
def test_errors_name_the_variable(text: str, message: str) -> None:
    with pytest.raises(InterpolationError) as caught:
        expand(text)
    assert str(caught.value).startswith(message)


def test_a_default_that_is_not_needed_is_not_expanded() -> None:
    # the default names an unset variable, but SET is set: no error
    assert expand("${SET:-${MISSING}}") == "value"


def test_lookup_is_called_only_for_used_names() -> None:
    asked: list[str] = []

    def lookup(name: str) -> str | None:
        asked.append(name)
        return "x"

    assert interpolate("no variables here", lookup) == "no variables here"
    assert interpolate("$A ${B:-c}", lookup) == "x x"
    assert asked == ["A", "B"]


# -- dotenv -------------------------------------------------------------------------------------


def test_dotenv_forms() -> None:
    text = "\n".join(
        [
            "# a comment",
            "",
            "PLAIN=value",
            "export EXPORTED=yes",
            "  SPACED  =  padded  ",
            "EQUALS=a=b=c",
            "EMPTY=",
            'DOUBLE="two words # not a comment"',
            'ESCAPES="line1\\nline2 \\"quoted\\""',
            "SINGLE='literal $HOME \\n'",
            "COMMENTED=value # trailing comment",
            "HASH=a#b",
            "URL=amqp://guest:guest@127.0.0.1:5672//",
        ]
    )
    values, problems = parse_dotenv(text)
    assert problems == []
    assert values == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SPACED": "padded",
        "EQUALS": "a=b=c",
        "EMPTY": "",
        "DOUBLE": "two words # not a comment",
        "ESCAPES": 'line1\nline2 "quoted"',
        "SINGLE": "literal $HOME \\n",
        "COMMENTED": "value",
        "HASH": "a#b",
        "URL": "amqp://guest:guest@127.0.0.1:5672//",
    }


def test_dotenv_later_lines_win_and_bad_lines_are_reported_by_number() -> None:
    values, problems = parse_dotenv("A=1\nnot an assignment\nA=2\n1BAD=x\n")
    assert values == {"A": "2"}
    assert problems == [
        (2, "expected KEY=value, got 'not an assignment'"),
        (4, "expected KEY=value, got '1BAD=x'"),
    ]
