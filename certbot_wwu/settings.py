"""Deployment settings: one parser for installer options, renewal-conf values
and the ``certbot-wwu`` command.

Values arrive as command-line strings, as strings or lists restored from a
renewal configuration (configobj turns an unquoted ``a,b`` into a list), or
as None/True/False (certbot restores those literally). Everything is checked
here so that a bad value becomes one clear sentence before anything on disk
changes; ``storable`` is the one check that a value survives the renewal
conf (renewalconf.edit runs it too).
"""
import argparse
import grp
import io
import os
import pwd
import re
from collections import namedtuple
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from certbot_wwu import addresses
from certbot_wwu.errors import SettingsError


class InvalidValue(SettingsError, argparse.ArgumentTypeError, ValueError):
    """A value refused by an option's argparse ``type``.

    argparse prints it as ``argument --OPTION: <sentence>`` (exit 2) when
    certbot or certbot-wwu parses the command line, before the CA is asked
    for anything; certbot counts it as a parse failure of that lineage (a
    ValueError) when it restores the renewal conf on ``renew``.
    """

#: weakest first: when lineages ask different things of one unit, the
#: strongest wins (a restart also loads what a reload would)
ACTIONS = ("none", "try-reload-or-restart", "try-restart", "reload", "auto",
           "reload-or-restart", "restart")
DEFAULT_ACTION = "restart"
DEFAULT_TIMEOUT = 30
MAX_TIMEOUT = 3600
#: seconds a unit must stay active with the same main process after the
#: action (a Type=simple unit is active the moment it forks)
DEFAULT_SETTLE = 2.0
MAX_SETTLE = 600.0

UNIT_TYPES = ("service", "socket", "device", "mount", "automount", "swap",
              "target", "path", "timer", "slice", "scope")
_UNIT_MAX = 255
_UNIT_PREFIX = re.compile(r"^[A-Za-z0-9:_.\\-]+\Z")
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?\Z")

#: option name -> help text (the table of options, OPTION_TABLE, is built
#: below from these, the metavars and the checks)
_HELP = (
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
    ("settle", "Seconds each unit must then stay active with the same main "
               "process before it counts as back (a service that starts and "
               "dies on its new key fails the deployment); 0 turns the check "
               "off. Default: {:g}, long enough for a daemon to fail on a bad "
               "key or certificate.".format(DEFAULT_SETTLE)),
    ("check", "HOST:PORT to connect to with TLS after the action, to confirm "
              "that the new certificate is served (SNI: the certificate's "
              "first name). Default: no check."),
    ("copy-to", "Directory to write owned copies of the certificate to (copy "
                "mode), for services that cannot read certbot's tree. Default: "
                "no copies."),
    ("copy-owner", "USER[:GROUP] that owns the copies; the key copies are "
                   "readable by this user and group only. Default: root."),
    ("copy-mode", "Octal mode of the private key copies. Default: 0600, or "
                  "0640 when the owner is root with a group (root:GROUP), the "
                  "two forms the strictest readers such as PostgreSQL accept."),
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
    ("service", "Service profile (certbot-wwu presets --services lists them, site "
                "files in /etc/certbot-wwu/presets.d add more): defaults for "
                "the user, unit, action, check protocol, copy owner, mode and "
                "formats of that daemon; options given explicitly win. "
                "Default: none."),
    ("check-protocol", "What --wwu-acl-check speaks before the TLS handshake: "
                       "tls (TLS from the first byte), or STARTTLS of smtp, "
                       "imap, pop3, ldap, postgres or xmpp. Default: the "
                       "service profile's, else tls."),
    ("p12-encryption", "Encryption of the PKCS#12 bundle: modern (AES-256-CBC, "
                       "PBES2, SHA-256 MAC; Java 8u301/11.0.12 and later) or "
                       "legacy (3DES, SHA-1 MAC; older JREs and other old "
                       "readers). Default: the service profile's, else modern."),
)

