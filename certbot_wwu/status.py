"""``certbot-wwu status``: is every certificate usable by its service, now?

Read-only: nothing under the config dir, the copy directories, the units or
the timer changes. Per lineage (every ``renewal/*.conf``, or ``--cert-name``):
names and expiry of the current certificate, its server, whether the wwu-acl
installer is attached and its stored settings are valid, whether each granted
user or group can read the current files (a child process running as that
principal opens them: the kernel decides), whether anyone else can read the
key (every owner, group and ACL entry of the current files, and an outsider's
probe), leftover default ACL entries that would give future keys to
principals nobody configured, whether copies are current, whether the
renewal timer's drift check would redeploy, whether the units were acted on
for the current version and whether they are active (systemd is asked once
per distinct unit), whether the service serves the current certificate at
its check endpoint (``--wwu-acl-check``; all endpoints in parallel, each
bounded by ``--served-timeout``), and whether the manual recipe's deploy hook
is still there. Then the renewal timer: enabled, and with which proxy (and
whether a preset's CA needs one). ``--check-ca`` fetches each server's ACME
directory through exactly the proxy environment the timer gives certbot. A
certbot running meanwhile (its lock in the config, work or logs dir is held)
is mentioned, since what it is switching may look broken for a moment.

Every finding is an item: OK, ATTENTION or INFO, and each ATTENTION has a
severity for monitoring (SEVERITY: CRITICAL when the service cannot use its
certificate now, WARNING when the next renewal or deployment is at risk,
UNKNOWN when status could not tell). Formats: a table and JSON (exit 0 when
no item needs attention, 1 when one does; 2 stays argparse's, for usage
errors), a Nagios/Icinga plugin (``--nagios``: exit 0/1/2/3 for
OK/WARNING/CRITICAL/UNKNOWN) and the Prometheus text format
(``--prometheus``, optionally written atomically to ``--textfile``).
"""
import argparse
import concurrent.futures
import contextlib
import datetime
import glob
import json
import logging
import math
import os
import re
import socket
import ssl
import sys
import time
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Optional, Tuple

from certbot_wwu import (__version__, certbot_host, copies, deploy, grants, presets,
                         recipe, renewalconf, service, timer, tlscheck)
from certbot_wwu.errors import WwuError
from certbot_wwu.files import write_atomic
from certbot_wwu.lineage import (KINDS, Lineage, certificate_validity, no_such_certificate,
                                 read_certificate)
from certbot_wwu.settings import Settings
from certbot_wwu.state import State

logger = logging.getLogger(__name__)

#: certbot's defaults
#: certbot's server when a renewal conf names none
DEFAULT_SERVER = "https://acme-v02.api.letsencrypt.org/directory"

#: fewer days left than this needs attention (certbot renews at 30)
EXPIRY_WARNING_DAYS = 14
#: fewer days left than this is critical for monitoring
EXPIRY_CRITICAL_DAYS = 7
#: seconds to wait for each check endpoint (connect and handshake)
SERVED_TIMEOUT = 5
#: check endpoints asked at the same time
SERVED_WORKERS = 16
#: seconds to wait for a CA's directory
CA_TIMEOUT = 15

OK, ATTENTION, INFO = "ok", "attention", "info"
_MARKERS = {OK: "OK", ATTENTION: "ATTENTION", INFO: "INFO"}

#: severities of ATTENTION items, mildest first (Nagios exit codes below)
WARNING, CRITICAL, UNKNOWN = "warning", "critical", "unknown"
SEVERITIES = (UNKNOWN, WARNING, CRITICAL)
NAGIOS_CODES = OrderedDict([(OK, 0), (WARNING, 1), (CRITICAL, 2), (UNKNOWN, 3)])
#: what each kind of finding means for the service (docs/monitoring.rst):
#: CRITICAL when the service cannot use its current certificate now, or
#: anyone else can read the key; WARNING when the next renewal or deployment
#: is at risk. Items that could not be checked say UNKNOWN themselves.
SEVERITY = {
    "user": CRITICAL, "group": CRITICAL,          # the service cannot read its key
    "access": CRITICAL, "outsider": CRITICAL,     # someone else can
    "copy-destination": CRITICAL, "copies": CRITICAL,
    "served": CRITICAL,                           # the service serves another cert
    "unit": CRITICAL, "certificate": CRITICAL,
    "expiry": WARNING,                            # CRITICAL below --critical
    "defaults": WARNING, "hook": WARNING,         # the manual recipe's leftovers
    "old-key-acl": WARNING,
    "drift": WARNING, "action": WARNING,          # the timer would heal it
    "installer": WARNING, "settings": WARNING, "renewal-conf": WARNING,
    "timer": WARNING, "timer-active": WARNING, "proxy": WARNING, "ca": WARNING,
}

#: ``systemctl is-enabled`` answers that mean the timer runs / does not run
_ENABLED = ("enabled", "enabled-runtime", "alias", "static", "indirect",
            "generated", "transient")
_DISABLED = ("disabled", "masked", "masked-runtime", "linked", "linked-runtime",
             "not-found", "bad")
_CRON_FILES = ("/etc/crontab", "/var/spool/cron/crontabs/root", "/var/spool/cron/root")
_CRON_DIRS = ("/etc/cron.d",)
_WANTS_DIRS = (timer.UNIT_DIR,) + timer.VENDOR_UNIT_DIRS


class StatusError(WwuError):
    """status cannot look at what it was asked to."""


class Item(object):
    """One finding: ``key`` names what was checked, ``level`` OK/ATTENTION/INFO,
    ``severity`` what an ATTENTION means for monitoring (else the level)."""

    def __init__(self, key: str, level: str, text: str,
                 severity: Optional[str] = None) -> None:
        self.key = key
        self.level = level
        self.text = text
        if level != ATTENTION:
            severity = level
        self.severity = severity or SEVERITY.get(key, WARNING)

    def to_dict(self) -> Dict[str, str]:
        return OrderedDict([("item", self.key), ("status", self.level),
                            ("severity", self.severity), ("message", self.text)])


