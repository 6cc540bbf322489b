"""YAML loading that keeps source positions and refuses duplicate keys.

PyYAML's composer gives nodes with marks; we construct plain Python values from them ourselves,
recording where each value (and each mapping key) stands, so every later error can point at
``file:line:col``. PyYAML silently keeps the last duplicate key: we report it instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml

from svcorch.errors import Problem

Path_ = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"

try:  # the C composer is several times faster on large catalogues
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader


class Mark(NamedTuple):
    # a tuple, not a frozen dataclass: one is made per node and key (80,000 for 2,000 services)
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class Document:
    """The parsed data plus where each part of it came from."""

    data: Any
    values: dict[Path_, Mark] = field(default_factory=dict)
    keys: dict[Path_, Mark] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def locate(self, path: Path_, *, key: bool = False) -> Mark | None:
        """The closest recorded position for ``path``: the key itself or nearest ancestor."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            mark = table.get(probe) or self.values.get(probe)
            if mark is not None:
                return mark
            probe = probe[:-1]
        return self.values.get(())


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, source: str, doc: Document) -> None:
        self.loader = loader
        self.source = source
        self.doc = doc

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.doc.values[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag == _STR_TAG:
            # most scalars are strings, already complete in the node: skip the constructor's
            # bookkeeping, a third of the load time of a large catalogue
            return node.value
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node, merged in _entries(node):
            key = self._scalar(key_node)
            if not isinstance(key, str | int | float | bool) or key is None:
                if not merged:  # a merged one was reported where its mapping is written
                    self._problem("mapping keys must be plain scalars", key_node)
                continue
            key_text = str(key) if not isinstance(key, str) else key
            if key_text in result:
                # the mapping's own keys come first: a merged key that is already there was
                # overridden (as YAML's merge key says), an own key is written twice
                if not merged:
                    self._problem(f"duplicate key {key_text!r}", key_node)
                continue
            child = (*path, key_text)
            self.doc.keys[child] = _mark(key_node)
            result[key_text] = self.build(value_node, child)
        return result

    def _problem(self, message: str, node: yaml.Node) -> None:
        mark = _mark(node)
        self.doc.problems.append(Problem(self.source, message, mark.line, mark.column))


def _entries(node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node, bool]]:
    """The mapping's own entries, then those merged in with ``<<`` (flagged True), in the order
    of precedence the YAML merge key specifies: own keys, then the first merged mapping first.

    PyYAML's ``flatten_mapping`` is not used: it mutates the shared anchor nodes and the order
    it leaves merged entries in has changed between PyYAML releases.
    """
    own: list[tuple[yaml.Node, yaml.Node, bool]] = []
    merged: list[tuple[yaml.Node, yaml.Node, bool]] = []
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE_TAG:
            own.append((key_node, value_node, False))
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"expected a mapping or list of mappings for merging, but found {source.id}",
                    source.start_mark,
                )
            merged.extend((key, value, True) for key, value, _ in _entries(source))
    return own + merged


def load(text: str, source: str) -> Document:
    """Parse one YAML document. Syntax errors become a located problem, never an exception."""
    return _load_with(_Loader, text, source)


def _load_with(loader_class: type[yaml.SafeLoader], text: str, source: str) -> Document:
    loader = loader_class(text)
    doc = Document(data=None)
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.data = _Builder(loader, source, doc).build(node, ())
    except yaml.MarkedYAMLError as exc:
        if loader_class is not yaml.SafeLoader:
            # the pure-Python parser words its errors better ("... not allowed here")
            return _load_with(yaml.SafeLoader, text, source)
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "malformed YAML"
        if mark is None:
            doc.problems.append(Problem(source, f"invalid YAML: {reason}"))
        else:
            doc.problems.append(
                Problem(source, f"invalid YAML: {reason}", mark.line + 1, mark.column + 1)
            )
        doc.data = None
    except yaml.YAMLError as exc:
        doc.problems.append(Problem(source, f"invalid YAML: {exc}"))
        doc.data = None
    finally:
        loader.dispose()
    return doc