_FLAG_HELP = (
    ("p12-empty-password", "Write the PKCS#12 bundle without a password; "
                           "only for services that cannot use one. Default: off."),
)
COPY_FORMATS = ("pem", "combined", "pkcs12")


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


def _seconds(value: Any, convert: Callable[[Any], Any], low: float, high: float,
             default: Any, refusal: str) -> Any:
    """A number of seconds from ``low`` to ``high`` (``default`` when not
    given); a bool or nan is no number. ``refusal`` names value and range."""
    if value is None or value == "":
        return default
    try:
        seconds = convert(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        seconds = None
    if seconds is None or not low <= seconds <= high:
        raise SettingsError(refusal.format(value, high))
    return seconds


def timeout_seconds(value: Any) -> int:
    return _seconds(value, int, 1, MAX_TIMEOUT, DEFAULT_TIMEOUT,
                    "Timeout {!r} is not a whole number of seconds from 1 to {}.")


def settle_seconds(value: Any) -> float:
    """The settle window: seconds from 0 (off) to MAX_SETTLE, fractions allowed."""
    return _seconds(value, float, 0, MAX_SETTLE, DEFAULT_SETTLE,
                    "Settle window {!r} is not a number of seconds from 0 to {:g}.")


def _settle(value: Any) -> str:
    return "{:g}".format(settle_seconds(value))


def check_address(value: Any) -> Optional[Tuple[str, int]]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port), or None."""
    if value is None or value == "":
        return None
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    try:
        return addresses.host_name(host, ipv6=True).strip("[]"), addresses.port_number(port)
    except ValueError:
        raise SettingsError("Check address {!r} is not HOST:PORT (e.g. "
                            "localhost:443 or [::1]:443).".format(value))


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


def default_copy_mode(owner: Tuple[str, str]) -> int:
    """0640 only for root:GROUP; else 0600 for the owner alone.

    PostgreSQL (the strictest common reader) refuses a key its own user
    owns with any group bit, and accepts 0640 when root owns it.
    """
    return 0o640 if owner[1] and owner[0] == "root" else 0o600


def copy_mode(value: Any, owner: Tuple[str, str]) -> int:
    if value is None or value == "":
        return default_copy_mode(owner)
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


def account_exists(kind: str, name: str) -> bool:
    """Whether user (``kind`` "user") or group ``name`` exists on this host."""
    try:
        (pwd.getpwnam if kind == "user" else grp.getgrnam)(name)
        return True
    except KeyError:
        return False


def missing_account(kind: str, name: str) -> SettingsError:
    """The one sentence for a user or group this host does not know."""
    return SettingsError(
        "{} {!r} does not exist on this host; create it ({} --system {}) or "
        "correct the name.".format(kind.capitalize(), name,
                                   "useradd" if kind == "user" else "groupadd", name))


def _refusing(check: Callable[[Any], str]) -> Callable[[Any], str]:
    """An argparse ``type``: ``check``'s SettingsError becomes InvalidValue,
    and the value must survive the renewal conf."""
    def parse(value: Any) -> str:
        try:
            result = check(value)
            if result:
                reason = _unstorable(check.__name__.lstrip("_"), result)
                if reason:
                    raise SettingsError("{} cannot be stored in the renewal "
                                        "configuration: {}.".format(ascii(result), reason))
            return result
        except InvalidValue:
            raise
        except SettingsError as err:
            raise InvalidValue(str(err))
    parse.__name__ = check.__name__.lstrip("_")
    return parse


def _names(kind: str, value: Any) -> str:
    names = account_names(value, kind.capitalize())
    for name in names:
        if not account_exists(kind, name):
            raise missing_account(kind, name)
    return ",".join(names)


def _user(value: Any) -> str:
    return _names("user", value)


def _group(value: Any) -> str:
    return _names("group", value)


def _unit(value: Any) -> str:
    return ",".join(_unique(unit_name(u) for u in split_list(value, "Unit")))


def _action(value: Any) -> str:
    return action_name(value)


def _timeout(value: Any) -> str:
    return str(timeout_seconds(value))


def _check(value: Any) -> str:
    check_address(value)
    return value


def _copy_to(value: Any) -> str:
    return copy_target(value)


def _copy_owner(value: Any) -> str:
    user, group = copy_owner(value)
    if not account_exists("user", user):
        raise missing_account("user", user)
    if group and not account_exists("group", group):
        raise missing_account("group", group)
    return ":".join(p for p in (user, group) if p)


def _copy_mode(value: Any) -> str:
    return "{:04o}".format(copy_mode(value, ("root", "")))


def _copy_formats(value: Any) -> str:
    return ",".join(copy_formats(value))


def _p12_password_file(value: Any) -> str:
    return password_file(value)


def _push_to(value: Any) -> str:
    return ",".join(peers(value))


P12_ENCRYPTIONS = ("modern", "legacy")
DEFAULT_P12_ENCRYPTION = "modern"


def check_protocol_name(value: Any) -> str:
    from certbot_wwu import tlscheck
    if value is None or value == "":
        return tlscheck.DEFAULT_PROTOCOL
    if value not in tlscheck.PROTOCOLS:
        raise SettingsError("Unknown check protocol {!r}; choose one of {}.".format(
            value, ", ".join(tlscheck.PROTOCOLS)))
    return value


def p12_encryption_name(value: Any) -> str:
    if value is None or value == "":
        return DEFAULT_P12_ENCRYPTION
    if value not in P12_ENCRYPTIONS:
        raise SettingsError("Unknown PKCS#12 encryption {!r}; choose modern (Java "
                            "8u301, 11.0.12 and later) or legacy (older "
                            "readers).".format(value))
    return value


def service_profile(value: Any) -> Any:
    """The presets' ServiceProfile named ``value`` (None if none), its
    problems as SettingsError."""
    if value is None or value == "":
        return None
    from certbot_wwu import presets
    if not isinstance(value, str):
        raise SettingsError("Service profile {!r} is not a name.".format(value))
    try:
        return presets.get_service(value)
    except presets.PresetError as err:
        raise SettingsError(str(err))


def _service(value: Any) -> str:
    profile = service_profile(value)
    return profile.name if profile else ""


def _check_protocol(value: Any) -> str:
    return check_protocol_name(value)


def _p12_encryption(value: Any) -> str:
    return p12_encryption_name(value)


class Option(namedtuple("Option", "name help metavar type")):
    """One deployment setting. Both front doors build their option from it
    (``--wwu-acl-NAME`` for certbot, ``--NAME`` for certbot-wwu) and the
    renewal conf its key; ``type`` is the argparse ``type`` that checks each
    value when the command line is parsed (before certbot asks the CA for
    anything) and again when certbot restores it from a renewal conf. A flag
    (on/off) has no ``type``."""

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")

    @property
    def flag(self) -> bool:
        return self.type is None

    def help_for(self, prefix: str) -> str:
        """The help text with option names as ``prefix`` spells them."""
        return self.help.replace("--wwu-acl-", prefix)


_METAVARS = {"user": "USER[,USER...]", "group": "GROUP[,GROUP...]",
             "unit": "UNIT[,UNIT...]", "action": "ACTION", "timeout": "SECONDS",
             "settle": "SECONDS", "check": "HOST:PORT", "copy-to": "DIR",
             "copy-owner": "USER[:GROUP]", "copy-mode": "MODE",
             "copy-formats": "FORMAT[,FORMAT...]", "p12-password-file": "FILE",
             "push-to": "PEER[,PEER...]", "service": "NAME",
             "check-protocol": "PROTOCOL", "p12-encryption": "modern|legacy"}
_CHECKS = {"user": _user, "group": _group, "unit": _unit, "action": _action,
           "timeout": _timeout, "settle": _settle, "check": _check,
           "copy-to": _copy_to, "copy-owner": _copy_owner, "copy-mode": _copy_mode,
           "copy-formats": _copy_formats, "p12-password-file": _p12_password_file,
           "push-to": _push_to, "service": _service, "check-protocol": _check_protocol,
           "p12-encryption": _p12_encryption}

#: every deployment setting, in --help order: the one table
OPTION_TABLE = tuple(
    Option(name, text, _METAVARS[name], _refusing(_CHECKS[name])) for name, text in _HELP
) + tuple(Option(name, text, None, None) for name, text in _FLAG_HELP)
_FLAG_KEYS = tuple(option.key for option in OPTION_TABLE if option.flag)


def option(name: str) -> Option:
    """The table's entry for ``name`` (dashes or underscores)."""
    wanted = name.replace("_", "-")
    for entry in OPTION_TABLE:
        if entry.name == wanted:
            return entry
    raise KeyError(name)


