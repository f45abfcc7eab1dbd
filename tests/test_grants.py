"""certbot_wwu.grants on real files, real users and real ACLs."""
import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest

from certbot_wwu import grants
from certbot_wwu.errors import GrantError
from certbot_wwu.grants import R, W, X, Principal
from certbot_wwu.lineage import KINDS, Lineage
from tests.conftest import needs_root
from tests.support.host import (KEY_GROUP, KEY_GROUP_MEMBER, OTHER_USER,
                                READER_GROUP, READER_MEMBER, SECOND_USER,
                                SERVICE_USER, getfacl, read_as)

UO, GO, M, O = ("u", None), ("g", None), ("m", None), ("o", None)


def setfacl(*args):
    subprocess.check_call(("setfacl",) + args)


def uid(name):
    return pwd.getpwnam(name).pw_uid


def gid(name):
    return grp.getgrnam(name).gr_gid


# --- pure helpers ------------------------------------------------------------

def test_with_mask_minimal_acl_has_no_mask():
    assert grants.with_mask({UO: 6, GO: 4, O: 0, M: 7}) == {UO: 6, GO: 4, O: 0}


@pytest.mark.parametrize("entries, mask", [
    ({UO: 6, GO: 0, O: 0, ("u", 1000): R}, R),
    ({UO: 6, GO: 0, O: 0, ("u", 1000): R, M: 7}, R),          # stale mask replaced
    ({UO: 6, GO: 0, O: 0, ("u", 1000): R, M: 0}, R),          # blocking mask replaced
    ({UO: 6, GO: W, O: 0, ("g", 50): R | X}, R | W | X),      # group class union
    ({UO: 6, GO: R, O: 7, ("u", 1): X, ("g", 2): X}, R | X),  # other is not in it
    ({UO: 6, GO: 0, O: 0, ("u", 0): R}, R),                   # uid 0 is named too
])
def test_with_mask_is_the_union_of_the_group_class(entries, mask):
    result = grants.with_mask(entries)
    assert result[M] == mask
    assert {k: v for k, v in result.items() if k != M} == \
        {k: v for k, v in entries.items() if k != M}


def test_with_mask_does_not_change_its_argument():
    entries = {UO: 6, GO: 0, O: 0, ("u", 5): R}
    grants.with_mask(entries)
    assert M not in entries


@pytest.mark.parametrize("entries, bits", [
    ({UO: 6, GO: R | X, O: 0}, R | X),
    ({UO: 6, GO: R | X, O: 0, M: R}, R),
    ({UO: 6, GO: R, O: 0, M: 0}, 0),
    ({UO: 6, O: 0}, 0),
])
def test_effective_group(entries, bits):
    assert grants.effective_group(entries) == bits


def test_principal():
    user = Principal("user", "svc", 1234)
    group = Principal("group", "readers", 55)
    assert user.key == ("u", 1234)
    assert group.key == ("g", 55)
    assert str(user) == "user svc"
    assert str(group) == "group readers"


# --- resolve -----------------------------------------------------------------

@needs_root
def test_resolve(accounts):
    found = grants.resolve([SERVICE_USER, SECOND_USER], [READER_GROUP])
    assert found == [Principal("user", SERVICE_USER, uid(SERVICE_USER)),
                     Principal("user", SECOND_USER, uid(SECOND_USER)),
                     Principal("group", READER_GROUP, gid(READER_GROUP))]
    assert grants.resolve([], []) == []


def test_resolve_unknown_user():
    with pytest.raises(GrantError) as info:
        grants.resolve(["root", "wwu-no-such-user"], ["root"])
    message = str(info.value)
    assert "User 'wwu-no-such-user' does not exist" in message
    assert "useradd --system wwu-no-such-user" in message
    assert "--wwu-acl-" not in message  # reached from both commands: no option name


def test_resolve_unknown_group():
    with pytest.raises(GrantError) as info:
        grants.resolve(["root"], ["root", "wwu-no-such-group"])
    message = str(info.value)
    assert "Group 'wwu-no-such-group' does not exist" in message
    assert "groupadd --system wwu-no-such-group" in message
    assert "--wwu-acl-" not in message


# --- read_acl / write_acl ----------------------------------------------------

@pytest.fixture
def afile(scratch):
    path = os.path.join(scratch, "file.pem")
    with open(path, "w") as f:
        f.write("secret\n")
    os.chmod(path, 0o640)
    return path


@needs_root
def test_read_acl_of_a_plain_file_follows_the_mode(afile):
    assert grants.read_acl(afile) == {UO: R | W, GO: R, O: 0}
    assert not grants.has_acl(afile)
    assert grants.group_access(afile) == R