class Section(object):
    """Items under one heading, plus machine-readable facts for --json."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.items = []  # type: List[Item]
        self.data = OrderedDict()  # type: Dict[str, Any]

    def add(self, key: str, level: str, text: str,
            severity: Optional[str] = None) -> None:
        self.items.append(Item(key, level, text, severity))

    @property
    def attention(self) -> List[Item]:
        return [item for item in self.items if item.level == ATTENTION]

    def to_dict(self) -> Dict[str, Any]:
        result = OrderedDict(self.data)  # type: Dict[str, Any]
        result["ok"] = not self.attention
        result["items"] = [item.to_dict() for item in self.items]
        return result


# --- lineage checks ---------------------------------------------------------------

def validity(lineage: Lineage) -> Tuple[datetime.datetime, datetime.datetime]:
    """notBefore and notAfter of the current certificate, in UTC."""
    return certificate_validity(read_certificate(lineage.live_path("cert")))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def expiry_attention(before: datetime.datetime, after: datetime.datetime,
                     now: datetime.datetime) -> bool:
    """Less than EXPIRY_WARNING_DAYS left, or for short-lived certificates
    (Let's Encrypt's six-day profile) less than a third of their lifetime."""
    margin = min(datetime.timedelta(days=EXPIRY_WARNING_DAYS), (after - before) / 3)
    return after - now < margin


class Thresholds(object):
    """Days left below which expiry is a WARNING / CRITICAL (--warning,
    --critical). Unset, they are EXPIRY_WARNING_DAYS and EXPIRY_CRITICAL_DAYS,
    shrunk for short-lived certificates (Let's Encrypt's six-day profile) to a
    third and a sixth of their lifetime."""

    def __init__(self, warning: Optional[float] = None,
                 critical: Optional[float] = None) -> None:
        self.warning = warning
        self.critical = critical

    def days(self, before: datetime.datetime,
             after: datetime.datetime) -> Tuple[float, float]:
        """(warning, critical) in days for a certificate of this lifetime."""
        lifetime = (after - before).total_seconds() / 86400.0
        warning = self.warning if self.warning is not None else min(
            EXPIRY_WARNING_DAYS, lifetime / 3)
        critical = self.critical if self.critical is not None else min(
            EXPIRY_CRITICAL_DAYS, lifetime / 6)
        return warning, critical

    def severity(self, before: datetime.datetime, after: datetime.datetime,
                 now: datetime.datetime) -> Optional[str]:
        """None while enough time is left, else WARNING or CRITICAL."""
        warning, critical = self.days(before, after)
        left = (after - now).total_seconds() / 86400.0
        if left < critical:
            return CRITICAL
        if left < warning:
            return WARNING
        return None


class Checks(object):
    """What one status run shares between its lineages: the expiry
    thresholds and the answers systemd gave (one ``systemctl`` per unit)."""

    def __init__(self, thresholds: Optional[Thresholds] = None,
                 served: bool = True) -> None:
        self.thresholds = thresholds or Thresholds()
        #: connect to the check endpoints (--no-served-check: not)
        self.served = served
        self._units = {}  # type: Dict[str, Tuple[Optional[str], str]]
        #: (section, lineage, host, port) for check_served
        self.pending_served = []  # type: List[Tuple[Section, Lineage, str, int]]

    def unit_state(self, unit: str) -> Tuple[Optional[str], str]:
        """unit_state(UNIT), asked once per unit and run."""
        if unit not in self._units:
            self._units[unit] = unit_state(unit)
        return self._units[unit]


def unit_state(unit: str) -> Tuple[Optional[str], str]:
    """(state, detail): ``systemctl is-active UNIT``; state None if unknown."""
    try:
        code, out = service.systemctl("is-active", unit)
    except WwuError as err:
        return None, str(err)
    state = out.splitlines()[-1].strip() if out else ""
    if code == 0 and state == "active":
        return state, state
    if state and " " not in state:
        return state, state
    return None, "'systemctl is-active {}' exited {}{}".format(
        unit, code, ": " + state if state else "")


def _settings_text(settings: Settings) -> str:
    parts = []
    if settings.users:
        parts.append("users " + ",".join(settings.users))
    if settings.groups:
        parts.append("groups " + ",".join(settings.groups))
    if settings.copy_to:
        parts.append("copies to {} ({})".format(settings.copy_to,
                                               ",".join(settings.copy_formats)))
    if settings.units:
        parts.append("units {} ({})".format(",".join(settings.units), settings.action))
    return "; ".join(parts)


def check_lineage(config_dir: str, name: str, named: bool = False,
                  checks: Optional[Checks] = None) -> Section:
    """Every check of one lineage; ``named``: the user asked for it by name.

    The check endpoint is only recorded (``data["served"]``): check_served
    connects to all of them at once."""
    checks = checks or Checks()
    lineage = Lineage(config_dir, name)
    section = Section(name)
    data = section.data
    data.update([("name", name), ("renewal_conf", lineage.renewal_conf),
                 ("names", []), ("expires", None), ("days_left", None),
                 ("server", None), ("installer_attached", False),
                 ("settings", None), ("principals", []), ("outsider_refused", None),
                 ("unwanted_access", []), ("stray_defaults", []),
                 ("copies_current", None), ("needs_deploy", None),
                 ("needs_action", None), ("version", None), ("units", []),
                 ("served", None), ("last_deployment", None)])
    try:
        params = renewalconf.params(lineage.renewal_conf)
    except WwuError as err:
        section.add("renewal-conf", ATTENTION, str(err))
        params = {}

    # the certificate itself
    live_ok = False
    try:
        data["version"] = lineage.version()
        data["names"] = lineage.names()
        before, after = validity(lineage)
        live_ok = True
    except WwuError as err:
        section.add("certificate", ATTENTION, str(err))
    except (OSError, ValueError) as err:
        section.add("certificate", ATTENTION, "Cannot read the certificate {}: {}.".format(
            lineage.live_path("cert"), getattr(err, "strerror", None) or err))
    if live_ok:
        now = _now()
        days = int((after - now).total_seconds() // 86400)
        data["expires"] = after.strftime("%Y-%m-%dT%H:%M:%SZ")
        data["expires_timestamp"] = int(after.timestamp())
        data["days_left"] = days
        data["thresholds_days"] = list(checks.thresholds.days(before, after))
        when = after.strftime("%Y-%m-%d %H:%M UTC")
        severity = checks.thresholds.severity(before, after, now)
        if days < 0:
            section.add("expiry", ATTENTION, "expired {} days ago ({}); check why "
                        "'certbot renew' did not renew it".format(-days, when),
                        CRITICAL)
        elif severity:
            section.add("expiry", ATTENTION, "expires in {} days ({}); check why "
                        "'certbot renew' did not renew it".format(days, when),
                        severity)
        else:
            section.add("expiry", OK, "expires in {} days ({})".format(days, when))

    server = params.get("server") or None
    data["server"] = server or DEFAULT_SERVER
    section.add("server", INFO, "server {}{}".format(
        data["server"], "" if server else " (certbot's default)"))

    # the installer and its settings
    attached = params.get("installer") == renewalconf.INSTALLER
    data["installer_attached"] = attached
    options = renewalconf.options(params)
    settings = None  # type: Optional[Settings]
    if not attached:
        installer = params.get("installer")
        what = "installer {} attached, not wwu-acl".format(installer) if installer \
            else "installer not attached"
        if options:
            section.add("installer", ATTENTION, "{}, but wwu-acl options are stored: "
                        "renewals will not deploy; attach it with 'certbot install "
                        "--cert-name {} -i wwu-acl ...'".format(what, name))
        else:
            section.add("installer", ATTENTION if named else INFO,
                        "{}: renewals do not deploy it for a service".format(what))
        if live_ok:
            _check_others(section, lineage, [])
        _check_defaults(section, lineage, [], attached=False)
        return section
    try:
        settings = renewalconf.settings(params)
    except WwuError as err:
        section.add("settings", ATTENTION, "invalid stored settings in {}: {}".format(
            lineage.renewal_conf, err))
    else:
        data["settings"] = settings.to_values()
        section.add("installer", OK, "installer wwu-acl attached: {}".format(
            _settings_text(settings)))
    keep = _configured_keys(settings)
    if settings is not None:
        _check_recipe(section, lineage, settings)
    if not live_ok:
        _check_defaults(section, lineage, keep, attached=True)
        return section

    if settings is not None:
        _check_access(section, lineage, settings)
        _check_others(section, lineage, keep)
        _check_defaults(section, lineage, keep, attached=True)
        if settings.copy_to:
            _check_copies(section, lineage, settings)
        try:
            drift = deploy.needs_deploy(settings, lineage)
        except (WwuError, OSError) as err:
            section.add("drift", ATTENTION, "cannot tell whether the deployment "
                        "drifted: {}".format(err))
        else:
            data["needs_deploy"] = drift
            if drift:
                section.add("drift", ATTENTION, "{}: the renewal timer's check "
                            "would redeploy".format(
                                "the deployment drifted" if State.load(lineage).known
                                else "never deployed"))
            else:
                section.add("drift", OK, "deployed as configured: the renewal "
                            "timer's check would change nothing")
    else:
        _check_others(section, lineage, keep)
        _check_defaults(section, lineage, keep, attached=True)

    try:
        pending = deploy.needs_action(lineage)
    except WwuError as err:
        section.add("action", ATTENTION, str(err))
    else:
        data["needs_action"] = pending
        units = settings is not None and bool(settings.units)
        if pending:
            section.add("action", ATTENTION, "{} for version {}: the renewal "
                        "timer would {} now".format(
                            "the units were not acted on" if units
                            else "the deployment did not finish",
                            data["version"], "act" if units else "finish it"))
        else:
            section.add("action", OK, "{} for version {}".format(
                "the units were acted on" if units else "the deployment finished",
                data["version"]))
            if data["needs_deploy"] is False:
                data["last_deployment"] = _deployed_at(lineage)
    if settings is not None:
        for unit in settings.units:
            _check_unit(section, unit, settings.action, checks)
        _plan_served(section, lineage, settings, checks)
    return section


def _deployed_at(lineage: Lineage) -> Optional[int]:
    """When the complete deployment of the current version was recorded:
    the state file is written when a deployment changes what it records."""
    try:
        return int(os.stat(State.load(lineage).path).st_mtime)
    except OSError:
        return None


def _check_recipe(section: Section, lineage: Lineage, settings: Settings) -> None:
    """What the manual recipe left next to the installer (recipe.find): hooks
    that act a second time or grant with setfacl, grants on old keys. Its
    default ACLs are _check_defaults' job."""
    try:
        found = recipe.find(lineage, settings.users, settings.groups, settings.units)
    except WwuError as err:
        section.add("hook", ATTENTION, "cannot look for the manual recipe's "
                    "leftovers: {}".format(err))
        return
    for leftover in found:
        if leftover.kind == "default-acl":
            continue
        text = "the manual recipe left {}".format(leftover)
        if leftover.kind != "hook-script":
            text += "; 'certbot-wwu attach --cert-name {} --take-over' removes it".format(
                lineage.name)
        section.add("old-key-acl" if leftover.kind == "old-key-acl" else "hook",
                    ATTENTION, text)


