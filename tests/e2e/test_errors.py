"""Failures are loud and safe: one sentence, non-zero exit, nothing changed,
the installer stays attached."""
import os
import subprocess

import pytest

from tests.e2e.snapshot import snapshot
from tests.support.host import SERVICE_USER, read_as

pytestmark = pytest.mark.e2e


@pytest.fixture
def obtained(certbot):
    certbot.acme("certonly", "-a", "standalone", "-d", "e.example.org",
                 "--cert-name", "e")
    return certbot


def assert_clean_failure(result, sentence):
    assert result.code != 0, result
    assert sentence in result.err, result
    assert "Traceback" not in result.output, result


@pytest.mark.parametrize("options, sentence", [
    (["--wwu-acl-user", "no-such-user"],
     "User 'no-such-user' does not exist on this host"),
    (["--wwu-acl-group", "no-such-group"],
     "Group 'no-such-group' does not exist on this host"),
    (["--wwu-acl-user", SERVICE_USER, "--wwu-acl-unit", "web;reboot"],
     "'web;reboot' is not a valid systemd unit name"),
    (["--wwu-acl-user", SERVICE_USER, "--wwu-acl-action", "kill"],
     "Unknown action 'kill'"),
    (["--wwu-acl-user", "bad name"], "'bad name' is not a valid user or group name"),
    ([], "Nobody to grant access to"),
])
def test_bad_input_on_install_changes_nothing(obtained, options, sentence):
    before = snapshot(obtained.config_dir)
    result = obtained("install", "--cert-name", "e", "-i", "wwu-acl", *options,
                      check=False)
    assert_clean_failure(result, sentence)
    assert snapshot(obtained.config_dir) == before
    assert obtained.systemctl.actions() == []


@pytest.mark.parametrize("name, extra, sentence", [
    ("x#1", [], "argument --wwu-acl-copy-to: '{dest}' cannot be stored in the renewal "
                "configuration: '#' starts a comment there; choose a value without it."),
    ("x ", [], "argument --wwu-acl-copy-to: '{dest}' cannot be stored in the renewal "
               "configuration: a leading or trailing space is dropped there"),
    ("x", ["--wwu-acl-copy-formats", "pkcs12", "--wwu-acl-p12-password-file",
           "/etc/p12#pass"], "argument --wwu-acl-p12-password-file: '/etc/p12#pass' "
                             "cannot be "
                             "stored in the renewal configuration: '#' starts a comment"),
])
def test_unstorable_value_on_install_changes_nothing(obtained, scratch, name, extra,
                                                     sentence):
    """certbot install used to write the copies, then fail "unexpectedly" on the
    renewal conf: now the option's type refuses it while certbot parses."""
    dest = os.path.join(scratch, "copies", name)
    os.makedirs(os.path.dirname(dest))
    before = snapshot(obtained.config_dir)
    conf = obtained.read_renewal_conf("e")
    result = obtained("install", "--cert-name", "e", "-i", "wwu-acl",
                      "--wwu-acl-copy-to", dest, *extra, check=False)
    assert_clean_failure(result, sentence.format(dest=dest))
    assert "unexpectedly" not in result.output
    assert snapshot(obtained.config_dir) == before
    assert obtained.read_renewal_conf("e") == conf
    assert os.listdir(os.path.dirname(dest)) == []
    assert obtained.systemctl.actions() == []


@pytest.mark.parametrize("line, sentence", [
    ("wwu_acl_user = no-such-user", "User 'no-such-user' does not exist"),
    ("wwu_acl_action = True", "Unknown action True"),
    ("wwu_acl_unit = ../../etc", "is not a valid systemd unit name"),
    ("wwu_acl_user = None", "Nobody to grant access to"),
])
def test_bad_renewal_conf_fails_renew_and_stays_attached(obtained, line, sentence):
    conf = obtained.renewal_conf("e")
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("[renewalparams]\n",
                             "[renewalparams]\ninstaller = wwu-acl\n" + line + "\n"))
    result = obtained.renew("--force-renewal", check=False)
    assert result.code != 0, result
    assert sentence in result.output, result
    assert "Traceback" not in result.output
    assert "installer = wwu-acl" in obtained.read_renewal_conf("e")
    result = obtained.renew(check=False)
    assert result.code != 0 and sentence in result.output, result


def test_missing_pylibacl_is_one_sentence(obtained, scratch):
    shim = os.path.join(scratch, "no-pylibacl")
    os.makedirs(shim)
    with open(os.path.join(shim, "posix1e.py"), "w") as f:
        f.write("raise ImportError('hidden by the test')\n")
    before = snapshot(obtained.config_dir)
    result = obtained("install", "--cert-name", "e", "-i", "wwu-acl",
                      "--wwu-acl-user", SERVICE_USER, check=False,
                      env={"PYTHONPATH": shim})
    assert_clean_failure(result, "The Python module posix1e is missing; install pylibacl")
    assert snapshot(obtained.config_dir) == before


@pytest.fixture
def ramfs_certbot(certbot, scratch):
    """certbot's config tree on ramfs, which has no ACL support; certbot runs
    on the host, where the mount is (the test acts on no unit)."""
    certbot = certbot.outside()
    mount = os.path.join(scratch, "ramfs")
    os.makedirs(mount)
    subprocess.check_call(["mount", "-t", "ramfs", "-o", "mode=0755", "ramfs", mount])
    try:
        certbot.config_dir = os.path.join(mount, "etc")
        certbot.register()
        yield certbot
    finally:
        subprocess.call(["umount", "-l", mount])


def test_filesystem_without_acls_is_one_sentence(ramfs_certbot):
    ramfs_certbot.acme("certonly", "-a", "standalone", "-d", "n.example.org",
                       "--cert-name", "n")
    before = snapshot(ramfs_certbot.config_dir)
    result = ramfs_certbot("install", "--cert-name", "n", "-i", "wwu-acl",
                           "--wwu-acl-user", SERVICE_USER, check=False)
    assert_clean_failure(result, "does not support POSIX ACLs")
    assert snapshot(ramfs_certbot.config_dir) == before
    assert not read_as(SERVICE_USER, ramfs_certbot.live("n"))


def test_failing_unit_fails_install_with_its_name(obtained):
    obtained.systemctl.fail("web.service")
    result = obtained("install", "--cert-name", "e", "-i", "wwu-acl",
                      "--wwu-acl-user", SERVICE_USER, "--wwu-acl-unit", "web",
                      check=False)
    assert_clean_failure(result, "'systemctl restart web.service' failed (exit 1)")
    assert "journalctl -u web.service" in result.err
