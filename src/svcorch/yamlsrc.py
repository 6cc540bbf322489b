"""YAML loading that keeps source positions, refuses duplicate keys and is bounded.

We build plain Python values straight from PyYAML's event stream, recording where each value
(and each mapping key) stands, so every later error can point at ``file:line:col``. PyYAML
silently keeps the last duplicate key: we report it instead.

Events, not PyYAML's composer, because the composer is neither bounded nor flat: its node
graph costs some 300 bytes per value before we see any of it, it recurses once per level of
nesting (a 1,000-deep list is a RecursionError), and a walk of its graph expands every alias
(a 400-byte "billion laughs" took gigabytes). Here the work is one loop with an explicit stack,
an alias shares the value it names (as PyYAML's own constructor does) and is charged what it
would expand to, so a bomb is refused at the alias that crosses the limit, in time
proportional to the file. Positions are not copied for an alias either: the document notes
where it points, and ``locate`` follows that.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml

from svcorch.errors import Problem

Path_ = tuple[str | int, ...]

MAX_DEPTH = 64  # mappings and lists inside each other; a catalogue needs about 8
MAX_VALUES = 150_000  # values and keys, aliases expanded; 2,000 services hold 83,000
MAX_SCALAR = 64 * 1024  # characters in one value or key
MAX_TEXT = 4 * 1024 * 1024  # characters of all values and keys, aliases expanded; 2,000
# services hold 0.6 million
# below this size a syntax error is parsed again by the pure-Python parser, for its wording
_REWORD_BELOW = 64 * 1024

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
# the first integer Python will not print (it has one digit more than int_max_str_digits)
_INT_LIMIT = 10 ** sys.get_int_max_str_digits()
# path parts no key or list index can be (keys are strings): where values that are not part
# of the data are recorded, so an anchor defined inside one can still be located
_DROPPED = -1  # the value of a duplicate key, a key that is not a scalar
_MERGED = -2  # what a `<<` key merges in
_MAX_HOPS = 1000
_TOO_DEEP = (
    f"mappings and lists nested more than {MAX_DEPTH} deep; svcorch reads at most {MAX_DEPTH}"
    " levels"
)  # aliases followed by `locate`; each leads to an earlier anchor

try:  # the C parser is several times faster on large catalogues
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader


class Mark(NamedTuple):
    # a tuple, not a frozen dataclass: one is made per value and key (85,000 for 2,000 services)
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class Document:
    """The parsed data plus where each part of it came from."""

    data: Any
    values: dict[Path_, Mark] = field(default_factory=dict)
    keys: dict[Path_, Mark] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    # a path whose value is written elsewhere (an alias, a merged key) -> where it is written
    aliases: dict[Path_, Path_] = field(default_factory=dict)

    def locate(self, path: Path_, *, key: bool = False) -> Mark | None:
        """The closest recorded position for ``path``: the key itself or nearest ancestor.

        Inside an alias, the position is the one written in the anchor's definition.
        """
        table = self.keys if key else self.values
        probe = self.written_at(tuple(path))
        while probe:
            mark = table.get(probe) or self.values.get(probe)
            if mark is not None:
                return mark
            probe = probe[:-1]
        return self.values.get(())

    def has_key(self, path: Path_) -> bool:
        """Whether a mapping key is written for ``path`` (here, or where an alias points)."""
        return self.written_at(tuple(path)) in self.keys

    def written_at(self, path: Path_) -> Path_:
        """Where the value at ``path`` is written: the path itself, or through aliases and
        merge keys, the path in the anchor's (or merged mapping's) definition."""
        if not self.aliases:
            return path
        for _ in range(_MAX_HOPS):
            for depth in range(len(path), 0, -1):
                target = self.aliases.get(path[:depth])
                # an alias itself keeps its own position (where it is used); inside, the anchor's
                if target is not None and (depth < len(path) or path not in self.values):
                    path = (*target, *path[depth:])
                    break
            else:
                return path
        return path


class _Stop(Exception):
    """Ends the build: the document cannot be read (its reason and position attached)."""

    def __init__(self, message: str, mark: Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


_OPEN = object()  # an anchor whose value is still being built: an alias to it is recursive
_NO_KEY = object()  # a mapping awaiting its next key


@dataclass
class _Anchor:
    value: Any
    path: Path_  # where it is defined (and recorded)
    values: int  # what one alias to it costs against MAX_VALUES and MAX_TEXT
    text: int


@dataclass(slots=True)
class _Frame:
    """A mapping or list being built."""

    path: Path_
    mark: Mark
    container: dict[Any, Any] | list[Any]
    is_list: bool
    anchor: str | None
    values_before: int
    text_before: int
    merging: bool = False  # this value is what a `<<` key merges in
    origins: list[Path_] = field(default_factory=list)  # of a merged list's items
    # mappings only
    key: Any = _NO_KEY  # the key whose value comes next; None when that value is dropped
    key_path: Path_ = ()  # where a key (and a dropped value) is recorded
    child_path: Path_ = ()
    child_merge: bool = False
    merges: list[tuple[dict[Any, Any], Path_]] = field(default_factory=list)


def _mark(event: Any) -> Mark:
    return Mark(event.start_mark.line + 1, event.start_mark.column + 1)


# the first characters of a plain scalar that PyYAML may resolve to something other than a
# string (a number, a boolean, null, a date, `<<`): any other plain scalar is a string
_RESOLVABLE = frozenset(k for k in yaml.SafeLoader.yaml_implicit_resolvers if k)


class _Builder:
    """Values from events, with their positions, within MAX_DEPTH, MAX_VALUES and MAX_TEXT."""

    def __init__(self, loader: yaml.SafeLoader, source: str, doc: Document) -> None:
        # Any: PyYAML's parser and resolver methods are untyped
        self.loader: Any = loader
        self.source = source
        self.doc = doc
        self.stack: list[_Frame] = []
        self.anchors: dict[str, Any] = {}
        self.values = 0
        self.text = 0

    def build(self) -> Any:
        """The single document of the stream (None when there is none)."""
        self.loader.get_event()  # stream start
        if self.loader.check_event(yaml.StreamEndEvent):
            return None
        self.loader.get_event()  # document start
        root = self._document()
        self.loader.get_event()  # document end
        if not self.loader.check_event(yaml.StreamEndEvent):
            extra = self.loader.get_event()
            raise _Stop(
                "invalid YAML: expected a single document, but found another one", _mark(extra)
            )
        return root

    def _document(self) -> Any:
        # once per value and key (85,000 times for 2,000 services): kept to few calls
        get_event = self.loader.get_event
        stack = self.stack
        scalar_event = yaml.ScalarEvent
        while True:
            event = get_event()
            path = self._next_path() if stack else ()
            tag = None
            origin = path
            if type(event) is scalar_event:
                value, mark, tag = self._scalar(event, path)
            elif isinstance(event, yaml.AliasEvent):
                mark = _mark(event)
                value, origin = self._alias(event, path)
            elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                self._open(event, path)
                continue
            else:  # the end of a mapping or a list
                mark, origin = stack[-1].mark, stack[-1].path
                value = self._close()
            if not stack:
                return value
            self._place(stack[-1], value, mark, tag, origin)

    def _next_path(self) -> Path_:
        """The path the next value is recorded at."""
        frame = self.stack[-1]
        if frame.is_list:
            return (*frame.path, len(frame.container))
        if frame.key is _NO_KEY:
            return frame.key_path  # a key: _take_key records its position
        return frame.child_path

    def _place(self, frame: _Frame, value: Any, mark: Mark, tag: str | None, origin: Path_) -> None:
        """Put a finished value in its list or mapping (or take it as the next key)."""
        if frame.is_list:
            frame.container.append(value)  # type: ignore[union-attr]
            if frame.merging:
                frame.origins.append(origin)
        elif frame.key is _NO_KEY:
            self._take_key(frame, value, mark, tag)
        elif frame.child_merge:
            self._merge_source(frame, value, mark, origin)
        else:
            if frame.key is not None:
                frame.container[frame.key] = value
            frame.key = _NO_KEY

    def _take_key(self, frame: _Frame, key: Any, mark: Mark, tag: str | None) -> None:
        """Where the value after this key goes: under it, merged in, or dropped (None)."""
        frame.key, frame.child_merge = None, False
        frame.child_path = frame.key_path
        if tag == _MERGE_TAG:
            frame.child_merge = True
            frame.child_path = (*frame.path, _MERGED, len(frame.merges))
            return
        if type(key) is str:
            text = key
        elif isinstance(key, int | float):  # bool is an int
            text = str(key)
        else:
            self._problem("mapping keys must be plain scalars", mark)
            return
        if text in frame.container:
            self._problem(f"duplicate key {text!r}", mark)
            return
        frame.key = text
        frame.child_path = (*frame.path, text)
        self.doc.keys[frame.child_path] = mark

    # -- values --------------------------------------------------------------------------------

    def _scalar(self, event: Any, path: Path_) -> tuple[Any, Mark, str]:
        """The value, position and tag of a scalar, counted against the limits."""
        text = event.value
        self.values += 1
        self.text += len(text)
        if self.values > MAX_VALUES or self.text > MAX_TEXT:
            self._over(event, None)
        if len(text) > MAX_SCALAR:
            self._too_long(event)
        tag = event.tag
        if tag is None and (not event.implicit[0] or (text and text[0] not in _RESOLVABLE)):
            tag = _STR_TAG  # what resolve() would say, without its regular expressions
        elif (
            tag is None and text.isdecimal() and text.isascii() and (text == "0" or text[0] != "0")
        ):
            tag = _INT_TAG  # the same for a plain decimal (0755 is octal in YAML 1.1)
        elif tag is None or tag == "!":
            tag = str(self.loader.resolve(yaml.ScalarNode, text, event.implicit))
        if tag == _STR_TAG:
            value: Any = text
        elif tag == _INT_TAG and event.tag is None and text.isdecimal() and len(text) < 20:
            value = int(text)
        else:
            value = self._construct(event, tag)
        mark = Mark(event.start_mark.line + 1, event.start_mark.column + 1)
        if path[-1:] != (_DROPPED,):  # a key's position goes in `keys`, by _take_key
            self.doc.values[path] = mark
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(value, path, 1, len(text))
        return value, mark, tag

    def _construct(self, event: yaml.ScalarEvent, tag: str) -> Any:
        """A scalar that is not a string: an int, a bool, null, a date, ``<<``..."""
        if tag == _MERGE_TAG:
            return "<<"
        start: Any = event.start_mark  # libyaml's mark type, which PyYAML's stubs do not know
        node = yaml.ScalarNode(tag, event.value, start, start, event.style)
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise  # a tag it has no constructor for: reported like any YAML error
        except Exception as exc:  # an int too long, a 30th of February, `!!bool maybe`
            raise _Stop(_unreadable(event.value, tag, exc), _mark(event)) from None
        finally:
            self.loader.constructed_objects.clear()  # one entry per value would add up
        if isinstance(value, int) and abs(value) >= _INT_LIMIT:
            # 0x and 0o forms escape Python's limit on reading digits, not on printing them:
            # every message that showed this number would fail
            limit = sys.get_int_max_str_digits()
            raise _Stop(
                f"invalid YAML: an integer of more than {limit:,} digits; svcorch reads at most"
                f" {limit:,}",
                _mark(event),
            )
        return value

    def _too_long(self, event: yaml.ScalarEvent) -> None:
        raise _Stop(
            f"a value of {len(event.value):,} characters; svcorch reads at most"
            f" {MAX_SCALAR:,} in one value",
            _mark(event),
        )

    def _alias(self, event: yaml.AliasEvent, path: Path_) -> tuple[Any, Path_]:
        """The anchored value itself (shared, not copied), charged what it would expand to;
        and the path of the anchor, which ``locate`` follows from here."""
        name = str(event.anchor)
        anchor = self.anchors.get(name)
        if anchor is None:
            raise _Stop(f"invalid YAML: found undefined alias {name!r}", _mark(event))
        if anchor is _OPEN:
            raise _Stop(
                f"invalid YAML: alias *{name} is used inside its own anchor &{name}"
                " (a recursive alias)",
                _mark(event),
            )
        assert isinstance(anchor, _Anchor)
        self.values += anchor.values
        self.text += anchor.text
        if self.values > MAX_VALUES or self.text > MAX_TEXT:
            self._over(event, name)
        self.doc.values[path] = _mark(event)
        self.doc.aliases[path] = anchor.path
        return anchor.value, anchor.path

    def _open(self, event: yaml.SequenceStartEvent | yaml.MappingStartEvent, path: Path_) -> None:
        mark = _mark(event)
        parent = self.stack[-1] if self.stack else None
        merging = parent is not None and not parent.is_list and parent.child_merge
        if len(self.stack) >= MAX_DEPTH:
            raise _Stop(_TOO_DEEP, mark)
        values_before, text_before = self.values, self.text
        self.values += 1
        if self.values > MAX_VALUES:
            self._over(event, None)
        if event.anchor is not None:
            self.anchors[event.anchor] = _OPEN
        self.doc.values[path] = mark
        container: dict[Any, Any] | list[Any] = (
            {} if isinstance(event, yaml.MappingStartEvent) else []
        )
        frame = _Frame(
            path,
            mark,
            container,
            isinstance(container, list),
            event.anchor,
            values_before,
            text_before,
            merging,
            key_path=(*path, _DROPPED),
        )
        self.stack.append(frame)

    def _close(self) -> Any:
        frame = self.stack.pop()
        if frame.merges:
            self._apply_merges(frame)
        if frame.anchor is not None:
            self.anchors[frame.anchor] = _Anchor(
                frame.container,
                frame.path,
                self.values - frame.values_before,
                self.text - frame.text_before,
            )
        if frame.merging and isinstance(frame.container, list):
            return _MergeList(frame.container, frame.origins)
        return frame.container

    # -- merge keys ----------------------------------------------------------------------------

    def _merge_source(self, frame: _Frame, value: Any, mark: Mark, origin: Path_) -> None:
        """Keep what a ``<<`` key merges in: a mapping or a list of them, else an error."""
        frame.key = _NO_KEY
        if isinstance(value, dict):
            frame.merges.append((value, origin))
            return
        if isinstance(value, _MergeList) and all(isinstance(v, dict) for v in value.items):
            frame.merges.extend(zip(value.items, value.origins, strict=True))
            return
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):  # an alias
            frame.merges.extend((item, (*origin, i)) for i, item in enumerate(value))
            return
        found = "a scalar" if not isinstance(value, list | _MergeList) else "a list of other values"
        raise _Stop(
            "invalid YAML: expected a mapping or list of mappings for merging, but found " + found,
            mark,
        )

    def _apply_merges(self, frame: _Frame) -> None:
        """Keys written in the mapping win over merged ones, and the first merged mapping
        over later ones, as YAML's merge key specifies."""
        assert isinstance(frame.container, dict)
        for source, origin in frame.merges:
            for key, value in source.items():
                if key not in frame.container:
                    frame.container[key] = value
                    self.doc.aliases[(*frame.path, key)] = (*origin, key)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _over(self, event: yaml.Event, alias: str | None) -> None:
        """Stop: the document went past MAX_VALUES or MAX_TEXT here."""
        what = (
            f"more than {MAX_VALUES:,} values and keys"
            if self.values > MAX_VALUES
            else f"more than {MAX_TEXT // (1024 * 1024)} MiB of text"
        )
        if alias is not None:
            raise _Stop(
                f"alias *{alias} expands the document to {what} (an alias bomb?)", _mark(event)
            )
        raise _Stop(f"the document holds {what}; svcorch reads at most that", _mark(event))

    def _problem(self, message: str, mark: Mark) -> None:
        self.doc.problems.append(Problem(self.source, message, mark.line, mark.column))


