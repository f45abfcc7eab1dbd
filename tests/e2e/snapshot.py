"""A comparable picture of a tree: every path's type, mode, owner and ACL."""
import os
from typing import Dict, Tuple

from tests.support.host import getfacl


def snapshot(root: str) -> Dict[str, Tuple]:
    """Everything certbot-wwu could change, except certbot's own logs."""
    picture = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if os.path.islink(path):
                picture[path] = ("link", os.readlink(path))
                continue
            with open(path, "rb") if os.path.isfile(path) else _null() as f:
                content = f.read() if f else b""
            picture[path] = (st.st_mode, st.st_uid, st.st_gid, getfacl(path), content)
    return picture


class _null(object):
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
