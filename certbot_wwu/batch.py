"""Unit actions, once per unit per certbot run.

certbot renews lineages one after another in one process, gives each one a
fresh installer instance and calls ``restart()`` once per renewed lineage, so
a service with five certificates would restart five times. Actions are
therefore collected here, process-wide (``RUN``), and a unit is acted on by
the *last* lineage of the run that names it: at that lineage's ``restart()``
when it was renewed, else at its ``generic_updates()``, which certbot calls
for every lineage with this installer, due or not, on every supported
version. By then the files of all lineages for that unit are in place, and an
error raised there fails that lineage, so it reaches certbot's exit code.

Should a later lineage fail before its turn, whatever is still pending is
acted on when the process exits (and logged); the state file still marks
those lineages as not acted on, so the next timer run finishes the job.
"""
import logging
import ssl
from typing import Any, Dict, Iterable, List, Optional, Set

from certbot_wwu import copies, service, tlscheck
from certbot_wwu.errors import ServiceError
from certbot_wwu.lineage import Lineage
from certbot_wwu.settings import Settings
from certbot_wwu.state import State

logger = logging.getLogger(__name__)


def mark_acted(lineage: Lineage, version: Optional[int] = None) -> None:
    """Remember that the units saw ``version`` (default: the current one)."""
    state = State.load(lineage)
    version = version or lineage.version()
    if state.acted_version != version and state.known:
        state.acted_version = version
        state.save()


def confirm_served(settings: Settings, lineage: Lineage) -> None:
    """``--wwu-acl-check``: the service presents the deployed certificate."""
    if not settings.check:
        return
    with open(lineage.live_path("cert")) as f:
        expected = tlscheck.fingerprint(ssl.PEM_cert_to_DER_cert(f.read()))
    names = lineage.names()
    host, port = settings.check
    tlscheck.confirm_served(host, port, tlscheck.server_name_for(host, names),
                            expected, settings.timeout, settings.check_protocol)
    logger.info("%s:%s serves the new certificate of %s", host, port, lineage.name)


class Batch(object):
    """Unit actions waiting for the last lineage that needs them."""

    def __init__(self) -> None:
        self.actions = {}  # type: Dict[str, List[str]]
        self.timeouts = {}  # type: Dict[str, int]
        self.settles = {}  # type: Dict[str, float]
        self.waiting = []  # type: List[list]
        #: live directories of the waiting lineages, for has()
        self._waiting_dirs = {}  # type: Dict[str, int]

    def add(self, settings: Settings, lineage: Lineage, copied: Any = None) -> None:
        """``copied``: the switch of copies (deploy.Copied) to undo on failure."""
        for unit in settings.units:
            self.actions.setdefault(unit, []).append(settings.action)
            self.timeouts[unit] = max(self.timeouts.get(unit, 0), settings.timeout)
            self.settles[unit] = max(self.settles.get(unit, 0), settings.settle)
        self.waiting.append([settings, lineage, set(settings.units), copied])
        self._count(lineage, 1)

    def _count(self, lineage: Lineage, step: int) -> None:
        left = self._waiting_dirs.get(lineage.live_dir, 0) + step
        if left > 0:
            self._waiting_dirs[lineage.live_dir] = left
        else:
            self._waiting_dirs.pop(lineage.live_dir, None)

    def units(self) -> Set[str]:
        return set(self.actions)

    def has(self, lineage: Lineage) -> bool:
        """Whether ``lineage`` waits for its units (O(1))."""
        return lineage.live_dir in self._waiting_dirs

    def flush(self, keep: Iterable[str] = ()) -> None:
        """Act on every pending unit except ``keep``; finish the lineages
        whose units are all done. Raises one error for all failures."""
        keep = set(keep)
        failures = []
        done, failed = set(), set()
        for unit in sorted(set(self.actions) - keep):
            actions = self.actions.pop(unit)
            try:
                service.reload_unit(unit, service.strongest(actions),
                                    self.timeouts.pop(unit), self.settles.pop(unit))
                done.add(unit)
            except ServiceError as err:
                failures.append(str(err))
                failed.add(unit)
        still_waiting = []
        for entry in self.waiting:
            settings, lineage, units, copied = entry
            if units & failed:
                if copied is not None:
                    failures.append(roll_back(settings, copied))
                continue
            units -= done
            if units:
                still_waiting.append(entry)
                continue
            try:
                confirm_served(settings, lineage)
            except ServiceError as err:
                failures.append(str(err) + (
                    " " + roll_back(settings, copied) if copied is not None else ""))
                continue
            mark_acted(lineage, copied.version if copied is not None else None)
        self.waiting = still_waiting
        self._waiting_dirs = {}
        for entry in still_waiting:
            self._count(entry[1], 1)
        if failures:
            raise ServiceError(" ".join(failures))


def roll_back(settings: Settings, copied: Any) -> str:
    """Put the previous copies back and act on the units again; says so."""
    if copied.previous is None:
        return ("There were no earlier copies in {} to go back to; the new "
                "ones stay.".format(copied.dest))
    copies.rollback(copied.dest, copied.previous, copied.files)
    try:
        service.act(list(settings.units), settings.action, settings.timeout,
                    settings.settle)
    except ServiceError as err:
        return ("The previous certificate is back in place in {}, but the units "
                "still fail with it: {}".format(copied.dest, err))
    return ("The previous certificate is back in place in {} and the units run "
            "with it.".format(copied.dest))


RUN = Batch()
_exit_hook = []  # type: List[bool]


def defer_until_exit() -> None:
    """Make sure nothing pending is forgotten if no later lineage acts."""
    if not _exit_hook:
        from certbot import util  # runs in certbot's process only, not in a forked child
        util.atexit_register(_flush_at_exit)
        _exit_hook.append(True)


def _flush_at_exit() -> None:
    if not RUN.waiting and not RUN.actions:
        return
    try:
        RUN.flush()
    except ServiceError as err:
        logger.error("wwu-acl: %s", err)