def _check_access(section: Section, lineage: Lineage, settings: Settings) -> None:
    paths = [lineage.live_path(kind) for kind in KINDS]
    for kind, names in (("user", settings.users), ("group", settings.groups)):
        for name in names:
            entry = OrderedDict([("kind", kind), ("name", name), ("can_read", None),
                                 ("unreadable", [])])  # type: Dict[str, Any]
            section.data["principals"].append(entry)
            try:
                principal = grants.resolve(*(([name], []) if kind == "user"
                                             else ([], [name])))[0]
                results = grants.can_read(paths, *grants.identity(principal))
            except (WwuError, KeyError, OSError) as err:
                section.add(kind, ATTENTION, "cannot check {} {}: {}".format(
                    kind, name, err))
                continue
            denied = [path for path, ok in zip(paths, results) if not ok]
            entry["can_read"] = not denied
            entry["unreadable"] = denied
            if denied:
                section.add(kind, ATTENTION, "{} {} cannot read {}".format(
                    kind, name, ", ".join(denied)))
            else:
                section.add(kind, OK, "{} {} can read the current certificate "
                            "and key".format(kind, name))


def _configured_keys(settings: Optional[Settings]) -> List[grants.Key]:
    """The ACL keys of the configured users and groups that exist here."""
    keys = []  # type: List[grants.Key]
    for users, groups in ([([name], []) for name in settings.users]
                          + [([], [name]) for name in settings.groups]
                          if settings is not None else []):
        try:
            keys.extend(p.key for p in grants.resolve(users, groups))
        except WwuError:
            continue  # reported by _check_access
    return keys


_ACCESS = {grants.R: "read", grants.W: "write", grants.R | grants.W: "read and write"}


def _check_others(section: Section, lineage: Lineage, keep: List[grants.Key]) -> None:
    """Everyone who can read the key (or write a current file) besides root
    and the configured principals: each ACL entry, then an outsider's probe."""
    try:
        found = grants.unwanted_access(lineage, keep)
        key = lineage.target("privkey")
    except (WwuError, OSError) as err:
        section.add("access", ATTENTION, "cannot check the ACL entries of the "
                    "current files: {}".format(getattr(err, "strerror", None) or err))
        found = None
    for access in found or ():
        who = grants.describe(access.key)
        what = _ACCESS[access.bits]
        section.data["unwanted_access"].append(OrderedDict([
            ("path", access.path), ("principal", who), ("access", what),
            ("through", access.role)]))
        if access.role == "owner":
            text = ("{} owns {} and can {} it; certbot's files belong to root "
                    "('chown root {}')".format(who, access.path, what, access.path))
        elif access.role == "group":
            text = ("{}, the owning group, can {} {}, which certbot did not "
                    "give it; narrow the group entry with 'setfacl -m g::{} {}'"
                    .format(who, what, access.path,
                            "---" if access.path == key else "r--", access.path))
        elif access.key in keep:
            text = ("{} can {} {}, but the installer grants it read only; "
                    "'certbot-wwu deploy --cert-name {}' sets it back".format(
                        who, what, access.path, lineage.name))
        else:
            text = ("{} can {} {} although it is not configured for this "
                    "certificate; remove its entry with 'setfacl -x {}:{} {}'".format(
                        who, what, access.path, access.key[0],
                        grants.acl_name(access.key), access.path))
        section.add("access", ATTENTION, text)
    _check_outsider(section, lineage, named=bool(found))


def _check_defaults(section: Section, lineage: Lineage, keep: List[grants.Key],
                    attached: bool) -> None:
    """Default ACL entries for principals not configured: every future key
    would carry them."""
    try:
        stray = grants.stray_defaults(lineage, keep)
    except (WwuError, OSError) as err:
        section.add("defaults", ATTENTION, "cannot read the default ACLs of {}: "
                    "{}".format(lineage.live_dir, getattr(err, "strerror", None) or err))
        return
    if not stray:
        return
    dirs, who = [], []  # type: List[str], List[str]
    for path, key in stray:
        section.data["stray_defaults"].append(OrderedDict([
            ("directory", path), ("principal", grants.describe(key))]))
        if path not in dirs:
            dirs.append(path)
        if grants.describe(key) not in who:
            who.append(grants.describe(key))
    remedy = ("'certbot-wwu deploy --cert-name {}' removes them" if attached else
              "'certbot-wwu attach --cert-name {}' removes them").format(lineage.name)
    section.add("defaults", ATTENTION, "leftover default ACL entries on {} give "
                "every future key to {}, not configured for this certificate; {}, "
                "or run 'setfacl -k {}'".format(
                    ", ".join(grants.short_path(lineage, d) for d in dirs),
                    ", ".join(who), remedy, " ".join(dirs)))


