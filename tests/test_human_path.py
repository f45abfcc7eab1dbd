"""Issue 11, the human path, on a real lineage (real users, real ACLs):
stored settings are the base, errors name the real cause, copy mode does
what was meant, output a sysadmin can trust, the recipe's leftovers."""
import os
import subprocess
import sys

import pytest

from certbot_wwu import cli, copies, deploy, grants, renewalconf
from certbot_wwu.errors import CopyError, GrantError, SettingsError
from certbot_wwu.lineage import Lineage
from certbot_wwu.settings import Settings
from tests.conftest import needs_root
from tests.support.host import OTHER_USER, SECOND_USER, SERVICE_USER, read_as

pytestmark = needs_root


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def lineage(lineage_dir, accounts, recorder):
    found = Lineage(lineage_dir, "unit")
    os.chmod(found.live_root, 0o711)
    os.chmod(found.archive_root, 0o711)
    return found


def attach(capsys, lineage, *argv):
    code, out, err = run(capsys, "attach", "--cert-name", "unit", "--config-dir",
                         lineage.config_dir, *argv)
    assert code == 0, err
    return out


def deploy_cmd(capsys, lineage, *argv):
    return run(capsys, "deploy", "--cert-name", "unit", "--config-dir",
               lineage.config_dir, *argv)


# --- 2: stored settings are the base ------------------------------------------

def test_deploy_with_an_option_keeps_the_stored_user(capsys, lineage, scratch):
    """Main removed the configured user's ACLs ('nobody can read version 2')
    when any option was given, while the renewal conf still named the user."""
    attach(capsys, lineage, "--user", SERVICE_USER)
    code, out, err = deploy_cmd(capsys, lineage, "--action", "none")
    assert code == 0, err
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert "nobody can read" not in out
    assert "user {} can read version 2".format(SERVICE_USER) in out
    dest = os.path.join(scratch, "tls")
    code, out, err = deploy_cmd(capsys, lineage, "--copy-to", dest)
    assert code == 0, err
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert os.path.islink(os.path.join(dest, "privkey.pem"))
    # the renewal conf learns what the command changed
    _, stored = renewalconf.stored(lineage.renewal_conf)
    assert stored["user"] == SERVICE_USER and stored["copy_to"] == dest


def test_deploy_adds_names_and_removes_only_when_told(capsys, lineage):
    attach(capsys, lineage, "--user", SERVICE_USER)
    code, out, err = deploy_cmd(capsys, lineage, "--user", SECOND_USER)
    assert code == 0, err
    assert "changed user {} added".format(SECOND_USER) in out
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert read_as(SECOND_USER, lineage.live_path("privkey"))
    code, out, err = deploy_cmd(capsys, lineage, "--no-user", SERVICE_USER)
    assert code == 0, err
    assert "changed user {} removed".format(SERVICE_USER) in out
    assert not read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert read_as(SECOND_USER, lineage.live_path("privkey"))
    _, stored = renewalconf.stored(lineage.renewal_conf)
    assert stored["user"] == SECOND_USER  # no promise left that is not kept


def test_deploy_replace_uses_exactly_the_options(capsys, lineage):
    attach(capsys, lineage, "--user", SERVICE_USER, "--unit", "web")
    code, out, err = deploy_cmd(capsys, lineage, "--replace", "--user", SECOND_USER,
                                "--action", "none")
    assert code == 0, err
    assert "changed user: {} -> {}".format(SERVICE_USER, SECOND_USER) in out
    assert "changed unit: web.service -> (none)" in out
    assert not read_as(SERVICE_USER, lineage.live_path("privkey"))
    _, stored = renewalconf.stored(lineage.renewal_conf)
    assert stored["user"] == SECOND_USER and "unit" not in stored


def test_removing_a_name_that_is_not_stored_is_refused(capsys, lineage):
    attach(capsys, lineage, "--user", SERVICE_USER)
    assert deploy_cmd(capsys, lineage, "--action", "none")[0] == 0
    code, out, err = deploy_cmd(capsys, lineage, "--no-user", OTHER_USER)
    assert code == 1 and out == ""
    assert "--no-user {0}: {0} is not among the stored user settings".format(
        OTHER_USER) in err
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))


def test_deploy_without_stored_settings_needs_options(capsys, lineage):
    """A deploy hook (no installer attached) uses exactly its options."""
    code, _, err = deploy_cmd(capsys, lineage, "--action", "none", "--user",
                              SERVICE_USER)
    assert code == 0, err
    assert "installer" not in renewalconf.read(lineage.renewal_conf)


# --- 3: errors name the real cause --------------------------------------------

