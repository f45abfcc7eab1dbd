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
from certbot_wwu.settings import split_list, storable, unit_name

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
    match = _KEY.match(line)
    return bool(match) and (match.group(1) == "installer"
                            or match.group(1).startswith(PREFIX))


def edit(text: str, values: Optional[Dict[str, str]]) -> str:
    """The conf text with our keys replaced; ``values=None`` detaches.

    Every value is checked with settings.storable first (SettingsError):
    the file is never written with a value certbot would read differently.
    """
    lines = text.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start = next((i for i, line in enumerate(lines)
                  if line.split("#", 1)[0].strip() == SECTION), None)
    if start is None:
        lines.append(SECTION + "\n")
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].lstrip().startswith("[")), len(lines))
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


_UNITS = {}  # type: Dict[str, FrozenSet[str]]


def installer_units(path: str) -> FrozenSet[str]:
    """Units a renewal conf names for this installer (cached per process;
    a conf that cannot be read names none)."""
    if path not in _UNITS:
        import configobj
        try:
            params = configobj.ConfigObj(path, encoding="utf-8",
                                         interpolation=False).get("renewalparams", {})
            units = frozenset()  # type: FrozenSet[str]
            if params.get("installer") == INSTALLER:
                units = frozenset(unit_name(u) for u in split_list(
                    params.get(PREFIX + "unit"), "Unit"))
        except (OSError, configobj.ConfigObjError, WwuError):
            units = frozenset()
        _UNITS[path] = units
    return _UNITS[path]


def stored(path: str) -> Tuple[Optional[str], Dict[str, Any]]:
    """The installer and our options as certbot would restore them on renew
    (``None``/``True``/``False`` as Python values, anything else as stored)."""
    import configobj
    try:
        params = configobj.ConfigObj(path, encoding="utf-8",
                                     interpolation=False).get("renewalparams", {})
    except (OSError, configobj.ConfigObjError) as err:
        raise LineageError("Cannot parse the renewal configuration {}: {}".format(
            path, " ".join(str(err).split()).rstrip(".") + "."))
    if not os.path.exists(path):
        raise LineageError("There is no renewal configuration {}; is the "
                           "certificate name right?".format(path))
    literal = {"None": None, "True": True, "False": False}
    try:
        values = {key[len(PREFIX):]: literal.get(value, value) if isinstance(value, str)
                  else value for key, value in params.items() if key.startswith(PREFIX)}
        installer = params.get("installer")
    except configobj.ConfigObjError as err:
        raise LineageError("Cannot read the renewal configuration {}: {}".format(
            path, " ".join(str(err).split()).rstrip(".") + "."))
    return installer, values
