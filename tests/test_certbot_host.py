"""certbot_wwu.certbot_host: certbot's directories from its cli.ini for every
command, and finding the certbot to run."""
import os
import sys

import pytest

from certbot_wwu import certbot_host, cli
from certbot_wwu.errors import WwuError


@pytest.fixture
def cli_ini(monkeypatch, tmp_path):
    """certbot's per-user cli.ini ($XDG_CONFIG_HOME/letsencrypt/cli.ini), and
    no system-wide one."""
    monkeypatch.setattr(certbot_host, "CERTBOT_CLI_INI", str(tmp_path / "absent"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = tmp_path / "xdg" / "letsencrypt" / "cli.ini"
    path.parent.mkdir(parents=True)
    return path


def test_default_dirs_are_certbots_without_cli_ini(cli_ini):
    assert certbot_host.default_dirs() == {"config-dir": "/etc/letsencrypt",
                                           "work-dir": "/var/lib/letsencrypt",
                                           "logs-dir": "/var/log/letsencrypt"}


def test_default_dirs_as_certbot_parses_cli_ini(monkeypatch, tmp_path, cli_ini):
    system = tmp_path / "cli.ini"
    system.write_text("# certbot's syntax\nconfig-dir = /srv/le\nwork-dir: /srv/work\n"
                      "email = a@example.org\n")
    monkeypatch.setattr(certbot_host, "CERTBOT_CLI_INI", str(system))
    assert certbot_host.default_dirs()["config-dir"] == "/srv/le"
    assert certbot_host.default_dirs()["work-dir"] == "/srv/work"
    cli_ini.write_text("config-dir=/home/x/le\n")  # the later file wins
    assert certbot_host.default_dirs()["config-dir"] == "/home/x/le"
    cli_ini.write_bytes(b"config-dir = \xff\n")  # unreadable: certbot's defaults
    assert certbot_host.default_dirs()["config-dir"] == "/srv/le"


@pytest.mark.parametrize("argv", [
    ["deploy", "--cert-name", "x"],
    ["attach", "--cert-name", "x", "--user", "root"],
    ["register", "--server", "https://ca.example/dir"],
    ["cluster", "push", "--cert-name", "x"],
    ["cluster", "check"],
])
def test_every_command_honours_certbots_cli_ini(cli_ini, argv):
    """Regression: only register read the config dir from cli.ini."""
    cli_ini.write_text("config-dir = /srv/le\n")
    args = cli.build_parser().parse_args(argv)
    assert args.config_dir == "/srv/le"
    assert cli.build_parser().parse_args(argv + ["--config-dir", "/x"]).config_dir == "/x"


def test_find_certbot_given_next_to_python_or_under_a_root(monkeypatch, tmp_path):
    with pytest.raises(WwuError, match="^/nope is not an executable certbot; give the "
                                       "right path with --certbot PATH.$"):
        certbot_host.find_certbot("/nope")
    beside = os.path.join(os.path.dirname(sys.executable), "certbot")
    if os.access(beside, os.X_OK):
        assert certbot_host.find_certbot() == beside
    root = tmp_path / "image"
    root.mkdir()
    with pytest.raises(WwuError) as err:
        certbot_host.find_certbot(root=str(root), remedy=" first")
    assert str(err.value) == (
        "No certbot in /usr/local/bin/certbot, /usr/bin/certbot, "
        "/opt/certbot/bin/certbot under {}; install certbot (pip install certbot, "
        "or the distribution's package) first.".format(root))
    tool = root / "opt" / "certbot" / "bin" / "certbot"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert certbot_host.find_certbot(root=str(root)) == "/opt/certbot/bin/certbot"
