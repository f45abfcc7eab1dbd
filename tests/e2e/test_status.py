"""certbot-wwu status after real certbot runs against Pebble, as a separate
process inside the test's systemd with the environment certbot had (Pebble's
CA): unit and timer states are systemd's own."""
import json
import os
import subprocess
import sys

import pytest

from tests.e2e.snapshot import snapshot
from tests.support.host import OTHER_USER, SERVICE_USER, read_as
from tests.test_status import timer_root

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: the certbot-wwu command's own entry point (cli.main: its parser, its
#: error handling and exit codes)
SCRIPT = """\
import sys
from certbot_wwu.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Status(object):
    """certbot-wwu status for one certbot fixture; checks it changed nothing."""

    def __init__(self, certbot, root):
        self.certbot = certbot
        self.root = root

    def __call__(self, *args, **kwargs):
        root = kwargs.pop("root", self.root)
        argv = [sys.executable, "-W", "ignore", "-c", SCRIPT, "status",
                "--config-dir", self.certbot.config_dir,
                "--work-dir", self.certbot.work_dir,
                "--logs-dir", self.certbot.logs_dir, "--root", root] + list(args)
        env = dict(self.certbot.env, PYTHONPATH=REPO)
        before = snapshot(self.certbot.config_dir)
        self.certbot.systemctl.clear()
        proc = subprocess.Popen(self.certbot.inside(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True,
                                env=env)
        out, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        assert snapshot(self.certbot.config_dir) == before
        assert self.certbot.systemctl.actions() == []  # status restarts nothing
        return proc.returncode, out, err

    def json(self, *args, **kwargs):
        code, out, err = self("--json", *args, **kwargs)
        document = json.loads(out)
        assert document["ok"] is (code == 0), err
        return code, document


@pytest.fixture
def status(certbot, scratch):
    return Status(certbot, timer_root(os.path.join(scratch, "system")))


def obtain(certbot, name, *options):
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", name + ".example.org",
                 "--cert-name", name, "--wwu-acl-user", SERVICE_USER,
                 "--wwu-acl-unit", "web", *options)


def test_status_after_run_then_after_setfacl_b(certbot, status):
    obtain(certbot, "s")
    code, out, err = status()
    assert code == 0, out + err
    assert "s (s.example.org)" in out
    assert "OK         user {} can read the current certificate and key".format(
        SERVICE_USER) in out
    assert "OK         web.service is active" in out
    assert out.rstrip().endswith("All is well.")

    key = os.path.realpath(certbot.live("s"))
    subprocess.check_call(["setfacl", "-b", key])
    assert not read_as(SERVICE_USER, certbot.live("s"))
    code, out, _ = status()
    assert code == 1
    assert "ATTENTION  user {} cannot read {}".format(
        SERVICE_USER, certbot.live("s")) in out
    assert "ATTENTION  the deployment drifted: the renewal timer's check would " \
           "redeploy" in out
    code, doc = status.json()
    assert doc["lineages"][0]["principals"][0]["can_read"] is False

    # what status announced is what the next timer run does
    certbot.renew()
    assert read_as(SERVICE_USER, certbot.live("s"))
    assert status()[0] == 0


def test_status_json_after_renewal(certbot, status):
    obtain(certbot, "s")
    certbot.renew("--force-renewal")
    code, doc = status.json()
    assert code == 0, doc["attention"]
    (lineage,) = doc["lineages"]
    assert lineage["name"] == "s" and lineage["names"] == ["s.example.org"]
    assert lineage["version"] == 2
    assert lineage["server"] == certbot.pebble.url
    assert lineage["installer_attached"] is True
    assert lineage["settings"]["user"] == SERVICE_USER
    assert lineage["principals"] == [{"kind": "user", "name": SERVICE_USER,
                                      "can_read": True, "unreadable": []}]
    assert lineage["outsider_refused"] is True
    assert lineage["unwanted_access"] == [] and lineage["stray_defaults"] == []
    assert not read_as(OTHER_USER, certbot.live("s"))
    assert lineage["needs_deploy"] is False and lineage["needs_action"] is False
    assert lineage["units"] == [{"unit": "web.service", "state": "active",
                                 "active": True}]
    assert doc["timer"]["enabled"] is True and doc["ca"] is None


def test_recipe_leftovers_and_stray_readers_are_named(certbot, status):
    """Issue 18, defect 4: the recipe's default entry and a reader nobody
    configured; the outsider probe alone saw neither."""
    obtain(certbot, "s")
    archive = os.path.join(certbot.config_dir, "archive", "s")
    key = os.path.realpath(certbot.live("s"))
    subprocess.check_call(["setfacl", "-m", "d:u:{}:rX".format(OTHER_USER), archive])
    subprocess.check_call(["setfacl", "-m", "u:{}:r".format(OTHER_USER), key])
    code, out, _ = status()
    assert code == 1, out
    assert ("ATTENTION  user {} can read {} although it is not configured for this "
            "certificate".format(OTHER_USER, key)) in out
    assert ("ATTENTION  leftover default ACL entries on archive/s give every future "
            "key to user {}, not configured for this certificate; 'certbot-wwu "
            "deploy --cert-name s' removes them, or run 'setfacl -k {}'".format(
                OTHER_USER, archive)) in out
    code, doc = status.json()
    (lineage,) = doc["lineages"]
    assert lineage["unwanted_access"] == [{"path": key, "principal": "user " + OTHER_USER,
                                           "access": "read", "through": "named"}]
    assert lineage["stray_defaults"] == [{"directory": archive,
                                          "principal": "user " + OTHER_USER}]
    # the remedies the lines name
    subprocess.check_call(["setfacl", "-k", archive])
    subprocess.check_call(["setfacl", "-x", "u:{}".format(OTHER_USER), key])
    code, out, _ = status()
    assert code == 0, out


def test_lineage_without_installer(certbot, status):
    obtain(certbot, "s")
    certbot.acme("certonly", "-a", "standalone", "-d", "plain.example.org",
                 "--cert-name", "plain")
    code, out, _ = status()
    assert code == 0, out
    assert "INFO       installer not attached" in out
    code, doc = status.json()
    plain = next(s for s in doc["lineages"] if s["name"] == "plain")
    assert plain["installer_attached"] is False and plain["principals"] == []
    code, out, _ = status("--cert-name", "plain")
    assert code == 1
    assert "ATTENTION  installer not attached" in out
    assert "s (s.example.org)" not in out


def test_check_ca_against_pebble(certbot, status):
    obtain(certbot, "s")
    code, out, _ = status("--check-ca")
    assert code == 0, out
    assert "OK         {} reachable in ".format(certbot.pebble.url) in out
    assert "EAB required: yes" in out
    code, doc = status.json("--check-ca")
    assert doc["ca"] == [{"server": certbot.pebble.url, "reachable": True,
                          "latency_ms": doc["ca"][0]["latency_ms"],
                          "eab_required": True, "proxy": None, "no_proxy": None,
                          "error": None}]


@pytest.fixture
def certbot_timer(systemctl):
    """Debian's certbot.timer in the test's systemd, put back as it was."""
    instance = systemctl.instance
    was_enabled = instance.systemctl("is-enabled", "certbot.timer", check=False).code == 0
    was_active = instance.state("certbot.timer") == "active"
    yield instance
    instance.systemctl("enable" if was_enabled else "disable", "certbot.timer")
    instance.systemctl("start" if was_active else "stop", "certbot.timer")


def test_timer_state_on_root_is_systemds(certbot, status, certbot_timer):
    """On / the timer's state comes from the real systemctl: is-enabled,
    is-active and the next elapse."""
    obtain(certbot, "s")
    certbot_timer.systemctl("enable", "--now", "certbot.timer")
    code, out, _ = status("--distro", "debian", root="/")
    assert "OK         certbot.timer is enabled (systemctl is-enabled: enabled)" in out, out
    assert "OK         certbot.timer is active, next run " in out, out
    code, doc = status.json("--distro", "debian", root="/")
    assert doc["timer"]["active"] is True and doc["timer"]["next_elapse"], doc["timer"]

    certbot_timer.systemctl("stop", "certbot.timer")
    code, out, _ = status("--distro", "debian", root="/")
    assert code == 1, out
    assert ("ATTENTION  certbot.timer is enabled but inactive: it runs only after the "
            "next boot; start it with 'systemctl start certbot.timer'") in out, out

    certbot_timer.systemctl("disable", "certbot.timer")
    code, out, _ = status("--distro", "debian", root="/")
    assert "certbot.timer is not enabled (systemctl is-enabled: disabled)" in out, out


def test_unknown_cert_name(certbot, status):
    code, out, err = status("--cert-name", "nope")
    assert (code, out) == (1, "")
    assert err.startswith("certbot-wwu: There is no certificate nope in ")


def test_nagios_sees_a_service_that_kept_the_old_certificate(certbot, status):
    """Issue 14: a real TLS service (as the service user, reading the live
    files) that was not restarted after a renewal: CRITICAL, naming the
    version it serves; restarted, OK."""
    from tests.support.pebble import free_port
    from tests.support.realunits import TlsUnit
    from tests.test_monitoring import parse_plugin
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", "tls.example.org",
                 "--cert-name", "tls", "--wwu-acl-user", SERVICE_USER,
                 "--wwu-acl-action", "none")
    port = free_port()
    server = TlsUnit(certbot.systemctl, "tls.service", SERVICE_USER,
                        certbot.live("tls", "fullchain"), certbot.live("tls"), port)
    server.install()
    server.start()
    try:
        certbot("install", "--cert-name", "tls", "-i", "wwu-acl", "--wwu-acl-user",
                SERVICE_USER, "--wwu-acl-unit", "tls", "--wwu-acl-check",
                "127.0.0.1:{}".format(port), "--wwu-acl-timeout", "10")
        state, _, _, long_ = parse_plugin(*status("--nagios")[:2])
        assert state == "OK", long_
        assert "127.0.0.1:{} serves the current certificate (version 1)".format(
            port) in long_[0]
        result = certbot.renew("--force-renewal", "--wwu-acl-action", "none",
                               "--wwu-acl-timeout", "2", check=False)
        assert result.code != 0, result
        state, text, _, long_ = parse_plugin(*status("--nagios")[:2])
        assert state == "CRITICAL"
        assert ("[CRITICAL] tls: 127.0.0.1:{} serves version 1, not the current "
                "version 2: the service has not loaded the renewed certificate; "
                "reload it ('systemctl reload-or-restart tls.service')".format(port)
                in long_), long_
        server.stop()
        server.start()
        code, doc = status.json()
        assert doc["lineages"][0]["served"]["matches"] is True
        assert [i["severity"] for i in doc["lineages"][0]["items"]
                if i["item"] == "served"] == ["ok"]
    finally:
        server.stop()
