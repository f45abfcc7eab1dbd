"""certbot-wwu status on a real lineage, real users, real ACLs: every check,
every exit code, and that nothing changes (the config dir is compared with a
snapshot of modes, owners, ACLs and contents before and after)."""
import datetime
import fcntl
import grp
import json
import os
import shutil
import pwd
import re
import subprocess

import pytest

from certbot_wwu import deploy, grants, renewalconf, status, timer
from certbot_wwu.cli import main
from certbot_wwu.errors import CopyError
from certbot_wwu.lineage import Lineage
from certbot_wwu.presets import proxy_environment
from certbot_wwu.settings import Settings
from tests.conftest import needs_root
from tests.e2e.snapshot import snapshot
from tests.support.host import KEY_GROUP, OTHER_USER, READER_GROUP, SERVICE_USER
from tests.support.pebble import free_port
from tests.test_timer import make_root

SVC_WEB = Settings(users=[SERVICE_USER], units=["web.service"])


# --- helpers (the e2e tests use them too) ---------------------------------------

def timer_root(base, enabled=True, distro="debian"):
    """A system tree whose renewal timer is installed (and enabled)."""
    root = make_root(base, distro)
    if enabled:
        wants = os.path.join(root, "etc/systemd/system/timers.target.wants")
        os.makedirs(wants)
        os.symlink("/lib/systemd/system/" + timer.TIMERS[distro],
                   os.path.join(wants, timer.TIMERS[distro]))
    return root


def attach(lineage, settings):
    renewalconf.attach(lineage.renewal_conf, settings.to_values())


def deploy_and_act(lineage, settings=SVC_WEB):
    attach(lineage, settings)
    deploy.secure_key(lineage)
    deploy.deploy(settings, lineage)
    deploy.act(settings, lineage)


def items(document, name=None):
    """(item, status, message) of one lineage (or the timer: name None)."""
    section = document["timer"] if name is None else next(
        s for s in document["lineages"] if s["name"] == name)
    return [(i["item"], i["status"], i["message"]) for i in section["items"]]


def statuses(document, name, item):
    return [s for i, s, _ in items(document, name) if i == item]


# --- fixtures ----------------------------------------------------------------------

@pytest.fixture
def lineage(lineage_dir, accounts):
    return Lineage(lineage_dir, "unit")



@pytest.fixture
def root(tmp_path):
    return timer_root(tmp_path)


@pytest.fixture
def run(lineage, recorder, root, capsys):
    """status on the lineage's config dir; asserts it changed nothing."""
    def run_(*argv, **kwargs):
        system = kwargs.pop("root", root)
        argv = ["status", "--config-dir", lineage.config_dir,
                "--root", system] + list(argv)
        trees = [lineage.config_dir] + ([system] if system != "/" else [])
        before = [snapshot(tree) for tree in trees]
        calls = len(recorder.calls())
        code = main(argv)
        out, err = capsys.readouterr()
        assert [snapshot(tree) for tree in trees] == before
        assert [c for c in recorder.calls()[calls:]
                if c.split()[0] not in ("is-active", "is-enabled")] == []
        return code, out, err
    return run_


@pytest.fixture
def run_json(run):
    def run_json_(*argv, **kwargs):
        code, out, err = run("--json", *argv, **kwargs)
        assert "Traceback" not in err
        document = json.loads(out)
        assert document["ok"] is (code == 0)
        return code, document
    return run_json_


# --- a healthy deployment ---------------------------------------------------------

def test_deployed_lineage_is_all_well(lineage, run, run_json, recorder):
    deploy_and_act(lineage)
    code, out, err = run()
    assert code == 0, out + err
    assert "OK         user {} can read the current certificate and key".format(
        SERVICE_USER) in out
    assert "OK         other users cannot read the private key" in out
    assert "OK         web.service is active" in out
    assert "unit (unit.example.org)" in out.splitlines()[0]
    assert out.rstrip().endswith("All is well.")
    assert "ATTENTION" not in out

    code, doc = run_json()
    assert code == 0 and doc["attention"] == []
    (unit,) = doc["lineages"]
    assert unit["names"] == ["unit.example.org"]
    assert unit["installer_attached"] is True
    assert unit["settings"]["user"] == SERVICE_USER
    assert unit["principals"] == [{"kind": "user", "name": SERVICE_USER,
                                   "can_read": True, "unreadable": []}]
    assert unit["outsider_refused"] is True
    assert unit["unwanted_access"] == [] and unit["stray_defaults"] == []
    assert unit["needs_deploy"] is False and unit["needs_action"] is False
    assert unit["copies_current"] is None
    assert unit["units"] == [{"unit": "web.service", "state": "active", "active": True}]
    assert unit["version"] == 2
    assert unit["days_left"] > 365
    assert unit["server"].startswith("https://127.0.0.1:")
    assert "is-active web.service" in recorder.calls()


