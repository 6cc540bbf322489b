"""--help that a user can read, aliases, and shell completion, through the installed command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from svcorch.cli import ALIASES, COMMANDS, app
from tests.support.cli import assert_clean, run_svcorch

BIN = str(Path(sys.executable).parent)
TYPE_LABEL = re.compile(r"<(?:bool|int|float|text|str|path|list\[[a-z]+\])>")
CATALOGUE = """
version: 1
services:
  web: {command: "sleep 1"}
  worker: {command: "sleep 1"}
  redis: {command: "redis-server --dir ${SVCORCH_STATE_DIR}"}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "services.yaml").write_text(CATALOGUE.lstrip("\n"))
    return tmp_path


@pytest.mark.parametrize("command", [None, *COMMANDS, *ALIASES])
def test_help_shows_no_python_type_labels(command: str | None, tmp_path: Path) -> None:
    args = ["-h"] if command is None else [command, "-h"]
    result = run_svcorch(*args, cwd=tmp_path, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert not TYPE_LABEL.search(result.stdout), result.stdout
    assert "Usage: svcorch" in result.stdout


def _parameters() -> list[tuple[str, object]]:
    group = typer.main.get_command(app)
    found: list[tuple[str, object]] = [("svcorch", param) for param in group.params]
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        found.extend((name, param) for param in command.params)
    return found


@pytest.mark.parametrize(("command", "param"), _parameters(), ids=lambda v: str(v))
def test_every_option_has_help_and_every_value_option_its_default(
    command: str, param: typer.core.TyperOption
) -> None:
    assert param.help, f"{command} {param.opts}: no help text"
    takes_value = not getattr(param, "is_flag", False) and not getattr(param, "count", False)
    if isinstance(param, typer.core.TyperOption) and takes_value:
        shown = param.show_default
        assert shown is not False and (isinstance(shown, str) or param.default is not None), (
            f"{command} {param.opts}: no default shown"
        )


def test_verbose_and_quiet_are_explained(tmp_path: Path) -> None:
    out = run_svcorch("-h", cwd=tmp_path, env={"COLUMNS": "200"}).stdout
    verbose = r"--verbose\s+-v\s+An internal error \(exit 3\) also prints its traceback"
    assert re.search(verbose, out)
    assert re.search(r"--quiet\s+-q\s+No progress lines from up, down and restart", out)


def test_aliases_are_listed_with_what_they_stand_for(tmp_path: Path) -> None:
    out = run_svcorch("-h", cwd=tmp_path, env={"COLUMNS": "200"}).stdout
    for alias, name in ALIASES.items():
        assert re.search(rf"│ {alias}\s+The same as `svcorch {name}`\.", out), out


def test_start_is_not_mistaken_for_restart(project: Path) -> None:
    result = run_svcorch("start", "--dry-run", "web", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("start plan: 1 service in 1 wave")
    assert "No such command" not in result.stderr


def test_show_completion_bash_prints_a_script_that_completes(project: Path) -> None:
    shown = run_svcorch("--show-completion", "bash", cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert "_SVCORCH_COMPLETE=complete_bash" in shown.stdout
    assert "complete -o default -F _svcorch_completion svcorch" in shown.stdout
    script = project / "svcorch-completion.bash"
    script.write_text(shown.stdout)

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        done = subprocess.run(
            [
                "bash",
                "-c",
                f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
                '_svcorch_completion svcorch; printf "%s\\n" "${COMPREPLY[@]}"',
            ],
            cwd=project,
            env={**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout.split()

    assert complete("svcorch", "st") == ["status", "start", "stop"]
    assert complete("svcorch", "stop", "w") == ["web", "worker"]
    assert complete("svcorch", "-f", "services.yaml", "restart", "re") == ["redis"]
    assert "--follow" in complete("svcorch", "logs", "--f")


def test_show_completion_without_a_shell_uses_the_one_it_runs_under(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", "-c", "svcorch --show-completion; true"],  # "; true": bash forks, not execs
        cwd=tmp_path,
        env={**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "SHELL": "/bin/zsh"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "complete -o default -F _svcorch_completion svcorch" in done.stdout  # bash's


def test_show_completion_of_an_unknown_shell_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_svcorch("--show-completion", "ksh", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "svcorch: --show-completion: 'ksh' is not a shell svcorch completes;"
        " name one of bash, zsh, fish, powershell, pwsh\n"
    )
    assert_clean(result)


def test_install_completion_writes_the_script_and_sources_it(tmp_path: Path) -> None:
    result = run_svcorch("--install-completion", "bash", cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    installed = tmp_path / ".bash_completions" / "svcorch.sh"
    assert f"bash completion installed in {installed}" in result.stdout
    assert "_SVCORCH_COMPLETE=complete_bash" in installed.read_text()
    assert f"source '{installed}'" in (tmp_path / ".bashrc").read_text()
