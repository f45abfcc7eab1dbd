"""Share an ACME account or a certificate lineage with the peers of a cluster.

The recipe's advice (DESIGN §8): servers that the same people administer may
share one ACME account; servers administered by different people need
separate ACME-IDs. Two patterns follow, both over the existing tools (OpenSSH
and rsync, every command an argument list):

* shared account: ``accounts/<server path>/<id>/`` of one account is copied
  to a peer, which can then obtain certificates under the same ACME ID
  without registering (EAB credentials are single-use). Only on request, and
  only when the site allows it (``share = account``).
* shared certificate: one node renews; after each deployment it pushes
  ``archive/NAME`` (the current version), ``live/NAME`` and a peer's version
  of ``renewal/NAME.conf`` (``autorenew = False``, no ``push_to``, the peer's
  paths) to each peer and runs ``certbot-wwu deploy --cert-name NAME`` there,
  so each peer grants its own users by name and acts on its own units.

Configuration lives in the site preset files (``presets.presets_dir()``)::

    [cluster]
    peers = web2, web3
    known_hosts = /etc/certbot-wwu/known_hosts
    ssh_identity = /etc/certbot-wwu/cluster_ed25519

    [cluster peers]
    web2 = root@web2.uni-muenster.de
    web3 = web3.uni-muenster.de:2222

Pushing is cheap when a peer is current: one ssh command reads the peer's
``live/NAME/cert.pem`` link and checksum, and a local record
(``CONFIG/wwu-acl/NAME.cluster.json``) says whether that version was
deployed there. A peer that cannot be reached does not stop the others;
every peer's outcome is one line, and the run fails (ClusterError) if any
peer failed, so the next run catches it up.
"""
import configparser
import contextlib
import errno
import fcntl
import hashlib
import io
import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from certbot_wwu import presets
from certbot_wwu.errors import WwuError
from certbot_wwu.files import write_atomic
from certbot_wwu.lineage import KINDS, Lineage

logger = logging.getLogger(__name__)


class ClusterError(WwuError):
    """The cluster configuration is wrong, or a peer could not be brought up
    to date."""


# --- configuration ------------------------------------------------------------

SECTION = "cluster"
PEERS_SECTION = "cluster peers"
DEFAULT_KNOWN_HOSTS = "/etc/certbot-wwu/known_hosts"
DEFAULT_CONFIG_DIR = "/etc/letsencrypt"
DEFAULT_REMOTE_COMMAND = "certbot-wwu"
SHARE_CHOICES = ("certificates", "account")

KEYS = ("peers", "ssh_user", "ssh_port", "ssh_identity", "ssh_options",
        "known_hosts", "connect_timeout", "command_timeout", "remote_command",
        "rsync_path", "sudo", "config_dir", "share", "name")

#: ssh options certbot-wwu sets itself and a site may not weaken or move
_FIXED_SSH_OPTIONS = {
    "stricthostkeychecking": "host keys are always checked against known_hosts",
    "userknownhostsfile": "use the known_hosts key",
    "globalknownhostsfile": "use the known_hosts key",
    "knownhostscommand": "use the known_hosts key",
    "updatehostkeys": "certbot-wwu never changes known_hosts",
    "batchmode": "certbot-wwu never asks for a password",
    "port": "use ssh_port or host:port",
    "user": "use ssh_user or user@host",
    "identityfile": "use ssh_identity",
    "connecttimeout": "use connect_timeout",
}

_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@/-]*\Z")
_SSH_OPTION = re.compile(r"^([A-Za-z][A-Za-z0-9]*)=(\S.*)\Z")
_BAD = re.compile(r"[\x00-\x1f\x7f]")
_TARGET = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]*\]|[^:\[\]@\s]+)"
                     r"(?::(?P<port>[^:]*))?\Z")


def _host(value: str) -> str:
    """A host name, IPv4 address or bracketed IPv6 address; ValueError if not."""
    if value.startswith("["):
        try:
            return "[{}]".format(ipaddress.IPv6Address(value[1:-1]))
        except ValueError:
            raise ValueError("{!r} is not an IPv6 address in brackets".format(value))
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if not value or not all(_LABEL.match(label) for label in labels) \
            or labels[-1].isdigit():
        raise ValueError("{!r} is not a host name or address".format(value))
    return value.rstrip(".").lower()


def _port(value: str) -> int:
    if not value.strip().isdigit() or not 0 < int(value) < 65536:
        raise ValueError("{!r} is not a port number from 1 to 65535".format(value))
    return int(value)


class Peer(object):
    """One peer: where ssh goes and what the outcome line calls it."""

    def __init__(self, label: str, user: str, host: str, port: int) -> None:
        self.label = label
        self.user = user
        #: as ssh and rsync take it (IPv6 in brackets for rsync only)
        self.host = host
        self.port = port

    @property
    def ssh_host(self) -> str:
        return self.host.strip("[]")

    @property
    def key(self) -> str:
        """Stable identity for the local record."""
        return "{}@{}:{}".format(self.user, self.host, self.port)

    def __repr__(self) -> str:
        return "Peer({!r}, {})".format(self.label, self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Peer) and self.key == other.key


def parse_target(value: str, default_user: str = "root",
                 default_port: int = 22) -> Tuple[str, str, int]:
    """``[user@]host[:port]`` -> (user, host, port); ValueError if not."""
    match = _TARGET.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("{!r} is not [user@]host[:port]".format(value))
    user = match.group("user") or default_user
    if not _USER.match(user):
        raise ValueError("{!r} has the user name {!r}, which is not valid".format(
            value, user))
    host = _host(match.group("host"))
    port = default_port if match.group("port") is None else _port(match.group("port"))
    return user, host, port


def _path(value: str, what: str = "path") -> str:
    value = value.strip()
    if not os.path.isabs(value) or not _SAFE_PATH.match(value):
        raise ValueError("{!r} is not an absolute {} of letters, digits and "
                         "'._+@/-'".format(value, what))
    return os.path.normpath(value)


def _command(value: str) -> List[str]:
    try:
        words = shlex.split(value)
    except ValueError as err:
        raise ValueError("{!r} is not a command line ({})".format(value, err))
    if not words or any(_BAD.search(w) for w in words):
        raise ValueError("{!r} is not a command (give a program, e.g. "
                         "/usr/bin/certbot-wwu)".format(value))
    return words