def test_group_principal(lineage, run_json):
    deploy_and_act(lineage, Settings(groups=[READER_GROUP]))
    code, doc = run_json()
    assert code == 0
    assert doc["lineages"][0]["principals"][0]["kind"] == "group"
    assert doc["lineages"][0]["principals"][0]["can_read"] is True


# --- what needs attention ------------------------------------------------------------

def test_acl_removed_from_the_key(lineage, run, run_json):
    deploy_and_act(lineage)
    subprocess.check_call(["setfacl", "-b", lineage.archive_file("privkey", 2)])
    code, out, _ = run()
    assert code == 1
    assert "ATTENTION  user {} cannot read {}".format(
        SERVICE_USER, lineage.live_path("privkey")) in out
    assert ("ATTENTION  the deployment drifted: the renewal timer's check would "
            "redeploy") in out
    code, doc = run_json()
    principal = doc["lineages"][0]["principals"][0]
    assert principal["can_read"] is False
    assert principal["unreadable"] == [lineage.live_path("privkey")]
    assert doc["lineages"][0]["needs_deploy"] is True
    assert any("cannot read" in line for line in doc["attention"])


def test_readable_by_anyone(lineage, run_json):
    deploy_and_act(lineage)
    os.chmod(lineage.live_root, 0o711)  # certbot makes them 0700
    os.chmod(lineage.archive_root, 0o711)
    os.chmod(lineage.archive_file("privkey", 2), 0o604)
    code, doc = run_json()
    assert code == 1
    assert doc["lineages"][0]["outsider_refused"] is False
    assert "attention" in statuses(doc, "unit", "outsider")


# --- issue 18, defect 4: readers and default entries nobody configured ----------

def setfacl(*args):
    subprocess.check_call(("setfacl",) + args)


def test_stray_reader_of_the_key_is_named(lineage, run, run_json):
    """The key as the old secure_key left it under the recipe's leftover:
    OTHER_USER's entry effective, the outsider probe still refused."""
    deploy_and_act(lineage)
    key = lineage.archive_file("privkey", 2)
    setfacl("-m", "u:{}:rx".format(OTHER_USER), key)
    code, out, _ = run()
    assert code == 1
    assert ("ATTENTION  user {} can read {} although it is not configured for "
            "this certificate; remove its entry with 'setfacl -x u:{} {}'".format(
                OTHER_USER, key, OTHER_USER, key)) in out
    assert "OK         users without an ACL entry cannot read the private key" in out
    code, doc = run_json()
    unit = doc["lineages"][0]
    assert unit["unwanted_access"] == [{"path": key, "principal": "user " + OTHER_USER,
                                        "access": "read", "through": "named"}]
    assert unit["outsider_refused"] is True


def test_stray_group_and_owning_group_are_named(lineage, run_json):
    deploy_and_act(lineage)
    key = lineage.archive_file("privkey", 2)
    setfacl("-m", "g:{}:r".format(READER_GROUP), key)
    os.chown(key, 0, grp.getgrnam(KEY_GROUP).gr_gid)
    setfacl("-m", "g::r", key)
    code, doc = run_json()
    assert code == 1
    found = {(a["principal"], a["through"]) for a in doc["lineages"][0]["unwanted_access"]}
    assert found == {("group " + READER_GROUP, "named"), ("group " + KEY_GROUP, "group")}
    assert any("group {}, the owning group, can read {}".format(KEY_GROUP, key) in line
               for line in doc["attention"])
    # held back by the mask, the entries give nothing: nothing to name
    setfacl("-n", "-m", "m::---", key)
    code, doc = run_json()
    assert doc["lineages"][0]["unwanted_access"] == []


