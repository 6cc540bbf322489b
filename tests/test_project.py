"""Projects: the name read without loading the catalogue, the state directory it gets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from svcorch import project


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("version: 1\nname: shop\nservices: {}\n", "shop"),
        ("version: 1\nname: shop   # the web shop\nservices: {}\n", "shop"),
        ('version: 1\nname: "shop #1"\nservices: {}\n', "shop #1"),
        ("version: 1\nname: 'it''s'\nservices: {}\n", "it's"),
        ("version: 1\nname:\n  shop\nservices: {}\n", "shop"),
        ("{version: 1, name: shop, services: {}}\n", "shop"),
        ("version: 1\nname: ${PROJECT:-shop}\nservices: {}\n", "from-env"),
        ("version: 1\nname: ${OTHER:-shop}\nservices: {}\n", "shop"),
        ("version: 1\nservices:\n  web: {command: x, env: {name: y}}\n", None),
        ("version: 1\nservices: {}\nx-notes: |\n  name: not the project\n", None),
        ("{version: 1, services: {}}\n", None),
        ("version: 1\nname: [not, a, string]\nservices: {}\n", None),
        (": : not yaml\n", None),
    ],
)
def test_the_catalogue_name_is_read_as_yaml_would(tmp_path: Path, text: str, name: str) -> None:
    file = tmp_path / "services.yaml"
    file.write_text(text)
    assert project.catalogue_name(file, {"PROJECT": "from-env"}) == name
    if name is not None and "$" not in text:
        assert yaml.safe_load(text)["name"] == name  # the same answer as the parser's


def test_a_project_is_named_by_p_then_name_then_path(tmp_path: Path) -> None:
    named = tmp_path / "services.yaml"
    named.write_text("version: 1\nname: shop\nservices: {}\n")
    unnamed = tmp_path / "copy.yaml"
    unnamed.write_text("version: 1\nservices: {}\n")
    assert project.project_name(named, "other", {}) == "other"
    assert project.project_name(named, None, {}) == "shop"
    assert project.project_name(unnamed, None, {}) == str(unnamed)
    assert project.project_name(tmp_path / "missing.yaml", None, {}) == str(
        tmp_path / "missing.yaml"
    )


def test_the_first_project_keeps_svcorch_and_the_others_get_their_own(tmp_path: Path) -> None:
    shop, blog = tmp_path / "services.yaml", tmp_path / "blog.yaml"
    shared = tmp_path / ".svcorch"
    assert project.default_state_dir(shop, "shop") == shared  # nobody's yet
    shared.mkdir()
    assert project.claim(shared, "shop") == "shop"
    assert project.claim(shared, "blog") == "shop"  # the first claim stays
    assert project.default_state_dir(shop, "shop") == shared
    assert project.default_state_dir(blog, "blog") == shared / "projects" / "blog"
    unnamed = tmp_path / "copy.yaml"
    assert project.default_state_dir(unnamed, str(unnamed)) == shared / "projects" / "copy"
    assert project.slug("my shop/eu", shop) == "my-shop-eu"