def _check_outsider(section: Section, lineage: Lineage, named: bool = False) -> None:
    key = lineage.live_path("privkey")
    try:
        readable = grants.can_read([key], grants.OUTSIDER_UID, grants.OUTSIDER_GID,
                                   [])[0]
    except WwuError as err:
        section.add("outsider", ATTENTION, "cannot check other users' access: {}"
                    .format(err))
        return
    section.data["outsider_refused"] = not readable
    if readable:
        section.add("outsider", ATTENTION, "any user can read the private key {}; "
                    "chmod o-rwx it".format(key))
    elif named:
        section.add("outsider", OK, "users without an ACL entry cannot read the "
                    "private key")
    else:
        section.add("outsider", OK, "other users cannot read the private key")


def _check_copies(section: Section, lineage: Lineage, settings: Settings) -> None:
    try:
        copies.check_destination(settings.copy_to)
    except WwuError as err:
        # first: a destination earlier builds accepted fails every renewal now
        section.items.insert(0, Item("copy-destination", ATTENTION, (
            "the next deployment will refuse the copy directory: {}".format(err))))
        return
    try:
        spec = deploy.copy_spec(settings)
        current = deploy.copies_current(spec, lineage, lineage.current())
    except (WwuError, OSError, ValueError) as err:
        section.add("copies", ATTENTION, "cannot check the copies in {}: {}".format(
            settings.copy_to, err))
        return
    section.data["copies_current"] = current
    if current:
        section.add("copies", OK, "the copies in {} are current".format(settings.copy_to))
    else:
        section.add("copies", ATTENTION, "the copies in {} are missing, stale or "
                    "changed (owner, mode, formats)".format(settings.copy_to))


def _check_unit(section: Section, unit: str, action: str, checks: Checks) -> None:
    state, detail = checks.unit_state(unit)
    section.data["units"].append(OrderedDict([("unit", unit), ("state", state),
                                              ("active", state == "active")]))
    if state == "active":
        section.add("unit", OK, "{} is active".format(unit))
    elif state == "inactive" and action.startswith("try-"):
        section.add("unit", INFO, "{} is not running ({} leaves it alone)".format(
            unit, action))
    elif state is None:
        section.add("unit", ATTENTION, "state of {} unknown: {}".format(unit, detail),
                    UNKNOWN)
    else:
        section.add("unit", ATTENTION, "{} is {}; see 'systemctl status {}' and "
                    "'journalctl -u {}'".format(unit, state, unit, unit))


# --- served versus current -----------------------------------------------------------

def _endpoint(host: str, port: int) -> str:
    return "[{}]:{}".format(host, port) if ":" in host else "{}:{}".format(host, port)


def _plan_served(section: Section, lineage: Lineage, settings: Settings,
                 checks: Checks) -> None:
    """Record what check_served will ask: the endpoint, the protocol and the
    certificate that should be served (the current version's)."""
    if settings.check is None:
        section.add("served", INFO, "no check endpoint (--wwu-acl-check HOST:PORT): "
                    "whether the service serves the current certificate is not "
                    "checked")
        return
    host, port = settings.check
    names = section.data["names"]
    info = OrderedDict([
        ("endpoint", _endpoint(host, port)),
        ("protocol", settings.check_protocol or tlscheck.DEFAULT_PROTOCOL),
        # the name the deployment's own check sends (SNI, XMPP domain)
        ("server_name", tlscheck.server_name_for(host, names)), ("checked", False),
        ("matches", None), ("current_version", section.data["version"]),
        ("served_version", None), ("served_sha256", None), ("current_sha256", None),
        ("error", None)])  # type: Dict[str, Any]
    section.data["served"] = info
    try:
        with open(lineage.live_path("cert")) as f:
            info["current_sha256"] = tlscheck.fingerprint(
                ssl.PEM_cert_to_DER_cert(f.read()))
    except (OSError, ValueError):
        return  # the certificate item says why
    if not checks.served:
        section.add("served", INFO, "{} not checked (--no-served-check)".format(
            info["endpoint"]))
        return
    checks.pending_served.append((section, lineage, host, port))


def _served_version(lineage: Lineage, sha256: str) -> Optional[int]:
    """Which archived version of the lineage has this certificate."""
    for path in glob.glob(os.path.join(lineage.archive_root, lineage.name, "cert*.pem")):
        number = os.path.basename(path)[len("cert"):-len(".pem")]
        if not number.isdigit():
            continue
        try:
            with open(path) as f:
                if tlscheck.fingerprint(ssl.PEM_cert_to_DER_cert(f.read())) == sha256:
                    return int(number)
        except (OSError, ValueError):
            continue
    return None


def _fetch(host: str, port: int, info: Dict[str, Any], timeout: float) -> bytes:
    return tlscheck.served_certificate(host, port, info["server_name"], timeout,
                                       info["protocol"])


def check_served(checks: Checks, timeout: float) -> None:
    """Connect to every recorded check endpoint, all at once (at most
    SERVED_WORKERS together), each bounded by ``timeout``; add the items."""
    pending, checks.pending_served = checks.pending_served, []
    if not pending:
        return
    workers = min(SERVED_WORKERS, len(pending))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_fetch, host, port, section.data["served"], timeout)
                   for section, _, host, port in pending]
        for (section, lineage, _, _), future in zip(pending, futures):
            _served_item(section, lineage, future, timeout)


def _served_item(section: Section, lineage: Lineage,
                 future: "concurrent.futures.Future[bytes]", timeout: float) -> None:
    info = section.data["served"]
    info["checked"] = True
    units = section.data["settings"]["unit"] if section.data["settings"] else ""
    try:
        der = future.result()
    except (OSError, ssl.SSLError, WwuError) as err:
        info["matches"] = False
        if isinstance(err, socket.timeout):
            info["error"] = "timed out"
        else:
            info["error"] = _one_line(err) if isinstance(err, WwuError) else (
                getattr(err, "strerror", None) or _one_line(err))
        section.add("served", ATTENTION, "{} does not complete a TLS handshake "
                    "within {} s ({}); is {} running and listening there?".format(
                        info["endpoint"], timeout, info["error"],
                        units or "the service"))
        return
    served = tlscheck.fingerprint(der)
    info["served_sha256"] = served
    info["matches"] = served == info["current_sha256"]
    if info["matches"]:
        info["served_version"] = info["current_version"]
        section.add("served", OK, "{} serves the current certificate (version {})"
                    .format(info["endpoint"], info["current_version"]))
        return
    version = _served_version(lineage, served)
    info["served_version"] = version
    remedy = ("reload it ('systemctl reload-or-restart {}')".format(
        units.replace(",", " ")) if units else "reload the service")
    if version is not None:
        section.add("served", ATTENTION, "{} serves version {}, not the current "
                    "version {}: the service has not loaded the renewed "
                    "certificate; {}".format(info["endpoint"], version,
                                             info["current_version"], remedy))
    else:
        section.add("served", ATTENTION, "{} serves a certificate that is not one "
                    "of {} (SHA-256 {}...): the service reads other files, or the "
                    "endpoint belongs to another service; point it at {} and "
                    "{}".format(info["endpoint"], lineage.name, served[:16],
                                lineage.live_dir, remedy))


# --- certbot at work ----------------------------------------------------------------

LOCK_FILE = ".certbot.lock"
PROC_LOCKS = "/proc/locks"


