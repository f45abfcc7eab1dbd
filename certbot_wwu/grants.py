"""POSIX ACL grants on certbot's tree, with pylibacl.

An ACL is modelled as a dict ``{(tag, qualifier): bits}`` with tags ``u``,
``g``, ``m``, ``o`` and qualifier None for the owner, owning-group, mask and
other entries. The mask is always recomputed as the union of the group class,
as setfacl does, so a grant is effective and nothing else widens.
"""
import errno
import functools
import grp
import logging
import os
import pwd
import threading
from collections import namedtuple
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from certbot_wwu.errors import GrantError
from certbot_wwu.lineage import KINDS, Lineage

logger = logging.getLogger(__name__)

R, W, X = 4, 2, 1
#: ids no account uses; the probe process that must be refused runs as them
OUTSIDER_UID = OUTSIDER_GID = 2147483000

Key = Tuple[str, Optional[int]]
Entries = Dict[Key, int]


class Principal(namedtuple("Principal", "kind name id")):
    """A user or group, resolved by name on this host."""

    @property
    def key(self) -> Key:
        return ("u" if self.kind == "user" else "g", self.id)

    def __str__(self) -> str:
        return "{} {}".format(self.kind, self.name)


_ACCOUNTS = (("user", pwd.getpwnam, "pw_uid", "useradd"),
             ("group", grp.getgrnam, "gr_gid", "groupadd"))


def resolve(users: Iterable[str], groups: Iterable[str]) -> List[Principal]:
    """Look up every name now, so an unknown one stops us before any change."""
    found = []
    for (kind, lookup, id_field, create), names in zip(_ACCOUNTS, (users, groups)):
        for name in names:
            try:
                found.append(Principal(kind, name, getattr(lookup(name), id_field)))
            except KeyError:
                raise GrantError(
                    "{} {!r} does not exist on this host; create it ({} --system "
                    "{}) or correct --wwu-acl-{}.".format(
                        kind.capitalize(), name, create, name, kind))
    return found


def _posix1e():
    try:
        import posix1e
    except ImportError:
        raise GrantError(
            "The Python module posix1e is missing; install pylibacl (Debian/"
            "Ubuntu: apt install python3-pylibacl, EL/Fedora: dnf install "
            "python3-pylibacl, pip: pip install pylibacl).")
    return posix1e


def _fs_error(path: str, err: OSError) -> GrantError:
    if err.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
        return GrantError(
            "The filesystem holding {} does not support POSIX ACLs; mount it "
            "with ACL support (option 'acl') or deploy copies instead "
            "(--wwu-acl-copy-to DIR).".format(path))
    if err.errno == errno.EROFS:
        return GrantError("Cannot set ACLs on {}: the filesystem is mounted "
                          "read-only.".format(path))
    return GrantError("Cannot change the ACL of {}: {}.".format(
        path, err.strerror or err))


def read_acl(path: str) -> Entries:
    posix1e = _posix1e()
    tags = {posix1e.ACL_USER_OBJ: ("u", False), posix1e.ACL_USER: ("u", True),
            posix1e.ACL_GROUP_OBJ: ("g", False), posix1e.ACL_GROUP: ("g", True),
            posix1e.ACL_MASK: ("m", False), posix1e.ACL_OTHER: ("o", False)}
    try:
        acl = posix1e.ACL(file=path)
    except OSError as err:
        raise _fs_error(path, err)
    entries = {}  # type: Entries
    for entry in acl:
        tag, named = tags[entry.tag_type]
        perms = entry.permset
        bits = (R if perms.read else 0) | (W if perms.write else 0) | (
            X if perms.execute else 0)
        entries[(tag, entry.qualifier if named else None)] = bits
    return entries


_PERMS = ("---", "--x", "-w-", "-wx", "r--", "r-x", "rw-", "rwx")


def _text(entries: Entries) -> str:
    return ",".join("{}:{}:{}".format(tag, "" if q is None else q, _PERMS[bits & 7])
                    for (tag, q), bits in sorted(
                        entries.items(), key=lambda kv: (kv[0][0], kv[0][1] or -1)))


def write_acl(path: str, entries: Entries) -> None:
    posix1e = _posix1e()
    try:
        posix1e.ACL(text=_text(entries)).applyto(path)
    except OSError as err:
        raise _fs_error(path, err)


def with_mask(entries: Entries) -> Entries:
    """Recompute the mask; a minimal ACL (no named entries) has none."""
    result = {k: v for k, v in entries.items() if k[0] != "m"}
    named = [v for (tag, q), v in result.items() if tag in "ug" and q is not None]
    if named:
        mask = result.get(("g", None), 0)
        for bits in named:
            mask |= bits
        result[("m", None)] = mask
    return result


