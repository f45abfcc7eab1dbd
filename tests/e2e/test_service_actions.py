"""Unit actions: once per unit per run, waiting for the unit, proving the new
certificate is served (a real TLS server as the service user, a real unit
with User= under the test's systemd)."""
import os
import ssl

import pytest

from certbot_wwu.tlscheck import fingerprint
from tests.support.host import SERVICE_USER, read_as
from tests.support.pebble import free_port
from tests.support.realunits import TlsUnit

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


@pytest.fixture
def tls_site(certbot):
    """A lineage whose unit 'tls' is a real TLS server run as the service user,
    reading the live files itself; the installer is attached with a check."""
    obtain(certbot, "tls", "--wwu-acl-action", "none")
    port = free_port()
    server = TlsUnit(certbot.systemctl, "tls.service", SERVICE_USER,
                        certbot.live("tls", "fullchain"), certbot.live("tls"), port)
    server.install()
    server.start()
    certbot("install", "--cert-name", "tls", "-i", "wwu-acl", "--wwu-acl-user", SERVICE_USER,
            "--wwu-acl-unit", "tls", "--wwu-acl-action", "restart",
            "--wwu-acl-check", "127.0.0.1:{}".format(port), "--wwu-acl-timeout", "10")
    yield certbot, server
    server.stop()


def live_fingerprint(certbot, name):
    with open(certbot.live(name, "cert")) as f:
        return fingerprint(ssl.PEM_cert_to_DER_cert(f.read()))


def test_renew_restarts_the_service_and_the_check_sees_the_new_certificate(tls_site):
    certbot, server = tls_site
    old_pid = server.pid()
    old = live_fingerprint(certbot, "tls")
    assert server.served_fingerprint("tls.example.org") == old
    certbot.systemctl.clear()
    result = certbot.renew("--force-renewal")
    new = live_fingerprint(certbot, "tls")
    assert new != old
    assert server.served_fingerprint("tls.example.org") == new
    assert server.pid() != old_pid
    assert certbot.systemctl.actions() == ["restart tls.service"]
    assert "serves the new certificate of tls" in open(
        os.path.join(certbot.logs_dir, "letsencrypt.log")).read(), result


def test_reload_is_enough_for_a_service_that_reloads(tls_site):
    certbot, server = tls_site
    certbot.systemctl.can_reload("tls.service")
    old_pid = server.pid()
    certbot.renew("--force-renewal", "--wwu-acl-action", "auto")
    assert server.served_fingerprint("tls.example.org") == live_fingerprint(certbot, "tls")
    assert server.pid() == old_pid
    assert certbot.systemctl.actions()[-1] == "reload tls.service"


def test_a_service_that_keeps_the_old_certificate_fails_the_check(tls_site):
    certbot, server = tls_site
    old = server.served_fingerprint("tls.example.org")
    result = certbot.renew("--force-renewal", "--wwu-acl-action", "none",
                           "--wwu-acl-timeout", "2", check=False)
    assert result.code != 0, result
    assert "still serves another certificate" in result.output
    assert "has not loaded the new certificate" in result.output
    assert server.served_fingerprint("tls.example.org") == old


def test_a_service_that_cannot_start_fails_the_run_with_its_name(tls_site):
    certbot, server = tls_site
    certbot.systemctl.fail("tls.service")
    result = certbot.renew("--force-renewal", check=False)
    assert result.code != 0, result
    assert "'systemctl restart tls.service' failed" in result.output
    assert "journalctl -u tls.service" in result.output
