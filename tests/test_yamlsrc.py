"""yamlsrc: values with their positions, duplicate keys refused, syntax errors located."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from svcorch import yamlsrc
from svcorch.yamlsrc import Mark


def load(text: str) -> yamlsrc.Document:
    return yamlsrc.load(textwrap.dedent(text).lstrip("\n"), "services.yaml")


def problems(text: str) -> list[str]:
    return [str(p) for p in load(text).problems]


def test_values_and_keys_keep_their_line_and_column() -> None:
    doc = load(
        """
        version: 1
        services:
          web:
            command: [gunicorn, app]
            ready: {type: tcp, port: 80}
        """
    )
    assert doc.problems == []
    assert doc.data["services"]["web"]["ready"] == {"type": "tcp", "port": 80}
    assert doc.values[("version",)] == Mark(1, 10)
    assert doc.keys[("services", "web")] == Mark(3, 3)
    assert doc.keys[("services", "web", "command")] == Mark(4, 5)
    assert doc.values[("services", "web", "command", 1)] == Mark(4, 25)
    assert doc.values[("services", "web", "ready", "port")] == Mark(5, 30)


def test_locate_falls_back_to_the_nearest_recorded_ancestor() -> None:
    doc = load(
        """
        services:
          web:
            command: x
        """
    )
    # a key pydantic complains about that does not exist: the enclosing mapping's position
    assert doc.locate(("services", "web", "ready", "port")) == Mark(3, 5)
    assert doc.locate(("services", "web"), key=True) == Mark(2, 3)
    assert doc.locate(()) == Mark(1, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: 2\na: 3\n", "services.yaml:3:1: duplicate key 'a'"),
        (
            "services:\n  web:\n    env:\n      A: 1\n      A: 2\n",
            "services.yaml:5:7: duplicate key 'A'",
        ),
        ("x: [{k: 1, k: 2}]\n", "services.yaml:1:12: duplicate key 'k'"),
        ("x: {1: a, '1': b}\n", "services.yaml:1:11: duplicate key '1'"),
    ],
    ids=["top", "nested", "in-a-list", "int-and-string-key"],
)
def test_duplicate_keys_are_problems_at_any_depth(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_the_first_of_duplicate_keys_is_kept_and_the_rest_still_read() -> None:
    doc = load("a: 1\na: 2\nb: 3\n")
    assert doc.data == {"a": 1, "b": 3}


def test_merge_keys_are_resolved_and_keys_written_beside_them_win() -> None:
    doc = load(
        """
        x-defaults: &defaults
          command: sleep 1
          shell: false
        x-more: &more
          command: sleep 2
          cwd: app
        services:
          a:
            <<: *defaults
            command: other
          b:
            shell: true
            <<: [*defaults, *more]
        """
    )
    assert doc.problems == []
    assert doc.data["services"]["a"] == {"command": "other", "shell": False}
    # among merged mappings the first listed wins; the mapping's own key beats them all
    assert doc.data["services"]["b"] == {"command": "sleep 1", "shell": True, "cwd": "app"}


def test_a_key_written_twice_beside_a_merge_is_still_a_duplicate() -> None:
    assert problems(
        """
        x: &x {a: 1}
        y:
          <<: *x
          b: 1
          b: 2
        """
    ) == ["services.yaml:5:3: duplicate key 'b'"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "services:\n  a: b\n    c: d\n",
            "services.yaml:3:6: invalid YAML: mapping values are not allowed here",
        ),
        (
            "a: [1, 2\nb: 3\n",
            "services.yaml:2:2: invalid YAML: expected ',' or ']', but got ':'",
        ),
        ("a: 'open\n", "services.yaml:2:1: invalid YAML: found unexpected end of stream"),
        ("\ta: 1\n", "services.yaml:1:1: invalid YAML: found character '\\t' that cannot"),
        (
            "a: 1\n---\nb: 2\n",
            "services.yaml:2:1: invalid YAML: expected a single document, but found another one",
        ),
        ("a: *nowhere\n", "services.yaml:1:4: invalid YAML: found undefined alias 'nowhere'"),
        (
            "a:\n  <<: 3\n",
            "services.yaml:2:7: invalid YAML: expected a mapping or list of mappings for merging",
        ),
    ],
    ids=[
        "mapping-values",
        "unclosed-flow",
        "unclosed-quote",
        "tab",
        "two-documents",
        "alias",
        "merge-scalar",
    ],
)
def test_syntax_errors_are_one_located_problem(text: str, expected: str) -> None:
    doc = yamlsrc.load(text, "services.yaml")
    assert doc.data is None
    assert len(doc.problems) == 1
    assert str(doc.problems[0]).startswith(expected)


def test_a_key_that_is_not_a_scalar_is_a_problem() -> None:
    assert problems("? [a, b]\n: 1\n") == ["services.yaml:1:3: mapping keys must be plain scalars"]


def test_an_empty_document_has_no_data_and_no_problem() -> None:
    for text in ("", "# only a comment\n", "---\n"):
        doc = yamlsrc.load(text, "services.yaml")
        assert doc.data is None
        assert doc.problems == []


# -- the same values as PyYAML, positions through aliases -----------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
)
_KEYS = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=10)


@st.composite
def _documents(draw: st.DrawFn) -> Any:
    """Nested data in which some values are one shared object: PyYAML dumps those as an
    anchor and aliases, so the loader's shared-value path is exercised too."""
    shared = draw(st.recursive(_SCALARS, _containers, max_leaves=6))
    leaves = st.one_of(_SCALARS, st.just(shared))
    return draw(st.recursive(leaves, _containers, max_leaves=30))


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(children, max_size=5), st.dictionaries(_KEYS, children, max_size=5))