def _ssh_options(value: str) -> List[str]:
    try:
        words = shlex.split(value)
    except ValueError as err:
        raise ValueError("{!r} is not a list of Option=value ({})".format(value, err))
    options = []
    for word in words:
        word = word.rstrip(",")
        if not word:
            continue
        match = _SSH_OPTION.match(word)
        if not match or _BAD.search(word):
            raise ValueError("{!r} is not an ssh Option=value (as in ssh -o)".format(word))
        why = _FIXED_SSH_OPTIONS.get(match.group(1).lower())
        if why:
            raise ValueError("{} is set by certbot-wwu ({})".format(match.group(1), why))
        options.append(word)
    return options


def _seconds(low: int, high: int):
    def check(value: str) -> int:
        if not value.strip().isdigit() or not low <= int(value) <= high:
            raise ValueError("{!r} is not a number of seconds from {} to {}".format(
                value, low, high))
        return int(value)
    return check


def _share(value: str) -> Tuple[str, ...]:
    items = [i for i in re.split(r"[,\s]+", value.strip().lower()) if i]
    for item in items:
        if item not in SHARE_CHOICES:
            raise ValueError("{!r} is not one of {}".format(item, ", ".join(SHARE_CHOICES)))
    return tuple(items)


def _user(value: str) -> str:
    if not _USER.match(value.strip()):
        raise ValueError("{!r} is not a user name".format(value))
    return value.strip()


def _origin_name(value: str) -> str:
    if not _NAME.match(value.strip()):
        raise ValueError("{!r} is not a name of letters, digits, '.', '_' and "
                         "'-'".format(value))
    return value.strip()


_CHECKS = {
    "ssh_user": _user,
    "ssh_port": _port,
    "ssh_identity": lambda v: _path(v, "file name"),
    "ssh_options": _ssh_options,
    "known_hosts": lambda v: _path(v, "file name"),
    "connect_timeout": _seconds(1, 300),
    "command_timeout": _seconds(10, 86400),
    "remote_command": _command,
    "rsync_path": _command,
    "sudo": presets.parse_boolean,
    "config_dir": lambda v: _path(v, "directory"),
    "share": _share,
    "name": _origin_name,
}


class ClusterConfig(object):
    """The [cluster] and [cluster peers] settings, validated."""

    def __init__(self) -> None:
        self.source = None  # type: Optional[str]
        #: the site files' directory
        self.directory = presets.presets_dir()[0]
        self.peers_source = None  # type: Optional[str]
        self.default_peers = []  # type: List[str]
        self.named = {}  # type: Dict[str, Tuple[str, str, Optional[int]]]
        self.ssh_user = "root"
        self.ssh_port = 22
        self.ssh_identity = None  # type: Optional[str]
        self.ssh_options = []  # type: List[str]
        self.known_hosts = DEFAULT_KNOWN_HOSTS
        self.connect_timeout = 10
        self.command_timeout = 900
        self.remote_command = [DEFAULT_REMOTE_COMMAND]
        self.rsync_path = ["rsync"]
        self.sudo = False
        self.config_dir = DEFAULT_CONFIG_DIR
        self.share = ("certificates",)
        self.name = socket.gethostname().split(".")[0] or "localhost"

    def where(self) -> str:
        """Where cluster settings are (or would go), for messages."""
        if self.source:
            return "the [cluster] section of {}".format(self.source)
        return "a [cluster] section in a file in {} (there is none)".format(
            self.directory)

    def peer(self, spec: str) -> Peer:
        """A peer by name from [cluster peers], or ``[user@]host[:port]``."""
        spec = spec.strip()
        if spec.lower() in self.named:  # configparser lower-cases the names
            user, host, port = self.named[spec.lower()]
            return Peer(spec, user or self.ssh_user, host, port or self.ssh_port)
        try:
            user, host, port = parse_target(spec, self.ssh_user, self.ssh_port)
        except ValueError as err:
            raise ClusterError("Peer {}: name one from [cluster peers]{} or give "
                               "[user@]host[:port].".format(
                                   err, " (" + ", ".join(self.named) + ")"
                                   if self.named else ""))
        return Peer(spec, user, host, port)

    def peers(self, specs: Sequence[str]) -> List[Peer]:
        if not specs:
            specs = self.default_peers
        if not specs:
            raise ClusterError(
                "No peers to go to: give --to PEER[,PEER...] or set peers in "
                "{}.".format(self.where()))
        found = []  # type: List[Peer]
        for spec in specs:
            peer = self.peer(spec)
            if peer not in found:
                found.append(peer)
        return found

    def require_share(self, what: str) -> None:
        if what in self.share:
            return
        if what == "account":
            raise ClusterError(
                "Sharing ACME accounts is not enabled: only servers that the same "
                "people administer may share an ACME ID; to allow it, set share "
                "= certificates, account in {}.".format(self.where()))
        raise ClusterError("Pushing certificates is not enabled; to allow it, add "
                           "certificates to share in {}.".format(self.where()))

    def require_known_hosts(self) -> None:
        if not os.path.isfile(self.known_hosts):
            raise ClusterError(
                "The known_hosts file {} does not exist; create it with each "
                "peer's host key (ssh-keyscan -p PORT HOST, after comparing the "
                "fingerprint with ssh-keygen -lf on the peer), or name it with "
                "known_hosts in {}.".format(self.known_hosts, self.where()))


def _parser() -> configparser.ConfigParser:
    # the same dialect as presets.py: no [DEFAULT] magic, no interpolation
    return configparser.ConfigParser(interpolation=None, strict=True,
                                     delimiters=("=",),
                                     default_section="\0 no default")


def _files(directory: Optional[str]) -> List[str]:
    path, chosen = presets.presets_dir(directory)
    if not os.path.isdir(path):
        if chosen:
            raise ClusterError(
                "The presets directory {} does not exist; create it or name the "
                "right one (--presets-dir or {}).".format(path, presets.DIR_ENV))
        return []
    try:
        names = sorted(os.listdir(path))
    except OSError as err:
        raise ClusterError("Cannot list the presets directory {}: {}; check its "
                           "permissions.".format(path, err.strerror or err))
    return [os.path.join(path, n) for n in names
            if not n.startswith(".") and n.endswith(presets.FILE_SUFFIXES)]


