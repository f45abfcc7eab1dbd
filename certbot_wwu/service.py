"""systemd unit actions through ``systemctl``, always from an argv list."""
import logging
import shutil
import time
from typing import List, Tuple

from certbot_wwu import process
from certbot_wwu.errors import ServiceError
from certbot_wwu.settings import ACTIONS, DEFAULT_TIMEOUT, unit_name

logger = logging.getLogger(__name__)

SYSTEMCTL = "systemctl"
JOURNALCTL = "journalctl"
COMMAND_TIMEOUT = 120
POLL_INTERVAL = 0.2
#: states from which a unit may still become active
_TRANSIENT = ("activating", "reloading", "deactivating", "refreshing")


def _run(argv: List[str]) -> Tuple[int, str]:
    return process.run(argv, ServiceError, "on a host without systemd use "
                       "--wwu-acl-action none", COMMAND_TIMEOUT)


def strongest(actions: List[str]) -> str:
    """The action that covers all of ``actions`` (see settings.ACTIONS)."""
    return max(actions, key=ACTIONS.index)


def resolve_action(unit: str, action: str) -> str:
    """``auto``: reload when systemd says the unit can, else restart."""
    if action != "auto":
        return action
    code, out = _run([SYSTEMCTL, "show", "-p", "CanReload", "--value", unit])
    return "reload" if code == 0 and out == "yes" else "restart"


def journal_tail(unit: str, lines: int = 10) -> str:
    """The unit's last journal lines, or '' where there is no journal."""
    if shutil.which(JOURNALCTL) is None:
        return ""
    try:
        code, out = _run([JOURNALCTL, "-u", unit, "-n", str(lines), "--no-pager",
                          "-q", "-o", "short"])
    except ServiceError:
        return ""
    if code != 0 or out.startswith(("No journal files", "-- No entries")):
        return ""
    return out


def _failure(unit: str, what: str) -> ServiceError:
    journal = journal_tail(unit)
    if journal:
        what += "; last journal lines: " + " | ".join(journal.splitlines())
    return ServiceError("{}; see 'journalctl -u {}'.".format(what, unit))


def wait_active(unit: str, action: str, timeout: float) -> str:
    """Poll until the unit is active (or, after try-*, inactive); its state."""
    deadline = time.monotonic() + timeout
    while True:
        _, state = _run([SYSTEMCTL, "is-active", unit])
        if state == "active":
            return state
        if state == "inactive" and action.startswith("try-"):
            logger.info("%s is not running; %s left it alone", unit, action)
            return state
        if state not in _TRANSIENT or time.monotonic() >= deadline:
            if state in _TRANSIENT:
                what = "{} is still {} {} s after 'systemctl {}'".format(
                    unit, state, timeout, action)
            else:
                what = "{} is {} after 'systemctl {}'".format(
                    unit, state or "in an unknown state", action)
            raise _failure(unit, what)
        time.sleep(POLL_INTERVAL)


def reload_unit(unit: str, action: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run ``systemctl ACTION UNIT`` and wait until the unit is back.

    Returns the action that ran (``auto`` resolved).
    """
    unit = unit_name(unit)
    if action == "none":
        return action
    action = resolve_action(unit, action)
    code, out = _run([SYSTEMCTL, action, unit])
    if code != 0:
        raise _failure(unit, "'systemctl {} {}' failed (exit {}){}".format(
            action, unit, code, ": " + out.splitlines()[-1] if out else ""))
    wait_active(unit, action, timeout)
    logger.info("Ran systemctl %s %s; the unit is active", action, unit)
    return action


def act(units: List[str], action: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Act on every unit, even after one failed; then report all failures."""
    failures = []
    for unit in units:
        try:
            reload_unit(unit, action, timeout)
        except ServiceError as err:
            failures.append(str(err))
    if failures:
        raise ServiceError(" ".join(failures))