@dataclass
class _MergeList:
    """A list written as the value of a ``<<`` key, with where each item is written."""

    items: list[Any]
    origins: list[Path_]


def _unreadable(value: str, tag: str, exc: Exception) -> str:
    """Why a scalar PyYAML resolved (an int, a date) cannot become a value."""
    digits = sum(c.isdigit() for c in value)
    if tag == _INT_TAG and digits > sys.get_int_max_str_digits():
        limit = sys.get_int_max_str_digits()
        return f"invalid YAML: an integer of {digits:,} digits; svcorch reads at most {limit:,}"
    shown = value if len(value) <= 40 else value[:37] + "..."
    kind = tag.rsplit(":", 1)[-1]
    # PyYAML's constructors trust its resolver: an explicit tag on the wrong text fails
    # with a KeyError or AttributeError, whose words mean nothing here
    reason = f": {exc}" if isinstance(exc, ValueError | OverflowError) else ""
    article = "an" if kind[:1] in ("a", "e", "i", "o", "u") else "a"
    return f"invalid YAML: cannot read {shown!r} as {article} {kind}{reason}"


def load(text: str, source: str) -> Document:
    """Parse one YAML document. Syntax errors and exceeded limits become a located problem,
    never an exception."""
    return _load_with(_Loader, text, source)


