"""Real cluster peers on one machine.

Each peer is a network namespace joined to a bridge in the root namespace by
a veth pair (10.231.N.0/24, addresses inside our own devices only), with:

* its own sshd (own host key, own config, listening on the peer's address,
  root login by key only, StrictModes), started with ``ip netns exec`` so
  that its sessions see the peer's files;
* its own ``/etc/letsencrypt``, ``/etc/passwd`` and ``/etc/group``:
  ``ip netns exec NS`` bind-mounts ``/etc/netns/NS/*`` over ``/etc/*`` in a
  private mount namespace (gone when the process ends). The copies of passwd
  and group give the service user a uid of its own on each peer, different
  from the root namespace's and from the other peer's;
* its own recording systemctl (sshd's SetEnv puts it first on PATH).

Pebble listens on the bridge address, which the root namespace (the origin)
and every peer reach. certbot-wwu on the peers is this interpreter's
console script (the same path on the one machine).

The tests skip with a reason without root, ip netns, sshd, rsync or Pebble.
Teardown stops the sshds (by pid), deletes the namespaces, links, bridge and
/etc/netns entries. A run that was killed leaves namespaces named
wwucl-PID-*; the next run removes those whose PID is gone.
"""
import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import pytest

from tests.support import host
from tests.support.certbot import Certbot, certbot_executable
from tests.support.pebble import Pebble, free_port
from tests.support.systemd import BIN, RecordingSystemctl

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_BASE = os.environ.get("WWU_TEST_BASE", "/var/tmp/certbot-wwu-tests")
SSHD = "/usr/sbin/sshd"
NETNS_ETC = "/etc/netns"
#: names of our namespaces: wwucl-<pid>-<letter>
NS_PATTERN = re.compile(r"^wwucl-(\d+)-([a-z])$")
SERVICE_USER = host.SERVICE_USER
OTHER_USER = host.OTHER_USER
#: certbot-wwu of this interpreter, on the peers' PATH
WRAPPER = """#!/bin/sh
exec {python} -c 'import sys
from certbot_wwu import cli
sys.exit(cli.main())' "$@"
"""


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    if check and proc.returncode != 0:
        raise RuntimeError("{} failed (exit {}): {}{}".format(
            " ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc


def missing() -> Optional[str]:
    """Why the cluster tests cannot run here, or None."""
    if not host.is_root():
        return "needs root (network namespaces, sshd, real users)"
    for tool in ("ip", "ssh", "ssh-keygen", "rsync", "pebble", "openssl",
                 "runuser", "getfacl", "sha256sum"):
        if shutil.which(tool) is None:
            return "needs {} (scripts/setup-cluster-test installs it)".format(tool)
    if not os.access(SSHD, os.X_OK):
        return "needs {} (scripts/setup-cluster-test installs openssh-server)".format(SSHD)
    if not os.path.exists(certbot_executable()):
        return "needs certbot at {}".format(certbot_executable())
    probe = "wwucl-{}-probe".format(os.getpid())
    proc = _sh("ip", "netns", "add", probe, check=False)
    if proc.returncode != 0:
        return "cannot create network namespaces ({})".format(proc.stderr.strip())
    _sh("ip", "netns", "del", probe, check=False)
    proc = _sh("ip", "link", "add", "wwc{}pr".format(os.getpid()), "type", "bridge",
               check=False)
    if proc.returncode != 0:
        return "cannot create a bridge ({})".format(proc.stderr.strip())
    _sh("ip", "link", "del", "wwc{}pr".format(os.getpid()), check=False)
    return None


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cluster: real peers in network namespaces with sshd "
                   "(needs root, ip netns, sshd, rsync, Pebble)")


def asked_for(config) -> bool:
    """Whether this run names tests/cluster (or a test in it), or sets
    WWU_CLUSTER_TESTS=1: the tests take minutes, so a plain ``pytest`` (the
    testpaths) leaves them out."""
    if os.environ.get("WWU_CLUSTER_TESTS") == "1":
        return True
    start = str(config.invocation_params.dir)
    for arg in config.args:
        path = os.path.abspath(os.path.join(start, arg.split("::")[0]))
        if path == HERE or path.startswith(HERE + os.sep):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    ours = [item for item in items if str(item.fspath).startswith(HERE + os.sep)]
    if not ours:
        return
    reason = missing() if asked_for(config) else (
        "cluster tests take minutes: run 'pytest tests/cluster' (make cluster-test) "
        "or set WWU_CLUSTER_TESTS=1")
    for item in ours:
        item.add_marker(pytest.mark.cluster)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def _alive(pid: int) -> bool:
    return os.path.exists("/proc/{}".format(pid))


def remove_stale() -> None:
    """Namespaces, links and /etc/netns entries of runs whose process is gone."""
    listed = _sh("ip", "netns", "list", check=False).stdout.split()
    names = set(n for n in listed if NS_PATTERN.match(n))
    if os.path.isdir(NETNS_ETC):
        names |= set(n for n in os.listdir(NETNS_ETC) if NS_PATTERN.match(n))
    for name in sorted(names):
        pid = int(NS_PATTERN.match(name).group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        _sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(os.path.join(NETNS_ETC, name), ignore_errors=True)
        _sh("ip", "link", "del", "wwc{}{}".format(pid, name[-1]), check=False)
        _sh("ip", "link", "del", "wwc{}br".format(pid), check=False)


def _free_ids(count: int, start: int = 42000) -> List[int]:
    used = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    found = []
    candidate = start
    while len(found) < count:
        if candidate not in used:
            found.append(candidate)
        candidate += 1
    return found


def _subnet() -> str:
    """10.231.N.0/24 that no route of this host covers yet."""
    routes = _sh("ip", "-4", "route", "show", "table", "all").stdout
    for offset in range(200):
        third = (os.getpid() + offset) % 200 + 20
        prefix = "10.231.{}.".format(third)
        if prefix not in routes:
            return prefix
    raise RuntimeError("no free 10.231.N.0/24 for the test bridge")


class NetPebble(Pebble):
    """tests/support/pebble.py's Pebble, listening on ``address`` instead of
    127.0.0.1 (a subclass: the support module stays as it is)."""

    def __init__(self, workdir: str, address: str, eab_keys: int = 1) -> None:
        self.address = address
        super(NetPebble, self).__init__(workdir, eab_keys)
        self.url = "https://{}:{}/dir".format(address, self.listen_port)
        self.management_url = "https://{}:{}".format(address, self.management_port)

    def _make_tls_certs(self) -> None:
        super(NetPebble, self)._make_tls_certs()
        # a server certificate that also names the bridge address
        csr = os.path.join(self.workdir, "pebble-tls-server.csr")
        ext = os.path.join(self.workdir, "pebble-tls-server-net.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:{}\n".format(
                        self.address))
        _sh("openssl", "x509", "-req", "-in", csr, "-CA", self.ca_bundle,
            "-CAkey", self.ca_key, "-set_serial", "0x" + os.urandom(8).hex(),
            "-days", "30", "-sha256", "-extfile", ext, "-out", self.server_cert)

    def _write_config(self) -> None:
        import json
        super(NetPebble, self)._write_config()
        with open(self.config_path) as f:
            config = json.load(f)
        config["pebble"]["listenAddress"] = "{}:{}".format(self.address, self.listen_port)
        config["pebble"]["managementListenAddress"] = "{}:{}".format(
            self.address, self.management_port)
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=2)

    def env(self) -> Dict[str, str]:
        env = super(NetPebble, self).env()
        for key in ("NO_PROXY", "no_proxy"):
            env[key] = env[key] + "," + self.address
        return env


class Peer(object):
    """One peer host: a namespace with its own address, files, users and sshd."""

    def __init__(self, net: "Net", letter: str, address: str, uid: int) -> None:
        pid = os.getpid()
        self.net = net
        self.name = "peer-" + letter
        self.ns = "wwucl-{}-{}".format(pid, letter)
        self.address = address
        self.uid = uid
        self.link = "wwc{}{}".format(pid, letter)
        self.etc = os.path.join(NETNS_ETC, self.ns)
        #: the peer's /etc/letsencrypt, seen from the root namespace
        self.letsencrypt = os.path.join(self.etc, "letsencrypt")
        self.dir = os.path.join(net.base, self.name)
        self.systemctl = RecordingSystemctl(os.path.join(self.dir, "systemctl"))
        self.sshd = None  # type: Optional[subprocess.Popen]

    # -- building ----------------------------------------------------------------

    def create(self) -> None:
        _sh("ip", "netns", "add", self.ns)
        _sh("ip", "link", "add", self.link, "type", "veth", "peer", "name",
            self.link + "p")
        _sh("ip", "link", "set", self.link, "master", self.net.bridge)
        _sh("ip", "link", "set", self.link, "up")
        _sh("ip", "link", "set", self.link + "p", "netns", self.ns)
        self.ip("link", "set", self.link + "p", "name", "eth0")
        self.ip("addr", "add", self.address + "/24", "dev", "eth0")
        self.ip("link", "set", "eth0", "up")
        self.ip("link", "set", "lo", "up")
        os.makedirs(self.letsencrypt, mode=0o755)
        os.chmod(self.etc, 0o755)
        self._accounts_files()
        os.makedirs(os.path.join(self.dir, "work"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)

    def _accounts_files(self) -> None:
        """passwd and group with the service user at this peer's own uid."""
        for filename, fields in (("passwd", (2, 3)), ("group", (2,))):
            with open(os.path.join("/etc", filename)) as f:
                lines = [line for line in f.read().splitlines()
                         if line.split(":")[0] != SERVICE_USER]
            entry = [SERVICE_USER, "x", "", "", "", "/nonexistent", "/usr/sbin/nologin"]
            entry = entry[:7] if filename == "passwd" else entry[:4]
            for index in fields:
                entry[index] = str(self.uid)
            if filename == "group":
                entry[3] = ""
            lines.append(":".join(entry))
            path = os.path.join(self.etc, filename)
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            os.chmod(path, 0o644)

    def ip(self, *argv: str) -> None:
        _sh("ip", "-n", self.ns, *argv)

    def start_sshd(self) -> None:
        key = os.path.join(self.dir, "ssh_host_ed25519_key")
        if not os.path.exists(key):
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", key)
        config = os.path.join(self.dir, "sshd_config")
        with open(config, "w") as f:
            f.write("\n".join([
                "ListenAddress {}:22".format(self.address),
                "HostKey " + key,
                "PidFile " + os.path.join(self.dir, "sshd.pid"),
                "AuthorizedKeysFile " + self.net.authorized_keys,
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes yes",
                "X11Forwarding no",
                "AllowTcpForwarding no",
                "PrintMotd no",
                "SetEnv PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                "/sbin:/bin WWU_SYSTEMCTL_DIR={}".format(BIN, self.systemctl.dir),
            ]) + "\n")
        log = open(os.path.join(self.dir, "sshd.log"), "ab")
        self.sshd = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, SSHD, "-D", "-e", "-f", config],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.sshd.poll() is not None:
                raise RuntimeError("sshd of {} exited: {}".format(
                    self.name, open(os.path.join(self.dir, "sshd.log")).read()))
            try:
                socket.create_connection((self.address, 22), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop_sshd(self) -> None:
        proc, self.sshd = self.sshd, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def host_key_line(self) -> str:
        with open(os.path.join(self.dir, "ssh_host_ed25519_key.pub")) as f:
            kind, key = f.read().split()[:2]
        return "{} {} {}\n".format(self.address, kind, key)

    def destroy(self) -> None:
        self.stop_sshd()
        _sh("ip", "netns", "del", self.ns, check=False)
        _sh("ip", "link", "del", self.link, check=False)
        shutil.rmtree(self.etc, ignore_errors=True)

    # -- using ------------------------------------------------------------------

    def run(self, *argv: str, env: Optional[Dict[str, str]] = None,
            check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
        """A command inside the peer: its network, its /etc."""
        full = dict(os.environ, **(env or {}))
        proc = subprocess.run(["ip", "netns", "exec", self.ns] + list(argv),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, env=full, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError("on {}: {} exited {}\n--- stdout\n{}\n--- stderr\n{}".format(
                self.name, " ".join(argv), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def certbot(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """certbot on the peer (its /etc/letsencrypt) against Pebble."""
        return self.run(certbot_executable(), *(list(args) + [
            "--work-dir", os.path.join(self.dir, "work"),
            "--logs-dir", os.path.join(self.dir, "logs"), "--non-interactive"]),
            env=dict(self.net.pebble.env(), **self.systemctl.env()), check=check)

    def read_as(self, user: str, path: str) -> bool:
        """Whether ``user`` (this peer's) can read ``path`` (this peer's)."""
        return self.run("runuser", "-u", user, "--", "cat", path,
                        check=False).returncode == 0

    def uid_of(self, user: str) -> int:
        return int(self.run("id", "-u", user).stdout.strip())

    def getfacl(self, path: str) -> str:
        return self.run("getfacl", "-pn", path).stdout

    def path(self, *parts: str) -> str:
        """A file of the peer's /etc/letsencrypt, seen from the root namespace."""
        return os.path.join(self.letsencrypt, *parts)

    def reset(self) -> None:
        """An empty /etc/letsencrypt and no recorded systemctl calls."""
        for entry in os.listdir(self.letsencrypt):
            full = os.path.join(self.letsencrypt, entry)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        self.systemctl.clear()
        if self.sshd is None:
            self.start_sshd()
        _sh("ip", "link", "set", self.link, "up")

    def down(self) -> None:
        """Unreachable: the bridge port goes down, so connects time out."""
        _sh("ip", "link", "set", self.link, "down")

    def up(self) -> None:
        _sh("ip", "link", "set", self.link, "up")

    def blackhole(self) -> None:
        """Silent: inside the peer's namespace a blackhole route swallows
        every packet to the origin (the bridge address), so the peer's
        address answers nothing and a connect waits for its timeout."""
        self.ip("route", "replace", "blackhole", self.net.address + "/32")

    def unblackhole(self) -> None:
        self.ip("route", "del", "blackhole", self.net.address + "/32")

    def logins(self) -> int:
        """ssh logins this peer's sshd accepted so far (its log: one
        'Accepted publickey' line per authenticated connection)."""
        try:
            with open(os.path.join(self.dir, "sshd.log"), errors="replace") as f:
                return sum(1 for line in f if line.startswith("Accepted publickey for "))
        except OSError:
            return 0


class Net(object):
    """The bridge, the peers, Pebble, the client key and the cluster config."""

    def __init__(self, count: int = 2) -> None:
        os.makedirs(TEST_BASE, exist_ok=True)
        os.chmod(TEST_BASE, 0o755)
        # sshd's StrictModes wants root-owned, not group/world-writable
        # parents up to /, which /var/tmp is not: the sshd files live in /run
        self.base = tempfile.mkdtemp(prefix="certbot-wwu-cluster-", dir="/run")
        os.chmod(self.base, 0o755)
        prefix = _subnet()
        self.bridge = "wwc{}br".format(os.getpid())
        self.address = prefix + "1"
        self.made_privsep = False
        self.made_letsencrypt = False
        self.made_netns_etc = False
        uids = _free_ids(count)
        self.peers = [Peer(self, letter, prefix + str(2 + i), uids[i])
                      for i, letter in enumerate("abcdefghijklmnop"[:count])]
        self.identity = os.path.join(self.base, "id_ed25519")
        self.authorized_keys = os.path.join(self.base, "authorized_keys")
        self.known_hosts = os.path.join(self.base, "known_hosts")
        self.presets_dir = os.path.join(self.base, "presets.d")
        #: certbot-wwu on the origin and on the peers (the same machine)
        self.command = os.path.join(self.base, "certbot-wwu")
        self.pebble = None  # type: Optional[NetPebble]

    def up(self) -> "Net":
        remove_stale()
        if not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", 0o755)
            self.made_privsep = True
        # ip netns exec can only bind over what exists
        if not os.path.isdir("/etc/letsencrypt"):
            os.makedirs("/etc/letsencrypt", 0o755)
            self.made_letsencrypt = True
        if not os.path.isdir(NETNS_ETC):
            os.makedirs(NETNS_ETC, 0o755)
            self.made_netns_etc = True
        with open(self.command, "w") as f:
            f.write(WRAPPER.format(python=sys.executable))
        os.chmod(self.command, 0o755)
        _sh("ip", "link", "add", self.bridge, "type", "bridge")
        _sh("ip", "addr", "add", self.address + "/24", "dev", self.bridge)
        _sh("ip", "link", "set", self.bridge, "up")
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "certbot-wwu-test",
            "-f", self.identity)
        shutil.copy(self.identity + ".pub", self.authorized_keys)
        os.chmod(self.authorized_keys, 0o600)
        for peer in self.peers:
            peer.create()
            peer.start_sshd()
        with open(self.known_hosts, "w") as f:
            f.write("".join(peer.host_key_line() for peer in self.peers))
        self.write_config()
        self.pebble = NetPebble(os.path.join(self.base, "pebble"), self.address,
                                eab_keys=50).start()
        return self

    def write_config(self, extra: str = "", share: str = "certificates, account") -> None:
        os.makedirs(self.presets_dir, exist_ok=True)
        with open(os.path.join(self.presets_dir, "cluster.conf"), "w") as f:
            f.write("\n".join([
                "[cluster]",
                "peers = " + ", ".join(p.name for p in self.peers),
                "ssh_identity = " + self.identity,
                "known_hosts = " + self.known_hosts,
                "connect_timeout = 2",
                "remote_command = " + self.command,
                "share = " + share,
                extra,
                "",
                "[cluster peers]",
            ] + ["{} = root@{}".format(p.name, p.address) for p in self.peers]) + "\n")

    def down(self) -> None:
        if self.pebble is not None:
            self.pebble.stop()
        for peer in self.peers:
            peer.destroy()
        _sh("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.base, ignore_errors=True)
        if self.made_netns_etc:
            try:
                os.rmdir(NETNS_ETC)
            except OSError:
                pass
        for flag, path in ((self.made_letsencrypt, "/etc/letsencrypt"),
                           (self.made_privsep, "/run/sshd")):
            if flag:
                try:
                    os.rmdir(path)
                except OSError:
                    pass

    def env(self) -> Dict[str, str]:
        return {"CERTBOT_WWU_PRESETS_DIR": self.presets_dir}

    def peer(self, name: str) -> Peer:
        return next(p for p in self.peers if p.name == name)


@pytest.fixture(scope="session")
def net():
    reason = missing()
    if reason:
        pytest.skip(reason)
    host.ensure_test_accounts()
    network = Net()
    try:
        network.up()
    except BaseException:
        network.down()
        raise
    yield network
    network.down()


@pytest.fixture
def peers(net):
    """Both peers, up and empty."""
    for peer in net.peers:
        peer.reset()
    net.write_config()
    return net.peers


@pytest.fixture
def origin(net, peers):
    """The renewing host: the root namespace, a fresh certbot tree of its own,
    registered at Pebble with EAB."""
    os.makedirs(TEST_BASE, exist_ok=True)
    root = tempfile.mkdtemp(dir=TEST_BASE)
    os.chmod(root, 0o755)
    bot = Certbot(root, net.pebble, RecordingSystemctl(os.path.join(root, "systemctl")),
                  extra_env=net.env())
    bot.register()
    yield bot
    shutil.rmtree(root, ignore_errors=True)


def wwu(bot: Certbot, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """certbot-wwu on the origin, with the origin's environment."""
    command = os.path.join(os.path.dirname(bot.env["CERTBOT_WWU_PRESETS_DIR"]),
                           "certbot-wwu")
    proc = subprocess.run([command] + list(argv), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=bot.env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError("certbot-wwu {} exited {}\n--- stdout\n{}\n--- stderr\n{}"
                             .format(" ".join(argv), proc.returncode, proc.stdout,
                                     proc.stderr))
    return proc


def account_ids(config_dir: str, server: str) -> List[str]:
    from certbot_wwu.accounts import server_path
    directory = os.path.join(config_dir, "accounts", server_path(server))
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def free_http_port() -> str:
    return str(free_port())
