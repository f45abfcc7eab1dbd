"""(d) ssh trusts only what certbot-wwu configured, and what a peer sends is
shown printable.

The hostile ssh_config is bind-mounted over /etc/ssh/ssh_config in a private
mount namespace of the one command under test (``unshare --mount``): nothing
else on the host ever sees it, and nothing needs restoring when a test fails.
"""
import os
import subprocess
import tempfile

import pytest

from tests.cluster.conftest import wwu
from tests.cluster.test_push import NAME, obtain, version

SSH_CONFIG = "/etc/ssh/ssh_config"
ESCAPES = ("\x1b", "\x07", "\x9b")

pytestmark = pytest.mark.skipif(not os.path.isfile(SSH_CONFIG),
                                reason="needs {} (openssh-client)".format(SSH_CONFIG))


def under_ssh_config(net, text, *argv, env=None):
    """``argv`` on the origin while /etc/ssh/ssh_config says ``text``."""
    scratch = tempfile.mkdtemp(dir=net.base)
    path = os.path.join(scratch, "ssh_config")
    with open(path, "w") as f:
        f.write(text)
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
         'mount --bind "$0" {} && exec "$@"'.format(SSH_CONFIG), path] + list(argv),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        env=env or dict(os.environ, **net.env()), timeout=300)


def test_ssh_config_cannot_widen_host_key_trust_or_run_commands(net, peers):
    """The system's ssh_config would accept peer-b's key (KnownHostsCommand)
    and run a command after each login (LocalCommand): certbot-wwu's ssh
    reads none of it."""
    a, b = peers
    marker = os.path.join(net.base, "local-command-ran")
    extra = os.path.join(net.base, "extra_known_hosts")
    with open(extra, "w") as f:
        f.write(b.host_key_line())
    hostile = ("Host *\n"
               "    KnownHostsCommand /bin/cat {}\n"
               "    PermitLocalCommand yes\n"
               "    LocalCommand /usr/bin/touch {}\n".format(extra, marker))
    # ssh on its own does read it (else this test would show nothing)
    seen = under_ssh_config(net, hostile, "ssh", "-G", b.address).stdout
    assert "knownhostscommand /bin/cat {}".format(extra) in seen
    assert "permitlocalcommand yes" in seen
    with open(net.known_hosts) as f:
        known = f.read()
    try:
        with open(net.known_hosts, "w") as f:
            f.write(a.host_key_line())  # peer-b's key is not in the product's file
        proc = under_ssh_config(net, hostile, net.command, "cluster", "check")
    finally:
        with open(net.known_hosts, "w") as f:
            f.write(known)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("peer-a: reachable as root on port 22; "), proc
    assert lines[1] == ("peer-b: FAILED: the host key of {} is not in {} or has changed; "
                        "compare its fingerprint and add it (ssh-keyscan -p 22 {})".format(
                            b.address, net.known_hosts, b.address)), proc
    assert proc.returncode == 1
    assert not os.path.exists(marker)


def test_ssh_config_cannot_redirect_a_push(net, peers, origin):
    """A ProxyCommand (and a HostKeyAlias) in the system's ssh_config: the
    push -- ssh for the probe and the deployment, rsync's ssh for the copy --
    neither runs the command nor looks up another host's key."""
    obtain(origin)
    marker = os.path.join(net.base, "proxy-command-ran")
    hostile = ("Host *\n"
               "    HostKeyAlias not-the-peer\n"
               "    ProxyCommand /bin/sh -c 'touch {}; exit 1'\n".format(marker))
    seen = under_ssh_config(net, hostile, "ssh", "-G", peers[0].address).stdout
    assert "proxycommand /bin/sh -c" in seen
    proc = under_ssh_config(net, hostile, net.command, "cluster", "push", "--cert-name",
                            NAME, "--force", "--config-dir", origin.config_dir,
                            env=origin.env)
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    for peer, line in zip(peers, lines):
        assert line.startswith("{}: sent version 1 and deployed it (".format(
            peer.name)), proc
        assert version(peer.letsencrypt) == 1
    assert not os.path.exists(marker)


FAKE_REMOTE = """#!/bin/sh
# certbot-wwu as a hostile peer's would answer: terminal escapes everywhere
printf '\\033[2J\\033]0;owned\\007certbot-wwu 9.9\\302\\233\\n'
if [ "$1" = deploy ]; then
    printf 'deployed \\033[31mred\\033[0m\\n'
    printf 'certbot-wwu: \\033[2Jfailed\\033[5m for good\\n' >&2
    exit 1
fi
"""


def test_a_peers_escape_sequences_arrive_printable(net, peers, origin):
    obtain(origin)
    fake = os.path.join(net.base, "fake-certbot-wwu")
    with open(fake, "w") as f:
        f.write(FAKE_REMOTE)
    os.chmod(fake, 0o755)
    conf = os.path.join(net.presets_dir, "cluster.conf")
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("remote_command = " + net.command, "remote_command = " + fake))

    check = wwu(origin, "cluster", "check")
    push = wwu(origin, "cluster", "push", "--cert-name", NAME, "--force",
               "--config-dir", origin.config_dir, check=False)
    for text in (check.stdout, check.stderr, push.stdout, push.stderr):
        for raw in ESCAPES:
            assert raw not in text
    for peer, line in zip(peers, check.stdout.splitlines()):
        assert line.startswith("{}: reachable as root on port 22; \\x1b[2J\\x1b]0;owned"
                               "\\x07certbot-wwu 9.9\\x9b; rsync".format(peer.name))
    assert push.returncode == 1
    for peer, line in zip(peers, push.stdout.splitlines()):
        assert line == ("{}: FAILED: sent version 1, but deploying failed (exit 1): "
                        "\\x1b[2Jfailed\\x1b[5m for good".format(peer.name))
    assert push.stderr.startswith("certbot-wwu: Pushing web failed for 2 of 2 peers: "
                                  "peer-a (sent version 1, but deploying failed (exit "
                                  "1): \\x1b[2Jfailed\\x1b[5m for good)")
