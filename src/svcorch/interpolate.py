"""``${VAR}`` interpolation in catalogue strings, with compose's forms.

``${VAR}``, ``$VAR``, ``${VAR:-default}`` (unset or empty), ``${VAR-default}`` (unset),
``${VAR:?message}`` / ``${VAR?message}`` (required), ``${VAR:+alt}`` / ``${VAR+alt}``, and
``$$`` for a literal ``$``. Defaults may themselves contain ``${...}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Lookup = Callable[[str], str | None]


class InterpolationError(ValueError):
    """An unset required variable, or malformed ``${...}`` syntax."""


def interpolate(text: str, lookup: Lookup) -> str:
    """Expand every variable in ``text``; raise InterpolationError naming the variable."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            nxt = text.find("$", i)
            end = len(text) if nxt == -1 else nxt
            out.append(text[i:end])
            i = end
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            close = _matching_brace(text, i + 1)
            out.append(_expand(text[i + 2 : close], lookup))
            i = close + 1
        elif match := _NAME.match(text, i + 1):
            out.append(_value(match.group(0), lookup, text[i : match.end()]))
            i = match.end()
        else:
            out.append("$")  # a lone '$' (e.g. at the end, or '$1') stays as written
            i += 1
    return "".join(out)


def _matching_brace(text: str, open_at: int) -> int:
    depth = 0
    for index in range(open_at, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise InterpolationError(f"unclosed '${{' in {text!r}")


def _value(name: str, lookup: Lookup, expression: str) -> str:
    value = lookup(name)
    if value is None:
        raise InterpolationError(
            f"variable {name} is not set (used in {expression}); set it in the environment"
            f" or env_file, or give a default: ${{{name}:-default}}"
        )
    return value


def _expand(body: str, lookup: Lookup) -> str:
    match = _NAME.match(body)
    if match is None:
        raise InterpolationError(f"invalid variable name in '${{{body}}}'")
    name = match.group(0)
    rest = body[match.end() :]
    expression = f"${{{body}}}"
    if not rest:
        return _value(name, lookup, expression)
    value = lookup(name)
    for operator in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(operator):
            argument = rest[len(operator) :]
            break
    else:
        raise InterpolationError(f"invalid modifier {rest!r} in {expression}")
    missing = value is None or (operator.startswith(":") and value == "")
    if operator in (":-", "-"):
        return interpolate(argument, lookup) if missing else str(value)
    if operator in (":+", "+"):
        return "" if missing else interpolate(argument, lookup)
    if missing:
        message = interpolate(argument, lookup) if argument else f"{name} is required"
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
        else:
            value = re.sub(r"\s+#.*$", "", value)
        values[key] = value
    return values, problems
