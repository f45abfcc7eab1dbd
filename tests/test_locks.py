"""certbot_wwu.locks: root's own lock files, waits that end, holders named."""
import os
import re
import subprocess
import sys
import time

import pytest

from certbot_wwu import locks
from certbot_wwu.errors import LockError, WwuError
from tests.conftest import needs_root

HOLD = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    """hold(path): another process holds an flock on path until the test ends."""
    children = []

    def hold(path):
        child = subprocess.Popen([sys.executable, "-c", HOLD, path],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 universal_newlines=True)
        assert child.stdout.readline().strip() == "locked"
        children.append(child)
        return child

    yield hold
    for child in children:
        child.stdin.close()
        child.wait(10)
        child.stdout.close()


def test_lock_is_exclusive_and_released(tmp_path, holder):
    directory = str(tmp_path / "state")
    with locks.exclusive(directory, "a.lock", 5, "the certificate a"):
        child = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], "
             "os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
             os.path.join(directory, "a.lock")], stderr=subprocess.DEVNULL)
        assert child.wait(10) != 0
    assert subprocess.call(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], "
         "os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
         os.path.join(directory, "a.lock")]) == 0
    st = os.stat(directory)
    assert st.st_mode & 0o777 == 0o700 and st.st_uid == os.geteuid()


def test_a_wait_ends_and_names_the_holder(tmp_path, holder):
    directory = str(tmp_path / "state")
    locks.private_dir(directory)
    path = os.path.join(directory, "www.lock")
    child = holder(path)
    started = time.monotonic()
    with pytest.raises(LockError) as caught:
        with locks.exclusive(directory, "www.lock", 0.5, "Deploying www"):
            pass
    waited = time.monotonic() - started
    message = str(caught.value)
    assert re.search(r"^Deploying www waited 0\.5 s for .*/www\.lock, which PID {} "
                     r"\(.*python.*\) still holds; wait until it ends or stop it, "
                     r"then try again, or raise --wwu-acl-timeout\.$".format(child.pid),
                     message), message
    assert 0.5 <= waited < 5
    assert "\n" not in message


def test_no_holders_when_nobody_holds(tmp_path):
    path = str(tmp_path / "free.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert locks.holders(fd) == []
    finally:
        os.close(fd)


@needs_root
@pytest.mark.parametrize("mode", [0o755, 0o710, 0o701])
def test_refuses_a_lock_directory_others_can_use(tmp_path, mode):
    directory = str(tmp_path / "state")
    os.mkdir(directory)
    os.chmod(directory, mode)
    with pytest.raises(WwuError, match=re.escape(
            "{0} must be a directory only root can use, but it is owned by uid 0 with "
            "mode {1:04o}; fix it with chown root:root {0} && chmod 700 {0}.".format(
                directory, mode))):
        with locks.exclusive(directory, "a.lock", 1, "the certificate a"):
            pass
    assert os.listdir(directory) == []


@needs_root
def test_refuses_a_lock_directory_that_is_a_link(tmp_path):
    real = str(tmp_path / "real")
    os.mkdir(real, 0o700)
    link = str(tmp_path / "state")
    os.symlink(real, link)
    with pytest.raises(WwuError, match="is not a directory"):
        locks.private_dir(link)
