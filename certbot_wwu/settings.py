"""Deployment settings: one parser for installer options, renewal-conf values
and the ``certbot-wwu`` command.

Values arrive as command-line strings, as strings or lists restored from a
renewal configuration (configobj turns an unquoted ``a,b`` into a list), or
as None/True/False (certbot restores those literally). Everything is checked
here so that a bad value becomes one clear sentence before anything on disk
changes; ``storable`` is the one check that a value survives the renewal
conf (renewalconf.edit runs it too).
"""
import io
import os
import re
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from certbot_wwu.errors import SettingsError

#: weakest first: when lineages ask different things of one unit, the
#: strongest wins (a restart also loads what a reload would)
ACTIONS = ("none", "try-reload-or-restart", "try-restart", "reload", "auto",
           "reload-or-restart", "restart")
DEFAULT_ACTION = "restart"
DEFAULT_TIMEOUT = 30
MAX_TIMEOUT = 3600

UNIT_TYPES = ("service", "socket", "device", "mount", "automount", "swap",
              "target", "path", "timer", "slice", "scope")
_UNIT_MAX = 255
_UNIT_PREFIX = re.compile(r"^[A-Za-z0-9:_.\\-]+\Z")
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?\Z")

#: option name -> help text; the installer registers them with ``--wwu-acl-``
#: in front, the command without it.
OPTIONS = (
    ("user", "Comma-separated user names that get read access to the "
             "current certificate and private key (POSIX ACL). Default: none."),
    ("group", "Comma-separated group names that get read access to the "
              "current certificate and private key (POSIX ACL). Default: none."),
    ("unit", "Comma-separated systemd units to act on after deploying; a "
             "name without a suffix means NAME.service. Default: none."),
    ("action", "What to do with the units after deploying: {}; auto reloads "
               "a unit that can reload and restarts the others. Default: {} (as "
               "the manual recipe's deploy hook does).".format(
                   ", ".join(ACTIONS), DEFAULT_ACTION)),
    ("timeout", "Seconds to wait for each unit to become active after the "
                "action, and for --wwu-acl-check to see the new certificate. "
                "Default: {}.".format(DEFAULT_TIMEOUT)),
    ("check", "HOST:PORT to connect to with TLS after the action, to confirm "
              "that the new certificate is served (SNI: the certificate's "
              "first name). Default: no check."),
    ("copy-to", "Directory to write owned copies of the certificate to (copy "
                "mode), for services that cannot read certbot's tree. Default: "
                "no copies."),
    ("copy-owner", "USER[:GROUP] that owns the copies; the key copies are "
                   "readable by this user and group only. Default: root."),
    ("copy-mode", "Octal mode of the private key copies. Default: 0640 with a "
                  "group in --wwu-acl-copy-owner, else 0600."),
    ("copy-formats", "Comma-separated formats to write: pem (cert.pem, "
                     "chain.pem, fullchain.pem, privkey.pem), combined "
                     "(combined.pem: key, then full chain), pkcs12 "
                     "(bundle.p12). Default: pem."),
    ("p12-password-file", "File holding the PKCS#12 password, read at every "
                          "deployment (the password is never stored in the "
                          "renewal configuration). Default: none."),
    ("push-to", "Comma-separated cluster peers (names from the [cluster] "
                "configuration or HOST) to push the certificate to after every "
                "deployment, where each peer deploys it itself. Default: none."),
)

#: how --help shows each option's value
METAVARS = {"user": "USER[,USER...]", "group": "GROUP[,GROUP...]",
            "unit": "UNIT[,UNIT...]", "action": "ACTION", "timeout": "SECONDS",
            "check": "HOST:PORT", "copy-to": "DIR", "copy-owner": "USER[:GROUP]",
            "copy-mode": "MODE", "copy-formats": "FORMAT[,FORMAT...]",
            "p12-password-file": "FILE", "push-to": "PEER[,PEER...]"}

#: options that hold comma-separated lists
LIST_OPTIONS = ("user", "group", "unit", "copy-formats", "push-to")
_PEER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@\[\]-]*\Z")

#: on/off options (stored as True/False in the renewal configuration)
FLAGS = (
    ("p12-empty-password", "Write the PKCS#12 bundle without a password; "
                           "only for services that cannot use one. Default: off."),
)
COPY_FORMATS = ("pem", "combined", "pkcs12")
_FLAG_KEYS = tuple(name.replace("-", "_") for name, _ in FLAGS)