def test_leftover_default_entries_are_named(lineage, run, run_json):
    deploy_and_act(lineage)
    archive = os.path.dirname(lineage.archive_file("privkey", 2))
    # the configured user's default entry gives nothing new: not reported
    setfacl("-d", "-m", "u:{}:rX".format(SERVICE_USER), lineage.live_dir)
    assert run()[0] == 0
    setfacl("-d", "-m", "u:{}:rX,g:{}:rX".format(OTHER_USER, READER_GROUP), archive)
    code, out, _ = run()
    assert code == 1
    assert ("ATTENTION  leftover default ACL entries on archive/unit give every "
            "future key to group {}, user {}, not configured for this certificate; "
            "'certbot-wwu deploy --cert-name unit' removes them, or run "
            "'setfacl -k {}'".format(READER_GROUP, OTHER_USER, archive)) in out
    code, doc = run_json()
    assert doc["lineages"][0]["stray_defaults"] == [
        {"directory": archive, "principal": "group " + READER_GROUP},
        {"directory": archive, "principal": "user " + OTHER_USER}]
    # what a deployment removes (grants.remove_stray_defaults) is what was named
    keep = [grants.resolve([SERVICE_USER], [])[0].key]
    assert grants.remove_stray_defaults(lineage, keep).startswith(
        "removed default ACL entries for group {}, user {} from archive/unit".format(
            READER_GROUP, OTHER_USER))
    code, out, _ = run()
    assert code == 0, out


def test_recipe_grants_on_an_old_key_are_named(lineage, run_json):
    deploy_and_act(lineage)
    old_key = lineage.archive_file("privkey", 1)
    setfacl("-m", "u:{}:r".format(OTHER_USER), old_key)
    code, doc = run_json()
    assert code == 1
    found = [m for i, s, m in items(doc, "unit") if i == "old-key-acl"]
    assert found == ["the manual recipe left {}: ACL entries for user {} on an older "
                     "version (setfacl -R); 'certbot-wwu attach --cert-name unit "
                     "--take-over' removes it".format(old_key, OTHER_USER)]


def test_leftovers_on_a_lineage_without_the_installer(lineage, run_json):
    """The manual recipe's lineage: every named entry is nobody's config."""
    key = lineage.archive_file("privkey", 2)
    setfacl("-m", "u:{}:r".format(SERVICE_USER), key)
    setfacl("-d", "-m", "u:{}:rX".format(SERVICE_USER), lineage.live_dir)
    code, doc = run_json()
    assert code == 1
    unit = doc["lineages"][0]
    assert [a["principal"] for a in unit["unwanted_access"]] == ["user " + SERVICE_USER]
    assert unit["stray_defaults"] == [{"directory": lineage.live_dir,
                                       "principal": "user " + SERVICE_USER}]
    assert any("'certbot-wwu attach --cert-name unit' removes them" in line
               for line in doc["attention"])


def test_deployed_but_not_acted_on(lineage, run_json):
    attach(lineage, SVC_WEB)
    deploy.deploy(SVC_WEB, lineage)
    code, doc = run_json()
    assert code == 1
    assert doc["lineages"][0]["needs_action"] is True
    assert doc["lineages"][0]["needs_deploy"] is False
    assert statuses(doc, "unit", "action") == ["attention"]


def test_attached_but_never_deployed(lineage, run_json):
    attach(lineage, SVC_WEB)  # as certonly -i on certbot < 1.27 leaves it
    code, doc = run_json()
    assert code == 1
    unit = doc["lineages"][0]
    assert unit["principals"][0]["can_read"] is False
    assert unit["needs_deploy"] is True and unit["needs_action"] is True
    assert any("never deployed" in line for line in doc["attention"])


@pytest.mark.parametrize("how,state", [("failed", "failed"), ("dead", "failed"),
                                       ("inactive", "inactive")])
def test_unit_not_active(lineage, run_json, recorder, how, state):
    deploy_and_act(lineage)
    recorder.fail("web.service", how)
    code, doc = run_json()
    assert code == 1
    assert doc["lineages"][0]["units"] == [
        {"unit": "web.service", "state": state, "active": False}]
    assert any("web.service is {}".format(state) in line for line in doc["attention"])


def test_inactive_unit_with_a_try_action_is_information(lineage, run_json, recorder):
    settings = Settings(users=[SERVICE_USER], units=["web.service"],
                        action="try-restart")
    deploy_and_act(lineage, settings)
    recorder.fail("web.service", "inactive")
    code, doc = run_json()
    assert code == 0
    assert statuses(doc, "unit", "unit") == ["info"]


