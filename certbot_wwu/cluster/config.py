"""The cluster settings: ``[cluster]`` and ``[cluster peers]`` in the site
preset files (``presets.presets_dir()``), validated into a ClusterConfig::

    [cluster]
    peers = web2, web3
    known_hosts = /etc/certbot-wwu/known_hosts
    ssh_identity = /etc/certbot-wwu/cluster_ed25519
    parallel = 32

    [cluster peers]
    web2 = root@web2.uni-muenster.de
    web3 = web3.uni-muenster.de:2222

Every value is checked here, once: what reaches ssh and rsync later is
either a checked word or one the product sets itself (transport.py).
"""
import configparser
import os
import re
import shlex
import socket
from typing import Any, Dict, List, Optional, Sequence, Tuple

from certbot_wwu import certbot_host, presets
from certbot_wwu.addresses import parse_target, port_number, split_target, user_name
from certbot_wwu.errors import SettingsError, WwuError

class ClusterError(WwuError):
    """The cluster configuration is wrong, or a peer could not be brought up
    to date."""


# --- configuration ------------------------------------------------------------

SECTION = "cluster"
PEERS_SECTION = "cluster peers"
DEFAULT_KNOWN_HOSTS = "/etc/certbot-wwu/known_hosts"
DEFAULT_REMOTE_COMMAND = "certbot-wwu"
SHARE_CHOICES = ("certificates", "account")

KEYS = ("peers", "ssh_user", "ssh_port", "ssh_identity", "ssh_options",
        "known_hosts", "connect_timeout", "command_timeout", "remote_command",
        "rsync_path", "sudo", "config_dir", "share", "name", "parallel")
#: peers served at once; each is one ssh connection and one thread
DEFAULT_PARALLEL = 32
MAX_PARALLEL = 256

#: ssh options certbot-wwu sets itself and a site may not weaken or move
_FIXED_SSH_OPTIONS = {
    "stricthostkeychecking": "host keys are always checked against known_hosts",
    "userknownhostsfile": "use the known_hosts key",
    "globalknownhostsfile": "use the known_hosts key",
    "updatehostkeys": "certbot-wwu never changes known_hosts",
    "checkhostip": "certbot-wwu never changes known_hosts",
    "batchmode": "certbot-wwu never asks for a password",
    "port": "use ssh_port or host:port",
    "user": "use ssh_user or user@host",
    "identityfile": "use ssh_identity",
    "connecttimeout": "use connect_timeout",
    "loglevel": "certbot-wwu reports ssh's errors itself",
}

#: ssh options a site may not set, and why: each would trust a host key that
#: is not in known_hosts, run a command on this host, or read more settings
_REFUSED_SSH_OPTIONS = {
    "knownhostscommand": "it would take host keys from a command instead of known_hosts",
    "verifyhostkeydns": "it would trust host keys published in DNS instead of known_hosts",
    "hostkeyalias": "it would check the peer against another host's key in known_hosts",
    "canonicalizehostname": "it would check the host key of another name than the "
                            "peer's",
    "proxycommand": "it runs a command on this host as root; reach the peer directly",
    "proxyjump": "its second ssh would check the jump host against root's own "
                 "known_hosts instead of the known_hosts key, and could prompt; "
                 "reach the peer directly",
    "localcommand": "it runs a command on this host as root",
    "permitlocalcommand": "it runs a command on this host as root",
    "controlmaster": "a shared connection skips the host key check",
    "controlpath": "a shared connection skips the host key check",
    "controlpersist": "a shared connection skips the host key check",
    "include": "certbot-wwu reads no ssh configuration files",
    "match": "certbot-wwu reads no ssh configuration files",
    "host": "certbot-wwu reads no ssh configuration files",
}

#: the only ssh options a site may add: they tune the connection and can
#: neither widen host-key trust nor run or forward anything (an allow-list:
#: every OpenSSH release adds options, and a new one must not slip through)
_ALLOWED_SSH_OPTIONS = (
    "AddressFamily", "BindAddress", "BindInterface", "CASignatureAlgorithms",
    "CertificateFile", "Ciphers", "Compression", "ConnectionAttempts",
    "HostKeyAlgorithms", "IdentitiesOnly", "IPQoS", "KexAlgorithms", "MACs",
    "PubkeyAcceptedAlgorithms", "PubkeyAcceptedKeyTypes", "RekeyLimit",
    "RequiredRSASize", "ServerAliveCountMax", "ServerAliveInterval", "TCPKeepAlive")
