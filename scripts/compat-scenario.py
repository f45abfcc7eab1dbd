"""The core end-to-end scenario against one certbot, for ``make compat``.

Run with the Python of the certbot under test (a venv's python, or
/usr/bin/python3 with WWU_CERTBOT=/usr/bin/certbot for the distribution's
certbot), as root. Steps:

  plugins   ``certbot plugins`` lists wwu-acl; the plugin module imports zope
            only on certbot < 1.19 (where it must declare IInstaller)
  register  a fresh Pebble with External Account Binding
  run       ``certbot run -a standalone -i wwu-acl --wwu-acl-user SVC``
  access    SVC can read live/privkey.pem, another user cannot
  renew     ``certbot renew --force-renewal``: a new key, granted again,
            the old key revoked
  copy      ``certbot install -i wwu-acl --wwu-acl-copy-to DIR
            --wwu-acl-copy-owner SVC``: SVC reads DIR/privkey.pem

Prints ``STEP name`` as it goes and ends with ``OK`` or
``FAIL <step>: <one line>`` (exit 1). Options:

  --expect-plugin-under DIR   certbot_wwu must be imported from below DIR
                              (the .deb's copy, not the work tree's)
  --expect-no-zope            zope.interface must not be installed at all
  --expect-certbot X.Y        the certbot under test must be X.Y
  --expect-python A.B         ... and run on Python A.B
  --keep                      keep the scratch directory
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support import host  # noqa: E402
from tests.support.certbot import Certbot, Result, certbot_executable  # noqa: E402
from tests.support.pebble import Pebble  # noqa: E402
from tests.support.systemd import RecordingSystemctl  # noqa: E402

#: traversable by the service users (tempfile's default /tmp dirs are 0700)
BASE = os.environ.get("WWU_COMPAT_BASE", "/var/tmp/certbot-wwu-compat")
NAME = "compat"
DOMAIN = "compat.example.org"
UNIT = "web"

#: what the plugin module pulls in, checked in a clean interpreter started
#: outside the work tree (so that the .deb's copy is the one found there)
PROBE = r"""
import sys
import certbot
from certbot import interfaces
from certbot.plugins import common
before = set(m for m in sys.modules if m == "zope" or m.startswith("zope."))
import certbot_wwu, certbot_wwu.installer as inst
from certbot_wwu import _compat
after = set(m for m in sys.modules if m == "zope" or m.startswith("zope."))
print("file", certbot_wwu.__file__)
print("certbot", certbot.__version__)
print("zope-added", ",".join(sorted(after - before)) or "-")
if _compat.certbot_version() < _compat.ZOPE_BEFORE:
    print("implements", int(interfaces.IInstaller.implementedBy(inst.Installer)))
    print("provides", int(interfaces.IPluginFactory.providedBy(inst.Installer)))
try:
    import zope.interface
    print("zope-installed 1")
except ImportError:
    print("zope-installed 0")
