"""The certbot-wwu command: presets, env, setup; errors as one line, exit 1."""
import json
import os
import subprocess
import sys

import pytest

from certbot_wwu import __version__, cli, presets, timer
from tests.conftest import needs_root
from tests.test_timer import OS_RELEASE, Systemctl, make_root, read, tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY = "http://wwwproxy.uni-muenster.de:3128"
HARICA_URL = ("https://acme-v02.harica.gr/acme/"
              "962d61f0-7815-46cc-9c42-8e8aa25443d1/directory")


@pytest.fixture(autouse=True)
def no_site_presets(monkeypatch, tmp_path):
    monkeypatch.delenv(presets.DIR_ENV, raising=False)
    monkeypatch.setattr(presets, "DEFAULT_DIR", str(tmp_path / "absent"))


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def module(*argv, **kwargs):
    """``python -m certbot_wwu.cli`` with this interpreter (the venv's)."""
    env = dict(os.environ, PYTHONPATH=REPO, **kwargs.pop("env", {}))
    env.pop(presets.DIR_ENV, None)
    return subprocess.run([sys.executable, "-m", "certbot_wwu.cli"] + list(argv),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, **kwargs)


def assert_one_line_error(code, out, err, fragment, exit_code=1):
    assert code == exit_code
    assert out == ""
    assert err.startswith("certbot-wwu: ") and err.endswith(".\n")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert fragment in err


# --- the command ------------------------------------------------------------------

def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, "certbot-wwu {}\n".format(__version__))


def test_version_as_a_module():
    proc = module("--version")
    assert (proc.returncode, proc.stdout) == (0, "certbot-wwu {}\n".format(__version__))


@pytest.mark.parametrize("argv", [[], ["presets"], ["env"], ["setup"]])
def test_help(capsys, argv):
    code, out, _ = run(capsys, *(argv + ["--help"]))
    assert code == 0 and out.startswith("usage: certbot-wwu")


def test_help_lists_the_subcommands(capsys):
    _, out, _ = run(capsys, "--help")
    for name in ("presets", "env", "setup"):
        assert name in out


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["env", "--preset", "wwu",
                                                       "--proxy", "p:1"]])
def test_usage_errors_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2 and "usage:" in err


def test_subcommands_are_extensible():
    """Others add subcommands in the same style: add_X registers func=cmd_X."""
    parser = cli.build_parser()
    args = parser.parse_args(["presets", "--json"])
    assert args.func is cli.cmd_presets and args.json