@needs_root
def test_write_and_read_acl_round_trip(afile, accounts):
    entries = {UO: R | W, GO: 0, O: 0, ("u", uid(SERVICE_USER)): R,
               ("g", gid(READER_GROUP)): R | X, ("u", 0): R, M: R | X}
    grants.write_acl(afile, entries)
    assert grants.read_acl(afile) == entries
    assert grants.has_acl(afile)
    facl = getfacl(afile)
    assert "user:{}:r--".format(uid(SERVICE_USER)) in facl
    assert "group:{}:r-x".format(gid(READER_GROUP)) in facl
    assert "mask::r-x" in facl
    assert read_as(SERVICE_USER, afile)
    assert read_as(READER_MEMBER, afile)
    assert not read_as(OTHER_USER, afile)
    # back to a minimal ACL: the named entries go away
    grants.write_acl(afile, {UO: R | W, GO: R, O: 0})
    assert grants.read_acl(afile) == {UO: R | W, GO: R, O: 0}
    assert not read_as(SERVICE_USER, afile)
    assert stat.S_IMODE(os.stat(afile).st_mode) == 0o640


@needs_root
def test_write_acl_errors_are_grant_errors(scratch):
    with pytest.raises(GrantError, match="Cannot change the ACL of"):
        grants.write_acl(os.path.join(scratch, "missing"), {UO: 6, GO: 0, O: 0})
    with pytest.raises(GrantError, match="Cannot change the ACL of"):
        grants.read_acl(os.path.join(scratch, "missing"))


# --- plan and apply on a real lineage ----------------------------------------

@pytest.fixture
def lineage(lineage_dir):
    return Lineage(lineage_dir, "unit")


def open_roots(lineage):
    """Let every user traverse live/ and archive/ (certbot makes them 0700),
    so that what a test user may read depends on the file alone."""
    os.chmod(lineage.live_root, 0o711)
    os.chmod(lineage.archive_root, 0o711)


def live_files(lineage):
    return [lineage.live_path(kind) for kind in KINDS]


def version_files(lineage, version):
    return {kind: lineage.archive_file(kind, version) for kind in KINDS}


@needs_root
def test_plan_and_apply_give_exactly_the_principals_access(lineage, accounts):
    key = lineage.archive_file("privkey", 2)
    key_stat = os.stat(key)
    principals = grants.resolve([SERVICE_USER], [READER_GROUP])
    for path in live_files(lineage):
        assert not read_as(SERVICE_USER, path)
        assert not read_as(READER_MEMBER, path)
    plan = grants.plan(lineage, lineage.current(), principals)
    assert grants.apply(plan) == 4 + len(KINDS)
    for path in live_files(lineage):
        assert read_as(SERVICE_USER, path), path
        assert read_as(READER_MEMBER, path), path
        assert not read_as(OTHER_USER, path), path
        assert not read_as(SECOND_USER, path), path
        assert not read_as(KEY_GROUP_MEMBER, path), path
    # older versions were not part of the plan
    assert not read_as(SERVICE_USER, lineage.archive_file("privkey", 1))
    # owner, group, owner and other bits as certbot left them
    after = os.stat(key)
    assert (after.st_uid, after.st_gid) == (key_stat.st_uid, key_stat.st_gid)
    assert stat.S_IMODE(after.st_mode) & 0o707 == stat.S_IMODE(key_stat.st_mode) & 0o707
    # traverse only on the roots, read+traverse on the lineage directories
    svc = uid(SERVICE_USER)
    assert grants.read_acl(lineage.live_root)[("u", svc)] == X
    assert grants.read_acl(lineage.archive_root)[("u", svc)] == X
    assert grants.read_acl(lineage.live_dir)[("u", svc)] == R | X
    assert grants.read_acl(lineage.archive_dir)[("u", svc)] == R | X
    assert grants.read_acl(key)[("u", svc)] == R
    assert grants.read_acl(key)[GO] == 0
    # a second apply changes nothing
    assert grants.apply(plan) == 0
    assert grants.missing(plan) == []


@needs_root
def test_apply_sets_the_owning_group_of_the_key(lineage, accounts):
    open_roots(lineage)
    key = lineage.archive_file("privkey", 2)
    os.chown(key, 0, gid(KEY_GROUP))
    os.chmod(key, 0o640)
    assert read_as(KEY_GROUP_MEMBER, key)
    plan = grants.plan(lineage, lineage.current(), grants.resolve([SERVICE_USER], []))
    plan.key_group = 0
    grants.apply(plan)
    assert not read_as(KEY_GROUP_MEMBER, key)
    assert read_as(SERVICE_USER, key)
    plan.key_group = R
    assert grants.missing(plan) == [key]
    grants.apply(plan)
    assert read_as(KEY_GROUP_MEMBER, key)
    assert grants.missing(plan) == []