def certbot_locks(directories: List[str]) -> List[Dict[str, Any]]:
    """certbot's own locks (``DIR/.certbot.lock``, fcntl.lockf) held now.

    Read from /proc/locks, never by trying the lock: even a brief shared
    lock of ours would make a certbot starting at that moment give up.
    """
    wanted = {}  # type: Dict[str, str]
    for directory in directories:
        path = os.path.join(os.path.abspath(directory), LOCK_FILE)
        try:
            st = os.stat(path)
        except OSError:
            continue
        wanted["{:02x}:{:02x}:{}".format(os.major(st.st_dev), os.minor(st.st_dev),
                                         st.st_ino)] = path
    if not wanted:
        return []
    try:
        with open(PROC_LOCKS) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    held = []  # type: List[Dict[str, Any]]
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or "->" in fields:  # waiters, not holders
            continue
        path = wanted.get(fields[5])
        if path and fields[4].isdigit():
            held.append(OrderedDict([("lock", path), ("pid", int(fields[4]))]))
    return held


def check_certbot(args: argparse.Namespace) -> Optional[Section]:
    """A running certbot may be switching files: say so (no attention)."""
    held = certbot_locks([args.config_dir, args.work_dir, args.logs_dir])
    if not held:
        return None
    section = Section("certbot")
    section.data["running"] = held
    for lock in held:
        section.add("certbot", INFO, "certbot is running (pid {} holds {}): what "
                    "it is changing may show as attention until it is done".format(
                        lock["pid"], lock["lock"]))
    return section


# --- the renewal timer --------------------------------------------------------------

def timer_enabled(unit: str, root: str) -> Tuple[Optional[bool], str]:
    """(enabled or None if unknown, how we know)."""
    if timer.is_live(root):
        try:
            code, out = service.systemctl("is-enabled", unit)
        except WwuError as err:
            return None, "unknown: {}".format(err)
        state = out.splitlines()[-1].strip() if out else ""
        if state in _ENABLED and code == 0:
            return True, "systemctl is-enabled: " + state
        if state in _DISABLED:
            return False, "systemctl is-enabled: " + state
        return None, "unknown: 'systemctl is-enabled {}' exited {}{}".format(
            unit, code, ": " + state if state else "")
    # an image or a test tree: what 'systemctl --root' would read, links
    unit_file = timer.in_root(root, "{}/{}".format(timer.UNIT_DIR, unit))
    if os.path.islink(unit_file) and os.readlink(unit_file) == "/dev/null":
        return False, "masked"
    for directory in _WANTS_DIRS:
        for link in sorted(glob.glob(timer.in_root(root, "{}/*.wants/{}".format(
                directory, unit)))):
            return True, "link " + link
    return False, "no *.wants link under {}".format(timer.in_root(root, timer.UNIT_DIR))


def cron_renewal(root: str) -> Optional[str]:
    """A cron file under root that runs ``certbot renew`` (not Debian's,
    which does nothing where systemd runs)."""
    paths = [timer.in_root(root, p) for p in _CRON_FILES]
    for directory in _CRON_DIRS:
        paths.extend(sorted(glob.glob(timer.in_root(root, directory + "/*"))))
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if (line and not line.startswith("#") and "certbot" in line
                    and "renew" in line and "/run/systemd/system" not in line):
                return path
    return None


def check_timer(distro: str, root: str) -> Section:
    try:
        info = timer.timer_status(distro, root)
    except WwuError as err:
        section = Section("renewal timer ({})".format(distro))
        section.data.update([("distro", distro), ("enabled", None)])
        section.add("timer", ATTENTION, str(err))
        return section
    unit = info["timer"]
    section = Section("renewal timer {} ({})".format(unit, distro))
    data = section.data
    data.update(info)
    enabled, how = timer_enabled(unit, root)
    data["enabled"] = enabled
    data["enabled_detail"] = how
    if distro == "pip" and not info.get("units_installed"):
        section.add("timer", ATTENTION, "a pip-installed certbot has no renewal "
                    "timer; install one with 'certbot-wwu setup --enable-timer'")
    elif enabled:
        section.add("timer", OK, "{} is enabled ({})".format(unit, how))
        if timer.is_live(root):
            _check_timer_activity(section, unit)
    elif enabled is None:
        section.add("timer", INFO, "whether {} is enabled is {}".format(unit, how))
    else:
        cron = cron_renewal(root)
        data["cron"] = cron
        if cron:
            section.add("timer", INFO, "{} is not enabled ({}); {} runs certbot "
                        "renew".format(unit, how, cron))
        else:
            section.add("timer", ATTENTION, "{} is not enabled ({}): nothing renews "
                        "the certificates; enable it with 'certbot-wwu setup "
                        "--enable-timer'".format(unit, how))
    if info["configured"] and info["proxy"]:
        section.add("proxy", OK, "the renewal service gets the proxy {}{} from {}"
                    .format(info["proxy"], ", no_proxy " + info["no_proxy"]
                            if info["no_proxy"] else "", info["file"]))
    else:
        section.add("proxy", INFO, "no proxy for the renewal service (none in "
                    "{}); needed only where the CA is reached through one".format(
                        info["file"]))
    for problem in info["problems"]:
        section.add("proxy", ATTENTION, problem)
    return section


def _check_timer_activity(section: Section, unit: str) -> None:
    """An enabled timer that is not active waits for the next boot."""
    try:
        props = service.show(unit, ("ActiveState", "NextElapseUSecRealtime"))
    except WwuError as err:
        section.add("timer-active", INFO, "cannot tell whether {} is active: {}".format(
            unit, err))
        return
    state = props.get("ActiveState", "")
    section.data["active"] = state == "active"
    section.data["next_elapse"] = props.get("NextElapseUSecRealtime") or None
    if state == "active":
        nxt = props.get("NextElapseUSecRealtime")
        section.add("timer-active", OK, "{} is active{}".format(
            unit, ", next run {}".format(nxt) if nxt else ""))
    else:
        section.add("timer-active", ATTENTION, "{} is enabled but {}: it runs only "
                    "after the next boot; start it with 'systemctl start {}'".format(
                        unit, state or "in an unknown state", unit))


def check_preset_proxy(section: Section, servers: List[str],
                       directory: Optional[str] = None) -> None:
    """A preset that names a CA (server or server_pattern) and a proxy says
    that CA is reached through it: without a proxy for the renewal service,
    renewals fail at night."""
    if section.data.get("configured") and section.data.get("proxy"):
        return
    try:
        known = presets.load_presets(directory)
    except WwuError as err:
        section.add("proxy", ATTENTION, "cannot tell whether a CA needs a proxy: {}"
                    .format(err))
        return
    for server in servers:
        for preset in known.values():
            fixed = preset.server and preset.server.rstrip("/") == server.rstrip("/")
            if preset.proxy and (fixed or (preset.server_pattern and re.fullmatch(
                    preset.server_pattern, server))):
                section.add("proxy", ATTENTION, "{} is the CA of preset {}, which is "
                            "reached through the proxy {}, but the renewal service "
                            "gets no proxy, so renewals fail where only the proxy "
                            "reaches it; give it with 'certbot-wwu setup --preset "
                            "{}'".format(server, preset.name,
                                         presets.redact_proxy(preset.proxy),
                                         preset.name))
                break


# --- the CAs --------------------------------------------------------------------