#: profile key -> syntax check of its value (accounts are looked up when
#: a deployment uses them, so a profile can name a daemon not installed)
_PROFILE_CHECKS = {
    "user": lambda v: ",".join(account_names(v, "User")),
    "group": lambda v: ",".join(account_names(v, "Group")),
    "unit": _unit, "action": _action, "check_protocol": _check_protocol,
    "copy_owner": lambda v: ":".join(p for p in copy_owner(v) if p),
    "copy_mode": _copy_mode, "copy_formats": _copy_formats,
    "p12_encryption": _p12_encryption,
}


def profile_value(key: str, value: Any) -> str:
    """A service profile's value for option ``key``, normalised as the
    option stores it; SettingsError if the option would refuse it."""
    return _PROFILE_CHECKS[key](value)


def apply_profile(get: Callable[[str], Any], prefix: str = "--wwu-acl-"
                  ) -> Tuple[Callable[[str], Any], Any]:
    """``get`` with the service profile's defaults under the options given
    (explicit values win), and the profile (None without --service)."""
    profile = service_profile(get("service"))
    if profile is None:
        return get, None
    copying = get("copy_to") not in (None, "")
    if profile.mode == "copy" and not copying:
        raise SettingsError(
            "Service profile {} needs copies ({}); give {}copy-to DIR, a "
            "directory root owns.".format(
                profile.name, profile.default("copy_formats", True) or "pem", prefix))

    def with_profile(key: str) -> Any:
        value = get(key)
        if value is None or value == "":
            return profile.default(key, copying) if key in _PROFILE_CHECKS else value
        return value
    return with_profile, profile


