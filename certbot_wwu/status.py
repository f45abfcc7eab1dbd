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
for the current version and whether they are active. Then the renewal
timer: enabled, and with which proxy. ``--check-ca`` fetches each server's ACME directory through exactly
the proxy environment the timer gives certbot. A certbot running meanwhile
(its lock in the config, work or logs dir is held) is mentioned, since what
it is switching may look broken for a moment.

Every finding is an item: OK, ATTENTION or INFO. Exit 0 when no item needs
attention, 1 when one does (2 stays argparse's, for usage errors).
"""
import argparse
import contextlib
import datetime
import glob
import json
import os
import time
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Optional, Tuple

from certbot_wwu import __version__, copies, deploy, grants, presets, service, timer
from certbot_wwu.errors import WwuError
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.renewalconf import INSTALLER, PREFIX
from certbot_wwu.settings import Settings
from certbot_wwu.state import State

#: certbot's defaults
CONFIG_DIR = "/etc/letsencrypt"
WORK_DIR = "/var/lib/letsencrypt"
LOGS_DIR = "/var/log/letsencrypt"
#: certbot's server when a renewal conf names none
DEFAULT_SERVER = "https://acme-v02.api.letsencrypt.org/directory"

#: fewer days left than this needs attention (certbot renews at 30)
EXPIRY_WARNING_DAYS = 14
#: seconds to wait for a CA's directory
CA_TIMEOUT = 15

OK, ATTENTION, INFO = "ok", "attention", "info"
_MARKERS = {OK: "OK", ATTENTION: "ATTENTION", INFO: "INFO"}

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
    """One finding: ``key`` names what was checked, ``level`` OK/ATTENTION/INFO."""

    def __init__(self, key: str, level: str, text: str) -> None:
        self.key = key
        self.level = level
        self.text = text

    def to_dict(self) -> Dict[str, str]:
        return OrderedDict([("item", self.key), ("status", self.level),
                            ("message", self.text)])


class Section(object):
    """Items under one heading, plus machine-readable facts for --json."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.items = []  # type: List[Item]
        self.data = OrderedDict()  # type: Dict[str, Any]

    def add(self, key: str, level: str, text: str) -> None:
        self.items.append(Item(key, level, text))

    @property
    def attention(self) -> List[Item]:
        return [item for item in self.items if item.level == ATTENTION]

    def to_dict(self) -> Dict[str, Any]:
        result = OrderedDict(self.data)  # type: Dict[str, Any]
        result["ok"] = not self.attention
        result["items"] = [item.to_dict() for item in self.items]
        return result


# --- renewal configuration ----------------------------------------------------------

def _restored(value: Any) -> Any:
    """A stored value as certbot hands it back: "None", "True", "False" literally."""
    return {"None": None, "True": True, "False": False}.get(value, value) \
        if isinstance(value, str) else value


def read_renewal_conf(path: str) -> Dict[str, Any]:
    """``[renewalparams]`` of a renewal conf (StatusError if unreadable)."""
    import configobj
    try:
        conf = configobj.ConfigObj(path, encoding="utf-8", file_error=True,
                                   interpolation=False)
    except (OSError, configobj.ConfigObjError, UnicodeDecodeError) as err:
        raise StatusError("Cannot read the renewal configuration {}: {}.".format(
            path, getattr(err, "strerror", None) or err))
    params = conf.get("renewalparams", {})
    return dict(params) if isinstance(params, dict) else {}


def stored_options(params: Dict[str, Any]) -> Dict[str, Any]:
    """``wwu_acl_*`` values by option name (copy_to, not wwu_acl_copy_to)."""
    return {key[len(PREFIX):]: _restored(value) for key, value in params.items()
            if key.startswith(PREFIX)}


def stored_settings(params: Dict[str, Any]) -> Settings:
    """Settings from the stored values, as the installer would build them."""
    options = stored_options(params)
    return Settings.from_options(lambda name: options.get(name))


# --- lineage checks ---------------------------------------------------------------

def validity(lineage: Lineage) -> Tuple[datetime.datetime, datetime.datetime]:
    """notBefore and notAfter of the current certificate, in UTC."""
    from cryptography import x509
    from cryptography.hazmat.backends import default_backend
    with open(lineage.live_path("cert"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read(), default_backend())
    if hasattr(cert, "not_valid_after_utc"):  # cryptography >= 42
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    utc = datetime.timezone.utc
    return (cert.not_valid_before.replace(tzinfo=utc),
            cert.not_valid_after.replace(tzinfo=utc))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def expiry_attention(before: datetime.datetime, after: datetime.datetime,
                     now: datetime.datetime) -> bool:
    """Less than EXPIRY_WARNING_DAYS left, or for short-lived certificates
    (Let's Encrypt's six-day profile) less than a third of their lifetime."""
    margin = min(datetime.timedelta(days=EXPIRY_WARNING_DAYS), (after - before) / 3)
    return after - now < margin


def unit_state(unit: str) -> Tuple[Optional[str], str]:
    """(state, detail): ``systemctl is-active UNIT``; state None if unknown."""
    try:
        code, out = service._run([service.SYSTEMCTL, "is-active", unit])
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


def check_lineage(config_dir: str, name: str, named: bool = False) -> Section:
    """Every check of one lineage; ``named``: the user asked for it by name."""
    lineage = Lineage(config_dir, name)
    section = Section(name)
    data = section.data
    data.update([("name", name), ("renewal_conf", lineage.renewal_conf),
                 ("names", []), ("expires", None), ("days_left", None),
                 ("server", None), ("installer_attached", False),
                 ("settings", None), ("principals", []), ("outsider_refused", None),
                 ("unwanted_access", []), ("stray_defaults", []),
                 ("copies_current", None), ("needs_deploy", None),
                 ("needs_action", None), ("version", None), ("units", [])])
    try:
        params = read_renewal_conf(lineage.renewal_conf)
    except StatusError as err:
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
        data["days_left"] = days
        when = after.strftime("%Y-%m-%d %H:%M UTC")
        if days < 0:
            section.add("expiry", ATTENTION, "expired {} days ago ({}); check why "
                        "'certbot renew' did not renew it".format(-days, when))
        elif expiry_attention(before, after, now):
            section.add("expiry", ATTENTION, "expires in {} days ({}); check why "
                        "'certbot renew' did not renew it".format(days, when))
        else:
            section.add("expiry", OK, "expires in {} days ({})".format(days, when))

    server = params.get("server") or None
    data["server"] = server or DEFAULT_SERVER
    section.add("server", INFO, "server {}{}".format(
        data["server"], "" if server else " (certbot's default)"))

    # the installer and its settings
    attached = params.get("installer") == INSTALLER
    data["installer_attached"] = attached
    options = stored_options(params)
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
        settings = stored_settings(params)
    except WwuError as err:
        section.add("settings", ATTENTION, "invalid stored settings in {}: {}".format(
            lineage.renewal_conf, err))
    else:
        data["settings"] = settings.to_values()
        section.add("installer", OK, "installer wwu-acl attached: {}".format(
            _settings_text(settings)))
    keep = _configured_keys(settings)
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
    if settings is not None:
        for unit in settings.units:
            _check_unit(section, unit, settings.action)
    return section


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


def _check_unit(section: Section, unit: str, action: str) -> None:
    state, detail = unit_state(unit)
    section.data["units"].append(OrderedDict([("unit", unit), ("state", state),
                                              ("active", state == "active")]))
    if state == "active":
        section.add("unit", OK, "{} is active".format(unit))
    elif state == "inactive" and action.startswith("try-"):
        section.add("unit", INFO, "{} is not running ({} leaves it alone)".format(
            unit, action))
    elif state is None:
        section.add("unit", ATTENTION, "state of {} unknown: {}".format(unit, detail))
    else:
        section.add("unit", ATTENTION, "{} is {}; see 'systemctl status {}' and "
                    "'journalctl -u {}'".format(unit, state, unit, unit))


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

def _is_live(root: str) -> bool:
    return os.path.realpath(root) == "/"


def _in_root(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def timer_enabled(unit: str, root: str) -> Tuple[Optional[bool], str]:
    """(enabled or None if unknown, how we know)."""
    if _is_live(root):
        try:
            code, out = service._run([service.SYSTEMCTL, "is-enabled", unit])
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
    unit_file = _in_root(root, "{}/{}".format(timer.UNIT_DIR, unit))
    if os.path.islink(unit_file) and os.readlink(unit_file) == "/dev/null":
        return False, "masked"
    for directory in _WANTS_DIRS:
        for link in sorted(glob.glob(_in_root(root, "{}/*.wants/{}".format(
                directory, unit)))):
            return True, "link " + link
    return False, "no *.wants link under {}".format(_in_root(root, timer.UNIT_DIR))


def cron_renewal(root: str) -> Optional[str]:
    """A cron file under root that runs ``certbot renew`` (not Debian's,
    which does nothing where systemd runs)."""
    paths = [_in_root(root, p) for p in _CRON_FILES]
    for directory in _CRON_DIRS:
        paths.extend(sorted(glob.glob(_in_root(root, directory + "/*"))))
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


def timer_environment(distro: str, root: str) -> Dict[str, str]:
    """The proxy variables the renewal service gets, unredacted (the
    ``environment`` of timer_status masks proxy passwords)."""
    if distro == "el":
        return timer._env_file(_in_root(root, timer.SYSCONFIG))
    env, _ = timer._dropin_env(root, timer._dropin_path(root, timer.SERVICES[distro]))
    return env


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


# --- the CAs --------------------------------------------------------------------

@contextlib.contextmanager
def proxy_environment(env: Dict[str, str]) -> Iterator[None]:
    """This process sees exactly ``env``'s proxy variables (and no others)."""
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
    with proxy_environment(env):
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
            raise StatusError("There is no certificate named {!r} in {} (no "
                              "renewal/{}.conf); see 'certbot certificates'.".format(
                                  args.cert_name, config_dir, args.cert_name))
        names = [args.cert_name]
    else:
        names = lineage_names(config_dir)
    certbot_section = check_certbot(args)
    lineages = [check_lineage(config_dir, name, named=bool(args.cert_name))
                for name in names]
    distro = timer.detect_distro(args.root) if args.distro == "auto" else args.distro
    timer_section = check_timer(distro, args.root)
    ca_section = None
    if args.check_ca:
        servers = []  # type: List[str]
        for section in lineages:
            if section.data["server"] not in servers:
                servers.append(section.data["server"])
        try:
            env = timer_environment(distro, args.root)
        except WwuError as err:
            ca_section = Section("CAs")
            ca_section.data["servers"] = []
            ca_section.add("ca", ATTENTION, "cannot tell which proxy the renewal "
                           "timer uses: {}".format(err))
        else:
            ca_section = check_cas(servers, env)
    return Report(lineages, timer_section, ca_section, certbot_section)


def _print_section(section: Section, heading: str) -> None:
    print(heading)
    for item in section.items:
        print("  {:<10} {}".format(_MARKERS[item.level], item.text))


def to_json(args: argparse.Namespace, report: Report) -> Dict[str, Any]:
    attention = report.attention
    return OrderedDict([
        ("ok", not attention),
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
    if args.json:
        print(json.dumps(to_json(args, report), indent=2))
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
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--cert-name", metavar="NAME",
                        help="only this certificate (default: all in renewal/)")
    parser.add_argument("--check-ca", action="store_true",
                        help="also fetch each CA's ACME directory through the "
                             "renewal timer's proxy: reachable, latency, EAB")
    parser.add_argument("--config-dir", default=CONFIG_DIR, metavar="DIR",
                        help="certbot's configuration directory (default: {})".format(
                            CONFIG_DIR))
    parser.add_argument("--work-dir", default=WORK_DIR, metavar="DIR",
                        help="certbot's working directory, whose lock shows a "
                             "running certbot (default: {})".format(WORK_DIR))
    parser.add_argument("--logs-dir", default=LOGS_DIR, metavar="DIR",
                        help="certbot's log directory (default: {})".format(LOGS_DIR))
    parser.add_argument("--distro", default="auto", choices=("auto",) + timer.DISTROS,
                        help="how certbot is installed, for its renewal timer "
                             "(default: auto-detect)")
    parser.add_argument("--root", default="/", metavar="DIR",
                        help="look at the renewal timer of the system under DIR "
                             "(default: /)")
    parser.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    report = collect(args)
    render(args, report)
    return 1 if report.attention else 0
