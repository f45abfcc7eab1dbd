"""One deployment: Settings + Lineage -> plan -> ACL grants -> verify -> units.

Used by the certbot installer and by the ``certbot-wwu`` command alike.
"""
import grp
import hashlib
import logging
import os
import pwd
import ssl
from typing import Dict, Iterable, List, Optional

from certbot_wwu import copies, grants, locks, tlscheck
from certbot_wwu.batch import Batch
from certbot_wwu.errors import CopyError
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import DEFAULT_TIMEOUT, Settings
from certbot_wwu.state import State, lineage_lock, state_dir

logger = logging.getLogger(__name__)


class Copied(object):
    """A switch of copies (to lineage version ``version``) that a failed unit
    action can undo."""

    def __init__(self, dest: str, previous: Optional[str], files: List[str],
                 version: int) -> None:
        self.dest = dest
        self.previous = previous
        self.files = files
        self.version = version


class Report(object):
    """What a deployment did (or, in a dry run, would do)."""

    def __init__(self, lineage: Lineage, version: int) -> None:
        self.lineage = lineage
        self.version = version
        self.lines = []  # type: List[str]
        self.changed = 0
        self.copied = None  # type: Optional[Copied]

    def add(self, line: str) -> None:
        logger.info("%s: %s", self.lineage.name, line)
        self.lines.append(line)


def _plan(settings: Settings, lineage: Lineage, state: State,
          principals: Optional[List[grants.Principal]] = None):
    files = lineage.current()
    version = lineage.version(files)
    if principals is None:
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
        logger.info("%s: reset the owning group's access to %s (certbot had "
                    "copied the previous key's ACL mask) and kept masked entries "
                    "masked", lineage.name, files["privkey"])


def copy_spec(settings: Settings) -> copies.CopySpec:
    """Resolve the copy owner and read the PKCS#12 password (never logged)."""
    user, group = settings.copy_owner
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        raise CopyError("Copy owner {!r} does not exist on this host; create it "
                        "or correct --wwu-acl-copy-owner.".format(user))
    try:
        gid = grp.getgrnam(group).gr_gid if group else None
    except KeyError:
        raise CopyError("Copy group {!r} does not exist on this host; create it "
                        "or correct --wwu-acl-copy-owner.".format(group))
    password = None
    if settings.p12_password_file:
        password = copies.read_password(settings.p12_password_file)
        if not password and not settings.p12_empty_password:
            raise CopyError("The PKCS#12 password file {} is empty; write a "
                            "password into it, or ask for a bundle without one "
                            "with --wwu-acl-p12-empty-password.".format(
                                settings.p12_password_file))
    elif settings.p12_empty_password:
        password = b""
    spec = copies.CopySpec(settings.copy_to, uid, gid, settings.copy_mode,
                           settings.copy_formats, password, settings.p12_encryption)
    copies.check_destination(spec.dest)
    return spec


def _source(spec: copies.CopySpec, lineage: Lineage, files: Dict[str, str]) -> dict:
    with open(files["cert"]) as f:
        cert = tlscheck.fingerprint(ssl.PEM_cert_to_DER_cert(f.read()))
    source = {"lineage": lineage.live_dir, "cert_sha256": cert, "uid": spec.uid,
              "gid": spec.group, "key_mode": spec.key_mode, "formats": list(spec.formats)}
    if "pkcs12" in spec.formats:  # a changed encryption rewrites the bundle
        source["p12_encryption"] = spec.p12_encryption
    return source


def copies_current(spec: copies.CopySpec, lineage: Lineage,
                   files: Dict[str, str]) -> bool:
    return (copies.current_source(spec.dest) == _source(spec, lineage, files)
            and copies.intact(spec))


def _refuse_other_lineage(spec: copies.CopySpec, lineage: Lineage) -> None:
    """One lineage per copy directory: two would flip the copies between
    them on every timer run."""
    source = copies.current_source(spec.dest)
    other = source.get("lineage") if source else None
    if other and other != lineage.live_dir:
        raise CopyError(
            "The copy directory {} already holds the copies of {}; one directory "
            "serves one certificate, so name another --wwu-acl-copy-to for {} (or "
            "empty {} if {} no longer uses it).".format(
                spec.dest, other, lineage.name, spec.dest, other))