def effective_group(entries: Entries) -> int:
    """What the owning group may really do: its entry limited by the mask."""
    bits = entries.get(("g", None), 0)
    return bits & entries.get(("m", None), bits)


def key_group_intent(lineage: Lineage, version: int) -> int:
    """The owning group's access to the key as certbot meant it.

    certbot gives a new ``privkeyN.pem`` the previous key's group mode bits,
    which show the ACL mask once an ACL exists; the previous key's real
    owning-group entry is what was meant. The first key keeps its own.
    """
    for candidate in (version - 1, version):
        path = lineage.archive_file("privkey", candidate)
        if candidate > 0 and os.path.exists(path):
            return group_access(path)
    return 0


def group_access(path: str) -> int:
    """The owning group's effective bits, from the ACL if there is one."""
    if has_acl(path):
        return effective_group(read_acl(path))
    return (os.stat(path).st_mode >> 3) & 7


def has_acl(path: str) -> bool:
    try:
        return bool(os.getxattr(path, "system.posix_acl_access"))
    except OSError:
        return False


def secure_key(path: str, group_bits: int) -> bool:
    """Give the owning group exactly ``group_bits`` on the key; True if changed.

    Needs no pylibacl while the key has no ACL yet (a fresh certbot key), so
    the repair happens even when the rest of a deployment cannot run.
    """
    if not has_acl(path):
        mode = os.stat(path).st_mode & 0o7777
        wanted = (mode & ~0o070) | (group_bits << 3)
        if wanted == mode:
            return False
        os.chmod(path, wanted)
        return True
    entries = read_acl(path)
    if entries.get(("g", None)) == group_bits:
        return False
    entries[("g", None)] = group_bits
    write_acl(path, with_mask(entries))
    return True


def check_supported(path: str) -> None:
    """Fail before any change if ACLs cannot be written at ``path``."""
    posix1e = _posix1e()
    try:
        posix1e.ACL(file=path).applyto(path)
    except OSError as err:
        raise _fs_error(path, err)


class Plan(object):
    """The ACL changes of one deployment: path -> entries to set or remove."""

    def __init__(self) -> None:
        self.grant = []  # type: List[Tuple[str, Dict[Key, int]]]
        self.revoke = []  # type: List[Tuple[str, List[Key]]]
        self.key = None  # type: Optional[str]
        self.key_group = 0

    def describe(self) -> List[str]:
        lines = []
        for path, add in self.grant:
            lines.append("grant {} on {}".format(
                ", ".join("{}:{}:{}".format(t, q, b) for (t, q), b in sorted(add.items())), path))
        for path, keys in self.revoke:
            lines.append("revoke {} on {}".format(
                ", ".join("{}:{}".format(t, q) for t, q in keys), path))
        return lines


def plan(lineage: Lineage, files: Dict[str, str], principals: Sequence[Principal],
         revoke_files: Iterable[str] = (), revoke_keys: Iterable[Key] = (),
         gone_keys: Iterable[Key] = ()) -> Plan:
    """What to change so that exactly ``principals`` read the current files.

    ``revoke_files`` (older versions) lose ``revoke_keys``; ``gone_keys``
    (principals no longer configured) also lose access to the lineage's
    directories and current files. The traverse entries on ``live`` and
    ``archive`` stay: other lineages may rely on them and they grant nothing
    to read by themselves.
    """
    result = Plan()
    archive_dir = os.path.dirname(files["privkey"])
    for path, bits in ((lineage.live_root, X), (lineage.archive_root, X),
                       (lineage.live_dir, R | X), (archive_dir, R | X)):
        result.grant.append((path, {p.key: bits for p in principals}))
    for kind in KINDS:
        result.grant.append((files[kind], {p.key: R for p in principals}))
    result.key = files["privkey"]
    gone = list(gone_keys)
    if gone:
        for path in [lineage.live_dir, archive_dir] + [files[k] for k in KINDS]:
            result.revoke.append((path, gone))
    revoke = list(revoke_keys)
    current = set(files.values())
    for path in revoke_files:
        if path not in current and revoke:
            result.revoke.append((path, revoke))
    return result