def password_file(value: Any) -> str:
    if not value:
        return ""
    if not (isinstance(value, str) and os.path.isabs(value)):
        raise SettingsError("The PKCS#12 password file {!r} must be an "
                            "absolute path.".format(value))
    return value


def peers(value: Any) -> Tuple[str, ...]:
    """The peer list; each peer is checked by the cluster configuration's
    owner (cluster.config.check_peers), which knows the peer names."""
    return _unique(split_list(value, "Peer"))


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


def storable(option: str, value: Any, prefix: str = "--wwu-acl-") -> str:
    """``value`` if certbot reads it back unchanged from a renewal conf.

    The one check for stored values: Settings.from_options runs it on every
    value before anything changes, renewalconf.edit before it writes. A
    value that does not survive becomes a SettingsError naming the option
    and the character.
    """
    name = prefix + option.replace("_", "-")
    if not isinstance(value, str):
        raise SettingsError("{} {!r} cannot be stored in the renewal configuration: "
                            "it is not text.".format(name, value))
    reason = _unstorable(option.replace("-", "_"), value)
    if reason:
        # ascii(): the sentence also goes to certbot's log, whatever its encoding
        raise SettingsError("{} {} cannot be stored in the renewal configuration: "
                            "{}.".format(name, ascii(value), reason))
    return value


#: list options whose given names add to the stored ones (removing one
#: takes ``--no-OPTION NAME``); every other option replaces the stored value
ADDITIVE = ("user", "group", "unit", "push_to")


def _as_list(value: Any) -> Tuple[str, ...]:
    return split_list(value, "value") if value not in (None, True, False) else ()


