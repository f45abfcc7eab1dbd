"""(c) Faults: a peer that is down does not stop the others, every peer's
outcome is one line, the run fails, and the next run catches the peer up."""
import os
import subprocess

from tests.cluster.conftest import SERVICE_USER, wwu
from tests.cluster.test_push import NAME, PEER_KEY, obtain, read, version


def push(origin, *extra, **kwargs):
    return wwu(origin, "cluster", "push", "--cert-name", NAME,
               "--config-dir", origin.config_dir, *extra, **kwargs)


def test_a_peer_that_is_down_is_caught_up_by_the_next_run(net, peers, origin):
    a, b = peers
    obtain(origin)
    b.down()  # its bridge port: connects time out (connect_timeout = 2)
    renewed = origin.renew("--force-renewal", check=False)
    assert renewed.code != 0
    assert "peer-b (cannot connect" in renewed.output, renewed
    assert version(origin.config_dir) == 2
    assert version(a.letsencrypt) == 2 and a.read_as(SERVICE_USER, PEER_KEY)
    assert read(a.path("live", NAME, "privkey.pem")) == read(origin.live(NAME))
    assert version(b.letsencrypt) == 1
    a_actions = len(a.systemctl.actions())

    # by hand: one line per peer, one sentence naming the failed one
    b.stop_sshd()
    b.up()
    proc = push(origin, check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == "peer-a: current (version 2)"
    assert lines[1].startswith("peer-b: FAILED: cannot connect: ")
    assert "Connection refused" in lines[1]
    assert len(lines) == 2
    assert proc.stderr.startswith("certbot-wwu: Pushing web failed for 1 of 2 peers: "
                                  "peer-b (cannot connect: ")
    assert proc.stderr.endswith("; the others are done, and the next run tries "
                                "again.\n") and proc.stderr.count("\n") == 1

    # the renewal timer's next run (not due: generic_updates) catches it up
    b.start_sshd()
    timer = origin.renew()
    assert timer.code == 0
    assert version(b.letsencrypt) == 2
    assert read(b.path("live", NAME, "privkey.pem")) == read(origin.live(NAME))
    assert b.read_as(SERVICE_USER, PEER_KEY)
    assert b.systemctl.actions()[-1] == "restart web.service"
    # ... and leaves the current peer alone
    assert len(a.systemctl.actions()) == a_actions
    assert push(origin).stdout == ("peer-a: current (version 2)\n"
                                   "peer-b: current (version 2)\n")


def test_a_failed_remote_deploy_is_retried(net, peers, origin):
    a, b = peers
    obtain(origin)
    b.systemctl.fail("web.service")
    renewed = origin.renew("--force-renewal", check=False)
    assert renewed.code != 0
    assert "peer-b (updated from version 1 to 2, but deploying failed" in renewed.output
    assert version(b.letsencrypt) == 2
    b.systemctl.heal("web.service")
    b.systemctl.clear()
    proc = push(origin)
    assert proc.stdout.splitlines()[0] == "peer-a: current (version 2)"
    assert proc.stdout.splitlines()[1].startswith("peer-b: sent version 2 and deployed it (")
    assert b.systemctl.actions() == ["restart web.service"]


def test_a_peers_own_certificate_is_not_overwritten(net, peers, origin):
    a, b = peers
    kid, hmac = net.pebble.new_eab()
    b.certbot("register", "--server", net.pebble.url, "--eab-kid", kid,
              "--eab-hmac-key", hmac, "--register-unsafely-without-email",
              "--agree-tos")
    b.certbot("certonly", "--server", net.pebble.url, "-a", "standalone",
              "--http-01-port", "8080", "-d", "b.example.org", "--cert-name", NAME)
    own = read(b.path("live", NAME, "privkey.pem"))
    renewed = origin.acme("run", "-a", "standalone", "-i", "wwu-acl",
                          "-d", "web.example.org", "--cert-name", NAME,
                          "--wwu-acl-user", SERVICE_USER,
                          "--wwu-acl-push-to", "peer-a,peer-b", check=False)
    assert renewed.code != 0
    assert "peer-b (has a certificate web of its own" in renewed.output
    assert read(b.path("live", NAME, "privkey.pem")) == own
    assert version(a.letsencrypt) == 1
    proc = push(origin, "--to", "peer-b", "--force")
    assert proc.stdout.startswith("peer-b: replaced its version 1 with version 1 and "
                                  "deployed it (")
    assert read(b.path("live", NAME, "privkey.pem")) == read(origin.live(NAME))


def test_host_keys_are_checked_strictly(net, peers, origin):
    a, b = peers
    proc = wwu(origin, "cluster", "check")
    lines = proc.stdout.splitlines()
    assert [line.split(";")[0] for line in lines] == [
        "peer-a: reachable as root on port 22", "peer-b: reachable as root on port 22"]
    assert "certbot-wwu " in lines[0] and "rsync" in lines[0]

    # peer-b presents a key the known_hosts file does not have
    with open(net.known_hosts) as f:
        known = f.read()
    other = os.path.join(net.base, "other_key")
    if not os.path.exists(other):
        subprocess.check_call(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other])
    with open(other + ".pub") as f:
        kind, key = f.read().split()[:2]
    try:
        with open(net.known_hosts, "w") as f:
            f.write(known.replace(b.host_key_line(), "{} {} {}\n".format(
                b.address, kind, key)))
        obtain(origin)  # peer-a gets it, peer-b is refused
    except AssertionError as err:
        assert "peer-b (the host key of {} is not in {} or has changed".format(
            b.address, net.known_hosts) in str(err)
    else:
        raise AssertionError("the push to peer-b should have failed")
    finally:
        with open(net.known_hosts, "w") as f:
            f.write(known)
    assert version(a.letsencrypt) == 1
    assert not os.path.exists(b.path("live"))