def test_access_check_names_the_directory_that_stops_the_user(lineage, scratch):
    """Main blamed the ACL mask when a parent directory was the cause."""
    os.chmod(scratch, 0o700)
    try:
        with pytest.raises(GrantError) as info:
            deploy.deploy(Settings(users=[SERVICE_USER]), lineage)
    finally:
        os.chmod(scratch, 0o755)
    message = str(info.value)
    assert "the kernel stops it at {}, ".format(scratch) in message, message
    assert "mode 0700" in message and "mask" not in message
    assert "setfacl -m u:{}:x {}".format(SERVICE_USER, scratch) in message


def test_access_check_names_a_mask_that_cuts_the_entry(lineage):
    principal = grants.resolve([SERVICE_USER], [])[0]
    deploy.deploy(Settings(users=[SERVICE_USER]), lineage)
    key = lineage.target("privkey")
    subprocess.check_call(["setfacl", "-m", "m::---", key])
    message = grants.why_denied(principal, lineage.live_path("privkey"))
    assert "the kernel stops it at {}".format(key) in message
    assert "the ACL mask --- of {}".format(key) in message


# --- 4: copy mode that does what was meant -------------------------------------

def test_copy_to_a_missing_parent_is_refused(lineage, scratch):
    dest = os.path.join(scratch, "nonexistent", "haproxy", "tls")
    with pytest.raises(CopyError, match="does not exist, so the copy directory"):
        deploy.deploy(Settings(copy_to=dest), lineage)
    assert not os.path.exists(os.path.join(scratch, "nonexistent"))


def test_links_of_formats_no_longer_asked_for_are_removed(lineage, scratch, tmp_path):
    dest = os.path.join(scratch, "tls")
    deploy.deploy(Settings(copy_to=dest, copy_formats=("pkcs12",),
                           p12_empty_password=True), lineage)
    assert os.path.exists(os.path.join(dest, "bundle.p12"))
    deploy.deploy(Settings(copy_to=dest, copy_formats=("pem",)), lineage)
    assert not os.path.lexists(os.path.join(dest, "bundle.p12"))
    assert os.path.exists(os.path.join(dest, "privkey.pem"))


def test_rollback_brings_back_the_links_of_the_previous_formats(lineage, scratch):
    dest = os.path.join(scratch, "tls")
    deploy.deploy(Settings(copy_to=dest, copy_formats=("combined",)), lineage)
    report = deploy.deploy(Settings(copy_to=dest, copy_formats=("pem",)), lineage)
    copied = report.copied
    if copied is None:  # same version: force a new set
        pytest.skip("no switch happened")
    copies.rollback(copied.dest, copied.previous, copied.files)
    assert os.path.exists(os.path.join(dest, "combined.pem"))


@pytest.mark.parametrize("values, sentence", [
    ({"copy_to": "/srv/x", "copy_formats": "pkcs12", "p12_password_file": "/etc/p",
      "p12_empty_password": True},
     "--p12-password-file and --p12-empty-password contradict each other"),
    ({"copy_to": "/srv/x", "p12_empty_password": True},
     "--p12-empty-password only applies to the pkcs12 format"),
])
def test_contradictory_copy_options_are_refused(values, sentence):
    with pytest.raises(SettingsError, match=sentence):
        Settings.from_options(values.get, "--")


@pytest.mark.parametrize("owner, mode", [
    ("postgres:postgres", 0o600), ("root:ssl-cert", 0o640), ("nginx", 0o600)])
def test_default_key_mode_suits_postgresql(owner, mode):
    got = Settings.from_options({"copy_to": "/srv/x", "copy_owner": owner}.get)
    assert got.copy_mode == mode


# --- 5: output ----------------------------------------------------------------

def test_deploy_prints_one_summary_line(capsys, lineage):
    code, out, err = deploy_cmd(capsys, lineage, "--user", SERVICE_USER, "--unit", "web",
                                "--action", "reload")
    assert code == 0, err
    assert out.splitlines()[-1] == (
        "unit: user {} can read version 2; web.service: reload, active".format(
            SERVICE_USER))


def test_dry_run_prints_names_and_nothing_to_change(capsys, lineage):
    code, out, _ = deploy_cmd(capsys, lineage, "--dry-run", "--user", SERVICE_USER)
    assert code == 0
    assert "would grant user {} r-- on {}".format(
        SERVICE_USER, lineage.archive_file("privkey", 2)) in out
    assert "u:" not in out
    deploy_cmd(capsys, lineage, "--user", SERVICE_USER, "--action", "none")
    code, out, _ = deploy_cmd(capsys, lineage, "--dry-run", "--user", SERVICE_USER)
    assert out.splitlines() == ["nothing to change"]


