"""What the last deployment of a lineage did, so the next one stays cheap.

Kept in ``CONFIG/wwu-acl/NAME.json`` (directory 0700, file 0600): the key
versions that may carry our grants, to whom (ids, since a user may be gone by
the next run), and the version whose unit action succeeded. A deployment
records its version *before* granting, so one that is interrupted leaves a
trace for the next to clean up. Without the file (first run, or a file
someone damaged) the next deployment sweeps the whole archive.
"""
import json
import os
from typing import Any, ContextManager, List, Optional

from certbot_wwu import locks
from certbot_wwu.files import write_atomic
from certbot_wwu.lineage import Lineage


def _version(value: Any) -> Optional[int]:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if ok else None


def _principal(value: Any) -> Optional[list]:
    ok = (isinstance(value, list) and len(value) == 3
          and value[0] in ("user", "group") and isinstance(value[1], str)
          and isinstance(value[2], int) and not isinstance(value[2], bool)
          and value[2] >= 0)
    return list(value) if ok else None


class State(object):
    def __init__(self, path: str, granted: Optional[List[int]] = None,
                 principals: Optional[List[list]] = None,
                 acted_version: Optional[int] = None, known: bool = False) -> None:
        self.path = path
        self.granted = granted or []
        self.principals = principals or []
        self.acted_version = acted_version
        #: False when there was no usable file: grants may be anywhere
        self.known = known
        self._saved = self._data() if known else None  # type: Optional[dict]

    @classmethod
    def load(cls, lineage: Lineage) -> "State":
        path = os.path.join(state_dir(lineage), lineage.name + ".json")
        try:
            with open(path) as f:
                data = json.load(f)
            granted = [_version(v) for v in data["granted"]]
            principals = [_principal(p) for p in data["principals"]]
            acted = data.get("acted_version")
        except (OSError, ValueError, LookupError, TypeError, AttributeError):
            return cls(path)
        if None in granted or None in principals:
            return cls(path)
        return cls(path, sorted(set(granted)), principals, _version(acted), True)

    def _data(self) -> dict:
        """A detached copy (no lists shared with the live attributes)."""
        return json.loads(json.dumps({"granted": self.granted,
                                      "principals": self.principals,
                                      "acted_version": self.acted_version}))

    def save(self) -> None:
        """Write when something changed. Not fsync'ed: a state lost in a
        crash only makes the next deployment sweep the archive once."""
        if self.known and self._data() == self._saved:
            return
        locks.private_dir(os.path.dirname(self.path))
        write_atomic(self.path, json.dumps(self._data(), sort_keys=True) + "\n",
                     0o600, durable=False)
        self.known = True
        self._saved = self._data()


def state_dir(lineage: Lineage) -> str:
    """CONFIG/wwu-acl: root's own directory for state and locks."""
    return os.path.join(lineage.config_dir, "wwu-acl")


def lineage_lock(lineage: Lineage, timeout: float) -> ContextManager[None]:
    """One deployment of a lineage at a time (a manual install while the
    timer renews): an exclusive flock on CONFIG/wwu-acl/NAME.lock, waited
    for at most ``timeout`` seconds."""
    return locks.exclusive(state_dir(lineage), lineage.name + ".lock", timeout,
                           "Deploying " + lineage.name)
