"""Running a command: always an argv list, never a shell, always bounded."""
import subprocess
from typing import List, Tuple, Type

from certbot_wwu.errors import WwuError

COMMAND_TIMEOUT = 120


def run(argv: List[str], error: Type[WwuError], remedy: str,
        timeout: float = COMMAND_TIMEOUT) -> Tuple[int, str]:
    """Exit status and output (stdout + stderr, stripped).

    A command that cannot start or does not finish raises ``error`` with one
    sentence ending in ``remedy``.
    """
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True)
    except OSError as err:
        raise error("Cannot run {}: {}; {}.".format(argv[0], err.strerror or err, remedy))
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise error("'{}' did not finish within {} seconds; {}.".format(
            " ".join(argv), timeout, remedy))
    return proc.returncode, out.strip()
