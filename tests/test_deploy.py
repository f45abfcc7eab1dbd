"""certbot_wwu.deploy on a real lineage, real users, real ACLs."""
import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import threading

import pytest

from certbot_wwu import deploy, renewalconf
from certbot_wwu.errors import CopyError, GrantError, LockError, ServiceError
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import Settings
from certbot_wwu.state import State
from tests.support.certbot import Certbot
from tests.support.host import (KEY_GROUP, KEY_GROUP_MEMBER, OTHER_USER,
                                READER_GROUP, READER_MEMBER, SECOND_USER,
                                SERVICE_USER, getfacl, read_as)

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (real users and ACLs)")

SVC = Settings(users=[SERVICE_USER])
SVC_WEB = Settings(users=[SERVICE_USER], units=["web.service"])


def uid(name):
    return pwd.getpwnam(name).pw_uid


def gid(name):
    return grp.getgrnam(name).gr_gid


def setfacl(*args):
    subprocess.check_call(("setfacl",) + args)


@pytest.fixture
def lineage(lineage_dir, accounts):
    return Lineage(lineage_dir, "unit")


@pytest.fixture
def timer(lineage, lineage_template, pebble, recorder):
    """The renewal timer's run for the lineage, which is not due: real
    ``certbot renew``, which hands it to the installer's generic_updates
    with ``settings`` stored in its renewal conf (the path that heals)."""
    bot = Certbot(os.path.dirname(lineage.config_dir), pebble, recorder)
    # the copied conf still names the template's files
    text = renewalconf.read(lineage.renewal_conf)
    with open(lineage.renewal_conf, "w") as f:
        f.write(text.replace(lineage_template.config_dir, lineage.config_dir))

    def run(settings):
        renewalconf.attach(lineage.renewal_conf, settings.to_values())
        result = bot.renew("--cert-name", lineage.name)
        assert "not yet due" in result.output, result
        return result
    return run



def open_roots(lineage):
    """Let every user traverse live/ and archive/ (certbot makes them 0700)."""
    os.chmod(lineage.live_root, 0o711)
    os.chmod(lineage.archive_root, 0o711)


def snapshot(config_dir):
    """ACL, mode and owner of everything under config_dir (links: target)."""
    result = {}
    for root, dirs, files in os.walk(config_dir):
        for name in [""] + dirs + files:
            path = os.path.join(root, name) if name else root
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                result[path] = os.readlink(path)
            else:
                result[path] = (getfacl(path), st.st_mode, st.st_uid, st.st_gid)
    return result


def named_entries(path):
    return [line for line in getfacl(path).splitlines()
            if line.split(":")[0] in ("user", "group") and line.split(":")[1]]


def new_version(lineage, version):
    """What a certbot renewal leaves: copies of the current files as version
    ``version``, the new key with the old key's owner group and group/other
    mode bits (not its ACL), and the live links switched."""
    old = lineage.current()
    for kind in KINDS:
        target = lineage.archive_file(kind, version)
        shutil.copyfile(old[kind], target)
        st = os.stat(old[kind])
        os.chown(target, st.st_uid, st.st_gid)
        os.chmod(target, stat.S_IMODE(st.st_mode))
        link = lineage.live_path(kind)
        os.unlink(link)
        os.symlink("../../archive/unit/{}{}.pem".format(kind, version), link)
    assert lineage.version() == version


# --- deploy / needs_deploy ---------------------------------------------------

def test_deploy_then_nothing_to_deploy(lineage, recorder):
    assert deploy.needs_deploy(SVC, lineage)
    report = deploy.deploy(SVC, lineage)
    assert report.version == 2
    assert report.changed > 0
    assert report.lines == ["user {} can read version 2 ({} ACLs changed)".format(
        SERVICE_USER, report.changed)]
    for kind in KINDS:
        assert read_as(SERVICE_USER, lineage.live_path(kind)), kind
    assert not read_as(OTHER_USER, lineage.live_path("cert"))
    assert not read_as(SECOND_USER, lineage.live_path("privkey"))
    assert not deploy.needs_deploy(SVC, lineage)
    # deploying again changes no ACL
    assert deploy.deploy(SVC, lineage).changed == 0
    assert recorder.calls() == []


def test_deploy_to_a_group(lineage, recorder):
    settings = Settings(groups=[READER_GROUP])
    deploy.deploy(settings, lineage)
    assert read_as(READER_MEMBER, lineage.live_path("privkey"))
    assert not read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert not deploy.needs_deploy(settings, lineage)