def merge(stored: Dict[str, Any], given: Dict[str, Any],
          removed: Optional[Dict[str, Any]] = None, prefix: str = "--wwu-acl-"
          ) -> Tuple[Dict[str, Any], List[str]]:
    """The stored settings of a lineage changed only where options name it.

    ``stored`` and ``given`` map option keys (``copy_to``) to raw values,
    ``removed`` maps an ADDITIVE key to names to take out. Returns the new
    raw values and one line per change, so a command that removes access
    says so; a name to remove that is not there is refused (a typo would
    otherwise remove nothing silently).
    """
    result = {k: v for k, v in stored.items() if v not in (None, "", False)}
    changes = []  # type: List[str]
    for key in ADDITIVE:
        old = _as_list(stored.get(key))
        new = list(old)
        for name in _as_list(given.get(key)):
            if name not in new:
                new.append(name)
                changes.append("{} {} added".format(key.replace("_", "-"), name))
        for name in _as_list((removed or {}).get(key)):
            if name not in new:
                raise SettingsError(
                    "{}no-{} {}: {} is not among the stored {} settings ({}); "
                    "check the name.".format(prefix, key.replace("_", "-"), name,
                                             name, key.replace("_", "-"),
                                             ",".join(new) or "none"))
            new.remove(name)
            changes.append("{} {} removed".format(key.replace("_", "-"), name))
        result[key] = ",".join(new) or None
    for key, value in given.items():
        if key in ADDITIVE or value in (None, ""):
            continue
        if stored.get(key) != value:
            changes.append("{}: {} -> {}".format(
                key.replace("_", "-"), stored.get(key) if stored.get(key)
                not in (None, "") else "(default)", value))
        result[key] = value
    return {k: v for k, v in result.items() if v not in (None, "")}, changes


def _refuse_contradictions(get: Callable[[str], Any], prefix: str, target: str,
                           formats: Tuple[str, ...], p12_file: str,
                           empty: bool) -> None:
    """Options that ask for two different things are refused, not guessed."""
    if p12_file and empty:
        raise SettingsError(
            "{0}p12-password-file and {0}p12-empty-password contradict each "
            "other; keep the one you mean.".format(prefix))
    if target and "pkcs12" not in formats and (p12_file or empty):
        raise SettingsError(
            "{0}{1} only applies to the pkcs12 format; add pkcs12 to "
            "{0}copy-formats or drop it.".format(
                prefix, "p12-password-file" if p12_file else "p12-empty-password"))


