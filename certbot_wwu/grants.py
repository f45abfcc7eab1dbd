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
import stat
import threading
from collections import namedtuple
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from certbot_wwu.errors import GrantError, WwuError
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import missing_account

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


_ACCOUNTS = (("user", pwd.getpwnam, "pw_uid"), ("group", grp.getgrnam, "gr_gid"))


def resolve(users: Iterable[str], groups: Iterable[str]) -> List[Principal]:
    """Look up every name now, so an unknown one stops us before any change."""
    found = []
    for (kind, lookup, id_field), names in zip(_ACCOUNTS, (users, groups)):
        for name in names:
            try:
                found.append(Principal(kind, name, getattr(lookup(name), id_field)))
            except KeyError:
                raise GrantError(str(missing_account(kind, name)))
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
    """The access ACL of ``path`` (a file without one: its mode bits)."""
    return _read(path, default=False)


def read_default_acl(path: str) -> Entries:
    """The default ACL of directory ``path``; empty when it has none.

    Asks the kernel for the attribute first, so a directory without one
    (every copy-only deployment, a filesystem without ACLs) needs no pylibacl.
    """
    if not _has_xattr(path, "system.posix_acl_default"):
        return {}
    return _read(path, default=True)


def _read(path: str, default: bool) -> Entries:
    posix1e = _posix1e()
    try:
        acl = posix1e.ACL(filedef=path) if default else posix1e.ACL(file=path)
    except OSError as err:
        raise _fs_error(path, err)
    return _entries(posix1e, acl)


def _entries(posix1e, acl) -> Entries:
    tags = {posix1e.ACL_USER_OBJ: ("u", False), posix1e.ACL_USER: ("u", True),
            posix1e.ACL_GROUP_OBJ: ("g", False), posix1e.ACL_GROUP: ("g", True),
            posix1e.ACL_MASK: ("m", False), posix1e.ACL_OTHER: ("o", False)}
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


def _write_default_acl(path: str, entries: Entries) -> None:
    """Set the default ACL of ``path``, or delete it (``setfacl -k``) when
    only base entries are left: a mask-only default would still shape the
    mode of every file certbot creates there."""
    posix1e = _posix1e()
    try:
        if any(_named(key) for key in entries):
            posix1e.ACL(text=_text(entries)).applyto(path, posix1e.ACL_TYPE_DEFAULT)
        else:
            posix1e.delete_default(path)
    except OSError as err:
        raise _fs_error(path, err)


def _named(key: Key) -> bool:
    return key[0] in "ug" and key[1] is not None


def with_mask(entries: Entries) -> Entries:
    """Recompute the mask; a minimal ACL (no named entries) has none.

    Callers pass entries through :func:`held_back` first: the union of the
    group class would otherwise revive what the old mask held back.
    """
    # Not pylibacl's ACL.calc_mask(): it adds a mask to a minimal ACL too (0.6
    # and 0.7), where setfacl leaves none; otherwise the same union
    # (tests/test_with_mask.py compares them).
    result = {k: v for k, v in entries.items() if k[0] != "m"}
    named = [v for key, v in result.items() if _named(key)]
    if named:
        mask = result.get(("g", None), 0)
        for bits in named:
            mask |= bits
        result[("m", None)] = mask
    return result


def held_back(entries: Entries) -> Entries:
    """Every group-class entry limited to what the mask lets it do now.

    A new key inherits inert entries from a default ACL (``user:X:r-x`` under
    a mask ``---``), and an administrator may mask an entry on purpose. Once
    the mask is recomputed those entries would suddenly work: clamp them
    first, so recomputing never widens anyone's access. The entries we manage
    are set again after this.
    """
    mask = entries.get(("m", None))
    if mask is None:
        return dict(entries)
    return {key: bits & mask if key[0] == "g" or _named(key) else bits
            for key, bits in entries.items()}


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
    return _has_xattr(path, "system.posix_acl_access")


def _has_xattr(path: str, name: str) -> bool:
    try:
        return bool(os.getxattr(path, name))
    except OSError:
        return False


def secure_key(path: str, group_bits: int) -> bool:
    """Give the owning group exactly ``group_bits`` on the key; True if changed.

    Entries the recomputed mask would revive are held back (see
    :func:`held_back`): a key certbot wrote under a recipe's leftover default
    ACL stays closed to the principal that default names. Needs no pylibacl
    while the key has no ACL yet (a fresh certbot key), so the repair happens
    even when the rest of a deployment cannot run.
    """
    if not has_acl(path):
        mode = os.stat(path).st_mode & 0o7777
        wanted = (mode & ~0o070) | (group_bits << 3)
        if wanted == mode:
            return False
        os.chmod(path, wanted)
        return True
    before = read_acl(path)
    after = held_back(before)
    after[("g", None)] = group_bits
    after = with_mask(after)
    if after == before:
        return False
    write_acl(path, after)
    return True


def check_supported(path: str) -> None:
    """Fail before any change if ACLs cannot be written at ``path``."""
    posix1e = _posix1e()
    try:
        posix1e.ACL(file=path).applyto(path)
    except OSError as err:
        raise _fs_error(path, err)


