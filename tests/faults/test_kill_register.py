"""``certbot-wwu register`` (the real command, real certbot, Pebble with EAB)
killed with SIGKILL at random points, the certbot it started too: afterwards
no file on any filesystem it could have written holds the HMAC key, in any
form (issue 18, defect 7: the key file in /dev/shm outlived such a kill).

The kills come the ways they come in life: the whole unit at once (systemd's
final SIGKILL, ``timeout -s KILL`` of a process group), certbot-wwu first
(the OOM killer) with certbot a moment later, or certbot first. Most kill
points are chosen once certbot is running (its process is found in /proc
under certbot-wwu's pid), a few during certbot-wwu's own start.

``WWU_KILL_ITERATIONS`` sets the number of kills (default 5; ``make faults``
runs more), ``WWU_KILL_SEED`` the random kill points.
"""
import base64
import binascii
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from tests.support.certbot import certbot_executable
from tests.support.service import process_alive

pytestmark = pytest.mark.e2e

ITERATIONS = int(os.environ.get("WWU_KILL_ITERATIONS", "5"))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: the certbot-wwu command of this interpreter
DRIVER = textwrap.dedent("""\
    import sys
    from certbot_wwu import cli
    sys.exit(cli.main())
    """)
#: how the processes die, in turn
STYLES = ("unit", "register-first", "certbot-first")
#: everywhere certbot-wwu or certbot could have put a file (plus the test's
#: own directories, which are below /var/tmp, and the cwd given to them)
PLACES = ("/dev/shm", "/tmp", "/var/tmp")


def forms(key):
    """The key as given and the ways its bytes could be written down."""
    raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    standard = base64.b64encode(raw)
    return {key.encode(), raw, standard, standard.rstrip(b"="),
            base64.urlsafe_b64encode(raw), binascii.hexlify(raw)}


def files_holding(secrets, tops, since, ignore=()):
    """(path, form) for each regular file below tops, changed since ``since``
    (links not followed), that holds one of secrets; ``ignore``: paths of
    files and directories that hold the keys on purpose."""
    found = []
    for top in tops:
        for directory, subdirs, names in os.walk(top):
            subdirs[:] = [d for d in subdirs
                          if os.path.join(directory, d) not in ignore]
            for name in names:
                path = os.path.join(directory, name)
                if path in ignore:
                    continue
                try:
                    info = os.lstat(path)
                    if (not stat.S_ISREG(info.st_mode) or info.st_size > 1 << 24
                            or max(info.st_mtime, info.st_ctime) < since):
                        continue
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:  # gone meanwhile
                    continue
                with os.fdopen(fd, "rb") as f:
                    data = f.read()
                found += [(path, s) for s in secrets if s in data]
    return found


def children(pid):
    """Pids whose parent is pid."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(name)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(name))
    return found


def is_certbot_register(pid, certbot):
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return certbot.encode() in argv and b"register" in argv


def stragglers(root):
    """Pids whose command line names a directory below root: a certbot that
    certbot-wwu forked just before its kill and that exec'd as an orphan."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/{}/cmdline".format(name), "rb") as f:
                    if (root + "/").encode() in f.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


def gone(pid):
    """True once pid has ended (a zombie has closed its descriptors too)."""
    return not process_alive(pid)


def kill(pids, signum=signal.SIGKILL):
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


class Run(object):
    """One ``certbot-wwu register`` with config, work, logs and cwd of its own."""

    def __init__(self, root, pebble, kid, key, key_file):
        self.root = root
        os.makedirs(os.path.join(root, "cwd"))
        argv = [sys.executable, "-c", DRIVER, "register", "--server", pebble.url,
                "--eab-kid", kid, "--eab-hmac-key-file", key_file or "-",
                "--email", "admin@example.org", "--certbot", certbot_executable()]
        for name in ("config", "work", "logs"):
            argv += ["--{}-dir".format(name), os.path.join(root, name)]
        env = dict(os.environ, PYTHONPATH=REPO, **pebble.env())
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            env.pop(name, None)
        # its output lands below /var/tmp: searched like everything else
        with open(os.path.join(root, "out"), "w") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out,
                                         stderr=subprocess.STDOUT, env=env,
                                         cwd=os.path.join(root, "cwd"))
        self.proc.stdin.write(b"" if key_file else key.encode() + b"\n")
        self.proc.stdin.close()

    def certbot(self, deadline):
        """certbot's pid once certbot-wwu has started it, or None if it ended."""
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return None
            for pid in children(self.proc.pid):
                if is_certbot_register(pid, certbot_executable()):
                    return pid
            time.sleep(0.005)
        raise AssertionError("certbot-wwu register did not start certbot in time")

    def output(self):
        with open(os.path.join(self.root, "out")) as f:
            return f.read()