def comma_list(value: Any) -> str:
    """argparse ``type`` for list options: normalise to ``a,b,c``.

    Accepts the list that configobj makes of an unquoted ``a, b`` so a
    hand-edited renewal conf still works.
    """
    return ",".join(split_list(value, "value"))


def split_list(value: Any, what: str) -> Tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, (list, tuple)):
        items = []  # type: list
        for item in value:
            items.extend(split_list(item, what))
        return tuple(items)
    if not isinstance(value, str):
        raise SettingsError(
            "{} must be a comma-separated list of names, not {!r}.".format(
                what, value))
    items = [item.strip() for item in value.split(",")]
    return tuple(item for item in items if item)


def _unique(items: Iterable[str]) -> Tuple[str, ...]:
    seen = []  # type: list
    for item in items:
        if item not in seen:
            seen.append(item)
    return tuple(seen)


def account_names(value: Any, what: str) -> Tuple[str, ...]:
    """User or group names, syntax only (resolution happens in grants)."""
    names = split_list(value, what)
    for name in names:
        if not _ACCOUNT_NAME.match(name):
            raise SettingsError(
                "{} {!r} is not a valid user or group name.".format(what, name))
    return _unique(names)


def unit_name(name: str) -> str:
    """Validate a systemd unit name; ``nginx`` means ``nginx.service``."""
    if not isinstance(name, str) or not name:
        raise SettingsError("A unit name must not be empty.")
    stem, dot, suffix = name.rpartition(".")
    if not dot or suffix not in UNIT_TYPES:
        stem, suffix = name, "service"
    full = "{}.{}".format(stem, suffix)
    prefix, at, instance = stem.partition("@")
    valid = (
        len(full) <= _UNIT_MAX
        and not stem.startswith("-")
        and _UNIT_PREFIX.match(prefix) is not None
        and (not at or (instance and _UNIT_PREFIX.match(instance) is not None))
    )
    if not valid:
        raise SettingsError(
            "{!r} is not a valid systemd unit name (letters, digits and "
            "':_.\\-' with at most one '@' and a non-empty instance).".format(name))
    return full


def timeout_seconds(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_TIMEOUT
    try:
        seconds = int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        seconds = None
    if seconds is None or not 1 <= seconds <= MAX_TIMEOUT:
        raise SettingsError("Timeout {!r} is not a whole number of seconds from 1 "
                            "to {}.".format(value, MAX_TIMEOUT))
    return seconds


_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)\Z")


