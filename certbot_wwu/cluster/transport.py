"""ssh and rsync to the peers: argument lists, timeouts, one connection per
peer per run, and what a peer's failure means.

ssh runs with ``-F none`` and the product's own trust settings only (host
keys from the known_hosts key, no prompts, no commands on this host). Within
one process -- one certbot run, one ``certbot-wwu cluster`` command -- each
peer gets one login: the first step opens an OpenSSH master connection
(ControlMaster, ControlPersist) whose socket lives in a fresh directory only
root can use, and every later ssh and rsync of the run goes through it. A
site cannot set ControlMaster or ControlPath (config.py refuses them): the
shared connection is the product's, made with its own host-key check. A peer
that cannot be reached is remembered for the rest of the run (``Run``), so it
costs one connect timeout per run, not one per certificate.
"""
import logging
import os
import re
import shlex
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence

from certbot_wwu import locks, process
from certbot_wwu.cluster.config import DEFAULT_PARALLEL, ClusterConfig, ClusterError, Peer
from certbot_wwu.errors import WwuError

logger = logging.getLogger(__name__)

_RSH_UNSAFE = re.compile(r"['\"\\\x00-\x1f\x7f]")
#: where root's control directories go (a 0700 directory of root's)
RUNTIME_DIR = "/run/certbot-wwu"
#: how long an idle master connection outlives its last use; a run that
#: leaves it alone longer opens a new one, a killed run's ends by itself
CONTROL_PERSIST = 300

#: the most of one piece of a peer's text that reaches a terminal or a log
PEER_TEXT_LIMIT = 400
#: the most of one outcome line (it may hold several pieces)
OUTCOME_LIMIT = 2000


def printable(text: Any, limit: int = PEER_TEXT_LIMIT) -> str:
    """Text from a peer (or another process) as it may be shown: every
    control character and every character that is not printable made
    visible (ESC as ``\\x1b``), so that no escape sequence reaches a
    terminal or a log, and at most ``limit`` characters (then ``...``)."""
    out = []  # type: List[str]
    size = 0
    for char in str(text):
        if not char.isprintable():
            code = ord(char)
            char = ("\\x{:02x}" if code < 0x100 else "\\u{:04x}" if code < 0x10000
                    else "\\U{:08x}").format(code)
        if size + len(char) > limit:
            return "".join(out) + "..."
        out.append(char)
        size += len(char)
    return "".join(out)


class Result(object):
    def __init__(self, argv: List[str], code: int, out: str, err: str,
                 timed_out: bool = False) -> None:
        self.argv, self.code, self.out, self.err = argv, code, out, err
        self.timed_out = timed_out

    def last_error(self) -> str:
        """The last line of stderr that says something, fit to be shown."""
        lines = [line.strip() for line in self.err.splitlines() if line.strip()]
        for line in reversed(lines):
            if not line.startswith("rsync error:"):
                return printable(line.rstrip("."))
        return printable(lines[-1].rstrip(".")) if lines \
            else "exit status {}".format(self.code)


#: what to do when ssh or rsync is missing
_INSTALL = "install it (Debian: apt install openssh-client rsync)"


def _run(argv: List[str], timeout: int, stdin: Optional[bytes] = None,
         to_file: bool = False) -> Result:
    """ssh or rsync through process.execute; a timeout is a Result (the
    peer's outcome), not an exception. ``to_file``: a command that leaves
    a background process (the master connection, ``ssh -f``)."""
    done = process.execute(argv, ClusterError, _INSTALL, timeout, input=stdin,
                           background=to_file, timeout_raises=False)
    return Result(argv, done.code, done.out, done.err, timed_out=done.timed_out)


