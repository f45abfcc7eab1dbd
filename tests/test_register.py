"""certbot_wwu.register: options, the HMAC key's way to certbot, existing
accounts, certbot's errors as sentences. certbot itself is a fake here; the
real one against Pebble is in tests/e2e/test_register.py."""
import argparse
import io
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from certbot_wwu import accounts, certbot_host, cli, presets, register
from certbot_wwu.register import RegisterError
from tests.support.service import process_alive

HARICA_URL = ("https://acme-v02.harica.gr/acme/"
              "962d61f0-7815-46cc-9c42-8e8aa25443d1/directory")
SERVER = "https://acme.example.org:14000/dir"
KEY = "zR4Vd-0d2pP1_8rHKq3vGm5nYbXcTe7uWiLoAsDfGhJkLmNoPqRsTuVwXyZa1b2c"
KID = "kid-0123456789abcdef"
PROXY = "http://wwwproxy.uni-muenster.de:3128"


@pytest.fixture(autouse=True)
def no_site_presets(monkeypatch, tmp_path):
    monkeypatch.delenv(presets.DIR_ENV, raising=False)
    monkeypatch.setattr(presets, "DEFAULT_DIR", str(tmp_path / "absent"))
    for key in presets.ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def parse(*argv):
    parser = argparse.ArgumentParser(prog="certbot-wwu")
    subparsers = parser.add_subparsers(dest="command")
    register.add_register(subparsers)
    return parser.parse_args(["register"] + list(argv))


def key_file(tmp_path, text=KEY + "\n", name="hmac.txt"):
    path = tmp_path / name
    path.write_text(text)
    os.chmod(str(path), 0o600)
    return str(path)


def one_sentence(message):
    return ("\n" not in message and message.endswith(".")
            and "Traceback" not in message and KEY not in message)


FAKE_CERTBOT = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    from urllib.parse import urlparse
    args = sys.argv[1:]
    def opt(name):
        return args[args.index(name) + 1] if name in args else None
    record = {{"argv": args, "pid": os.getpid(),
              "env": {{k: v for k, v in os.environ.items() if "proxy" in k.lower()}}}}
    config = opt("--config")
    if config:
        info = os.stat(config)
        record["mode"] = info.st_mode & 0o777
        record["nlink"] = info.st_nlink
        record["target"] = (os.readlink(config) if os.path.islink(config)
                            else os.path.abspath(config))
        with open(config) as f:
            record["config"] = f.read()
        with open(config) as f:  # as certbot 1.x does when it re-parses
            record["config_again"] = f.read()
    with open(os.environ["FAKE_RECORD"], "w") as f:
        json.dump(record, f)
    if os.environ.get("FAKE_SLEEP"):
        import time
        time.sleep(float(os.environ["FAKE_SLEEP"]))
    if os.environ.get("FAKE_FAIL"):
        sys.stderr.write(os.environ["FAKE_FAIL"])
        sys.exit(1)
    url = urlparse(opt("--server"))
    account = os.path.join(opt("--config-dir"), "accounts", url.netloc + url.path,
                           os.environ.get("FAKE_ID", "0123abcd"))
    os.makedirs(account)
    for name in ("meta.json", "regr.json", "private_key.json"):
        with open(os.path.join(account, name), "w") as f:
            f.write("{{}}")
    print("Account registered.")
    """)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A certbot that records argv, the config file and its mode, then
    registers (or fails with $FAKE_FAIL)."""
    path = tmp_path / "bin" / "certbot"
    path.parent.mkdir()
    path.write_text(FAKE_CERTBOT.format(python=sys.executable))
    path.chmod(0o755)
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))

    class Fake(object):
        certbot = str(path)
        config_dir = str(tmp_path / "etc")

        @staticmethod
        def record():
            with open(str(record)) as f:
                return json.load(f)

        def argv(self, *extra):
            return ["register", "--server", SERVER, "--eab-kid", KID,
                    "--eab-hmac-key-file", key_file(tmp_path), "--email",
                    "admin@example.org", "--certbot", self.certbot,
                    "--config-dir", self.config_dir] + list(extra)
    return Fake()