def test_state_records_the_version_and_principals(lineage, recorder):
    deploy.deploy(Settings(users=[SERVICE_USER], groups=[READER_GROUP]), lineage)
    state = State.load(lineage)
    assert state.known
    assert state.granted == [2]
    assert state.principals == [["user", SERVICE_USER, uid(SERVICE_USER)],
                                ["group", READER_GROUP, gid(READER_GROUP)]]
    assert state.acted_version is None
    assert state.path == os.path.join(lineage.config_dir, "wwu-acl", "unit.json")
    assert stat.S_IMODE(os.stat(state.path).st_mode) == 0o600


def test_removed_acl_is_noticed_and_healed(lineage, recorder, timer):
    deploy.deploy(SVC, lineage)
    deploy.act(SVC, lineage)
    key = lineage.archive_file("privkey", 2)
    setfacl("-b", key)
    assert not read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert deploy.needs_deploy(SVC, lineage)
    timer(SVC)
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert not deploy.needs_deploy(SVC, lineage)


@pytest.mark.parametrize("damage", [
    lambda l: setfacl("-x", "u:{}".format(uid(SERVICE_USER)), l.live_dir),
    lambda l: setfacl("-x", "u:{}".format(uid(SERVICE_USER)), l.archive_root),
    lambda l: setfacl("-n", "-m", "m::---", l.archive_file("fullchain", 2)),
    lambda l: os.chmod(l.archive_file("privkey", 2), 0o600),  # mask from chmod
])
def test_other_drift_is_noticed_and_healed(lineage, recorder, timer, damage):
    deploy.deploy(SVC, lineage)
    damage(lineage)
    assert deploy.needs_deploy(SVC, lineage)
    timer(SVC)
    assert not deploy.needs_deploy(SVC, lineage)
    for kind in KINDS:
        assert read_as(SERVICE_USER, lineage.live_path(kind)), kind


def test_heal_acts_once_and_then_does_nothing(lineage, recorder, timer):
    timer(SVC_WEB)  # never deployed: deploys, then acts
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert recorder.actions() == ["restart web.service"]
    before = snapshot(lineage.config_dir)
    recorder.clear()
    timer(SVC_WEB)
    assert recorder.calls() == []
    assert snapshot(lineage.config_dir) == before


def test_dry_run_changes_nothing(lineage, recorder):
    # a key certbot gave the previous key's mask bits: dry run leaves it too
    os.chmod(lineage.archive_file("privkey", 2), 0o640)
    before = snapshot(lineage.config_dir)
    report = deploy.deploy(SVC_WEB, lineage, dry_run=True)
    assert snapshot(lineage.config_dir) == before
    assert not os.path.exists(os.path.join(lineage.config_dir, "wwu-acl"))
    assert report.changed == 0
    assert report.version == 2
    assert report.lines
    assert all(line.startswith("would ") for line in report.lines)
    assert "would grant user {} r-- on {}".format(
        SERVICE_USER, lineage.archive_file("privkey", 2)) in report.lines
    # only what would change: version 1 holds no entry to revoke
    assert not any("privkey1.pem" in line for line in report.lines)
    assert not read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert recorder.calls() == []
    assert deploy.needs_deploy(SVC_WEB, lineage)


def test_dry_run_after_a_deployment_changes_nothing(lineage, recorder):
    deploy.deploy(SVC, lineage)
    before = snapshot(lineage.config_dir)
    deploy.deploy(Settings(users=[SECOND_USER]), lineage, dry_run=True)
    assert snapshot(lineage.config_dir) == before
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert not read_as(SECOND_USER, lineage.live_path("privkey"))


def test_unknown_user_changes_nothing(lineage, recorder):
    before = snapshot(lineage.config_dir)
    with pytest.raises(GrantError, match="does not exist"):
        deploy.deploy(Settings(users=[SERVICE_USER, "wwu-no-such-user"]), lineage)
    assert snapshot(lineage.config_dir) == before


# --- act / needs_action ------------------------------------------------------

def test_act_records_the_acted_version(lineage, recorder):
    deploy.deploy(SVC_WEB, lineage)
    assert deploy.needs_action(lineage)
    deploy.act(SVC_WEB, lineage)
    assert recorder.actions() == ["restart web.service"]
    assert State.load(lineage).acted_version == 2
    assert not deploy.needs_action(lineage)
    # the deployment's own record is kept
    assert State.load(lineage).known
    assert State.load(lineage).granted == [2]


def test_failed_action_is_not_recorded(lineage, recorder, timer):
    deploy.deploy(SVC_WEB, lineage)
    recorder.fail("web.service")
    with pytest.raises(ServiceError, match="journalctl -u web.service"):
        deploy.act(SVC_WEB, lineage)
    assert State.load(lineage).acted_version is None
    assert deploy.needs_action(lineage)
    # the timer's heal retries it once the unit works again
    recorder.heal("web.service")
    recorder.clear()
    timer(SVC_WEB)
    assert recorder.actions() == ["restart web.service"]
    assert not deploy.needs_action(lineage)


