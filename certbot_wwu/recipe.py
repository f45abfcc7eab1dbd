"""What the manual recipe (three ``setfacl`` commands and a hook that runs
``systemctl restart``) leaves behind once the installer does the job.

* a ``renew_hook``/``deploy_hook``/``post_hook`` in the renewal conf that
  restarts or reloads a unit the installer also acts on: a second restart;
* named default ACL entries on ``live/NAME`` and ``archive/NAME``: copied
  into every key certbot writes (grants owns them);
* ``setfacl -R`` grants on the archived keys of older versions: those keys
  stay readable after the installer moved on.

``find`` reports them (``certbot-wwu attach`` and ``status``), ``take_over``
removes them, one line per change.
"""
import glob
import logging
import os
import re
import shlex
from typing import Iterable, List, Tuple

from certbot_wwu import grants, renewalconf
from certbot_wwu.errors import WwuError
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import unit_name

logger = logging.getLogger(__name__)

HOOK_KEYS = ("renew_hook", "deploy_hook", "post_hook", "pre_hook")
_VERBS = ("restart", "reload", "reload-or-restart", "try-restart",
          "try-reload-or-restart")
_SEPARATORS = re.compile(r"\s*(?:&&|\|\||;)\s*")


class Leftover(object):
    """One trace of the recipe: what it is, and where."""

    def __init__(self, kind: str, where: str, detail: str, line: str = "") -> None:
        self.kind = kind  # "hook", "hook-script", "default-acl", "old-key-acl"
        self.where = where
        self.detail = detail
        self.line = line  # a hook's "key = command" in the renewal conf

    def __str__(self) -> str:
        return "{}: {}".format(self.where, self.detail)


def hook_units(command: str) -> List[str]:
    """Units a hook command restarts or reloads with systemctl/service."""
    found = []
    for part in _SEPARATORS.split(command or ""):
        try:
            words = shlex.split(part)
        except ValueError:
            continue
        words = [w for w in words if not w.startswith("-")]
        if len(words) >= 3 and words[0].endswith("systemctl") and words[1] in _VERBS:
            names = words[2:]
        elif len(words) >= 3 and words[0].endswith("service") and words[2] in _VERBS:
            names = [words[1]]
        else:
            continue
        for name in names:
            try:
                found.append(unit_name(name))
            except WwuError:
                continue
    return found


def _runs_setfacl(command: str) -> bool:
    return any(word.endswith("setfacl") for part in _SEPARATORS.split(command or "")
               for word in part.split())


def _hooks(lineage: Lineage, units: Iterable[str]) -> List[Leftover]:
    """Stored hooks that act on the installer's units again, or grant access
    with setfacl the installer does not know about."""
    wanted = set(units)
    _, hooks = renewalconf.stored_keys(lineage.renewal_conf, HOOK_KEYS)
    found = []
    for key, command in sorted(hooks.items()):
        twice = [u for u in hook_units(command) if u in wanted]
        if twice:
            found.append(Leftover("hook", lineage.renewal_conf, "{} = {} also acts on {}, "
                                  "which the installer restarts or reloads itself".format(
                                      key, command, ", ".join(twice)),
                                  "{} = {}".format(key, command)))
        elif _runs_setfacl(command):
            found.append(Leftover("hook", lineage.renewal_conf, "{} = {} grants access "
                                  "with setfacl, which the installer does itself".format(
                                      key, command), "{} = {}".format(key, command)))
    return found


def _hook_scripts(lineage: Lineage) -> List[Leftover]:
    """Scripts in renewal-hooks/deploy that run setfacl after every renewal
    of every certificate (certbot runs them all; only a person may remove them)."""
    directory = os.path.join(lineage.config_dir, "renewal-hooks", "deploy")
    found = []
    for path in sorted(glob.glob(os.path.join(directory, "*"))):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(65536)
        except OSError:
            continue
        if any(_runs_setfacl(line) for line in text.splitlines()):
            found.append(Leftover("hook-script", path, "runs setfacl after every "
                                  "renewal, which the installer does itself; remove "
                                  "the script"))
    return found


def _old_key_entries(lineage: Lineage) -> List[Leftover]:
    current = lineage.version()
    found = []
    for version in lineage.versions():
        if version == current:
            continue
        for kind in KINDS:
            path = lineage.archive_file(kind, version)
            try:
                entries = grants.read_acl(path)
            except WwuError:
                continue
            named = sorted(key for key in entries
                           if key[0] in "ug" and key[1] is not None)
            if named:
                found.append(Leftover("old-key-acl", path, "ACL entries for {} on an "
                                      "older version (setfacl -R)".format(", ".join(
                                          grants.describe(key) for key in named))))
    return found


def find(lineage: Lineage, users: Iterable[str] = (), groups: Iterable[str] = (),
         units: Iterable[str] = ()) -> List[Leftover]:
    """Every trace of the recipe on this lineage, given the installer's
    settings (the users and groups it grants, the units it acts on)."""
    keep = [p.key for p in grants.resolve(users, groups)]
    found = _hooks(lineage, units) + _hook_scripts(lineage)
    for path, key in grants.stray_defaults(lineage, keep):
        found.append(Leftover("default-acl", path, "default ACL entry for {}, "
                              "copied into every new key".format(grants.describe(key))))
    return found + _old_key_entries(lineage)


def take_over(lineage: Lineage, conf_text: str, users: Iterable[str] = (),
              groups: Iterable[str] = (), units: Iterable[str] = ()
              ) -> Tuple[List[str], str]:
    """Remove the recipe's traces: ACLs on disk now, hook lines from
    ``conf_text`` (the renewal conf, which the caller backs up and writes).
    Returns one line per change and the new conf text."""
    lines = []
    keep = [p.key for p in grants.resolve(users, groups)]
    removed = grants.remove_stray_defaults(lineage, keep)
    if removed:
        lines.append(removed)
    for leftover in _old_key_entries(lineage):
        entries = grants.read_acl(leftover.where)
        cleaned = {k: v for k, v in entries.items()
                   if not (k[0] in "ug" and k[1] is not None) and k[0] != "m"}
        grants.write_acl(leftover.where, grants.with_mask(cleaned))
        lines.append("removed the {} from {}".format(
            leftover.detail.split(" on an")[0], leftover.where))
    for leftover in _hook_scripts(lineage):
        lines.append("left {} alone: it {}".format(leftover.where, leftover.detail))
    for leftover in _hooks(lineage, units):
        conf_text = renewalconf.drop_key(conf_text, leftover.line.split(" = ", 1)[0])
        lines.append("removed {} from {}".format(leftover.line, lineage.renewal_conf))
    return lines, conf_text