def test_keyboard_interrupt(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_presets", interrupted)
    code, _, err = run(capsys, "presets")
    assert code == 130 and "Traceback" not in err


# --- presets ----------------------------------------------------------------------

def test_presets_table(capsys):
    code, out, err = run(capsys, "presets")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SERVER", "EAB", "E-MAIL", "PRE-VALIDATED",
                                "TIMEOUT", "PROXY"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert list(rows) == list(presets.load_presets())
    assert rows["sectigo-ov"] == ["sectigo-ov", "https://acme.sectigo.com/v2/OV",
                                  "yes", "no", "yes", "300", "s", "-"]
    assert rows["harica"][1] == "https://acme-v02.harica.gr/acme/<uuid>/directory"
    assert rows["letsencrypt"][2:] == ["no", "no", "no", "-", "-"]
    assert rows["wwu"][-1] == PROXY


def test_presets_json(capsys):
    code, out, _ = run(capsys, "presets", "--json")
    data = json.loads(out)
    assert code == 0 and [p["name"] for p in data] == list(presets.load_presets())
    wwu = [p for p in data if p["name"] == "wwu"][0]
    assert wwu["proxy"] == PROXY and wwu["eab_required"] is True
    assert wwu["issuance_timeout"] == 300 and wwu["server"] is None


def test_presets_with_a_site_directory(capsys, tmp_path, monkeypatch):
    directory = tmp_path / "site"
    directory.mkdir()
    (directory / "lab.conf").write_text(
        "[preset lab]\ninherit = harica\nproxy = me:pw@proxy.example:8080\n")
    code, out, _ = run(capsys, "presets", "--presets-dir", str(directory))
    assert code == 0 and "lab" in out and "me:***@proxy.example:8080" in out
    assert "pw@" not in out
    monkeypatch.setenv(presets.DIR_ENV, str(directory))
    code, out, _ = run(capsys, "presets", "--json")
    lab = json.loads(out)[-1]
    assert lab["name"] == "lab" and lab["source"] == str(directory / "lab.conf")
    assert "pw@" not in out


def test_presets_bad_site_file(capsys, tmp_path):
    directory = tmp_path / "site"
    directory.mkdir()
    (directory / "ca.conf").write_text(
        "[preset tcs]\ninherit = harica\n"
        "server = https://acme-v02.harica.gr/acme/0000/directory\n")
    code, out, err = run(capsys, "presets", "--presets-dir", str(directory))
    assert_one_line_error(code, out, err, "In {}, section [preset tcs], key server: "
                          .format(directory / "ca.conf"))


# --- env --------------------------------------------------------------------------

def test_env_exports(capsys):
    code, out, _ = run(capsys, "env", "--preset", "wwu")
    assert code == 0
    assert out.splitlines() == [
        "export http_proxy=" + PROXY, "export https_proxy=" + PROXY,
        "export HTTP_PROXY=" + PROXY, "export HTTPS_PROXY=" + PROXY,
        "export no_proxy=localhost,127.0.0.1,::1,uni-muenster.de",
        "export NO_PROXY=localhost,127.0.0.1,::1,uni-muenster.de"]


def shell_eval(*argv):
    """What a shell sees after eval "$(certbot-wwu env ...)"."""
    script = ('eval "$("$0" -m certbot_wwu.cli env "$@")" || exit 9; '
              'printf "%s|%s|%s|%s\\n" "$http_proxy" "$https_proxy" "$no_proxy" '
              '"$HTTPS_PROXY"')
    env = dict(os.environ, PYTHONPATH=REPO)
    for key in presets.ENV_KEYS:
        env.pop(key, None)
    return subprocess.run(["sh", "-c", script, sys.executable] + list(argv),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env)


def test_env_in_a_real_shell():
    proc = shell_eval("--preset", "wwu")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "{p}|{p}|localhost,127.0.0.1,::1,uni-muenster.de|{p}\n".format(
        p=PROXY)


def test_env_seed_proxy_in_a_real_shell():
    proc = shell_eval("--proxy", "wwwproxy.uni-muenster.de:3128")
    assert proc.stdout == "{p}|{p}||{p}\n".format(p=PROXY)


def test_env_quotes_for_the_shell():
    proxy = "http://me:p%21x;y=z@proxy.example:8080"
    proc = shell_eval("--proxy", proxy, "--no-proxy", "a.example, .b.example")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "{p}|{p}|a.example,.b.example|{p}\n".format(p=proxy)


def test_env_no_proxy_overrides_the_preset(capsys):
    _, out, _ = run(capsys, "env", "--preset", "wwu", "--no-proxy", "intranet")
    assert "export no_proxy=intranet\n" in out
    _, out, _ = run(capsys, "env", "--preset", "wwu", "--no-proxy", "")
    assert "no_proxy" not in out


@pytest.mark.parametrize("argv, fragment", [
    (["env"], "give --preset NAME or --proxy HOST:PORT"),
    (["env", "--preset", "letsencrypt"], "Preset letsencrypt sets no proxy"),
    (["env", "--preset", "nope"], "Unknown preset 'nope'"),
    (["env", "--proxy", "wwwproxy.uni-muenster.de"], "has no port"),
    (["env", "--proxy", "socks5://p:1080"], "SOCKS"),
    (["env", "--proxy", "p:1", "--no-proxy", "http://x"], "is a URL"),
    (["env", "--preset", "letsencrypt", "--no-proxy", "x"], "--no-proxy needs a proxy"),
])
def test_env_errors(capsys, argv, fragment):
    usage = "give --preset" in fragment or "needs a proxy" in fragment \
        or "sets no proxy" in fragment
    assert_one_line_error(*run(capsys, *argv), fragment=fragment,
                          exit_code=2 if usage else 1)


def test_env_error_as_a_module():
    proc = module("env", "--proxy", "a b")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ("certbot-wwu: Proxy 'a b' contains spaces or control "
                           "characters; write host:port or http://host:port.\n")


# --- setup ------------------------------------------------------------------------

WHERE = {
    "el": "/etc/sysconfig/certbot",
    "debian": "/etc/systemd/system/certbot.service.d/certbot-wwu-proxy.conf",
    "snap": "/etc/systemd/system/snap.certbot.renew.service.d/certbot-wwu-proxy.conf",
    "pip": "/etc/systemd/system/certbot-renew.service.d/certbot-wwu-proxy.conf",
}


@pytest.mark.parametrize("distro", sorted(OS_RELEASE))
def test_setup_each_distro_twice(capsys, tmp_path, distro):
    root = make_root(tmp_path, distro)
    code, out, err = run(capsys, "setup", "--preset", "wwu", "--root", root)
    assert code == 0 and err == ""
    assert "wrote {}{} (proxy {}".format(root, WHERE[distro], PROXY) in out
    assert "https_proxy=" + PROXY in read(root, WHERE[distro])
    assert timer.timer_status(distro, root)["proxy"] == PROXY
    code, out, err = run(capsys, "setup", "--preset", "wwu", "--root", root)
    assert (code, out, err) == (0, "nothing to change\n", "")


def test_setup_keeps_the_sysconfig_file(capsys, tmp_path):
    root = make_root(tmp_path, "el")
    path = os.path.join(root, "etc/sysconfig/certbot")
    os.makedirs(os.path.dirname(path))
    original = ('PRE_HOOK=""\n#https_proxy=http://commented.example:1\n'
                "https_proxy=wwwproxy.uni-muenster.de:3128\nCERTBOT_ARGS=\"\"\n")
    with open(path, "w") as f:
        f.write(original)
    code, out, _ = run(capsys, "setup", "--proxy", "wwwproxy.uni-muenster.de:3128",
                       "--distro", "el", "--root", root)
    assert code == 0 and out == ("wrote {} (proxy {} for certbot-renew.service)\n"
                                 .format(path, PROXY))
    text = read(root, "/etc/sysconfig/certbot")
    assert text.startswith('PRE_HOOK=""\n#https_proxy=http://commented.example:1\n'
                           'CERTBOT_ARGS=""\n# certbot-wwu')
    assert "https_proxy={}\n".format(PROXY) in text and "no_proxy" not in text
    # without a proxy, setup takes its lines out again
    code, out, _ = run(capsys, "setup", "--distro", "el", "--root", root)
    assert code == 0 and "proxy settings removed" in out
    assert read(root, "/etc/sysconfig/certbot") == (
        'PRE_HOOK=""\n#https_proxy=http://commented.example:1\nCERTBOT_ARGS=""\n')


def test_setup_proxy_overrides_the_preset(capsys, tmp_path):
    root = make_root(tmp_path, "debian")
    run(capsys, "setup", "--preset", "wwu", "--proxy", "other.example:8080",
        "--root", root)
    status = timer.timer_status("debian", root)
    assert status["proxy"] == "http://other.example:8080"
    assert status["no_proxy"] == "localhost,127.0.0.1,::1,uni-muenster.de"


def test_setup_enable_timer(capsys, tmp_path, monkeypatch):
    systemctl = Systemctl(str(tmp_path / "systemctl")).install(monkeypatch)
    root = make_root(tmp_path, "el")
    code, out, _ = run(capsys, "setup", "--preset", "wwu", "--root", root,
                       "--enable-timer")
    assert code == 0
    assert out.splitlines()[-1] == (
        "enabled certbot-renew.timer under {} (it starts at the next boot)".format(root))
    assert systemctl.calls() == ["--root={} is-enabled certbot-renew.timer".format(root),
                                 "--root={} enable certbot-renew.timer".format(root)]
    code, out, _ = run(capsys, "setup", "--preset", "wwu", "--root", root,
                       "--enable-timer")
    assert (code, out) == (0, "nothing to change\n")


def test_setup_enable_failure(capsys, tmp_path, monkeypatch):
    systemctl = Systemctl(str(tmp_path / "systemctl")).install(monkeypatch)
    systemctl.fail()
    root = make_root(tmp_path, "debian")
    assert_one_line_error(*run(capsys, "setup", "--root", root, "--enable-timer"),
                          fragment="enable certbot.timer' failed (exit 1)")


def test_setup_as_a_module(tmp_path):
    root = make_root(tmp_path, "snap")
    first = module("setup", "--preset", "wwu", "--root", root)
    second = module("setup", "--preset", "wwu", "--root", root)
    assert first.returncode == 0 and "snap.certbot.renew.service" in first.stdout
    assert (second.returncode, second.stdout, second.stderr) == (
        0, "nothing to change\n", "")


def bad_site(tmp_path):
    directory = tmp_path / "site"
    directory.mkdir()
    (directory / "tcs.conf").write_text(
        "[preset tcs]\ninherit = harica\nproxy = wwwproxy.uni-muenster.de:3128\n"
        "server = https://acme-v02.harica.gr/acme/123/directory\n")
    return str(directory)


BAD_SETUPS = [
    (["--preset", "nope"], "Unknown preset 'nope'"),
    (["--preset", "tcs", "--presets-dir", "SITE"],
     "key server: 'https://acme-v02.harica.gr/acme/123/directory' does not match"),
    (["--proxy", "wwwproxy.uni-muenster.de"], "has no port"),
    (["--proxy", "http://proxy:3128/x"], "has a path"),
    (["--proxy", "proxy:3128; rm -rf /"], "spaces"),
    (["--proxy", "socks5://proxy:1080"], "SOCKS"),
    (["--preset", "wwu", "--no-proxy", "http://intranet"], "is a URL"),
    (["--no-proxy", "localhost"], "--no-proxy needs a proxy"),
    (["--preset", "letsencrypt", "--no-proxy", "localhost"], "--no-proxy needs a proxy"),
    (["--preset", "wwu", "--presets-dir", "MISSING"], "does not exist"),
]


@pytest.mark.parametrize("distro", ["el", "debian", "pip"])
@pytest.mark.parametrize("argv, fragment", BAD_SETUPS)
def test_setup_bad_input_writes_nothing(capsys, tmp_path, monkeypatch, distro, argv,
                                       fragment):
    systemctl = Systemctl(str(tmp_path / "systemctl")).install(monkeypatch)
    root = make_root(tmp_path, distro)
    site = bad_site(tmp_path)
    argv = [a.replace("SITE", site).replace("MISSING", str(tmp_path / "missing"))
            for a in argv]
    before = tree(root)
    result = run(capsys, "setup", "--root", root, "--enable-timer", *argv)
    assert_one_line_error(*result, fragment=fragment,
                          exit_code=2 if "needs a proxy" in fragment else 1)
    assert tree(root) == before
    assert systemctl.calls() == []


def test_setup_pip_without_certbot_writes_nothing(capsys, tmp_path):
    root = make_root(tmp_path, "pip", certbot=False)
    before = tree(root)
    assert_one_line_error(*run(capsys, "setup", "--preset", "wwu", "--root", root),
                          fragment="install certbot")
    assert tree(root) == before


def test_setup_root_must_exist(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "setup", "--root", str(tmp_path / "none")),
                          fragment="is not a directory", exit_code=2)