def test_act_before_any_deployment_records_nothing(lineage, recorder):
    deploy.act(SVC_WEB, lineage)
    assert recorder.actions() == ["restart web.service"]
    assert not os.path.exists(State.load(lineage).path)
    assert deploy.needs_action(lineage)


def test_act_with_action_none(lineage, recorder):
    settings = Settings(users=[SERVICE_USER], units=["web.service"], action="none")
    deploy.deploy(settings, lineage)
    deploy.act(settings, lineage)
    assert recorder.calls() == []
    assert not deploy.needs_action(lineage)


# --- principals change, renewals, the manual recipe ---------------------------

def test_new_principal_set_revokes_the_old_principal(lineage, recorder):
    deploy.deploy(SVC, lineage)
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    svc2 = Settings(users=[SECOND_USER])
    assert deploy.needs_deploy(svc2, lineage)
    deploy.deploy(svc2, lineage)
    assert read_as(SECOND_USER, lineage.live_path("privkey"))
    assert not read_as(SERVICE_USER, lineage.live_path("privkey"))
    gone = "user:{}:".format(uid(SERVICE_USER))
    for path in [lineage.live_dir, lineage.archive_dir] + list(lineage.current().values()):
        assert not [e for e in named_entries(path) if e.startswith(gone)], path
    assert State.load(lineage).principals == [["user", SECOND_USER, uid(SECOND_USER)]]
    assert not deploy.needs_deploy(svc2, lineage)
    assert deploy.needs_deploy(SVC, lineage)


def test_adding_a_group_keeps_the_user(lineage, recorder):
    deploy.deploy(SVC, lineage)
    both = Settings(users=[SERVICE_USER], groups=[READER_GROUP])
    deploy.deploy(both, lineage)
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert read_as(READER_MEMBER, lineage.live_path("privkey"))


def test_first_deploy_sweeps_the_manual_recipe(lineage, recorder):
    # the manual recipe this plugin replaces
    setfacl("-R", "-m", "u:{}:rX".format(SERVICE_USER),
            os.path.join(lineage.config_dir, "live"),
            os.path.join(lineage.config_dir, "archive"))
    old = {kind: lineage.archive_file(kind, 1) for kind in KINDS}
    assert read_as(SERVICE_USER, old["privkey"])
    assert not State.load(lineage).known
    assert State.load(lineage).granted == []
    deploy.deploy(SVC, lineage)
    assert State.load(lineage).granted == [2]
    assert not read_as(SERVICE_USER, old["privkey"])
    for kind in KINDS:
        assert named_entries(old[kind]) == [], kind
        assert read_as(SERVICE_USER, lineage.live_path(kind)), kind
    assert not deploy.needs_deploy(SVC, lineage)


def test_renewal_moves_the_grant_to_the_new_version(lineage, recorder, timer):
    open_roots(lineage)
    key2 = lineage.archive_file("privkey", 2)
    os.chown(key2, 0, gid(KEY_GROUP))
    deploy.deploy(SVC_WEB, lineage)
    deploy.act(SVC_WEB, lineage)
    recorder.clear()
    new_version(lineage, 3)
    key3 = lineage.archive_file("privkey", 3)
    # as certbot does: the new key got the old key's mask as group bits
    assert stat.S_IMODE(os.stat(key3).st_mode) == 0o640
    assert read_as(KEY_GROUP_MEMBER, key3)
    assert deploy.needs_deploy(SVC_WEB, lineage)
    assert deploy.needs_action(lineage)
    timer(SVC_WEB)
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert not read_as(SERVICE_USER, key2)
    assert not read_as(KEY_GROUP_MEMBER, key3)
    assert not read_as(OTHER_USER, key3)
    assert named_entries(key2) == []
    assert recorder.actions() == ["restart web.service"]
    state = State.load(lineage)
    assert state.known
    assert (state.granted, state.acted_version) == ([3], 3)
    assert not deploy.needs_deploy(SVC_WEB, lineage)


def test_secure_key_resets_the_copied_group_bits(lineage, recorder):
    open_roots(lineage)
    key2 = lineage.archive_file("privkey", 2)
    os.chown(key2, 0, gid(KEY_GROUP))
    os.chmod(key2, 0o640)  # copied mask; privkey1 is 0600 without ACL
    assert read_as(KEY_GROUP_MEMBER, key2)
    deploy.secure_key(lineage)
    assert stat.S_IMODE(os.stat(key2).st_mode) == 0o600
    assert not read_as(KEY_GROUP_MEMBER, key2)
    before = snapshot(lineage.config_dir)
    deploy.secure_key(lineage)
    assert snapshot(lineage.config_dir) == before