"""

BOILERPLATE = ("Ask for help", "See the logfile", "Saving debug log",
               "re-run Certbot", "- - - -", "Python 3.6 is no longer supported",
               "from cryptography", "CryptographyDeprecationWarning")


class StepFailed(Exception):
    pass


def one_line(result):
    """The line of certbot's output that says what went wrong: its last word
    on stderr, boilerplate aside (stdout has the explanations around it)."""
    for text in (result.err, result.out):
        lines = [l.strip() for l in text.splitlines()]
        lines = [l for l in lines if l and not any(b in l for b in BOILERPLATE)]
        if lines:
            return "certbot exited {}: {}".format(result.code, lines[-1])
    return "certbot exited {} (no output)".format(result.code)


def check(condition, message):
    if not condition:
        raise StepFailed(message)


def run_certbot(bot, *args, acme=False):
    result = (bot.acme if acme else bot)(*args, check=False)  # type: Result
    if result.code != 0:
        print(repr(result), flush=True)
        raise StepFailed(one_line(result))
    return result


def check_access(bot, where):
    key = bot.live(NAME)
    version = os.path.basename(os.path.realpath(key))
    check(host.read_as(host.SERVICE_USER, key),
          "{} cannot read {} ({}) {}".format(host.SERVICE_USER, key, version, where))
    check(not host.read_as(host.OTHER_USER, key),
          "{} can read {} ({}) {}".format(host.OTHER_USER, key, version, where))
    print("  {} reads {}, {} is refused".format(host.SERVICE_USER, version,
                                                 host.OTHER_USER), flush=True)


def probe(args):
    """Import the plugin in a clean interpreter; return its key/value report."""
    proc = subprocess.Popen([sys.executable, "-c", PROBE], cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    out, err = proc.communicate(timeout=120)
    print(out + err, end="", flush=True)
    if proc.returncode != 0:
        raise StepFailed("importing certbot_wwu.installer failed: " +
                         (err.strip().splitlines() or ["(no output)"])[-1])
    report = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    return report


def step_plugins(bot, args):
    report = probe(args)
    if args.expect_certbot:
        check(report.get("certbot", "").startswith(args.expect_certbot + "."),
              "certbot is {}, not {}".format(report.get("certbot"), args.expect_certbot))
    if args.expect_python:
        running = "{}.{}".format(*sys.version_info[:2])
        check(running == args.expect_python,
              "Python is {}, not {}".format(running, args.expect_python))
    if args.expect_plugin_under:
        under = os.path.join(os.path.abspath(args.expect_plugin_under), "")
        check(report.get("file", "").startswith(under),
              "certbot_wwu imported from {}, not from below {}".format(
                  report.get("file"), under))
    old = "implements" in report
    if old:
        check(report["implements"] == "1" and report["provides"] == "1",
              "Installer lacks the zope declarations certbot < 1.19 needs")
    else:
        check(report["zope-added"] == "-",
              "importing the plugin imported {}".format(report["zope-added"]))
    if args.expect_no_zope:
        check(report["zope-installed"] == "0", "zope.interface is installed")
    result = run_certbot(bot, "plugins")
    check("* wwu-acl" in result.out, "certbot plugins does not list wwu-acl")
    check("Traceback" not in result.output, "certbot plugins printed a traceback")
    result = run_certbot(bot, "plugins", "--installers", "--prepare")
    check("* wwu-acl" in result.out,
          "certbot plugins --installers --prepare does not list wwu-acl")
    if old:
        check("IInstaller" in result.out.split("* wwu-acl", 1)[1].split("* ", 1)[0],
              "certbot does not see wwu-acl as an IInstaller")


def step_register(bot, args):
    kid, hmac = bot.pebble.new_eab()
    run_certbot(bot, "register", "--server", bot.pebble.url, "--eab-kid", kid,
                "--eab-hmac-key=" + hmac, "--email", "admin@example.org",
                "--agree-tos", "--no-eff-email")


def step_run(bot, args):
    run_certbot(bot, "run", "-a", "standalone", "-i", "wwu-acl", "-d", DOMAIN,
                "--cert-name", NAME, "--wwu-acl-user", host.SERVICE_USER,
                "--wwu-acl-unit", UNIT, acme=True)
    check(os.path.realpath(bot.live(NAME)).endswith("privkey1.pem"),
          "live key is not privkey1.pem after run")
    conf = bot.read_renewal_conf(NAME)
    check("installer = wwu-acl" in conf, "renewal conf does not name the installer")
    check("wwu_acl_user = " + host.SERVICE_USER in conf,
          "renewal conf lacks wwu_acl_user")
    check(bot.systemctl.actions() == ["restart web.service"],
          "unit actions after run: {}".format(bot.systemctl.actions()))


def step_renew(bot, args):
    bot.systemctl.clear()
    run_certbot(bot, "renew", "--force-renewal", "--no-random-sleep-on-renew")
    check(os.path.realpath(bot.live(NAME)).endswith("privkey2.pem"),
          "live key is not privkey2.pem after renew")
    check(not host.read_as(host.SERVICE_USER, bot.archive(NAME, "privkey", 1)),
          "{} can still read the old privkey1.pem".format(host.SERVICE_USER))
    check(bot.systemctl.actions() == ["restart web.service"],
          "unit actions after renew: {}".format(bot.systemctl.actions()))


def step_copy(bot, args):
    dest = os.path.join(bot.root, "srv", "tls")
    os.makedirs(os.path.dirname(dest), exist_ok=True)  # the parent must exist
    run_certbot(bot, "install", "--cert-name", NAME, "-i", "wwu-acl",
                "--wwu-acl-copy-to", dest, "--wwu-acl-copy-owner", host.SERVICE_USER,
                "--wwu-acl-action", "none")
    key = os.path.join(dest, "privkey.pem")
    check(os.path.exists(key), "{} was not written".format(key))
    check(host.read_as(host.SERVICE_USER, key),
          "{} cannot read {}".format(host.SERVICE_USER, key))
    check(not host.read_as(host.OTHER_USER, key),
          "{} can read {}".format(host.OTHER_USER, key))
    with open(key, "rb") as copied, open(bot.live(NAME), "rb") as live:
        check(copied.read() == live.read(), "the copied key is not the live key")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--expect-plugin-under")
    parser.add_argument("--expect-no-zope", action="store_true")
    parser.add_argument("--expect-certbot", help="X.Y")
    parser.add_argument("--expect-python", help="A.B")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("FAIL setup: needs root (real users and ACLs)")
        return 1

    os.makedirs(BASE, exist_ok=True)
    os.chmod(BASE, 0o755)
    scratch = tempfile.mkdtemp(dir=BASE)
    os.chmod(scratch, 0o755)
    print("certbot: {}\nscratch: {}".format(certbot_executable(), scratch), flush=True)
    current = "setup"
    pebble = None
    try:
        host.ensure_test_accounts()
        pebble = Pebble(os.path.join(scratch, "pebble")).start()
        bot = Certbot(scratch, pebble, RecordingSystemctl(os.path.join(scratch, "systemctl")))
        steps = [
            ("plugins", step_plugins),
            ("register", step_register),
            ("run", step_run),
            ("access", lambda b, a: check_access(b, "after run")),
            ("renew", step_renew),
            ("access-after-renew", lambda b, a: check_access(b, "after renew")),
            ("copy", step_copy),
        ]
        for current, func in steps:
            print("STEP " + current, flush=True)
            func(bot, args)
    except StepFailed as err:
        print("FAIL {}: {}".format(current, err))
        return 1
    except Exception as err:  # pylint: disable=broad-except
        traceback.print_exc()
        print("FAIL {}: {}: {}".format(current, type(err).__name__,
                                       str(err).strip().splitlines()[0] if str(err).strip() else ""))
        return 1
    finally:
        if pebble is not None:
            pebble.stop()
        if args.keep:
            print("kept: " + scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
