"""Exclusive locks that only root can create and that nobody can hold forever.

A lock another account could create or open would let that account stall
every renewal on the host (certbot holds its own global lock while it waits
for ours). So lock files live in root's own 0700 directory (the config
directory's ``wwu-acl/``), and every wait ends after a timeout with a
sentence that names the holder where the kernel tells it (``/proc/locks``).
"""
import contextlib
import errno
import fcntl
import os
import stat
import time
from typing import Iterator, List

from certbot_wwu.errors import LockError

_POLL = 0.05
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_private_dir(path: str) -> int:
    """fd of ``path``, created 0700 if missing, once it is known to be root's
    directory that nobody else can use: another account must not be able to
    plant or swap a lock file, the state or a cluster stage."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise LockError("Cannot create the directory {}: {}; check that certbot's "
                        "configuration directory exists.".format(path, err.strerror or err))
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as err:
        raise LockError("{} is not a directory ({}); remove it, and certbot-wwu "
                        "creates it.".format(path, err.strerror or err))
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        raise LockError(
            "{} must be a directory only root can use, but it is owned by uid {} "
            "with mode {:04o}; fix it with chown root:root {} && chmod 700 {}."
            .format(path, st.st_uid, stat.S_IMODE(st.st_mode), path, path))
    return fd


def private_dir(path: str) -> None:
    """Create or check ``path`` as root's own directory (see open_private_dir)."""
    os.close(open_private_dir(path))


def holders(fd: int) -> List[int]:
    """The PIDs /proc/locks names for a lock on ``fd``'s file (none if it
    cannot be known: another PID namespace, no /proc)."""
    st = os.fstat(fd)
    exact = []  # type: List[int]
    same_inode = []  # type: List[int]
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        # 1: FLOCK  ADVISORY  WRITE 1234 08:01:56789 0 EOF (waiters have '->')
        words = line.split()
        if len(words) < 6 or words[1] == "->":
            continue
        try:
            pid = int(words[4])
            major, minor, inode = words[5].split(":")
            same = int(inode) == st.st_ino
            device = (int(major, 16), int(minor, 16))
        except ValueError:
            continue
        if not same or pid <= 0 or pid == os.getpid():
            continue
        if device == (os.major(st.st_dev), os.minor(st.st_dev)):
            exact.append(pid)
        else:  # overlayfs and btrfs show another device than stat
            same_inode.append(pid)
    return exact or sorted(set(same_inode))


def describe_process(pid: int) -> str:
    """``PID 1234 (certbot renew ...)``, its command line fit to be shown."""
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as f:
            words = f.read(4096).split(b"\0")
    except OSError:
        return "PID {}".format(pid)
    command = " ".join(w.decode("utf-8", "replace") for w in words if w)
    command = "".join(c if c.isprintable() else "?" for c in command)
    if len(command) > 200:
        command = command[:197] + "..."
    return "PID {} ({})".format(pid, command) if command else "PID {}".format(pid)


@contextlib.contextmanager
def exclusive(directory: str, name: str, timeout: float, what: str,
              remedy: str = "wait until it ends or stop it, then try again, or "
                            "raise --wwu-acl-timeout") -> Iterator[None]:
    """Hold an exclusive flock on DIRECTORY/NAME, waiting at most ``timeout`` s.

    DIRECTORY is made (or checked to be) root's 0700 directory first, so only
    root can create, open or hold the lock. ``what`` starts the timeout
    sentence ("Deploying www"), ``remedy`` ends it.
    """
    path = os.path.join(directory, name)
    dir_fd = open_private_dir(directory)
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dir_fd)
    except OSError as err:
        raise LockError("Cannot open the lock file {}: {}; remove it, and "
                        "certbot-wwu creates it.".format(path, err.strerror or err))
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise LockError("The lock file {} is not a regular file of root's; remove "
                            "it, and certbot-wwu creates it.".format(path))
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise LockError("Cannot lock {}: {}.".format(
                        path, err.strerror or err))
            left = deadline - time.monotonic()
            if left <= 0:
                found = holders(fd)
                raise LockError("{} waited {:g} s for {}, which {} still holds; {}.".format(
                    what, timeout, path,
                    " and ".join(describe_process(p) for p in found)
                    if found else "another process", remedy))
            time.sleep(min(_POLL, left))
        yield
    finally:
        os.close(fd)