_ALLOWED = {name.lower() for name in _ALLOWED_SSH_OPTIONS}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@/-]*\Z")
#: Option=value; no quotes or backslashes (rsync's -e and ssh split on them)
_SSH_OPTION = re.compile(r"^([A-Za-z][A-Za-z0-9]*)=([A-Za-z0-9@._+,:/%^*=~-]"
                         r"[A-Za-z0-9@._+,:/%^*=~ -]*)\Z")
_BAD = re.compile(r"[\x00-\x1f\x7f]")


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
            raise ValueError("{!r} is not an ssh Option=value (as in ssh -o) of "
                             "letters, digits, spaces and '@._+,:/%^*=~-'".format(word))
        name = match.group(1)
        why = _FIXED_SSH_OPTIONS.get(name.lower())
        if why:
            raise ValueError("{} is set by certbot-wwu ({})".format(name, why))
        why = _REFUSED_SSH_OPTIONS.get(name.lower())
        if why:
            raise ValueError("{} is not allowed: {}".format(name, why))
        if name.lower() not in _ALLOWED:
            raise ValueError("{} is not one of the ssh options certbot-wwu passes on "
                             "({})".format(name, ", ".join(_ALLOWED_SSH_OPTIONS)))
        options.append(word)
    return options


def _number(low: int, high: int, what: str = "a whole number"):
    """A check for a whole number from ``low`` to ``high``."""
    def check(value: str) -> int:
        if not value.strip().isdigit() or not low <= int(value) <= high:
            raise ValueError("{!r} is not {} from {} to {}".format(
                value, what, low, high))
        return int(value)
    return check


def _share(value: str) -> Tuple[str, ...]:
    items = [i for i in re.split(r"[,\s]+", value.strip().lower()) if i]
    for item in items:
        if item not in SHARE_CHOICES:
            raise ValueError("{!r} is not one of {}".format(item, ", ".join(SHARE_CHOICES)))
    return tuple(items)


def _origin_name(value: str) -> str:
    if not _NAME.match(value.strip()):
        raise ValueError("{!r} is not a name of letters, digits, '.', '_' and "
                         "'-'".format(value))
    return value.strip()


_CHECKS = {
    "ssh_user": user_name,
    "ssh_port": port_number,
    "ssh_identity": lambda v: _path(v, "file name"),
    "ssh_options": _ssh_options,
    "known_hosts": lambda v: _path(v, "file name"),
    "connect_timeout": _number(1, 300, "a number of seconds"),
    "command_timeout": _number(10, 86400, "a number of seconds"),
    "remote_command": _command,
    "rsync_path": _command,
    "sudo": presets.parse_boolean,
    "config_dir": lambda v: _path(v, "directory"),
    "share": _share,
    "name": _origin_name,
    "parallel": _number(1, MAX_PARALLEL),
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
        #: the peers' certbot configuration directory (certbot's default)
        self.config_dir = certbot_host.DEFAULT_CONFIG_DIR
        self.share = ("certificates",)
        self.name = socket.gethostname().split(".")[0] or "localhost"
        self.parallel = DEFAULT_PARALLEL

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


def load_config(directory: Optional[str] = None) -> ClusterConfig:
    """The cluster settings of the site files (defaults without any)."""
    config = ClusterConfig()
    config.directory = presets.presets_dir(directory)[0]
    for path in presets.site_files(directory):  # the same files as the presets
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
                path, presets.ini_problem(err)))
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
            user, host, port = split_target(values[name])
        except ValueError as err:
            raise ClusterError("In {}, section [{}], key {}: {}.".format(
                path, section, name, err))
        # user and port fall back to [cluster]'s, whichever file comes first
        config.named[name] = (user or "", host, port)


def check_peers(specs: Sequence[str], option: str,
                directory: Optional[str] = None) -> None:
    """Refuse, before anything changes, a peer that a push would refuse:
    one that is neither a name from [cluster peers] nor [user@]host[:port].
    SettingsError names ``option``, as the command that was run spells it."""
    config = load_config(directory)
    for spec in specs:
        if spec.strip().lower() in config.named:
            continue
        try:
            parse_target(spec)
        except ValueError as err:
            raise SettingsError(
                "{} {!r}: {}; give [user@]host[:port] or a peer name from "
                "[cluster peers]{}.".format(
                    option, spec, err, " (" + ", ".join(sorted(config.named)) + ")"
                    if config.named else ""))