@needs_root
def test_apply_skips_paths_that_are_gone(lineage, accounts):
    plan = grants.plan(lineage, lineage.current(), grants.resolve([SERVICE_USER], []),
                       revoke_files=[os.path.join(lineage.archive_dir, "privkey9.pem")],
                       revoke_keys=[("u", uid(SERVICE_USER))])
    assert grants.apply(plan) == 8


@needs_root
def test_revoke_on_an_old_version(lineage, accounts):
    principals = grants.resolve([SERVICE_USER], [])
    old = version_files(lineage, 1)
    grants.apply(grants.plan(lineage, old, principals))
    assert read_as(SERVICE_USER, old["privkey"])

    plan = grants.plan(lineage, lineage.current(), principals,
                       revoke_files=list(old.values()) + [lineage.archive_file("cert", 2)],
                       revoke_keys=[p.key for p in principals])
    # a current file is never in the revoke list
    assert lineage.archive_file("cert", 2) not in [p for p, _ in plan.revoke]
    grants.apply(plan)
    for kind in KINDS:
        assert ("u", uid(SERVICE_USER)) not in grants.read_acl(old[kind]), kind
        assert read_as(SERVICE_USER, lineage.live_path(kind)), kind
    # certificates are 0644 by themselves; the old key is what matters
    assert not read_as(SERVICE_USER, old["privkey"])
    # nothing named is left, so the old files are back to a minimal ACL
    assert not grants.has_acl(old["privkey"])
    assert stat.S_IMODE(os.stat(old["privkey"]).st_mode) == 0o600
    assert grants.missing(plan) == []


@needs_root
def test_gone_principal_loses_the_lineage_but_keeps_traverse(lineage, accounts):
    old = grants.resolve([SECOND_USER], [])
    grants.apply(grants.plan(lineage, lineage.current(), old))
    assert read_as(SECOND_USER, lineage.live_path("privkey"))
    new = grants.resolve([SERVICE_USER], [])
    plan = grants.plan(lineage, lineage.current(), new,
                       gone_keys=[p.key for p in old])
    grants.apply(plan)
    gone = ("u", uid(SECOND_USER))
    for path in live_files(lineage):
        assert read_as(SERVICE_USER, path)
    # certificates are 0644 by themselves: the key is what is taken away
    assert not read_as(SECOND_USER, lineage.live_path("privkey"))
    for path in [lineage.live_dir, lineage.archive_dir] + list(lineage.current().values()):
        assert gone not in grants.read_acl(path)
    for path in (lineage.live_root, lineage.archive_root):
        assert grants.read_acl(path)[gone] == X
    assert any(line.startswith("revoke u:{}".format(uid(SECOND_USER)))
               for line in plan.describe())


@needs_root
def test_describe(lineage, accounts):
    principals = grants.resolve([SERVICE_USER], [])
    plan = grants.plan(lineage, lineage.current(), principals,
                       revoke_files=version_files(lineage, 1).values(),
                       revoke_keys=[principals[0].key])
    lines = plan.describe()
    assert len(lines) == 8 + 4
    svc = uid(SERVICE_USER)
    assert "grant u:{}:4 on {}".format(svc, lineage.archive_file("privkey", 2)) in lines
    assert "grant u:{}:1 on {}".format(svc, lineage.live_root) in lines
    assert "revoke u:{} on {}".format(svc, lineage.archive_file("privkey", 1)) in lines


# --- missing -----------------------------------------------------------------

@pytest.fixture
def granted(lineage, accounts):
    if os.geteuid() != 0:
        pytest.skip("needs root (real users and ACLs)")
    principals = grants.resolve([SERVICE_USER], [READER_GROUP])
    plan = grants.plan(lineage, lineage.current(), principals,
                       revoke_files=version_files(lineage, 1).values(),
                       revoke_keys=[p.key for p in principals])
    grants.apply(plan)
    assert grants.missing(plan) == []
    return plan


@needs_root
def test_missing_finds_a_removed_entry(lineage, granted):
    cert = lineage.archive_file("cert", 2)
    setfacl("-x", "u:{}".format(uid(SERVICE_USER)), cert)
    assert grants.missing(granted) == [cert]
    grants.apply(granted)
    assert grants.missing(granted) == []


@needs_root
def test_missing_finds_a_removed_acl(lineage, granted):
    setfacl("-b", lineage.live_dir)
    setfacl("-b", lineage.archive_file("privkey", 2))
    assert sorted(grants.missing(granted)) == sorted(
        [lineage.live_dir, lineage.archive_file("privkey", 2)])


@needs_root
def test_missing_finds_a_blocking_mask(lineage, granted):
    chain = lineage.archive_file("chain", 2)
    setfacl("-n", "-m", "m::---", chain)
    assert grants.missing(granted) == [chain]