def _load_with(loader_class: type[yaml.SafeLoader], text: str, source: str) -> Document:
    doc = Document(data=None)
    loader: yaml.SafeLoader | None = None
    try:
        loader = loader_class(text)
        doc.data = _Builder(loader, source, doc).build()
    except _Stop as stop:
        doc.problems.append(_problem(source, stop.message, stop.mark))
        doc.data = None
    except yaml.MarkedYAMLError as exc:
        if loader_class is not yaml.SafeLoader and len(text) < _REWORD_BELOW:
            # the pure-Python parser words its errors better ("... not allowed here")
            return _load_with(yaml.SafeLoader, text, source)
        mark = exc.problem_mark or exc.context_mark
        reason = f"invalid YAML: {exc.problem or exc.context or 'malformed YAML'}"
        if "maximum nesting depth" in reason:  # libyaml's own bound (1,000), met first
            reason = _TOO_DEEP
        where = None if mark is None else Mark(mark.line + 1, mark.column + 1)
        doc.problems = [_problem(source, reason, where)]
        doc.data = None
    except yaml.reader.ReaderError as exc:
        c_parser = loader_class is not yaml.SafeLoader
        doc.problems = [_reader_problem(source, text, exc, c_parser=c_parser)]
        doc.data = None
    except yaml.YAMLError as exc:
        doc.problems = [_problem(source, f"invalid YAML: {exc}", None)]
        doc.data = None
    finally:
        if loader is not None:
            loader.dispose()
    return doc


def _problem(source: str, message: str, mark: Mark | None) -> Problem:
    if mark is None:
        return Problem(source, message)
    return Problem(source, message, mark.line, mark.column)


def _reader_problem(
    source: str, text: str, exc: yaml.reader.ReaderError, *, c_parser: bool
) -> Problem:
    """A character YAML refuses, on one located line (PyYAML gives an offset, on two)."""
    position = exc.position
    if c_parser:  # libyaml counts bytes of the UTF-8 text, not characters
        position = len(text.encode("utf-8", "surrogatepass")[:position].decode("utf-8", "ignore"))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
    return Problem(
        source, f"invalid YAML: character U+{code:04X} is not allowed ({exc.reason})", line, column
    )
