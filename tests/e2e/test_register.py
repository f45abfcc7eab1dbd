"""certbot-wwu register against Pebble with the real certbot: the HMAC key is
in no process's argv or environment while it runs, in no log and no account
file afterwards; a second registration is refused; the CA's refusals are
sentences."""
import glob
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from certbot_wwu import accounts
from tests.e2e.snapshot import snapshot
from tests.support.certbot import Certbot, certbot_executable

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: the certbot-wwu command's entry point, cli.main
DRIVER = textwrap.dedent("""\
    import sys
    from certbot_wwu import cli
    sys.exit(cli.main())
    """)
EMAIL = "admin@example.org"


class ProcSampler(threading.Thread):
    """Reads every process's cmdline and environ every few milliseconds."""

    def __init__(self, secret, certbot):
        threading.Thread.__init__(self, daemon=True)
        self.secret = secret.encode()
        self.certbot = certbot.encode()
        self.leaks = []  # (pid, file, argv)
        self.certbot_seen = []  # argv of certbot register processes
        self.config_targets = set()  # what their --config /dev/fd/N is
        self.driver_seen = False
        self.rounds = 0
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    self._look(pid)
            self.rounds += 1
            time.sleep(0.003)

    def _look(self, pid):
        try:
            with open("/proc/{}/cmdline".format(pid), "rb") as f:
                cmdline = f.read()
            with open("/proc/{}/environ".format(pid), "rb") as f:
                environ = f.read()
        except OSError:  # gone, or a kernel thread
            return
        argv = cmdline.split(b"\0")
        for name, data in (("cmdline", cmdline), ("environ", environ)):
            if self.secret in data:
                self.leaks.append((pid, name, argv))
        if self.certbot in argv and b"register" in argv and b"--config" in argv:
            if argv not in self.certbot_seen:
                self.certbot_seen.append(argv)
            config = argv[argv.index(b"--config") + 1].decode()
            if config.startswith("/dev/fd/"):
                try:
                    self.config_targets.add(os.readlink("/proc/{}/fd/{}".format(
                        pid, config[len("/dev/fd/"):])))
                except OSError:  # gone
                    pass
        if DRIVER.encode() in argv:
            self.driver_seen = True

    def __enter__(self):
        self.start()
        while self.rounds < 2:
            time.sleep(0.001)
        return self

    def __exit__(self, *exc):
        self._stop_event.set()
        self.join()
        return False


class Registrar(object):
    """certbot-wwu register in a subprocess, with config/work/logs in scratch."""

    def __init__(self, scratch, pebble):
        self.pebble = pebble
        self.root = scratch
        self.config_dir = os.path.join(scratch, "etc")
        self.work_dir = os.path.join(scratch, "work")
        self.logs_dir = os.path.join(scratch, "logs")
        self.secrets = os.path.join(scratch, "secrets")
        os.makedirs(self.secrets, mode=0o700)
        self.presets_dir = os.path.join(scratch, "presets.d")
        os.makedirs(self.presets_dir)
        with open(os.path.join(self.presets_dir, "pebble.conf"), "w") as f:
            f.write("[preset pebble]\nserver = {}\neab_required = yes\n"
                    "email_required = yes\n".format(pebble.url))
        self.env = dict(os.environ, PYTHONPATH=REPO, **pebble.env())
        for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                    "CERTBOT_WWU_PRESETS_DIR"):
            self.env.pop(key, None)

    def key_file(self, key, name="hmac.txt"):
        path = os.path.join(self.secrets, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        return path

    def __call__(self, *args, **kwargs):
        stdin = kwargs.pop("stdin", None)
        argv = [sys.executable, "-c", DRIVER, "register"] + list(args) + [
            "--config-dir", self.config_dir, "--work-dir", self.work_dir,
            "--logs-dir", self.logs_dir, "--presets-dir", self.presets_dir,
            "--certbot", certbot_executable()]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True,
                                env=self.env)
        out, err = proc.communicate(stdin or "", timeout=300)
        return proc.returncode, out, err

    def accounts(self):
        return accounts.existing_accounts(self.config_dir, self.pebble.url)

    def files_containing(self, secret):
        found = []
        for top in (self.config_dir, self.work_dir, self.logs_dir):
            for directory, _, files in os.walk(top):
                for name in files:
                    path = os.path.join(directory, name)
                    with open(path, "rb") as f:
                        if secret.encode() in f.read():
                            found.append(path)
        return found


