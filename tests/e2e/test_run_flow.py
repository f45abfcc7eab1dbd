"""certbot run / install / certonly -i with the wwu-acl installer."""
import os

import pytest

from tests.support.host import (OTHER_USER, READER_GROUP, READER_MEMBER,
                                SERVICE_USER, read_as)
from tests.e2e.snapshot import snapshot
from tests.support.certbot import certbot_version

pytestmark = pytest.mark.e2e


def deploy_lines(certbot):
    with open(os.path.join(certbot.logs_dir, "letsencrypt.log")) as f:
        # the deployment's own log line, not the summary certbot shows
        return [line for line in f if "can read version" in line
                and "ACLs changed" in line]


def test_run_grants_the_user_and_restarts_the_unit(certbot):
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", "a.example.org",
                 "--cert-name", "a", "--wwu-acl-user", SERVICE_USER,
                 "--wwu-acl-unit", "web")
    assert read_as(SERVICE_USER, certbot.live("a"))
    assert not read_as(OTHER_USER, certbot.live("a"))
    assert certbot.systemctl.actions() == ["restart web.service"]
    conf = certbot.read_renewal_conf("a")
    assert "installer = wwu-acl" in conf
    assert "wwu_acl_user = {}".format(SERVICE_USER) in conf


def test_run_with_several_names_deploys_once(certbot):
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl",
                 "-d", "a.example.org", "-d", "b.example.org", "-d", "c.example.org",
                 "--cert-name", "abc", "--wwu-acl-user", SERVICE_USER,
                 "--wwu-acl-unit", "web", "--wwu-acl-action", "reload")
    assert len(deploy_lines(certbot)) == 1
    assert certbot.systemctl.actions() == ["reload web.service"]
    assert read_as(SERVICE_USER, certbot.live("abc"))


def test_group_grant_reaches_members_only(certbot):
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", "g.example.org",
                 "--cert-name", "g", "--wwu-acl-group", READER_GROUP,
                 "--wwu-acl-action", "none")
    assert read_as(READER_MEMBER, certbot.live("g"))
    assert not read_as(OTHER_USER, certbot.live("g"))
    assert not read_as(SERVICE_USER, certbot.live("g"))
    assert certbot.systemctl.actions() == []


def test_install_grants_and_records_the_installer_for_renew(certbot):
    certbot.acme("certonly", "-a", "standalone", "-d", "i.example.org",
                 "--cert-name", "i")
    before = certbot.read_renewal_conf("i").splitlines()
    assert not read_as(SERVICE_USER, certbot.live("i"))

    certbot("install", "--cert-name", "i", "-i", "wwu-acl",
            "--wwu-acl-user", SERVICE_USER, "--wwu-acl-unit", "web")
    assert read_as(SERVICE_USER, certbot.live("i"))
    assert certbot.systemctl.actions() == ["restart web.service"]
    after = certbot.read_renewal_conf("i").splitlines()
    ours = [l for l in after if l.startswith(("installer", "wwu_acl_"))]
    assert sorted(ours) == sorted([
        "installer = wwu-acl", "wwu_acl_user = " + SERVICE_USER,
        "wwu_acl_unit = web.service", "wwu_acl_action = restart"])
    assert [l for l in after if l not in ours] == [
        l for l in before if not l.startswith("installer")]

    certbot.systemctl.clear()
    certbot.renew("--force-renewal")
    assert read_as(SERVICE_USER, certbot.live("i"))
    assert os.path.realpath(certbot.live("i")).endswith("privkey2.pem")
    assert not read_as(SERVICE_USER, certbot.archive("i", "privkey", 1))
    assert certbot.systemctl.actions() == ["restart web.service"]


def test_certonly_with_installer_deploys(certbot):
    """certbot >= 1.27 calls restart() after certonly; older ones nothing,
    and the next (not-due) renew deploys through generic_updates."""
    certbot.acme("certonly", "-a", "standalone", "-i", "wwu-acl",
                 "-d", "co.example.org", "--wwu-acl-user", SERVICE_USER,
                 "--wwu-acl-unit", "web")
    if certbot_version() < (1, 27):
        assert not read_as(SERVICE_USER, certbot.live("co.example.org"))
        certbot.renew()
    assert read_as(SERVICE_USER, certbot.live("co.example.org"))
    assert not read_as(OTHER_USER, certbot.live("co.example.org"))
    assert certbot.systemctl.actions() == ["restart web.service"]
    assert "installer = wwu-acl" in certbot.read_renewal_conf("co.example.org")


def test_certonly_dry_run_changes_nothing(certbot):
    certbot.acme("certonly", "-a", "standalone", "-d", "d.example.org",
                 "--cert-name", "d")
    before = snapshot(certbot.config_dir)
    certbot.acme("certonly", "--dry-run", "-a", "standalone", "-i", "wwu-acl",
                 "-d", "d.example.org", "--cert-name", "d",
                 "--wwu-acl-user", SERVICE_USER, "--wwu-acl-unit", "web")
    assert snapshot(certbot.config_dir) == before
    assert certbot.systemctl.actions() == []
    assert not read_as(SERVICE_USER, certbot.live("d"))


def test_plugin_loads_without_warnings(certbot):
    result = certbot("plugins", "--text")
    assert "* wwu-acl" in result.out
    assert "certbot-wwu" in result.out
    noise = [line for line in result.err.splitlines()
             if "warn" in line.lower() and "Python 3.6 is no longer supported" not in line
             and "CryptographyDeprecationWarning" not in line]
    assert noise == [], result