def test_setup_distro_choice_is_checked(capsys, tmp_path):
    code, _, err = run(capsys, "setup", "--distro", "arch", "--root", str(tmp_path))
    assert code == 2 and "invalid choice" in err


# --- no exception reaches the user as a traceback ---------------------------------

def broken(monkeypatch, err):
    def boom(args):
        raise err
    monkeypatch.setattr(cli, "cmd_presets", boom)


@pytest.mark.parametrize("err, fragment", [
    (RuntimeError("the\nworld ended"), "presets failed unexpectedly (RuntimeError: "
                                       "the world ended); run it again with --verbose"),
    (ValueError(), "presets failed unexpectedly (ValueError)"),
    (PermissionError(13, "Permission denied", "/etc/x"),
     "presets failed unexpectedly (Permission denied: /etc/x)"),
])
def test_unexpected_errors_are_one_sentence(capsys, monkeypatch, err, fragment):
    broken(monkeypatch, err)
    code, out, errout = run(capsys, "presets")
    assert_one_line_error(code, out, errout, fragment)


def crashing_command(*argv):
    """certbot-wwu in a fresh interpreter whose 'presets' hits a bug deep down."""
    code = ("import sys\n"
            "from certbot_wwu import cli\n"
            "def deep():\n"
            "    raise KeyError('deep')\n"
            "def boom(args):\n"
            "    deep()\n"
            "cli.cmd_presets = boom\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-c", code] + list(argv),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env)


