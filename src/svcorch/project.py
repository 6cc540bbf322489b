"""Projects: one state directory serves one project.

A project is named by ``-p/--project-name``, else by the catalogue's ``name``, else by the
catalogue's absolute path. The state directory records its project in a file ``project``
the first time a daemon (or a foreground up) works in it; a command of another project is
refused there, with the way out.

Where a project's state lives by default (no ``--state-dir``): ``.svcorch/`` beside the
catalogue when that folder has no project yet or is this project's (so a folder with one
catalogue keeps the ``.svcorch/`` it always had), else ``.svcorch/projects/NAME/``. Two
catalogues in one folder, named apart, so never share a state directory.

The CLI reads the catalogue's ``name`` without loading the whole catalogue (every command
needs it to find its state directory, most never load the catalogue): the line ``name: ...``
at the top level, through a YAML parser only when it is not a plain one-line value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from svcorch.errors import ProjectMismatch

OWNER_FILE = "project"
STATE_DIR_NAME = ".svcorch"
OTHER_PROJECTS = "projects"  # .svcorch/projects/NAME/: the projects that do not own .svcorch/

_NAME_LINE = re.compile(r"^name[ \t]*:(.*)$", re.MULTILINE)
_TOP_KEY = re.compile(r"^(?:version|services)[ \t]*:", re.MULTILINE)
_PLAIN_UNSAFE = tuple("&*!|>{[%@`\"'")
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def project_name(file: Path, override: str | None, environ: Mapping[str, str]) -> str:
    """``override`` (-p), else the catalogue's ``name``, else its absolute path."""
    if override:
        return override
    return catalogue_name(file, environ) or str(file.absolute())


def catalogue_name(file: Path, environ: Mapping[str, str]) -> str | None:
    """The catalogue's top-level ``name`` with ``${VAR}`` from ``environ``; None when it has
    none or cannot be read (the command then reports the file's problems itself)."""
    from svcorch import limits

    try:  # as the loader reads it: a FIFO, /dev/zero or a huge file is not read here
        text = limits.read_regular_file(file, limits.MAX_CATALOGUE_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError, limits.Unreadable):
        return None
    name = _plain_name(text)
    if name is _UNSURE:
        name = _parsed_name(text)
    if not isinstance(name, str) or not name:
        return None
    if "$" in name:
        from svcorch.interpolate import InterpolationError, interpolate

        try:
            name = interpolate(name, environ.get)
        except InterpolationError:
            return None
    return name or None


_UNSURE = object()


def _plain_name(text: str) -> object:
    """The value of a one-line ``name: value`` at the top level, or _UNSURE."""
    lines = _NAME_LINE.findall(text)
    if not lines:
        # a block mapping without a name key; a flow-style document needs the parser
        return None if _TOP_KEY.search(text) else _UNSURE
    if len(lines) > 1:
        return _UNSURE
    value = lines[0].split(" #", 1)[0].strip()
    if not value or value.startswith(_PLAIN_UNSAFE) or ": " in value:
        return _UNSURE
    return value


def _parsed_name(text: str) -> object:
    # svcorch's bounded loader, never a plain YAML load: an alias bomb is refused there
    from svcorch import yamlsrc

    document = yamlsrc.load(text, "services.yaml")
    if document.problems:
        return None  # the command reports them when it loads the catalogue
    data = document.data
    return data.get("name") if isinstance(data, dict) else None


def default_state_dir(file: Path, name: str) -> Path:
    """``.svcorch/`` beside the catalogue if it has no project yet or is ``name``'s, else
    ``.svcorch/projects/<name>/``."""
    shared = file.absolute().parent / STATE_DIR_NAME
    owner = owner_of(shared)
    if owner is None or owner == name:
        return shared
    return shared / OTHER_PROJECTS / slug(name, file)


def slug(name: str, file: Path) -> str:
    """A folder name for a project: its name made safe, or the catalogue's stem when the
    project is named by its path."""
    if name == str(file.absolute()):
        name = file.stem
    return _SLUG_UNSAFE.sub("-", name).strip("-.") or "project"


def owner_of(state_dir: Path) -> str | None:
    try:
        text = (state_dir / OWNER_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def claim(state_dir: Path, name: str) -> str:
    """Record ``name`` as the state directory's project unless it has one; its project."""
    owner = owner_of(state_dir)
    if owner is not None:
        return owner
    path = state_dir / OWNER_FILE
    try:
        # O_EXCL: of two commands claiming at once, the first one's name stays
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return owner_of(state_dir) or name
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(name + "\n")
    return name


def check_owner(state_dir: Path, name: str, file: Path, *, explicit: bool) -> None:
    """Refuse a command of project ``name`` in a state directory of another project."""
    owner = owner_of(state_dir)
    if owner is None or owner == name:
        return
    way_out = (
        "use another --state-dir (or none: each project gets its own)"
        if explicit
        else "name this one apart with -p NAME, or give it --state-dir DIR"
    )
    raise ProjectMismatch(
        f"{shown(state_dir)} serves project {owner!r}, not {name!r} ({shown(file)}); {way_out}"
    )


def another_project(
    state_dir: Path, owner: str, name: str, file: Path, cwd: Path
) -> ProjectMismatch:
    """The daemon serves another project than the command's (two commands raced to claim)."""
    return ProjectMismatch(
        f"{shown(state_dir, cwd)} serves project {owner!r}, not {name!r} ({shown(file, cwd)});"
        " name this one apart with -p NAME, or give it --state-dir DIR"
    )


def other_catalogue(
    state_dir: Path, name: str, running: Path, file: Path, cwd: Path
) -> ProjectMismatch:
    """The daemon runs this project from another catalogue file (a copy, say)."""
    here = shown(file, cwd)
    return ProjectMismatch(
        f"the daemon of {shown(state_dir, cwd)} runs project {name!r} from"
        f" {shown(running, cwd)}, not {here}; to run {here} beside it, name it apart"
        " (-p NAME) or give it --state-dir DIR; to switch to it, `svcorch down` first"
    )


def shown(path: Path, cwd: Path | None = None) -> str:
    """A path as the user would write it: relative to their folder when inside it."""
    try:
        return str(path.absolute().relative_to(cwd or Path.cwd()))
    except ValueError:
        return str(path)