def load_config(directory: Optional[str] = None) -> ClusterConfig:
    """The cluster settings of the site files (defaults without any)."""
    config = ClusterConfig()
    config.directory = presets.presets_dir(directory)[0]
    for path in _files(directory):
        parser = _parser()
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f, source=path)
        except OSError as err:
            raise ClusterError("Cannot read {}: {}; check its permissions.".format(
                path, err.strerror or err))
        except UnicodeDecodeError:
            raise ClusterError("{} is not UTF-8 text; save it as UTF-8.".format(path))
        except configparser.Error as err:
            raise ClusterError("In {}, {}; fix that line.".format(
                path, presets._ini_problem(err)))  # pylint: disable=protected-access
        for section in parser.sections():
            words = section.lower().split()
            if not words or words[0] != SECTION:
                continue
            if words == [SECTION]:
                if config.source:
                    raise ClusterError("Both {} and {} have a [cluster] section; keep "
                                       "one.".format(config.source, path))
                _read_main(config, path, section, parser[section])
            elif words == SECTION.split() + ["peers"]:
                if config.peers_source:
                    raise ClusterError("Both {} and {} have a [cluster peers] "
                                       "section; keep one.".format(
                                           config.peers_source, path))
                _read_peers(config, path, section, parser[section])
            else:
                raise ClusterError("In {}, section [{}] is not [cluster] or [cluster "
                                   "peers]; rename it.".format(path, section))
    for spec in config.default_peers:
        try:
            config.peer(spec)
        except ClusterError as err:
            raise ClusterError("In {}, section [cluster], key peers: {}".format(
                config.source, str(err)[0].lower() + str(err)[1:]))
    return config


def _read_main(config: ClusterConfig, path: str, section: str, values: Any) -> None:
    config.source = path

    def fail(key: str, message: str) -> ClusterError:
        return ClusterError("In {}, section [{}], key {}: {}.".format(
            path, section, key, message))

    for key in values:
        if key not in KEYS:
            raise fail(key, "unknown key; use {}".format(", ".join(KEYS)))
    for key in KEYS:
        if key not in values:
            continue
        raw = values[key]
        if key == "peers":
            config.default_peers = [p for p in re.split(r"[,\s]+", raw.strip()) if p]
            continue
        if not raw.strip() and key not in ("ssh_options", "share"):
            raise fail(key, "is empty; give a value or remove the line")
        try:
            setattr(config, key, _CHECKS[key](raw))
        except ValueError as err:
            raise fail(key, str(err))
    if config.ssh_identity and not os.path.isfile(config.ssh_identity):
        raise fail("ssh_identity", "{} does not exist; create the key (ssh-keygen -t "
                                   "ed25519 -N '' -f {}) or correct the path".format(
                                       config.ssh_identity, config.ssh_identity))


def _read_peers(config: ClusterConfig, path: str, section: str, values: Any) -> None:
    config.peers_source = path
    for name in values:
        if not _NAME.match(name):
            raise ClusterError("In {}, section [{}]: {!r} is not a peer name of "
                               "letters, digits, '.', '_' and '-'.".format(
                                   path, section, name))
        try:
            match = _TARGET.match(values[name].strip())
            user, host, port = parse_target(values[name])
        except ValueError as err:
            raise ClusterError("In {}, section [{}], key {}: {}.".format(
                path, section, name, err))
        # user and port fall back to [cluster]'s, whichever file comes first
        config.named[name] = (user if match and match.group("user") else "",
                              host, port if match and match.group("port") else None)


# --- running ssh and rsync ----------------------------------------------------

class Result(object):
    def __init__(self, argv: List[str], code: int, out: str, err: str,
                 timed_out: bool = False) -> None:
        self.argv, self.code, self.out, self.err = argv, code, out, err
        self.timed_out = timed_out

    def last_error(self) -> str:
        lines = [line.strip() for line in self.err.splitlines() if line.strip()]
        for line in reversed(lines):
            if not line.startswith("rsync error:"):
                return line.rstrip(".")
        return lines[-1].rstrip(".") if lines else "exit status {}".format(self.code)


def _run(argv: List[str], timeout: int, stdin: Optional[bytes] = None) -> Result:
    logger.debug("Running %s", " ".join(shlex.quote(a) for a in argv))
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None
                                else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as err:
        raise ClusterError("Cannot run {}: {}; install it (Debian: apt install "
                           "openssh-client rsync).".format(argv[0], err.strerror or err))
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return Result(argv, -1, out.decode("utf-8", "replace"),
                      err.decode("utf-8", "replace"), timed_out=True)
    return Result(argv, proc.returncode, out.decode("utf-8", "replace"),
                  err.decode("utf-8", "replace"))


class Transport(object):
    """ssh and rsync to the peers, with strict host keys and no prompts."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config

    def ssh_base(self, peer: Peer) -> List[str]:
        c = self.config
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", "UserKnownHostsFile=" + c.known_hosts,
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no",
                "-o", "ConnectTimeout={}".format(c.connect_timeout),
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
                "-o", "LogLevel=ERROR", "-p", str(peer.port), "-l", peer.user]
        if c.ssh_identity:
            argv += ["-i", c.ssh_identity, "-o", "IdentitiesOnly=yes"]
        for option in c.ssh_options:
            argv += ["-o", option]
        return argv

    def remote_words(self, words: List[str]) -> str:
        """The command line ssh hands to the peer's shell: every word quoted."""
        prefix = ["sudo", "-n"] if self.config.sudo else []
        return " ".join(shlex.quote(w) for w in prefix + list(words))

    def ssh_argv(self, peer: Peer, words: List[str]) -> List[str]:
        return self.ssh_base(peer) + ["--", peer.ssh_host, self.remote_words(words)]

    def ssh(self, peer: Peer, words: List[str], timeout: Optional[int] = None,
            stdin: Optional[bytes] = None) -> Result:
        return _run(self.ssh_argv(peer, words),
                    timeout or self.config.command_timeout, stdin)

    def rsync_argv(self, peer: Peer, sources: List[str], dest: str,
                   extra: Sequence[str] = ()) -> List[str]:
        rsync_path = (["sudo", "-n"] if self.config.sudo else []) + self.config.rsync_path
        rsh = " ".join(shlex.quote(w) for w in self.ssh_base(peer))
        return (["rsync", "-rltgo", "--relative", "--omit-dir-times",
                 "--timeout={}".format(max(60, self.config.connect_timeout * 3)),
                 "--rsync-path=" + " ".join(shlex.quote(w) for w in rsync_path),
                 "-e", rsh] + list(extra) + sources
                + ["{}:{}/".format(peer.host, dest.rstrip("/"))])

    def rsync(self, peer: Peer, sources: List[str], dest: str,
              extra: Sequence[str] = ()) -> Result:
        return _run(self.rsync_argv(peer, sources, dest, extra),
                    self.config.command_timeout)


