"""Shared certificate: one node renews, and after each deployment pushes the
lineage to its peers, which deploy it themselves.

What a peer gets: ``archive/NAME`` (the current version), ``live/NAME`` and a
peer's version of ``renewal/NAME.conf`` (``autorenew = False``, no
``push_to``, the peer's paths); then ``certbot-wwu deploy --cert-name NAME``
runs there, so each peer grants its own users by name and acts on its own
units.

A push has four steps per peer: look (what the peer holds: the
``live/NAME/cert.pem`` link, its checksum, the origin marker), stage (once,
for all peers), transfer (rsync) and remote deploy. A local record
(``CONFIG/wwu-acl/NAME.cluster.json``) says whether that version was deployed
there, so a current peer costs only the look. Within one run the look is
made once per peer for every lineage that pushes to it (``certbot renew``
goes through them one after another), over the run's one connection to that
peer (transport.py).
"""
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence

from certbot_wwu import renewalconf
from certbot_wwu.cluster.config import ClusterConfig, ClusterError, Peer, load_config
from certbot_wwu.cluster.staging import copy_file, intended_mode, lock, mkdirs, private_dir
from certbot_wwu.cluster.transport import (
    Outcome, PeerFailed, Transport, current_run, each, explain, failed_error, printable)
from certbot_wwu.errors import WwuError
from certbot_wwu.files import write_atomic
from certbot_wwu.lineage import KINDS, Lineage

logger = logging.getLogger(__name__)

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
_CERT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}\Z")
_VERSION_FILE = re.compile(r"^cert(\d+)\.pem\Z")
#: [renewalparams] keys that are the origin's and mean nothing on a peer
_DROP_PARAMS = (renewalconf.conf_key("push-to"), "autorenew", "work_dir", "logs_dir")
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
        opened = renewalconf.section_of(line)
        if opened is not None:
            section = opened
            if section in _DROP_SECTIONS:
                continue
            out.append(line)
            if section == renewalconf.SECTION:
                params_at = len(out)
            continue
        if section in _DROP_SECTIONS:
            continue
        key = renewalconf.key_of(line)
        if not section and key in _TOP_PATHS:
            out.append("{} = {}".format(key, os.path.join(
                config_dir, _TOP_PATHS[key].format(name))))
            continue
        if section == renewalconf.SECTION:
            if key in _DROP_PARAMS:
                continue
            if key == "config_dir":
                line = "config_dir = {}".format(config_dir)
            params.append(key or "")
        out.append(line)
    if params_at < 0:
        out.append(renewalconf.SECTION)
        params_at = len(out)
    settings = [k for k in params if k.startswith(renewalconf.PREFIX)]
    if not settings:
        out = [line for i, line in enumerate(out) if not (
            i >= params_at and renewalconf.key_of(line) == "installer"
            and line.split("=", 1)[1].strip() == renewalconf.INSTALLER)]
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
    push_to = renewalconf.conf_key("push-to")
    return any(key.startswith(renewalconf.PREFIX) and key != push_to
               for key in renewalconf.param_keys(conf_text))


class PeerState(object):
    """What the look found on a peer for one lineage."""

    def __init__(self, version: Optional[int] = None, sha256: Optional[str] = None,
                 origin: Optional[str] = None, exists: bool = False) -> None:
        self.version, self.sha256, self.origin, self.exists = (
            version, sha256, origin, exists)


#: reads, for each lineage named: the cert.pem link, the checksum of what it
#: points to and the origin marker of the renewal conf; one sha256sum and one
#: grep for all of them (names are checked by _CERT_NAME: no blanks, quotes
#: or glob characters)
_LOOK_SCRIPT = (
    'd=$1; m=$2; shift 2; '
    'if cd -- "$d" 2>/dev/null; then '
    'for n do l=live/$n/cert.pem; '
    'if [ -L "$l" ] || [ -e "$l" ]; then '
    'printf "link %s %s\\n" "$n" "$(readlink -- "$l")"; fi; '
    'done; '
    'for n do printf "%s\\n" "live/$n/cert.pem"; done '
    '| xargs -r sha256sum -- 2>/dev/null | sed "s/^/sha256 /"; '
    'for n do printf "%s\\n" "renewal/$n.conf"; done '
    '| xargs -r grep -H -m 1 -e "^$m" -- 2>/dev/null | sed "s/^/origin /"; '
    'fi; echo end')