@pytest.fixture
def shm(monkeypatch, tmp_path):
    """A private directory in place of /dev/shm, to see that nothing is named
    in it (O_TMPFILE works on the ext4 under tmp_path as on tmpfs)."""
    base = tmp_path / "shm"
    base.mkdir()
    monkeypatch.setattr(register, "SHM_DIR", str(base))
    return base


def open_anonymous_files(directory):
    """Descriptors of this process on nameless files created in directory."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + name)
        except OSError:
            continue
        if target.startswith(str(directory) + "/") and target.endswith(" (deleted)"):
            found.append(int(name))
    return found


# --- the command line -------------------------------------------------------------

def test_help(capsys):
    code, out, _ = run(capsys, "register", "--help")
    assert code == 0 and out.startswith("usage: certbot-wwu register")
    for option in ("--eab-kid", "--eab-hmac-key-file", "--email", "--force",
                   "--preset", "--server", "--certbot"):
        assert option in out
    assert "--eab-hmac-key " not in out and "--eab-hmac-key KEY" not in out


def test_parser_defaults():
    args = parse("--server", SERVER, "--eab-kid", KID)
    assert args.func is register.cmd_register
    assert args.eab_hmac_key_file is None and not args.force
    assert args.eab_hmac_key_argv is None


@pytest.mark.parametrize("argv", [["--eab-hmac-key", KEY], ["--eab-hmac-key=" + KEY]])
def test_key_on_the_command_line_is_refused_without_repeating_it(
        capsys, tmp_path, argv):
    etc = tmp_path / "etc"
    code, out, err = run(capsys, "register", "--server", SERVER, "--eab-kid", KID,
                         "--email", "a@example.org", "--config-dir", str(etc), *argv)
    assert code == 1 and out == ""
    assert err.startswith("certbot-wwu: certbot-wwu does not take the HMAC key")
    assert one_sentence(err.rstrip("\n")[len("certbot-wwu: "):])
    assert not etc.exists()


def test_key_option_is_not_an_abbreviation_of_the_file_option():
    args = parse("--server", SERVER, "--eab-hmac-key", KEY)
    assert args.eab_hmac_key_file is None and args.eab_hmac_key_argv == KEY


BAD_INPUT = [
    (["--preset", "nope"], "Unknown preset 'nope'"),
    (["--preset", "harica", "--server", "https://acme-v02.harica.gr/acme/x/directory"],
     "is not a harica ACME directory URL"),
    (["--preset", "harica"], "Preset harica needs the ACME directory URL"),
    (["--preset", "harica", "--server", HARICA_URL, "--eab-kid", KID],
     "Preset harica requires an e-mail address"),
    (["--preset", "sectigo-ov", "--email", "a@example.org"],
     "Preset sectigo-ov needs External Account Binding"),
    (["--preset", "sectigo-ov", "--server", "https://acme.sectigo.com/v2/EV",
      "--eab-kid", KID], "always uses https://acme.sectigo.com/v2/OV"),
    (["--eab-kid", KID], "Say which CA to register with"),
    (["--server", "http://acme.example.org/dir", "--eab-kid", KID],
     "is not an https:// URL"),
    (["--server", SERVER, "--eab-kid", "", "--email", "a@example.org"],
     "The key id given with --eab-kid is empty"),
    (["--server", SERVER, "--eab-kid", "a b"], "contains spaces"),
    (["--server", SERVER, "--eab-kid", KID, "--email", "admin"],
     "'admin' is not an e-mail address"),
    (["--server", SERVER, "--eab-kid", KID, "--email", "a@example.org,b"],
     "'b' is not an e-mail address"),
    (["--server", SERVER, "--eab-kid", KID, "--email", "a@example.org",
      "--certbot", "/nonexistent/certbot"], "is not an executable certbot"),
]


@pytest.mark.parametrize("argv, fragment", BAD_INPUT)
def test_bad_input_is_one_sentence_and_writes_nothing(capsys, tmp_path, fake,
                                                       argv, fragment):
    etc = tmp_path / "etc"
    if "--certbot" not in argv:
        argv = argv + ["--certbot", fake.certbot]
    code, out, err = run(capsys, "register", "--config-dir", str(etc), *argv)
    assert code == 1 and out == "", err
    assert err.startswith("certbot-wwu: ") and err.count("\n") == 1
    assert fragment in err
    assert one_sentence(err.rstrip("\n"))
    assert not etc.exists()
    assert not (tmp_path / "record.json").exists()  # certbot never ran


@pytest.mark.parametrize("text, fragment", [
    ("", "is empty"),
    ("  \n\n", "is empty"),
    (KEY + "\n" + KEY + "\n", "has more than one line"),
    ("eab-hmac-key = " + KEY, "contains characters other than"),
    (KEY + "\nconfig-dir = /tmp/evil", "has more than one line"),
    (KEY[:10] + "#" + KEY[10:], "contains characters other than"),
    ("A" * 5000, "is far too long"),
])
def test_bad_key_files(capsys, tmp_path, fake, text, fragment):
    etc = tmp_path / "etc"
    code, out, err = run(capsys, "register", "--server", SERVER, "--eab-kid", KID,
                         "--eab-hmac-key-file", key_file(tmp_path, text),
                         "--certbot", fake.certbot, "--config-dir", str(etc))
    assert code == 1 and fragment in err, err
    assert one_sentence(err.rstrip("\n")) and KEY[:20] not in err
    assert not etc.exists()


def test_unreadable_key_file(capsys, tmp_path, fake):
    etc = tmp_path / "etc"
    missing = str(tmp_path / "missing.txt")
    code, _, err = run(capsys, "register", "--server", SERVER, "--eab-kid", KID,
                       "--eab-hmac-key-file", missing, "--certbot", fake.certbot,
                       "--config-dir", str(etc))
    assert code == 1
    assert "Cannot read the HMAC key file {}: No such file or directory".format(
        missing) in err
    code, _, err = run(capsys, "register", "--server", SERVER, "--eab-kid", KID,
                       "--eab-hmac-key-file", str(tmp_path), "--certbot", fake.certbot,
                       "--config-dir", str(etc))
    assert code == 1 and "Cannot read the HMAC key file" in err
    assert not etc.exists()


def test_binary_key_file(capsys, tmp_path, fake):
    path = tmp_path / "hmac.bin"
    path.write_bytes(b"\xff\xfe" + KEY.encode())
    code, _, err = run(capsys, "register", "--server", SERVER, "--eab-kid", KID,
                       "--eab-hmac-key-file", str(path), "--certbot", fake.certbot,
                       "--config-dir", str(tmp_path / "etc"))
    assert code == 1 and "is not plain text" in err


def test_key_equal_to_kid(tmp_path, fake):
    args = parse("--server", SERVER, "--eab-kid", KEY, "--eab-hmac-key-file",
                 key_file(tmp_path), "--certbot", fake.certbot)
    with pytest.raises(RegisterError, match="same as the key id"):
        register.prepare(args)


def test_key_file_without_kid(tmp_path, fake):
    args = parse("--server", SERVER, "--eab-hmac-key-file", key_file(tmp_path),
                 "--certbot", fake.certbot)
    with pytest.raises(RegisterError, match="without its key id"):
        register.prepare(args)


# --- where the key comes from -----------------------------------------------------

class Stdin(io.StringIO):
    def __init__(self, text, tty=False):
        io.StringIO.__init__(self, text)
        self.tty = tty

    def isatty(self):
        return self.tty


def test_key_from_file_strips_the_newline(tmp_path):
    assert register.read_hmac_key(key_file(tmp_path, "  " + KEY + "\r\n"),
                                  Stdin("")) == KEY


def test_key_from_standard_input():
    assert register.read_hmac_key("-", Stdin(KEY + "\n")) == KEY


def test_empty_standard_input():
    with pytest.raises(RegisterError, match="from standard input is empty"):
        register.read_hmac_key("-", Stdin(""))


def test_key_from_the_prompt(monkeypatch):
    prompts = []

    def getpass(prompt="Password: ", stream=None):
        prompts.append(prompt)
        return KEY
    monkeypatch.setattr(register.getpass, "getpass", getpass)
    assert register.read_hmac_key(None, Stdin("", tty=True)) == KEY
    assert register.read_hmac_key("-", Stdin("", tty=True)) == KEY
    assert prompts == ["EAB HMAC key (not shown): "] * 2


def test_no_prompt_without_a_terminal(monkeypatch):
    monkeypatch.setattr(register.getpass, "getpass", pytest.fail)
    with pytest.raises(RegisterError, match="asked for only on a terminal"):
        register.read_hmac_key(None, Stdin(KEY))


def test_prepare_reads_stdin(fake):
    args = parse("--server", SERVER, "--eab-kid", KID, "--eab-hmac-key-file", "-",
                 "--certbot", fake.certbot, "--config-dir", fake.config_dir)
    request = register.prepare(args, stdin=Stdin(KEY + "\n"))
    assert request.hmac_key == KEY and request.kid == KID
    assert request.email is None and request.existing == []
    assert KEY not in repr(request)


def test_no_kid_no_key_for_a_ca_without_eab(fake):
    args = parse("--preset", "letsencrypt-staging", "--certbot", fake.certbot,
                 "--config-dir", fake.config_dir)
    request = register.prepare(args, stdin=Stdin(""))
    assert request.kid is None and request.hmac_key is None
    argv = register.certbot_argv(request, None, fake.config_dir)
    assert "--eab-kid" not in argv and "--config" not in argv
    assert "--register-unsafely-without-email" in argv


# --- certbot's command line and environment --------------------------------------

def test_certbot_argv_has_no_key(fake, tmp_path):
    args = parse("--server", SERVER, "--eab-kid", KID, "--eab-hmac-key-file",
                 key_file(tmp_path), "--email", "a@example.org, b@example.org",
                 "--certbot", fake.certbot, "--config-dir", "etc", "--work-dir",
                 "work", "--logs-dir", "logs")
    request = register.prepare(args)
    argv = register.certbot_argv(request, "/dev/fd/5", request.config_dir)
    assert KEY not in " ".join(argv)
    assert argv[:2] == [fake.certbot, "register"]
    for pair in (("--server", SERVER), ("--eab-kid", KID),
                 ("--email", "a@example.org,b@example.org"),
                 ("--config", "/dev/fd/5"),
                 ("--config-dir", os.path.abspath("etc")),
                 ("--work-dir", os.path.abspath("work")),
                 ("--logs-dir", os.path.abspath("logs"))):
        assert argv[argv.index(pair[0]) + 1] == pair[1]
    for flag in ("--agree-tos", "--no-eff-email", "--non-interactive"):
        assert flag in argv


@pytest.mark.parametrize("umask", [0, 0o277])
def test_key_config_is_an_anonymous_private_file(shm, umask):
    previous = os.umask(umask)
    try:
        fd = register.write_key_config(KEY)
    finally:
        os.umask(previous)
    try:
        info = os.fstat(fd)
        assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_nlink == 0  # no name, anywhere
        assert os.listdir(str(shm)) == []
        assert open_anonymous_files(shm) == [fd]
        path = register.config_path(fd)
        assert path == "/dev/fd/{}".format(fd)
        for _ in range(2):  # every open starts at the beginning
            with open(path) as f:
                lines = [line for line in f.read().splitlines()
                         if not line.startswith("#")]
            assert lines == ["eab-hmac-key = " + KEY]
        with pytest.raises(OSError):  # O_EXCL: it can never get a name
            os.link(path, str(shm / "linked"), follow_symlinks=True)
        assert os.listdir(str(shm)) == []
    finally:
        os.close(fd)
    assert open_anonymous_files(shm) == []


def test_key_config_is_in_memory_by_default():
    fd = register.write_key_config(KEY)
    try:
        target = os.readlink("/proc/self/fd/{}".format(fd))
    finally:
        os.close(fd)
    assert target.startswith("/dev/shm/") and target.endswith(" (deleted)"), target


def test_without_o_tmpfile_on_shm_another_nameless_file(monkeypatch, tmp_path):
    # /proc takes no O_TMPFILE (EOPNOTSUPP), as an old kernel's /dev/shm
    monkeypatch.setattr(register, "SHM_DIR", "/proc")
    monkeypatch.setattr(register.tempfile, "tempdir", str(tmp_path))
    fd = register.write_key_config(KEY)
    try:
        info = os.fstat(fd)
        target = os.readlink("/proc/self/fd/{}".format(fd))
        with open(register.config_path(fd)) as f:
            assert "eab-hmac-key = {}\n".format(KEY) in f.read()
    finally:
        os.close(fd)
    assert info.st_nlink == 0 and stat.S_IMODE(info.st_mode) == 0o600
    if hasattr(os, "memfd_create"):
        assert target.startswith("/memfd:certbot-wwu-eab"), target
    else:  # Python 3.6, 3.7
        assert target.startswith(str(tmp_path) + "/"), target
    assert os.listdir(str(tmp_path)) == []


def test_no_nameless_file_anywhere_is_a_sentence(capsys, fake, monkeypatch,
                                                 tmp_path):
    monkeypatch.setattr(register, "SHM_DIR", "/proc")
    monkeypatch.setattr(register.tempfile, "tempdir", "/sys")
    monkeypatch.delattr(os, "memfd_create", raising=False)
    code, out, err = run(capsys, *fake.argv())
    assert code == 1 and out == "", err
    message = err.rstrip("\n")[len("certbot-wwu: "):]
    assert message.startswith("Cannot hand the HMAC key to certbot in a file "
                              "without a name (/proc: Operation not supported;"), err
    assert "mount a tmpfs on /proc" in message and one_sentence(message)
    assert not (tmp_path / "record.json").exists()  # certbot never ran


def test_proxy_from_the_preset():
    preset = presets.get_preset("wwu")
    env = register.certbot_environment(preset, {"PATH": "/bin"})
    assert env["https_proxy"] == env["HTTPS_PROXY"] == PROXY
    assert "uni-muenster.de" in env["no_proxy"] and env["PATH"] == "/bin"


def test_callers_proxy_wins():
    preset = presets.get_preset("wwu")
    env = register.certbot_environment(preset, {"https_proxy": "http://other:8080"})
    assert env == {"https_proxy": "http://other:8080"}


def test_no_proxy_without_one_in_the_preset():
    env = register.certbot_environment(presets.get_preset("harica"), {"PATH": "/bin"})
    assert env == {"PATH": "/bin"}


def test_config_dir_from_cli_ini(monkeypatch, tmp_path):
    ini = tmp_path / "cli.ini"
    ini.write_text("# comment\nconfig-dir = /srv/le\nemail = a@example.org\n")
    monkeypatch.setattr(certbot_host, "CERTBOT_CLI_INI", str(ini))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert parse().config_dir == "/srv/le"
    assert parse("--config-dir", "/x").config_dir == "/x"


# --- existing accounts ------------------------------------------------------------

def make_account(config_dir, server, account_id):
    path = os.path.join(accounts.accounts_dir(config_dir, server), account_id)
    os.makedirs(path)
    for name in ("meta.json", "regr.json", "private_key.json"):
        with open(os.path.join(path, name), "w") as f:
            f.write("{}")
    return path


def test_existing_account_stops_before_certbot(capsys, fake, tmp_path):
    make_account(fake.config_dir, SERVER, "0ld")
    code, out, err = run(capsys, *fake.argv())
    assert code == 1 and out == ""
    assert "certbot already has an account for {}".format(SERVER) in err
    assert "would reuse it silently" in err and "work only once" in err
    assert "--force" in err and "0ld" in err
    assert one_sentence(err.rstrip("\n"))
    assert not (tmp_path / "record.json").exists()


# --- running (a fake) certbot -----------------------------------------------------

def test_register_passes_the_key_in_a_private_config_file(capsys, fake, shm):
    code, out, err = run(capsys, *fake.argv())
    assert code == 0, err
    record = fake.record()
    assert KEY not in " ".join(record["argv"])
    assert record["mode"] == 0o600 and record["nlink"] == 0
    assert "eab-hmac-key = {}\n".format(KEY) in record["config"]
    assert record["config_again"] == record["config"]
    config_file = record["argv"][record["argv"].index("--config") + 1]
    assert config_file.startswith("/dev/fd/")
    # certbot saw a nameless file in the private stand-in for /dev/shm
    assert record["target"].startswith(str(shm) + "/#"), record["target"]
    assert record["target"].endswith(" (deleted)")
    assert os.listdir(str(shm)) == [] and open_anonymous_files(shm) == []
    assert record["env"] == {}
    assert out.startswith("Registered account 0123abcd for {} in {}.\n".format(
        SERVER, os.path.join(accounts.accounts_dir(fake.config_dir, SERVER),
                             "0123abcd")))
    assert "key id {} are now used up".format(KID) in out
    assert KEY not in out + err


def test_failure_removes_the_config_file_and_translates(capsys, fake, shm,
                                                       monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", PEBBLE_58_UNKNOWN_KID)
    code, out, err = run(capsys, *fake.argv())
    assert code == 1 and out == ""
    assert err == "certbot-wwu: {}\n".format(register.explain_failure(
        PEBBLE_58_UNKNOWN_KID, KID))
    assert "does not know the EAB key id {}".format(KID) in err
    assert os.listdir(str(shm)) == [] and open_anonymous_files(shm) == []


def test_certbot_output_never_repeats_the_key(capsys, fake, shm, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "Something odd about " + KEY + "\n")
    code, _, err = run(capsys, *fake.argv())
    assert code == 1 and KEY not in err
    assert "certbot could not register: Something odd about ***." in err


def test_interrupt_removes_the_config_file(capsys, fake, shm, monkeypatch):
    seen = []

    def interrupted(argv, env, pass_fds=()):
        config = argv[argv.index("--config") + 1]
        seen.append(open_anonymous_files(shm))
        assert config == "/dev/fd/{}".format(pass_fds[0])
        assert seen[0] == [pass_fds[0]]
        raise KeyboardInterrupt
    monkeypatch.setattr(register, "_run", interrupted)
    code, _, err = run(capsys, *fake.argv())
    assert code == 130 and "interrupted" in err
    assert len(seen) == 1 and open_anonymous_files(shm) == []  # closed
    assert os.listdir(str(shm)) == []


DRIVER = textwrap.dedent("""\
    import sys
    from certbot_wwu import cli
    sys.exit(cli.main())
    """)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def driver(fake, tmp_path):
    """driver(key): certbot-wwu register in a process of its own, the fake
    certbot sleeping once it has recorded what it got; (proc, record) once
    certbot runs. Whatever is still running at the end is killed."""
    started = []

    def start(key):
        path = key_file(tmp_path, key + "\n", name="kill-hmac.txt")
        argv = fake.argv()
        argv[argv.index("--eab-hmac-key-file") + 1] = path
        env = dict(os.environ, PYTHONPATH=REPO, FAKE_SLEEP="30")
        proc = subprocess.Popen([sys.executable, "-c", DRIVER] + argv,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True,
                                env=env)
        started.append(proc)
        deadline = time.time() + 30
        while True:  # the fake writes its record whole, then sleeps
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            try:
                record = fake.record()
            except (OSError, ValueError):
                time.sleep(0.02)
                continue
            started.append(record["pid"])
            return proc, record

    yield start
    for item in started:
        try:
            os.kill(getattr(item, "pid", item), signal.SIGKILL)
        except OSError:
            pass
    for item in started:
        if hasattr(item, "wait"):
            item.wait()
            item.stdout.close()
            item.stderr.close()


def files_holding(secret, tops, since, ignore=()):
    """Regular files under tops (links not followed) changed since ``since``
    whose bytes hold secret, but for the ones in ignore."""
    found = []
    for top in tops:
        for directory, _, names in os.walk(top):
            for name in names:
                path = os.path.join(directory, name)
                if path in ignore:
                    continue
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:  # gone, a socket, a link
                    continue
                with os.fdopen(fd, "rb") as f:
                    info = os.fstat(fd)
                    if (stat.S_ISREG(info.st_mode) and info.st_size < 1 << 24
                            and max(info.st_mtime, info.st_ctime) >= since
                            and secret in f.read()):
                        found.append(path)
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_certbot_and_leaves_no_key_file(fake, driver, signum):
    key, since = secrets.token_urlsafe(48), time.time() - 1
    proc, record = driver(key)
    argv = record["argv"]
    fd = argv[argv.index("--config") + 1][len("/dev/fd/"):]
    # what certbot reads is nameless, in /dev/shm
    target = os.readlink("/proc/{}/fd/{}".format(record["pid"], fd))
    assert target.startswith("/dev/shm/#") and target.endswith(" (deleted)"), target
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err == "certbot-wwu: interrupted\n"
    assert not os.path.exists("/proc/{}".format(record["pid"]))  # reaped
    assert files_holding(key.encode(), ["/dev/shm", str(fake.config_dir)],
                         since) == []


def test_sigkill_of_register_and_certbot_leaves_no_key_file(driver, tmp_path):
    """Issue 18, defect 7: the OOM killer or systemd's final SIGKILL (to the
    whole unit) left the key file in /dev/shm until the next reboot."""
    key, since = secrets.token_urlsafe(48), time.time() - 1
    proc, record = driver(key)
    for pid in (proc.pid, record["pid"]):  # as systemd kills a unit: all at once
        os.kill(pid, signal.SIGSTOP)
    for pid in (proc.pid, record["pid"]):
        os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.time() + 30
    while not gone(record["pid"]):  # the orphan is reaped by init, later
        assert time.time() < deadline
        time.sleep(0.02)
    # but for the key file given and the fake's record of what it read
    mine = (str(tmp_path / "kill-hmac.txt"), str(tmp_path / "record.json"))
    assert files_holding(key.encode(), ["/dev/shm", tempfile.gettempdir(),
                                        str(tmp_path)], since, mine) == []


def gone(pid):
    """True once pid has ended (a zombie counts: its descriptors are closed)."""
    return not process_alive(pid)


def test_proxy_reaches_certbot(capsys, fake, tmp_path, monkeypatch):
    presets_dir = tmp_path / "presets.d"
    presets_dir.mkdir()
    (presets_dir / "site.conf").write_text(textwrap.dedent("""\
        [preset lab]
        server = {}
        eab_required = yes
        proxy = wwwproxy.uni-muenster.de:3128
        """.format(SERVER)))
    code, _, err = run(capsys, *fake.argv("--preset", "lab", "--presets-dir",
                                          str(presets_dir)))
    assert code == 0, err
    assert fake.record()["env"]["https_proxy"] == PROXY


def test_force_adds_an_account_next_to_the_existing_one(capsys, fake,
                                                        monkeypatch):
    make_account(fake.config_dir, SERVER, "0ld")
    monkeypatch.setenv("FAKE_ID", "n3w")
    code, out, err = run(capsys, *fake.argv("--force"))
    assert code == 0, err
    record = fake.record()
    workspace = record["argv"][record["argv"].index("--config-dir") + 1]
    assert os.path.dirname(workspace) == fake.config_dir
    assert not os.path.exists(workspace)
    assert accounts.existing_accounts(fake.config_dir, SERVER) == ["0ld", "n3w"]
    assert sorted(os.listdir(fake.config_dir)) == ["accounts"]
    assert "--account n3w" in out and "next to account 0ld" in out


def test_force_failure_leaves_no_workspace(capsys, fake, monkeypatch):
    make_account(fake.config_dir, SERVER, "0ld")
    monkeypatch.setenv("FAKE_FAIL", "Boom\n")
    code, _, err = run(capsys, *fake.argv("--force"))
    assert code == 1 and "certbot could not register: Boom." in err
    assert sorted(os.listdir(fake.config_dir)) == ["accounts"]
    assert accounts.existing_accounts(fake.config_dir, SERVER) == ["0ld"]


# --- certbot's errors -------------------------------------------------------------

PY36_WARNING = (
    "/venv/lib/python3.6/site-packages/OpenSSL/_util.py:6: "
    "CryptographyDeprecationWarning: Python 3.6 is no longer supported by the "
    "Python core team.\n"
    "  from cryptography.hazmat.bindings.openssl.binding import Binding\n")
LOG = "/var/log/letsencrypt/letsencrypt.log"
ASK = ("Ask for help or search for solutions at https://community.letsencrypt.org. "
       "See the logfile {} or re-run Certbot with -v for more details.\n".format(LOG))
PEBBLE_58_UNKNOWN_KID = (
    "Saving debug log to {}\n"
    "Unable to register an account with ACME server. Error returned by the ACME "
    "server: the field 'kid' references a key that is not known to the ACME "
    "server\n".format(LOG) + ASK)
PEBBLE_122_UNKNOWN_KID = (
    PY36_WARNING + "Saving debug log to {}\nAn unexpected error occurred:\n"
    "The client lacks sufficient authorization :: the field 'kid' references a "
    "key that is not known to the ACME server\n".format(LOG) + ASK)
PEBBLE_58_BAD_HMAC = (
    "Saving debug log to {}\n"
    "Unable to register an account with ACME server. Error returned by the ACME "
    "server: external account binding JWS verification error: square/go-jose: "
    "error in cryptographic primitive\n".format(LOG) + ASK)
PEBBLE_122_BAD_HMAC = (
    PY36_WARNING + "Saving debug log to {}\nAn unexpected error occurred:\n"
    "The client lacks sufficient authorization :: external account binding JWS "
    "verification error: square/go-jose: error in cryptographic primitive\n".format(
        LOG) + ASK)
SECTIGO_REUSED = (
    "Saving debug log to {}\nAn unexpected error occurred:\n"
    "The request message was malformed :: The ACME server is not awaiting "
    "External Account Binding\n".format(LOG) + ASK)
HARICA_REUSED = (
    "Saving debug log to {}\n"
    "Unable to register an account with ACME server. Error returned by the ACME "
    "server: Account is not awaiting external account binding\n".format(LOG) + ASK)
EAB_REQUIRED = (
    "Saving debug log to {}\n"
    "Unable to register an account with ACME server. Server requires external "
    "account binding. Please use --eab-kid and --eab-hmac-key.\n".format(LOG) + ASK)


@pytest.mark.parametrize("output", [SECTIGO_REUSED, HARICA_REUSED])
def test_reused_credentials(output):
    message = register.explain_failure(output, KID, SERVER)
    assert message.startswith("The CA is not awaiting external account binding "
                              "for key id {}: these EAB credentials were already "
                              "used".format(KID))
    assert "create a new ACME-ID in the portal" in message
    assert one_sentence(message)


@pytest.mark.parametrize("output", [PEBBLE_58_UNKNOWN_KID, PEBBLE_122_UNKNOWN_KID])
def test_unknown_kid(output):
    message = register.explain_failure(output, KID, SERVER)
    assert message.startswith("The CA does not know the EAB key id {}:".format(KID))
    assert one_sentence(message)


@pytest.mark.parametrize("output", [PEBBLE_58_BAD_HMAC, PEBBLE_122_BAD_HMAC])
def test_bad_hmac(output):
    message = register.explain_failure(output, KID, SERVER)
    assert message.startswith("The CA rejected the HMAC key: it does not belong to "
                              "the EAB key id {};".format(KID))
    assert one_sentence(message)


def test_eab_required():
    message = register.explain_failure(EAB_REQUIRED, None, SERVER)
    assert message.startswith(SERVER + " requires External Account Binding")
    assert "--eab-hmac-key-file" in message and one_sentence(message)


def test_certbots_existing_account_message(tmp_path):
    make_account(str(tmp_path), SERVER, "abc")
    output = ("Saving debug log to x\nThere is an existing account; registration "
              "of a duplicate account with this command is currently unsupported.\n")
    message = register.explain_failure(output, KID, SERVER, str(tmp_path))
    assert "would reuse it silently" in message and "abc" in message


def test_other_errors_pass_through_as_one_line():
    output = (PY36_WARNING + "Saving debug log to {}\nAn unexpected error "
              "occurred:\nThe server experienced an internal error ::\n"
              "  database unavailable\n".format(LOG) + ASK)
    message = register.explain_failure(output, KID, SERVER)
    assert message == ("certbot could not register: The server experienced an "
                       "internal error :: (details in {}).".format(LOG))
    output = ("Saving debug log to {}\nUnable to register an account with ACME "
              "server. Error returned by the ACME server: Connection refused\n"
              "Please check the URL.\n".format(LOG) + ASK)
    message = register.explain_failure(output, KID, SERVER)
    assert message == (
        "certbot could not register: Unable to register an account with ACME "
        "server. Error returned by the ACME server: Connection refused Please "
        "check the URL (details in {}).".format(LOG))
    assert one_sentence(message)


def test_silent_failure():
    assert register.explain_failure("", KID, SERVER, code=-9) == (
        "certbot register exited with status -9 without a message.")


def test_certbot_message_keeps_the_logfile():
    message, logfile = register.certbot_message(PEBBLE_122_UNKNOWN_KID)
    assert logfile == LOG
    assert message.startswith("The client lacks sufficient authorization ::")
    assert "Warning" not in message and "Saving" not in message