# --- what nobody configured: default ACL leftovers, stray access -----------------

def describe(key: Key) -> str:
    """``user NAME`` / ``group NAME`` (the number when the id has no name)."""
    kind = "user" if key[0] == "u" else "group"
    return "{} {}".format(kind, acl_name(key))


def acl_name(key: Key) -> str:
    """The qualifier as setfacl takes it: the name, else the number."""
    try:
        if key[0] == "u":
            return pwd.getpwuid(key[1]).pw_name
        return grp.getgrgid(key[1]).gr_name
    except (KeyError, TypeError):
        return str(key[1])


def _lineage_dirs(lineage: Lineage) -> List[str]:
    """live/NAME and the archive directory its links point into."""
    try:
        archive_dir = os.path.dirname(lineage.target("privkey"))
    except WwuError:  # broken live links: certbot's own place for it
        archive_dir = os.path.join(lineage.archive_root, lineage.name)
    return [path for path in (lineage.live_dir, archive_dir) if os.path.isdir(path)]


def stray_defaults(lineage: Lineage, keep: Iterable[Key]) -> List[Tuple[str, Key]]:
    """(directory, principal) of every named default ACL entry on live/NAME
    and archive/NAME for a principal not in ``keep``.

    Such an entry (the recipe's ``setfacl -m d:u:X:rX``) is copied into every
    file certbot creates there, every future private key included.
    """
    wanted = set(keep)
    return [(path, key) for path in _lineage_dirs(lineage)
            for key in sorted(read_default_acl(path), key=str)
            if _named(key) and key not in wanted]


def remove_stray_defaults(lineage: Lineage, keep: Iterable[Key]) -> Optional[str]:
    """Remove the default ACL entries :func:`stray_defaults` finds, and the
    entries they already put on the current key.

    certbot gives a new key the previous key's group mode bits, which are
    the old ACL mask: an entry the key inherited is then effective before any
    deployment runs, and no mask can hold it back. Returns one line for the
    deployment's report, or None when there was nothing to remove. A default
    ACL left with base entries only is deleted, as ``setfacl -k`` does. Run
    it under the lineage lock, before granting.
    """
    stray = stray_defaults(lineage, keep)
    if not stray:
        return None
    dirs = []  # type: List[str]
    for path, _ in stray:
        if path not in dirs:
            dirs.append(path)
    for path in dirs:
        gone = {key for where, key in stray if where == path}
        entries = read_default_acl(path)
        after = with_mask(held_back({k: v for k, v in entries.items() if k not in gone}))
        _write_default_acl(path, after)
        logger.debug("default ACL of %s is now %s", path, _text(after) or "gone")
    key_file = _drop_inherited(lineage, {key for _, key in stray})
    who = []  # type: List[str]
    for _, key in stray:
        if describe(key) not in who:
            who.append(describe(key))
    return ("removed default ACL entries for {} from {}{}: they would give every "
            "future key to principals not configured for this certificate".format(
                ", ".join(who), ", ".join(short_path(lineage, d) for d in dirs),
                " and their entries from {}".format(short_path(lineage, key_file))
                if key_file else ""))


def _drop_inherited(lineage: Lineage, gone: Iterable[Key]) -> Optional[str]:
    """Remove ``gone``'s entries from the current key; its path if any were."""
    try:
        path = lineage.target("privkey")
    except WwuError:
        return None
    if not has_acl(path):
        return None
    before = read_acl(path)
    found = set(gone) & set(before)
    if not found:
        return None
    after = with_mask(held_back({k: v for k, v in before.items() if k not in found}))
    write_acl(path, after)
    logger.debug("ACL of %s is now %s", path, _text(after))
    return path


def short_path(lineage: Lineage, path: str) -> str:
    """``archive/NAME`` for a path under the config dir, else the path."""
    relative = os.path.relpath(path, lineage.config_dir)
    return path if relative.startswith("..") else relative


class Access(namedtuple("Access", "path key bits role")):
    """Effective ``bits`` of principal ``key`` on ``path`` that nobody meant.

    ``role``: ``named`` (an ACL entry), ``owner`` or ``group`` (the file's
    owning user or group).
    """


def unwanted_access(lineage: Lineage, keep: Iterable[Key]) -> List[Access]:
    """Who, besides root, certbot's own user and ``keep``, can effectively read
    the current private key, or write any current file, through its owner,
    group or ACL entries (limited by the mask, as the kernel limits them).

    The owning group may have what certbot meant it to have on the key (see
    :func:`key_group_intent`) and read the public files. ``other`` is left to
    a probe that opens the key as an outsider.
    """
    wanted = set(keep)
    files = lineage.current()
    certbot_uid = os.stat(os.path.dirname(files["privkey"])).st_uid
    key_group = key_group_intent(lineage, lineage.version(files))
    found = []  # type: List[Access]
    for kind in KINDS:
        path = files[kind]
        is_key = kind == "privkey"
        st = os.stat(path)
        entries = read_acl(path)
        mask = entries.get(("m", None), R | W | X)
        group_allowed = key_group if is_key else R | X
        for key, bits in sorted(entries.items(), key=str):
            if key == ("u", None):
                who, role, allowed = ("u", st.st_uid), "owner", (
                    R | W | X if st.st_uid in (0, certbot_uid) else 0)
            elif key == ("g", None):
                who, role, allowed = ("g", st.st_gid), "group", group_allowed
                bits &= mask
            elif _named(key):
                who, role = key, "named"
                allowed = R | W | X if key == ("u", 0) else (
                    R | X if key in wanted or not is_key else 0)
                bits &= mask
            else:
                continue
            bad = bits & ~allowed & ((R | W) if is_key else W)
            if bad:
                found.append(Access(path, who, bad, role))
    return found


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
        after = held_back({k: v for k, v in before.items() if k not in remove})
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
        return can_read_switched(paths, uid, gid, groups)
    return can_read_forked(paths, uid, gid, groups)