def look_words(config_dir: str, names: Sequence[str]) -> List[str]:
    """A read-only look at some of the peer's lineages (see _LOOK_SCRIPT)."""
    for name in names:
        if not _CERT_NAME.match(name):
            raise ClusterError("Cannot look for certificate {!r} on a peer: only names "
                               "of letters, digits and '._@+-' are sent.".format(name))
    return ["sh", "-c", _LOOK_SCRIPT, "sh", config_dir, MARKER] + list(names)


def parse_look(out: str, names: Sequence[str]) -> Dict[str, PeerState]:
    """The look's answer, one PeerState per name asked for."""
    lines = out.splitlines()
    if not lines or lines[-1].strip() != "end":
        raise PeerFailed("the peer's answer was cut short ({})".format(
            printable(out[-200:])))
    states = {name: PeerState() for name in names}
    for line in lines[:-1]:
        kind, _, rest = line.partition(" ")
        if kind == "link":
            name, _, target = rest.partition(" ")
            if name in states:
                match = _VERSION_FILE.match(os.path.basename(target.strip()))
                states[name].exists = True
                states[name].version = int(match.group(1)) if match else None
        elif kind == "sha256":
            digest, _, path = rest.partition(" ")
            name = path.strip()[len("live/"):-len("/cert.pem")]
            if name in states and len(digest) == 64:
                states[name].sha256 = digest
        elif kind == "origin":
            path, _, text = rest.partition(":")
            name = path[len("renewal/"):-len(".conf")]
            if name in states and text.startswith(MARKER):
                states[name].origin = text[len(MARKER):].strip() or None
    return states