@needs_root
def test_missing_finds_a_wider_entry(lineage, granted):
    cert = lineage.archive_file("cert", 2)
    setfacl("-m", "g:{}:rw".format(gid(READER_GROUP)), cert)
    assert grants.missing(granted) == [cert]


@needs_root
def test_missing_finds_a_regranted_old_version(lineage, granted):
    old = lineage.archive_file("privkey", 1)
    setfacl("-m", "u:{}:r".format(uid(SERVICE_USER)), old)
    assert grants.missing(granted) == [old]


# --- can_read and verify -----------------------------------------------------

def identity_of(name):
    return grants.identity(Principal("user", name, uid(name)))


@needs_root
def test_can_read_agrees_with_read_as(lineage, granted):
    paths = live_files(lineage) + [lineage.archive_file("privkey", 1),
                                   lineage.archive_file("cert", 1)]
    open_roots(lineage)
    setfacl("-m", "u:{}:r".format(uid(OTHER_USER)), lineage.archive_file("privkey", 1))
    answers = {}
    for user in (SERVICE_USER, READER_MEMBER, OTHER_USER, SECOND_USER, KEY_GROUP_MEMBER):
        expected = [read_as(user, path) for path in paths]
        answers[user] = grants.can_read(paths, *identity_of(user))
        assert answers[user] == expected, user
    # cert, chain, fullchain, privkey, privkey1, cert1
    assert answers[SERVICE_USER] == [True, True, True, True, False, True]
    assert answers[OTHER_USER] == [True, True, True, False, True, True]
    assert answers[SECOND_USER] == [True, True, True, False, False, True]


@needs_root
def test_identity_of_a_group_uses_an_outsider_uid(accounts):
    group = Principal("group", READER_GROUP, gid(READER_GROUP))
    assert grants.identity(group) == (grants.OUTSIDER_UID, gid(READER_GROUP),
                                      (gid(READER_GROUP),))
    user_uid, user_gid, groups = identity_of(READER_MEMBER)
    assert user_uid == uid(READER_MEMBER)
    assert gid(READER_GROUP) in groups


@needs_root
def test_can_read_as_a_group_principal(lineage, granted):
    group = Principal("group", READER_GROUP, gid(READER_GROUP))
    assert grants.can_read(live_files(lineage), *grants.identity(group)) == [True] * 4
    assert grants.can_read([lineage.archive_file("privkey", 1)],
                           *grants.identity(group)) == [False]


@needs_root
def test_can_read_with_more_than_eight_paths(scratch, accounts):
    paths = []
    for i in range(9):
        path = os.path.join(scratch, "f{}".format(i))
        with open(path, "w") as f:
            f.write("x")
        os.chmod(path, 0o644)
        paths.append(path)
    os.chmod(paths[-1], 0o600)
    expected = [read_as(OTHER_USER, p) for p in paths]
    assert expected == [True] * 8 + [False]
    assert grants.can_read(paths, *identity_of(OTHER_USER)) == expected
    for path in paths[:8]:
        os.chmod(path, 0o600)
    assert grants.can_read(paths[:8], *identity_of(OTHER_USER)) == [False] * 8
    assert grants.can_read(paths, *identity_of(OTHER_USER)) == [False] * 9


@needs_root
def test_can_read_with_many_paths(scratch, accounts):
    # more answers than one pipe buffer of a few bytes would need, alternating
    paths = []
    for i in range(300):
        path = os.path.join(scratch, "f{}".format(i))
        with open(path, "w") as f:
            f.write("x")
        os.chmod(path, 0o644 if i % 3 else 0o600)
        paths.append(path)
    expected = [bool(i % 3) for i in range(300)]
    assert grants.can_read(paths, *identity_of(OTHER_USER)) == expected
    assert grants.can_read([], *identity_of(OTHER_USER)) == []


@needs_root
def test_verify_passes_after_apply(lineage, granted):
    grants.verify(lineage, grants.resolve([SERVICE_USER], [READER_GROUP]))


@needs_root
def test_verify_raises_when_the_mask_blocks(lineage, granted):
    key = lineage.archive_file("privkey", 2)
    setfacl("-n", "-m", "m::---", key)
    assert not read_as(SERVICE_USER, lineage.live_path("privkey"))
    with pytest.raises(GrantError) as info:
        grants.verify(lineage, grants.resolve([SERVICE_USER], []))
    message = str(info.value)
    assert "user {} still cannot read {}".format(
        SERVICE_USER, lineage.live_path("privkey")) in message
    assert "ACL mask" in message
    with pytest.raises(GrantError, match="group {}".format(READER_GROUP)):
        grants.verify(lineage, grants.resolve([], [READER_GROUP]))