def test_messages_name_the_commands_own_options(capsys, lineage):
    code, _, err = deploy_cmd(capsys, lineage, "--unit", "web")
    assert code == 1
    assert "give --user or --group" in err and "--wwu-acl" not in err


def test_verbose_works_after_the_subcommand(capsys):
    code, _, err = run(capsys, "presets", "-v")
    assert code == 0, err
    code, _, err = run(capsys, "env", "-q", "--proxy", "p:3128")
    assert code == 0, err


def test_env_without_arguments_is_a_usage_error(capsys):
    code, _, err = run(capsys, "env")
    assert code == 2 and "give --preset NAME or --proxy" in err


@pytest.mark.parametrize("argv", [
    ["attach", "--cert-name", "x", "--user", "root"],
    ["deploy", "--cert-name", "x"],
])
def test_without_root_one_sentence(capsys, monkeypatch, argv):
    """Main printed a traceback (attach) or "no such certificate" (deploy)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert err == ("certbot-wwu: certbot-wwu {} needs root: certbot's files, "
                   "their ACLs and the units are root's; run it with "
                   "sudo.\n".format(argv[0]))


def test_permission_denied_without_root_is_one_sentence(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    def denied(args):
        raise PermissionError(13, "Permission denied", "/etc/letsencrypt/live")
    monkeypatch.setattr(cli, "cmd_presets", denied)  # add_presets binds it when built
    code, _, err = run(capsys, "presets")
    assert code == 1 and err.startswith("certbot-wwu: certbot-wwu presets needs root")
    assert "Traceback" not in err


def test_one_wording_for_a_missing_certificate(capsys, lineage_dir):
    expected = "There is no certificate nope in {}".format(lineage_dir)
    for argv in (["deploy", "--cert-name", "nope", "--user", "root"],
                 ["attach", "--cert-name", "nope", "--user", "root"]):
        code, _, err = run(capsys, *argv, "--config-dir", lineage_dir)
        assert code == 1 and expected in err, err


# --- 6: the recipe's leftovers ------------------------------------------------

def test_attach_lists_and_takes_over_the_recipes_leftovers(capsys, lineage):
    conf = lineage.renewal_conf
    text = renewalconf.read(conf)
    with open(conf, "w") as f:
        f.write(text.replace("[renewalparams]\n", "[renewalparams]\n"
                             "renew_hook = systemctl restart web\n"))
    old_key = lineage.archive_file("privkey", 1)
    subprocess.check_call(["setfacl", "-m", "u:{}:r".format(OTHER_USER), old_key])
    out = attach(capsys, lineage, "--user", SERVICE_USER, "--unit", "web")
    assert "recipe leftover: {}: renew_hook = systemctl restart web also acts on " \
           "web.service".format(conf) in out
    assert "recipe leftover: {}: ACL entries for user {}".format(old_key, OTHER_USER) in out
    assert "user:{}:".format(OTHER_USER) in subprocess.check_output(
        ["getfacl", "-p", old_key], universal_newlines=True)
    out = attach(capsys, lineage, "--user", SERVICE_USER, "--unit", "web", "--take-over")
    assert "removed renew_hook = systemctl restart web from {}".format(conf) in out
    assert "removed the ACL entries for user {} from {}".format(OTHER_USER, old_key) in out
    assert "renew_hook" not in renewalconf.read(conf)
    assert "renew_hook = systemctl restart web" in renewalconf.read(
        conf + ".certbot-wwu.bak")
    assert "user:{}:".format(OTHER_USER) not in subprocess.check_output(
        ["getfacl", "-p", old_key], universal_newlines=True)


# --- 7/8: installing is documented, the man page has no broken links ----------

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_install_is_documented_per_distribution():
    readme = read(os.path.join(os.path.dirname(DOCS), "README.md"))
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    for word in ("apt-get install", "dnf install", "python3 -m venv", "snap",
                 "--deploy-hook 'certbot-wwu deploy"):
        assert word in install, word
    for quick in ("quickstart.rst", os.path.join("de", "quickstart.rst")):
        text = read(os.path.join(DOCS, quick))
        assert "see the README" not in text
        assert "apt-get install certbot" in text and "--deploy-hook" in text


def test_man_page_has_no_broken_links(tmp_path):
    pytest.importorskip("sphinx")
    subprocess.check_call([sys.executable, "-m", "sphinx", "-N", "-q", "-b", "man",
                           "-d", str(tmp_path / "trees"), DOCS, str(tmp_path / "man")])
    page = read(str(tmp_path / "man" / "certbot-wwu.1"))
    assert "<>" not in page
    assert "\\fB\\-\\-no\\-user" in page or "no\\-user" in page
