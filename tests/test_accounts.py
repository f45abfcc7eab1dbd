"""certbot_wwu.accounts against certbot's own code: the server path of
``NamespaceConfig`` and the accounts ``AccountFileStorage.find_all`` loads,
with whichever certbot this Python has (5.8 in the main venv, 1.22 in the
Python 3.6 one). Real account files, written with certbot's own classes."""
import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import textwrap

import josepy as jose
import pytest
from acme import messages
from certbot import configuration
from certbot._internal import account as certbot_account
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives.asymmetric import ec

from certbot_wwu import accounts, cluster
from certbot_wwu.accounts import AccountError

SERVER = "https://acme.example.org:14000/dir"
SERVERS = [
    SERVER,
    "https://acme.example.org:14000/dir/",  # certbot keeps the trailing slash
    "https://acme.sectigo.com/v2/OV",
    "https://acme-v02.harica.gr/acme/962d61f0-7815-46cc-9c42-8e8aa25443d1/directory",
    "https://acme-v02.api.letsencrypt.org/directory",
    "https://127.0.0.1:14000/dir?x=1",
]


def certbot_config(config_dir, server):
    """certbot's NamespaceConfig as its own parser would leave it."""
    namespace = argparse.Namespace(
        config_dir=config_dir, work_dir=os.path.join(config_dir, "work"),
        logs_dir=os.path.join(config_dir, "logs"), server=server,
        http01_port=80, https_port=443, strict_permissions=False, domains=None)
    return configuration.NamespaceConfig(namespace)


def certbot_finds(config_dir, server):
    """The ids of the accounts certbot itself loads for ``server``."""
    storage = certbot_account.AccountFileStorage(certbot_config(config_dir, server))
    return sorted(a.id for a in storage.find_all())


def write_account(config_dir, server, name=None, skip=()):
    """A real account as certbot writes it (its own classes); the directory
    is named by certbot's id unless ``name`` says otherwise."""
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1(), default_backend()))
    regr = messages.RegistrationResource(body=messages.Registration(),
                                         uri="https://ca.example/acct/1")
    meta = certbot_account.Account.Meta(
        creation_dt=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
        creation_host="web1.example.org")
    account = certbot_account.Account(regr, key, meta)
    directory = os.path.join(accounts.accounts_dir(config_dir, server),
                             name or account.id)
    os.makedirs(directory, 0o700)
    for part, data in (("regr.json", regr.json_dumps()),
                       ("private_key.json", key.json_dumps()),
                       ("meta.json", meta.json_dumps())):
        if part not in skip:
            with open(os.path.join(directory, part), "w") as f:
                f.write(data)
    return account.id, directory


@pytest.mark.parametrize("server", SERVERS)
def test_server_path_is_certbots(tmp_path, server):
    config = certbot_config(str(tmp_path), server)
    assert accounts.server_path(server) == config.server_path
    assert accounts.accounts_dir(str(tmp_path), server) == config.accounts_dir


@pytest.mark.parametrize("server", [SERVER, SERVER + "/"])
def test_the_accounts_certbot_loads(tmp_path, server):
    config_dir = str(tmp_path)
    assert accounts.existing_accounts(config_dir, server) == certbot_finds(
        config_dir, server) == []
    first, _ = write_account(config_dir, server)
    second, _ = write_account(config_dir, server)
    write_account(config_dir, server, "no-meta", skip=("meta.json",))
    write_account(config_dir, server, "no-key", skip=("private_key.json",))
    write_account(config_dir, server, ".abc.tmp123", skip=("regr.json",))
    os.makedirs(os.path.join(accounts.accounts_dir(config_dir, server), "empty"))
    with open(os.path.join(accounts.accounts_dir(config_dir, server), "stray"), "w"):
        pass
    write_account(config_dir, "https://acme.example.org:14000/other")
    assert accounts.existing_accounts(config_dir, server) == certbot_finds(
        config_dir, server) == sorted([first, second])