@needs_root
def test_verify_raises_for_a_user_without_access(lineage, granted):
    with pytest.raises(GrantError, match="user {} still cannot read".format(OTHER_USER)):
        grants.verify(lineage, grants.resolve([OTHER_USER], []))


@needs_root
def test_verify_raises_when_anyone_can_read_the_key(lineage, granted):
    open_roots(lineage)
    os.chmod(lineage.archive_file("privkey", 2), 0o644)
    assert read_as(OTHER_USER, lineage.live_path("privkey"))
    with pytest.raises(GrantError, match="readable by any user"):
        grants.verify(lineage, grants.resolve([SERVICE_USER], []))


@needs_root
def test_apply_does_not_revive_a_masked_entry(lineage, granted):
    open_roots(lineage)
    key = lineage.archive_file("privkey", 2)
    setfacl("-m", "u:{}:r".format(uid(OTHER_USER)), key)
    os.chmod(key, 0o600)  # the admin locks the file: mask ---
    assert not read_as(OTHER_USER, key)
    grants.apply(granted)
    assert read_as(SERVICE_USER, key)
    assert read_as(READER_MEMBER, key)
    assert not read_as(OTHER_USER, key)
    # the entry we do not manage keeps what the mask let through: nothing
    assert grants.read_acl(key)[("u", uid(OTHER_USER))] == 0
    assert grants.missing(granted) == []
    # and a second apply does not widen it either
    assert grants.apply(granted) == 0
    assert not read_as(OTHER_USER, key)


@needs_root
def test_apply_keeps_a_partly_narrowed_entry_narrowed(lineage, granted):
    open_roots(lineage)
    cert = lineage.archive_file("cert", 2)
    os.chmod(cert, 0o600)  # certificates are 0644 by themselves
    other = ("u", uid(OTHER_USER))
    setfacl("-m", "u:{}:rx".format(uid(OTHER_USER)), cert)
    setfacl("-n", "-m", "m::x", cert)  # the admin takes read away
    assert not read_as(OTHER_USER, cert)
    grants.apply(granted)
    assert grants.read_acl(cert)[other] == X
    assert read_as(SERVICE_USER, cert)
    assert not read_as(OTHER_USER, cert)


@needs_root
def test_apply_keeps_a_masked_owning_group_masked(lineage, granted):
    open_roots(lineage)
    cert = lineage.archive_file("cert", 2)
    os.chown(cert, 0, gid(KEY_GROUP))
    os.chmod(cert, 0o640)
    setfacl("-m", "g::r", cert)
    setfacl("-n", "-m", "m::---", cert)  # owning group r--, effective nothing
    assert not read_as(KEY_GROUP_MEMBER, cert)
    grants.apply(granted)
    assert grants.read_acl(cert)[GO] == 0
    assert read_as(SERVICE_USER, cert)
    assert not read_as(KEY_GROUP_MEMBER, cert)


# --- key_group_intent / secure_key -------------------------------------------

@needs_root
def test_key_group_intent_from_the_previous_key(lineage, granted):
    old, new = lineage.archive_file("privkey", 1), lineage.archive_file("privkey", 2)
    assert grants.key_group_intent(lineage, 2) == 0
    os.chmod(old, 0o640)
    assert grants.key_group_intent(lineage, 2) == R
    # the new key's own bits do not count while a previous key exists
    assert grants.group_access(new) == 0
    os.chmod(old, 0o600)
    setfacl("-m", "u:{}:r,g::r".format(uid(SERVICE_USER)), old)
    setfacl("-n", "-m", "m::---", old)
    # group entry r--, but the mask takes it away: effective nothing
    assert grants.key_group_intent(lineage, 2) == 0
    setfacl("-m", "m::r", old)
    assert grants.key_group_intent(lineage, 2) == R


@needs_root
def test_key_group_intent_of_the_first_key(lineage, granted):
    first = lineage.archive_file("privkey", 1)
    os.chmod(first, 0o640)
    assert grants.key_group_intent(lineage, 1) == R
    os.chmod(first, 0o600)
    assert grants.key_group_intent(lineage, 1) == 0
    # neither this nor a previous key: nothing
    assert grants.key_group_intent(lineage, 9) == 0


@needs_root
def test_secure_key_without_acl_only_chmods(lineage, accounts):
    open_roots(lineage)
    key = lineage.archive_file("privkey", 2)
    os.chown(key, 0, gid(KEY_GROUP))
    os.chmod(key, 0o640)  # certbot copied the previous key's mask into the mode
    assert read_as(KEY_GROUP_MEMBER, key)
    assert grants.secure_key(key, 0) is True
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert not grants.has_acl(key)
    assert not read_as(KEY_GROUP_MEMBER, key)
    assert os.stat(key).st_gid == gid(KEY_GROUP)
    assert grants.secure_key(key, 0) is False
    assert grants.secure_key(key, R) is True
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o640
    assert not grants.has_acl(key)


