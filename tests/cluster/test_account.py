"""(a) A shared account lets a peer obtain certificates under the same ACME ID
without registering; nothing but that one account goes, and only on request."""
import os
import stat
import tarfile

from certbot_wwu.accounts import server_path
from tests.cluster.conftest import account_ids, free_http_port, wwu


def obtain_on(peer, server, name, check=True):
    """certonly on the peer, with no EAB credentials and no e-mail address."""
    return peer.certbot("certonly", "--server", server, "--agree-tos",
                        "--register-unsafely-without-email", "-a", "standalone",
                        "--http-01-port", free_http_port(), "-d", name + ".example.org",
                        "--cert-name", name, check=check)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def assert_certbot_layout(config_dir, server, account):
    top = os.path.join(config_dir, "accounts")
    directory = os.path.join(top, server_path(server), account)
    path = top
    for part in [server_path(server).split("/")[0]] + server_path(server).split("/")[1:]:
        path = os.path.join(path, part)
        assert mode(path) == 0o700, path
    assert mode(top) == 0o700
    assert mode(directory) == 0o700
    assert sorted(os.listdir(directory)) == ["meta.json", "private_key.json", "regr.json"]
    assert mode(os.path.join(directory, "private_key.json")) == 0o400
    for name in os.listdir(directory):
        assert os.stat(os.path.join(directory, name)).st_uid == 0


def test_a_shared_account_needs_no_registration(net, peers, origin):
    a, b = peers
    server = net.pebble.url
    [account] = account_ids(origin.config_dir, server)
    proc = wwu(origin, "cluster", "share-account", "--server", server,
               "--to", "peer-a", "--config-dir", origin.config_dir)
    assert proc.stdout == "peer-a: now has account {} for {}\n".format(account, server)
    assert_certbot_layout(a.letsencrypt, server, account)
    assert sorted(os.listdir(a.letsencrypt)) == ["accounts"]  # nothing else went
    assert os.listdir(b.letsencrypt) == []  # nor to a peer nobody named

    obtain_on(a, server, "a")
    assert account_ids(a.letsencrypt, server) == [account]  # no new registration
    with open(a.path("renewal", "a.conf")) as f:
        assert "account = {}\n".format(account) in f.read()
    proc = wwu(origin, "cluster", "share-account", "--server", server,
               "--to", "peer-a", "--config-dir", origin.config_dir)
    assert proc.stdout == "peer-a: already had account {} for {}\n".format(account, server)

    # the same request without the account: certbot must register, which
    # this CA allows only with EAB credentials
    result = obtain_on(b, server, "b", check=False)
    assert result.returncode != 0
    said = (result.stdout + result.stderr).lower()
    # certbot 5: "...requires external account binding..."; 1.22: "Unable to
    # register an account with ACME server"
    assert "external account" in said or "unable to register" in said, said
    assert account_ids(b.letsencrypt, server) == []


def test_another_account_on_the_peer_is_kept_unless_forced(net, peers, origin):
    b = peers[1]
    server = net.pebble.url
    [ours] = account_ids(origin.config_dir, server)
    kid, hmac = net.pebble.new_eab()
    b.certbot("register", "--server", server, "--eab-kid", kid, "--eab-hmac-key", hmac,
              "--register-unsafely-without-email", "--agree-tos")
    [theirs] = account_ids(b.letsencrypt, server)

    proc = wwu(origin, "cluster", "share-account", "--server", server, "--to", "peer-b",
               "--config-dir", origin.config_dir, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ("peer-b: FAILED: has another account for {} ({}); not "
                           "replaced (use --force to move it aside)\n".format(server, theirs))
    assert proc.stderr.startswith("certbot-wwu: Sharing account {} failed for 1 of 1 "
                                  "peers: peer-b (".format(ours))
    assert account_ids(b.letsencrypt, server) == [theirs]

    proc = wwu(origin, "cluster", "share-account", "--server", server, "--to", "peer-b",
               "--force", "--config-dir", origin.config_dir)
    assert proc.stdout.startswith("peer-b: now has account {} for {}; moved its account {} "
                                  "to /etc/letsencrypt/wwu-acl/replaced-accounts/"
                                  .format(ours, server, theirs))
    assert account_ids(b.letsencrypt, server) == [ours]
    backups = os.path.join(b.letsencrypt, "wwu-acl", "replaced-accounts")
    [stamp] = os.listdir(backups)
    assert os.path.isfile(os.path.join(backups, stamp, server_path(server), theirs,
                                       "private_key.json"))
    assert_certbot_layout(b.letsencrypt, server, ours)
    obtain_on(b, server, "b")


def test_export_and_import_through_a_file(net, peers, origin):
    a = peers[0]
    server = net.pebble.url
    [account] = account_ids(origin.config_dir, server)
    path = os.path.join(origin.root, "account.tar")
    proc = wwu(origin, "cluster", "export-account", "--server", server, path,
               "--config-dir", origin.config_dir)
    assert proc.stdout.startswith("wrote account {} for {} to {} (mode 0600)".format(
        account, server, path))
    assert mode(path) == 0o600
    with tarfile.open(path) as tar:
        names = tar.getnames()
        readme = tar.extractfile("README.txt").read().decode()
    assert names[0] == "README.txt"
    assert "A SECRET" in readme and account in readme and server in readme
    assert sorted(names[2:]) == ["accounts/{}/{}/{}".format(server_path(server), account, n)
                                 for n in ("meta.json", "private_key.json", "regr.json")]

    # the peer imports it with its own certbot-wwu (no ssh involved)
    proc = a.run(net.command, "cluster", "import-account", path)
    assert proc.stdout.startswith("imported account {} for {} into /etc/letsencrypt/"
                                  "accounts/".format(account, server))
    assert_certbot_layout(a.letsencrypt, server, account)
    obtain_on(a, server, "a")
    assert account_ids(a.letsencrypt, server) == [account]
    proc = a.run(net.command, "cluster", "import-account", path)
    assert proc.stdout.startswith("account {} for {} is already in".format(account, server))
