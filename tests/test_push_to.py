"""--wwu-acl-push-to / --push-to: a peer that a push would refuse is refused
when the settings are built, before anything changes (addresses.py and
cluster.config.check_peers, called by Settings.from_options)."""
import os

import pytest

from certbot_wwu import cli, presets
from certbot_wwu.errors import SettingsError
from certbot_wwu.settings import Settings
from tests.conftest import needs_root
from tests.support.host import SERVICE_USER, getfacl

BAD = [("root@bad_host", "'bad_host' is not a host name or address"),
       ("web..x", "'web..x' is not a host name or address"),
       ("a:99999", "'99999' is not a port number from 1 to 65535")]


@pytest.fixture(autouse=True)
def site(monkeypatch, tmp_path):
    directory = tmp_path / "site"
    directory.mkdir()
    monkeypatch.setenv(presets.DIR_ENV, str(directory))
    return directory


@pytest.mark.parametrize("peer, why", BAD)
def test_settings_refuse_a_peer_the_push_would_refuse(peer, why):
    options = {"user": "root", "push_to": "web2," + peer}
    with pytest.raises(SettingsError) as err:
        Settings.from_options(options.get)
    assert str(err.value) == (
        "--wwu-acl-push-to {!r}: {}; give [user@]host[:port] or a peer name from "
        "[cluster peers].".format(peer, why))


def test_peer_names_and_targets_pass(site):
    (site / "cluster.conf").write_text(
        "[cluster]\nshare = certificates\n\n[cluster peers]\nweb_two = web2.example.org\n")
    options = {"user": "root",
               "push_to": "web_two,root@web3.example.org:2222,10.0.0.1"}
    assert Settings.from_options(options.get).push_to == (
        "web_two", "root@web3.example.org:2222", "10.0.0.1")
    options = {"user": "root", "push_to": "root@[::1]:2222,[fe80::1]"}
    assert Settings.from_options(options.get).push_to == ("root@[::1]:2222", "[fe80::1]")
    options = {"user": "root", "push_to": "web_three"}
    with pytest.raises(SettingsError, match=r"from \[cluster peers\] \(web_two\)\.$"):
        Settings.from_options(options.get)


@needs_root
@pytest.mark.parametrize("peer, why", BAD)
def test_deploy_with_a_bad_peer_changes_nothing(capsys, lineage_dir, peer, why):
    """Through the command: exit 1, one sentence, and the key's ACL as it was."""
    key = os.path.join(lineage_dir, "archive", "unit", "privkey1.pem")
    before = getfacl(key)
    code = cli.main(["deploy", "--cert-name", "unit", "--config-dir", lineage_dir,
                     "--user", SERVICE_USER, "--push-to", peer])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == ("certbot-wwu: --push-to {!r}: {}; give [user@]host[:port] or a "
                   "peer name from [cluster peers].\n".format(peer, why))
    assert getfacl(key) == before and SERVICE_USER not in before
