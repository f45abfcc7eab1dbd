"""certbot-wwu deploy (also as certbot's deploy hook) and attach."""
import os
import subprocess
import sys

import pytest

from tests.e2e.snapshot import snapshot
from tests.support.host import OTHER_USER, SERVICE_USER, read_as

pytestmark = pytest.mark.e2e
COMMAND = os.path.join(os.path.dirname(sys.executable), "certbot-wwu")


def wwu(certbot, *args, check=True):
    proc = subprocess.Popen(certbot.inside([COMMAND] + list(args) +
                                           ["--config-dir", certbot.config_dir]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=certbot.env)
    out, err = proc.communicate(timeout=120)
    if check:
        assert proc.returncode == 0, (out, err)
    return proc.returncode, out, err


def test_deploy_hook_grants_and_restarts_on_obtain_and_renew(certbot):
    hook = "{} deploy --user {} --unit web --config-dir {}".format(
        COMMAND, SERVICE_USER, certbot.config_dir)
    certbot.acme("certonly", "-a", "standalone", "-d", "h.example.org", "--cert-name", "h",
                 "--deploy-hook", hook)
    assert read_as(SERVICE_USER, certbot.live("h"))
    assert not read_as(OTHER_USER, certbot.live("h"))
    assert certbot.systemctl.actions() == ["restart web.service"]
    certbot.systemctl.clear()
    certbot.renew("--force-renewal")
    assert os.path.realpath(certbot.live("h")).endswith("privkey2.pem")
    assert read_as(SERVICE_USER, certbot.live("h"))
    assert not read_as(SERVICE_USER, certbot.archive("h", "privkey", 1))
    assert certbot.systemctl.actions() == ["restart web.service"]


def test_attach_then_renew_deploys_with_the_stored_settings(certbot):
    certbot.acme("certonly", "-a", "standalone", "-d", "a.example.org", "--cert-name", "a")
    conf = certbot.renewal_conf("a")
    before = open(conf).read()
    code, out, _ = wwu(certbot, "attach", "--cert-name", "a", "--user", SERVICE_USER,
                       "--unit", "web")
    assert "attached wwu-acl" in out
    after = open(conf).read()
    assert open(conf + ".certbot-wwu.bak").read() == before
    assert [l for l in after.splitlines() if not l.startswith(("installer", "wwu_acl_"))] == \
        [l for l in before.splitlines() if not l.startswith("installer")]
    assert wwu(certbot, "attach", "--cert-name", "a", "--user", SERVICE_USER,
               "--unit", "web")[1].startswith("nothing to change")
    certbot.renew()
    assert read_as(SERVICE_USER, certbot.live("a"))
    assert certbot.systemctl.actions() == ["restart web.service"]
    certbot.systemctl.clear()
    certbot.renew("--force-renewal")
    assert read_as(SERVICE_USER, certbot.live("a"))
    assert certbot.systemctl.actions() == ["restart web.service"]
    wwu(certbot, "attach", "--cert-name", "a", "--detach")
    assert "wwu_acl_" not in open(conf).read() and "installer = wwu-acl" not in open(conf).read()


def test_attach_validates_before_writing(certbot):
    certbot.acme("certonly", "-a", "standalone", "-d", "v.example.org", "--cert-name", "v")
    before = snapshot(certbot.config_dir)
    code, out, err = wwu(certbot, "attach", "--cert-name", "v", "--user", "no-such-user",
                         check=False)
    # the option's type refuses it while parsing: a usage error (exit 2)
    assert code == 2 and "argument --user: User 'no-such-user' does not exist" in err
    assert "Traceback" not in err
    assert snapshot(certbot.config_dir) == before


def test_deploy_without_options_uses_the_stored_settings_and_dry_run_changes_nothing(certbot):
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", "s.example.org",
                 "--cert-name", "s", "--wwu-acl-user", SERVICE_USER, "--wwu-acl-unit", "web")
    subprocess.check_call(["setfacl", "-b", os.path.realpath(certbot.live("s"))])
    before = snapshot(certbot.config_dir)
    certbot.systemctl.clear()
    code, out, _ = wwu(certbot, "deploy", "--cert-name", "s", "--dry-run")
    assert "would grant" in out and "would run systemctl restart web.service" in out
    assert snapshot(certbot.config_dir) == before and certbot.systemctl.actions() == []
    wwu(certbot, "deploy", "--cert-name", "s")
    assert read_as(SERVICE_USER, certbot.live("s"))
    assert certbot.systemctl.actions() == ["restart web.service"]
