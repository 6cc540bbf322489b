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
CLI_MODULES = {
    "svcorch.cli",
    "svcorch.cli_base",
    "svcorch.cli_catalogue",
    "svcorch.cli_runtime",
    "svcorch.cli_check",
    "svcorch.cli_export",
    "svcorch.cli_events",
    "svcorch.cli_web",
    "svcorch.__main__",
    "svcorch.cli_light",  # the entry: serves status itself, else hands over to svcorch.cli
}
# the app is built in svcorch.cli from the command modules, which share only cli_base
CLI_COMMAND_MODULES = (
    "svcorch.cli_catalogue",
    "svcorch.cli_runtime",
    "svcorch.cli_check",
    "svcorch.cli_export",
    "svcorch.cli_events",
    "svcorch.cli_web",
)
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


def test_accounts_imports_nothing_of_svcorch() -> None:
    """Resolving users is standard library: the loader, process and exporters share it."""
    assert not _uses(MODULES["svcorch.accounts"], "svcorch")


def test_replicas_sits_on_the_model_alone() -> None:
    """Expanding replicas is a pure function of the catalogue (used by graph users and the
    engine alike), so it imports only the model."""
    assert {m for m in MODULES["svcorch.replicas"] if m.startswith("svcorch")} <= {
        "svcorch.model",
        "svcorch.model.Catalogue",
        "svcorch.model.Dependency",
        "svcorch.model.Service",
    }


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
                "svcorch.fingerprint",
                "svcorch.exporters",
                "svcorch.importers",
                "svcorch.replicas",
                "svcorch.accounts",
                "svcorch.journal",
                "svcorch.preflight",
                "svcorch.project",
                "svcorch.identity",
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


# The engine's parts, lowest first: each may import only those before it (docs/architecture.md).
ENGINE_PARTS = [
    "svcorch.engine.sdnotify",
    "svcorch.engine.service",
    "svcorch.engine.events",
    "svcorch.engine.persist",
    "svcorch.engine.processes",
    "svcorch.engine.base",
    "svcorch.engine.scheduler",
    "svcorch.engine.supervision",
    "svcorch.engine.core",
]


def test_the_engine_package_has_the_parts_the_docs_name() -> None:
    found = {m for m in MODULES if m.startswith("svcorch.engine.")}
    assert found == set(ENGINE_PARTS)


@pytest.mark.parametrize("index", range(len(ENGINE_PARTS)))
def test_engine_parts_import_only_the_parts_below_them(index: int) -> None:
    module = ENGINE_PARTS[index]
    imports = MODULES[module]
    above = [*ENGINE_PARTS[index + 1 :], "svcorch.engine"]
    reached = sorted(a for a in above if a in imports)
    if module == "svcorch.engine.base":
        # the halves declare each other's result type for mypy only (TYPE_CHECKING)
        reached = [r for r in reached if r != "svcorch.engine.scheduler"]
    assert not reached, f"{module} reaches up to {reached}"
    for outside in (
        "svcorch.supervisor",
        "svcorch.commands",
        "svcorch.control",
        "svcorch.notify",
        "svcorch.alerts",
        "svcorch.eventlog",
    ):
        assert not _uses(imports, outside), f"{module} imports {outside}"


def test_scheduler_and_supervision_do_not_import_each_other() -> None:
    """They call each other only through what engine/base.py declares."""
    assert not _uses(MODULES["svcorch.engine.scheduler"], "svcorch.engine.supervision")
    assert not _uses(MODULES["svcorch.engine.supervision"], "svcorch.engine.scheduler")


def test_the_cli_has_one_direction() -> None:
    """cli builds the app from the command modules; they import only cli_base; cli_base
    imports no other CLI module (they used to import each other in a circle)."""
    assert not [
        c for c in CLI_MODULES - {"svcorch.cli_base"} if _uses(MODULES["svcorch.cli_base"], c)
    ]
    for module in CLI_COMMAND_MODULES:
        others = CLI_MODULES - {"svcorch.cli_base", module}
        assert not [c for c in others if _uses(MODULES[module], c)], module
        assert _uses(MODULES["svcorch.cli"], module)


def test_the_journal_is_read_without_the_engine() -> None:
    """`svcorch events` reads history without paying for the engine (docs/architecture.md)."""
    assert not _uses(MODULES["svcorch.journal"], "svcorch")
    assert not _uses(MODULES["svcorch.commands.events"], "svcorch.engine")


def test_the_web_runs_beside_the_daemon_not_in_it() -> None:
    """docs/web.md: `svcorch web` talks to the daemon over its socket; the daemon never loads
    the web server (its 50 MiB RSS goal), and the web server never runs the engine itself."""
    web = [m for m in MODULES if m.startswith("svcorch.web")]
    assert "svcorch.web.server" in web
    for module in web:
        for inner in ("svcorch.supervisor", "svcorch.engine"):
            assert not _uses(MODULES[module], inner), f"{module} imports {inner}"
    for module in [m for m in MODULES if m.startswith(("svcorch.supervisor", "svcorch.engine"))]:
        assert not _uses(MODULES[module], "svcorch.web"), module
        assert not _uses(MODULES[module], "prometheus_client"), module