@contextlib.contextmanager
def proxy_variables_set_to(env: Dict[str, str]) -> Iterator[None]:
    """For the ``with`` block, this process's os.environ holds exactly
    ``env``'s proxy variables (presets.proxy_environment builds them), so
    that requests reaches a CA as the renewal timer's certbot would."""
    def ours(key: str) -> bool:
        return key.lower().endswith("_proxy")
    saved = {key: value for key, value in os.environ.items() if ours(key)}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in [key for key in os.environ if ours(key)]:
            del os.environ[key]
        os.environ.update(saved)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def check_ca(server: str, env: Dict[str, str]) -> Dict[str, Any]:
    """Fetch the ACME directory as certbot would, through ``env``'s proxy."""
    from acme import client as acme_client, messages
    result = OrderedDict([
        ("server", server), ("reachable", False), ("latency_ms", None),
        ("eab_required", None),
        ("proxy", presets.redact_proxy(env.get("https_proxy") or env.get(
            "HTTPS_PROXY"))),
        ("no_proxy", env.get("no_proxy") or env.get("NO_PROXY")), ("error", None),
    ])  # type: Dict[str, Any]
    with proxy_variables_set_to(env):
        net = acme_client.ClientNetwork(
            None, user_agent="certbot-wwu/{} status".format(__version__),
            timeout=CA_TIMEOUT)
        start = time.monotonic()
        try:
            response = net.get(server)
            directory = messages.Directory.from_json(response.json())
        except Exception as err:  # pylint: disable=broad-except
            # requests, acme (its own ValueError on 1.x) and josepy all raise
            # their own kinds; each is one unreachable CA, never a traceback
            result["error"] = _one_line(err)
            return result
        finally:
            net.session.close()
    result["reachable"] = True
    result["latency_ms"] = int(round((time.monotonic() - start) * 1000))
    meta = getattr(directory, "meta", None)
    result["eab_required"] = bool(meta and meta.external_account_required)
    return result


def check_cas(servers: List[str], env: Dict[str, str]) -> Section:
    section = Section("CAs (through the renewal timer's {})".format(
        "proxy " + presets.redact_proxy(env.get("https_proxy") or env.get(
            "HTTPS_PROXY") or "") if env.get("https_proxy") or env.get("HTTPS_PROXY")
        else "environment: no proxy"))
    section.data["servers"] = []
    for server in servers:
        found = check_ca(server, env)
        section.data["servers"].append(found)
        if found["reachable"]:
            section.add("ca", OK, "{} reachable in {} ms; EAB required: {}".format(
                server, found["latency_ms"], "yes" if found["eab_required"] else "no"))
        else:
            section.add("ca", ATTENTION, "{} unreachable: {}".format(
                server, found["error"]))
    return section


# --- the command ------------------------------------------------------------------

def lineage_names(config_dir: str) -> List[str]:
    confs = glob.glob(os.path.join(config_dir, "renewal", "*.conf"))
    return sorted(os.path.basename(conf)[:-len(".conf")] for conf in confs)


class Report(object):
    """Everything status found, in the order it is shown."""

    def __init__(self, lineages: List[Section], timer_section: Section,
                 ca_section: Optional[Section] = None,
                 certbot_section: Optional[Section] = None) -> None:
        self.lineages = lineages
        self.timer = timer_section
        self.ca = ca_section
        self.certbot = certbot_section

    @property
    def sections(self) -> List[Section]:
        return ([self.certbot] if self.certbot else []) + self.lineages + [
            self.timer] + ([self.ca] if self.ca else [])

    @property
    def attention(self) -> List[str]:
        return ["{}: {}".format(section.title, item.text)
                for section in self.sections for item in section.attention]

    def problems(self) -> List[Tuple[str, Item]]:
        """(section title, item) of every ATTENTION, the most severe first."""
        found = [(section.title, item) for section in self.sections
                 for item in section.attention]
        return sorted(found, key=lambda pair: -SEVERITIES.index(pair[1].severity))

    def counts(self) -> Dict[str, int]:
        counts = OrderedDict((severity, 0) for severity in reversed(SEVERITIES))
        for _, item in self.problems():
            counts[item.severity] += 1
        return counts

    @property
    def state(self) -> str:
        """The Nagios state: CRITICAL over WARNING over UNKNOWN over OK."""
        problems = self.problems()
        return problems[0][1].severity if problems else OK


def collect(args: argparse.Namespace) -> Report:
    config_dir = os.path.abspath(args.config_dir)
    if not os.path.isdir(config_dir):
        raise StatusError("There is no certbot configuration directory {}; give "
                          "the right one with --config-dir.".format(config_dir))
    if not os.path.isdir(args.root):
        raise StatusError("--root {} is not a directory; give the root of the "
                          "system to look at.".format(args.root))
    if os.geteuid() != 0:
        raise StatusError("status opens the certificates as their users and "
                          "reads certbot's private directories; run it as root.")
    if args.cert_name:
        if "/" in args.cert_name or not os.path.isfile(
                os.path.join(config_dir, "renewal", args.cert_name + ".conf")):
            raise StatusError(str(no_such_certificate(config_dir, args.cert_name)))
        names = [args.cert_name]
    else:
        names = lineage_names(config_dir)
    certbot_section = check_certbot(args)
    checks = Checks(Thresholds(args.warning, args.critical),
                    served=not args.no_served_check)
    lineages = [check_lineage(config_dir, name, named=bool(args.cert_name),
                              checks=checks) for name in names]
    check_served(checks, args.served_timeout)
    distro = timer.detect_distro(args.root) if args.distro == "auto" else args.distro
    timer_section = check_timer(distro, args.root)
    check_preset_proxy(timer_section, _servers(lineages), args.presets_dir)
    ca_section = None
    if args.check_ca:
        servers = _servers(lineages)
        try:
            env = timer.renewal_environment(distro, args.root)
        except WwuError as err:
            ca_section = Section("CAs")
            ca_section.data["servers"] = []
            ca_section.add("ca", ATTENTION, "cannot tell which proxy the renewal "
                           "timer uses: {}".format(err))
        else:
            ca_section = check_cas(servers, env)
    return Report(lineages, timer_section, ca_section, certbot_section)


def _servers(lineages: List[Section]) -> List[str]:
    servers = []  # type: List[str]
    for section in lineages:
        if section.data["server"] not in servers:
            servers.append(section.data["server"])
    return servers


def _print_section(section: Section, heading: str) -> None:
    print(heading)
    for item in section.items:
        print("  {:<10} {}".format(_MARKERS[item.level], item.text))


def to_json(args: argparse.Namespace, report: Report) -> Dict[str, Any]:
    attention = report.attention
    return OrderedDict([
        ("ok", not attention),
        ("state", report.state),
        ("problems", report.counts()),
        ("config_dir", os.path.abspath(args.config_dir)),
        ("work_dir", os.path.abspath(args.work_dir)),
        ("logs_dir", os.path.abspath(args.logs_dir)),
        ("certbot_running", report.certbot.data["running"] if report.certbot else []),
        ("lineages", [section.to_dict() for section in report.lineages]),
        ("timer", report.timer.to_dict()),
        ("ca", report.ca.data["servers"] if report.ca else None),
        ("attention", attention),
    ])


