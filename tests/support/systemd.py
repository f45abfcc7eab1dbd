"""The recording systemctl stand-in (bin/systemctl), seen from a test.

Marker directories failed/, dead/ and inactive/ fake a unit's fate; a control
script units/<unit> (see service.TlsService) makes it a real process; a file
canreload/<unit> makes "show -p CanReload --value <unit>" print yes.
"""
import os
from typing import Dict, List

BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


class RecordingSystemctl(object):
    def __init__(self, directory: str) -> None:
        self.dir = directory
        for sub in ("failed", "dead", "inactive", "units", "canreload"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)

    def env(self) -> Dict[str, str]:
        return {"WWU_SYSTEMCTL_DIR": self.dir,
                "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}

    def calls(self) -> List[str]:
        try:
            with open(os.path.join(self.dir, "calls")) as f:
                return [line.rstrip("\n") for line in f]
        except FileNotFoundError:
            return []

    def actions(self) -> List[str]:
        """Calls that act on a unit (not status queries: is-active, show)."""
        return [c for c in self.calls()
                if not c.startswith("is-active") and not c.startswith("show")]

    def clear(self) -> None:
        try:
            os.unlink(os.path.join(self.dir, "calls"))
        except FileNotFoundError:
            pass

    def fail(self, unit: str, how: str = "failed") -> None:
        open(os.path.join(self.dir, how, unit), "w").close()

    def can_reload(self, unit: str, value: bool = True) -> None:
        """Whether "show -p CanReload --value <unit>" says yes."""
        path = os.path.join(self.dir, "canreload", unit)
        if value:
            open(path, "w").close()
        elif os.path.exists(path):
            os.unlink(path)

    def unit_script(self, unit: str) -> str:
        """Where a control script for ``unit`` goes (see service.TlsService)."""
        return os.path.join(self.dir, "units", unit)

    def heal(self, unit: str) -> None:
        for sub in ("failed", "dead", "inactive"):
            try:
                os.unlink(os.path.join(self.dir, sub, unit))
            except FileNotFoundError:
                pass
