"""certbot-wwu status after real certbot runs against Pebble, as a separate
process with the environment certbot had (recording systemctl, Pebble's CA)."""
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

#: the status subcommand on a parser built as cli.build_parser builds it,
#: errors handled as cli.main handles them
SCRIPT = """\
import argparse, sys
from certbot_wwu import status
from certbot_wwu.errors import WwuError
parser = argparse.ArgumentParser(prog="certbot-wwu")
subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
subparsers.required = True
status.add_status(subparsers)
args = parser.parse_args(sys.argv[1:])
try:
    sys.exit(args.func(args))
except WwuError as err:
    print("certbot-wwu: {}".format(err), file=sys.stderr)
    sys.exit(1)
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
        calls = len(self.certbot.systemctl.calls())
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True,
                                env=env)
        out, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        assert snapshot(self.certbot.config_dir) == before
        assert [c for c in self.certbot.systemctl.calls()[calls:]
                if c.split()[0] not in ("is-active", "is-enabled")] == []
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


def test_unknown_timer_state_is_said_not_flagged(certbot, status):
    """On / the timer is asked with systemctl is-enabled, which the recording
    stand-in does not support: 'unknown', with the reason, and exit 0."""
    obtain(certbot, "s")
    code, out, _ = status("--distro", "debian", root="/")
    assert code == 0, out
    assert "INFO       whether certbot.timer is enabled is unknown" in out
    assert "is-enabled certbot.timer" in certbot.systemctl.calls()


def test_unknown_cert_name(certbot, status):
    code, out, err = status("--cert-name", "nope")
    assert (code, out) == (1, "")
    assert err.startswith("certbot-wwu: There is no certificate named 'nope'")