def test_unexpected_error_details_only_with_verbose():
    quiet = crashing_command("presets")
    assert quiet.returncode == 1 and quiet.stdout == ""
    assert quiet.stderr == ("certbot-wwu: presets failed unexpectedly (KeyError: "
                            "'deep'); run it again with --verbose to see where.\n")
    loud = crashing_command("-v", "presets")
    assert loud.returncode == 1 and "Traceback" not in loud.stderr
    lines = loud.stderr.splitlines()
    assert lines[-1] + "\n" == quiet.stderr
    assert len(lines) == 2
    assert lines[0].startswith("certbot-wwu: KeyError: 'deep'; in <string>:4 (deep), "
                               "called from <string>:6 (boom), called from cli.py:")
    assert lines[0].endswith(" (main)")


def test_unreadable_renewal_conf_is_one_sentence(tmp_path):
    config = tmp_path / "etc"
    (config / "renewal" / "x.conf").mkdir(parents=True)
    proc = module("attach", "--cert-name", "x", "--user", "root", "--config-dir",
                  str(config))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("certbot-wwu: Cannot read the renewal configuration ")
    assert proc.stderr.endswith(": Is a directory.\n") and proc.stderr.count("\n") == 1


# --- attach refuses what the renewal conf cannot hold, before writing --------------

