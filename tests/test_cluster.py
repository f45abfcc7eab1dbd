"""certbot_wwu.cluster without peers: configuration, the commands it builds,
the peer's renewal conf, the probe, accounts and their export; a real ssh
to a closed loopback port for the unreachable peer.

The real peers (network namespaces with sshd) are in tests/cluster/.
"""
import io
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time

import pytest

from certbot_wwu import cli, cluster, presets
from certbot_wwu.accounts import AccountError
from certbot_wwu.cluster import ClusterError, Outcome, Peer
from certbot_wwu.cluster.accounts import checked_server_path
from certbot_wwu.cluster import pushing
from certbot_wwu.cluster import transport as transporting
from certbot_wwu.lineage import Lineage
from tests.support import host

SERVER = "https://acme.example.org:14000/dir"
SERVER_PATH = "acme.example.org:14000/dir"
ACCOUNT = "0123456789abcdef0123456789abcdef"
CONF = """\
# renew_before_expiry = 30 days
version = 5.8.0
archive_dir = {d}/archive/web
cert = {d}/live/web/cert.pem
privkey = {d}/live/web/privkey.pem
chain = {d}/live/web/chain.pem
fullchain = {d}/live/web/fullchain.pem

# Options used in the renewal process
[renewalparams]
account = {a}
config_dir = {d}
work_dir = /var/tmp/work
logs_dir = /var/tmp/logs
server = {s}
authenticator = standalone
installer = wwu-acl
wwu_acl_user = nginx
wwu_acl_unit = nginx.service
wwu_acl_push_to = "web2,web3"
[[webroot_map]]
web.example.org = /var/www
[acme_renewal_info]
ari_retry_after = 2030-01-02T03:04:05
"""


@pytest.fixture(autouse=True)
def fresh_run():
    """Each test is a run of its own: no connection or failed peer carries
    over from another test."""
    cluster.new_run()
    yield
    cluster.new_run()


@pytest.fixture(autouse=True)
def site(monkeypatch, tmp_path):
    """An empty site presets directory of our own."""
    directory = tmp_path / "presets.d"
    directory.mkdir()
    monkeypatch.setenv(presets.DIR_ENV, str(directory))
    return directory


def write_site(site, text, name="cluster.conf"):
    path = site / name
    path.write_text(text)
    return str(path)


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def make_lineage(config_dir, name="web", version=1, conf=CONF):
    """certbot's layout by hand: archive files, relative live links, a conf."""
    archive = os.path.join(config_dir, "archive", name)
    live = os.path.join(config_dir, "live", name)
    os.makedirs(archive)
    os.makedirs(live)
    os.makedirs(os.path.join(config_dir, "renewal"), exist_ok=True)
    for v in range(1, version + 1):
        for kind in ("cert", "chain", "fullchain", "privkey"):
            path = os.path.join(archive, "{}{}.pem".format(kind, v))
            with open(path, "w") as f:
                f.write("{} {}\n".format(kind, v))
            os.chmod(path, 0o600 if kind == "privkey" else 0o644)
    for kind in ("cert", "chain", "fullchain", "privkey"):
        os.symlink("../../archive/{}/{}{}.pem".format(name, kind, version),
                   os.path.join(live, kind + ".pem"))
    with open(os.path.join(config_dir, "renewal", name + ".conf"), "w") as f:
        f.write(conf.format(d=config_dir, a=ACCOUNT, s=SERVER))
    return Lineage(config_dir, name)


def make_account(config_dir, account_id=ACCOUNT, path=SERVER_PATH):
    directory = os.path.join(config_dir, "accounts", path, account_id)
    os.makedirs(directory)
    for name, data in (("meta.json", {"creation_host": "web1"}),
                       ("private_key.json", {"kty": "RSA", "n": account_id}),
                       ("regr.json", {"uri": "https://ca/acct/" + account_id})):
        with open(os.path.join(directory, name), "w") as f:
            json.dump(data, f)
    os.chmod(os.path.join(directory, "private_key.json"), 0o400)
    return directory


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- configuration ----------------------------------------------------------------

def test_defaults_without_a_cluster_section(site):
    write_site(site, "[preset lab]\ninherit = harica\n")
    config = cluster.load_config()
    assert config.source is None
    assert (config.ssh_user, config.ssh_port, config.config_dir) == ("root", 22,
                                                                     "/etc/letsencrypt")
    assert config.known_hosts == "/etc/certbot-wwu/known_hosts"
    assert config.remote_command == ["certbot-wwu"]
    assert config.share == ("certificates",)
    peer = config.peer("web2.example.org")
    assert (peer.user, peer.host, peer.port, peer.label) == (
        "root", "web2.example.org", 22, "web2.example.org")


def test_a_full_configuration(site, tmp_path):
    identity = tmp_path / "id"
    identity.write_text("key")
    path = write_site(site, """\
[preset lab]
inherit = harica

[cluster]
peers = web2, admin@web3.example.org:2222, [fd00::7]
ssh_user = deploy
ssh_port = 2200
ssh_identity = {}
ssh_options = ServerAliveInterval=5 "RekeyLimit=1G 1h"
known_hosts = /etc/certbot-wwu/cluster_known_hosts
connect_timeout = 3
command_timeout = 120
remote_command = /usr/bin/certbot-wwu
rsync_path = /usr/bin/rsync
sudo = yes
config_dir = /srv/letsencrypt/
share = certificates, account
name = web1

[cluster peers]
web2 = web2.uni-muenster.de
web4 = root@10.0.0.4:22
""".format(identity))
    config = cluster.load_config()
    assert config.source == path == config.peers_source
    assert config.ssh_options == ["ServerAliveInterval=5", "RekeyLimit=1G 1h"]
    assert config.config_dir == "/srv/letsencrypt"
    assert config.sudo and config.share == ("certificates", "account")
    peers = config.peers([])
    assert [(p.label, p.user, p.host, p.port) for p in peers] == [
        ("web2", "deploy", "web2.uni-muenster.de", 2200),
        ("admin@web3.example.org:2222", "admin", "web3.example.org", 2222),
        ("[fd00::7]", "deploy", "[fd00::7]", 2200)]
    web4 = config.peer("web4")
    assert (web4.user, web4.host, web4.port) == ("root", "10.0.0.4", 22)
    # the preset in the same file is still a preset
    assert presets.get_preset("lab").server_pattern == presets.HARICA_PATTERN


@pytest.mark.parametrize("text, fragment", [
    ("[cluster]\nssh_prot = 22\n", "section [cluster], key ssh_prot: unknown key; use peers,"),
    ("[cluster]\nssh_port = 0\n", "key ssh_port: '0' is not a port number from 1 to 65535."),
    ("[cluster]\nssh_user = -root\n", "key ssh_user: '-root' is not a user name."),
    ("[cluster]\nknown_hosts = hosts\n", "key known_hosts: 'hosts' is not an absolute file name"),
    ("[cluster]\nconfig_dir = /etc/lets encrypt\n", "key config_dir: '/etc/lets encrypt'"),
    ("[cluster]\nssh_identity = /nonexistent/id\n",
     "key ssh_identity: /nonexistent/id does not exist; create the key"),
    ("[cluster]\nssh_options = StrictHostKeyChecking=no\n",
     "key ssh_options: StrictHostKeyChecking is set by certbot-wwu (host keys are "
     "always checked against known_hosts)."),
    ("[cluster]\nssh_options = -v\n", "key ssh_options: '-v' is not an ssh Option=value"),
    ("[cluster]\nshare = everything\n", "key share: 'everything' is not one of "
                                        "certificates, account."),
    ("[cluster]\nsudo = maybe\n", "key sudo: 'maybe' is not yes or no."),
    ("[cluster]\nconnect_timeout = 1000\n", "key connect_timeout: '1000' is not a number "
                                            "of seconds from 1 to 300."),
    ("[cluster]\nremote_command =\n", "key remote_command: is empty; give a value"),
    ("[cluster]\nparallel = 0\n", "key parallel: '0' is not a whole number from 1 to 256."),
    ("[cluster]\nremote_command = 'unclosed\n", "key remote_command: \"'unclosed\" is not "
                                               "a command line"),
    ("[cluster]\npeers = web2, bad_host!\n", "section [cluster], key peers: peer "
                                             "'bad_host!' is not a host name or address"),
    ("[cluster peers]\nweb2 = root@\n", "section [cluster peers], key web2: 'root@' is "
                                        "not [user@]host[:port]."),
    ("[cluster peers]\nweb2 = web2:99999\n", "key web2: '99999' is not a port number"),
    ("[cluster web2]\nhost = x\n", "section [cluster web2] is not [cluster] or [cluster "
                                   "peers]; rename it."),
    ("[cluster]\nssh_port = 22\nssh_port = 23\n", "line 3: key ssh_port appears twice in "
                                                  "section [cluster]; fix that line."),
])
def test_configuration_errors_name_file_section_and_key(site, text, fragment):
    path = write_site(site, text)
    with pytest.raises(ClusterError) as err:
        cluster.load_config()
    message = str(err.value)
    assert message.startswith("In {}, ".format(path)) and message.endswith(".")
    assert fragment in message
    assert "\n" not in message


def test_parallel_peers(site):
    assert cluster.load_config().parallel == 32  # suits dozens of peers
    write_site(site, "[cluster]\nparallel = 4\n")
    assert cluster.load_config().parallel == 4


def test_peers_are_served_at_most_parallel_at_once():
    active, most = [0], [0]
    lock = threading.Lock()

    def work(peer):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return Outcome(peer, True, "done")
    peers = [Peer(str(i), "root", "h{}".format(i), 22) for i in range(12)]
    outcomes = transporting.each(peers, work, 3)
    assert [o.peer for o in outcomes] == peers and most[0] == 3
    most[0] = 0
    transporting.each(peers, work, 32)
    assert most[0] == 12


def test_commands_go_through_the_runs_own_master(site):
    """With a run and a master connection, every ssh (and rsync's ssh) uses
    that peer's socket and never becomes a master itself."""
    write_site(site, "[cluster]\nknown_hosts = /etc/kh\n")
    config = cluster.load_config()
    run = cluster.new_run()
    peer, other = Peer("web2", "root", "web2", 22), Peer("web3", "root", "web3", 22)
    t = cluster.Transport(config, run)
    run.add_master(peer, "/run/certbot-wwu/ssh-x/1")
    argv = t.ssh_argv(peer, ["true"])
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert "ControlMaster=no" in options and "ControlPath=/run/certbot-wwu/ssh-x/1" in options
    plain = t.ssh_argv(other, ["true"])
    assert "ControlPath=none" in [plain[i + 1] for i, a in enumerate(plain) if a == "-o"]
    rsync = t.rsync_argv(peer, ["/s/./x"], "/etc/letsencrypt")
    rsh = shlex.split(rsync[rsync.index("-e") + 1])
    assert "ControlPath=/run/certbot-wwu/ssh-x/1" in rsh and "ControlMaster=no" in rsh


def test_a_failed_peer_is_skipped_for_the_rest_of_the_run(site):
    write_site(site, "[cluster]\nknown_hosts = /etc/kh\n")
    run = cluster.new_run()
    t = cluster.Transport(cluster.load_config(), run)
    peer = Peer("web2", "root", "web2", 22)
    run.fail(peer, "cannot connect: ssh: connect to host web2 port 22: Connection timed out")
    with pytest.raises(cluster.PeerFailed) as err:
        t.connect(peer)
    assert str(err.value) == ("cannot connect: ssh: connect to host web2 port 22: "
                              "Connection timed out (earlier in this run; not tried again "
                              "until the next run)")
    assert cluster.new_run().failure(peer) is None  # the next run tries again


def test_two_cluster_sections_are_refused(site):
    first = write_site(site, "[cluster]\nssh_port = 22\n", "a.conf")
    second = write_site(site, "[cluster]\nssh_port = 23\n", "b.conf")
    with pytest.raises(ClusterError, match="Both {} and {} have a \\[cluster\\] section; "
                                           "keep one.".format(first, second)):
        cluster.load_config()