@needs_root
def test_secure_key_keeps_special_and_other_bits(scratch):
    path = os.path.join(scratch, "k")
    open(path, "w").close()
    os.chmod(path, 0o2674)
    assert grants.secure_key(path, R) is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o2644


@needs_root
def test_secure_key_with_acl(lineage, accounts):
    open_roots(lineage)
    key = lineage.archive_file("privkey", 2)
    os.chown(key, 0, gid(KEY_GROUP))
    setfacl("-m", "u:{}:r,g::r".format(uid(SERVICE_USER)), key)
    assert read_as(KEY_GROUP_MEMBER, key)
    assert grants.secure_key(key, 0) is True
    entries = grants.read_acl(key)
    assert entries[GO] == 0
    assert entries[("u", uid(SERVICE_USER))] == R
    assert entries[M] == R
    assert not read_as(KEY_GROUP_MEMBER, key)
    assert read_as(SERVICE_USER, key)
    assert grants.secure_key(key, 0) is False
    assert grants.secure_key(key, R) is True
    assert read_as(KEY_GROUP_MEMBER, key)


def key_under_default_acl(directory, name="privkey9.pem"):
    """A key as certbot writes it into a directory with the recipe's default
    ACL ``d:u:OTHER_USER:rX``: created 0600, so it inherits the named entry
    and the directory's group entry under an empty mask."""
    setfacl("-d", "-m", "u:{}:rX".format(OTHER_USER), directory)
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"secret\n")
    os.close(fd)
    return path


@needs_root
@pytest.mark.parametrize("group_bits", [0, R])
def test_secure_key_does_not_revive_an_inherited_entry(scratch, accounts, group_bits):
    """Issue 18, defect 4: recomputing the mask must not wake the inert
    ``user:X:r-x`` a leftover default ACL put on a new key."""
    key = key_under_default_acl(scratch)
    entries = grants.read_acl(key)
    assert entries[("u", uid(OTHER_USER))] == R | X and entries[M] == 0
    assert entries[GO] == R | X  # the directory's group entry, masked
    assert not read_as(OTHER_USER, key)
    os.chown(key, 0, gid(KEY_GROUP))
    assert grants.secure_key(key, group_bits) is True
    assert not read_as(OTHER_USER, key)
    assert read_as(KEY_GROUP_MEMBER, key) is bool(group_bits)
    assert grants.read_acl(key)[("u", uid(OTHER_USER))] == 0
    assert grants.secure_key(key, group_bits) is False


@needs_root
def test_secure_key_keeps_a_partly_masked_entry_partly_masked(scratch, accounts):
    key = os.path.join(scratch, "k")
    open(key, "w").close()
    os.chmod(key, 0o600)
    setfacl("-m", "u:{}:r,u:{}:rx,g::r".format(uid(SERVICE_USER), uid(OTHER_USER)), key)
    setfacl("-n", "-m", "m::r", key)
    assert grants.secure_key(key, 0) is True
    entries = grants.read_acl(key)
    assert entries[("u", uid(SERVICE_USER))] == R
    assert entries[("u", uid(OTHER_USER))] == R  # x stays held back
    assert entries[M] == R


@pytest.mark.parametrize("entries, held", [
    ({UO: 6, GO: 5, O: 0, ("u", 7): 5, M: 0}, {UO: 6, GO: 0, O: 0, ("u", 7): 0, M: 0}),
    ({UO: 6, GO: 4, O: 4, ("g", 7): 7, M: 5}, {UO: 6, GO: 4, O: 4, ("g", 7): 5, M: 5}),
    ({UO: 6, GO: 4, O: 0}, {UO: 6, GO: 4, O: 0}),  # no mask: nothing held back
])
def test_held_back(entries, held):
    assert grants.held_back(entries) == held


# --- default ACL leftovers and unwanted access -------------------------------

def default_acl(path):
    return [line for line in getfacl(path).splitlines() if line.startswith("default:")]


@pytest.fixture
def recipe(lineage, accounts):
    """The recipe's third setfacl, for OTHER_USER and READER_GROUP, plus one
    for the configured SERVICE_USER."""
    archive = os.path.join(lineage.archive_root, "unit")
    for path in (lineage.live_dir, archive):
        setfacl("-m", "d:u:{}:rX,d:g:{}:rX,d:u:{}:rX".format(
            OTHER_USER, READER_GROUP, SERVICE_USER), path)
    return lineage.live_dir, archive


