"""Read supervisord's INI dialect as supervisord does, keeping where every value came from.

supervisord reads its file with Python's RawConfigParser, ``strict=False``: a key or a
section given twice is not an error, the last value wins; ``;`` and ``#`` start a comment at
the start of a line or after whitespace; an indented line continues the value above; keys are
lowercased. ``[include] files =`` globs, relative to the main file's folder, add files read
into the same sections (an ``[include]`` inside an included file is not followed). This reader
does the same, records the file and line of every section and key, and reports each
duplicate as a warning instead of dropping the first value silently.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from svcorch.errors import UsageError


@dataclass(frozen=True)
class Origin:
    """Where a section or a key is: the file as the user named it (or as an include's glob
    joined it to that), and the line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Section:
    name: str
    origin: Origin
    values: dict[str, str] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)

    def at(self, key: str | None = None) -> Origin:
        """The key's line, or the section header's when the key is absent."""
        if key is not None and key in self.origins:
            return self.origins[key]
        return self.origin


@dataclass
class Config:
    """All sections of the main file and its includes, in the order first seen."""

    main: str
    sections: dict[str, Section] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    warnings: list[tuple[Origin, str | None, str]] = field(default_factory=list)

    def warn(self, origin: Origin, section: str | None, message: str) -> None:
        self.warnings.append((origin, section, message))


_SECTION = re.compile(r"\[(?P<header>.+)\]")  # configparser's own header syntax
_OPTION = re.compile(r"(?P<key>.*?)\s*[=:]\s*(?P<value>.*)$")
_INLINE_COMMENT = re.compile(r"\s[;#]")
_ENV = re.compile(r"%\(ENV_(?P<name>[^)]*)\)s")

ReadFile = Callable[[str], str]


def read_text(path: str) -> str:
    with open(path, encoding="utf-8", newline="") as handle:
        return handle.read()


def load(
    text: str,
    source: str,
    *,
    read: ReadFile = read_text,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The main file ``text`` (named ``source``) and the files its ``[include]`` names.
    Raises UsageError (one located line) if a file is not INI syntax."""
    config = Config(main=source)
    parse(text, source, config)
    include = config.sections.get("include")
    if include is not None:
        _follow(include, config, read, os.environ if environ is None else environ)
    return config


def parse(text: str, source: str, config: Config) -> None:
    """Add ``text``'s sections to ``config``; later keys win, each repeat is a warning."""
    config.files.append(source)
    section: Section | None = None
    key: str | None = None
    key_indent = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue  # a comment line never ends a multi-line value, as in configparser
        indent = len(raw) - len(raw.lstrip())
        value = _without_comment(stripped)
        if section is not None and key is not None and indent > key_indent:
            if value:
                joined = section.values[key]
                section.values[key] = f"{joined}\n{value}" if joined else value
            continue
        origin = Origin(source, number)
        if header := _SECTION.match(value):
            section = _enter(config, header.group("header"), origin, source)
            key = None
            continue
        option = _OPTION.match(value)
        if section is None:
            raise UsageError(
                f"{origin}: not supervisord syntax: a setting before any [section]"
                if option
                else f"{origin}: not supervisord syntax: {stripped!r} is not a [section]"
            )
        if option is None:
            raise UsageError(
                f"{origin}: not supervisord syntax: {stripped!r} is neither [section] nor"
                " key = value"
            )
        key = option.group("key").strip().lower()
        key_indent = indent
        if key in section.values and not _nested_include(config, section, source):
            config.warn(
                origin,
                section.name,
                f"[{section.name}] {key} given again (first at {section.origins[key]}):"
                " the last value wins, as in supervisord",
            )
        section.values[key] = option.group("value").strip()
        section.origins[key] = origin


def _without_comment(text: str) -> str:
    match = _INLINE_COMMENT.search(text)
    return text[: match.start()].rstrip() if match else text


def _nested_include(config: Config, section: Section, source: str) -> bool:
    """An included file's ``[include]``: reported once, as not followed (``_read_included``)."""
    return section.name == "include" and source != config.main


def _enter(config: Config, name: str, origin: Origin, source: str) -> Section:
    existing = config.sections.get(name)
    if existing is None:
        config.sections[name] = Section(name, origin)
        return config.sections[name]
    if _nested_include(config, existing, source):
        return existing
    config.warn(
        origin,
        name,
        f"[{name}] appears again (first at {existing.origin}): merged, the later keys win,"
        " as in supervisord",
    )
    return existing


def _follow(include: Section, config: Config, read: ReadFile, environ: Mapping[str, str]) -> None:
    """Read what ``[include] files=`` names, relative to the main file's folder."""
    where = include.at("files")
    patterns = include.values.get("files", "")
    folder = os.path.dirname(config.main)
    here = folder or "."
    expanded = patterns.replace("%(here)s", here)
    for missing in sorted({m.group("name") for m in _ENV.finditer(expanded)} - set(environ)):
        config.warn(where, "include", f"[include] files: %(ENV_{missing})s is not set; empty")
    expanded = _ENV.sub(lambda m: environ.get(m.group("name"), ""), expanded)
    if not expanded.split():
        config.warn(where, "include", "[include] has no files = setting: nothing included")
    for pattern in expanded.split():
        joined = os.path.join(folder, pattern)
        matches = sorted(glob.glob(joined))
        if not matches:
            config.warn(where, "include", f"[include] files: {joined!r} matches no file")
        for path in matches:
            _read_included(path, config, read)


def _read_included(path: str, config: Config, read: ReadFile) -> None:
    if path in config.files:
        return  # two globs matching one file: supervisord would read it twice, to no effect
    try:
        text = read(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        config.warn(Origin(path, 1), None, f"included file not read: {reason}")
        return
    before = config.sections.get("include")
    files_before = before.values.get("files") if before is not None else None
    parse(text, path, config)
    after = config.sections.get("include")
    if after is not None and after.values.get("files") != files_before:
        # supervisord reads the main file's [include] only; a nested one is merged and ignored
        config.warn(
            after.at("files"),
            "include",
            "[include] inside an included file is not followed (supervisord does not either)",
        )
        if files_before is not None:
            after.values["files"] = files_before