def test_no_systemctl(lineage, run_json, monkeypatch):
    deploy_and_act(lineage)
    monkeypatch.setattr(status.service, "SYSTEMCTL", "/nonexistent/systemctl")
    code, doc = run_json()
    assert code == 1
    assert doc["lineages"][0]["units"][0]["state"] is None
    assert any("state of web.service unknown" in line for line in doc["attention"])


@pytest.mark.parametrize("left,message", [(10.5, "expires in 10 days"),
                                          (-2.5, "expired 3 days ago")])
def test_expiry_close(lineage, run_json, monkeypatch, left, message):
    deploy_and_act(lineage)
    after = status.validity(lineage)[1]
    monkeypatch.setattr(status, "_now",
                        lambda: after - datetime.timedelta(days=left))
    code, doc = run_json()
    assert code == 1
    assert doc["lineages"][0]["days_left"] == int(left // 1)
    assert statuses(doc, "unit", "expiry") == ["attention"]
    assert message in doc["attention"][0]


def test_expiry_margin():
    day = datetime.timedelta(days=1)
    now = datetime.datetime(2025, 6, 1, tzinfo=datetime.timezone.utc)
    # 90-day certificates: attention below 14 days
    assert not status.expiry_attention(now - 76 * day, now + 14 * day, now)
    assert status.expiry_attention(now - 77 * day, now + 13.9 * day, now)
    # six-day certificates: below a third of their lifetime, 2 days
    assert not status.expiry_attention(now - 3 * day, now + 3 * day, now)
    assert status.expiry_attention(now - 4.1 * day, now + 1.9 * day, now)
    assert status.expiry_attention(now - 7 * day, now - day, now)


@pytest.mark.parametrize("values,fragment", [
    ({"user": SERVICE_USER, "action": "explode"}, "Unknown action 'explode'"),
    ({"unit": "web.service"}, "Nobody to grant access to"),
    ({"user": "bad name!"}, "not a valid user or group name"),
    ({"user": SERVICE_USER, "timeout": "soon"}, "Timeout 'soon'"),
])
def test_invalid_stored_settings_are_reported(lineage, run, run_json, values, fragment):
    renewalconf.attach(lineage.renewal_conf, values)
    code, out, err = run()
    assert code == 1 and err == "" and "Traceback" not in out
    assert "invalid stored settings" in out and fragment in out
    code, doc = run_json()
    assert doc["lineages"][0]["settings"] is None
    assert statuses(doc, "unit", "settings") == ["attention"]


def test_stored_literals_come_back_as_certbot_restores_them(lineage, run_json):
    """certbot writes None/True/False for options it restores literally."""
    deploy_and_act(lineage)
    with open(lineage.renewal_conf, "a") as f:
        f.write("wwu_acl_group = None\nwwu_acl_p12_empty_password = False\n")
    code, doc = run_json()
    assert code == 0, doc["attention"]


def test_user_that_no_longer_exists(lineage, run_json):
    deploy_and_act(lineage)
    attach(lineage, Settings(users=[SERVICE_USER, "wwu-test-gone"]))
    code, doc = run_json()
    assert code == 1
    gone = doc["lineages"][0]["principals"][1]
    assert gone["name"] == "wwu-test-gone" and gone["can_read"] is None
    assert any("'wwu-test-gone' does not exist" in line for line in doc["attention"])


def test_unreadable_renewal_conf(lineage, run_json):
    with open(lineage.renewal_conf, "a") as f:
        f.write("[renewalparams\nbroken = \"\n")
    code, doc = run_json()
    assert code == 1
    assert statuses(doc, "unit", "renewal-conf") == ["attention"]


def test_missing_live_files(lineage, run_json):
    deploy_and_act(lineage)
    os.unlink(lineage.live_path("privkey"))
    code, doc = run_json()
    assert code == 1
    assert statuses(doc, "unit", "certificate") == ["attention"]


# --- copy mode ------------------------------------------------------------------

@pytest.fixture
def copy_dir(scratch):
    """A copy directory whose parent exists (copies.py makes only the last
    level)."""
    os.makedirs(os.path.join(scratch, "copies"))
    return os.path.join(scratch, "copies", "web")


def test_copies_current_then_stale(lineage, run, run_json, copy_dir):
    settings = Settings(copy_to=copy_dir, units=["web.service"])
    deploy_and_act(lineage, settings)
    code, doc = run_json()
    assert code == 0, doc["attention"]
    assert doc["lineages"][0]["copies_current"] is True
    assert doc["lineages"][0]["principals"] == []

    before = snapshot(copy_dir)
    os.chmod(os.path.join(copy_dir, "privkey.pem"), 0o644)
    code, doc = run_json()
    assert code == 1
    assert doc["lineages"][0]["copies_current"] is False
    assert statuses(doc, "unit", "copies") == ["attention"]
    os.chmod(os.path.join(copy_dir, "privkey.pem"), 0o600)
    assert snapshot(copy_dir) == before


def test_a_copy_directory_the_copy_owner_owns_is_shown_first(lineage, run, run_json,
                                                              copy_dir):
    """A destination earlier builds accepted fails every renewal now: status
    says so first, with the sentence the deployment will give."""
    settings = Settings(copy_to=copy_dir, copy_owner=(SERVICE_USER, ""))
    deploy_and_act(lineage, settings)
    parent = os.path.dirname(copy_dir)
    os.chown(parent, pwd.getpwnam(SERVICE_USER).pw_uid, 0)
    code, doc = run_json()
    assert code == 1
    first = items(doc, "unit")[0]
    assert first[:2] == ("copy-destination", "attention")
    assert first[2].startswith("the next deployment will refuse the copy directory: "
                               "{} is owned by uid".format(parent))
    assert "chown root:root {0} && chmod 755 {0}".format(parent) in first[2]
    code, out, _ = run()
    assert out.index("the next deployment will refuse") < out.index("expires in")
    with pytest.raises(CopyError, match=re.escape(parent) + " is owned by uid"):
        deploy.deploy(settings, lineage)


def test_copy_owner_gone(lineage, run_json, copy_dir):
    deploy_and_act(lineage, Settings(copy_to=copy_dir))
    attach(lineage, Settings(copy_to=copy_dir, copy_owner=("wwu-test-gone", "")))
    code, doc = run_json()
    assert code == 1
    assert any("'wwu-test-gone' does not exist" in line for line in doc["attention"])


# --- a lineage without the installer ---------------------------------------------

def test_lineage_without_installer_is_information(lineage, run, run_json):
    code, out, _ = run()
    assert code == 0
    assert "INFO       installer not attached" in out
    code, doc = run_json()
    unit = doc["lineages"][0]
    assert unit["installer_attached"] is False and unit["settings"] is None
    assert unit["outsider_refused"] is True
    assert statuses(doc, "unit", "installer") == ["info"]


def test_lineage_without_installer_named_needs_attention(lineage, run):
    code, out, _ = run("--cert-name", "unit")
    assert code == 1
    assert "ATTENTION  installer not attached" in out


def test_options_without_installer(lineage, run_json):
    attach(lineage, SVC_WEB)
    with open(lineage.renewal_conf) as f:
        text = f.read()
    with open(lineage.renewal_conf, "w") as f:
        f.write(text.replace("installer = wwu-acl\n", ""))
    code, doc = run_json()
    assert code == 1
    assert "wwu-acl options are stored" in doc["attention"][0]


def test_several_lineages_and_cert_name(lineage, run_json):
    other = os.path.join(lineage.config_dir, "renewal", "other.conf")
    shutil.copyfile(lineage.renewal_conf, other)
    deploy_and_act(lineage)
    code, doc = run_json()
    assert [s["name"] for s in doc["lineages"]] == ["other", "unit"]
    assert code == 1  # 'other' has no live files
    code, doc = run_json("--cert-name", "unit")
    assert code == 0 and [s["name"] for s in doc["lineages"]] == ["unit"]


# --- the renewal timer ---------------------------------------------------------------

def test_timer_not_enabled(lineage, run_json, tmp_path):
    root = timer_root(tmp_path / "off", enabled=False)
    code, doc = run_json(root=root)
    assert code == 1
    assert doc["timer"]["enabled"] is False
    assert items(doc)[0][:2] == ("timer", "attention")
    assert "not enabled" in items(doc)[0][2]


def test_timer_masked(lineage, run_json, tmp_path):
    root = timer_root(tmp_path / "masked")
    os.symlink("/dev/null", os.path.join(root, "etc/systemd/system/certbot.timer"))
    code, doc = run_json(root=root)
    assert code == 1 and doc["timer"]["enabled_detail"] == "masked"


def test_timer_off_but_cron_renews(lineage, run_json, tmp_path):
    root = timer_root(tmp_path / "cron", enabled=False)
    os.makedirs(os.path.join(root, "etc/cron.d"))
    with open(os.path.join(root, "etc/cron.d/certbot"), "w") as f:
        # Debian's own entry does nothing where systemd runs: not counted
        f.write("0 */12 * * * root test -x /usr/bin/certbot -a \\! -d "
                "/run/systemd/system && certbot -q renew\n")
    assert run_json(root=root)[0] == 1
    with open(os.path.join(root, "etc/cron.d/renew"), "w") as f:
        f.write("17 3 * * * root /opt/certbot/bin/certbot renew -q\n")
    code, doc = run_json(root=root)
    assert code == 0
    assert items(doc)[0][:2] == ("timer", "info")
    assert doc["timer"]["cron"].endswith("etc/cron.d/renew")


def test_pip_without_timer_units(lineage, run_json, tmp_path):
    root = make_root(tmp_path, "pip")
    code, doc = run_json(root=root)
    assert code == 1
    assert doc["timer"]["distro"] == "pip"
    assert "setup --enable-timer" in items(doc)[0][2]


def test_proxy_reported(lineage, run, tmp_path):
    root = timer_root(tmp_path / "proxy", distro="el")
    timer.configure("el", proxy_environment("proxy.example:3128",
                                            "localhost,.uni-muenster.de"), root)
    code, out, _ = run(root=root)
    assert code == 0
    assert ("OK         the renewal service gets the proxy http://proxy.example:3128, "
            "no_proxy localhost,.uni-muenster.de") in out


def test_proxy_problem_needs_attention(lineage, run_json, tmp_path):
    root = timer_root(tmp_path / "seed", distro="el")
    os.makedirs(os.path.join(root, "etc/sysconfig"))
    with open(os.path.join(root, "etc/sysconfig/certbot"), "w") as f:
        f.write("https_proxy=wwwproxy.uni-muenster.de:3128\n")  # the seed's way
    code, doc = run_json(root=root)
    assert code == 1
    assert ("proxy", "attention") in [i[:2] for i in items(doc)]


def test_live_root_asks_systemctl_and_says_when_it_cannot_tell(
        lineage, run, run_json, recorder):
    """The recording systemctl knows no is-enabled: unknown, said, no attention."""
    deploy_and_act(lineage)
    code, doc = run_json("--distro", "debian", root="/")
    assert "is-enabled certbot.timer" in recorder.calls()
    assert doc["timer"]["enabled"] is None
    (timer_item,) = [i for i in items(doc) if i[0] == "timer"]
    assert timer_item[1] == "info"
    assert "unknown" in timer_item[2] and "unsupported call" in timer_item[2]
    assert [a for a in doc["attention"] if "timer" in a] == []


def test_enabled_state_from_systemctl(monkeypatch, tmp_path):
    """The exit status and last line of a real 'systemctl is-enabled' (a
    script first on PATH that answers as systemd would) decide."""
    answers = {"enabled": (0, "enabled"), "disabled": (1, "disabled"),
               "odd": (1, "Failed to get unit file state: Connection refused")}
    path = os.environ.get("PATH", "")
    for name, (code, text) in answers.items():
        bin_dir = tmp_path / name
        bin_dir.mkdir()
        script = bin_dir / "systemctl"
        script.write_text("#!/bin/sh\necho '{}'\nexit {}\n".format(text, code))
        script.chmod(0o755)
        monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + path)
        enabled, how = status.timer_enabled("certbot.timer", "/")
        assert enabled == {"enabled": True, "disabled": False, "odd": None}[name]
        if name == "odd":
            assert how.startswith("unknown") and "Connection refused" in how
        else:
            assert how == "systemctl is-enabled: " + name


