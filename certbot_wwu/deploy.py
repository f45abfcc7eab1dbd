"""One deployment: Settings + Lineage -> plan -> ACL grants -> verify -> units.

Used by the certbot installer and by the ``certbot-wwu`` command alike.
"""
import logging
import os
from typing import List

from certbot_wwu import grants
from certbot_wwu.batch import Batch
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import Settings
from certbot_wwu.state import State

logger = logging.getLogger(__name__)


class Report(object):
    """What a deployment did (or, in a dry run, would do)."""

    def __init__(self, lineage: Lineage, version: int) -> None:
        self.lineage = lineage
        self.version = version
        self.lines = []  # type: List[str]
        self.changed = 0

    def add(self, line: str) -> None:
        logger.info("%s: %s", self.lineage.name, line)
        self.lines.append(line)


def _plan(settings: Settings, lineage: Lineage, state: State):
    files = lineage.current()
    version = lineage.version(files)
    principals = grants.resolve(settings.users, settings.groups)
    keys = {p.key for p in principals}
    old_keys = {("u" if kind == "user" else "g", pid)
                for kind, _, pid in state.principals}
    old_versions = state.granted if state.known else lineage.versions()
    revoke_files = [lineage.archive_file(kind, v)
                    for v in old_versions if v != version for kind in KINDS]
    result = grants.plan(lineage, files, principals, revoke_files,
                         sorted(keys | old_keys, key=str),
                         sorted(old_keys - keys, key=str))
    result.key_group = grants.key_group_intent(lineage, version)
    return result, principals, version


def secure_key(lineage: Lineage) -> None:
    """Close the owning group's access that certbot copied from the mask.

    Runs before anything is validated, so a deployment that stops on an
    error still leaves the key readable by nobody it should not be.
    """
    files = lineage.current()
    version = lineage.version(files)
    if grants.secure_key(files["privkey"], grants.key_group_intent(lineage, version)):
        logger.info("%s: reset the owning group's access to %s, which "
                    "certbot had copied from the previous key's ACL mask",
                    lineage.name, files["privkey"])


def deploy(settings: Settings, lineage: Lineage, dry_run: bool = False) -> Report:
    """Grant exactly the configured principals read access to the current files."""
    if not dry_run:
        secure_key(lineage)
    state = State.load(lineage)
    plan, principals, version = _plan(settings, lineage, state)
    report = Report(lineage, version)
    if dry_run:
        for line in plan.describe():
            report.add("would " + line)
        return report
    grants.check_supported(os.path.dirname(plan.key))
    granted = [list(p) for p in principals]
    if state.known:
        state.granted = sorted(set(state.granted) | {version})
        state.principals = state.principals + [
            p for p in granted if p not in state.principals]
        state.save()
    report.changed = grants.apply(plan)
    grants.verify(lineage, principals)
    report.add("{} can read version {} ({} ACLs changed)".format(
        ", ".join(str(p) for p in principals), version, report.changed))
    state.granted = [version]
    state.principals = granted
    state.save()
    return report


def needs_deploy(settings: Settings, lineage: Lineage) -> bool:
    """Whether the lineage drifted from the last deployment (no fork, no writes)."""
    state = State.load(lineage)
    plan, principals, version = _plan(settings, lineage, state)
    if not state.known or state.granted != [version]:
        return True
    if sorted(state.principals) != sorted(list(p) for p in principals):
        return True
    return bool(grants.missing(plan))


def needs_action(lineage: Lineage) -> bool:
    """Whether the units have not yet been acted on for the current version."""
    return State.load(lineage).acted_version != lineage.version()


def act(settings: Settings, lineage: Lineage) -> None:
    """Act on the units now; remember success so the timer does not repeat it."""
    one = Batch()
    one.add(settings, lineage)
    one.flush()


def redeploy_if_drifted(settings: Settings, lineage: Lineage) -> bool:
    """Redeploy when the grants drifted since the last deployment."""
    if not needs_deploy(settings, lineage):
        return False
    deploy(settings, lineage)
    logger.warning("%s: repaired the ACL grants, which had drifted since "
                   "the last deployment", lineage.name)
    return True


def heal(settings: Settings, lineage: Lineage) -> None:
    """The renewal timer's check: redeploy what drifted, finish a missed action."""
    redeploy_if_drifted(settings, lineage)
    if needs_action(lineage):
        act(settings, lineage)
