"""Shared account: servers that the same people administer may share one
ACME account (DESIGN §8), so a peer can obtain certificates under the same
ACME ID without registering (EAB credentials are single-use).

Only on request, and only when the site allows it (``share = account``):
``accounts/<server path>/<id>/`` of exactly one account goes to a peer over
rsync (share_account), or into a 0600 tar with a README for a host ssh
cannot reach (export_account, import_account).
"""
import errno
import io
import json
import os
import re
import shlex
import shutil
import socket
import tarfile
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

from certbot_wwu.cluster.config import ClusterConfig, ClusterError, Peer
from certbot_wwu.cluster.staging import copy_file, mkdirs, private_dir
from certbot_wwu.cluster.transport import (
    Outcome, PeerFailed, Transport, current_run, each, explain)

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
    private_dir(workdir)
    stage = tempfile.mkdtemp(prefix=".account-", dir=workdir)
    try:
        parts = account.relative.split("/")
        target = mkdirs(stage, account.relative, (0o700,) * len(parts))
        for name in ACCOUNT_FILES:
            src = os.path.join(account.directory, name)
            mode = os.stat(src).st_mode & 0o777
            copy_file(src, os.path.join(target, name),
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
    transport = Transport(config, current_run())
    workdir = os.path.join(account.config_dir, "wwu-acl")
    stage = stage_account(account, workdir)
    try:
        return each(peers, lambda peer: _share_one(transport, peer, account, stage,
                                                   force), config.parallel)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _share_one(transport: Transport, peer: Peer, account: Account, stage: str,
               force: bool) -> Outcome:
    config = transport.config
    transport.connect(peer)
    directory = os.path.join(config.config_dir, "accounts", account.server_path)
    script = 'd={}; if [ -d "$d" ]; then ls -1A -- "$d/"; fi; echo end'.format(
        shlex.quote(directory))
    result = transport.ssh(peer, ["sh", "-c", script], timeout=config.connect_timeout + 60)
    if result.code != 0 or not result.out.splitlines() \
            or result.out.splitlines()[-1] != "end":
        raise PeerFailed(explain("reading its accounts", peer, result, config))
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
            raise PeerFailed(explain("moving its other account aside", peer, result,
                                      config))
        moved = "; moved its account {} to {} (its renewal confs that name it need " \
                "'account = {}' now)".format(", ".join(others), backup, account.id)
    result = transport.rsync(peer, [os.path.join(stage, ".", account.relative)],
                             config.config_dir, extra=["--keep-dirlinks"])
    if result.code != 0:
        raise PeerFailed(explain("copying", peer, result, config))
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
    mkdirs(config_dir, "/".join(relative[:-1]), (0o700,) * (len(relative) - 1))
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
