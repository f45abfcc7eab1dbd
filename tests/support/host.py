"""Real users, groups and access checks on this host, for tests."""
import grp
import os
import pwd
import subprocess
from typing import Iterable

#: users and groups the tests create; names say where they come from
SERVICE_USER = "wwu-test-svc"
SECOND_USER = "wwu-test-svc2"
OTHER_USER = "wwu-test-other"
READER_GROUP = "wwu-test-readers"
READER_MEMBER = "wwu-test-member"
KEY_GROUP = "wwu-test-keygrp"
KEY_GROUP_MEMBER = "wwu-test-keymember"


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_group(name: str) -> None:
    try:
        grp.getgrnam(name)
    except KeyError:
        subprocess.check_call(["groupadd", "--system", name])


def ensure_user(name: str, groups: Iterable[str] = ()) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.check_call(["useradd", "--system", "--no-create-home",
                               "--shell", "/usr/sbin/nologin", name])
    for group in groups:
        ensure_group(group)
        subprocess.check_call(["usermod", "-a", "-G", group, name])


def ensure_test_accounts() -> None:
    ensure_user(SERVICE_USER)
    ensure_user(SECOND_USER)
    ensure_user(OTHER_USER)
    ensure_user(READER_MEMBER, [READER_GROUP])
    ensure_user(KEY_GROUP_MEMBER, [KEY_GROUP])


def read_as(user: str, path: str) -> bool:
    """Whether ``user`` can read ``path``: runuser + cat, as the kernel decides."""
    proc = subprocess.Popen(["runuser", "-u", user, "--", "cat", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc.wait() == 0


def getfacl(path: str, numeric: bool = True) -> str:
    return subprocess.check_output(["getfacl", "-p" + ("n" if numeric else ""), path],
                                   universal_newlines=True,
                                   stderr=subprocess.DEVNULL)