@pytest.fixture
def registrar(scratch, pebble):
    return Registrar(scratch, pebble)


def secret_dirs():
    return set(glob.glob("/dev/shm/certbot-wwu-*")) | set(
        glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), "certbot-wwu-*")))


def assert_one_sentence(code, out, err, fragment):
    assert code == 1 and out == "", err
    assert err.startswith("certbot-wwu: ") and err.endswith(".\n"), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err


def test_key_from_a_file_is_in_no_process_and_no_log(registrar, pebble):
    kid, key = pebble.new_eab()
    before = secret_dirs()
    with ProcSampler(key, certbot_executable()) as sampler:
        code, out, err = registrar("--preset", "pebble", "--eab-kid", kid,
                                   "--eab-hmac-key-file", registrar.key_file(key),
                                   "--email", EMAIL)
    assert code == 0, err
    assert sampler.leaks == []
    # not vacuous: the sampler saw certbot register (and certbot-wwu) running
    assert len(sampler.certbot_seen) == 1 and sampler.driver_seen, sampler.rounds
    certbot_argv = [a.decode() for a in sampler.certbot_seen[0]]
    assert kid in certbot_argv and "--eab-hmac-key" not in certbot_argv
    config_file = certbot_argv[certbot_argv.index("--config") + 1]

    ids = registrar.accounts()
    assert len(ids) == 1
    assert out.startswith("Registered account {} for {}".format(ids[0], pebble.url))
    assert key not in out + err
    # the key went through a config file that never had a name: an open
    # descriptor of a nameless file in /dev/shm, gone with certbot
    assert config_file.startswith("/dev/fd/"), config_file
    assert len(sampler.config_targets) == 1, sampler.config_targets
    target = sampler.config_targets.pop()
    assert target.startswith("/dev/shm/#") and target.endswith(" (deleted)"), target
    assert secret_dirs() == before
    # certbot logged its arguments (with the config file), but not the key
    with open(os.path.join(registrar.logs_dir, "letsencrypt.log")) as f:
        log = f.read()
    assert config_file in log and kid in log
    assert registrar.files_containing(key) == []


def test_key_on_stdin_then_a_second_register_is_refused(registrar, pebble):
    kid, key = pebble.new_eab()
    with ProcSampler(key, certbot_executable()) as sampler:
        code, out, err = registrar("--server", pebble.url, "--eab-kid", kid,
                                   "--eab-hmac-key-file", "-", "--email", EMAIL,
                                   stdin=key + "\n")
    assert code == 0, err
    assert sampler.leaks == [] and len(sampler.certbot_seen) == 1
    first = registrar.accounts()
    assert len(first) == 1 and "Registered account " + first[0] in out

    kid2, key2 = pebble.new_eab()
    before = snapshot(registrar.config_dir)
    code, out, err = registrar("--server", pebble.url, "--eab-kid", kid2,
                               "--eab-hmac-key-file", registrar.key_file(key2),
                               "--email", EMAIL)
    assert_one_sentence(code, out, err, "certbot already has an account for {}".format(
        pebble.url))
    assert "would reuse it silently" in err and "EAB credentials work only once" in err
    assert first[0] in err and "--force" in err
    assert snapshot(registrar.config_dir) == before
    assert registrar.files_containing(key) == []


def test_force_adds_a_usable_second_account(registrar, pebble, scratch, systemctl):
    kid, key = pebble.new_eab()
    code, _, err = registrar("--server", pebble.url, "--eab-kid", kid,
                             "--eab-hmac-key-file", "-", "--email", EMAIL,
                             stdin=key)
    assert code == 0, err
    old = registrar.accounts()

    kid2, key2 = pebble.new_eab()
    with ProcSampler(key2, certbot_executable()) as sampler:
        code, out, err = registrar("--server", pebble.url, "--eab-kid", kid2,
                                   "--eab-hmac-key-file", registrar.key_file(key2),
                                   "--email", EMAIL, "--force")
    assert code == 0, err
    assert sampler.leaks == [] and len(sampler.certbot_seen) == 1
    new = [i for i in registrar.accounts() if i not in old]
    assert len(new) == 1 and len(registrar.accounts()) == 2
    assert "--account {}".format(new[0]) in out
    # certbot's private workspace inside the config dir is gone
    assert not [n for n in os.listdir(registrar.config_dir) if n.startswith(".")]

    bot = Certbot(scratch, pebble, systemctl)
    bot.acme("certonly", "-a", "standalone", "-d", "force.example.org",
             "--cert-name", "force", "--account", new[0])
    assert "account = {}".format(new[0]) in bot.read_renewal_conf("force")
    assert registrar.files_containing(key) == []
    assert registrar.files_containing(key2) == []


def test_unknown_kid_and_wrong_key_are_sentences(registrar, pebble):
    _, key = pebble.new_eab()
    before = secret_dirs()
    code, out, err = registrar("--server", pebble.url, "--eab-kid", "kid-unknown",
                               "--eab-hmac-key-file", registrar.key_file(key),
                               "--email", EMAIL)
    assert_one_sentence(code, out, err,
                        "The CA does not know the EAB key id kid-unknown:")
    assert "portal" in err

    kid2, key2 = pebble.new_eab()
    code, out, err = registrar("--server", pebble.url, "--eab-kid", kid2,
                               "--eab-hmac-key-file", registrar.key_file(key),
                               "--email", EMAIL)
    assert_one_sentence(code, out, err, "The CA rejected the HMAC key: it does not "
                                        "belong to the EAB key id {};".format(kid2))
    assert key not in err and registrar.accounts() == []
    assert secret_dirs() == before
    assert registrar.files_containing(key) == []


def test_bad_input_creates_nothing(registrar, pebble):
    kid, key = pebble.new_eab()
    code, out, err = registrar("--preset", "pebble", "--eab-kid", kid,
                               "--eab-hmac-key-file", registrar.key_file(key))
    assert_one_sentence(code, out, err, "Preset pebble requires an e-mail address")
    code, out, err = registrar("--preset", "harica", "--server",
                               "https://acme-v02.harica.gr/acme/nope/directory",
                               "--eab-kid", kid, "--eab-hmac-key-file", "-",
                               "--email", EMAIL, stdin=key)
    assert_one_sentence(code, out, err, "is not a harica ACME directory URL")
    for path in (registrar.config_dir, registrar.work_dir, registrar.logs_dir):
        assert not os.path.exists(path)


def test_the_sampler_would_see_a_key_in_argv_or_environ(pebble):
    """Control: the seed's way (key in certbot's argv) is caught."""
    _, key = pebble.new_eab()
    with ProcSampler(key, certbot_executable()) as sampler:
        subprocess.check_call([sys.executable, "-c", "import time; time.sleep(0.2)",
                               "--eab-hmac-key", key])
        subprocess.check_call([sys.executable, "-c", "import time; time.sleep(0.2)"],
                              env=dict(os.environ, WWU_TEST_SECRET=key))
    assert sorted(name for _, name, _ in sampler.leaks)[:1] == ["cmdline"]
    assert {name for _, name, _ in sampler.leaks} == {"cmdline", "environ"}
