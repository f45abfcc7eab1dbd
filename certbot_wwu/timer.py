"""The proxy environment of certbot's renewal timer, per distribution (DESIGN §7).

The seed exports the proxy in the administrator's shell, which the renewal
timer never sees: renewals then fail months later, at night. Each way certbot
is installed runs its renewal differently, so the environment goes where that
service reads it:

- ``el`` (EPEL, Fedora): ``certbot-renew.service`` reads
  ``EnvironmentFile=/etc/sysconfig/certbot``. We own the six proxy variables
  in that file: their lines are replaced (commented ones stay), every other
  line stays as it is. The package does not start its timer.
- ``debian`` (Debian, Ubuntu): ``certbot.service`` has no environment file, so
  a drop-in ``/etc/systemd/system/certbot.service.d/certbot-wwu-proxy.conf``.
- ``snap``: the same drop-in for ``snap.certbot.renew.service`` (snapd
  rewrites the unit, not drop-ins beside it).
- ``pip``: no timer ships; we install ``certbot-renew.service`` and
  ``certbot-renew.timer`` in ``/etc/systemd/system`` and the drop-in for them.

A proxy with a password does not go into ``Environment=`` lines: any local user
can read those with ``systemctl show``. The drop-in then names an
``EnvironmentFile`` of mode 0600 instead (and ``/etc/sysconfig/certbot`` becomes
0600). An empty environment removes our settings (the pip units stay: without
them nothing renews).

Everything takes ``root`` so that it can prepare an image or a test tree;
systemctl only runs against the live system when ``root`` is ``/``.
"""
import logging
import os
import re
import shlex
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from certbot_wwu import certbot_host, process
from certbot_wwu.errors import WwuError
from certbot_wwu.files import write_atomic
from certbot_wwu.presets import ENV_KEYS, PROXY_KEYS, redact_proxy

logger = logging.getLogger(__name__)

DISTROS = ("el", "debian", "snap", "pip")
SYSTEMCTL = "systemctl"

SYSCONFIG = "/etc/sysconfig/certbot"
UNIT_DIR = "/etc/systemd/system"
DROPIN = "certbot-wwu-proxy.conf"
#: where a proxy password goes for the drop-in distributions
SECRET_ENV = "/etc/certbot-wwu/renew-proxy.env"
#: where packages put their units (Debian before the /usr merge: /lib)
VENDOR_UNIT_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system")

TIMERS = {"el": "certbot-renew.timer", "debian": "certbot.timer",
          "snap": "snap.certbot.renew.timer", "pip": "certbot-renew.timer"}
SERVICES = {"el": "certbot-renew.service", "debian": "certbot.service",
            "snap": "snap.certbot.renew.service", "pip": "certbot-renew.service"}
_EL_IDS = ("rhel", "centos", "fedora", "rocky", "almalinux", "ol")
_DEBIAN_IDS = ("debian", "ubuntu")

_MARKER = "# certbot-wwu: proxy for the renewal timer (certbot-wwu setup)"
_HEADER = ("# Written by certbot-wwu setup; certbot-wwu setup without a proxy "
           "removes it.\n")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
#: values that mean the same to systemd, an env file and a shell unquoted
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._~%!*+,;=:@/\[\]-]+\Z")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@/-]+\Z")

PIP_SERVICE = """\
# Written by certbot-wwu setup: a pip-installed certbot ships no renewal timer.
[Unit]
Description=Renew certificates with certbot
Documentation=https://eff-certbot.readthedocs.io/
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={certbot} renew -q
"""

PIP_TIMER = """\
# Written by certbot-wwu setup: a pip-installed certbot ships no renewal timer.
[Unit]
Description=Run certbot renew twice daily

[Timer]
OnCalendar=*-*-* 00,12:00:00
RandomizedDelaySec=12h
Persistent=true

[Install]
WantedBy=timers.target
"""


class TimerError(WwuError):
    """The renewal timer's environment or unit cannot be set up."""


def in_root(root: str, path: str) -> str:
    """``path`` of the system under ``root`` (an image or a test tree)."""
    return os.path.join(root, path.lstrip("/"))


def is_live(root: str) -> bool:
    """Whether ``root`` is this running system (systemctl may be asked)."""
    return os.path.realpath(root) == "/"


def _check_distro(distro: str) -> None:
    if distro not in DISTROS:
        raise TimerError("Unknown distribution kind {!r}; use one of {}.".format(
            distro, ", ".join(DISTROS)))


