"""``${VAR}`` interpolation in catalogue strings, with compose's forms.

``${VAR}``, ``$VAR``, ``${VAR:-default}`` (unset or empty), ``${VAR-default}`` (unset),
``${VAR:?message}`` / ``${VAR?message}`` (required), ``${VAR:+alt}`` / ``${VAR+alt}``, and
``$$`` for a literal ``$``. Defaults may themselves contain ``${...}``.

Bounded: braces nest at most ``MAX_NESTING`` deep (each level is one more pass over its text,
and one more Python frame), and a result may be at most ``limit`` characters long, so neither a
50,000-deep default nor ``${A}`` written many times over a long value can hold up the loader.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from svcorch.limits import env_entry_refusal, os_refusal

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMENT = re.compile(r"\s#")  # an unquoted value's comment starts at whitespace then '#'

MAX_NESTING = 32  # braces inside ${...}: ${A:-${B:-${C}}} nests 3 deep
MAX_LENGTH = 64 * 1024  # characters of one value once its variables are substituted

Lookup = Callable[[str], str | None]


class InterpolationError(ValueError):
    """An unset required variable, malformed ``${...}`` syntax, or a bound passed.

    ``built``: how many characters the expansion had produced when it stopped, so a caller
    can count the work against a budget of its own.
    """

    def __init__(self, message: str, built: int = 0) -> None:
        super().__init__(message)
        self.built = built


def interpolate(text: str, lookup: Lookup, *, limit: int = MAX_LENGTH) -> str:
    """Expand every variable in ``text``; raise InterpolationError naming the variable, or
    saying which bound (nesting, ``limit`` characters of result) the text goes past."""
    if "$" not in text:
        return text
    return _interpolate(text, lookup, limit, 0)


def _interpolate(text: str, lookup: Lookup, limit: int, nesting: int) -> str:
    out: list[str] = []
    try:
        return _expand_all(text, lookup, limit, nesting, out)
    except InterpolationError as exc:
        exc.built += sum(len(piece) for piece in out)  # the work done before it stopped
        raise


def _expand_all(text: str, lookup: Lookup, limit: int, nesting: int, out: list[str]) -> str:
    """The loop of ``_interpolate``; appends to ``out`` as it goes, so a failure can say how
    much it had built."""
    length = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            nxt = text.find("$", i)
            end = len(text) if nxt == -1 else nxt
            piece = text[i:end]
            i = end
        else:
            following = text[i + 1 : i + 2]
            if following == "$":
                piece = "$"
                i += 2
            elif following == "{":
                close = _matching_brace(text, i + 1, nesting)
                piece = _expand(text[i + 2 : close], lookup, limit, nesting + 1)
                i = close + 1
            elif match := _NAME.match(text, i + 1):
                piece = _value(match.group(0), lookup, text[i : match.end()])
                i = match.end()
            else:
                piece = "$"  # a lone '$' (e.g. at the end, or '$1') stays as written
                i += 1
        length += len(piece)
        if length > limit:
            raise InterpolationError(
                f"longer than {limit:,} characters once variables are substituted"
                f" (in {_shorten(text)})",
                built=len(piece),
            )
        out.append(piece)
    return "".join(out)


def _matching_brace(text: str, open_at: int, nesting: int) -> int:
    depth = 0
    for index in range(open_at, len(text)):
        if text[index] == "{":
            depth += 1
            if nesting + depth > MAX_NESTING:
                raise InterpolationError(
                    f"braces nested more than {MAX_NESTING} deep in {_shorten(text)}"
                )
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise InterpolationError(f"unclosed '${{' in {_shorten(text)}")


def _shorten(text: str, limit: int = 60) -> str:
    """``text`` quoted, cut to ``limit`` characters: messages stay one readable line."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3]) + "..."


def _value(name: str, lookup: Lookup, expression: str) -> str:
    value = lookup(name)
    if value is None:
        name, expression = _clip(name), _clip(expression)
        raise InterpolationError(
            f"variable {name} is not set (used in {expression}); set it in the environment"
            f" or env_file, or give a default: ${{{name}:-default}}"
        )
    return value


def _clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, for messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expand(body: str, lookup: Lookup, limit: int, nesting: int) -> str:
    match = _NAME.match(body)
    if match is None:
        raise InterpolationError(f"invalid variable name in '${{{_clip(body)}}}'")
    name = match.group(0)
    rest = body[match.end() :]
    expression = f"${{{_clip(body)}}}"
    if not rest:
        return _value(name, lookup, expression)
    value = lookup(name)
    for operator in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(operator):
            argument = rest[len(operator) :]
            break
    else:
        raise InterpolationError(f"invalid modifier {_shorten(rest)} in {expression}")
    missing = value is None or (operator.startswith(":") and value == "")
    if operator in (":-", "-"):
        return _interpolate(argument, lookup, limit, nesting) if missing else str(value)
    if operator in (":+", "+"):
        return "" if missing else _interpolate(argument, lookup, limit, nesting)
    if missing:
        message = (
            _interpolate(argument, lookup, limit, nesting) if argument else f"{name} is required"
        )
        raise InterpolationError(f"{expression} — {message}")
    return str(value)


def parse_dotenv(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """Parse dotenv text: ``KEY=value``, ``export KEY=value``, quotes, ``#`` comments.

    Returns the variables and a list of (line number, problem) for lines that are not valid.
    """
    values: dict[str, str] = {}
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _NAME.fullmatch(key):
            problems.append((number, f"expected KEY=value, got {raw.strip()!r}"))
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        elif comment := _COMMENT.search(value):
            value = value[: comment.start()].rstrip()
        refusal = os_refusal(value)
        if refusal is not None:
            problems.append((number, f"{key}: the value {refusal}"))
            continue
        refusal = env_entry_refusal(key, value)
        if refusal is not None:
            problems.append((number, f"{key}=value {refusal}"))
            continue
        values[key] = value
    return values, problems