def render(args: argparse.Namespace, report: Report) -> None:
    if args.format == "json":
        print(json.dumps(to_json(args, report), indent=2))
        return
    if args.format == "nagios":
        print(to_nagios(report))
        return
    if args.format == "prometheus":
        text = to_prometheus(report)
        if args.textfile:
            write_textfile(args.textfile, text)
        else:
            print(text, end="")
        return
    if report.certbot:
        _print_section(report.certbot, report.certbot.title)
        print()
    if not report.lineages:
        print("No certificates in {}.".format(os.path.join(
            os.path.abspath(args.config_dir), "renewal")))
        print()
    for section in report.lineages:
        names = section.data["names"]
        _print_section(section, "{}{}".format(
            section.title, " ({})".format(", ".join(names)) if names else ""))
        print()
    _print_section(report.timer, report.timer.title)
    if report.ca:
        print()
        _print_section(report.ca, report.ca.title)
    print()
    attention = report.attention
    if attention:
        print("{} item{} need{} attention.".format(
            len(attention), "" if len(attention) == 1 else "s",
            "s" if len(attention) == 1 else ""))
    else:
        print("All is well.")


# --- monitoring formats ---------------------------------------------------------

FORMATS = ("table", "json", "nagios", "prometheus")
NAGIOS_SERVICE = "CERTBOT-WWU"
#: problems named in the status line (all of them follow in the long output)
NAGIOS_SUMMARY_PROBLEMS = 3


def _plugin_text(text: str) -> str:
    """One line without '|', which would start the performance data."""
    return " ".join(text.replace("|", "/").split())


def _perf(label: str, value: Any, warning: str = "", critical: str = "",
          minimum: str = "0") -> str:
    """One performance value, the label quoted as the guidelines say."""
    label = label.replace("'", "_").replace("=", "_")
    return "'{}'={};{};{};{}".format(label, _number(value), warning, critical, minimum)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return ("{:.2f}".format(value)).rstrip("0").rstrip(".")
    return str(int(value))


def to_nagios(report: Report) -> str:
    """The plugin output of the Monitoring Plugins guidelines: one status line
    with performance data, then the long output (every problem)."""
    state = report.state
    problems = report.problems()
    counts = report.counts()
    perf = []
    for section in report.lineages:
        data = section.data
        if data["days_left"] is not None:
            warning, critical = data["thresholds_days"]
            # days left: alert when below, a range "N:" in the guidelines' syntax
            perf.append(_perf(section.title + "_days", data["days_left"],
                              _number(float(warning)) + ":",
                              _number(float(critical)) + ":"))
    perf += [_perf("certificates", len(report.lineages))]
    perf += [_perf("problems_" + severity, count) for severity, count in counts.items()]
    if problems:
        named = problems[:NAGIOS_SUMMARY_PROBLEMS]
        summary = "{}: {}".format(
            ", ".join("{} {}".format(n, severity) for severity, n in counts.items() if n),
            "; ".join("{}: {}".format(title, item.text) for title, item in named))
        if len(problems) > len(named):
            summary += "; {} more below".format(len(problems) - len(named))
        details = ["[{}] {}: {}".format(item.severity.upper(), title, item.text)
                   for title, item in problems]
    else:
        dated = [s for s in report.lineages if s.data["days_left"] is not None]
        soonest = min(dated, key=lambda s: s.data["days_left"]) if dated else None
        summary = "{} certificate{} usable by {} service{}{}".format(
            len(report.lineages), "" if len(report.lineages) == 1 else "s",
            "its" if len(report.lineages) == 1 else "their",
            "" if len(report.lineages) == 1 else "s",
            "; next to expire: {} in {} days".format(
                soonest.title, soonest.data["days_left"]) if soonest else "")
        details = ["{}: {}".format(s.title, "; ".join(
            item.text for item in s.items if item.key in ("expiry", "served")))
            for s in report.lineages]
    lines = ["{} {} - {}|{}".format(NAGIOS_SERVICE, state.upper(), _plugin_text(summary),
                                    " ".join(perf))]
    lines += [_plugin_text(line) for line in details]
    return "\n".join(lines)


#: name, type, help of every metric, in the order written
METRICS = (
    ("certbot_wwu_certificate_expiry_timestamp_seconds", "gauge",
     "notAfter of the current certificate of each lineage, seconds since the epoch."),
    ("certbot_wwu_certificate_version", "gauge",
     "Current version of each lineage (N of archive/NAME/certN.pem)."),
    ("certbot_wwu_access_ok", "gauge",
     "1 if the configured user or group can read the current certificate and "
     "key (opened as that principal), else 0."),
    ("certbot_wwu_served_matches_current", "gauge",
     "1 if the check endpoint of the lineage serves its current certificate, 0 if "
     "it serves another or does not answer; absent without a check endpoint."),
    ("certbot_wwu_unit_active", "gauge", "1 if systemd says the unit is active, else 0."),
    ("certbot_wwu_timer_enabled", "gauge",
     "1 if the renewal timer is enabled, 0 if not; absent when status cannot tell."),
    ("certbot_wwu_last_deployment_timestamp_seconds", "gauge",
     "When the complete deployment of the current version was recorded, seconds "
     "since the epoch; absent while one is pending."),
    ("certbot_wwu_lineage_problems", "gauge",
     "Problems found per lineage, by severity (critical, warning, unknown)."),
    ("certbot_wwu_problems", "gauge",
     "Problems found in all, by severity (critical, warning, unknown)."),
    ("certbot_wwu_status_timestamp_seconds", "gauge",
     "When certbot-wwu status collected these metrics, seconds since the epoch."),
)