def apply(plan_: Plan) -> int:
    """Apply a plan; returns the number of paths whose ACL changed."""
    changed = 0
    todo = {}  # type: Dict[str, Tuple[Dict[Key, int], List[Key]]]
    for path, add in plan_.grant:
        todo.setdefault(path, ({}, []))[0].update(add)
    for path, keys in plan_.revoke:
        todo.setdefault(path, ({}, []))[1].extend(keys)
    for path, (add, remove) in todo.items():
        if not os.path.exists(path):
            continue
        before = read_acl(path)
        after = {k: v for k, v in before.items() if k not in remove}
        old_mask = before.get(("m", None))
        if old_mask is not None:
            # an entry the mask held back must stay held back once the mask
            # is recomputed: keep what it was effectively allowed, no more
            for key in after:
                if key[0] == "g" or (key[0] == "u" and key[1] is not None):
                    after[key] &= old_mask
        after.update(add)
        if path == plan_.key:
            after[("g", None)] = plan_.key_group
        after = with_mask(after)
        if after != before:
            write_acl(path, after)
            changed += 1
            logger.debug("ACL of %s is now %s", path, _text(after))
    return changed


def missing(plan_: Plan) -> List[str]:
    """Paths whose ACL differs from the plan (cheap: reads ACLs, no fork)."""
    wrong = []
    for path, add in plan_.grant:
        entries = read_acl(path)
        mask = entries.get(("m", None), 0)
        if any(entries.get(k) != bits or bits & ~mask for k, bits in add.items()):
            wrong.append(path)
        elif path == plan_.key and entries.get(("g", None)) != plan_.key_group:
            wrong.append(path)
    for path, keys in plan_.revoke:
        if os.path.exists(path) and set(keys) & set(read_acl(path)):
            wrong.append(path)
    return wrong


def _try_open(paths: Sequence[str]) -> List[bool]:
    answers = []
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                os.read(fd, 1)
            finally:
                os.close(fd)
            answers.append(True)
        except OSError:
            answers.append(False)
    return answers


def can_read(paths: Sequence[str], uid: int, gid: int, groups: Sequence[int]) -> List[bool]:
    """Open each path as uid/gid/groups: what the kernel says.

    As root in a single-threaded process the effective ids are switched for
    the check and back (the real and saved ids stay 0, so switching back
    cannot fail for lack of privilege); anywhere else a child process runs it.
    """
    if os.getresuid() == (0, 0, 0) and threading.active_count() == 1:
        return _can_read_switched(paths, uid, gid, groups)
    return _can_read_forked(paths, uid, gid, groups)


def _can_read_switched(paths: Sequence[str], uid: int, gid: int,
                       groups: Sequence[int]) -> List[bool]:
    saved_groups = os.getgroups()
    saved_gid = os.getegid()
    os.setgroups(list(groups))
    try:
        os.setresgid(-1, gid, -1)
        try:
            os.setresuid(-1, uid, -1)
            try:
                return _try_open(paths)
            finally:
                os.setresuid(-1, 0, -1)
        finally:
            os.setresgid(-1, saved_gid, -1)
    finally:
        os.setgroups(saved_groups)


def _can_read_forked(paths: Sequence[str], uid: int, gid: int,
                     groups: Sequence[int]) -> List[bool]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            os.write(write_end, bytes(ord("y") if ok else ord("n")
                                      for ok in _try_open(paths)))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        answers = b""
        while True:
            chunk = os.read(read_end, 4096)
            if not chunk:
                break
            answers += chunk
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    if len(answers) != len(paths):
        raise GrantError("Could not start a process as uid {} to check access."
                         .format(uid))
    return [answer == ord("y") for answer in answers]


@functools.lru_cache(maxsize=256)
def identity(principal: Principal) -> Tuple[int, int, Tuple[int, ...]]:
    """uid, gid and groups of a process acting as the principal (looked up
    once per certbot run: one renew may deploy hundreds of certificates)."""
    if principal.kind == "user":
        entry = pwd.getpwuid(principal.id)
        return (entry.pw_uid, entry.pw_gid,
                tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)))
    return OUTSIDER_UID, principal.id, (principal.id,)


def verify(lineage: Lineage, principals: Sequence[Principal]) -> None:
    """Each principal can read the live files; an outsider cannot read the key."""
    paths = [lineage.live_path(kind) for kind in KINDS]
    for principal in principals:
        results = can_read(paths, *identity(principal))
        denied = [p for p, ok in zip(paths, results) if not ok]
        if denied:
            raise GrantError(
                "After granting, {} still cannot read {}; check the ACL mask "
                "with getfacl.".format(principal, ", ".join(denied)))
    if can_read([lineage.live_path("privkey")], OUTSIDER_UID, OUTSIDER_GID, [])[0]:
        raise GrantError(
            "The private key {} is readable by any user; fix its mode "
            "(chmod o-rwx) before deploying.".format(lineage.live_path("privkey")))
