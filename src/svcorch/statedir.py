"""The state directory's ownership and modes, checked as ssh checks a private key's.

Everything in the state directory is the owner's alone: the control socket takes requests
that carry the client's environment, service logs hold whatever services print, and the
state file says which processes svcorch may signal. So on every command:

- a directory (the state dir or ``logs/``) or a file of svcorch's that another user owns,
  or that group or others can write, is refused with one line naming it and the fix:
  somebody else could have put something there, and svcorch must not trust it;
- one that group or others can only read is tightened back (0700 / 0600): it is ours, and
  nobody could have changed it.

Only svcorch's own files are looked at (``state.json``, ``daemon.log``, ``crash.log``,
``lock``, ``svcorch.sock``, ``fingerprint.key``, set-aside state files, and ``logs/``):
``data/`` and anything else belong to the services. Symbolic links are neither followed nor changed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from svcorch.state import StateError, StateLayout

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_OTHERS_WRITE = 0o022
_OTHERS_ANY = 0o077
_OWN_NAMES = ("state.json", "daemon.log", "crash.log", "lock", "svcorch.sock", "fingerprint.key")
_OWN_PREFIXES = ("state.json.corrupt-", ".state.json.")


class UnsafeStateDir(StateError):
    """The state directory (or a file of svcorch's in it) is not safe to use."""

    exit_code = 2  # like a usage error: nothing can work until the user fixes it


def secure(root: Path, *, create: bool = False) -> Path:
    """Check (and with ``create``, make) the state directory; return it.

    Raises :class:`UnsafeStateDir` for another user's or a group/other-writable directory
    or file, :class:`StateError` when it cannot be created. Without ``create`` a directory
    that does not exist yet is fine: the command that needs it creates it.
    """
    layout = StateLayout(root)
    if create:
        _make(layout)
    elif not root.exists():
        return root
    for directory in (layout.root, layout.logs_dir):
        _check_directory(directory)
    for path in _own_files(layout):
        _check_file(path)
    return root


def _make(layout: StateLayout) -> None:
    try:
        for directory in (layout.root, layout.logs_dir):
            directory.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StateError(f"cannot create state directory {layout.root}: {reason}") from exc


def _check_directory(directory: Path) -> None:
    try:
        status = directory.stat()
    except FileNotFoundError:
        return  # logs/ of a state dir made by an older svcorch: created when needed
    except OSError as exc:
        raise StateError(f"cannot check {directory}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(status.st_mode):
        raise UnsafeStateDir(f"state directory {directory} is not a directory")
    _refuse_foreign(directory, status, "state directory")
    mode = stat.S_IMODE(status.st_mode)
    if mode & _OTHERS_WRITE:
        raise UnsafeStateDir(
            f"state directory {directory} is writable by group or others (mode {mode:04o}):"
            f" another user could have put files in it; check them, then `chmod 700 {directory}`"
        )
    if mode & _OTHERS_ANY:
        _tighten(directory, PRIVATE_DIR)


def _own_files(layout: StateLayout) -> list[Path]:
    found: list[Path] = []
    for directory, everything in ((layout.root, False), (layout.logs_dir, True)):
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise StateError(f"cannot check {directory}: {exc.strerror or exc}") from exc
        found.extend(
            directory / name
            for name in names
            if everything or name in _OWN_NAMES or name.startswith(_OWN_PREFIXES)
        )
    return found


def _check_file(path: Path) -> None:
    try:
        status = path.lstat()
    except FileNotFoundError:
        return  # removed while we looked (a log rotated, a temp file renamed)
    except OSError as exc:
        raise StateError(f"cannot check {path}: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(status.st_mode) or stat.S_ISDIR(status.st_mode):
        return  # a link is the user's choice; chmod would change its target
    _refuse_foreign(path, status, "file")
    mode = stat.S_IMODE(status.st_mode)
    if mode & _OTHERS_WRITE:
        raise UnsafeStateDir(
            f"file {path} is writable by group or others (mode {mode:04o}): check it, then"
            f" `chmod 600 {path}`"
        )
    if mode & _OTHERS_ANY:
        _tighten(path, PRIVATE_FILE)


def _refuse_foreign(path: Path, status: os.stat_result, what: str) -> None:
    me = os.geteuid()
    if status.st_uid != me:
        raise UnsafeStateDir(
            f"{what} {path} belongs to uid {status.st_uid}, not to you (uid {me}): use your"
            f" own --state-dir, or `chown -R {me} {path}` if it is yours"
        )


def _tighten(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode, follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateError(f"cannot make {path} private: {exc.strerror or exc}") from exc


def open_private(path: Path, flags: int) -> int:
    """``os.open`` a file of the state dir for writing, created 0600 and kept so.

    ``open()`` would create it with the umask's mode (0644 by default), readable by all.
    """
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & _OTHERS_ANY:
            os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd
