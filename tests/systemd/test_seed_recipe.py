"""The seed's whole recipe as it really runs (issue 16): Debian's
/usr/bin/certbot with the project's .deb installed inside a real systemd,
a TLS service as a real unit with User=, certbot.service run as its timer
runs it, through a real HTTP CONNECT proxy (tinyproxy)."""
import glob
import os
import re
import shutil

import pytest

from tests.support import units
from tests.support.host import OTHER_USER, SERVICE_USER
from tests.support.pebble import free_port
from tests.systemd.conftest import unavailable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAME = "seed"
LIVE = "/etc/letsencrypt/live/" + NAME
ARCHIVE = "/etc/letsencrypt/archive/" + NAME
RENEWAL = "/etc/letsencrypt/renewal/{}.conf".format(NAME)
PEBBLE_CA = "/usr/local/share/wwu-test/pebble-ca.pem"
PROXY_CONF = """User nobody
Group nogroup
Port {port}
Listen 127.0.0.1
Timeout 60
Syslog On
LogLevel Connect
MaxClients 20
Allow 127.0.0.1
ConnectPort {pebble_port}
"""


def _deb() -> str:
    debs = sorted(glob.glob(os.path.join(ROOT, "dist", "python3-certbot-wwu_*_all.deb")))
    if not debs:
        unavailable("no dist/python3-certbot-wwu_*_all.deb (make test-systemd builds it "
                    "with make deb)")
    return debs[-1]


class Seed(object):
    def __init__(self, instance, pebble):
        self.sd = instance
        self.pebble = pebble
        self.tls_port = free_port()
        self.proxy_port = free_port()
        # certbot.service has PrivateTmp=true: Pebble's CA (in the host's
        # /tmp) goes into the instance's /usr overlay
        with open(pebble.env()["REQUESTS_CA_BUNDLE"]) as f:
            instance.write(PEBBLE_CA, f.read())
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                    "REQUESTS_CA_BUNDLE": PEBBLE_CA}

    def run(self, *argv, **kwargs):
        kwargs.setdefault("env", self.env)
        return self.sd.run(list(argv), **kwargs)

    def served(self) -> str:
        return units.served_fingerprint(self.tls_port)

    def live_cert(self) -> str:
        with open(self.sd.path(LIVE + "/cert.pem")) as f:
            return units.pem_fingerprint(f.read())

    def set_due(self, due: bool) -> None:
        path = self.sd.path(RENEWAL)
        with open(path) as f:
            text = re.sub(r"(?m)^renew_before_expiry = .*\n", "", f.read())
        if due:  # Pebble's certificates live 5 years
            text = "renew_before_expiry = 2000 days\n" + text
        with open(path, "w") as f:
            f.write(text)

    def start_certbot_service(self):
        self.sd.systemctl("reset-failed", "certbot.service", check=False)
        return self.sd.systemctl("start", "certbot.service", check=False)


@pytest.fixture(scope="module")
def seed(instance, pebble):
    if shutil.which("tinyproxy") is None:
        unavailable("needs tinyproxy (scripts/setup-systemd-test installs tinyproxy-bin)")
    if not os.access("/usr/bin/certbot", os.X_OK):
        unavailable("needs Debian's certbot (scripts/setup-systemd-test installs it)")
    seed = Seed(instance, pebble)
    # the .deb, inside: dpkg's state, /usr and /etc are overlays of the instance
    seed.run("dpkg", "-i", _deb())
    assert os.path.exists(instance.path("/usr/bin/certbot-wwu"))
    assert not os.path.exists("/usr/bin/certbot-wwu") or \
        os.stat("/usr/bin/certbot-wwu") != os.stat(instance.path("/usr/bin/certbot-wwu"))
    instance.write("/etc/wwu-tinyproxy.conf", PROXY_CONF.format(
        port=seed.proxy_port, pebble_port=pebble.url.split(":")[2].split("/")[0]))
    instance.write("/etc/systemd/system/wwu-proxy.service", units.unit(
        "tinyproxy for the renewal", "Type=simple\n"
        "ExecStart=/usr/bin/tinyproxy -d -c /etc/wwu-tinyproxy.conf\n"))
    units.install_tlsserver(instance)
    instance.write("/etc/systemd/system/seedtls.service", units.tlsserver_unit(
        SERVICE_USER, LIVE + "/fullchain.pem", LIVE + "/privkey.pem", seed.tls_port))
    # Pebble's CA for certbot.service (the test's own drop-in; the proxy is
    # certbot-wwu setup's job)
    instance.write("/etc/systemd/system/certbot.service.d/00-test-ca.conf",
                   "[Service]\nEnvironment=REQUESTS_CA_BUNDLE={}\n".format(
                       seed.env["REQUESTS_CA_BUNDLE"]))
    instance.daemon_reload()
    instance.systemctl("start", "wwu-proxy.service")
    return seed


def test_1_register_with_eab(seed):
    kid, hmac = seed.pebble.new_eab()
    result = seed.run("certbot-wwu", "register", "--server", seed.pebble.url,
                      "--eab-kid", kid, "--eab-hmac-key-file", "-",
                      "--email", "admin@example.org", input=hmac + "\n")
    assert hmac not in result.out + result.err
    assert os.listdir(seed.sd.path("/etc/letsencrypt/accounts"))


def test_2_run_deploys_to_a_real_unit_with_user(seed):
    seed.run("certbot", "run", "-a", "standalone", "-i", "wwu-acl", "-d",
             "seed.example.org", "--cert-name", NAME, "--server", seed.pebble.url,
             "--http-01-port", str(free_port()), "--agree-tos", "-n",
             "--wwu-acl-user", SERVICE_USER, "--wwu-acl-unit", "seedtls",
             "--wwu-acl-check", "127.0.0.1:{}".format(seed.tls_port),
             "--wwu-acl-settle", "1")
    assert seed.sd.state("seedtls.service") == "active"
    assert seed.sd.show("seedtls.service", "User")["User"] == SERVICE_USER
    assert seed.served() == seed.live_cert()


def test_3_setup_puts_the_proxy_into_certbot_service(seed):
    proxy = "http://127.0.0.1:{}".format(seed.proxy_port)
    seed.run("certbot-wwu", "setup", "--distro", "debian", "--proxy", proxy,
             "--enable-timer")
    environment = seed.sd.show("certbot.service", "Environment")["Environment"]
    assert "https_proxy={}".format(proxy) in environment.split()
    assert seed.sd.systemctl("is-enabled", "certbot.timer").out.strip() == "enabled"
    assert seed.sd.state("certbot.timer") == "active"


def test_4_the_timers_service_renews_through_the_proxy(seed):
    old_pid = seed.sd.main_pid("seedtls.service")
    old_cert = seed.live_cert()
    seed.set_due(True)
    result = seed.start_certbot_service()
    assert result.code == 0, seed.sd.journal("certbot.service")
    proxy_log = seed.sd.journal("wwu-proxy.service", 200)
    assert re.search(r"CONNECT.*127\.0\.0\.1:{}".format(
        seed.pebble.url.split(":")[2].split("/")[0]), proxy_log), proxy_log
    assert seed.live_cert() != old_cert
    new_pid = seed.sd.main_pid("seedtls.service")
    assert new_pid not in (0, old_pid)
    assert seed.served() == seed.live_cert()
    versions = sorted(os.listdir(seed.sd.path(ARCHIVE)))
    assert "privkey2.pem" in versions
    as_user = ["runuser", "-u", SERVICE_USER, "--", "cat"]
    assert seed.run(*(as_user + [ARCHIVE + "/privkey1.pem"]), check=False).code != 0
    assert seed.run(*(as_user + [LIVE + "/privkey.pem"]), check=False).code == 0
    other = ["runuser", "-u", OTHER_USER, "--", "cat", LIVE + "/privkey.pem"]
    assert seed.run(*other, check=False).code != 0


@pytest.mark.parametrize("fault,journal_line", [
    ("ExecStartPre=/bin/sh -c 'echo \"key check failed\" >&2; exit 1'\n", "key check failed"),
    ("ExecStartPost=/bin/sh -c '(sleep 0.5; echo \"cannot load the new key\" >&2; "
     "kill -TERM $MAINPID) &'\n", "cannot load the new key"),
], ids=["exec-start-pre-fails", "dies-after-half-a-second"])
def test_5_a_broken_unit_fails_the_timers_run_and_the_next_run_heals(seed, fault, journal_line):
    seed.sd.write("/etc/systemd/system/seedtls.service.d/fault.conf", "[Service]\n" + fault)
    seed.sd.daemon_reload()
    seed.set_due(True)
    result = seed.start_certbot_service()
    assert result.code != 0
    assert seed.sd.show("certbot.service", "Result")["Result"] == "exit-code"
    assert seed.sd.state("certbot.service") == "failed"
    log = seed.sd.journal("certbot.service", 100)
    assert "seedtls.service" in log and journal_line in log, log
    assert "journalctl -u seedtls.service" in log
    # the fault removed, the next run (not due) brings the unit back
    seed.sd.remove("/etc/systemd/system/seedtls.service.d/fault.conf")
    seed.sd.daemon_reload()
    seed.set_due(False)
    result = seed.start_certbot_service()
    assert result.code == 0, seed.sd.journal("certbot.service", 50)
    assert seed.sd.state("seedtls.service") == "active"
    assert seed.served() == seed.live_cert()