class Run(object):
    """What one process knows about its peers: their master connections and
    which of them failed. Thread-safe: peers are served in parallel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._peer_locks = {}  # type: Dict[str, threading.Lock]
        #: the control directory; "" when there is none (no multiplexing)
        self._directory = None  # type: Optional[str]
        #: peer key -> (control socket, monotonic time of the last use)
        self.masters = {}  # type: Dict[str, List[Any]]
        self._hosts = {}  # type: Dict[str, str]
        self._sockets = 0
        #: peers whose ssh made no master connection: each command logs in
        self.direct = set()  # type: set
        #: peer key -> why it failed (the outcome text)
        self.failed = {}  # type: Dict[str, str]
        #: logins made (master connections or, without them, ssh commands)
        self.logins = 0
        #: per-run memory of the push module (what peers were seen to hold)
        self.memo = {}  # type: Dict[Any, Any]

    def count_login(self) -> None:
        """One more ssh login made in this run (for the benchmarks and tests)."""
        with self._lock:
            self.logins += 1

    def peer_lock(self, peer: Peer) -> threading.Lock:
        with self._lock:
            return self._peer_locks.setdefault(peer.key, threading.Lock())

    def failure(self, peer: Peer) -> Optional[str]:
        with self._lock:
            return self.failed.get(peer.key)

    def fail(self, peer: Peer, text: str) -> None:
        with self._lock:
            self.failed.setdefault(peer.key, text)

    def directory(self) -> str:
        """A fresh 0700 directory only root can use, for this run's control
        sockets; "" (and a warning) when none can be made."""
        with self._lock:
            if self._directory is None:
                self._directory = _control_directory()
            return self._directory

    def socket(self, peer: Peer) -> Optional[str]:
        """The control socket of the peer's live master, if there is one."""
        with self._lock:
            entry = self.masters.get(peer.key)
            if entry is None or time.monotonic() - entry[1] > CONTROL_PERSIST - 30:
                return None
            entry[1] = time.monotonic()
            return entry[0]

    def add_master(self, peer: Peer, path: str) -> None:
        with self._lock:
            self.masters[peer.key] = [path, time.monotonic()]
            self._hosts[path] = peer.ssh_host
            self.logins += 1

    def new_socket_path(self) -> Optional[str]:
        """A name no other master of this run has used (a socket another
        peer's master holds would take this peer's commands to that peer)."""
        directory = self.directory()
        if not directory:
            return None
        with self._lock:
            self._sockets += 1
            return os.path.join(directory, str(self._sockets))

    def close(self) -> None:
        """End every master connection and remove the control directory."""
        with self._lock:
            hosts, self._hosts = self._hosts, {}
            self.masters = {}
            directory, self._directory = self._directory, None
        for path, host in hosts.items():
            if os.path.exists(path):
                try:
                    _run(["ssh", "-F", "none", "-o", "ControlPath=" + path,
                          "-o", "LogLevel=QUIET", "-O", "exit", "--", host], 10)
                except ClusterError:
                    logger.debug("Cannot end the ssh master at %s", path, exc_info=True)
        if directory:
            shutil.rmtree(directory, ignore_errors=True)


def _control_directory() -> str:
    """mkdtemp under root's RUNTIME_DIR (or the temporary directory when not
    root), checked to be this account's and 0700 like the lock directory."""
    try:
        if os.geteuid() == 0 and os.path.isdir(os.path.dirname(RUNTIME_DIR)):
            locks.private_dir(RUNTIME_DIR)
            base = RUNTIME_DIR
        else:
            base = tempfile.gettempdir()
        path = tempfile.mkdtemp(prefix="ssh-" if base == RUNTIME_DIR
                                else "certbot-wwu-ssh-", dir=base)
        locks.private_dir(path)
        return path
    except (OSError, WwuError) as err:
        logger.warning("No private directory for ssh control sockets (%s); every "
                       "ssh command to a peer logs in on its own.", err)
        return ""


_RUN = []  # type: List[Run]
_RUN_LOCK = threading.Lock()


def current_run() -> Run:
    """This process's Run (one certbot run, one certbot-wwu command)."""
    with _RUN_LOCK:
        if not _RUN:
            _RUN.append(Run())
            if len(_RUN) == 1 and not _exit_registered:
                # certbot's, not atexit's: a forked child (a hook, a
                # multiprocessing worker) must not close the parent's masters
                from certbot import util
                util.atexit_register(_close_at_exit)
                _exit_registered.append(True)
        return _RUN[0]


def new_run() -> Run:
    """End this process's Run (its connections, its memory) and start
    another: for a long-lived process that serves several runs."""
    with _RUN_LOCK:
        old = _RUN.pop() if _RUN else None
    if old is not None:
        old.close()
    return current_run()


_exit_registered = []  # type: List[bool]


def _close_at_exit() -> None:
    with _RUN_LOCK:
        run = _RUN[0] if _RUN else None
    if run is not None:
        run.close()


