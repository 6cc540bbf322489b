"""The one-way import direction of STYLE.md, held by a test (docs/architecture.md).

cli -> commands -> engine -> graph, probes, control -> state, model -> errors; render is
used by the CLI only. Checked on the source (every import statement, lazy ones included),
so a shortcut in either direction fails here instead of in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "svcorch"
CLI_MODULES = {"svcorch.cli", "svcorch.cli_runtime", "svcorch.cli_check", "svcorch.__main__"}
TERMINAL = ("typer", "rich", "click")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(path): _imports(path) for path in sorted(SRC.rglob("*.py"))}


def _uses(imports: set[str], prefix: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for name in imports)


def test_the_modules_were_found() -> None:
    assert {"svcorch.engine", "svcorch.cli", "svcorch.errors", "svcorch.probes.base"} <= set(
        MODULES
    )


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in CLI_MODULES))
def test_only_the_cli_talks_to_the_terminal_and_nothing_imports_the_cli(module: str) -> None:
    imports = MODULES[module]
    if module != "svcorch.render":  # render builds rich renderables for the CLI
        assert not [t for t in TERMINAL if _uses(imports, t)], f"{module} imports a terminal lib"
    assert not [c for c in CLI_MODULES if _uses(imports, c)], f"{module} imports the CLI"
    assert not _uses(imports, "svcorch.render") or module == "svcorch.render"


def test_errors_imports_nothing_of_svcorch() -> None:
    assert not _uses(MODULES["svcorch.errors"], "svcorch")


@pytest.mark.parametrize(
    "module",
    sorted(
        m
        for m in MODULES
        if m.startswith(
            (
                "svcorch.probes",
                "svcorch.model",
                "svcorch.graph",
                "svcorch.state",
                "svcorch.process",
                "svcorch.catalogue",
                "svcorch.yamlsrc",
                "svcorch.interpolate",
                "svcorch.durations",
                "svcorch.redaction",
                "svcorch.limits",
            )
        )
    ),
)
def test_lower_layers_never_reach_up_to_the_engine_or_the_commands(module: str) -> None:
    imports = MODULES[module]
    for upper in (
        "svcorch.engine",
        "svcorch.supervisor",
        "svcorch.commands",
        "svcorch.control",
        "svcorch.notify",
    ):
        assert not _uses(imports, upper), f"{module} imports {upper}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("svcorch.probes.")))
def test_probe_client_libraries_are_imported_lazily(module: str) -> None:
    """`svcorch --help` must never pay for pika: clients only inside functions."""
    tree = ast.parse((SRC.parent / (module.replace(".", "/") + ".py")).read_text())
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
    assert not top_level & {"redis", "pika", "pymysql", "influxdb_client", "urllib3"}