@settings(max_examples=300, deadline=None)
@given(data=_documents(), flow=st.booleans())
def test_the_values_are_pyyamls_for_any_document(data: Any, flow: bool) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True)
    doc = yamlsrc.load(text, "services.yaml")
    assert doc.problems == []
    assert doc.data == yaml.safe_load(text)


def test_inside_an_alias_positions_are_those_of_the_anchors_definition() -> None:
    doc = load(
        """
        x-probe: &probe {type: tcp, port: 99999}
        services:
          a: {command: x, ready: *probe}
        """
    )
    # the alias itself is where it is used; what it stands for is where it is written
    assert doc.locate(("services", "a", "ready")) == Mark(3, 26)
    assert doc.locate(("services", "a", "ready", "port")) == Mark(1, 35)
    assert doc.locate(("services", "a", "ready", "port"), key=True) == Mark(1, 29)
    assert doc.has_key(("services", "a", "ready", "type"))
    assert not doc.has_key(("services", "a", "ready", "host"))


def test_a_merged_key_is_located_where_its_mapping_writes_it() -> None:
    doc = load(
        """
        x-base: &base
          cwd: app
          env: {A: 1}
        services:
          a:
            <<: [{stop: {signal: INT}}, *base]
            command: x
        """
    )
    assert doc.data["services"]["a"]["cwd"] == "app"
    assert doc.locate(("services", "a", "cwd")) == Mark(2, 8)
    assert doc.locate(("services", "a", "env", "A"), key=True) == Mark(3, 9)
    assert doc.locate(("services", "a", "stop", "signal")) == Mark(6, 26)
    assert doc.locate(("services", "a", "command")) == Mark(7, 14)


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deep_nesting_is_one_problem_not_a_recursion_error(depth: int) -> None:
    doc = yamlsrc.load("a: " + "[" * depth + "]" * depth + "\n", "services.yaml")
    (problem,) = doc.problems
    assert problem.message == (
        "mappings and lists nested more than 64 deep; svcorch reads at most 64 levels"
    )
    # found by svcorch at the 65th level, or by libyaml at its own limit of 1,000 when it
    # reads that far ahead on a large file
    assert (problem.line, problem.column) in ((1, 67), (1, 1003))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: !!bool maybe\n", "services.yaml:1:4: invalid YAML: cannot read 'maybe' as a bool"),
        (
            "a: 2020-02-30\n",
            "services.yaml:1:4: invalid YAML: cannot read '2020-02-30' as a timestamp: day is out"
            " of range for month",
        ),
        (
            "a: 0x" + "f" * 4000 + "\n",
            "services.yaml:1:4: invalid YAML: an integer of more than 4,300 digits; svcorch reads"
            " at most 4,300",
        ),
        (
            "a: b\x00\n",
            "services.yaml:1:5: invalid YAML: character U+0000 is not allowed (control characters"
            " are not allowed)",
        ),
        (
            "a: é\x01\n",
            "services.yaml:1:5: invalid YAML: character U+0001 is not allowed (control characters"
            " are not allowed)",
        ),
    ],
    ids=["bool", "date", "hex-integer", "nul", "after-non-ascii"],
)
def test_a_scalar_pyyaml_cannot_build_is_one_located_problem(text: str, expected: str) -> None:
    assert [str(p) for p in yamlsrc.load(text, "services.yaml").problems] == [expected]
