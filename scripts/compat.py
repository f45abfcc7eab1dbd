"""make compat: the core end-to-end scenario on every certbot we support.

For each (certbot, Python) pair of DESIGN §9 this builds (or reuses) a venv
under .venvs/compat/ with scripts/make-venv — cached by its requirement list —
and runs scripts/compat-scenario.py with that venv's python. Debian 12's own
certbot is tested as a distribution user would have it: apt's certbot and
python3-pylibacl plus dist/python3-certbot-wwu_*.deb (`make deb`), driven
through /usr/bin/certbot.

Prints one line per pair, ``PASS certbot X.Y on Python A.B`` or ``FAIL ... at
step S: <one line>``, then a summary; exits 1 if any pair failed. Logs of
every pair: build/compat/<pair>.log. Run as root; pairs run one after another.

  scripts/compat.py [--only TEXT ...] [--list] [--keep]

--only selects pairs whose name contains TEXT (e.g. ``1.11``, ``py3.13``,
``debian``).
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGS = os.path.join(ROOT, "build", "compat")
VENVS = os.path.join(ROOT, ".venvs", "compat")
SCENARIO = os.path.join(ROOT, "scripts", "compat-scenario.py")

# Pins (DESIGN §9). certbot/acme 1.x on a modern pip: pyOpenSSL >= 23.2 breaks
# acme 1.x CSRs, josepy 2 and cryptography >= 41 are too new for it, and
# certbot < 2.7 needs pkg_resources (setuptools < 80.9). On Python 3.6 pip 21
# and setuptools < 60 are the newest that run, and pylibacl 0.7 needs 3.7.
# certbot 1.11 needs nothing beyond 1.22's pins: it depends on zope.interface
# and zope.component itself, and requests/urllib3/zope resolve to their last
# Python 3.6 releases.
PY36_1X = ["josepy==1.13.0", "pyOpenSSL==23.1.1", "cryptography==40.0.2",
           "setuptools<60", "pylibacl<0.7"]
MODERN_1X = ["josepy==1.13.0", "pyOpenSSL==23.1.1", "cryptography==40.0.2",
             "setuptools>=75.9,<80.9", "pylibacl"]
# acme 2.9 needs josepy < 2 (ComparableX509) and a pyOpenSSL with X509Req
# (gone in 24.3+); these are the versions Ubuntu 24.04 ships with certbot 2.9.
CERTBOT_29 = ["josepy==1.14.0", "pyOpenSSL==23.2.0", "cryptography==41.0.7",
              "pylibacl"]
# certbot 4.0 and 5.8: their own requirements, newest everything.
LATEST = ["pylibacl"]


class Pair(object):
    def __init__(self, certbot, python, pins=(), pip=None, no_zope=False,
                 debian=False):
        self.certbot, self.python = certbot, python
        self.pins, self.pip = list(pins), pip
        self.no_zope, self.debian = no_zope, debian

    @property
    def name(self):
        if self.debian:
            return "debian12-certbot-{}-py{}".format(self.certbot, self.python)
        return "certbot-{}-py{}".format(self.certbot, self.python)

    @property
    def label(self):
        text = "certbot {} on Python {}".format(self.certbot, self.python)
        return text + (" (Debian 12 python3-certbot + .deb)" if self.debian else "")

    def requirements(self):
        return ["certbot=={}.0".format(self.certbot),
                "acme=={}.0".format(self.certbot)] + self.pins


PAIRS = [
    Pair("1.11", "3.6", PY36_1X, pip="pip<22"),      # CentOS 7 / EPEL 7
    Pair("1.22", "3.6", PY36_1X, pip="pip<22"),      # EL 8
    Pair("1.21", "3.10", MODERN_1X),                 # Ubuntu 22.04
    Pair("2.9", "3.9", CERTBOT_29),                  # EL 9
    Pair("2.1", "3.11", debian=True),                # Debian 12, apt + .deb
    Pair("2.9", "3.12", CERTBOT_29),                 # Ubuntu 24.04
    Pair("4.0", "3.13", LATEST),                     # Debian 13
    Pair("5.8", "3.12", LATEST, no_zope=True),       # PyPI
    Pair("5.8", "3.13", LATEST, no_zope=True),       # PyPI
]


class Failed(Exception):
    def __init__(self, step, message):
        super(Failed, self).__init__(message)
        self.step, self.message = step, message


NOISE = ("is ignored: it is neither a file nor a directory", "DEPRECATION:",
         "WARNING: You are using pip version", "consider upgrading via")


def last_line(text):
    lines = [l.strip() for l in text.splitlines()
             if l.strip() and not any(n in l for n in NOISE)]
    return lines[-1] if lines else "(no output)"


def run_logged(argv, log, step, timeout, **kwargs):
    """Run argv with its output appended to log; Failed(step) if it fails."""
    log.write("\n$ {}\n".format(" ".join(argv)))
    log.flush()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True,
                            **kwargs)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        log.write(out)
        raise Failed(step, "timed out after {} s".format(timeout))
    log.write(out if out.endswith("\n") or not out else out + "\n")
    log.flush()
    if proc.returncode != 0:
        raise Failed(step, "exit {}: {}".format(proc.returncode, last_line(out)))
    return out


def find_python(version):
    """The newest pyenv (or system) interpreter for "A.B"."""
    try:
        root = subprocess.check_output(["pyenv", "root"], universal_newlines=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = []
    for path in glob.glob(os.path.join(root, "versions", version + ".*", "bin",
                                       "python" + version)):
        patch = re.search(r"/{}\.(\d+)/bin/".format(re.escape(version)), path)
        if patch:
            found.append((int(patch.group(1)), path))
    if found:
        return max(found)[1]
    system = "/usr/bin/python" + version
    if os.access(system, os.X_OK):
        return system
    raise Failed("python", "no Python {} under {}/versions or /usr/bin".format(
        version, root))


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "WWU_CERTBOT")}
    env.update(extra)
    return env


def scenario(python, pair, log, args, extra_args=(), env=None):
    argv = [python, SCENARIO, "--expect-certbot", pair.certbot,
            "--expect-python", pair.python] + list(extra_args)
    if pair.no_zope:
        argv.append("--expect-no-zope")
    if args.keep:
        argv.append("--keep")
    log.write("\n$ {}\n".format(" ".join(argv)))
    log.flush()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True,
                            env=env or clean_env(), cwd=ROOT)
    try:
        out, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        log.write(out)
        raise Failed("scenario", "timed out after 900 s")
    log.write(out)
    if proc.returncode == 0 and out.rstrip().endswith("OK"):
        return
    fails = [l for l in out.splitlines() if l.startswith("FAIL ")]
    if fails:
        step, _, message = fails[-1][len("FAIL "):].partition(": ")
        raise Failed(step, message)
    raise Failed("scenario", "exit {}: {}".format(proc.returncode, last_line(out)))


def run_venv_pair(pair, log, args):
    python = find_python(pair.python)
    venv = os.path.join(VENVS, pair.name)
    env = clean_env()
    if pair.pip:
        env["PIP_SPEC"] = pair.pip
    run_logged([os.path.join(ROOT, "scripts", "make-venv"), venv, python]
               + pair.requirements(), log, "venv", 1800, env=env, cwd=ROOT)
    scenario(os.path.join(venv, "bin", "python"), pair, log, args)


def run_debian_pair(pair, log, args):
    debs = sorted(glob.glob(os.path.join(ROOT, "dist", "python3-certbot-wwu_*_all.deb")))
    if not debs:
        raise Failed("deb", "no dist/python3-certbot-wwu_*_all.deb (run make deb)")
    env = clean_env(DEBIAN_FRONTEND="noninteractive")
    run_logged(["apt-get", "install", "-y", "-q", "certbot", "python3-certbot",
                "python3-pylibacl"], log, "apt", 900, env=env)
    # --reinstall: a rebuilt .deb of the same version must replace the old one
    run_logged(["apt-get", "install", "-y", "-q", "--reinstall", debs[-1]], log,
               "apt", 900, env=env)
    version = run_logged(["dpkg-query", "-W", "-f", "${Version}", "python3-certbot"],
                         log, "apt", 60)
    if not version.startswith(pair.certbot + "."):
        raise Failed("apt", "python3-certbot is {}, not {}".format(version, pair.certbot))
    scenario("/usr/bin/python3", pair, log, args,
             ["--expect-plugin-under", "/usr/lib/python3/dist-packages"],
             env=clean_env(WWU_CERTBOT="/usr/bin/certbot"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[],
                        help="run only pairs whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the pairs")
    parser.add_argument("--keep", action="store_true",
                        help="keep each scenario's scratch directory")
    args = parser.parse_args()
    pairs = [p for p in PAIRS if not args.only or any(o in p.name for o in args.only)]
    if args.list:
        for pair in pairs:
            print("{:<28} {}".format(pair.name, " ".join(
                ["apt + dist/*.deb"] if pair.debian else pair.requirements())))
        return 0
    if os.geteuid() != 0:
        sys.exit("make compat needs root (real users, ACLs, apt).")
    if not pairs:
        sys.exit("no pair matches " + " ".join(args.only))
    os.makedirs(LOGS, exist_ok=True)
    started = time.monotonic()
    failed = 0
    for pair in pairs:
        log_path = os.path.join(LOGS, pair.name + ".log")
        began = time.monotonic()
        print("... {}".format(pair.label), file=sys.stderr, flush=True)
        with open(log_path, "w") as log:
            try:
                (run_debian_pair if pair.debian else run_venv_pair)(pair, log, args)
                line = "PASS " + pair.label
            except Failed as err:
                failed += 1
                line = "FAIL {} at step {}: {}".format(pair.label, err.step, err.message)
            log.write("\n{}\n".format(line))
        print(line, flush=True)
        print("    {:.0f} s, log: {}".format(time.monotonic() - began,
                                             os.path.relpath(log_path, ROOT)),
              file=sys.stderr, flush=True)
    print("compat: {} passed, {} failed".format(len(pairs) - failed, failed))
    print("compat took {:.0f} s".format(time.monotonic() - started), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