class PeerFailed(Exception):
    """One peer's step failed; the message is the outcome text."""


def _explain(step: str, peer: Peer, result: Result, config: ClusterConfig) -> str:
    if result.timed_out:
        return "{} timed out after {} s".format(step, config.command_timeout)
    err = result.err
    if "Host key verification failed" in err:
        return ("the host key of {} is not in {} or has changed; compare its "
                "fingerprint and add it (ssh-keyscan -p {} {})".format(
                    peer.ssh_host, config.known_hosts, peer.port, peer.ssh_host))
    if "Permission denied" in err and ("publickey" in err or "password" in err):
        return "ssh login as {} was refused ({})".format(peer.user, result.last_error())
    if result.code == 255 or "connection unexpectedly closed" in err:
        for line in err.splitlines():
            if line.startswith("ssh:") or "Connection" in line or "timed out" in line:
                return "cannot connect: {}".format(line.strip().rstrip("."))
        return "cannot connect: {}".format(result.last_error())
    if result.code == 127:
        return "{} failed: {} (set remote_command or rsync_path in {})".format(
            step, result.last_error(), config.where())
    message = result.last_error()
    if message.startswith("certbot-wwu: "):
        message = message[len("certbot-wwu: "):]
    return "{} failed (exit {}): {}".format(step, result.code, message)


class Outcome(object):
    """What happened with one peer: one line of the report."""

    def __init__(self, peer: Peer, ok: bool, text: str,
                 record: Optional[Dict[str, Any]] = None) -> None:
        self.peer, self.ok, self.text, self.record = peer, ok, text, record

    @property
    def line(self) -> str:
        return "{}: {}{}".format(self.peer.label, "" if self.ok else "FAILED: ",
                                 self.text)

    def __repr__(self) -> str:
        return "Outcome({!r})".format(self.line)


def _each(peers: List[Peer], work) -> List[Outcome]:
    """``work(peer) -> Outcome`` for every peer at once; one slow or dead peer
    delays none of the others."""
    def guarded(peer: Peer) -> Outcome:
        try:
            return work(peer)
        except PeerFailed as err:
            return Outcome(peer, False, str(err))
        except WwuError as err:
            return Outcome(peer, False, str(err).rstrip("."))
        except Exception as err:  # pylint: disable=broad-except
            logger.debug("Peer %s failed", peer.label, exc_info=True)
            return Outcome(peer, False, "unexpected {}: {}".format(
                type(err).__name__, err))
    if len(peers) == 1:
        return [guarded(peers[0])]
    with ThreadPoolExecutor(max_workers=min(8, len(peers))) as pool:
        return list(pool.map(guarded, peers))


def failed_error(what: str, outcomes: List[Outcome]) -> Optional[ClusterError]:
    """One sentence naming every failed peer, or None if all went well."""
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return None
    return ClusterError("{} failed for {} of {} peers: {}; {}.".format(
        what, len(failed), len(outcomes),
        "; ".join("{} ({})".format(o.peer.label, o.text) for o in failed),
        "the next run tries again" if len(failed) == len(outcomes)
        else "the others are done, and the next run tries again"))


# --- shared certificate ---------------------------------------------------------

MARKER = "# certbot-wwu-cluster-origin:"
#: every line certbot-wwu adds starts with this, so the next push replaces them
_OURS = "# certbot-wwu-cluster"
_MARKER_TEXT = (
    "{marker} {origin}\n"
    "# certbot-wwu-cluster: renewed on {origin} and pushed here by certbot-wwu,\n"
    "# certbot-wwu-cluster: which also deploys it here; this host does not renew\n"
    "# certbot-wwu-cluster: it (autorenew = False). To take it over, see the\n"
    "# certbot-wwu-cluster: certbot-wwu documentation, section Clusters.\n")
_TOP_PATHS = {"archive_dir": "archive/{}", "cert": "live/{}/cert.pem",
              "privkey": "live/{}/privkey.pem", "chain": "live/{}/chain.pem",
              "fullchain": "live/{}/fullchain.pem"}
_KEYLINE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=")
_CERT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}\Z")
_VERSION_FILE = re.compile(r"^cert(\d+)\.pem\Z")
#: [renewalparams] keys that are the origin's and mean nothing on a peer
_DROP_PARAMS = ("wwu_acl_push_to", "autorenew", "work_dir", "logs_dir")
#: sections that are the origin's renewal state (certbot >= 4.1 keeps the
#: ARI retry time there and rewrites it on every 'certbot renew')
_DROP_SECTIONS = ("[acme_renewal_info]",)


def peer_renewal_conf(text: str, name: str, config_dir: str, origin: str) -> str:
    """The origin's renewal conf as a peer should have it.

    The peer's paths; ``autorenew = False`` in ``[renewalparams]`` so that the
    peer's ``certbot renew`` leaves the lineage alone; no ``wwu_acl_push_to``
    (a peer must not push on); without other wwu-acl settings also no
    ``installer`` (the peer's renew would fail on an installer with nothing
    to do); none of the origin's renewal state (work and logs directories,
    ``[acme_renewal_info]``). Every other line stays as certbot wrote it.
    """
    lines = [line for line in text.splitlines() if not line.startswith(_OURS)]
    out = []  # type: List[str]
    section = ""
    params = []  # type: List[str]
    params_at = -1
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.split("#", 1)[0].strip()
            if section in _DROP_SECTIONS:
                continue
            out.append(line)
            if section == "[renewalparams]":
                params_at = len(out)
            continue
        if section in _DROP_SECTIONS:
            continue
        match = _KEYLINE.match(line)
        key = match.group(1) if match else None
        if not section and key in _TOP_PATHS:
            out.append("{} = {}".format(key, os.path.join(
                config_dir, _TOP_PATHS[key].format(name))))
            continue
        if section == "[renewalparams]":
            if key in _DROP_PARAMS:
                continue
            if key == "config_dir":
                line = "config_dir = {}".format(config_dir)
            params.append(key or "")
        out.append(line)
    if params_at < 0:
        out.append("[renewalparams]")
        params_at = len(out)
    settings = [k for k in params if k.startswith("wwu_acl_")]
    if not settings:
        out = [line for i, line in enumerate(out) if not (
            i >= params_at and _KEYLINE.match(line)
            and _KEYLINE.match(line).group(1) == "installer"
            and line.split("=", 1)[1].strip() == "wwu-acl")]
    # autorenew goes after the last [renewalparams] key, before any [[sub]]
    end = params_at
    for i in range(params_at, len(out)):
        if out[i].strip().startswith("["):
            break
        if out[i].strip():
            end = i + 1
    out.insert(end, "autorenew = False")
    head = _MARKER_TEXT.format(marker=MARKER, origin=origin)
    return head + "\n".join(out) + "\n"