def test_interrupted_deployment_does_not_leave_an_old_key_readable(lineage, recorder):
    open_roots(lineage)
    deploy.deploy(SVC, lineage)                    # state: version 2
    new_version(lineage, 3)
    key3 = lineage.archive_file("privkey", 3)
    setfacl("-m", "o::r", key3)                    # verify will refuse this
    with pytest.raises(GrantError, match="readable by any user"):
        deploy.deploy(SVC, lineage)
    # recorded before granting: version 3 may carry grants now
    state = State.load(lineage)
    assert state.known
    assert state.granted == [2, 3]
    assert deploy.needs_deploy(SVC, lineage)
    setfacl("-m", "o::-", key3)                    # the admin fixes the mode
    new_version(lineage, 4)                        # and the next renewal comes
    deploy.deploy(SVC, lineage)
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert not read_as(SERVICE_USER, key3)
    assert named_entries(key3) == []
    assert State.load(lineage).granted == [4]
    assert not deploy.needs_deploy(SVC, lineage)


def test_retried_deployment_revokes_the_previous_version(lineage, recorder, timer):
    open_roots(lineage)
    deploy.deploy(SVC, lineage)                    # granted: [2]
    new_version(lineage, 3)
    key2, key3 = (lineage.archive_file("privkey", v) for v in (2, 3))
    setfacl("-m", "o::r", key3)                    # verify will refuse this
    with pytest.raises(GrantError, match="readable by any user"):
        deploy.deploy(SVC, lineage)
    assert State.load(lineage).granted == [2, 3]
    setfacl("-m", "o::-", key3)
    timer(SVC)                                     # the timer retries version 3
    assert State.load(lineage).granted == [3]
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert not read_as(SERVICE_USER, key2)
    assert named_entries(key2) == []
    assert not deploy.needs_deploy(SVC, lineage)


def test_interrupted_first_deployment_leaves_the_state_unknown(lineage, recorder):
    open_roots(lineage)
    key2 = lineage.archive_file("privkey", 2)
    setfacl("-m", "o::r", key2)
    with pytest.raises(GrantError, match="readable by any user"):
        deploy.deploy(SVC, lineage)
    # nothing was known before, so nothing is recorded: the next one sweeps
    assert not os.path.exists(State.load(lineage).path)
    assert not State.load(lineage).known
    assert deploy.needs_deploy(SVC, lineage)
    setfacl("-m", "o::-", key2)
    deploy.deploy(SVC, lineage)
    assert State.load(lineage).known
    assert State.load(lineage).granted == [2]
    assert not deploy.needs_deploy(SVC, lineage)


# --- a hostile copy owner, locks that end, one lineage per copy directory ----

HOLD_FLOCK = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def hold_flock(path, user=None):
    """Another process (as ``user``, default root) holds an flock on path."""
    argv = [sys.executable, "-c", HOLD_FLOCK, path]
    if user:  # the venv's interpreter may sit where only root can reach it
        argv = ["runuser", "-u", user, "--", "/usr/bin/python3"] + argv[1:]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             universal_newlines=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def release(child):
    child.stdin.close()
    child.wait(10)
    child.stdout.close()


def in_thread(function, seconds):
    """Run ``function`` with a deadline; (finished, exception)."""
    outcome = []

    def run():
        try:
            function()
            outcome.append(None)
        except Exception as err:  # pylint: disable=broad-except
            outcome.append(err)

    thread = threading.Thread(target=run)
    thread.daemon = True
    thread.start()
    thread.join(seconds)
    return (not thread.is_alive(), outcome[0] if outcome else None)


def copy_settings(dest, **kwargs):
    return Settings(copy_to=dest, copy_owner=(SERVICE_USER, ""), **kwargs)


def test_copy_owner_holding_a_lock_file_in_dest_stalls_nothing(lineage, scratch):
    """A lock file in DEST that the copy owner holds (the old .lock) is not
    ours any more: the deployment neither opens nor waits for it."""
    dest = os.path.join(scratch, "srv", "tls")
    os.mkdir(os.path.dirname(dest))
    deploy.deploy(copy_settings(dest), lineage)
    planted = os.path.join(dest, ".lock")
    with open(planted, "w"):
        pass
    os.chown(planted, uid(SERVICE_USER), gid(SERVICE_USER))
    holder = hold_flock(planted, SERVICE_USER)
    try:
        new_version(lineage, 3)
        finished, error = in_thread(lambda: deploy.deploy(copy_settings(dest), lineage), 30)
    finally:
        release(holder)
    assert finished and error is None, error
    with open(os.path.join(dest, "cert.pem"), "rb") as a, \
            open(lineage.live_path("cert"), "rb") as b:
        assert a.read() == b.read()