@needs_root
def test_stray_defaults_names_what_is_not_kept(lineage, recipe):
    live, archive = recipe
    keep = [("u", uid(SERVICE_USER))]
    assert grants.stray_defaults(lineage, keep) == [
        (path, key) for path in (live, archive)
        for key in sorted([("u", uid(OTHER_USER)), ("g", gid(READER_GROUP))], key=str)]
    before = default_acl(archive)
    grants.stray_defaults(lineage, keep)
    assert default_acl(archive) == before  # read-only


@needs_root
def test_remove_stray_defaults_keeps_the_configured(lineage, recipe):
    live, archive = recipe
    line = grants.remove_stray_defaults(lineage, [("u", uid(SERVICE_USER))])
    assert line == (
        "removed default ACL entries for group {}, user {} from live/unit, "
        "archive/unit: they would give every future key to principals not "
        "configured for this certificate".format(READER_GROUP, OTHER_USER))
    for path in (live, archive):
        assert grants.read_default_acl(path) == {
            UO: R | W | X, GO: R | X, O: R | X, ("u", uid(SERVICE_USER)): R | X,
            M: R | X}
    assert grants.stray_defaults(lineage, [("u", uid(SERVICE_USER))]) == []
    assert grants.remove_stray_defaults(lineage, [("u", uid(SERVICE_USER))]) is None
    # a key certbot writes now carries no entry for the removed ones
    key = os.path.join(archive, "privkey9.pem")
    os.close(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600))
    assert set(grants.read_acl(key)) == {UO, GO, O, M, ("u", uid(SERVICE_USER))}


@needs_root
def test_remove_stray_defaults_takes_the_inherited_entries_off_the_current_key(
        lineage, recipe, accounts):
    """certbot copies the old mask into a new key's mode: the inherited entry
    reads the key before any deployment; no mask could hold it back."""
    open_roots(lineage)
    live, archive = recipe
    setfacl("-m", "u:{}:x".format(uid(OTHER_USER)), lineage.live_root, lineage.archive_root)
    key = lineage.archive_file("privkey", 2)
    setfacl("-m", "u:{}:rx,u:{}:r,u:{}:r".format(
        uid(OTHER_USER), uid(SERVICE_USER), uid(SECOND_USER)), key)
    assert read_as(OTHER_USER, lineage.live_path("privkey"))
    line = grants.remove_stray_defaults(lineage, [("u", uid(SERVICE_USER))])
    assert line.startswith(
        "removed default ACL entries for group {}, user {} from live/unit, "
        "archive/unit and their entries from archive/unit/privkey2.pem: ".format(
            READER_GROUP, OTHER_USER))
    assert not read_as(OTHER_USER, lineage.live_path("privkey"))
    entries = grants.read_acl(key)
    assert ("u", uid(OTHER_USER)) not in entries
    # kept, and entries no default put there, stay as they were
    assert entries[("u", uid(SERVICE_USER))] == R
    assert entries[("u", uid(SECOND_USER))] == R
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))


@needs_root
def test_remove_stray_defaults_deletes_a_default_left_with_base_entries(lineage, recipe):
    live, archive = recipe
    line = grants.remove_stray_defaults(lineage, [])
    assert "user {}".format(SERVICE_USER) in line
    for path in (live, archive):
        assert default_acl(path) == []
        assert grants.read_default_acl(path) == {}
    # the access ACLs of the directories were not touched
    assert grants.read_acl(archive) == {UO: R | W | X, GO: R | X, O: R | X}


@needs_root
def test_remove_stray_defaults_without_defaults_needs_no_pylibacl(lineage, monkeypatch):
    def missing():
        raise GrantError("no pylibacl")
    monkeypatch.setattr(grants, "_posix1e", missing)
    assert grants.stray_defaults(lineage, []) == []
    assert grants.remove_stray_defaults(lineage, []) is None


@needs_root
def test_unwanted_access(lineage, granted):
    key, cert = lineage.archive_file("privkey", 2), lineage.archive_file("cert", 2)
    keep = [("u", uid(SERVICE_USER)), ("g", gid(READER_GROUP))]
    assert grants.unwanted_access(lineage, keep) == []
    setfacl("-m", "u:{}:r".format(uid(OTHER_USER)), key)
    setfacl("-m", "u:{}:r".format(uid(SECOND_USER)), cert)  # certificates are public
    setfacl("-m", "u:0:r", key)
    assert grants.unwanted_access(lineage, keep) == [
        grants.Access(key, ("u", uid(OTHER_USER)), R, "named")]
    # without the configured ones, they are strays too
    assert {a.key for a in grants.unwanted_access(lineage, [])} == {
        ("u", uid(OTHER_USER)), ("u", uid(SERVICE_USER)), ("g", gid(READER_GROUP))}
    # masked entries give nothing
    setfacl("-n", "-m", "m::---", key)
    assert grants.unwanted_access(lineage, keep) == []
    setfacl("-m", "m::r", key)
    # write on a certificate, and the owning group on the key
    setfacl("-m", "u:{}:rw".format(uid(SECOND_USER)), cert)
    os.chown(key, 0, gid(KEY_GROUP))
    setfacl("-m", "g::r", key)
    assert sorted(grants.unwanted_access(lineage, keep), key=str) == sorted([
        grants.Access(key, ("u", uid(OTHER_USER)), R, "named"),
        grants.Access(key, ("g", gid(KEY_GROUP)), R, "group"),
        grants.Access(cert, ("u", uid(SECOND_USER)), W, "named")], key=str)
    os.chown(cert, uid(OTHER_USER), 0)
    assert grants.Access(cert, ("u", uid(OTHER_USER)), W, "owner") in \
        grants.unwanted_access(lineage, keep)


