"""certbot's ACME accounts on disk, as certbot itself finds them.

certbot keeps each account in ``CONFIG/accounts/<server path>/<id>/``
(``meta.json``, ``private_key.json``, ``regr.json``), where the server path
is the directory URL's ``host[:port]/path`` (``NamespaceConfig.server_path``,
a trailing slash kept), and loads every directory there whose three files it
can open (``AccountFileStorage.find_all``); without any it falls back from
Let's Encrypt's v02 URLs to their v01 accounts (``LE_REUSE_SERVERS``).

``register`` (is there an account already?) and the cluster (which account
goes to a peer?) both ask here, so they count the same accounts certbot
does. The one difference, on purpose: a hidden directory (a name starting
with '.') is never an account. certbot never names one so, and the temporary
directories that tools write before a rename are named so
(tests/test_accounts.py compares this with certbot's own code).
"""
import os
from typing import List, Optional
from urllib.parse import urlparse

from certbot_wwu.errors import WwuError

ACCOUNTS_DIR = "accounts"
#: what certbot opens to load an account (AccountFileStorage._load_for_server_path)
ACCOUNT_FILES = ("meta.json", "private_key.json", "regr.json")
#: certbot links Let's Encrypt's v02 accounts to the v01 ones (constants.py)
LE_REUSE_SERVERS = {
    "acme-v02.api.letsencrypt.org/directory": "acme-v01.api.letsencrypt.org/directory",
    "acme-staging-v02.api.letsencrypt.org/directory":
        "acme-staging.api.letsencrypt.org/directory",
}


class AccountError(WwuError):
    """certbot's accounts for a server cannot be read, or are not what is asked."""


def server_path(server: str) -> str:
    """``host[:port]/path`` of a directory URL, as certbot names its accounts
    directory (``NamespaceConfig.server_path``: a trailing slash is kept)."""
    parsed = urlparse(server)
    return (parsed.netloc + parsed.path).replace("/", os.path.sep)


def accounts_dir(config_dir: str, server: str) -> str:
    """Where certbot keeps the accounts of ``server``."""
    return os.path.join(config_dir, ACCOUNTS_DIR, server_path(server))


def account_ids(directory: str) -> List[str]:
    """The accounts in one server's directory, sorted: each directory whose
    three files certbot would open, never a hidden one."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:
        raise AccountError(
            "Cannot look for certbot's accounts in {}: {}; run this as the user "
            "that runs certbot (root).".format(directory, err.strerror or err))
    return sorted(name for name in names if not name.startswith(".") and all(
        os.path.isfile(os.path.join(directory, name, part)) for part in ACCOUNT_FILES))


def existing_accounts(config_dir: str, server: str) -> List[str]:
    """Ids of the accounts certbot would load for ``server``, sorted."""
    path = server_path(server)
    ids = account_ids(os.path.join(config_dir, ACCOUNTS_DIR, path))
    if not ids and path in LE_REUSE_SERVERS:
        ids = account_ids(os.path.join(config_dir, ACCOUNTS_DIR, LE_REUSE_SERVERS[path]))
    return ids


class Account(object):
    """One account of certbot's: where it is and what it belongs to."""

    def __init__(self, config_dir: str, server: str, account_id: str) -> None:
        self.config_dir = config_dir
        self.server = server
        #: certbot's name for the server's directory (trailing slash kept)
        self.server_path = server_path(server)
        self.id = account_id

    @property
    def relative(self) -> str:
        """``accounts/<server path>/<id>`` below the config dir."""
        return os.path.normpath(os.path.join(ACCOUNTS_DIR, self.server_path, self.id))

    @property
    def directory(self) -> str:
        return os.path.join(self.config_dir, self.relative)


def find_account(config_dir: str, server: str,
                 account_id: Optional[str] = None) -> Account:
    """The one account certbot has for ``server``, or ``account_id`` among
    several; AccountError says what there is instead."""
    directory = accounts_dir(config_dir, server)
    ids = account_ids(directory)
    if account_id is not None:
        if account_id not in ids:
            raise AccountError("There is no account {} for {} in {}{}.".format(
                account_id, server, directory,
                " (there is {})".format(", ".join(ids)) if ids else ""))
        return Account(config_dir, server, account_id)
    if not ids:
        raise AccountError("There is no account for {} in {}; register one first "
                           "(certbot-wwu register or certbot register).".format(
                               server, directory))
    if len(ids) > 1:
        raise AccountError("There are {} accounts for {} ({}); choose one with "
                           "--account ID.".format(len(ids), server, ", ".join(ids)))
    return Account(config_dir, server, ids[0])