def test_waiting_for_a_held_lineage_lock_ends_with_the_holder_named(lineage):
    open_roots(lineage)
    deploy.deploy(SVC, lineage)
    before = snapshot(lineage.config_dir)
    lock = os.path.join(lineage.config_dir, "wwu-acl", "unit.lock")
    holder = hold_flock(lock)
    try:
        finished, error = in_thread(
            lambda: deploy.deploy(Settings(users=[SECOND_USER], timeout=1), lineage), 20)
    finally:
        release(holder)
    assert finished, "the deployment still waits for the lock"
    assert isinstance(error, LockError)
    assert str(error).startswith("Deploying unit waited 1 s for {}, which PID {} (".format(
        lock, holder.pid))
    assert str(error).endswith("or raise --wwu-acl-timeout.")
    assert snapshot(lineage.config_dir) == before


def test_pkcs12_password_fifo_is_refused_without_waiting(lineage, scratch):
    fifo = os.path.join(scratch, "p12-fifo")
    os.mkfifo(fifo, 0o600)
    settings = copy_settings(os.path.join(scratch, "tls"), copy_formats=("pkcs12",),
                             p12_password_file=fifo)
    finished, error = in_thread(lambda: deploy.copy_spec(settings), 10)
    assert finished, "root waits on a FIFO someone else could hold open"
    assert isinstance(error, CopyError) and "is not a regular file" in str(error)


def test_password_file_the_copy_owner_controls_is_refused(lineage, scratch):
    path = os.path.join(scratch, "p12-password")
    with open(path, "w") as f:
        f.write("chosen-by-the-service\n")
    os.chmod(path, 0o600)
    os.chown(path, uid(SERVICE_USER), 0)
    settings = copy_settings(os.path.join(scratch, "tls"), copy_formats=("pkcs12",),
                             p12_password_file=path)
    with pytest.raises(CopyError, match="is owned by uid .*, not root"):
        deploy.copy_spec(settings)


def clone_lineage(lineage, name):
    """A second real lineage: the same certificate files under another name."""
    shutil.copytree(lineage.archive_dir, os.path.join(lineage.archive_root, name))
    os.mkdir(os.path.join(lineage.live_root, name))
    other = Lineage(lineage.config_dir, name)
    for kind in KINDS:
        os.symlink(os.path.relpath(lineage.target(kind), lineage.live_dir).replace(
            "/unit/", "/{}/".format(name)), other.live_path(kind))
    return other


def test_a_second_lineage_cannot_take_over_a_copy_directory(lineage, scratch):
    dest = os.path.join(scratch, "tls")
    deploy.deploy(copy_settings(dest), lineage)
    before = {name: os.readlink(os.path.join(dest, name)) for name in ("current",)}
    other = clone_lineage(lineage, "other")
    with pytest.raises(CopyError, match=(
            "The copy directory {} already holds the copies of {}; one directory "
            "serves one certificate, so name another --wwu-acl-copy-to for other")
            .format(dest, lineage.live_dir)):
        deploy.deploy(copy_settings(dest), other)
    assert {name: os.readlink(os.path.join(dest, name)) for name in ("current",)} == before
    assert os.listdir(os.path.join(dest, ".versions")) == ["1"]


def test_the_timer_heal_prunes_what_an_interrupted_renewal_left(lineage, scratch, recorder,
                                                                timer):
    """Sets a killed run wrote are pruned by the next run, even when the
    copies are current and nothing else drifted."""
    dest = os.path.join(scratch, "tls")
    settings = copy_settings(dest)
    spec = deploy.copy_spec(settings)
    for version in (1, 2, 1, 2):
        deploy.write_copies(spec, lineage, {k: lineage.archive_file(k, version)
                                            for k in KINDS})
    from certbot_wwu import copies
    for _ in range(3):   # what kills before the prune leave behind
        copies.write_version(spec, {k: open(lineage.archive_file(k, 1), "rb").read()
                                    for k in KINDS}, lineage.names())
    assert len(os.listdir(os.path.join(dest, ".versions"))) == 5
    assert deploy.needs_deploy(settings, lineage)
    timer(settings)
    assert len(os.listdir(os.path.join(dest, ".versions"))) == 2
    assert not deploy.needs_deploy(settings, lineage)
