"""certbot renew: due lineages are redeployed, not-due ones heal."""
import os
import subprocess

import pytest

from tests.e2e.snapshot import snapshot
from tests.support.host import (KEY_GROUP, KEY_GROUP_MEMBER, OTHER_USER,
                                SERVICE_USER, read_as)

pytestmark = pytest.mark.e2e


def let_key_group_traverse(certbot, name):
    """An admin's setup: the key's group may traverse, but not read the key."""
    for sub in ("live", "archive"):
        for path in (os.path.join(certbot.config_dir, sub),
                     os.path.join(certbot.config_dir, sub, name)):
            subprocess.check_call(["chgrp", KEY_GROUP, path])
            subprocess.check_call(["setfacl", "-m", "g::rx", path])
    subprocess.check_call(["chgrp", KEY_GROUP, certbot.archive(name, "privkey", 1)])


@pytest.fixture
def deployed(certbot):
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", "r.example.org",
                 "--cert-name", "r", "--wwu-acl-user", SERVICE_USER,
                 "--wwu-acl-unit", "web")
    certbot.systemctl.clear()
    return certbot


def test_due_renewal_moves_the_grant_to_the_new_key(deployed):
    deployed.renew("--force-renewal")
    assert os.path.realpath(deployed.live("r")).endswith("privkey2.pem")
    assert read_as(SERVICE_USER, deployed.live("r"))
    assert not read_as(OTHER_USER, deployed.live("r"))
    assert not read_as(SERVICE_USER, deployed.archive("r", "privkey", 1))
    assert deployed.systemctl.actions() == ["restart web.service"]


def test_owning_group_does_not_inherit_the_mask(deployed):
    """certbot copies the old key's group mode bits (the ACL mask) to the new key."""
    key1 = deployed.archive("r", "privkey", 1)
    let_key_group_traverse(deployed, "r")
    assert read_as(KEY_GROUP_MEMBER, deployed.live("r", "cert"))
    assert not read_as(KEY_GROUP_MEMBER, key1)
    deployed.renew("--force-renewal")
    key2 = deployed.archive("r", "privkey", 2)
    assert os.stat(key2).st_gid == os.stat(key1).st_gid
    assert not read_as(KEY_GROUP_MEMBER, deployed.live("r"))
    assert read_as(SERVICE_USER, deployed.live("r"))


def test_owning_group_is_repaired_even_when_deployment_fails(deployed):
    let_key_group_traverse(deployed, "r")
    conf = deployed.renewal_conf("r")
    text = deployed.read_renewal_conf("r").replace(
        "wwu_acl_user = " + SERVICE_USER, "wwu_acl_user = no-such-user")
    with open(conf, "w") as f:
        f.write(text)
    result = deployed.renew("--force-renewal", check=False)
    assert result.code != 0
    assert "User 'no-such-user' does not exist" in result.output
    assert not read_as(KEY_GROUP_MEMBER, deployed.live("r"))
    assert "installer = wwu-acl" in deployed.read_renewal_conf("r")


def test_not_due_renew_repairs_a_removed_acl_without_restarting(deployed):
    subprocess.check_call(["setfacl", "-b", os.path.realpath(deployed.live("r"))])
    assert not read_as(SERVICE_USER, deployed.live("r"))
    result = deployed.renew()
    assert "not yet due" in result.output.lower() or "not due" in result.output.lower()
    assert read_as(SERVICE_USER, deployed.live("r"))
    assert deployed.systemctl.actions() == []


def test_failed_unit_fails_renew_and_the_timer_finishes_the_job(deployed):
    deployed.systemctl.fail("web.service")
    result = deployed.renew("--force-renewal", check=False)
    assert result.code != 0
    assert "web.service" in result.output and "journalctl -u web.service" in result.output
    assert "Traceback" not in result.output
    assert "installer = wwu-acl" in deployed.read_renewal_conf("r")
    assert read_as(SERVICE_USER, deployed.live("r"))

    deployed.systemctl.heal("web.service")
    deployed.systemctl.clear()
    deployed.renew()
    assert deployed.systemctl.actions() == ["restart web.service"]
    deployed.systemctl.clear()
    deployed.renew()
    assert deployed.systemctl.actions() == []


def test_dead_unit_is_reported_with_its_state(deployed):
    """Active at once (Type=simple), dead 0.5 s later: the settle window
    sees it, with the unit's own journal lines."""
    deployed.systemctl.fail("web.service", how="dead")
    result = deployed.renew("--force-renewal", check=False)
    assert result.code != 0
    assert ("web.service did not stay up after 'systemctl restart': it was active, "
            "but within 2 s it is failed") in result.output, result
    assert "cannot load the new key, exiting" in result.output, result
    assert deployed.systemctl.state("web.service") == "failed"


def test_renew_dry_run_changes_nothing(deployed):
    before = snapshot(deployed.config_dir)
    deployed.renew("--dry-run", "--server", deployed.pebble.url)
    assert snapshot(deployed.config_dir) == before
    assert deployed.systemctl.actions() == []


def test_renew_after_certonly_deploys_via_the_timer(certbot):
    """A lineage whose installer deployment was missed heals on the next renew."""
    certbot.acme("certonly", "-a", "standalone", "-d", "t.example.org",
                 "--cert-name", "t")
    conf = certbot.renewal_conf("t")
    with open(conf) as f:
        text = f.read()
    text = text.replace("[renewalparams]\n", "[renewalparams]\ninstaller = wwu-acl\n"
                        "wwu_acl_user = {}\nwwu_acl_unit = web\n".format(SERVICE_USER))
    with open(conf, "w") as f:
        f.write(text)
    certbot.renew()
    assert read_as(SERVICE_USER, certbot.live("t"))
    assert certbot.systemctl.actions() == ["restart web.service"]