def test_describe_names_a_principal(accounts):
    assert grants.describe(("u", uid(OTHER_USER))) == "user " + OTHER_USER
    assert grants.describe(("g", gid(READER_GROUP))) == "group " + READER_GROUP
    assert grants.describe(("u", 2147483001)) == "user 2147483001"
    assert grants.acl_name(("g", 2147483001)) == "2147483001"


# --- check_supported ---------------------------------------------------------

@needs_root
def test_check_supported_on_ext4(lineage_dir):
    grants.check_supported(os.path.join(lineage_dir, "archive", "unit"))


@pytest.fixture
def ramfs():
    if os.geteuid() != 0:
        pytest.skip("needs root to mount ramfs")
    path = tempfile.mkdtemp(prefix="wwu-ramfs-")
    proc = subprocess.Popen(["mount", "-t", "ramfs", "ramfs", path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        os.rmdir(path)
        pytest.skip("cannot mount ramfs here: {}".format(out.strip()))
    try:
        yield path
    finally:
        subprocess.check_call(["umount", path])
        os.rmdir(path)


@needs_root
def test_check_supported_on_ramfs(ramfs):
    archive = os.path.join(ramfs, "archive", "unit")
    os.makedirs(archive)
    key = os.path.join(archive, "privkey1.pem")
    with open(key, "w") as f:
        f.write("x")
    for path in (archive, key):
        with pytest.raises(GrantError) as info:
            grants.check_supported(path)
        assert "does not support POSIX ACLs" in str(info.value)
        assert path in str(info.value)
    with pytest.raises(GrantError, match="does not support POSIX ACLs"):
        grants.write_acl(key, {UO: 6, GO: 0, O: 0, ("u", 0): R})
    assert not grants.has_acl(key)
    # secure_key needs no ACL support while the key has none
    os.chmod(key, 0o640)
    assert grants.secure_key(key, 0) is True
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


@needs_root
def test_check_supported_on_a_read_only_bind_mount(scratch):
    target = os.path.join(scratch, "ro")
    os.mkdir(target)
    source = os.path.join(scratch, "src")
    os.mkdir(source)
    if subprocess.call(["mount", "--bind", "-o", "ro", source, target],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.call(["mount", "-o", "remount,bind,ro", target],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.access(target, os.W_OK) and _writable(target):
            pytest.skip("read-only bind mounts are not enforced here")
        with pytest.raises(GrantError, match="mounted read-only"):
            grants.check_supported(target)
    finally:
        subprocess.check_call(["umount", target])
    shutil.rmtree(source)


def _writable(directory):
    try:
        fd, path = tempfile.mkstemp(dir=directory)
    except OSError:
        return False
    os.close(fd)
    os.unlink(path)
    return True


@needs_root
def test_switched_and_forked_checks_agree_and_root_is_restored(lineage, accounts):
    import threading
    plan = grants.plan(lineage, lineage.current(), grants.resolve([SERVICE_USER], []))
    grants.apply(plan)
    paths = [lineage.live_path(kind) for kind in KINDS] + ["/etc/shadow", "/etc/hostname"]
    for name in (SERVICE_USER, OTHER_USER):
        ids = grants.identity(grants.resolve([name], [])[0])
        groups_before = os.getgroups()
        assert grants.can_read_switched(paths, *ids) == grants.can_read_forked(paths, *ids)
        assert os.getresuid() == (0, 0, 0) and os.getresgid()[1] == 0
        assert os.getgroups() == groups_before
    assert grants.can_read(paths, *grants.identity(grants.resolve([SERVICE_USER], [])[0]))[:4] \
        == [True] * 4
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:  # another thread: the check runs in a child instead
        assert grants.can_read(paths[:1], grants.OUTSIDER_UID, grants.OUTSIDER_GID, []) \
            == [False]
    finally:
        stop.set()
        worker.join()