def _refuse_for_profile(explicit: Callable[[str], Any], prefix: str,
                        result: "Settings", profile: Any) -> None:
    """Options that mean nothing here, and a key copy the profile's daemon
    would refuse, are refused before anything changes."""
    if explicit("check_protocol") not in (None, "") and not result.check:
        raise SettingsError("{0}check-protocol only applies to the check; add "
                            "{0}check HOST:PORT or drop it.".format(prefix))
    if explicit("p12_encryption") not in (None, "") and \
            "pkcs12" not in (result.copy_formats if result.copy_to else ()):
        raise SettingsError("{0}p12-encryption only applies to the pkcs12 copy "
                            "format; add pkcs12 to {0}copy-formats (with "
                            "{0}copy-to) or drop it.".format(prefix))
    problem = profile.key_mode_problem(result.copy_owner[0], result.copy_mode) \
        if profile is not None and result.copy_to else None
    if problem:
        raise SettingsError(
            "{1}; use {0}copy-mode 0600, or {0}copy-owner root:GROUP with "
            "{0}copy-mode 0640.".format(prefix, problem[:1].upper() + problem[1:]))


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
                 push_to: Iterable[str] = (),
                 settle: float = DEFAULT_SETTLE) -> None:
        self.settle = settle
        self.users = tuple(users)
        self.groups = tuple(groups)
        self.units = tuple(units)
        self.action = action
        self.timeout = timeout
        self.check = check
        self.copy_to = copy_to
        self.copy_owner = copy_owner
        self.copy_mode = copy_mode if copy_mode is not None else \
            default_copy_mode(copy_owner)
        self.copy_formats = tuple(copy_formats)
        self.p12_password_file = p12_password_file
        self.p12_empty_password = p12_empty_password
        self.push_to = tuple(push_to)
        self.service = ""
        self.check_protocol = check_protocol_name(None)
        self.p12_encryption = DEFAULT_P12_ENCRYPTION

    @classmethod
    def from_options(cls, get: Callable[[str], Any],
                     prefix: str = "--wwu-acl-") -> "Settings":
        """Build from a getter of raw option values (installer: ``self.conf``).

        ``prefix`` names the options in messages as the command that was
        run spells them: ``--wwu-acl-`` for certbot, ``--`` for certbot-wwu.
        """
        explicit = get
        get, profile = apply_profile(get, prefix)
        users = account_names(get("user"), "User")
        groups = account_names(get("group"), "Group")
        units = _unique(unit_name(u) for u in split_list(get("unit"), "Unit"))
        action = action_name(get("action"))
        timeout = timeout_seconds(get("timeout"))
        settle = settle_seconds(get("settle"))
        check = check_address(get("check"))
        target = copy_target(get("copy_to"))
        owner = copy_owner(get("copy_owner"))
        mode = copy_mode(get("copy_mode"), owner)
        formats = copy_formats(get("copy_formats"))
        p12_file = password_file(get("p12_password_file"))
        empty = flag(get("p12_empty_password"), prefix + "p12-empty-password")
        push_to = peers(get("push_to"))
        if push_to:  # a peer the push would refuse, refused before anything changes
            from certbot_wwu.cluster.config import check_peers
            check_peers(push_to, prefix + "push-to")
        _refuse_contradictions(get, prefix, target, formats, p12_file, empty)
        if not target:
            stray = [name for name in ("copy_owner", "copy_mode", "copy_formats",
                                       "p12_password_file", "p12_empty_password")
                     if get(name) not in (None, "", False)]
            if stray:
                raise SettingsError("{0}{1} only applies to copies; add "
                                    "{0}copy-to DIR or drop it.".format(
                                        prefix, stray[0].replace("_", "-")))
        if "pkcs12" in formats and not (p12_file or empty):
            raise SettingsError(
                "The pkcs12 format needs {0}p12-password-file FILE (or "
                "{0}p12-empty-password for a bundle without one).".format(prefix))
        if not users and not groups and not target and not push_to and not (
                profile and profile.reads_as_root):
            raise SettingsError(
                "Nobody to grant access to: give {0}user or {0}group (a "
                "comma-separated list of names), or {0}copy-to DIR.".format(prefix))
        result = cls(users, groups, units, action, timeout, check, target, owner,
                     mode, formats, p12_file, empty, push_to)
        result.settle = settle
        result.service = profile.name if profile else ""
        result.check_protocol = check_protocol_name(get("check_protocol"))
        result.p12_encryption = p12_encryption_name(get("p12_encryption"))
        _refuse_for_profile(explicit, prefix, result, profile)
        for option, value in sorted(result.to_values().items()):
            storable(option, value, prefix)
        return result

    def to_values(self) -> Dict[str, str]:
        """Option name -> string, as stored in a renewal conf."""
        values = {
            "user": ",".join(self.users),
            "group": ",".join(self.groups),
            "unit": ",".join(self.units),
            "action": self.action,
            "timeout": str(self.timeout) if self.timeout != DEFAULT_TIMEOUT else "",
            "settle": "{:g}".format(self.settle) if self.settle != DEFAULT_SETTLE else "",
            "push_to": ",".join(self.push_to),
            "service": self.service,
            "check_protocol": self.check_protocol if self.check and
            self.check_protocol != check_protocol_name(None) else "",
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
                "p12_encryption": self.p12_encryption
                if "pkcs12" in self.copy_formats else "",
            })
        return {k: v for k, v in values.items() if v}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return "Settings({})".format(", ".join(
            "{}={!r}".format(k, v) for k, v in sorted(vars(self).items())))