def has_deploy_settings(conf_text: str) -> bool:
    """Whether a (peer) renewal conf stores wwu-acl settings to deploy with."""
    section = ""
    for line in conf_text.splitlines():
        if line.strip().startswith("["):
            section = line.strip().split("#", 1)[0].strip()
        match = _KEYLINE.match(line)
        if section == "[renewalparams]" and match \
                and match.group(1).startswith("wwu_acl_") \
                and match.group(1) != "wwu_acl_push_to":
            return True
    return False


class PeerState(object):
    """What the probe found on a peer."""

    def __init__(self, version: Optional[int] = None, sha256: Optional[str] = None,
                 origin: Optional[str] = None, exists: bool = False) -> None:
        self.version, self.sha256, self.origin, self.exists = (
            version, sha256, origin, exists)


def probe_words(config_dir: str, name: str) -> List[str]:
    """A read-only look at the peer's lineage: the cert.pem link, its
    checksum and the origin marker of its renewal conf (all paths quoted)."""
    live = os.path.join(config_dir, "live", name, "cert.pem")
    conf = os.path.join(config_dir, "renewal", name + ".conf")
    script = (
        'l={}; c={}; '
        'if [ -L "$l" ] || [ -e "$l" ]; then printf "link %s\\n" "$(readlink -- "$l")"; '
        'printf "sha256 %s\\n" "$(sha256sum < "$l")"; fi; '
        'if [ -f "$c" ]; then grep -m 1 -e {} -- "$c" || :; fi; echo end'
    ).format(shlex.quote(live), shlex.quote(conf), shlex.quote("^" + MARKER))
    return ["sh", "-c", script]


def parse_probe(out: str) -> PeerState:
    lines = out.splitlines()
    if not lines or lines[-1].strip() != "end":
        raise PeerFailed("the peer's answer was cut short ({!r})".format(out[-200:]))
    state = PeerState()
    for line in lines[:-1]:
        if line.startswith("link "):
            state.exists = True
            match = _VERSION_FILE.match(os.path.basename(line[5:].strip()))
            state.version = int(match.group(1)) if match else None
        elif line.startswith("sha256 "):
            digest = line[7:].split()
            state.sha256 = digest[0] if digest and len(digest[0]) == 64 else None
        elif line.startswith(MARKER):
            state.origin = line[len(MARKER):].strip() or None
    return state


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _record_path(lineage: Lineage) -> str:
    return os.path.join(lineage.config_dir, "wwu-acl", lineage.name + ".cluster.json")


def load_record(lineage: Lineage) -> Dict[str, Dict[str, Any]]:
    try:
        with open(_record_path(lineage)) as f:
            data = json.load(f)
        peers = data["peers"]
        if isinstance(peers, dict):
            return {k: v for k, v in peers.items() if isinstance(v, dict)}
    except (OSError, ValueError, LookupError, TypeError):
        pass
    return {}


def _save_record(lineage: Lineage, record: Dict[str, Dict[str, Any]]) -> None:
    path = _record_path(lineage)
    _private_dir(os.path.dirname(path))
    write_atomic(path, json.dumps({"peers": record}, indent=1, sort_keys=True) + "\n",
                 0o600)


def _private_dir(path: str) -> None:
    os.makedirs(path, 0o700, exist_ok=True)


@contextlib.contextmanager
def _lock(path: str) -> Iterator[None]:
    _private_dir(os.path.dirname(path))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _copy_file(src: str, dest: str, mode: int) -> None:
    """Copy bytes with ``mode`` set before any byte is written, owner and
    mtime kept, and no extended attributes (the origin's ACL means other
    users on the peer)."""
    st = os.stat(src)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with open(src, "rb") as f:
            data = f.read()
        os.write(fd, data)
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))


def _intended_mode(path: str) -> int:
    """The mode certbot meant: group bits from the ACL's owning-group entry,
    not the mask that ``stat`` shows once an ACL exists."""
    from certbot_wwu import grants
    mode = os.stat(path).st_mode & 0o7777
    return (mode & ~0o070) | (grants.group_access(path) << 3)


def _mkdirs(root: str, relative: str, modes: Sequence[int]) -> str:
    path = root
    for part, mode in zip(relative.split("/"), modes):
        path = os.path.join(path, part)
        if not os.path.isdir(path):
            os.mkdir(path, 0o700)
        os.chmod(path, mode)
    return path


