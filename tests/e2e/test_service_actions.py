"""Unit actions: once per unit per run, waiting for the unit, proving the new
certificate is served (a real TLS server as the service user)."""
import os

import pytest

from tests.support.certbot import certbot_version
from tests.support.host import SERVICE_USER, read_as

pytestmark = pytest.mark.e2e


def obtain(certbot, name, *options):
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", name + ".example.org",
                 "--cert-name", name, "--wwu-acl-user", SERVICE_USER, *options)


def test_three_lineages_for_one_unit_cause_one_action(certbot):
    for name in ("s1", "s2", "s3"):
        obtain(certbot, name, "--wwu-acl-unit", "web", "--wwu-acl-action", "reload")
    obtain(certbot, "s4", "--wwu-acl-unit", "db")
    certbot.systemctl.clear()
    certbot.renew("--force-renewal")
    assert sorted(certbot.systemctl.actions()) == ["reload web.service", "restart db.service"]
    for name in ("s1", "s2", "s3", "s4"):
        assert os.path.realpath(certbot.live(name)).endswith("privkey2.pem")
        assert read_as(SERVICE_USER, certbot.live(name))
    certbot.systemctl.clear()
    certbot.renew()
    assert certbot.systemctl.actions() == []


def test_a_unit_named_by_a_due_and_a_not_due_lineage_acts_once(certbot):
    """Only s1 is renewed; s2 (later in the run, not due) names the same unit:
    the action happens at s2's turn, once, and nothing is left pending."""
    obtain(certbot, "s1", "--wwu-acl-unit", "web")
    obtain(certbot, "s2", "--wwu-acl-unit", "web")
    certbot.systemctl.clear()
    certbot.renew("--force-renewal", "--cert-name", "s1")
    assert certbot.systemctl.actions() == ["restart web.service"]
    certbot.systemctl.clear()
    result = certbot.renew()
    assert certbot.systemctl.actions() == [], result


def test_failure_of_the_shared_action_fails_the_run(certbot):
    for name in ("s1", "s2"):
        obtain(certbot, name, "--wwu-acl-unit", "web")
    certbot.systemctl.clear()
    certbot.systemctl.fail("web.service")
    result = certbot.renew("--force-renewal", check=False)
    assert result.code != 0, result
    assert "'systemctl restart web.service' failed" in result.output
    assert "journalctl -u web.service" in result.output
    assert certbot.systemctl.actions() == ["restart web.service"]
    certbot.systemctl.heal("web.service")
    certbot.systemctl.clear()
    certbot.renew()
    assert certbot.systemctl.actions() == ["restart web.service"]
