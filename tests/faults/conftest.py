"""Fault tests: real mounts (tmpfs, ramfs, read-only binds), real kills.

``WWU_FAULT_ITERATIONS`` sets how many kills the kill tests make (``make
faults`` runs the long version); the default keeps ``make test`` quick.
"""
import os
import subprocess

import pytest

ITERATIONS = int(os.environ.get("WWU_FAULT_ITERATIONS", "40"))


@pytest.fixture
def mount(scratch):
    """mount(kind, options) -> a fresh mount point under scratch, unmounted after."""
    made = []

    def make(fstype, options, name=None):
        point = os.path.join(scratch, name or "mnt{}".format(len(made)))
        os.makedirs(point, exist_ok=True)
        subprocess.check_call(["mount", "-t", fstype, "-o", options, fstype, point])
        made.append(point)
        return point

    yield make
    for point in reversed(made):
        subprocess.call(["umount", "-l", point])


@pytest.fixture
def bind_ro(scratch):
    """bind_ro(path): make path read-only (a read-only bind mount on itself)."""
    made = []

    def make(path):
        subprocess.check_call(["mount", "--bind", path, path])
        made.append(path)
        subprocess.check_call(["mount", "-o", "remount,ro,bind", path])
        return path

    yield make
    for path in reversed(made):
        subprocess.call(["umount", "-l", path])