# --- detection ------------------------------------------------------------------

def os_release(root: str = "/") -> Dict[str, str]:
    """os-release(5) as a dict; empty when there is none."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(in_root(root, path), encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        values = {}
        for line in text.splitlines():
            match = _ASSIGNMENT.match(line)
            if match and not line.lstrip().startswith("#"):
                try:
                    words = shlex.split(match.group(2))
                except ValueError:
                    continue
                values[match.group(1)] = " ".join(words)
        return values
    return {}


def _family(release: Dict[str, str]) -> Optional[str]:
    ids = [release.get("ID", "")] + release.get("ID_LIKE", "").split()
    for word in ids:
        if word in _EL_IDS:
            return "el"
        if word in _DEBIAN_IDS:
            return "debian"
    return None


def detect_distro(root: str = "/") -> str:
    """el, debian, snap or pip: whose renewal timer this host runs.

    The snap comes first, since it replaces a distribution's certbot: its
    command ``/snap/bin/certbot`` (a symlink, so a dangling one in an image
    counts) or the timer unit snapd writes. A distribution counts only when
    its package's timer unit is installed; otherwise certbot came from pip
    (or is missing, which configure then reports).
    """
    if (os.path.lexists(in_root(root, "/snap/bin/certbot"))
            or os.path.exists(in_root(root, UNIT_DIR + "/" + TIMERS["snap"]))):
        return "snap"
    family = _family(os_release(root))
    if family and any(os.path.exists(in_root(root, d + "/" + TIMERS[family]))
                      for d in VENDOR_UNIT_DIRS):
        return family
    logger.info("No packaged certbot timer under %s (distribution: %s)", root,
                family or "unknown")
    return "pip"


def timer_unit(distro: str) -> str:
    _check_distro(distro)
    return TIMERS[distro]


# --- writing --------------------------------------------------------------------

def _check_env(env: Dict[str, str]) -> Dict[str, str]:
    ordered = OrderedDict()  # type: Dict[str, str]
    for key in env:
        if key not in ENV_KEYS:
            raise TimerError("{!r} is not a proxy variable; the renewal timer "
                             "takes only {}.".format(key, ", ".join(ENV_KEYS)))
    for key in ENV_KEYS:
        value = env.get(key)
        if not value:
            continue
        if not _SAFE_VALUE.match(value):
            raise TimerError("The value of {} contains characters that systemd "
                             "would read differently; normalise it with "
                             "certbot_wwu.presets first.".format(key))
        ordered[key] = value
    return ordered


def _secret(env: Dict[str, str]) -> bool:
    return any("@" in env.get(key, "") for key in PROXY_KEYS)


def _summary(env: Dict[str, str]) -> str:
    proxy = env.get("https_proxy") or env.get("http_proxy") or env.get(
        "HTTPS_PROXY") or env.get("HTTP_PROXY")
    return "proxy {}".format(redact_proxy(proxy)) if proxy else "no proxy"


def _read(path: str) -> Tuple[Optional[str], Optional[int]]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as err:
        raise TimerError("Cannot read {}: {}; fix or remove it.".format(
            path, getattr(err, "strerror", None) or err))


def _put(path: str, data: Optional[str], mode: int, what: str) -> List[str]:
    """Make ``path`` hold ``data`` (None: absent); what changed, for people."""
    old, old_mode = _read(path)
    try:
        if data is None:
            if old is None:
                return []
            os.unlink(path)
            return ["removed {}".format(path)]
        if old == data and old_mode == mode:
            return []
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        write_atomic(path, data, mode)
    except OSError as err:
        raise TimerError("Cannot write {}: {}; check that the directory is "
                         "writable (run as root).".format(path, err.strerror or err))
    return ["wrote {} ({})".format(path, what)]


def _assignments(env: Dict[str, str]) -> str:
    return "".join("{}={}\n".format(key, value) for key, value in env.items())


def _configure_sysconfig(root: str, env: Dict[str, str]) -> List[str]:
    path = in_root(root, SYSCONFIG)
    old, mode = _read(path)
    kept = [line for line in (old or "").splitlines(True)
            if line.rstrip("\n") != _MARKER and not _ours(line)]
    if kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"
    if env:
        kept.append(_MARKER + "\n" + _assignments(env))
    if old is None and not env:
        return []
    mode = 0o600 if _secret(env) else (mode if mode is not None else 0o644)
    what = ("{} for {}".format(_summary(env), SERVICES["el"]) if env
            else "proxy settings removed")
    return _put(path, "".join(kept), mode, what)


def _ours(line: str) -> bool:
    match = _ASSIGNMENT.match(line)
    return bool(match) and not line.lstrip().startswith("#") and (
        match.group(1) in ENV_KEYS)


def _dropin_path(root: str, service: str) -> str:
    return in_root(root, "{}/{}.d/{}".format(UNIT_DIR, service, DROPIN))


def _configure_dropin(root: str, service: str, env: Dict[str, str]) -> List[str]:
    path = _dropin_path(root, service)
    secret_path = in_root(root, SECRET_ENV)
    if not env:
        changes = _put(path, None, 0o644, "")
        if changes:
            try:
                os.rmdir(os.path.dirname(path))
            except OSError:
                pass  # other drop-ins live there
        return changes + _put(secret_path, None, 0o600, "")
    what = "{} for {}".format(_summary(env), service)
    if _secret(env):
        # the file first: the drop-in must never name a missing one
        changes = _put(secret_path, _HEADER + _assignments(env), 0o600,
                       what + ", readable by root only")
        return changes + _put(path, "{}[Service]\nEnvironmentFile={}\n".format(
            _HEADER, SECRET_ENV), 0o644, what)
    # % starts a systemd specifier
    body = "".join('Environment="{}={}"\n'.format(key, value.replace("%", "%%"))
                   for key, value in env.items())
    changes = _put(path, _HEADER + "[Service]\n" + body, 0o644, what)
    return changes + _put(secret_path, None, 0o600, "")


def pip_certbot(root: str = "/") -> str:
    """The certbot the pip timer runs (certbot_host.find_certbot), as a path
    a systemd unit can name."""
    found = certbot_host.find_certbot(root=root, error=TimerError,
                                      remedy=" before setting up its timer")
    if not _SAFE_PATH.match(found):
        raise TimerError("The certbot path {!r} has characters a systemd unit "
                         "would misread; link it from /usr/local/bin/certbot."
                         .format(found))
    return found


def _install_units(root: str) -> List[str]:
    certbot = pip_certbot(root)
    unit_dir = in_root(root, UNIT_DIR)
    return (_put(os.path.join(unit_dir, SERVICES["pip"]),
                 PIP_SERVICE.format(certbot=certbot), 0o644,
                 "runs {} renew -q".format(certbot))
            + _put(os.path.join(unit_dir, TIMERS["pip"]), PIP_TIMER, 0o644,
                   "twice daily, randomised"))


def configure(distro: str, env: Dict[str, str], root: str = "/") -> List[str]:
    """Give the renewal service ``env`` (presets.proxy_environment).

    Idempotent: returns what changed, for people; empty when nothing did.
    """
    _check_distro(distro)
    env = _check_env(env)
    if not os.path.isdir(root):
        raise TimerError("{} is not a directory; give an existing root.".format(root))
    if distro == "el":
        changes = _configure_sysconfig(root, env)
    else:
        changes = _install_units(root) if distro == "pip" else []
        changes += _configure_dropin(root, SERVICES[distro], env)
    for change in changes:
        logger.info("%s", change)
    return changes


# --- systemctl ------------------------------------------------------------------

def _run(argv: List[str]) -> Tuple[int, str]:
    return process.run(argv, TimerError, "run '{}' by hand where systemd runs".format(
        " ".join(argv)))


def _query(argv: List[str]) -> str:
    """The answer of a systemctl query, or '' when it fails."""
    try:
        code, out = _run(argv)
    except TimerError:
        return ""
    return out.splitlines()[-1].strip() if code == 0 and out else ""


def _checked(argv: List[str], unit: str) -> None:
    code, out = _run(argv)
    if code != 0:
        raise TimerError("'{}' failed (exit {}){}; check that {} is installed "
                         "('systemctl cat {}').".format(
                             " ".join(argv), code,
                             ": " + out.splitlines()[-1].rstrip(".") if out else "",
                             unit, unit))


def daemon_reload(distro: str, root: str = "/") -> List[str]:
    """systemd reads drop-ins and units only on daemon-reload (the env file of
    el is read at each start)."""
    _check_distro(distro)
    if distro == "el" or not is_live(root):
        return []
    _checked([SYSTEMCTL, "daemon-reload"], SERVICES[distro])
    return ["reloaded systemd's unit files"]


def enable_timer(distro: str, root: str = "/") -> List[str]:
    """Enable (and on the live system start) the renewal timer."""
    unit = timer_unit(distro)
    if is_live(root):
        if (_query([SYSTEMCTL, "is-enabled", unit]) == "enabled"
                and _query([SYSTEMCTL, "is-active", unit]) == "active"):
            return []
        _checked([SYSTEMCTL, "enable", "--now", unit], unit)
        return ["enabled and started {}".format(unit)]
    root = os.path.abspath(root)
    option = "--root=" + root
    if _query([SYSTEMCTL, option, "is-enabled", unit]) == "enabled":
        return []
    _checked([SYSTEMCTL, option, "enable", unit], unit)
    return ["enabled {} under {} (it starts at the next boot)".format(unit, root)]


# --- reading back -----------------------------------------------------------------

def _env_file(path: str) -> Dict[str, str]:
    text, _ = _read(path)
    values = {}  # type: Dict[str, str]
    for line in (text or "").splitlines():
        match = _ASSIGNMENT.match(line)
        if match and not line.lstrip().startswith("#") and match.group(1) in ENV_KEYS:
            value = match.group(2)
            if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[match.group(1)] = value  # the last one wins, as in systemd
    return values


def _dropin_env(root: str, path: str) -> Tuple[Dict[str, str], List[str]]:
    text, _ = _read(path)
    values = {}  # type: Dict[str, str]
    files = []  # type: List[str]
    for line in (text or "").splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "Environment":
            try:
                words = shlex.split(value)
            except ValueError:
                continue
            for word in words:
                name, eq, setting = word.partition("=")
                if eq and name in ENV_KEYS:
                    values[name] = setting.replace("%%", "%")
        elif key.strip() == "EnvironmentFile":
            name = value.strip().lstrip("-")
            files.append(name)
            values.update(_env_file(in_root(root, name)))
    return values, files


def _environment(distro: str, root: str) -> Tuple[str, Dict[str, str], List[str]]:
    """(the file that configures it, the variables, the env files named)."""
    if distro == "el":
        path = in_root(root, SYSCONFIG)
        return path, _env_file(path), []
    path = _dropin_path(root, SERVICES[distro])
    env, files = _dropin_env(root, path)
    return path, env, files


def renewal_environment(distro: str, root: str = "/") -> Dict[str, str]:
    """The proxy variables the renewal service gets, unredacted (status
    fetches the CAs' directories through exactly these; ``timer_status``
    masks proxy passwords for people)."""
    _check_distro(distro)
    return _environment(distro, root)[1]


def timer_status(distro: str, root: str = "/") -> Dict[str, Any]:
    """What our configuration gives the renewal service, for ``status``.

    ``problems`` names what would break a renewal: a proxy without a scheme
    (as the seed wrote it) or no https_proxy, which ACME traffic needs.
    """
    _check_distro(distro)
    status = OrderedDict([("distro", distro), ("timer", TIMERS[distro]),
                          ("service", SERVICES[distro])])  # type: Dict[str, Any]
    path, env, files = _environment(distro, root)
    if distro == "pip":
        status["units_installed"] = all(
            os.path.exists(in_root(root, "{}/{}".format(UNIT_DIR, unit)))
            for unit in (SERVICES["pip"], TIMERS["pip"]))
    problems = []  # type: List[str]
    for key in PROXY_KEYS:
        if key in env and "://" not in env[key]:
            problems.append("{} has no http:// in front, which breaks with "
                            "Python >= 3.9 and requests < 2.27".format(key))
    if env and "https_proxy" not in env and "HTTPS_PROXY" not in env:
        problems.append("https_proxy is not set, so ACME traffic bypasses the proxy")
    proxy = env.get("https_proxy") or env.get("HTTPS_PROXY") or env.get(
        "http_proxy") or env.get("HTTP_PROXY")
    status.update([
        ("file", path),
        ("environment_files", files),
        ("configured", bool(env)),
        ("proxy", redact_proxy(proxy)),
        ("no_proxy", env.get("no_proxy") or env.get("NO_PROXY")),
        ("environment", OrderedDict(
            (key, redact_proxy(env[key]) if key in PROXY_KEYS else env[key])
            for key in ENV_KEYS if key in env)),
        ("problems", problems),
    ])
    return status
