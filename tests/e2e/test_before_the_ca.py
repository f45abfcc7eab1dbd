"""Issue 11 end to end: a typo is refused before certbot asks the CA for
anything (Pebble's orders counted), stored settings are the base of
``certbot install``, and certbot's output around the plugin."""
import os
import subprocess

import pytest

from tests.support.host import SERVICE_USER, read_as

pytestmark = pytest.mark.e2e


def orders(pebble):
    """Orders Pebble has accepted so far (one log line each)."""
    with open(pebble.log_path, errors="replace") as f:
        return sum("Added order" in line for line in f)


@pytest.mark.parametrize("verb, options, sentence", [
    ("run", ["--wwu-acl-user", "ngnix"],
     "argument --wwu-acl-user: User 'ngnix' does not exist on this host"),
    ("run", ["--wwu-acl-user", SERVICE_USER, "--wwu-acl-unit", "nginx service"],
     "argument --wwu-acl-unit: 'nginx service' is not a valid systemd unit name"),
    ("run", ["--wwu-acl-user", SERVICE_USER, "--wwu-acl-action", "relaod"],
     "argument --wwu-acl-action: Unknown action 'relaod'"),
    ("certonly", ["--wwu-acl-user", "ngnix"],
     "User 'ngnix' does not exist on this host"),
    # cross-option checks happen in prepare(), still before the CA
    ("run", ["--wwu-acl-user", SERVICE_USER, "--wwu-acl-copy-owner", SERVICE_USER],
     "--wwu-acl-copy-owner only applies to copies; add --wwu-acl-copy-to DIR"),
    ("certonly", ["--wwu-acl-unit", "web"], "Nobody to grant access to"),
    ("certonly", ["--wwu-acl-copy-to", "ROOT/nonexistent/haproxy/tls"],
     "ROOT/nonexistent does not exist, so the copy directory"),
])
def test_typo_is_refused_before_the_ca_is_asked(certbot, verb, options, sentence):
    options = [o.replace("ROOT", certbot.root) for o in options]
    sentence = sentence.replace("ROOT", certbot.root)
    before = orders(certbot.pebble)
    result = certbot.acme(verb, "-a", "standalone", "-i", "wwu-acl",
                          "-d", "typo.example.org", "--cert-name", "typo", *options,
                          check=False)
    assert result.code != 0, result
    assert sentence in result.err, result
    assert "Traceback" not in result.output
    assert "Successfully received certificate" not in result.output
    assert orders(certbot.pebble) == before
    assert not os.path.exists(certbot.renewal_conf("typo"))
    assert not os.path.exists(os.path.join(certbot.root, "nonexistent"))


def test_a_deleted_user_fails_renew_loudly_without_an_order(certbot):
    gone = "wwu-test-gone"
    # the user lives and dies where certbot runs: the test's systemd, whose
    # /etc is an overlay (the host's user database stays as it is)
    subprocess.call(certbot.inside(["userdel", gone]), stderr=subprocess.DEVNULL)
    subprocess.check_call(certbot.inside(["useradd", "--system", "--no-create-home", gone]))
    try:
        certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d",
                     "gone.example.org", "--cert-name", "gone", "--wwu-acl-user", gone)
    finally:
        subprocess.check_call(certbot.inside(["userdel", gone]))
    before = orders(certbot.pebble)
    result = certbot.renew("--force-renewal", check=False)
    assert result.code == 1, result
    assert "User 'wwu-test-gone' does not exist on this host" in result.output
    assert orders(certbot.pebble) == before
    assert "installer = wwu-acl" in certbot.read_renewal_conf("gone")


def test_install_recovery_command_uses_the_stored_settings(certbot):
    """certbot suggests 'certbot install --cert-name N' after a failed
    install; main refused it with "Nobody to grant access to"."""
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", "rec.example.org",
                 "--cert-name", "rec", "--wwu-acl-user", SERVICE_USER,
                 "--wwu-acl-action", "none")
    subprocess.check_call(["setfacl", "-b", certbot.archive("rec", "privkey", 1)])
    assert not read_as(SERVICE_USER, certbot.live("rec"))
    result = certbot("install", "--cert-name", "rec", "-i", "wwu-acl", check=False)
    assert result.code == 0, result
    assert read_as(SERVICE_USER, certbot.live("rec"))
    # the one summary line after the deployment
    assert "rec: user {} can read version 1".format(SERVICE_USER) in result.output


def test_install_option_adds_to_the_stored_settings(certbot):
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", "add.example.org",
                 "--cert-name", "add", "--wwu-acl-user", SERVICE_USER,
                 "--wwu-acl-action", "none")
    result = certbot("install", "--cert-name", "add", "-i", "wwu-acl",
                     "--wwu-acl-unit", "web", check=False)
    assert result.code == 0, result
    conf = certbot.read_renewal_conf("add")
    assert "wwu_acl_user = {}".format(SERVICE_USER) in conf
    assert "wwu_acl_unit = web.service" in conf
    assert read_as(SERVICE_USER, certbot.live("add"))


def test_failed_unit_is_not_called_a_failed_restore(certbot):
    certbot.systemctl.fail("web.service")
    result = certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d",
                          "fail.example.org", "--cert-name", "fail", "--wwu-acl-user",
                          SERVICE_USER, "--wwu-acl-unit", "web", check=False)
    assert result.code != 0, result
    assert "'systemctl restart web.service' failed" in result.output
    assert "failed to restore your config" not in result.output
    assert len([a for a in certbot.systemctl.actions() if "restart" in a]) == 1, \
        certbot.systemctl.actions()
