"""Deployment settings: one parser for installer options, renewal-conf values
and the ``certbot-wwu`` command.

Values arrive as command-line strings, as strings or lists restored from a
renewal configuration (configobj turns an unquoted ``a,b`` into a list), or
as None/True/False (certbot restores those literally). Everything is checked
here so that a bad value becomes one clear sentence before anything on disk
changes.
"""
import re
from typing import Any, Callable, Dict, Iterable, Tuple

from certbot_wwu.errors import SettingsError

ACTIONS = ("restart", "reload", "reload-or-restart", "try-restart", "none")
DEFAULT_ACTION = "restart"

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
    ("action", "What to do with the units after deploying: {}. Default: "
               "{} (as the manual recipe's deploy hook does).".format(
                   ", ".join(ACTIONS), DEFAULT_ACTION)),
)


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


def action_name(value: Any) -> str:
    if value is None or value == "":
        return DEFAULT_ACTION
    if value not in ACTIONS:
        raise SettingsError("Unknown action {!r}; choose one of {}.".format(
            value, ", ".join(ACTIONS)))
    return value


class Settings(object):
    """Validated deployment settings for one lineage."""

    def __init__(self, users: Iterable[str] = (), groups: Iterable[str] = (),
                 units: Iterable[str] = (), action: str = DEFAULT_ACTION) -> None:
        self.users = tuple(users)
        self.groups = tuple(groups)
        self.units = tuple(units)
        self.action = action

    @classmethod
    def from_options(cls, get: Callable[[str], Any]) -> "Settings":
        """Build from a getter of raw option values (installer: ``self.conf``)."""
        users = account_names(get("user"), "User")
        groups = account_names(get("group"), "Group")
        units = _unique(unit_name(u) for u in split_list(get("unit"), "Unit"))
        action = action_name(get("action"))
        if not users and not groups:
            raise SettingsError(
                "Nobody to grant access to: give --wwu-acl-user or "
                "--wwu-acl-group (a comma-separated list of names).")
        return cls(users, groups, units, action)

    def to_values(self) -> Dict[str, str]:
        """Option name -> string, as stored in a renewal conf."""
        values = {
            "user": ",".join(self.users),
            "group": ",".join(self.groups),
            "unit": ",".join(self.units),
            "action": self.action,
        }
        return {k: v for k, v in values.items() if v}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return "Settings({})".format(", ".join(
            "{}={!r}".format(k, v) for k, v in sorted(vars(self).items())))

