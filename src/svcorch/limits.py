"""What svcorch will read, and the values the OS would refuse.

svcorch runs as root on production hosts: no file may make it hang (a FIFO) or grow without
bound (``/dev/zero``), and a value ``execve`` would refuse (a NUL, ``=`` in a variable's name)
is refused when the catalogue is validated, with its position, not when a service starts.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_CATALOGUE_BYTES = 4 * 1024 * 1024  # 2,000 services take 0.8 MB
MAX_ENV_FILE_BYTES = 1024 * 1024
# Linux's MAX_ARG_STRLEN: the longest argument or NAME=value string execve takes (the NUL
# that ends it included), whatever the total limit
MAX_ARGUMENT_BYTES = 32 * 4096
_CHUNK = 64 * 1024

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class Unreadable(Exception):
    """A file svcorch will not read: not a regular file, or larger than its limit."""


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes.

    Anything else is refused before it is read, never waited for: opening a FIFO blocks
    until a writer comes, and a device such as ``/dev/zero`` never ends. The size is checked
    by reading, not trusted from ``stat`` (files in ``/proc`` say 0). Raises OSError when the
    file cannot be opened, ``Unreadable`` saying why when it is refused.
    """
    try:
        _refuse_unless_regular(os.stat(path).st_mode)
        # O_NONBLOCK: should the path become a FIFO between stat and open, open returns
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except ValueError:  # os.stat's "embedded null byte"
        raise Unreadable("the path contains a NUL character") from None
    try:
        _refuse_unless_regular(os.fstat(fd).st_mode)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(_CHUNK, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise Unreadable(f"is larger than {describe_size(limit)}, the most svcorch reads")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _refuse_unless_regular(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    if kind == "a directory":
        raise Unreadable("is a directory, not a file")
    raise Unreadable(f"is {kind}, not a regular file")


def describe_size(size: int) -> str:
    """``4 MiB``, ``64 KiB``, ``100 bytes``: limits as the docs spell them."""
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size:,} bytes"


def os_refusal(text: str) -> str | None:
    """Why the OS would refuse ``text`` as an argument, a path or an environment value; None
    when it would take it."""
    if "\0" in text:
        return "contains a NUL character (\\0), which no argument, path or variable can hold"
    if text.isascii():
        size = len(text)
    else:
        try:
            # strict, not the filesystem's surrogateescape: U+DC80 would reach the OS as a
            # byte, but no terminal, log or JSON document can show it
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            bad = text[exc.start]
            return f"contains U+{ord(bad):04X}, a lone surrogate, which is not text"
    if size >= MAX_ARGUMENT_BYTES:
        return _too_long(size)
    return None


def env_name_refusal(name: str) -> str | None:
    """Why the OS would refuse ``name`` as an environment variable's name."""
    if not name:
        return "an environment variable's name cannot be empty"
    if "=" in name:
        return f"variable name {name!r} contains '=', which the environment cannot hold"
    refusal = os_refusal(name)
    return None if refusal is None else f"variable name {name!r} {refusal}"


def env_entry_refusal(name: str, value: str) -> str | None:
    """Why ``NAME=value`` is too long for the OS (each part is checked on its own too)."""
    size = len(name.encode("utf-8")) + 1 + len(value.encode("utf-8"))
    return _too_long(size) if size >= MAX_ARGUMENT_BYTES else None


def _too_long(size: int) -> str:
    return (
        f"is {size:,} bytes long; the OS takes at most {MAX_ARGUMENT_BYTES - 1:,} in one"
        " argument or variable"
    )


def exec_size(argv: list[str], env: dict[str, str]) -> int:
    """Bytes ``execve`` needs for this argv and environment: strings, their NULs, pointers."""
    strings = sum(_size(a) + 1 for a in argv)
    strings += sum(_size(k) + _size(v) + 2 for k, v in env.items())
    return strings + 8 * (len(argv) + len(env) + 2)


def _size(text: str) -> int:
    # surrogatepass: only counting; a lone surrogate is reported by os_refusal
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def exec_limit() -> int:
    """The kernel's limit on argv and environment together (ARG_MAX)."""
    try:
        return int(os.sysconf("SC_ARG_MAX"))
    except (ValueError, OSError):  # pragma: no cover - every Linux has it
        return 2 * 1024 * 1024