def check_address(value: Any) -> Optional[Tuple[str, int]]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port), or None."""
    if value is None or value == "":
        return None
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not (host and _HOST.match(host) and port.isdigit() and 0 < int(port) < 65536):
        raise SettingsError("Check address {!r} is not HOST:PORT (e.g. "
                            "localhost:443 or [::1]:443).".format(value))
    return host.strip("[]"), int(port)


def action_name(value: Any) -> str:
    if value is None or value == "":
        return DEFAULT_ACTION
    if value not in ACTIONS:
        raise SettingsError("Unknown action {!r}; choose one of {}.".format(
            value, ", ".join(ACTIONS)))
    return value


def copy_target(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not os.path.isabs(value) or "\n" in value \
            or os.path.normpath(value) in ("/", "//"):
        raise SettingsError("Copy directory {!r} is not an absolute path to a "
                            "directory of its own.".format(value))
    return os.path.normpath(value)


def copy_owner(value: Any) -> Tuple[str, str]:
    """``USER[:GROUP]`` -> (user, group); root when not given."""
    if value is None or value == "":
        return "root", ""
    if not isinstance(value, str):
        raise SettingsError("Copy owner {!r} is not USER[:GROUP].".format(value))
    user, _, group = value.partition(":")
    account_names(user, "Copy owner")
    if group:
        account_names(group, "Copy group")
    if not user:
        raise SettingsError("Copy owner {!r} is not USER[:GROUP].".format(value))
    return user, group


def copy_mode(value: Any, group: str) -> int:
    if value is None or value == "":
        return 0o640 if group else 0o600
    text = str(value) if not isinstance(value, bool) else ""
    if not re.match(r"^0?[0-7]{3}\Z", text) or int(text, 8) & ~0o660 \
            or not int(text, 8) & 0o400:
        raise SettingsError(
            "Key copy mode {!r} must be octal, readable by the owner and never "
            "by others or executable (e.g. 0640 or 0600).".format(value))
    return int(text, 8)


def copy_formats(value: Any) -> Tuple[str, ...]:
    formats = _unique(split_list(value, "Copy format")) or ("pem",)
    for fmt in formats:
        if fmt not in COPY_FORMATS:
            raise SettingsError("Copy format {!r} is unknown; use {}.".format(
                fmt, ", ".join(COPY_FORMATS)))
    return formats


def flag(value: Any, what: str) -> bool:
    if value in (None, "", False, "False", "false", "no"):
        return False
    if value in (True, "True", "true", "yes"):
        return True
    raise SettingsError("{} must be on or off, not {!r}.".format(what, value))


#: what certbot's renewal code turns into None, True and False
_LITERALS = ("None", "True", "False")
#: configobj substitutes ``%(name)s`` when certbot reads the conf
_SUBSTITUTION = re.compile(r"%\([^)]*\)s")


def _unstorable_char(value: str) -> Optional[str]:
    """Why a character of ``value`` does not survive the renewal conf, or None."""
    for char in value:
        if char == "#":
            return "'#' starts a comment there"
        if char in "\"'":
            return "{!r} is a quote character there".format(char)
        if ord(char) < 0x20 or ord(char) == 0x7f:
            return "the control character U+{:04X} breaks the line".format(ord(char))
        if ord(char) > 0x7e:
            return ("the non-ASCII character U+{:04X} is not written the same "
                    "under every locale".format(ord(char)))
    return None


def _unstorable(option: str, value: str) -> Optional[str]:
    """Why ``value`` would not come back from the renewal conf unchanged, and
    what to do about it; None if it does."""
    reason = _unstorable_char(value)
    if reason:
        return reason + "; choose a value without it"
    if value != value.strip():
        return "a leading or trailing space is dropped there; remove it"
    if _SUBSTITUTION.search(value):
        return ("'%(NAME)s' is replaced by the value of NAME there; choose a "
                "value without it")
    if value in _LITERALS and option not in _FLAG_KEYS:
        return ("certbot reads it back as the Python value {}; choose another "
                "value".format(value))
    if _read_back(option, value) != value:
        return "certbot reads it back differently; choose another value"
    return None


def _read_back(option: str, value: str) -> Any:
    """``value`` written as renewalconf writes it, read as certbot reads it
    (configobj, UTF-8, with interpolation); None if configobj refuses it."""
    import configobj
    from certbot_wwu import renewalconf  # it imports this module
    text = "[renewalparams]\n" + renewalconf.conf_line(option, value)
    try:
        lines = io.BytesIO(text.encode("utf-8")).readlines()
        conf = configobj.ConfigObj(lines, encoding="utf-8", default_encoding="utf-8")
        return conf["renewalparams"].get(renewalconf.conf_key(option))
    except (configobj.ConfigObjError, UnicodeError):
        return None


def storable(option: str, value: Any) -> str:
    """``value`` if certbot reads it back unchanged from a renewal conf.

    The one check for stored values: Settings.from_options runs it on every
    value before anything changes, renewalconf.edit before it writes. A
    value that does not survive becomes a SettingsError naming the option
    and the character.
    """
    name = "--wwu-acl-" + option.replace("_", "-")
    if not isinstance(value, str):
        raise SettingsError("{} {!r} cannot be stored in the renewal configuration: "
                            "it is not text.".format(name, value))
    reason = _unstorable(option.replace("-", "_"), value)
    if reason:
        # ascii(): the sentence also goes to certbot's log, whatever its encoding
        raise SettingsError("{} {} cannot be stored in the renewal configuration: "
                            "{}.".format(name, ascii(value), reason))
    return value


class Settings(object):
    """Validated deployment settings for one lineage."""

    def __init__(self, users: Iterable[str] = (), groups: Iterable[str] = (),
                 units: Iterable[str] = (), action: str = DEFAULT_ACTION,
                 timeout: int = DEFAULT_TIMEOUT,
                 check: Optional[Tuple[str, int]] = None, copy_to: str = "",
                 copy_owner: Tuple[str, str] = ("root", ""),
                 copy_mode: Optional[int] = None,
                 copy_formats: Tuple[str, ...] = ("pem",),
                 p12_password_file: str = "", p12_empty_password: bool = False,
                 push_to: Iterable[str] = ()) -> None:
        self.users = tuple(users)
        self.groups = tuple(groups)
        self.units = tuple(units)
        self.action = action
        self.timeout = timeout
        self.check = check
        self.copy_to = copy_to
        self.copy_owner = copy_owner
        self.copy_mode = copy_mode if copy_mode is not None else (
            0o640 if copy_owner[1] else 0o600)
        self.copy_formats = tuple(copy_formats)
        self.p12_password_file = p12_password_file
        self.p12_empty_password = p12_empty_password
        self.push_to = tuple(push_to)

    @classmethod
    def from_options(cls, get: Callable[[str], Any]) -> "Settings":
        """Build from a getter of raw option values (installer: ``self.conf``)."""
        users = account_names(get("user"), "User")
        groups = account_names(get("group"), "Group")
        units = _unique(unit_name(u) for u in split_list(get("unit"), "Unit"))
        action = action_name(get("action"))
        timeout = timeout_seconds(get("timeout"))
        check = check_address(get("check"))
        target = copy_target(get("copy_to"))
        owner = copy_owner(get("copy_owner"))
        mode = copy_mode(get("copy_mode"), owner[1])
        formats = copy_formats(get("copy_formats"))
        password_file = get("p12_password_file") or ""
        if password_file and not (isinstance(password_file, str)
                                  and os.path.isabs(password_file)):
            raise SettingsError("The PKCS#12 password file {!r} must be an "
                                "absolute path.".format(password_file))
        empty = flag(get("p12_empty_password"), "--wwu-acl-p12-empty-password")
        peers = _unique(split_list(get("push_to"), "Peer"))
        for peer in peers:
            if not _PEER.match(peer):
                raise SettingsError("Peer {!r} is not a host or peer name.".format(peer))
        if not target:
            stray = [name for name in ("copy_owner", "copy_mode", "copy_formats",
                                       "p12_password_file", "p12_empty_password")
                     if get(name) not in (None, "", False)]
            if stray:
                raise SettingsError("--wwu-acl-{} only applies to copies; add "
                                    "--wwu-acl-copy-to DIR or drop it.".format(
                                        stray[0].replace("_", "-")))
        if "pkcs12" in formats and not (password_file or empty):
            raise SettingsError(
                "The pkcs12 format needs --wwu-acl-p12-password-file FILE (or "
                "--wwu-acl-p12-empty-password for a bundle without one).")
        if not users and not groups and not target and not peers:
            raise SettingsError(
                "Nobody to grant access to: give --wwu-acl-user or "
                "--wwu-acl-group (a comma-separated list of names), or "
                "--wwu-acl-copy-to DIR.")
        result = cls(users, groups, units, action, timeout, check, target, owner,
                     mode, formats, password_file, empty, peers)
        for option, value in sorted(result.to_values().items()):
            storable(option, value)
        return result

    def to_values(self) -> Dict[str, str]:
        """Option name -> string, as stored in a renewal conf."""
        values = {
            "user": ",".join(self.users),
            "group": ",".join(self.groups),
            "unit": ",".join(self.units),
            "action": self.action,
            "timeout": str(self.timeout) if self.timeout != DEFAULT_TIMEOUT else "",
            "push_to": ",".join(self.push_to),
            "check": "{}:{}".format(
                "[{}]".format(self.check[0]) if ":" in self.check[0] else self.check[0],
                self.check[1]) if self.check else "",
        }
        if self.copy_to:
            values.update({
                "copy_to": self.copy_to,
                "copy_owner": ":".join(p for p in self.copy_owner if p),
                "copy_mode": "{:04o}".format(self.copy_mode),
                "copy_formats": ",".join(self.copy_formats),
                "p12_password_file": self.p12_password_file,
                "p12_empty_password": "True" if self.p12_empty_password else "",
            })
        return {k: v for k, v in values.items() if v}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return "Settings({})".format(", ".join(
            "{}={!r}".format(k, v) for k, v in sorted(vars(self).items())))

