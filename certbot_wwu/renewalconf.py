"""Record the installer and its options in a lineage's renewal configuration.

certbot's ``install`` never writes ``renewal/NAME.conf``, so a later
``certbot renew`` would not know the installer. We edit the file line by line:
only ``installer`` and the ``wwu_acl_*`` keys of ``[renewalparams]`` change,
every other line stays byte for byte (re-serialising certbot's values, as
merging ``relevant_values`` would, can move a lineage to another CA).
"""
import os
import re
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from certbot_wwu.errors import LineageError, WwuError
from certbot_wwu.files import write_atomic
from certbot_wwu.lineage import no_such_certificate
from certbot_wwu.settings import Settings, split_list, storable, unit_name

INSTALLER = "wwu-acl"
PREFIX = "wwu_acl_"
SECTION = "[renewalparams]"
_KEY = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=")


def conf_key(option: str) -> str:
    """The renewal-conf key of an option: ``copy-to`` -> ``wwu_acl_copy_to``."""
    return PREFIX + option.replace("-", "_")


def quote(value: str) -> str:
    """configobj reads an unquoted ``a,b`` as a list: quote it."""
    return '"{}"'.format(value) if "," in value else value


def conf_line(option: str, value: str) -> str:
    """The line that stores ``value``, unchecked: settings.storable checks a
    value by reading this line back as certbot does."""
    return "{} = {}\n".format(conf_key(option), quote(value))


def read(path: str) -> str:
    """The text of a renewal conf (certbot writes UTF-8), or one LineageError."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as err:
        raise LineageError("Cannot read the renewal configuration {}: {}.".format(
            path, err.strerror or err))
    except UnicodeDecodeError:
        raise LineageError("The renewal configuration {} is not UTF-8 text as "
                           "certbot writes it; correct or restore it.".format(path))


def _ours(line: str) -> bool:
    key = key_of(line)
    return key is not None and (key == "installer" or key.startswith(PREFIX))


def edit(text: str, values: Optional[Dict[str, str]]) -> str:
    """The conf text with our keys replaced; ``values=None`` detaches.

    Every value is checked with settings.storable first (SettingsError):
    the file is never written with a value certbot would read differently.
    """
    lines = text.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start = next((i for i, line in enumerate(lines)
                  if section_of(line) == SECTION), None)
    if start is None:
        lines.append(SECTION + "\n")
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines))
                if section_of(lines[i]) is not None), len(lines))
    body = [line for line in lines[start + 1:end] if not _ours(line)]
    added = []  # type: List[str]
    if values is not None:
        added.append("installer = {}\n".format(INSTALLER))
        for option in sorted(values):
            added.append(conf_line(option, storable(option, values[option])))
    tail = []  # type: List[str]
    while body and not body[-1].strip():
        tail.insert(0, body.pop())
    return "".join(lines[:start + 1] + body + added + tail + lines[end:])


def attach(path: str, values: Optional[Dict[str, str]]) -> bool:
    """Write ``values`` (None: detach) into ``path``; True if the file changed."""
    text = read(path)
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError as err:
        raise LineageError("Cannot read the renewal configuration {}: {}.".format(
            path, err.strerror or err))
    new = edit(text, values)
    if new == text:
        return False
    write_atomic(path, new, mode)
    return True


def _one_line(err: BaseException) -> str:
    return " ".join(str(getattr(err, "strerror", None) or err).split()).rstrip(".") + "."


def params(path: str) -> Dict[str, Any]:
    """``[renewalparams]`` of a renewal conf as certbot reads it for renew
    (configobj, UTF-8, no interpolation), values as stored; one LineageError
    when the file is missing (no such certificate) or unreadable."""
    import configobj
    if not os.path.exists(path):
        raise no_such_certificate(os.path.dirname(os.path.dirname(path)),
                                  os.path.basename(path)[:-len(".conf")])
    try:
        section = configobj.ConfigObj(path, encoding="utf-8", file_error=True,
                                      interpolation=False).get("renewalparams", {})
        return dict(section) if isinstance(section, dict) else {}
    except (OSError, configobj.ConfigObjError, UnicodeError) as err:
        raise LineageError("Cannot parse the renewal configuration {}: {}".format(
            path, _one_line(err)))


def restored(value: Any) -> Any:
    """A stored value as certbot hands it back on renew: "None", "True" and
    "False" as Python values, anything else as stored."""
    if isinstance(value, str):
        return {"None": None, "True": True, "False": False}.get(value, value)
    return value


def options(values: Dict[str, Any]) -> Dict[str, Any]:
    """Our ``wwu_acl_*`` values of ``params`` by option name (``copy_to``),
    restored as certbot restores them."""
    return {key[len(PREFIX):]: restored(value) for key, value in values.items()
            if key.startswith(PREFIX)}


def settings(values: Dict[str, Any]) -> Settings:
    """Settings from the stored values of ``params``, as the installer
    builds them on renew (SettingsError if they are invalid)."""
    found = options(values)
    return Settings.from_options(lambda name: found.get(name))


_UNITS = {}  # type: Dict[str, FrozenSet[str]]


def installer_units(path: str) -> FrozenSet[str]:
    """Units a renewal conf names for this installer (cached per process;
    a conf that cannot be read names none)."""
    if path not in _UNITS:
        try:
            values = params(path)
            units = frozenset()  # type: FrozenSet[str]
            if values.get("installer") == INSTALLER:
                units = frozenset(unit_name(u) for u in split_list(
                    values.get(conf_key("unit")), "Unit"))
        except WwuError:
            units = frozenset()
        _UNITS[path] = units
    return _UNITS[path]


def stored(path: str) -> Tuple[Optional[str], Dict[str, Any]]:
    """The installer and our options as certbot would restore them on renew."""
    values = params(path)
    return values.get("installer"), options(values)


def stored_keys(path: str, keys: Tuple[str, ...]) -> Tuple[Optional[str], Dict[str, str]]:
    """The installer and certbot's own ``keys`` of ``[renewalparams]`` that
    are set (hooks, for the recipe's leftovers)."""
    values = params(path)
    found = {key: values[key] for key in keys
             if isinstance(values.get(key), str) and values[key] not in ("", "None")}
    return values.get("installer"), found


def key_of(line: str) -> Optional[str]:
    """The key a ``key = value`` line of a renewal conf sets, else None."""
    match = _KEY.match(line)
    return match.group(1) if match else None


def section_of(line: str) -> Optional[str]:
    """The section a ``[name]`` line opens (comment stripped), else None."""
    stripped = line.split("#", 1)[0].strip()
    return stripped if stripped.startswith("[") else None


def param_keys(text: str) -> List[str]:
    """The keys set in ``[renewalparams]`` of a conf's text, in order."""
    keys = []  # type: List[str]
    inside = False
    for line in text.splitlines():
        section = section_of(line)
        if section is not None:
            inside = section == SECTION
        elif inside and key_of(line):
            keys.append(key_of(line) or "")
    return keys


def drop_key(text: str, key: str) -> str:
    """``text`` without the ``key = ...`` line of ``[renewalparams]``; every
    other line stays byte for byte."""
    lines = text.splitlines(True)
    inside = False
    kept = []
    for line in lines:
        section = section_of(line)
        if section is not None:
            inside = section == SECTION
        if inside and key_of(line) == key:
            continue
        kept.append(line)
    return "".join(kept)
