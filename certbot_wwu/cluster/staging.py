"""What the cluster code writes on this host before anything goes to a peer:
root's private work directory (``CONFIG/wwu-acl``), its locks (certbot_wwu.locks),
and copies made with their final mode before any byte is written and
without the origin's ACLs (uids differ between hosts).
"""
import contextlib
import os
from typing import Iterator, Sequence

from certbot_wwu import locks
from certbot_wwu.cluster.config import ClusterError
from certbot_wwu.errors import WwuError


def private_dir(path: str) -> None:
    """CONFIG/wwu-acl, where the record, the stage and the lock live."""
    try:
        locks.private_dir(path)
    except WwuError as err:
        raise ClusterError(str(err))


@contextlib.contextmanager
def lock(path: str, timeout: int, what: str) -> Iterator[None]:
    """An exclusive flock on ``path`` (in a directory only root can use),
    waited for at most ``timeout`` seconds; ClusterError names the holder."""
    held = contextlib.ExitStack()
    try:
        held.enter_context(locks.exclusive(
            os.path.dirname(path), os.path.basename(path), timeout, what,
            "wait until it ends or stop it, then try again"))
    except WwuError as err:
        raise ClusterError(str(err))
    with held:
        yield


def copy_file(src: str, dest: str, mode: int) -> None:
    """Copy bytes with ``mode`` set before any byte is written, owner and
    mtime kept, and no extended attributes (the origin's ACL means other
    users on the peer)."""
    st = os.stat(src)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with open(src, "rb") as f:
            data = f.read()
        os.write(fd, data)
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))


def intended_mode(path: str) -> int:
    """The mode certbot meant: group bits from the ACL's owning-group entry,
    not the mask that ``stat`` shows once an ACL exists."""
    from certbot_wwu import grants
    mode = os.stat(path).st_mode & 0o7777
    return (mode & ~0o070) | (grants.group_access(path) << 3)


def mkdirs(root: str, relative: str, modes: Sequence[int]) -> str:
    path = root
    for part, mode in zip(relative.split("/"), modes):
        path = os.path.join(path, part)
        if not os.path.isdir(path):
            os.mkdir(path, 0o700)
        os.chmod(path, mode)
    return path
