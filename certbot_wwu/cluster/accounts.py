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
from urllib.parse import urlsplit

from certbot_wwu import accounts
from certbot_wwu.accounts import ACCOUNT_FILES, Account
from certbot_wwu.cluster.config import ClusterConfig, ClusterError, Peer
from certbot_wwu.cluster.staging import copy_file, mkdirs, private_dir
from certbot_wwu.cluster.transport import (
    Outcome, PeerFailed, Transport, current_run, each, explain)

_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
_SERVER_PATH = re.compile(r"^[A-Za-z0-9._~:@+-]+(/[A-Za-z0-9._~:@+-]+)*\Z")
EXPORT_FORMAT = "certbot-wwu account export 1"
README_NAME = "README.txt"
MANIFEST_NAME = "certbot-wwu-account.json"


def checked_server_path(server: str) -> str:
    """certbot's server path (accounts.server_path) of an https:// directory
    URL, refused unless every part is a plain name: it reaches a peer's
    shell and rsync."""
    parts = urlsplit(server.strip())
    path = accounts.server_path(server.strip())
    bare = path.rstrip("/")  # certbot keeps a trailing slash
    if parts.scheme.lower() != "https" or not parts.netloc or not _SERVER_PATH.match(bare) \
            or any(p in (".", "..") for p in bare.split("/")):
        raise ClusterError("{!r} is not an https:// ACME directory URL that certbot "
                           "can keep an account for.".format(server))
    return path


def find_account(config_dir: str, server: str,
                 account_id: Optional[str] = None) -> Account:
    """The account certbot keeps for ``server`` (accounts.find_account),
    with a server URL and an id that may go to a peer."""
    checked_server_path(server)
    account = accounts.find_account(config_dir, server.strip(), account_id)
    if not _ACCOUNT_ID.match(account.id):
        raise ClusterError("Account directory {} has an unexpected name.".format(
            account.directory))
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


#: the peer's accounts for a server by the rule of accounts.account_ids: a
#: directory that is not hidden and holds the three files certbot opens
_LIST_SCRIPT = ('d={}; if [ -d "$d" ]; then for e in "$d"/*; do '
                'if [ -f "$e/meta.json" ] && [ -f "$e/private_key.json" ] '
                '&& [ -f "$e/regr.json" ]; then printf "%s\\n" "${{e##*/}}"; fi; '
                'done; fi; echo end')


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
    directory = os.path.join(config.config_dir, account.relative, os.pardir)
    directory = os.path.normpath(directory)
    script = _LIST_SCRIPT.format(shlex.quote(directory))
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
        if manifest["format"] != EXPORT_FORMAT:  # not assert: -O would drop it
            raise ValueError(manifest["format"])
        members.pop(README_NAME)
        server, account_id = str(manifest["server"]), str(manifest["account_id"])
        stored_path = str(manifest["server_path"])
    except (KeyError, ValueError, TypeError, AttributeError):
        raise ClusterError("{} is not a certbot-wwu account export (no valid {}).".format(
            path, MANIFEST_NAME))
    # older exports stripped a trailing slash from server_path
    try:
        valid = (_ACCOUNT_ID.match(account_id) and os.path.normpath(
            checked_server_path(server)) == os.path.normpath(stored_path))
    except ClusterError:
        valid = False
    if not valid:
        raise ClusterError("{} names an invalid account or server.".format(path))
    prefix = Account("", server, account_id).relative + "/"
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


def _holds(path: str, data: bytes) -> bool:
    """Whether the file ``path`` holds exactly ``data``."""
    try:
        with open(path, "rb") as f:
            return f.read() == data
    except OSError:
        return False


def import_account(path: str, config_dir: str, force: bool = False) -> str:
    """Install an export's account under ``config_dir``; one line of report."""
    manifest, files = read_export(path)
    account = Account(config_dir, manifest["server"], manifest["account_id"])
    parent = os.path.dirname(account.directory)
    others = [i for i in accounts.account_ids(parent) if i != account.id]
    if os.path.isdir(account.directory):
        same = all(_holds(os.path.join(account.directory, n), files[n])
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
    # written and swapped in accounts/ itself: never inside the server's
    # directory, where certbot (and find_account) would take a leftover of a
    # killed import for a second account
    top = os.path.join(config_dir, accounts.ACCOUNTS_DIR)
    tmp = tempfile.mkdtemp(prefix="." + account.id + ".", dir=top)
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
            old = tempfile.mkdtemp(prefix="." + account.id + ".old-", dir=top)
            os.rmdir(old)  # a fresh name for the rename
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
