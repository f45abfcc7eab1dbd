"""systemd unit actions through ``systemctl``, always from an argv list."""
import logging
import subprocess
from typing import List, Sequence, Tuple

from certbot_wwu.errors import ServiceError
from certbot_wwu.settings import unit_name

logger = logging.getLogger(__name__)

SYSTEMCTL = "systemctl"
COMMAND_TIMEOUT = 120


def _run(argv: List[str]) -> Tuple[int, str]:
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True)
    except OSError as err:
        raise ServiceError(
            "Cannot run {}: {}; on a host without systemd use --wwu-acl-action "
            "none.".format(argv[0], err.strerror or err))
    try:
        out, _ = proc.communicate(timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ServiceError("'{}' did not finish within {} seconds.".format(
            " ".join(argv), COMMAND_TIMEOUT))
    return proc.returncode, out.strip()


def reload_unit(unit: str, action: str) -> None:
    """Run ``systemctl ACTION UNIT`` and check the unit is active afterwards."""
    unit = unit_name(unit)
    if action == "none":
        return
    code, out = _run([SYSTEMCTL, action, unit])
    if code != 0:
        raise ServiceError(
            "'systemctl {} {}' failed (exit {}){}; see 'journalctl -u {}'.".format(
                action, unit, code, ": " + out.splitlines()[-1] if out else "", unit))
    code, state = _run([SYSTEMCTL, "is-active", unit])
    if action.startswith("try-") and state == "inactive":
        logger.info("%s is not running; try-%s left it alone", unit, action[4:])
        return
    if state != "active":
        raise ServiceError(
            "{} is {} after 'systemctl {}'; see 'journalctl -u {}'.".format(
                unit, state or "in an unknown state", action, unit))
    logger.info("Ran systemctl %s %s; the unit is active", action, unit)


def act(units: Sequence[str], action: str) -> None:
    """Act on every unit, even after one failed; then report all failures."""
    failures = []
    for unit in units:
        try:
            reload_unit(unit, action)
        except ServiceError as err:
            failures.append(str(err))
    if failures:
        raise ServiceError(" ".join(failures))
