"""The account a service runs as: ``user:`` and ``group:`` resolved against this host.

Standard library only. A name or a number may be given for either; the user's own group and
its supplementary groups (``/etc/group``) come with it, as ``login`` would give them.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass


class AccountError(Exception):
    """A user or group this host does not have (the message names it)."""


@dataclass(frozen=True)
class Account:
    """Who a service's process is: ids to switch to and the environment that goes with them."""

    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def environment(self) -> dict[str, str]:
        return {"HOME": self.home, "USER": self.user, "LOGNAME": self.user}


def find_user(text: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(text)) if text.isdigit() else pwd.getpwnam(text)
    except KeyError:
        raise AccountError(f"no such user {text!r} on this host") from None


def find_group(text: str) -> grp.struct_group:
    try:
        return grp.getgrgid(int(text)) if text.isdigit() else grp.getgrnam(text)
    except KeyError:
        raise AccountError(f"no such group {text!r} on this host") from None


def resolve(user: str | None, group: str | None) -> Account | None:
    """The account for ``user``/``group``; None when neither is set (svcorch's own)."""
    if user is None and group is None:
        return None
    if user is not None:
        entry = find_user(user)
        name, uid, gid, home = entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir
    else:
        uid = os.getuid()
        try:
            entry = pwd.getpwuid(uid)
            name, gid, home = entry.pw_name, entry.pw_gid, entry.pw_dir
        except KeyError:
            name, gid, home = str(uid), os.getgid(), os.environ.get("HOME", "/")
    if group is not None:
        gid = find_group(group).gr_gid
    try:
        groups = tuple(sorted(set(os.getgrouplist(name, gid))))
    except OSError:
        groups = (gid,)
    return Account(user=name, uid=uid, gid=gid, groups=groups, home=home)


def switch_refused(account: Account) -> str | None:
    """Why this process cannot run a child as ``account``, or None when it can."""
    if os.geteuid() == 0:
        return None
    if account.uid == os.geteuid() and account.gid in (os.getegid(), *os.getgroups()):
        return None
    return (
        f"svcorch runs as uid {os.geteuid()}, not root, and cannot switch to user"
        f" {account.user!r} (uid {account.uid}, gid {account.gid}): run svcorch as root,"
        " or remove user:/group:"
    )