def new_eab(pebble, used):
    """A fresh EAB pair, or one used before once Pebble has no more."""
    try:
        used.append(pebble.new_eab())
        return used[-1]
    except RuntimeError:
        return used[len(used) % len(used)]


def test_sigkill_of_register_leaves_no_key_material(pebble, scratch):
    rng = random.Random(int(os.environ.get("WWU_KILL_SEED", "1807")))
    since = time.time() - 1
    keys, used, stats = [], [], {"certbot running": 0, "account made": 0}
    key_files = []
    runs = []
    try:
        # one whole run: it works, and how long certbot takes here
        kid, key = new_eab(pebble, used)
        keys.append(key)
        runs.append(Run(os.path.join(scratch, "whole"), pebble, kid, key, None))
        certbot = runs[0].certbot(time.time() + 60)
        started = time.time()
        assert certbot is not None, runs[0].output()
        while not gone(certbot):
            time.sleep(0.005)
        span = time.time() - started
        assert runs[0].proc.wait(timeout=60) == 0, runs[0].output()
        for i in range(ITERATIONS):
            kid, key = new_eab(pebble, used)
            keys.append(key)
            root = os.path.join(scratch, "run{}".format(i))
            key_file = None
            if i % 2:  # from a file (which holds the key, of course) or stdin
                os.makedirs(os.path.join(scratch, "secrets"), mode=0o700,
                            exist_ok=True)
                key_file = os.path.join(scratch, "secrets", "hmac{}.txt".format(i))
                with open(key_file, "w") as f:
                    f.write(key + "\n")
                key_files.append(key_file)
            run = Run(root, pebble, kid, key, key_file)
            runs.append(run)
            style = STYLES[i % len(STYLES)]
            certbot = None
            if i % 4 == 3:  # during certbot-wwu's own start, maybe before certbot
                time.sleep(rng.uniform(0.0, 0.5))
                certbot = ([pid for pid in children(run.proc.pid)
                            if is_certbot_register(pid, certbot_executable())]
                           or [None])[0]
            else:  # while certbot runs
                certbot = run.certbot(time.time() + 60)
                assert certbot is not None, run.output()
                time.sleep(rng.uniform(0.0, span))
            stats["certbot running"] += certbot is not None and not gone(certbot)
            pids = [run.proc.pid] + ([certbot] if certbot else [])
            if style == "unit":  # all at once, as systemd kills a unit
                kill(pids, signal.SIGSTOP)
                kill(pids)
            elif style == "register-first":
                kill(pids[:1])
                time.sleep(rng.uniform(0.0, 0.3))
                kill(pids[1:])
            else:
                kill(pids[1:])
                time.sleep(rng.uniform(0.0, 0.05))
                kill(pids[:1])
            run.proc.wait(timeout=60)
            deadline = time.time() + 60
            late = stragglers(root)
            kill(late)
            for pid in late + ([certbot] if certbot else []):
                while not gone(pid):  # an orphan is reaped by init, later
                    assert time.time() < deadline, "{} survived".format(pid)
                    time.sleep(0.01)
            accounts = os.path.join(root, "config", "accounts")
            stats["account made"] += os.path.isdir(accounts) and any(
                files for _, _, files in os.walk(accounts))
    finally:
        for run in runs:
            kill([run.proc.pid] + children(run.proc.pid))
            run.proc.wait()
    print("register kill test: {} kills, {} while certbot ran (for {:.2f} s "
          "unkilled), {} after an account was made".format(
              ITERATIONS, stats["certbot running"], span, stats["account made"]))
    assert stats["certbot running"], "no kill hit certbot at work"

    secrets = set()
    for key in keys:
        secrets |= forms(key)
    tops = PLACES + (scratch, os.getcwd())
    # Pebble's own configuration holds every EAB key it knows
    found = files_holding(secrets, tops, since,
                          ignore=key_files + [pebble.workdir])
    assert [path for path, _ in found] == []

    # control: the search finds each form of a key in a file written now
    probe = os.path.join(scratch, "whole", "probe")
    for form in sorted(forms(keys[0])):
        with open(probe, "wb") as f:
            f.write(b"x" + form + b"y")
        assert files_holding({form}, (scratch,), since) == [(probe, form)]