def _look_at(transport: Transport, peer: Peer, names: Sequence[str]) -> Dict[str, PeerState]:
    config = transport.config
    result = transport.ssh(peer, look_words(config.config_dir, names),
                           timeout=config.connect_timeout + 60 + len(names) // 10)
    if result.code != 0:
        raise PeerFailed(explain("reading its version", peer, result, config))
    return parse_look(result.out, names)


def _look(transport: Transport, peer: Peer, name: str,
          related: Iterable[str] = ()) -> PeerState:
    """What ``peer`` holds of ``name``. The first look at a peer in a run
    also reads every ``related`` lineage (those that push to it); their
    answers are used once, by their own push later in the run."""
    memo = transport.run.memo if transport.run is not None else {}
    key = ("looked", peer.key, transport.config.config_dir)
    seen = memo.get(key)
    if seen is None:
        memo[key] = seen = {}
        names = sorted(set(related) | {name})
        if len(names) > 1:
            seen.update(_look_at(transport, peer, names))
    if name in seen:
        return seen.pop(name)
    return _look_at(transport, peer, [name])[name]


def pushing_lineages(config_dir: str) -> Dict[str, List[str]]:
    """{lineage name: its push_to peers} from every renewal conf: which
    lineages of this host push, and where."""
    found = {}  # type: Dict[str, List[str]]
    for path in sorted(glob.glob(os.path.join(config_dir, "renewal", "*.conf"))):
        name = os.path.basename(path)[:-len(".conf")]
        if not _CERT_NAME.match(name):
            continue
        try:
            value = renewalconf.options(renewalconf.params(path)).get("push_to")
        except WwuError:
            continue  # status and the installer report an unreadable conf
        if isinstance(value, str):
            value = value.split(",")
        specs = [s.strip() for s in value or () if isinstance(s, str) and s.strip()]
        if specs:
            found[name] = specs
    return found


def _related(config: ClusterConfig, config_dir: str) -> Dict[str, List[str]]:
    """{peer key: lineages that push to it}, read once per run."""
    memo = current_run().memo
    key = ("related", config_dir, config.source)
    if key not in memo:
        by_peer = {}  # type: Dict[str, List[str]]
        peers = {}  # type: Dict[str, Optional[str]]
        for name, specs in pushing_lineages(config_dir).items():
            for spec in specs:
                if spec not in peers:
                    try:
                        peers[spec] = config.peer(spec).key
                    except ClusterError:
                        peers[spec] = None
                if peers[spec] is not None:
                    by_peer.setdefault(peers[spec], []).append(name)
        memo[key] = by_peer
    return memo[key]


def sha256_file(path: str) -> str:
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
    private_dir(os.path.dirname(path))
    write_atomic(path, json.dumps({"peers": record}, indent=1, sort_keys=True) + "\n",
                 0o600)


def stage_lineage(lineage: Lineage, conf_text: str, workdir: str) -> str:
    """A tree of exactly what a peer gets (current version only), in a 0700
    directory under the config dir."""
    private_dir(workdir)
    stage = tempfile.mkdtemp(prefix=".push-", dir=workdir)
    try:
        files = lineage.current()
        archive = mkdirs(stage, "archive/" + lineage.name, (0o700, 0o755))
        live = mkdirs(stage, "live/" + lineage.name, (0o700, 0o755))
        for kind in KINDS:
            base = os.path.basename(files[kind])
            copy_file(files[kind], os.path.join(archive, base), intended_mode(files[kind]))
            os.symlink("../../archive/{}/{}".format(lineage.name, base),
                       os.path.join(live, kind + ".pem"))
        readme = os.path.join(lineage.live_dir, "README")
        if os.path.isfile(readme):
            copy_file(readme, os.path.join(live, "README"), 0o644)
        renewal = mkdirs(stage, "renewal", (0o755,))
        conf = os.path.join(renewal, lineage.name + ".conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(conf_text)
        os.chmod(conf, 0o644)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


class Local(object):
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
        self.sha256 = sha256_file(files["cert"])
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
         force: bool = False,
         related: Optional[Dict[str, List[str]]] = None) -> List[Outcome]:
    """Bring every peer to the lineage's current version; one Outcome each.

    ``related``: {peer key: names of the other lineages that will be pushed
    to that peer in this run}, looked at together with this one."""
    config.require_share("certificates")
    peers = config.peers(specs)
    config.require_known_hosts()
    transport = Transport(config, current_run())
    workdir = os.path.join(lineage.config_dir, "wwu-acl")
    with lock(os.path.join(workdir, lineage.name + ".cluster.lock"),
              config.command_timeout, "Pushing {}".format(lineage.name)):
        local = Local(lineage, config)
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
                             force, (related or {}).get(peer.key, ()))
        try:
            outcomes = each(peers, one, config.parallel)
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


def _push_one(transport: Transport, peer: Peer, local: Local,
              recorded: Optional[Dict[str, Any]], staged, force: bool,
              related: Iterable[str] = ()) -> Outcome:
    config = transport.config
    name = local.lineage.name
    transport.connect(peer)
    state = _look(transport, peer, name, related)
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
        raise PeerFailed(explain("copying", peer, result, config))
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
        raise PeerFailed("{}, but {}".format(what, explain("deploying", peer, result,
                                                           config)))
    report = "; ".join(printable(line.strip()) for line in result.out.splitlines()
                       if line.strip())
    return Outcome(peer, True, "{} and deployed it{}".format(
        what, " ({})".format(report) if report else ""), dict(entry, deployed=True))


def push_lineage(lineage: Lineage, peers: Sequence[str]) -> None:
    """After a deployment: bring ``peers`` to the lineage's current version.

    Within one run, each peer is looked at once for every lineage that
    pushes to it, over one connection; a peer that failed is skipped for
    the rest of the run. Every peer's outcome is logged; ClusterError names
    the peers that failed.
    """
    config = load_config()
    outcomes = push(config, lineage, list(peers),
                    related=_related(config, lineage.config_dir))
    for outcome in outcomes:
        if outcome.ok:
            logger.info("%s: %s", lineage.name, outcome.line)
        else:
            logger.error("%s: %s", lineage.name, outcome.line)
    error = failed_error("Pushing {}".format(lineage.name), outcomes)
    if error:
        raise error