def test_unreadable_timer_configuration(lineage, run_json, tmp_path):
    root = timer_root(tmp_path / "broken", distro="el")
    os.makedirs(os.path.join(root, "etc/sysconfig/certbot"))  # not a file
    code, doc = run_json("--check-ca", root=root)
    assert code == 1
    assert doc["timer"]["items"][0]["message"].startswith("Cannot read ")
    assert any("cannot tell which proxy" in line for line in doc["attention"])


# --- a certbot at work ------------------------------------------------------------

def test_running_certbot_is_mentioned(lineage, run, run_json, tmp_path):
    """certbot holds DIR/.certbot.lock with lockf while it runs."""
    deploy_and_act(lineage)
    work = str(tmp_path / "work")
    os.makedirs(work)
    with open(os.path.join(work, ".certbot.lock"), "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, out, _ = run("--work-dir", work)
        assert code == 0
        assert out.startswith("certbot\n  INFO       certbot is running (pid {} holds "
                              "{}/.certbot.lock)".format(os.getpid(), work))
        code, doc = run_json("--work-dir", work)
        assert doc["certbot_running"] == [
            {"lock": os.path.join(work, ".certbot.lock"), "pid": os.getpid()}]
    code, doc = run_json("--work-dir", work)
    assert doc["certbot_running"] == []


# --- --check-ca ---------------------------------------------------------------------

@pytest.fixture
def pebble_env(lineage_template, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", lineage_template.pebble.ca_bundle)
    return lineage_template.pebble


def test_check_ca_reports_reachable_and_eab(lineage, run, run_json, pebble_env):
    code, out, _ = run("--check-ca")
    assert code == 0
    assert "OK         {} reachable in ".format(pebble_env.url) in out
    assert "EAB required: yes" in out
    code, doc = run_json("--check-ca")
    (ca,) = doc["ca"]
    assert ca["server"] == pebble_env.url and ca["reachable"] is True
    assert ca["eab_required"] is True and isinstance(ca["latency_ms"], int)
    assert ca["proxy"] is None


def test_check_ca_ignores_this_shells_proxy(lineage, run_json, pebble_env, monkeypatch):
    """The timer has no proxy; a dead one in this process must not matter."""
    dead = "http://127.0.0.1:{}".format(free_port())
    for key in ("https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.setenv(key, dead)
    for key in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(key, raising=False)
    code, doc = run_json("--check-ca")
    assert code == 0 and doc["ca"][0]["reachable"] is True
    assert os.environ["https_proxy"] == dead and "no_proxy" not in os.environ


def test_check_ca_goes_through_the_timers_proxy(lineage, run_json, pebble_env,
                                               tmp_path):
    root = timer_root(tmp_path / "proxied")
    dead = "127.0.0.1:{}".format(free_port())
    timer.configure("debian", proxy_environment(dead), root)
    code, doc = run_json("--check-ca", root=root)
    assert code == 1
    ca = doc["ca"][0]
    assert ca["reachable"] is False and ca["proxy"] == "http://" + dead
    assert ca["error"] and "\n" not in ca["error"]
    assert any("unreachable" in line for line in doc["attention"])
    # the timer's no_proxy applies too
    timer.configure("debian", proxy_environment(dead, "127.0.0.1"), root)
    code, doc = run_json("--check-ca", root=root)
    assert code == 0 and doc["ca"][0]["reachable"] is True


def test_check_ca_unreachable_server(lineage, run_json, pebble_env):
    with open(lineage.renewal_conf) as f:
        text = f.read()
    with open(lineage.renewal_conf, "w") as f:
        f.write(text.replace(pebble_env.url, "https://127.0.0.1:{}/dir".format(
            free_port())))
    code, doc = run_json("--check-ca")
    assert code == 1 and doc["ca"][0]["reachable"] is False


# --- errors -----------------------------------------------------------------------

def test_unknown_cert_name_is_one_line(lineage, run):
    code, out, err = run("--cert-name", "nope")
    assert code == 1 and out == ""
    assert err.startswith("certbot-wwu: There is no certificate nope in ")
    assert err.count("\n") == 1


def test_missing_config_dir(capsys, recorder):
    code = main(["status", "--config-dir", "/nonexistent/letsencrypt"])
    _, err = capsys.readouterr()
    assert code == 1 and "--config-dir" in err and err.count("\n") == 1


def test_not_root(lineage, run, monkeypatch):
    monkeypatch.setattr(status.os, "geteuid", lambda: 1000)
    code, out, err = run()
    assert code == 1 and "run it as root" in err


@pytest.mark.parametrize("argv", [["--distro", "gentoo"], ["--bogus"]])
def test_usage_errors_exit_2(lineage, run, argv):
    code, _, err = run(*argv)
    assert code == 2 and "usage:" in err


@needs_root  # status refuses to run without root
def test_no_lineages(tmp_path, recorder, root, capsys):
    os.makedirs(str(tmp_path / "le" / "renewal"))
    code = main(["status", "--config-dir", str(tmp_path / "le"), "--root", root])
    out, _ = capsys.readouterr()
    assert code == 0 and out.startswith("No certificates in ")