def test_lets_encrypt_v01_accounts_count_as_certbot_says(tmp_path):
    config_dir = str(tmp_path)
    old, _ = write_account(config_dir, "https://acme-v01.api.letsencrypt.org/directory")
    v02 = "https://acme-v02.api.letsencrypt.org/directory"
    assert accounts.existing_accounts(config_dir, v02) == [old]
    assert certbot_finds(config_dir, v02) == [old]


def test_a_hidden_directory_is_never_an_account(tmp_path):
    """The one difference to certbot, on purpose: certbot would load a
    complete hidden directory (another tool's temporary copy) as a second
    account; we never count it."""
    config_dir = str(tmp_path)
    real, _ = write_account(config_dir, SERVER)
    write_account(config_dir, SERVER, ".leftover")
    assert len(certbot_finds(config_dir, SERVER)) == 2
    assert accounts.existing_accounts(config_dir, SERVER) == [real]


def test_a_leftover_temporary_directory_is_not_a_second_account(tmp_path):
    """Regression: the cluster counted every directory, so a leftover of an
    interrupted import ('.ID.tmp123') made find_account fail with "There are
    2 accounts"."""
    config_dir = str(tmp_path)
    real, _ = write_account(config_dir, SERVER)
    os.makedirs(os.path.join(accounts.accounts_dir(config_dir, SERVER),
                             ".{}.tmp123".format(real)))
    assert cluster.find_account(config_dir, SERVER).id == real


def test_find_account(tmp_path):
    config_dir = str(tmp_path)
    with pytest.raises(AccountError, match="There is no account for {} in .*; "
                                           "register one first".format(SERVER)):
        accounts.find_account(config_dir, SERVER)
    first, directory = write_account(config_dir, SERVER)
    account = accounts.find_account(config_dir, SERVER)
    assert (account.id, account.directory) == (first, directory)
    second, _ = write_account(config_dir, SERVER)
    with pytest.raises(AccountError, match="There are 2 accounts for .*; choose one "
                                           "with --account ID."):
        accounts.find_account(config_dir, SERVER)
    assert accounts.find_account(config_dir, SERVER, second).id == second
    with pytest.raises(AccountError, match=r"There is no account nope .* \(there is "):
        accounts.find_account(config_dir, SERVER, "nope")


def test_an_accounts_directory_that_cannot_be_read_is_a_sentence(tmp_path):
    config_dir = str(tmp_path)
    directory = accounts.accounts_dir(config_dir, SERVER)
    os.makedirs(os.path.dirname(directory))
    os.symlink(directory, directory)  # ELOOP, even for root
    with pytest.raises(AccountError, match="Cannot look for certbot's accounts in "
                                           ".*; run this as the user that runs"):
        accounts.existing_accounts(config_dir, SERVER)


KILLED_IMPORT = textwrap.dedent("""\
    import os, signal, sys
    from certbot_wwu import cluster
    def killed(src, dst):  # SIGKILL where the account is swapped in
        os.kill(os.getpid(), signal.SIGKILL)
    sys.modules[cluster.import_account.__module__].os.rename = killed
    cluster.import_account(sys.argv[1], sys.argv[2])
    """)


def test_a_killed_import_never_leaves_certbot_a_second_account(tmp_path):
    """import-account killed at the swap: certbot itself (find_all) still
    sees exactly the one account, never a half-imported copy beside it."""
    origin, peer = str(tmp_path / "origin"), str(tmp_path / "peer")
    account_id, _ = write_account(origin, SERVER)
    export = str(tmp_path / "account.tar")
    cluster.export_account(cluster.find_account(origin, SERVER), export)
    write_account(peer, SERVER, account_id)  # the same id, an older copy
    child = subprocess.run([sys.executable, "-c", KILLED_IMPORT, export, peer],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert len(certbot_finds(peer, SERVER)) == 1  # the older copy
    assert accounts.existing_accounts(peer, SERVER) == [account_id]
    # and the import works afterwards
    assert "imported account" in cluster.import_account(export, peer)
    assert certbot_finds(peer, SERVER) == [account_id]
    with open(os.path.join(accounts.accounts_dir(peer, SERVER), account_id,
                           "meta.json")) as f:
        assert json.load(f)["creation_host"] == "web1.example.org"
