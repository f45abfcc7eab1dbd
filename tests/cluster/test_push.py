"""(b) A pushed certificate is deployed by each peer itself: its own user by
name (a different uid on each host), its own units; peers do not renew it."""
import os
import pwd
import re

from tests.cluster.conftest import OTHER_USER, SERVICE_USER, account_ids, wwu

NAME = "web"
PEER_KEY = "/etc/letsencrypt/live/web/privkey.pem"


def obtain(origin, *extra):
    """certbot run with the installer: deploy here, then push to both peers."""
    return origin.acme("run", "-a", "standalone", "-i", "wwu-acl",
                       "-d", "web.example.org", "--cert-name", NAME,
                       "--wwu-acl-user", SERVICE_USER, "--wwu-acl-unit", "web",
                       "--wwu-acl-push-to", "peer-a,peer-b", *extra)


def version(config_dir):
    link = os.readlink(os.path.join(config_dir, "live", NAME, "cert.pem"))
    return int(re.search(r"cert(\d+)\.pem$", link).group(1))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_each_peer_grants_its_own_user_by_name(net, peers, origin):
    obtain(origin)
    origin_uid = pwd.getpwnam(SERVICE_USER).pw_uid
    uids = {origin_uid}
    for peer in peers:
        assert version(peer.letsencrypt) == 1
        assert read(peer.path("live", NAME, "privkey.pem")) == read(origin.live(NAME))
        # the same name, another uid on every host
        uid = peer.uid_of(SERVICE_USER)
        assert uid == peer.uid and uid not in uids
        uids.add(uid)
        assert peer.read_as(SERVICE_USER, PEER_KEY)
        assert not peer.read_as(OTHER_USER, PEER_KEY)
        acl = peer.getfacl("/etc/letsencrypt/archive/web/privkey1.pem")
        assert "user:{}:r--".format(uid) in acl
        assert "user:{}:".format(origin_uid) not in acl  # the origin's ACL stayed home
        assert "group::---" in acl
        # the peer acted on its own unit
        assert "restart web.service" in peer.systemctl.actions()
    assert "restart web.service" in origin.systemctl.actions()


def test_the_pushed_renewal_conf_is_the_peers(net, peers, origin):
    obtain(origin)
    for peer in peers:
        with open(peer.path("renewal", NAME + ".conf")) as f:
            conf = f.read()
        assert conf.startswith("# certbot-wwu-cluster-origin: ")
        assert "\nautorenew = False\n" in conf
        assert "push_to" not in conf
        assert "config_dir = /etc/letsencrypt\n" in conf
        assert "cert = /etc/letsencrypt/live/web/cert.pem\n" in conf
        assert origin.config_dir not in conf and "work_dir" not in conf
        assert "wwu_acl_user = {}\n".format(SERVICE_USER) in conf
        # accounts are never pushed unless asked
        assert not os.path.exists(peer.path("accounts"))
        assert account_ids(peer.letsencrypt, net.pebble.url) == []


def test_a_current_peer_costs_one_look(net, peers, origin):
    obtain(origin)
    before = [len(peer.systemctl.actions()) for peer in peers]
    proc = wwu(origin, "cluster", "push", "--cert-name", NAME,
               "--config-dir", origin.config_dir)
    assert proc.stdout == "peer-a: current (version 1)\npeer-b: current (version 1)\n"
    assert [len(peer.systemctl.actions()) for peer in peers] == before


def test_a_peer_renews_only_after_taking_over(net, peers, origin):
    obtain(origin)
    peer = peers[0]
    conf_path = peer.path("renewal", NAME + ".conf")
    with open(conf_path) as f:
        conf = f.read()
    # due on the peer: Pebble's certificates live five years
    conf = conf.replace("\nversion = ", "\nrenew_before_expiry = 3000 days\nversion = ", 1)
    with open(conf_path, "w") as f:
        f.write(conf)
    result = peer.certbot("renew", "--no-random-sleep-on-renew")
    assert version(peer.letsencrypt) == 1, result.stdout + result.stderr
    assert peer.read_as(SERVICE_USER, PEER_KEY)  # its timer still heals grants

    # takeover as docs/cluster.rst says: the account, then the markers go
    wwu(origin, "cluster", "share-account", "--server", net.pebble.url,
        "--to", peer.name, "--config-dir", origin.config_dir)
    with open(conf_path, "w") as f:
        f.write("".join(line for line in conf.splitlines(True)
                        if not line.startswith("# certbot-wwu-cluster")
                        and line != "autorenew = False\n"))
    peer.certbot("renew", "--no-random-sleep-on-renew")
    assert version(peer.letsencrypt) == 2
    assert peer.read_as(SERVICE_USER, PEER_KEY)
    # the old origin now leaves it alone, and says why
    proc = wwu(origin, "cluster", "push", "--cert-name", NAME, "--to", peer.name,
               "--config-dir", origin.config_dir, check=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith("peer-a: FAILED: has a certificate web of its own")
    assert version(peer.letsencrypt) == 2
