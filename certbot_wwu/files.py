"""Small file helpers shared by the modules that write configuration."""
import os
import tempfile


def write_atomic(path: str, data: str, mode: int, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` in one rename: readers see old or new.

    The temporary file gets ``mode`` before any byte is written. ``durable``
    also waits for the disk (fsync of file and directory); a cache that can
    be rebuilt does without.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                               dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = ""
        if durable:
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            os.unlink(tmp)