def can_read_switched(paths: Sequence[str], uid: int, gid: int,
                      groups: Sequence[int]) -> List[bool]:
    """can_read by switching this process's effective ids (root, one thread
    only); public so that a test can check it agrees with can_read_forked."""
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


def can_read_forked(paths: Sequence[str], uid: int, gid: int,
                    groups: Sequence[int]) -> List[bool]:
    """can_read in a child process that becomes uid/gid/groups (any process)."""
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
            raise GrantError(why_denied(principal, denied[0]))
    if can_read([lineage.live_path("privkey")], OUTSIDER_UID, OUTSIDER_GID, [])[0]:
        raise GrantError(
            "The private key {} is readable by any user; fix its mode "
            "(chmod o-rwx) before deploying.".format(lineage.live_path("privkey")))


def _refusal(path: str, principal: Principal, ids: Tuple[int, int, Tuple[int, ...]],
             want: int) -> Optional[str]:
    """Why the kernel refuses ``want`` on ``path`` to the principal (owner,
    named entry and mask, group class, other: POSIX.1e order), or None."""
    uid, gid, groups = ids
    st = os.stat(path)
    entries = read_acl(path)
    mask = entries.get(("m", None))
    masked = mask if mask is not None else 7
    where = "{} (owner {}:{}, mode {:04o}{})".format(
        path, acl_name(("u", st.st_uid)), acl_name(("g", st.st_gid)),
        stat.S_IMODE(st.st_mode), ", ACL " + _text(entries) if mask is not None else "")
    if uid == st.st_uid:
        if entries.get(("u", None), 0) & want == want:
            return None
        return "{} owns {} but its owner bits lack {}".format(principal, where, _PERMS[want])
    if ("u", uid) in entries:
        bits = entries[("u", uid)]
        if bits & masked & want == want:
            return None
        if bits & want == want:
            return "the ACL mask {} of {} cuts its entry {}".format(
                _PERMS[masked], where, _PERMS[bits])
        return "its ACL entry on {} lacks {}".format(where, _PERMS[want])
    all_groups = {gid} | set(groups)
    matching = [key for key in entries if key[0] == "g" and (
        (key[1] is None and st.st_gid in all_groups) or key[1] in all_groups)]
    if matching:
        if any(entries[key] & (masked if key[1] is not None or mask is not None
                               else 7) & want == want for key in matching):
            return None
        return "its group entries on {} lack {} (or the ACL mask cuts them)".format(
            where, _PERMS[want])
    if entries.get(("o", None), 0) & want == want:
        return None
    return "{} gives neither it nor others {}".format(where, _PERMS[want])


def why_denied(principal: Principal, path: str) -> str:
    """Walk ``path`` as the kernel does (each directory needs x, symlinks
    followed, the file needs r) and name the component that stops the
    principal, with the fix."""
    ids = identity(principal)
    todo = [part for part in path.split("/") if part]
    current, hops = "/", 0
    try:
        while todo:
            reason = _refusal(current, principal, ids, X)
            if reason:
                return _denied(principal, path, current, reason, "x")
            name = todo.pop(0)
            if name in (".", ".."):
                current = os.path.dirname(current) if name == ".." else current
                continue
            following = os.path.join(current, name)
            if os.path.islink(following) and hops < 40:
                hops += 1
                target = os.readlink(following)
                todo = [part for part in target.split("/") if part] + todo
                current = "/" if target.startswith("/") else current
                continue
            current = following
        reason = _refusal(current, principal, ids, R)
        if reason:
            return _denied(principal, path, current, reason, "r")
    except (OSError, WwuError):
        pass
    return ("After granting, {} still cannot read {}, although every directory "
            "on the way and the file allow it; check for a security module "
            "(SELinux, AppArmor) with 'ls -Z' and the audit log.".format(principal, path))


def _denied(principal: Principal, path: str, component: str, reason: str,
            bits: str) -> str:
    entry = "{}:{}:{}".format("u" if principal.kind == "user" else "g",
                              principal.name, bits)
    return ("After granting, {} still cannot read {}: the kernel stops it at {}, "
            "because {}; give it {} there (setfacl -m {} {}), or keep certbot's "
            "directory below directories it may pass.".format(
                principal, path, component, reason, bits, entry, component))
