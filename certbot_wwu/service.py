"""systemd unit actions through ``systemctl``, always from an argv list."""
import logging
import shutil
import time
from typing import Dict, List, Sequence, Tuple

from certbot_wwu import process
from certbot_wwu.errors import ServiceError
from certbot_wwu.settings import ACTIONS, DEFAULT_SETTLE, DEFAULT_TIMEOUT, unit_name

logger = logging.getLogger(__name__)

SYSTEMCTL = "systemctl"
JOURNALCTL = "journalctl"
COMMAND_TIMEOUT = 120
POLL_INTERVAL = 0.2
#: states from which a unit may still become active
_TRANSIENT = ("activating", "reloading", "deactivating", "refreshing")


def run(argv: List[str]) -> Tuple[int, str]:
    """Every systemctl and journalctl of this module: process.run bounded by
    COMMAND_TIMEOUT, a failure to start one as ServiceError naming the remedy."""
    return process.run(argv, ServiceError, "on a host without systemd use "
                       "--wwu-acl-action none", COMMAND_TIMEOUT)


def systemctl(*args: str) -> Tuple[int, str]:
    """``systemctl ARGS``: exit status and output, bounded in time (for
    read-only questions such as is-enabled; actions go through reload_unit)."""
    return run([SYSTEMCTL] + list(args))


def show(unit: str, properties: Sequence[str]) -> Dict[str, str]:
    """``systemctl show -p A,B UNIT`` as a dict; {} where systemctl fails."""
    code, out = systemctl("show", "-p", ",".join(properties), unit)
    if code != 0:
        return {}
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def strongest(actions: List[str]) -> str:
    """The action that covers all of ``actions`` (see settings.ACTIONS)."""
    return max(actions, key=ACTIONS.index)


def resolve_action(unit: str, action: str) -> str:
    """``auto``: reload when systemd says the unit can, else restart."""
    if action != "auto":
        return action
    code, out = run([SYSTEMCTL, "show", "-p", "CanReload", "--value", unit])
    return "reload" if code == 0 and out == "yes" else "restart"


def journal_tail(unit: str, lines: int = 10) -> str:
    """The unit's last journal lines, or '' where there is no journal."""
    if shutil.which(JOURNALCTL) is None:
        return ""
    try:
        code, out = run([JOURNALCTL, "-u", unit, "-n", str(lines), "--no-pager",
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
        _, state = run([SYSTEMCTL, "is-active", unit])
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


def unit_status(unit: str) -> Tuple[str, int]:
    """The unit's ActiveState and MainPID (0: no main process) in one call."""
    values = show(unit, ("ActiveState", "MainPID"))
    try:
        pid = int(values.get("MainPID", "0"))
    except ValueError:
        pid = 0
    return values.get("ActiveState", ""), pid


def settle(unit: str, action: str, window: float) -> None:
    """Stayed up: still active, with the same MainPID, for ``window`` seconds.

    A ``Type=simple`` unit is active the moment its process forks, so a
    daemon that fails to load its new key and exits half a second later
    would otherwise count as having come back. A unit without a main process
    (MainPID 0 while active) has nothing that could still die.
    """
    if window <= 0:
        return
    deadline = time.monotonic() + window
    state, pid = unit_status(unit)
    if state == "active" and pid == 0:
        # oneshot with RemainAfterExit, a target, a socket: its work is done
        logger.debug("%s has no main process to watch", unit)
        return
    while True:
        now_state, now_pid = unit_status(unit)
        if now_state != "active" or now_pid != pid:
            if now_state == "active":
                change = "its main process {} was replaced by {}".format(pid, now_pid)
            else:
                change = "it is {}".format(now_state or "in an unknown state")
            raise _failure(unit, "{} did not stay up after 'systemctl {}': it was "
                                 "active, but within {:g} s {}".format(
                                     unit, action, window, change))
        if time.monotonic() >= deadline:
            return
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


def reload_unit(unit: str, action: str, timeout: float = DEFAULT_TIMEOUT,
                settle_window: float = DEFAULT_SETTLE) -> str:
    """Run ``systemctl ACTION UNIT``, wait until the unit is back and check
    that it stays up for ``settle_window`` seconds.

    Returns the action that ran (``auto`` resolved).
    """
    unit = unit_name(unit)
    if action == "none":
        return action
    action = resolve_action(unit, action)
    code, out = run([SYSTEMCTL, action, unit])
    if code != 0:
        # systemctl's first line gives the reason ("Job for X failed because
        # ..."); the lines after it only point to 'systemctl status'
        raise _failure(unit, "'systemctl {} {}' failed (exit {}){}".format(
            action, unit, code, ": " + out.splitlines()[0] if out else ""))
    if wait_active(unit, action, timeout) != "active":
        return action
    settle(unit, action, settle_window)
    logger.info("Ran systemctl %s %s; the unit is active and stayed up for %g s",
                action, unit, settle_window)
    return action


def act(units: List[str], action: str, timeout: float = DEFAULT_TIMEOUT,
        settle_window: float = DEFAULT_SETTLE) -> None:
    """Act on every unit, even after one failed; then report all failures."""
    failures = []
    for unit in units:
        try:
            reload_unit(unit, action, timeout, settle_window)
        except ServiceError as err:
            failures.append(str(err))
    if failures:
        raise ServiceError(" ".join(failures))
