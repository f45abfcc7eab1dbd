"""What the last deployment of a lineage did, so the next one stays cheap.

Kept in ``CONFIG/wwu-acl/NAME.json`` (directory 0700, file 0600): the key
version that was granted, to whom (ids, since a user may be gone by the next
run), and the version whose unit action succeeded. Without it (first run,
or a file someone damaged) the next deployment sweeps the whole archive.
"""
import json
import os
from typing import List, Optional

from certbot_wwu.files import write_atomic
from certbot_wwu.lineage import Lineage


class State(object):
    def __init__(self, path: str, version: Optional[int] = None,
                 principals: Optional[List[list]] = None,
                 acted_version: Optional[int] = None) -> None:
        self.path = path
        self.version = version
        self.principals = principals or []
        self.acted_version = acted_version

    @classmethod
    def load(cls, lineage: Lineage) -> "State":
        path = os.path.join(lineage.config_dir, "wwu-acl", lineage.name + ".json")
        try:
            with open(path) as f:
                data = json.load(f)
            version = data.get("version")
            acted = data.get("acted_version")
            principals = [list(p) for p in data.get("principals", [])
                          if isinstance(p, list) and len(p) == 3
                          and p[0] in ("user", "group") and isinstance(p[2], int)]
            if not isinstance(version, int):
                version = None
            if not isinstance(acted, int):
                acted = None
            return cls(path, version, principals, acted)
        except (OSError, ValueError, AttributeError):
            return cls(path)

    def save(self) -> None:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        data = {"version": self.version, "principals": self.principals,
                "acted_version": self.acted_version}
        write_atomic(self.path, json.dumps(data, sort_keys=True) + "\n", 0o600)