def test_peers_section_in_another_file(site):
    write_site(site, "[cluster]\nssh_user = deploy\npeers = web2\n", "a.conf")
    write_site(site, "[cluster peers]\nweb2 = 10.0.0.2:2222\n", "b.conf")
    peer = cluster.load_config().peers([])[0]
    assert (peer.label, peer.user, peer.host, peer.port) == ("web2", "deploy", "10.0.0.2", 2222)


@pytest.mark.parametrize("value, expected", [
    ("web2", ("root", "web2", 22)),
    ("Web2.Example.ORG.", ("root", "web2.example.org", 22)),
    ("admin@10.1.2.3:2222", ("admin", "10.1.2.3", 2222)),
    ("[FD00::1]:2200", ("root", "[fd00::1]", 2200)),
])
def test_targets(value, expected):
    assert cluster.parse_target(value) == expected


@pytest.mark.parametrize("value", ["", "web2:", "a@b@c", "-oProxyCommand=x", "fd00::1",
                                   "[nonsense]", "web 2", "host:22:33", "1.2.3.4.5"])
def test_bad_targets(value):
    with pytest.raises(ValueError):
        cluster.parse_target(value)


def test_no_peers_anywhere():
    with pytest.raises(ClusterError, match="No peers to go to: give --to PEER"):
        cluster.load_config().peers([])


# --- commands: ssh and rsync with argument lists ----------------------------------------

def transport(site, extra=""):
    write_site(site, "[cluster]\nknown_hosts = /etc/kh\nconnect_timeout = 4\n" + extra)
    return cluster.Transport(cluster.load_config())


def test_ssh_checks_host_keys_strictly_and_never_prompts(site):
    t = transport(site, "ssh_options = ServerAliveInterval=5\n")
    argv = t.ssh_argv(Peer("web2", "root", "web2.example.org", 2222),
                      ["certbot-wwu", "deploy", "--cert-name", "x; rm -rf /"])
    assert argv[0] == "ssh"
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes",
                   "UserKnownHostsFile=/etc/kh", "GlobalKnownHostsFile=/dev/null",
                   "UpdateHostKeys=no", "ConnectTimeout=4", "ServerAliveInterval=5"):
        assert option in options
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "root"
    assert argv[-3:-1] == ["--", "web2.example.org"]
    # the one string ssh hands to the peer's shell splits back into the words
    assert shlex.split(argv[-1]) == ["certbot-wwu", "deploy", "--cert-name", "x; rm -rf /"]


def test_sudo_prefixes_every_remote_command(site):
    t = transport(site, "sudo = yes\nssh_user = deploy\n")
    peer = Peer("web2", "deploy", "[fd00::2]", 22)
    argv = t.ssh_argv(peer, ["sh", "-c", "echo"])
    assert shlex.split(argv[-1]) == ["sudo", "-n", "sh", "-c", "echo"]
    assert argv[-2] == "fd00::2"
    rsync = t.rsync_argv(peer, ["/stage/./archive/web"], "/etc/letsencrypt")
    assert "--rsync-path=sudo -n rsync" in rsync
    assert rsync[-1] == "[fd00::2]:/etc/letsencrypt/"


def test_rsync_uses_the_same_ssh_and_keeps_acls_home(site):
    t = transport(site, "ssh_identity = /etc/hostname\n")
    peer = Peer("web2", "root", "web2", 22)
    argv = t.rsync_argv(peer, ["/s/./archive/web", "/s/./live/web"], "/etc/letsencrypt")
    assert argv[:2] == ["rsync", "-rltgo"]  # no -p/-A/-X: the peer's modes and ACLs stay
    assert "--relative" in argv
    rsh = argv[argv.index("-e") + 1]
    assert shlex.split(rsh) == t.ssh_base(peer)
    assert "IdentitiesOnly=yes" in rsh
    assert argv[-3:] == ["/s/./archive/web", "/s/./live/web", "web2:/etc/letsencrypt/"]


# --- ssh trusts only what certbot-wwu configured ----------------------------------------

def test_ssh_reads_no_configuration_file(site):
    """-F none: neither root's ~/.ssh/config nor /etc/ssh/ssh_config can add
    trust or commands; the options that matter are spelled out before the
    site's (ssh keeps the first value it gets)."""
    t = transport(site, "ssh_options = ServerAliveInterval=5\n")
    argv = t.ssh_argv(Peer("web2", "root", "web2.example.org", 22), ["true"])
    assert argv[:3] == ["ssh", "-F", "none"]
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    for option in ("CheckHostIP=no", "VerifyHostKeyDNS=no", "ProxyCommand=none",
                   "PermitLocalCommand=no", "ControlMaster=no", "ControlPath=none",
                   "ForwardAgent=no", "ClearAllForwardings=yes"):
        assert option in options
    assert options.index("ServerAliveInterval=5") > options.index("StrictHostKeyChecking=yes")


