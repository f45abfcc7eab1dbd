"""What the manual recipe leaves behind, with real certbot renewals (issue 18,
defect 4): a default ACL entry on archive/NAME puts an inert ``user:X:r-x``
on every key certbot writes there. Deploying must never wake it, and every
deployment removes the default entries of principals not configured."""
import os
import pwd
import subprocess
import sys

import pytest

from certbot_wwu import grants
from tests.support.host import OTHER_USER, SERVICE_USER, getfacl, read_as

pytestmark = pytest.mark.e2e
COMMAND = os.path.join(os.path.dirname(sys.executable), "certbot-wwu")
#: certbot gives a new key the previous key's group bits, the old ACL mask: an
#: inherited entry works before any deployment runs, and only the deployment's
#: grants.remove_stray_defaults (its entries on the current key too) ends it


def uid(name):
    return pwd.getpwnam(name).pw_uid


def setfacl(*args):
    subprocess.check_call(("setfacl",) + args)


def lineage_dirs(certbot, name):
    return [os.path.join(certbot.config_dir, sub, name) for sub in ("live", "archive")]


def recipe(certbot, name, user):
    """The seed's setfacl commands for ``user``, on the directories: traverse
    on live/ and archive/, read on live/NAME and archive/NAME, and the default
    entry that every later file inherits."""
    setfacl("-m", "u:{}:rX".format(user), *[os.path.join(certbot.config_dir, sub)
                                             for sub in ("live", "archive")])
    setfacl("-m", "u:{}:rX".format(user), *lineage_dirs(certbot, name))
    setfacl("-m", "d:u:{}:rX".format(user), *lineage_dirs(certbot, name))


def defaults(path):
    return [line for line in getfacl(path).splitlines() if line.startswith("default:")]


def obtain(certbot, name, *options):
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", name + ".example.org",
                 "--cert-name", name, *options)


def test_renewal_under_a_leftover_default_does_not_give_the_key_away(certbot):
    obtain(certbot, "l", "--wwu-acl-user", SERVICE_USER)
    recipe(certbot, "l", OTHER_USER)
    assert not read_as(OTHER_USER, certbot.live("l"))
    certbot.renew("--force-renewal")
    key = certbot.archive("l", "privkey", 2)
    assert os.path.realpath(certbot.live("l")) == key
    assert read_as(SERVICE_USER, certbot.live("l"))
    assert not read_as(OTHER_USER, certbot.live("l"))
    assert ("u", uid(OTHER_USER)) not in grants.read_acl(key)
    assert "removed default ACL entries for user {} from live/l, archive/l and " \
        "their entries from archive/l/privkey2.pem".format(OTHER_USER) in open(
            os.path.join(certbot.logs_dir, "letsencrypt.log")).read()


def test_copy_only_renewal_under_a_leftover_default(certbot, scratch):
    """Copy-only deployments secure the key too; they must not widen it: the
    key certbot wrote has an inert ``user:OTHER:r-x`` under a mask ``---``."""
    dest = os.path.join(scratch, "srv", "tls")
    os.mkdir(os.path.dirname(dest))  # the parent must exist
    obtain(certbot, "c", "--wwu-acl-copy-to", dest, "--wwu-acl-copy-owner", SERVICE_USER)
    recipe(certbot, "c", OTHER_USER)
    certbot.renew("--force-renewal")
    key = certbot.archive("c", "privkey", 2)
    assert os.path.realpath(certbot.live("c")) == key
    entries = grants.read_acl(key)
    assert entries.get(("u", uid(OTHER_USER)), 0) & entries.get(("m", None), 0) == 0
    assert not read_as(OTHER_USER, certbot.live("c"))
    assert read_as(SERVICE_USER, os.path.join(dest, "privkey.pem"))
    assert not read_as(OTHER_USER, os.path.join(dest, "privkey.pem"))


def test_a_removed_user_loses_every_later_key(certbot):
    """The recipe was for OTHER_USER; the installer now serves SERVICE_USER
    alone: OTHER_USER reads no key certbot writes from now on."""
    obtain(certbot, "m", "--wwu-acl-user", SERVICE_USER)
    recipe(certbot, "m", OTHER_USER)
    for version in (2, 3):
        certbot.renew("--force-renewal")
        assert os.path.realpath(certbot.live("m")).endswith("privkey{}.pem".format(version))
        assert read_as(SERVICE_USER, certbot.live("m"))
        assert not read_as(OTHER_USER, certbot.live("m"))


def test_deploy_removes_the_leftover_and_says_so(certbot):
    obtain(certbot, "d", "--wwu-acl-user", SERVICE_USER)
    recipe(certbot, "d", OTHER_USER)
    setfacl("-m", "d:u:{}:rX".format(SERVICE_USER), *lineage_dirs(certbot, "d"))
    proc = subprocess.Popen(certbot.inside([COMMAND, "deploy", "--cert-name", "d",
                                            "--config-dir", certbot.config_dir]),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True,
                            env=certbot.env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert ("removed default ACL entries for user {} from live/d, archive/d: they "
            "would give every future key to principals not configured for this "
            "certificate".format(OTHER_USER)) in out.splitlines()
    for path in lineage_dirs(certbot, "d"):
        found = defaults(path)
        assert not [line for line in found
                    if ":{}:".format(uid(OTHER_USER)) in line], found
        assert any(line.startswith("default:user:{}:".format(uid(SERVICE_USER)))
                   for line in found)
    # the next key carries no entry for the user nobody configured
    certbot.renew("--force-renewal")
    key = certbot.archive("d", "privkey", 2)
    assert ("u", uid(OTHER_USER)) not in grants.read_acl(key)
    assert not read_as(OTHER_USER, certbot.live("d"))