def label_value(value: Any) -> str:
    """A label value in the text format: backslash, quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metric_sample(name: str, labels: List[Tuple[str, Any]], value: Any) -> str:
    text = ",".join('{}="{}"'.format(key, label_value(v)) for key, v in labels)
    return "{}{} {}".format(name, "{" + text + "}" if text else "", _number(value))


def _samples(report: Report, now: float) -> Dict[str, List[str]]:
    samples = OrderedDict((name, []) for name, _, _ in METRICS)  # type: Dict[str, List[str]]

    def add(metric: str, labels: List[Tuple[str, Any]], value: Any) -> None:
        samples["certbot_wwu_" + metric].append(metric_sample("certbot_wwu_" + metric,
                                                        labels, value))
    units = OrderedDict()  # type: Dict[str, bool]
    for section in report.lineages:
        data = section.data
        lineage = [("lineage", section.title)]
        if data.get("expires_timestamp") is not None:
            add("certificate_expiry_timestamp_seconds", lineage, data["expires_timestamp"])
        if data["version"] is not None:
            add("certificate_version", lineage, data["version"])
        for principal in data["principals"]:
            add("access_ok", lineage + [("kind", principal["kind"]),
                                        ("principal", principal["name"])],
                1 if principal["can_read"] else 0)
        served = data["served"]
        if served and served["checked"]:
            add("served_matches_current", lineage + [("endpoint", served["endpoint"])],
                1 if served["matches"] else 0)
        for unit in data["units"]:
            units[unit["unit"]] = unit["active"]
        if data["last_deployment"] is not None:
            add("last_deployment_timestamp_seconds", lineage, data["last_deployment"])
        counts = OrderedDict((severity, 0) for severity in reversed(SEVERITIES))
        for item in section.attention:
            counts[item.severity] += 1
        for severity, count in counts.items():
            add("lineage_problems", lineage + [("severity", severity)], count)
    for unit, active in units.items():
        add("unit_active", [("unit", unit)], 1 if active else 0)
    if report.timer.data.get("enabled") is not None:
        add("timer_enabled", [("timer", report.timer.data.get("timer", ""))],
            1 if report.timer.data["enabled"] else 0)
    for severity, count in report.counts().items():
        add("problems", [("severity", severity)], count)
    add("status_timestamp_seconds", [], int(now))
    return samples


def to_prometheus(report: Report, now: Optional[float] = None) -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    samples = _samples(report, time.time() if now is None else now)
    lines = []  # type: List[str]
    for name, kind, text in METRICS:
        lines.append("# HELP {} {}".format(name, text.replace("\\", "\\\\")))
        lines.append("# TYPE {} {}".format(name, kind))
        lines.extend(samples[name])
    return "\n".join(lines) + "\n"


def write_textfile(path: str, text: str) -> None:
    """Replace PATH in one rename (node_exporter never reads half a file; the
    temporary name does not end in .prom, so it is never read at all). PATH's
    directory and those above it must be root's alone, as for copies."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not path.endswith(".prom"):
        raise StatusError("--textfile {} does not end in .prom, so node_exporter's "
                          "textfile collector would not read it; name it "
                          "NAME.prom.".format(path))
    try:
        copies.check_destination(directory)
    except WwuError as err:
        raise StatusError("Will not write --textfile {} there: {}".format(path, err))
    if not os.path.isdir(directory):
        raise StatusError("The directory of --textfile {} does not exist; create it "
                          "(node_exporter's --collector.textfile.directory) or name "
                          "another.".format(path))
    try:
        write_atomic(path, text, 0o644, durable=False)
    except OSError as err:
        raise StatusError("Cannot write --textfile {}: {}; check the disk and that "
                          "it is not a directory.".format(path, err.strerror or err))


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        days = -1.0
    if not (0 <= days <= 3650) or math.isnan(days):
        raise argparse.ArgumentTypeError("{!r} is not a number of days from 0 to "
                                         "3650".format(value))
    return days


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (0.1 <= seconds <= 300):
        raise argparse.ArgumentTypeError("{!r} is not a number of seconds from 0.1 "
                                         "to 300".format(value))
    return seconds


def _nagios_usage_errors(parser: argparse.ArgumentParser) -> None:
    """Usage errors of a Nagios check exit 3 (UNKNOWN) with a status line,
    as the guidelines ask; argparse's own exit 2 would read as CRITICAL."""
    original, parse = parser.error, parser.parse_known_args
    seen = []  # type: List[str]

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        seen[:] = sys.argv[1:] if args is None else list(args)
        return parse(args, namespace)

    def error(message: str) -> None:
        argv = seen
        if "--nagios" in argv or "--format=nagios" in argv or any(
                a == "--format" and b == "nagios" for a, b in zip(argv, argv[1:])):
            parser.print_usage(sys.stderr)
            print("{} UNKNOWN - {}: {}".format(NAGIOS_SERVICE, parser.prog,
                                               _plugin_text(message)))
            sys.exit(NAGIOS_CODES[UNKNOWN])
        original(message)
    parser.parse_known_args = parse_known_args  # type: ignore
    parser.error = error  # type: ignore


def add_status(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status", help="show whether each certificate is usable by its service",
        description="Read-only report per certificate: names, expiry, server, "
                    "installer and settings, whether each granted user or group "
                    "can read the current key (checked as that user) and nobody "
                    "else can (every owner, group and ACL entry), leftover "
                    "default ACL entries, copies, pending redeployment or unit "
                    "action, unit "
                    "states; then the renewal timer and its proxy. Exit 0 when "
                    "all is well, 1 when something needs attention.")
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument("--format", choices=FORMATS, default="table",
                         help="table (default), json, nagios: a Nagios/Icinga "
                              "plugin's output and exit code, prometheus: the "
                              "Prometheus text format")
    formats.add_argument("--json", dest="format", action="store_const", const="json",
                         help="print one JSON document (--format json)")
    formats.add_argument("--nagios", dest="format", action="store_const",
                         const="nagios",
                         help="run as a Nagios/Icinga plugin: one status line with "
                              "performance data, the problems below it, exit "
                              "0/1/2/3 for OK/WARNING/CRITICAL/UNKNOWN (--format "
                              "nagios)")
    formats.add_argument("--prometheus", dest="format", action="store_const",
                         const="prometheus",
                         help="print the Prometheus text format, or write it to "
                              "--textfile; exit 0 once written, whatever it says "
                              "(--format prometheus)")
    parser.add_argument("--textfile", metavar="PATH",
                        help="with --prometheus: replace PATH (NAME.prom in "
                             "node_exporter's textfile directory) in one rename "
                             "instead of printing (default: print)")
    parser.add_argument("--warning", type=_days, metavar="DAYS",
                        help="fewer days left than this is a WARNING (default: "
                             "{}, a third of the lifetime for shorter-lived "
                             "certificates)".format(EXPIRY_WARNING_DAYS))
    parser.add_argument("--critical", type=_days, metavar="DAYS",
                        help="fewer days left than this is CRITICAL (default: {}, "
                             "a sixth of the lifetime for shorter-lived "
                             "certificates)".format(EXPIRY_CRITICAL_DAYS))
    parser.add_argument("--served-timeout", type=_seconds, default=SERVED_TIMEOUT,
                        metavar="SECONDS",
                        help="seconds to wait for each check endpoint "
                             "(--wwu-acl-check), all asked at once (default: "
                             "{})".format(SERVED_TIMEOUT))
    parser.add_argument("--no-served-check", action="store_true",
                        help="do not connect to the check endpoints (default: "
                             "connect, to tell whether the current certificate "
                             "is served)")
    presets.presets_dir_option(parser, "site presets, to tell whether a CA needs a proxy")
    parser.add_argument("--cert-name", metavar="NAME",
                        help="only this certificate (default: all in renewal/)")
    parser.add_argument("--check-ca", action="store_true",
                        help="also fetch each CA's ACME directory through the "
                             "renewal timer's proxy: reachable, latency, EAB")
    certbot_host.certbot_dir_options(parser)
    parser.add_argument("--distro", default="auto", choices=("auto",) + timer.DISTROS,
                        help="how certbot is installed, for its renewal timer "
                             "(default: auto-detect)")
    parser.add_argument("--root", default="/", metavar="DIR",
                        help="look at the renewal timer of the system under DIR "
                             "(default: /)")
    parser.set_defaults(func=cmd_status)
    _nagios_usage_errors(parser)


def _check_options(args: argparse.Namespace) -> None:
    if args.textfile and args.format != "prometheus":
        raise StatusError("--textfile writes the Prometheus format; add --prometheus.")
    if args.warning is not None and args.critical is not None \
            and args.critical > args.warning:
        raise StatusError("--critical {:g} is more days than --warning {:g}; "
                          "CRITICAL must come later than WARNING.".format(
                              args.critical, args.warning))


def cmd_status(args: argparse.Namespace) -> int:
    if args.format == "nagios":
        try:
            _check_options(args)
            report = collect(args)
        except WwuError as err:
            print("{} UNKNOWN - {}".format(NAGIOS_SERVICE, _plugin_text(str(err))))
            return NAGIOS_CODES[UNKNOWN]
        print(to_nagios(report))
        return NAGIOS_CODES[report.state]
    _check_options(args)
    report = collect(args)
    render(args, report)
    if args.format == "prometheus":
        return 0
    return 1 if report.attention else 0