def _copies_lock(spec: copies.CopySpec, lineage: Lineage, timeout: float):
    """Root's lock for one copy directory (never a file in DEST, which the
    copy owner could hold to stall every renewal)."""
    name = "copies-{}.lock".format(
        hashlib.sha256(spec.dest.encode("utf-8", "surrogateescape")).hexdigest()[:16])
    return locks.exclusive(state_dir(lineage), name, timeout,
                           "Writing copies to " + spec.dest)


def write_copies(spec: copies.CopySpec, lineage: Lineage, files: Dict[str, str],
                 timeout: float = DEFAULT_TIMEOUT) -> Optional[Copied]:
    """A fresh, verified set made current in one rename (None: already
    current); every older set but the previous one is pruned either way."""
    with _copies_lock(spec, lineage, timeout):
        copies.prepare_destination(spec)
        _refuse_other_lineage(spec, lineage)
        if copies_current(spec, lineage, files):
            copies.prune(spec.dest)
            return None
        material = {}
        for kind in KINDS:
            with open(files[kind], "rb") as f:
                material[kind] = f.read()
        version_dir = copies.write_version(spec, material, lineage.names(),
                                           _source(spec, lineage, files))
        names = copies.file_names(spec.formats)
        previous = copies.switch(spec.dest, version_dir, names)
        copies.prune(spec.dest, previous)
        return Copied(spec.dest, previous, names, lineage.version(files))


def deploy(settings: Settings, lineage: Lineage, dry_run: bool = False) -> Report:
    """Grant exactly the configured principals read access to the current
    files and/or write current copies. Callers run :func:`secure_key` first.

    Everything the deployment acts on (state, current version, plan, copy
    source) is read under the lineage lock: a deployment that waited for a
    renewal deploys what is current when it gets the lock.
    """
    spec = copy_spec(settings) if settings.copy_to else None
    if dry_run:
        return _dry_run(settings, lineage, spec)
    configured = grants.resolve(settings.users, settings.groups)
    if configured:
        grants.check_supported(lineage.archive_dir)
    with lineage_lock(lineage, settings.timeout):
        state = State.load(lineage)
        files = lineage.current()
        version = lineage.version(files)
        report = Report(lineage, version)
        leftovers = grants.remove_stray_defaults(lineage, [p.key for p in configured])
        if leftovers:
            report.add(leftovers)
        if configured or state.principals:
            plan, principals, _ = _plan(settings, lineage, state, configured)
            if not configured:
                grants.check_supported(os.path.dirname(plan.key))
            _grant(plan, principals, lineage, state, version, report)
        if spec is not None:
            report.copied = write_copies(spec, lineage, files, settings.timeout)
            if report.copied:
                report.add("wrote copies of version {} to {}".format(version, spec.dest))
        state.save()
    return report


def _dry_run(settings: Settings, lineage: Lineage,
             spec: Optional[copies.CopySpec]) -> Report:
    state = State.load(lineage)
    files = lineage.current()
    report = Report(lineage, lineage.version(files))
    if settings.users or settings.groups or state.principals:
        plan, _, _ = _plan(settings, lineage, state)
        for line in _changes(plan):
            report.add("would " + line)
    if spec is not None and not copies_current(spec, lineage, files):
        report.add("would write {} to {} (owner {}, key mode {:04o})".format(
            ", ".join(copies.file_names(spec.formats)), spec.dest,
            ":".join(p for p in settings.copy_owner if p), spec.key_mode))
    if not report.lines:
        report.add("nothing to change")
    return report


def _rwx(bits: int) -> str:
    return "".join(c if bits & b else "-" for c, b in (("r", 4), ("w", 2), ("x", 1)))