@pytest.mark.parametrize("value, sentence", [
    ('"KnownHostsCommand=/bin/echo %H"', "KnownHostsCommand is not allowed: it would "
                                         "take host keys from a command instead of "
                                         "known_hosts."),
    ("VerifyHostKeyDNS=yes", "VerifyHostKeyDNS is not allowed: it would trust host keys "
                             "published in DNS instead of known_hosts."),
    ("HostKeyAlias=web1", "HostKeyAlias is not allowed: it would check the peer against "
                          "another host's key in known_hosts."),
    ("CanonicalizeHostname=always", "CanonicalizeHostname is not allowed: it would check "
                                    "the host key of another name than the peer's."),
    ("CheckHostIP=yes", "CheckHostIP is set by certbot-wwu (certbot-wwu never changes "
                        "known_hosts)."),
    ('"ProxyCommand=ssh -W %h:%p gw"', "ProxyCommand is not allowed: it runs a command "
                                       "on this host as root; reach the peer directly."),
    ("ProxyJump=gw.example.org", "ProxyJump is not allowed: its second ssh would check "
                                 "the jump host against root's own known_hosts instead "
                                 "of the known_hosts key, and could prompt; reach the "
                                 "peer directly."),
    ('"LocalCommand=touch /tmp/x"', "LocalCommand is not allowed: it runs a command on "
                                    "this host as root."),
    ("PermitLocalCommand=yes", "PermitLocalCommand is not allowed: it runs a command on "
                               "this host as root."),
    ("ControlMaster=auto", "ControlMaster is not allowed: a shared connection skips the "
                           "host key check."),
    ("ControlPath=/tmp/%C", "ControlPath is not allowed: a shared connection skips the "
                            "host key check."),
    ("Include=/etc/ssh/more", "Include is not allowed: certbot-wwu reads no ssh "
                              "configuration files."),
    ('"Match=exec true"', "Match is not allowed: certbot-wwu reads no ssh configuration "
                          "files."),
    ("ForwardAgent=yes", "ForwardAgent is not one of the ssh options certbot-wwu passes "
                         "on (AddressFamily, "),
    ("Ciphers=aes128-ctr;id", "'Ciphers=aes128-ctr;id' is not an ssh Option=value"),
])
def test_ssh_options_that_widen_trust_or_run_commands_are_refused(site, value, sentence):
    path = write_site(site, "[cluster]\nssh_options = ServerAliveInterval=5 {}\n".format(
        value))
    with pytest.raises(ClusterError) as err:
        cluster.load_config()
    assert str(err.value).startswith(
        "In {}, section [cluster], key ssh_options: {}".format(path, sentence))
    assert str(err.value).endswith(".") and "\n" not in str(err.value)


def test_ssh_options_that_tune_the_connection_pass(site):
    write_site(site, "[cluster]\nssh_options = AddressFamily=inet, Ciphers=+aes128-cbc "
                     "\"RekeyLimit=1G 1h\" TCPKeepAlive=no\n")
    assert cluster.load_config().ssh_options == [
        "AddressFamily=inet", "Ciphers=+aes128-cbc", "RekeyLimit=1G 1h", "TCPKeepAlive=no"]


@pytest.mark.skipif(shutil.which("rsync") is None, reason="needs rsync")
def test_rsync_hands_ssh_exactly_the_same_words(site, tmp_path, monkeypatch):
    """rsync splits -e itself (not as a shell does): a recording ssh shows
    what it really runs."""
    fake = tmp_path / "bin"
    fake.mkdir()
    record = tmp_path / "argv"
    (fake / "ssh").write_text('#!/bin/sh\nprintf "%s\\0" "$@" > {}\nexit 12\n'.format(record))
    os.chmod(str(fake / "ssh"), 0o755)
    monkeypatch.setenv("PATH", "{}:{}".format(fake, os.environ["PATH"]))
    t = transport(site, "ssh_identity = /etc/hostname\n"
                        "ssh_options = \"RekeyLimit=1G 1h\" ServerAliveInterval=5\n")
    peer = Peer("web2", "deploy", "web2.example.org", 2222)
    source = tmp_path / "stage"
    source.mkdir()
    result = t.rsync(peer, [str(source)], "/etc/letsencrypt")
    assert result.code != 0
    words = [w.decode() for w in record.read_bytes().split(b"\0")[:-1]]
    base = t.ssh_base(peer)
    assert ["ssh"] + words[:len(base) - 1] == base
    assert words[:2] == ["-F", "none"]
    assert "RekeyLimit=1G 1h" in words
    assert words[len(base) - 1] == "web2.example.org"
    assert words[len(base)] == "rsync" and "--server" in words[len(base):]


# --- what a peer sends is shown printable ------------------------------------------

def test_printable():
    assert cluster.printable("ok \x1b[2J\x07\x9b31m\u202edone\n") == \
        "ok \\x1b[2J\\x07\\x9b31m\\u202edone\\x0a"
    assert cluster.printable("ä ✓ plain") == "ä ✓ plain"
    assert cluster.printable("x" * 1000) == "x" * cluster.PEER_TEXT_LIMIT + "..."
    assert cluster.printable("\x1b" * 10, 9) == "\\x1b\\x1b..."


def test_peer_text_is_printable_in_every_message(site):
    t = transport(site)
    peer = Peer("web2", "root", "web2", 22)
    result = cluster.Result(["ssh"], 1, "", "certbot-wwu: \x1b]0;owned\x07User "
                                            "\x1b[31mnginx\x1b[0m is missing.\n")
    text = transporting.explain("deploying", peer, result, t.config)
    assert text == ("deploying failed (exit 1): \\x1b]0;owned\\x07User \\x1b[31mnginx"
                    "\\x1b[0m is missing")
    result = cluster.Result(["ssh"], 255, "", "ssh: \x1b[2J" + "A" * 100000 + "\n")
    text = transporting.explain("copying", peer, result, t.config)
    assert "\x1b" not in text and len(text) < cluster.PEER_TEXT_LIMIT + 30
    outcome = Outcome(peer, False, "raw \x1b[2J" + "B" * 100000)
    assert outcome.line.startswith("web2: FAILED: raw \\x1b[2JBBB")
    assert len(outcome.line) < cluster.OUTCOME_LIMIT + 30
    error = cluster.failed_error("Pushing web", [outcome])
    assert "\x1b" not in str(error) and len(str(error)) < cluster.OUTCOME_LIMIT + 200


FAKE_PEER = """#!/bin/sh
printf '\\033[2J\\033]0;owned\\007certbot-wwu 9.9\\033[31m\\n'
if [ -n "$WWU_FAKE_FAIL" ]; then
    x=$(head -c 20000 /dev/zero | tr '\\0' x)
    printf 'certbot-wwu: \\033[1;31mboom\\302\\233 %s\\n' "$x" >&2
    exit 3
fi
"""