class Transport(object):
    """ssh and rsync to the peers, with strict host keys and no prompts;
    with a ``run``, one master connection per peer."""

    def __init__(self, config: ClusterConfig, run: Optional[Run] = None) -> None:
        self.config = config
        self.run = run

    def _trust(self, peer: Peer) -> List[str]:
        """ssh with only the product's settings: ``-F none`` so that neither
        root's ~/.ssh/config nor /etc/ssh/ssh_config can add trust
        (KnownHostsCommand, HostKeyAlias, VerifyHostKeyDNS, a shared
        connection) or commands (ProxyCommand, LocalCommand, Match exec), and
        the options that matter spelled out, which ssh takes before any
        later ones. The connection-sharing options follow (see ssh_base)."""
        c = self.config
        return ["ssh", "-F", "none",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", "UserKnownHostsFile=" + c.known_hosts,
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no",
                # the default before OpenSSH 8.5: would add the peer's address
                # to known_hosts
                "-o", "CheckHostIP=no", "-o", "VerifyHostKeyDNS=no",
                "-o", "ProxyCommand=none", "-o", "PermitLocalCommand=no"]

    def _rest(self, peer: Peer) -> List[str]:
        c = self.config
        argv = ["-o", "ForwardAgent=no", "-o", "ForwardX11=no",
                "-o", "ClearAllForwardings=yes",
                "-o", "ConnectTimeout={}".format(c.connect_timeout),
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
                "-o", "LogLevel=ERROR", "-p", str(peer.port), "-l", peer.user]
        if c.ssh_identity:
            argv += ["-i", c.ssh_identity, "-o", "IdentitiesOnly=yes"]
        for option in c.ssh_options:
            argv += ["-o", option]
        return argv

    def ssh_base(self, peer: Peer) -> List[str]:
        """ssh as every command to ``peer`` runs it: through the run's master
        connection when there is one (``ControlMaster=no``: a command never
        becomes a master itself), else on its own (``ControlPath=none``)."""
        path = self.run.socket(peer) if self.run is not None else None
        return self._trust(peer) + ["-o", "ControlMaster=no",
                                    "-o", "ControlPath=" + (path or "none")] + \
            self._rest(peer)

    def connect(self, peer: Peer) -> None:
        """Before the first step for ``peer`` in a run: its master connection,
        made once; PeerFailed if the peer failed earlier in this run (then
        without trying again) or cannot be reached now (then remembered)."""
        if self.run is None:
            return
        earlier = self.run.failure(peer)
        if earlier is not None:
            raise PeerFailed(skipped(earlier))
        with self.run.peer_lock(peer):
            earlier = self.run.failure(peer)
            if earlier is not None:
                raise PeerFailed(skipped(earlier))
            if self.run.socket(peer) is not None or peer.key in self.run.direct:
                return
            path = self.run.new_socket_path()
            if path is None or os.path.lexists(path):
                return  # no control directory: each command logs in
            argv = (self._trust(peer) + ["-o", "ControlMaster=yes", "-o", "ControlPath=" + path,
                                         "-o", "ControlPersist={}".format(CONTROL_PERSIST)]
                    + self._rest(peer) + ["-N", "-f", "--", peer.ssh_host])
            # stderr to a file: the master, in the background, keeps what it
            # inherited, and a pipe would never reach end-of-file
            result = _run(argv, self.config.connect_timeout + 30, to_file=True)
            if result.code == 255 or result.timed_out:  # ssh's own failure
                text = explain("connecting", peer, result, self.config)
                self.run.fail(peer, text)
                raise PeerFailed(text)
            if result.code == 0 and os.path.exists(path):
                self.run.add_master(peer, path)
            else:  # an ssh that made no socket: each command logs in
                logger.debug("No ssh master connection to %s (exit %s)", peer.label,
                             result.code)
                self.run.direct.add(peer.key)

    def remote_words(self, words: List[str]) -> str:
        """The command line ssh hands to the peer's shell: every word quoted."""
        prefix = ["sudo", "-n"] if self.config.sudo else []
        return " ".join(shlex.quote(w) for w in prefix + list(words))

    def ssh_argv(self, peer: Peer, words: List[str]) -> List[str]:
        return self.ssh_base(peer) + ["--", peer.ssh_host, self.remote_words(words)]

    def ssh(self, peer: Peer, words: List[str], timeout: Optional[int] = None,
            stdin: Optional[bytes] = None) -> Result:
        argv = self.ssh_argv(peer, words)
        result = _run(argv, timeout or self.config.command_timeout, stdin)
        if self.run is not None and "ControlPath=none" in argv:
            # no master: each command is a login, and ssh's own failure
            # (255) means the peer cannot be reached for this run
            self.run.count_login()
            if result.code == 255 and not result.timed_out:
                self.run.fail(peer, explain("connecting", peer, result, self.config))
        return result

    def rsync_argv(self, peer: Peer, sources: List[str], dest: str,
                   extra: Sequence[str] = ()) -> List[str]:
        """rsync over exactly ``ssh_base``: rsync splits ``-e`` itself, on
        spaces and quotes only, which single-quoting each word survives as
        long as no word holds a quote or backslash (none can: paths and
        options are checked when the configuration is read)."""
        rsync_path = (["sudo", "-n"] if self.config.sudo else []) + self.config.rsync_path
        ssh = self.ssh_base(peer)
        for word in ssh:
            if _RSH_UNSAFE.search(word):
                raise ClusterError("Cannot hand the ssh argument {!r} to rsync (it "
                                   "holds a quote or backslash); change it in "
                                   "{}.".format(word, self.config.where()))
        rsh = " ".join(shlex.quote(w) for w in ssh)
        return (["rsync", "-rltgo", "--relative", "--omit-dir-times",
                 "--timeout={}".format(max(60, self.config.connect_timeout * 3)),
                 "--rsync-path=" + " ".join(shlex.quote(w) for w in rsync_path),
                 "-e", rsh] + list(extra) + sources
                + ["{}:{}/".format(peer.host, dest.rstrip("/"))])

    def rsync(self, peer: Peer, sources: List[str], dest: str,
              extra: Sequence[str] = ()) -> Result:
        return _run(self.rsync_argv(peer, sources, dest, extra),
                    self.config.command_timeout)


