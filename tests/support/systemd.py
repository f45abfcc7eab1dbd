"""The recording systemctl stand-in (bin/systemctl), seen from a test."""
import os
from typing import Dict, List

BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


class RecordingSystemctl(object):
    def __init__(self, directory: str) -> None:
        self.dir = directory
        for sub in ("failed", "dead", "inactive"):
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
        """Calls that act on a unit (not status queries)."""
        return [c for c in self.calls() if not c.startswith("is-active")]

    def clear(self) -> None:
        try:
            os.unlink(os.path.join(self.dir, "calls"))
        except FileNotFoundError:
            pass

    def fail(self, unit: str, how: str = "failed") -> None:
        open(os.path.join(self.dir, how, unit), "w").close()

    def heal(self, unit: str) -> None:
        for sub in ("failed", "dead", "inactive"):
            try:
                os.unlink(os.path.join(self.dir, sub, unit))
            except FileNotFoundError:
                pass
