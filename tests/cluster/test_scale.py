"""(e) Clusters at scale: within one run each peer gets one ssh login (one
master connection; every look, copy and deploy goes through it) and one look
for all the lineages that push to it; a peer that does not answer costs one
connect timeout per run, not one per certificate.

Logins are counted where they happen: each peer's sshd logs one "Accepted
publickey" line per authenticated connection. The silent peer is a peer of
our own namespaces whose packets to the origin go to a blackhole route.
"""
import os
import re
import stat

from certbot_wwu import cluster
from certbot_wwu.cluster import transport
from tests.cluster.conftest import SERVICE_USER

NAMES = ("sa", "sb", "sc")


def obtain_each(origin):
    for name in NAMES:
        origin.acme("run", "-a", "standalone", "-i", "wwu-acl",
                    "-d", name + ".example.org", "--cert-name", name,
                    "--wwu-acl-user", SERVICE_USER, "--wwu-acl-unit", "web",
                    "--wwu-acl-push-to", "peer-a,peer-b")


def version(config_dir, name):
    link = os.readlink(os.path.join(config_dir, "live", name, "cert.pem"))
    return int(re.search(r"cert(\d+)\.pem$", link).group(1))


def logins(peers):
    return [peer.logins() for peer in peers]


def control_dirs():
    base = transport.RUNTIME_DIR
    return set(os.listdir(base)) if os.path.isdir(base) else set()


def test_one_login_per_peer_per_run(net, peers, origin):
    before = logins(peers)
    obtain_each(origin)  # three certbot runs: look, copy, deploy over one login each
    assert [n - b for n, b in zip(logins(peers), before)] == [3, 3]
    dirs = control_dirs()

    # not due, peers current: one login and one look per peer for all three
    before = logins(peers)
    timer = origin.renew()
    assert timer.code == 0, timer
    assert [n - b for n, b in zip(logins(peers), before)] == [1, 1]
    with open(os.path.join(origin.root, "logs", "letsencrypt.log")) as f:
        log = f.read()
    for name in NAMES:
        for peer in peers:
            assert "{}: {}: current (version 1)".format(name, peer.name) in log

    # all three renewed: three copies and three deployments per peer, still
    # over one login each
    before = logins(peers)
    renewed = origin.renew("--force-renewal")
    assert renewed.code == 0, renewed
    assert [n - b for n, b in zip(logins(peers), before)] == [1, 1]
    for name in NAMES:
        for peer in peers:
            assert version(peer.letsencrypt, name) == 2
            assert peer.read_as(SERVICE_USER, os.path.join(
                "/etc/letsencrypt/live", name, "privkey.pem"))
    # the runs' control directories went with them
    assert control_dirs() <= dirs


def test_a_silent_peer_costs_one_connect_timeout_per_run(net, peers, origin):
    a, b = peers
    obtain_each(origin)
    before = logins(peers)
    b.blackhole()
    try:
        timer = origin.renew(check=False)
    finally:
        b.unblackhole()
    assert timer.code != 0
    # every lineage fails and names peer-b ...
    failures = [line for line in timer.output.splitlines()
                if "failed for 1 of 2 peers: peer-b (cannot connect: " in line]
    assert [re.search(r"Pushing (\w+) failed", line).group(1) for line in failures] \
        == list(NAMES), timer
    # ... but only the first waited for it; the others say so without trying
    assert "timed out" in failures[0]
    assert "earlier in this run" not in failures[0]
    for line in failures[1:]:
        assert "(earlier in this run; not tried again until the next run)" in line
    # peer-a was served all along, over one login
    assert [n - b for n, b in zip(logins(peers), before)] == [1, 0]

    # the next run reaches peer-b again
    timer = origin.renew()
    assert timer.code == 0, timer


def test_the_control_socket_is_roots_alone(net, peers, monkeypatch):
    """In-process: the master connection's socket lies in a fresh 0700
    directory of root's; three commands make one login; the end of the run
    ends the master and removes the directory."""
    monkeypatch.setenv("CERTBOT_WWU_PRESETS_DIR", net.presets_dir)
    config = cluster.load_config()
    peer = config.peer("peer-a")
    run = cluster.new_run()
    try:
        t = cluster.Transport(config, run)
        before = peers[0].logins()
        t.connect(peer)
        path = run.masters[peer.key][0]
        directory = os.path.dirname(path)
        for where in (directory, transport.RUNTIME_DIR):
            st = os.lstat(where)
            assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0
            assert stat.S_IMODE(st.st_mode) == 0o700
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        argv = t.ssh_argv(peer, ["true"])
        assert "ControlPath=" + path in argv and "ControlMaster=no" in argv
        for _ in range(3):
            assert t.ssh(peer, ["true"]).code == 0
        assert peers[0].logins() - before == 1
    finally:
        cluster.new_run()
    assert not os.path.exists(directory)