def skipped(earlier: str) -> str:
    """The outcome of a peer that failed earlier in this run."""
    return "{} (earlier in this run; not tried again until the next run)".format(earlier)


class PeerFailed(Exception):
    """One peer's step failed; the message is the outcome text."""


def explain(step: str, peer: Peer, result: Result, config: ClusterConfig) -> str:
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
                return "cannot connect: {}".format(printable(line.strip().rstrip(".")))
        return "cannot connect: {}".format(result.last_error())
    if result.code == 127:
        return "{} failed: {} (set remote_command or rsync_path in {})".format(
            step, result.last_error(), config.where())
    message = result.last_error()
    if message.startswith("certbot-wwu: "):
        message = message[len("certbot-wwu: "):]
    return "{} failed (exit {}): {}".format(step, result.code, message)


class Outcome(object):
    """What happened with one peer: one line of the report. The text is
    made printable here, so that nothing a peer sent reaches a terminal or
    a log raw, whichever step put it in."""

    def __init__(self, peer: Peer, ok: bool, text: str,
                 record: Optional[Dict[str, Any]] = None) -> None:
        self.peer, self.ok, self.record = peer, ok, record
        self.text = printable(text, OUTCOME_LIMIT)

    @property
    def line(self) -> str:
        return "{}: {}{}".format(self.peer.label, "" if self.ok else "FAILED: ",
                                 self.text)

    def __repr__(self) -> str:
        return "Outcome({!r})".format(self.line)


def each(peers: List[Peer], work: Callable[[Peer], "Outcome"],
         parallel: int = DEFAULT_PARALLEL) -> List["Outcome"]:
    """``work(peer) -> Outcome`` for up to ``parallel`` peers at once; one
    slow or dead peer delays none of the others."""
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
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(peers)))) as pool:
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


def check(config: ClusterConfig, specs: Sequence[str]) -> List[Outcome]:
    """Log in to each peer and ask its certbot-wwu and rsync for their versions."""
    peers = config.peers(specs)
    config.require_known_hosts()
    transport = Transport(config, current_run())

    def one(peer: Peer) -> Outcome:
        transport.connect(peer)
        found = []
        for what, words in (("certbot-wwu", config.remote_command),
                            ("rsync", config.rsync_path)):
            result = transport.ssh(peer, words + ["--version"],
                                   timeout=config.connect_timeout + 60)
            if result.code != 0:
                raise PeerFailed(explain("running " + what, peer, result, config))
            first = printable((result.out.strip().splitlines() or [what])[0])
            found.append(" ".join(first.split()[:3]) if what == "rsync" else first)
        return Outcome(peer, True, "reachable as {} on port {}; {}".format(
            peer.user, peer.port, "; ".join(found)))
    return each(peers, one, config.parallel)