def _changes(plan: grants.Plan) -> List[str]:
    """What applying ``plan`` would change, by name and ``r-x`` (only what
    differs from the ACLs on disk now)."""
    lines = []
    for path, add in plan.grant:
        entries = grants.read_acl(path) if os.path.exists(path) else {}
        mask = entries.get(("m", None), 7)
        wanted = ["{} {}".format(grants.describe(key), _rwx(bits))
                  for key, bits in sorted(add.items(), key=str)
                  if entries.get(key) != bits or bits & ~mask]
        if wanted:
            lines.append("grant {} on {}".format(", ".join(wanted), path))
    for path, keys in plan.revoke:
        entries = grants.read_acl(path) if os.path.exists(path) else {}
        gone = [grants.describe(key) for key in keys if key in entries]
        if gone:
            lines.append("revoke {} on {}".format(", ".join(gone), path))
    return lines


def _grant(plan: grants.Plan, principals: list, lineage: Lineage, state: State,
           version: int, report: Report) -> None:
    granted = [list(p) for p in principals]
    if state.known:
        state.granted = sorted(set(state.granted) | {version})
        state.principals = state.principals + [
            p for p in granted if p not in state.principals]
        state.save()
    report.changed = grants.apply(plan)
    grants.verify(lineage, principals)
    report.add("{} can read version {} ({} ACLs changed)".format(
        ", ".join(str(p) for p in principals) or "nobody", version, report.changed))
    state.granted = [version] if principals else []
    state.principals = granted


def _readers(settings: Settings) -> str:
    who = ["user " + u for u in settings.users] + ["group " + g for g in settings.groups]
    return ", ".join(who)


def summary(settings: Settings, lineage: Lineage, pending: Iterable[str] = (),
            acted: bool = True) -> str:
    """The one line after a deployment: who can read which version, where
    the copies are, which unit got which action and what came back."""
    version = lineage.version()
    parts = []
    readers = _readers(settings)
    if readers:
        parts.append("{} can read version {}".format(readers, version))
    if settings.copy_to:
        owner = ":".join(p for p in settings.copy_owner if p)
        parts.append("copies of version {} in {} ({}, owner {}, key mode {:04o})".format(
            version, settings.copy_to, ",".join(settings.copy_formats), owner,
            settings.copy_mode))
    pending = set(pending)
    units = []
    for unit in settings.units:
        if settings.action == "none":
            units.append("{}: action none, left alone".format(unit))
        elif unit in pending:
            units.append("{}: {} after the last certificate that names it".format(
                unit, settings.action))
        elif acted:
            units.append("{}: {}, active".format(unit, settings.action))
        else:
            units.append("{}: would {}".format(unit, settings.action))
    parts.append("; ".join(units) if units else "no unit to act on")
    return "{}: {}".format(lineage.name, "; ".join(parts))


def needs_deploy(settings: Settings, lineage: Lineage) -> bool:
    """Whether the lineage drifted from the last deployment (no fork, no writes)."""
    state = State.load(lineage)
    if not state.known:
        return True
    configured = grants.resolve(settings.users, settings.groups)
    if grants.stray_defaults(lineage, [p.key for p in configured]):
        return True
    if settings.users or settings.groups or state.principals:
        plan, principals, version = _plan(settings, lineage, state)
        if principals and state.granted != [version]:
            return True
        if sorted(state.principals) != sorted(list(p) for p in principals):
            return True
        if grants.missing(plan):
            return True
    if settings.copy_to:
        spec = copy_spec(settings)
        return (not copies_current(spec, lineage, lineage.current())
                or copies.prunable(spec.dest))
    return False


def needs_action(lineage: Lineage) -> bool:
    """Whether the units have not yet been acted on for the current version."""
    return State.load(lineage).acted_version != lineage.version()


def act(settings: Settings, lineage: Lineage, copied: Optional[Copied] = None) -> None:
    """Act on the units now; remember success so the timer does not repeat it."""
    one = Batch()
    one.add(settings, lineage, copied)
    one.flush()


def redeploy_if_drifted(settings: Settings, lineage: Lineage) -> Optional[Report]:
    """Redeploy when the grants or copies drifted since the last deployment;
    the report carries the switch of copies, so a failed unit can undo it."""
    if not needs_deploy(settings, lineage):
        return None
    report = deploy(settings, lineage)
    logger.warning("%s: repaired the deployment, which had drifted since "
                   "the last one", lineage.name)
    return report