def stage_lineage(lineage: Lineage, conf_text: str, workdir: str) -> str:
    """A tree of exactly what a peer gets (current version only), in a 0700
    directory under the config dir."""
    _private_dir(workdir)
    stage = tempfile.mkdtemp(prefix=".push-", dir=workdir)
    try:
        files = lineage.current()
        archive = _mkdirs(stage, "archive/" + lineage.name, (0o700, 0o755))
        live = _mkdirs(stage, "live/" + lineage.name, (0o700, 0o755))
        for kind in KINDS:
            base = os.path.basename(files[kind])
            _copy_file(files[kind], os.path.join(archive, base), _intended_mode(files[kind]))
            os.symlink("../../archive/{}/{}".format(lineage.name, base),
                       os.path.join(live, kind + ".pem"))
        readme = os.path.join(lineage.live_dir, "README")
        if os.path.isfile(readme):
            _copy_file(readme, os.path.join(live, "README"), 0o644)
        renewal = _mkdirs(stage, "renewal", (0o755,))
        conf = os.path.join(renewal, lineage.name + ".conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(conf_text)
        os.chmod(conf, 0o644)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


class _Local(object):
    """The origin's side of one push."""

    def __init__(self, lineage: Lineage, config: ClusterConfig) -> None:
        if not _CERT_NAME.match(lineage.name):
            raise ClusterError(
                "Cannot push certificate {!r}: only names of letters, digits and "
                "'._@+-' are sent to peers.".format(lineage.name))
        self.lineage = lineage
        files = lineage.current()
        match = _VERSION_FILE.match(os.path.basename(files["cert"]))
        if not match:
            raise ClusterError("{} does not point to a versioned archive file "
                               "(certN.pem).".format(lineage.live_path("cert")))
        self.version = int(match.group(1))
        self.sha256 = _sha256(files["cert"])
        try:
            with open(lineage.renewal_conf) as f:
                original = f.read()
        except OSError as err:
            raise ClusterError("Cannot read the renewal configuration {}: {}.".format(
                lineage.renewal_conf, err.strerror or err))
        self.conf = peer_renewal_conf(original, lineage.name, config.config_dir,
                                      config.name)
        self.conf_sha256 = hashlib.sha256(self.conf.encode("utf-8")).hexdigest()
        self.deploys = has_deploy_settings(self.conf)

    def entry(self) -> Dict[str, Any]:
        return {"version": self.version, "cert_sha256": self.sha256,
                "conf_sha256": self.conf_sha256}


def push(config: ClusterConfig, lineage: Lineage, specs: Sequence[str],
         force: bool = False) -> List[Outcome]:
    """Bring every peer to the lineage's current version; one Outcome each."""
    config.require_share("certificates")
    peers = config.peers(specs)
    config.require_known_hosts()
    transport = Transport(config)
    workdir = os.path.join(lineage.config_dir, "wwu-acl")
    with _lock(os.path.join(workdir, lineage.name + ".cluster.lock")):
        local = _Local(lineage, config)
        record = load_record(lineage)
        stage = []  # type: List[str]
        stage_lock = threading.Lock()

        def staged() -> str:
            with stage_lock:
                if not stage:
                    stage.append(stage_lineage(lineage, local.conf, workdir))
                return stage[0]

        def one(peer: Peer) -> Outcome:
            return _push_one(transport, peer, local, record.get(peer.key), staged,
                             force)
        try:
            outcomes = _each(peers, one)
        finally:
            if stage:
                shutil.rmtree(stage[0], ignore_errors=True)
        changed = False
        for outcome in outcomes:
            if outcome.record is not None and record.get(outcome.peer.key) != outcome.record:
                record[outcome.peer.key] = outcome.record
                changed = True
        if changed:
            _save_record(lineage, record)
    return outcomes


def _push_one(transport: Transport, peer: Peer, local: _Local,
              recorded: Optional[Dict[str, Any]], staged, force: bool) -> Outcome:
    config = transport.config
    name = local.lineage.name
    result = transport.ssh(peer, probe_words(config.config_dir, name),
                           timeout=config.connect_timeout + 60)
    if result.code != 0:
        raise PeerFailed(_explain("reading its version", peer, result, config))
    state = parse_probe(result.out)
    if state.exists and not force:
        if state.origin is None:
            raise PeerFailed(
                "has a certificate {} of its own (not pushed by certbot-wwu); "
                "remove it there or replace it with 'certbot-wwu cluster push "
                "--force'".format(name))
        if state.origin != config.name:
            raise PeerFailed(
                "gets {} from {}, not from {}; only one host may renew a "
                "certificate (after a takeover, push once with --force)".format(
                    name, state.origin, config.name))
        if state.version is not None and state.version > local.version:
            raise PeerFailed(
                "has version {} of {}, newer than ours ({}); is another host "
                "renewing it? (push with --force to replace it)".format(
                    state.version, name, local.version))
    entry = local.entry()
    same = state.version == local.version and state.sha256 == local.sha256
    if same and recorded == dict(entry, deployed=local.deploys) and not force:
        return Outcome(peer, True, "current (version {})".format(local.version))
    stage = staged()
    sources = [os.path.join(stage, ".", "archive", name),
               os.path.join(stage, ".", "live", name),
               os.path.join(stage, ".", "renewal", name + ".conf")]
    # --force may replace files of the same name, size and time: compare contents
    result = transport.rsync(peer, sources, config.config_dir,
                             ["--checksum"] if force else [])
    if result.code != 0:
        raise PeerFailed(_explain("copying", peer, result, config))
    if not state.exists or same or state.version is None:
        what = "sent version {}".format(local.version)
    elif state.version < local.version and state.origin == config.name:
        what = "updated from version {} to {}".format(state.version, local.version)
    else:
        what = "replaced its version {} with version {}".format(state.version,
                                                                 local.version)
    if not local.deploys:
        return Outcome(peer, True, "{}; no wwu-acl settings stored for {}, so "
                                   "nothing was deployed".format(what, name),
                       dict(entry, deployed=False))
    words = config.remote_command + ["deploy", "--cert-name", name,
                                     "--config-dir", config.config_dir]
    result = transport.ssh(peer, words)
    if result.code != 0:
        raise PeerFailed("{}, but {}".format(what, _explain("deploying", peer, result,
                                                            config)))
    report = "; ".join(line.strip() for line in result.out.splitlines() if line.strip())
    return Outcome(peer, True, "{} and deployed it{}".format(
        what, " ({})".format(report) if report else ""), dict(entry, deployed=True))


def push_lineage(lineage: Lineage, peers: Sequence[str]) -> None:
    """After a deployment: bring ``peers`` to the lineage's current version.

    Cheap when they are current (one ssh command each). Every peer's outcome
    is logged; ClusterError names the peers that failed.
    """
    config = load_config()
    outcomes = push(config, lineage, list(peers))
    for outcome in outcomes:
        if outcome.ok:
            logger.info("%s: %s", lineage.name, outcome.line)
        else:
            logger.error("%s: %s", lineage.name, outcome.line)
    error = failed_error("Pushing {}".format(lineage.name), outcomes)
    if error:
        raise error


# --- shared account -------------------------------------------------------------

_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
_SERVER_PATH = re.compile(r"^[A-Za-z0-9._~:@+-]+(/[A-Za-z0-9._~:@+-]+)*\Z")
ACCOUNT_FILES = ("meta.json", "private_key.json", "regr.json")
EXPORT_FORMAT = "certbot-wwu account export 1"
README_NAME = "README.txt"
MANIFEST_NAME = "certbot-wwu-account.json"


def server_path(server: str) -> str:
    """certbot's directory under accounts/ for a server URL (host[:port]/path)."""
    from urllib.parse import urlsplit
    parts = urlsplit(server.strip())
    path = (parts.netloc + parts.path).rstrip("/")
    if parts.scheme.lower() != "https" or not parts.netloc or not _SERVER_PATH.match(path) \
            or any(p in (".", "..") for p in path.split("/")):
        raise ClusterError("{!r} is not an https:// ACME directory URL that certbot "
                           "can keep an account for.".format(server))
    return path


class Account(object):
    def __init__(self, config_dir: str, server: str, path: str, account_id: str) -> None:
        self.config_dir = config_dir
        self.server = server
        self.server_path = path
        self.id = account_id

    @property
    def relative(self) -> str:
        return "accounts/{}/{}".format(self.server_path, self.id)

    @property
    def directory(self) -> str:
        return os.path.join(self.config_dir, self.relative)


def _account_ids(directory: str) -> List[str]:
    try:
        return sorted(e for e in os.listdir(directory)
                      if os.path.isdir(os.path.join(directory, e)))
    except OSError:
        return []


def find_account(config_dir: str, server: str,
                 account_id: Optional[str] = None) -> Account:
    """The account certbot keeps for ``server``; --account when it has several."""
    path = server_path(server)
    directory = os.path.join(config_dir, "accounts", path)
    ids = _account_ids(directory)
    if account_id is not None:
        if account_id not in ids:
            raise ClusterError("There is no account {} for {} in {}{}.".format(
                account_id, server, directory,
                " (there is {})".format(", ".join(ids)) if ids else ""))
        chosen = account_id
    elif not ids:
        raise ClusterError("There is no account for {} in {}; register one first "
                           "(certbot-wwu register or certbot register).".format(
                               server, directory))
    elif len(ids) > 1:
        raise ClusterError("There are {} accounts for {} ({}); choose one with "
                           "--account ID.".format(len(ids), server, ", ".join(ids)))
    else:
        chosen = ids[0]
    if not _ACCOUNT_ID.match(chosen):
        raise ClusterError("Account directory {} has an unexpected name.".format(chosen))
    account = Account(config_dir, server, path, chosen)
    for name in ACCOUNT_FILES:
        if not os.path.isfile(os.path.join(account.directory, name)):
            raise ClusterError("Account {} is incomplete: {} is missing.".format(
                account.directory, name))
    return account


def stage_account(account: Account, workdir: str) -> str:
    """accounts/<path>/<id>/ with certbot's modes, symlinks resolved."""
    _private_dir(workdir)
    stage = tempfile.mkdtemp(prefix=".account-", dir=workdir)
    try:
        parts = account.relative.split("/")
        target = _mkdirs(stage, account.relative, (0o700,) * len(parts))
        for name in ACCOUNT_FILES:
            src = os.path.join(account.directory, name)
            mode = os.stat(src).st_mode & 0o777
            _copy_file(src, os.path.join(target, name),
                       (mode & 0o600) or 0o400 if name == "private_key.json"
                       else mode & 0o644)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def share_account(config: ClusterConfig, account: Account, specs: Sequence[str],
                  force: bool = False) -> List[Outcome]:
    """Copy one account to each peer (never anything else from accounts/)."""
    config.require_share("account")
    peers = config.peers(specs)
    config.require_known_hosts()
    transport = Transport(config)
    workdir = os.path.join(account.config_dir, "wwu-acl")
    stage = stage_account(account, workdir)
    try:
        return _each(peers, lambda peer: _share_one(transport, peer, account, stage,
                                                    force))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _share_one(transport: Transport, peer: Peer, account: Account, stage: str,
               force: bool) -> Outcome:
    config = transport.config
    directory = os.path.join(config.config_dir, "accounts", account.server_path)
    script = 'd={}; if [ -d "$d" ]; then ls -1A -- "$d/"; fi; echo end'.format(
        shlex.quote(directory))
    result = transport.ssh(peer, ["sh", "-c", script], timeout=config.connect_timeout + 60)
    if result.code != 0 or not result.out.splitlines() \
            or result.out.splitlines()[-1] != "end":
        raise PeerFailed(_explain("reading its accounts", peer, result, config))
    present = [line for line in result.out.splitlines()[:-1] if line.strip()]
    others = [i for i in present if i != account.id]
    moved = ""
    if others:
        if not force:
            raise PeerFailed(
                "has another account for {} ({}); not replaced (use --force to "
                "move it aside)".format(account.server, ", ".join(others)))
        backup = os.path.join(config.config_dir, "wwu-acl", "replaced-accounts",
                              time.strftime("%Y%m%dT%H%M%S"), account.server_path)
        for other in others:
            if not _ACCOUNT_ID.match(other):
                raise PeerFailed("has an unexpected entry {!r} in {}".format(
                    other, directory))
        words = ["sh", "-c", 'b=$1; shift; mkdir -p -m 0700 -- "$b" && mv -- "$@" "$b/"',
                 "sh", backup] + [os.path.join(directory, o) for o in others]
        result = transport.ssh(peer, words)
        if result.code != 0:
            raise PeerFailed(_explain("moving its other account aside", peer, result,
                                      config))
        moved = "; moved its account {} to {} (its renewal confs that name it need " \
                "'account = {}' now)".format(", ".join(others), backup, account.id)
    result = transport.rsync(peer, [os.path.join(stage, ".", account.relative)],
                             config.config_dir, extra=["--keep-dirlinks"])
    if result.code != 0:
        raise PeerFailed(_explain("copying", peer, result, config))
    return Outcome(peer, True, "{} account {} for {}{}".format(
        "already had" if account.id in present else "now has", account.id,
        account.server, moved))


_README = """\
certbot-wwu: ONE ACME ACCOUNT, INCLUDING ITS PRIVATE KEY - A SECRET

This archive holds the certbot account {id}
registered at {server}
(certbot's accounts/{path}/{id}/: meta.json, private_key.json, regr.json).

Whoever has this file can act as this ACME account: obtain certificates for
every name the account (ACME-ID) is allowed, revoke them, and deactivate the
account. Share it only between servers that the same people administer;
servers administered by different people need their own ACME-IDs.

Import it as root on the other server, then delete this file:

    certbot-wwu cluster import-account FILE

Created on {host} at {when}.
"""


def export_account(account: Account, path: str) -> None:
    """A tar (created 0600) with a README that says what it holds."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as err:
        if err.errno == errno.EEXIST:
            raise ClusterError("{} exists; choose another file name or remove it "
                               "first.".format(path))
        raise ClusterError("Cannot create {}: {}.".format(path, err.strerror or err))
    try:
        os.fchmod(fd, 0o600)
        now = time.time()
        readme = _README.format(id=account.id, server=account.server,
                                path=account.server_path, host=socket.gethostname(),
                                when=time.strftime("%Y-%m-%d %H:%M:%S %Z")).encode()
        manifest = json.dumps({"format": EXPORT_FORMAT, "server": account.server,
                               "server_path": account.server_path,
                               "account_id": account.id}, indent=1).encode() + b"\n"
        with os.fdopen(fd, "wb") as f:
            fd = -1
            with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                _add(tar, README_NAME, readme, 0o600, now)
                _add(tar, MANIFEST_NAME, manifest, 0o600, now)
                for name in ACCOUNT_FILES:
                    src = os.path.join(account.directory, name)
                    with open(src, "rb") as g:
                        data = g.read()
                    mode = 0o400 if name == "private_key.json" else 0o644
                    _add(tar, "{}/{}".format(account.relative, name), data, mode,
                         os.stat(src).st_mtime)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if fd >= 0:
            os.close(fd)
        os.unlink(path)
        raise


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(mtime)
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def read_export(path: str) -> Tuple[Dict[str, str], Dict[str, bytes]]:
    """(manifest, {file name: bytes}) of an export, checked member by member."""
    try:
        tar = tarfile.open(path, mode="r:")
    except (OSError, tarfile.TarError) as err:
        raise ClusterError("Cannot read {} as an account export: {}.".format(path, err))
    with tar:
        members = {}  # type: Dict[str, bytes]
        for member in tar.getmembers():
            if not member.isfile() or member.name.startswith("/") \
                    or ".." in member.name.split("/") or member.name in members:
                raise ClusterError("{} is not a certbot-wwu account export (it holds "
                                   "{!r}).".format(path, member.name))
            members[member.name] = tar.extractfile(member).read()
    try:
        manifest = json.loads(members.pop(MANIFEST_NAME).decode("utf-8"))
        assert manifest["format"] == EXPORT_FORMAT
        members.pop(README_NAME)
        prefix = "accounts/{}/{}/".format(manifest["server_path"], manifest["account_id"])
    except (KeyError, ValueError, AssertionError, TypeError, AttributeError):
        raise ClusterError("{} is not a certbot-wwu account export (no valid {}).".format(
            path, MANIFEST_NAME))
    if not _ACCOUNT_ID.match(str(manifest["account_id"])) or \
            server_path(manifest["server"]) != manifest["server_path"]:
        raise ClusterError("{} names an invalid account or server.".format(path))
    files = {}
    for name, data in members.items():
        if not name.startswith(prefix) or name[len(prefix):] not in ACCOUNT_FILES:
            raise ClusterError("{} is not a certbot-wwu account export (it holds "
                               "{!r}).".format(path, name))
        files[name[len(prefix):]] = data
    if sorted(files) != sorted(ACCOUNT_FILES):
        raise ClusterError("{} is incomplete: it lacks {}.".format(
            path, ", ".join(sorted(set(ACCOUNT_FILES) - set(files)))))
    for name, data in files.items():
        try:
            json.loads(data.decode("utf-8"))
        except ValueError:
            raise ClusterError("{} holds a damaged {}.".format(path, name))
    return manifest, files


def import_account(path: str, config_dir: str, force: bool = False) -> str:
    """Install an export's account under ``config_dir``; one line of report."""
    manifest, files = read_export(path)
    account = Account(config_dir, manifest["server"], manifest["server_path"],
                      manifest["account_id"])
    parent = os.path.dirname(account.directory)
    others = [i for i in _account_ids(parent) if i != account.id]
    if os.path.isdir(account.directory):
        same = all(os.path.isfile(os.path.join(account.directory, n)) and
                   open(os.path.join(account.directory, n), "rb").read() == files[n]
                   for n in ACCOUNT_FILES)
        if same and not others:
            return "account {} for {} is already in {}".format(
                account.id, account.server, account.directory)
    moved = []  # type: List[str]
    if others:
        if not force:
            raise ClusterError(
                "{} already has another account for {} ({}); not replaced (use "
                "--force to move it aside).".format(parent, account.server,
                                                    ", ".join(others)))
        backup = os.path.join(config_dir, "wwu-acl", "replaced-accounts",
                              time.strftime("%Y%m%dT%H%M%S"), account.server_path)
        os.makedirs(backup, 0o700, exist_ok=True)
        for other in others:
            os.rename(os.path.join(parent, other), os.path.join(backup, other))
            moved.append(os.path.join(backup, other))
    relative = account.relative.split("/")
    if not os.path.isdir(config_dir):
        os.makedirs(config_dir, 0o755)
    _mkdirs(config_dir, "/".join(relative[:-1]), (0o700,) * (len(relative) - 1))
    tmp = tempfile.mkdtemp(prefix="." + account.id + ".", dir=parent)
    try:
        for name in ACCOUNT_FILES:
            mode = 0o400 if name == "private_key.json" else 0o644
            fd = os.open(os.path.join(tmp, name),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(files[name])
                f.flush()
                os.fsync(f.fileno())
            os.chmod(os.path.join(tmp, name), mode)
        os.chmod(tmp, 0o700)
        if os.path.isdir(account.directory):
            old = account.directory + ".old-" + time.strftime("%Y%m%dT%H%M%S")
            os.rename(account.directory, old)
            os.rename(tmp, account.directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, account.directory)
        tmp = ""
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return "imported account {} for {} into {}{}".format(
        account.id, account.server, account.directory,
        "; moved {} aside (renewal confs that name it need 'account = {}' now)".format(
            ", ".join(moved), account.id) if moved else "")


# --- check ------------------------------------------------------------------------

def check(config: ClusterConfig, specs: Sequence[str]) -> List[Outcome]:
    """Log in to each peer and ask its certbot-wwu and rsync for their versions."""
    peers = config.peers(specs)
    config.require_known_hosts()
    transport = Transport(config)

    def one(peer: Peer) -> Outcome:
        found = []
        for what, words in (("certbot-wwu", config.remote_command),
                            ("rsync", config.rsync_path)):
            result = transport.ssh(peer, words + ["--version"],
                                   timeout=config.connect_timeout + 60)
            if result.code != 0:
                raise PeerFailed(_explain("running " + what, peer, result, config))
            first = (result.out.strip().splitlines() or [what])[0]
            found.append(" ".join(first.split()[:3]) if what == "rsync" else first)
        return Outcome(peer, True, "reachable as {} on port {}; {}".format(
            peer.user, peer.port, "; ".join(found)))
    return _each(peers, one)