def listing(directory):
    return sorted(os.listdir(directory))


@needs_root
@pytest.mark.parametrize("argv, fragment", [
    (["--copy-to", "/srv/tls#1"],
     "argument --copy-to: '/srv/tls#1' cannot be stored in the renewal configuration: "
     "'#' starts a comment there"),
    (["--copy-to", "/srv/tls "], "a leading or trailing space is dropped there"),
    (["--copy-to", "/srv/tls", "--copy-formats", "pkcs12", "--p12-password-file",
      "/etc/p12 'pass'"], "argument --p12-password-file: \"/etc/p12 'pass'\" cannot be "
                          "stored"),
    (["--user", "None"], "argument --user: User 'None' does not exist on this host"),
])
def test_attach_with_an_unstorable_value_changes_nothing(capsys, lineage_dir, argv,
                                                         fragment):
    conf = os.path.join(lineage_dir, "renewal", "unit.conf")
    with open(conf, "rb") as f:
        before = f.read()
    files = listing(os.path.dirname(conf))
    code, out, err = run(capsys, "attach", "--cert-name", "unit", "--config-dir",
                         lineage_dir, *argv)
    # refused by the parser, before anything is read or written (usage: exit 2)
    assert code == 2 and out == "" and fragment in err and "Traceback" not in err
    with open(conf, "rb") as f:
        assert f.read() == before
    assert listing(os.path.dirname(conf)) == files  # no backup either
    assert not os.path.exists("/srv/tls#1")


@needs_root
def test_attach_removes_the_recipes_default_acl_and_says_so(capsys, lineage_dir, accounts):
    from tests.support.host import OTHER_USER, SERVICE_USER, getfacl
    archive = os.path.join(lineage_dir, "archive", "unit")
    subprocess.check_call(["setfacl", "-d", "-m", "u:{}:rX".format(OTHER_USER), archive])
    subprocess.check_call(["setfacl", "-d", "-m", "u:{}:rX".format(SERVICE_USER), archive])
    code, out, err = run(capsys, "attach", "--cert-name", "unit", "--config-dir",
                         lineage_dir, "--user", SERVICE_USER)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("removed default ACL entries for user {}".format(OTHER_USER))
    assert "attached wwu-acl to" in lines[1]
    defaults = getfacl(archive, numeric=False)
    assert "default:user:{}:".format(OTHER_USER) not in defaults
    assert "default:user:{}:".format(SERVICE_USER) in defaults


def test_both_front_doors_are_built_from_the_one_option_table():
    """certbot's --wwu-acl-NAME and certbot-wwu's --NAME cannot drift apart:
    same names, metavars, checks and help (but for the prefix)."""
    import argparse
    from certbot_wwu import settings
    from certbot_wwu.installer import Installer
    installer = {}
    Installer.add_parser_arguments(lambda name, **kw: installer.__setitem__(name, kw))
    deploy = next(action for action in cli.build_parser()._actions
                  if isinstance(action, argparse._SubParsersAction)).choices["deploy"]
    command = {a.option_strings[0][2:]: a for a in deploy._actions
               if a.dest.startswith("opt_")}
    assert list(installer) == list(command) == [o.name for o in settings.OPTION_TABLE]
    for entry in settings.OPTION_TABLE:
        theirs, ours = installer[entry.name], command[entry.name]
        assert ours.help == theirs["help"].replace("--wwu-acl-", "--"), entry.name
        assert ours.help == entry.help_for("--")
        if entry.flag:
            assert theirs["action"] == "store_true" and ours.const is True
        else:
            assert ours.type is theirs["type"] is entry.type
            assert ours.metavar == theirs["metavar"] == entry.metavar