@pytest.mark.parametrize("fail", [False, True])
def test_a_peers_escape_sequences_never_reach_the_terminal(capsys, site, tmp_path,
                                                           monkeypatch, fail):
    """A fake peer (an ssh that prints what the peer would) sends terminal
    escapes; 'cluster check' shows them made visible and bounded."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ssh").write_text(FAKE_PEER)
    os.chmod(str(fake / "ssh"), 0o755)
    monkeypatch.setenv("PATH", "{}:{}".format(fake, os.environ["PATH"]))
    if fail:
        monkeypatch.setenv("WWU_FAKE_FAIL", "1")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    write_site(site, "[cluster]\nknown_hosts = {}\n".format(known_hosts))
    code, out, err = run(capsys, "cluster", "check", "--to", "web2")
    for text in (out, err):
        for raw in ("\x1b", "\x07", "\x9b"):
            assert raw not in text
    if not fail:
        assert (code, err) == (0, "")
        assert out == ("web2: reachable as root on port 22; \\x1b[2J\\x1b]0;owned\\x07"
                       "certbot-wwu 9.9\\x1b[31m; \\x1b[2J\\x1b]0;owned\\x07certbot-wwu "
                       "9.9\\x1b[31m\n")
    else:
        assert code == 1
        assert out.startswith("web2: FAILED: running certbot-wwu failed (exit 3): "
                              "\\x1b[1;31mboom\\x9b xxx")
        assert len(out) < cluster.PEER_TEXT_LIMIT + 100
        assert err.startswith("certbot-wwu: Checking failed for 1 of 1 peers: web2 "
                              "(running certbot-wwu failed (exit 3): \\x1b[1;31mboom")
        assert len(err) < cluster.PEER_TEXT_LIMIT + 200


# --- the push lock --------------------------------------------------------------------

HOLDER = ("import fcntl,os,sys;fd=os.open(sys.argv[1],os.O_RDWR|os.O_CREAT,0o600);"
          "fcntl.flock(fd,fcntl.LOCK_EX);print('locked',flush=True);sys.stdin.read()")


def test_a_held_push_lock_ends_the_wait_with_the_holder_named(site, tmp_path):
    """Another process holds the lineage's push lock: the push waits
    command_timeout seconds, not for ever, and names that process."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    write_site(site, "[cluster]\nknown_hosts = {}\ncommand_timeout = 10\n".format(
        known_hosts))
    config_dir = str(tmp_path / "etc")
    lineage = make_lineage(config_dir)
    os.mkdir(os.path.join(config_dir, "wwu-acl"), 0o700)
    path = os.path.join(config_dir, "wwu-acl", "web.cluster.lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              universal_newlines=True)
    errors = []

    def push():
        try:
            cluster.push_lineage(lineage, ["root@127.0.0.1:1"])
        except ClusterError as err:
            errors.append(str(err))
    try:
        assert holder.stdout.readline() == "locked\n"
        started = time.monotonic()
        thread = threading.Thread(target=push, daemon=True)
        thread.start()
        thread.join(40)
        assert not thread.is_alive(), "the push still waits for the lock"
        waited = time.monotonic() - started
    finally:
        holder.stdin.close()
        holder.wait()
    assert waited >= 10
    assert len(errors) == 1
    assert errors[0].startswith("Pushing web waited 10 s for {}, which PID {} ({} -c import "
                                "fcntl,os,sys;".format(path, holder.pid, sys.executable))
    assert errors[0].endswith(") still holds; wait until it ends or stop it, then try "
                              "again.")


@pytest.mark.parametrize("owner, mode", [(0, 0o777), (0, 0o770), (65534, 0o700)])
@pytest.mark.skipif(not host.is_root(), reason="needs root (the lock directory is root's)")
def test_the_push_lock_lives_only_where_root_alone_writes(site, tmp_path, owner, mode):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    write_site(site, "[cluster]\nknown_hosts = {}\n".format(known_hosts))
    config_dir = str(tmp_path / "etc")
    lineage = make_lineage(config_dir)
    workdir = os.path.join(config_dir, "wwu-acl")
    os.mkdir(workdir)
    os.chown(workdir, owner, 0)
    os.chmod(workdir, mode)
    with pytest.raises(ClusterError) as err:
        cluster.push_lineage(lineage, ["root@127.0.0.1:1"])
    assert str(err.value) == (
        "{d} must be a directory only root can use, but it is owned by uid {u} "
        "with mode {m:04o}; fix it with chown root:root {d} && chmod 700 {d}.".format(
            d=workdir, u=owner, m=mode))
    assert os.listdir(workdir) == []


@pytest.mark.parametrize("err, code, expected", [
    ("Host key verification failed.\r\n", 255,
     "the host key of web2 is not in /etc/kh or has changed; compare its fingerprint and "
     "add it (ssh-keyscan -p 22 web2)"),
    ("root@web2: Permission denied (publickey).\n", 255,
     "ssh login as root was refused (root@web2: Permission denied (publickey))"),
    ("ssh: connect to host web2 port 22: Connection refused\r\n", 255,
     "cannot connect: ssh: connect to host web2 port 22: Connection refused"),
    ("sh: 1: certbot-wwu: not found\n", 127,
     "deploying failed: sh: 1: certbot-wwu: not found (set remote_command or rsync_path in"),
    ("certbot-wwu: User 'nginx' does not exist on this host.\n", 1,
     "deploying failed (exit 1): User 'nginx' does not exist on this host"),
])
def test_failures_are_explained(site, err, code, expected):
    t = transport(site)
    result = cluster.Result(["ssh"], code, "", err)
    text = transporting.explain("deploying", Peer("web2", "root", "web2", 22), result, t.config)
    assert text.startswith(expected)


def test_the_failed_peers_in_one_sentence():
    a, b, c = (Peer(n, "root", n, 22) for n in ("a", "b", "c"))
    assert cluster.failed_error("Pushing web", [Outcome(a, True, "current")]) is None
    error = cluster.failed_error("Pushing web", [
        Outcome(a, True, "current (version 2)"),
        Outcome(b, False, "cannot connect: timed out"),
        Outcome(c, False, "has version 3 of web, newer than ours (2)")])
    assert str(error) == ("Pushing web failed for 2 of 3 peers: b (cannot connect: timed "
                          "out); c (has version 3 of web, newer than ours (2)); the others "
                          "are done, and the next run tries again.")
    assert Outcome(b, False, "x").line == "b: FAILED: x"


# --- the peer's renewal conf -------------------------------------------------------

def test_the_peer_conf(tmp_path):
    origin_dir = str(tmp_path / "etc")
    text = CONF.format(d=origin_dir, a=ACCOUNT, s=SERVER)
    conf = cluster.peer_renewal_conf(text, "web", "/etc/letsencrypt", "web1")
    lines = conf.splitlines()
    assert lines[0] == "# certbot-wwu-cluster-origin: web1"
    assert all(line.startswith("# certbot-wwu-cluster") for line in lines[:5])
    assert lines[5] == "# renew_before_expiry = 30 days"  # certbot's own lines stay
    assert "cert = /etc/letsencrypt/live/web/cert.pem" in lines
    assert "archive_dir = /etc/letsencrypt/archive/web" in lines
    assert "config_dir = /etc/letsencrypt" in lines
    assert origin_dir not in conf
    for gone in ("wwu_acl_push_to", "work_dir", "logs_dir", "acme_renewal_info",
                 "ari_retry_after"):
        assert gone not in conf
    params = lines[lines.index("[renewalparams]") + 1:lines.index("[[webroot_map]]")]
    assert params[-1] == "autorenew = False"
    assert "installer = wwu-acl" in params and "wwu_acl_user = nginx" in params
    assert lines[lines.index("[[webroot_map]]") + 1] == "web.example.org = /var/www"
    assert cluster.has_deploy_settings(conf)
    # pushing the peer's conf on (after a takeover) gives the same
    assert cluster.peer_renewal_conf(conf, "web", "/etc/letsencrypt", "web1") == conf
    assert "origin: web3" in cluster.peer_renewal_conf(conf, "web", "/etc/letsencrypt",
                                                        "web3")


def test_a_peer_conf_without_settings_has_no_installer():
    text = CONF.format(d="/etc/letsencrypt", a=ACCOUNT, s=SERVER)
    text = text.replace("wwu_acl_user = nginx\n", "").replace(
        "wwu_acl_unit = nginx.service\n", "").replace("autorenew = True\n", "")
    conf = cluster.peer_renewal_conf(text, "web", "/etc/letsencrypt", "web1")
    assert "installer" not in conf and not cluster.has_deploy_settings(conf)
    assert "\nautorenew = False\n" in conf


def test_a_peer_conf_reads_as_certbot_reads_it():
    configobj = pytest.importorskip("configobj")
    conf = cluster.peer_renewal_conf(CONF.format(d="/x", a=ACCOUNT, s=SERVER), "web",
                                     "/etc/letsencrypt", "web1")
    parsed = configobj.ConfigObj(io.StringIO(conf))
    assert parsed["renewalparams"].as_bool("autorenew") is False
    assert parsed["cert"] == "/etc/letsencrypt/live/web/cert.pem"
    assert parsed["renewalparams"]["webroot_map"] == {"web.example.org": "/var/www"}
    assert "acme_renewal_info" not in parsed


# --- the look ----------------------------------------------------------------------

def look(words, names):
    out = subprocess.check_output(words, universal_newlines=True)
    return pushing.parse_look(out, names)


def test_the_look_script_on_a_real_tree(tmp_path):
    config_dir = str(tmp_path / "etc")
    lineage = make_lineage(config_dir, version=3)
    words = pushing.look_words(config_dir, ["web"])
    assert words[:2] == ["sh", "-c"]
    state = look(words, ["web"])["web"]
    assert (state.exists, state.version, state.origin) == (True, 3, None)
    assert state.sha256 == pushing.sha256_file(lineage.current()["cert"])
    with open(lineage.renewal_conf, "w") as f:
        f.write(cluster.peer_renewal_conf(CONF.format(d=config_dir, a=ACCOUNT, s=SERVER),
                                          "web", config_dir, "web1"))
    state = look(words, ["web"])["web"]
    assert state.origin == "web1"
    empty = look(pushing.look_words(str(tmp_path / "none"), ["web"]), ["web"])["web"]
    assert (empty.exists, empty.version, empty.sha256) == (False, None, None)


def test_one_look_reads_many_lineages(tmp_path):
    """The run's first look at a peer covers every lineage that pushes to
    it: links, checksums and origin markers of all in one answer, and
    lineages the peer lacks (or names it never had) come back empty."""
    config_dir = str(tmp_path / "etc")
    made = {}
    for i, name in enumerate(["a.example", "b@x", "c+1"]):
        made[name] = make_lineage(config_dir, name=name, version=i + 1,
                                  conf=CONF.replace("/web", "/" + name))
    with open(made["b@x"].renewal_conf, "w") as f:
        f.write(cluster.peer_renewal_conf(CONF.format(d=config_dir, a=ACCOUNT, s=SERVER),
                                          "b@x", config_dir, "web1"))
    names = ["a.example", "absent", "b@x", "c+1"]
    states = look(pushing.look_words(config_dir, names), names)
    assert sorted(states) == sorted(names)
    for i, name in enumerate(["a.example", "b@x", "c+1"]):
        state = states[name]
        assert (state.exists, state.version) == (True, i + 1)
        assert state.sha256 == pushing.sha256_file(made[name].current()["cert"])
        assert state.origin == ("web1" if name == "b@x" else None)
    assert not states["absent"].exists and states["absent"].sha256 is None


def test_a_look_names_only_safe_certificate_names(tmp_path):
    with pytest.raises(ClusterError, match="Cannot look for certificate 'a b'"):
        pushing.look_words(str(tmp_path), ["web", "a b"])


def test_a_cut_short_look_fails():
    with pytest.raises(cluster.PeerFailed, match="cut short"):
        pushing.parse_look("link web ../../archive/web/cert3.pem\n", ["web"])


def test_which_lineages_push_where(tmp_path):
    config_dir = str(tmp_path / "etc")
    make_lineage(config_dir, name="web")
    make_lineage(config_dir, name="mail", conf=CONF.replace("/web", "/mail").replace(
        'wwu_acl_push_to = "web2,web3"', "wwu_acl_push_to = web3"))
    make_lineage(config_dir, name="local", conf=CONF.replace("/web", "/local").replace(
        'wwu_acl_push_to = "web2,web3"\n', ""))
    assert pushing.pushing_lineages(config_dir) == {"mail": ["web3"],
                                                    "web": ["web2", "web3"]}


def test_strange_names_are_not_pushed(tmp_path, site):
    lineage = make_lineage(str(tmp_path / "etc"), name="we b")
    with pytest.raises(ClusterError, match="Cannot push certificate 'we b'"):
        pushing.Local(lineage, cluster.load_config())


# --- staging: what a peer gets ----------------------------------------------------

@pytest.mark.skipif(not host.is_root() or not shutil.which("setfacl"),
                    reason="needs root and setfacl")
def test_the_stage_has_certbots_modes_and_no_acl():
    os.makedirs("/var/tmp/certbot-wwu-tests", exist_ok=True)
    import tempfile
    base = tempfile.mkdtemp(dir="/var/tmp/certbot-wwu-tests")
    try:
        config_dir = os.path.join(base, "etc")
        lineage = make_lineage(config_dir, version=2)
        key = lineage.current()["privkey"]
        subprocess.check_call(["setfacl", "-m", "u:nobody:r", key])
        assert mode(key) == 0o640  # the mask shows as group bits
        stage = cluster.stage_lineage(lineage, "conf\n", os.path.join(config_dir, "wwu-acl"))
        staged = os.path.join(stage, "archive", "web")
        assert sorted(os.listdir(staged)) == ["cert2.pem", "chain2.pem", "fullchain2.pem",
                                              "privkey2.pem"]
        assert mode(os.path.join(staged, "privkey2.pem")) == 0o600
        assert mode(os.path.join(staged, "cert2.pem")) == 0o644
        assert not os.listxattr(os.path.join(staged, "privkey2.pem"))
        assert os.readlink(os.path.join(stage, "live", "web", "privkey.pem")) == \
            "../../archive/web/privkey2.pem"
        assert mode(os.path.join(stage, "archive")) == 0o700
        assert mode(os.path.join(stage, "live")) == 0o700
        assert mode(stage) == 0o700
        with open(os.path.join(stage, "renewal", "web.conf")) as f:
            assert f.read() == "conf\n"
    finally:
        shutil.rmtree(base)


# --- an unreachable peer, for real ---------------------------------------------------

@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")
def test_an_unreachable_peer_fails_the_push_and_names_it(tmp_path, site):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    write_site(site, "[cluster]\nknown_hosts = {}\nconnect_timeout = 2\n".format(known_hosts))
    lineage = make_lineage(str(tmp_path / "etc"))
    with pytest.raises(ClusterError) as err:
        cluster.push_lineage(lineage, ["root@127.0.0.1:1"])  # nobody listens on port 1
    assert str(err.value).startswith(
        "Pushing web failed for 1 of 1 peers: root@127.0.0.1:1 (cannot connect: ssh: "
        "connect to host 127.0.0.1 port 1: Connection refused); the next run tries again.")
    # nothing was staged, recorded or left behind
    assert os.listdir(str(tmp_path / "etc" / "wwu-acl")) == ["web.cluster.lock"]


def test_push_needs_the_known_hosts_file(tmp_path, site):
    write_site(site, "[cluster]\nknown_hosts = {}\n".format(tmp_path / "absent"))
    lineage = make_lineage(str(tmp_path / "etc"))
    with pytest.raises(ClusterError, match="The known_hosts file .*absent does not exist; "
                                           "create it with each peer's host key"):
        cluster.push_lineage(lineage, ["web2"])


def test_push_needs_certificates_shared(tmp_path, site):
    write_site(site, "[cluster]\nshare = account\n")
    lineage = make_lineage(str(tmp_path / "etc"))
    with pytest.raises(ClusterError, match="Pushing certificates is not enabled"):
        cluster.push_lineage(lineage, ["web2"])


# --- accounts --------------------------------------------------------------------

@pytest.mark.parametrize("url, path", [
    ("https://acme.sectigo.com/v2/OV", "acme.sectigo.com/v2/OV"),
    ("https://127.0.0.1:14000/dir", "127.0.0.1:14000/dir"),
    ("https://acme-v02.harica.gr/acme/962d61f0-7815-46cc-9c42-8e8aa25443d1/directory",
     "acme-v02.harica.gr/acme/962d61f0-7815-46cc-9c42-8e8aa25443d1/directory"),
])
def test_server_paths_as_certbot_makes_them(url, path):
    assert checked_server_path(url) == path


@pytest.mark.parametrize("url", ["http://ca/dir", "https://ca/../x", "https:///dir",
                                 "https://ca/a b"])
def test_bad_server_urls(url):
    with pytest.raises(ClusterError, match="is not an https:// ACME directory URL"):
        checked_server_path(url)


def test_finding_the_account(tmp_path):
    config_dir = str(tmp_path)
    with pytest.raises(AccountError, match="There is no account for {}".format(SERVER)):
        cluster.find_account(config_dir, SERVER)
    make_account(config_dir)
    account = cluster.find_account(config_dir, SERVER)
    assert (account.id, account.relative) == (ACCOUNT, "accounts/{}/{}".format(
        SERVER_PATH, ACCOUNT))
    make_account(config_dir, "f" * 32)
    with pytest.raises(AccountError, match="There are 2 accounts for .*; choose one "
                                           "with --account ID."):
        cluster.find_account(config_dir, SERVER)
    assert cluster.find_account(config_dir, SERVER, "f" * 32).id == "f" * 32
    with pytest.raises(AccountError, match="There is no account nope"):
        cluster.find_account(config_dir, SERVER, "nope")


def test_share_account_needs_the_sites_consent(capsys, tmp_path, site):
    make_account(str(tmp_path))
    code, out, err = run(capsys, "cluster", "share-account", "--server", SERVER,
                         "--to", "web2", "--config-dir", str(tmp_path))
    assert (code, out) == (1, "")
    assert err == ("certbot-wwu: Sharing ACME accounts is not enabled: only servers "
                   "that the same people administer may share an ACME ID; to allow "
                   "it, set share = certificates, account in a [cluster] section in a "
                   "file in {} (there is none).\n".format(site))
    code, out, err = run(capsys, "cluster", "export-account", "--server", SERVER,
                         str(tmp_path / "x.tar"), "--config-dir", str(tmp_path))
    assert code == 1 and "Sharing ACME accounts is not enabled" in err
    assert not (tmp_path / "x.tar").exists()


def test_export_and_import(capsys, tmp_path, site):
    write_site(site, "[cluster]\nshare = certificates, account\n")
    origin = str(tmp_path / "origin")
    make_account(origin)
    path = str(tmp_path / "account.tar")
    code, out, _ = run(capsys, "cluster", "export-account", "--server", SERVER, path,
                       "--config-dir", origin)
    assert code == 0 and out.startswith("wrote account {} for {} to {} (mode 0600)".format(
        ACCOUNT, SERVER, path))
    assert mode(path) == 0o600
    with tarfile.open(path) as tar:
        assert tar.getnames()[:2] == ["README.txt", "certbot-wwu-account.json"]
        assert b"A SECRET" in tar.extractfile("README.txt").read()
    code, _, err = run(capsys, "cluster", "export-account", "--server", SERVER, path,
                       "--config-dir", origin)
    assert code == 1 and "exists; choose another file name" in err

    peer = str(tmp_path / "peer")
    code, out, _ = run(capsys, "cluster", "import-account", path, "--config-dir", peer)
    directory = os.path.join(peer, "accounts", SERVER_PATH, ACCOUNT)
    assert out == "imported account {} for {} into {}\n".format(ACCOUNT, SERVER, directory)
    for name in ("meta.json", "private_key.json", "regr.json"):
        with open(os.path.join(directory, name), "rb") as f, \
                open(os.path.join(origin, "accounts", SERVER_PATH, ACCOUNT, name), "rb") as g:
            assert f.read() == g.read()
    assert mode(os.path.join(directory, "private_key.json")) == 0o400
    assert mode(os.path.join(directory, "meta.json")) == 0o644
    assert mode(directory) == 0o700
    for part in ("accounts", "accounts/acme.example.org:14000",
                 "accounts/acme.example.org:14000/dir"):
        assert mode(os.path.join(peer, part)) == 0o700
    code, out, _ = run(capsys, "cluster", "import-account", path, "--config-dir", peer)
    assert out.startswith("account {} for {} is already in".format(ACCOUNT, SERVER))


def test_import_keeps_another_account_unless_forced(capsys, tmp_path, site):
    write_site(site, "[cluster]\nshare = account\n")
    make_account(str(tmp_path / "origin"))
    path = str(tmp_path / "account.tar")
    cluster.export_account(cluster.find_account(str(tmp_path / "origin"), SERVER), path)
    peer = str(tmp_path / "peer")
    theirs = make_account(peer, "e" * 32)
    code, _, err = run(capsys, "cluster", "import-account", path, "--config-dir", peer)
    assert code == 1
    assert err == ("certbot-wwu: {} already has another account for {} ({}); not "
                   "replaced (use --force to move it aside).\n".format(
                       os.path.dirname(theirs), SERVER, "e" * 32))
    code, out, _ = run(capsys, "cluster", "import-account", path, "--force",
                       "--config-dir", peer)
    assert code == 0 and "; moved {}/wwu-acl/replaced-accounts/".format(peer) in out
    assert sorted(os.listdir(os.path.dirname(theirs))) == [ACCOUNT]


def tar_with(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("members, fragment", [
    ([("README.txt", b"x")], "is not a certbot-wwu account export (no valid"),
    ([("README.txt", b"x"), ("certbot-wwu-account.json", json.dumps({
        "format": cluster.EXPORT_FORMAT, "server": SERVER, "server_path": SERVER_PATH,
        "account_id": ACCOUNT}).encode()), ("../../etc/passwd", b"x")],
     "it holds '../../etc/passwd'"),
    ([("README.txt", b"x"), ("certbot-wwu-account.json", json.dumps({
        "format": cluster.EXPORT_FORMAT, "server": SERVER, "server_path": SERVER_PATH,
        "account_id": ACCOUNT}).encode()),
      ("accounts/{}/{}/meta.json".format(SERVER_PATH, ACCOUNT), b"{}")],
     "is incomplete: it lacks private_key.json, regr.json"),
    ([("README.txt", b"x"), ("certbot-wwu-account.json", json.dumps({
        "format": cluster.EXPORT_FORMAT, "server": "https://other/dir",
        "server_path": SERVER_PATH, "account_id": ACCOUNT}).encode())],
     "names an invalid account or server"),
])
def test_import_refuses_what_export_does_not_write(tmp_path, members, fragment):
    path = str(tmp_path / "x.tar")
    tar_with(path, members)
    with pytest.raises(ClusterError, match=None) as err:
        cluster.import_account(path, str(tmp_path / "peer"))
    assert fragment in str(err.value)
    assert not (tmp_path / "peer" / "accounts").exists()


# --- the command --------------------------------------------------------------------

def test_help(capsys):
    code, out, _ = run(capsys, "cluster", "--help")
    assert code == 0
    for action in ("push", "share-account", "export-account", "import-account", "check"):
        assert action in out


def test_push_needs_a_certificate(capsys, tmp_path):
    code, _, err = run(capsys, "cluster", "push")
    assert code == 2 and "--cert-name" in err
    code, out, err = run(capsys, "cluster", "push", "--cert-name", "web",
                         "--config-dir", str(tmp_path))
    assert (code, out) == (1, "")
    assert err == ("certbot-wwu: There is no certificate web in {}; 'certbot "
                   "certificates' lists the names (give --config-dir if certbot uses "
                   "another directory).\n".format(tmp_path))


def test_account_commands_need_a_server(capsys, tmp_path):
    code, _, err = run(capsys, "cluster", "export-account", str(tmp_path / "x"))
    assert code == 1
    assert err == "certbot-wwu: Say which account: give --server URL or --preset NAME.\n"
