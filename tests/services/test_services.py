"""Each service profile against its real Debian 12 server (docs/services).

Real certbot, inside the session's real systemd, obtains the certificate
from Pebble with the profile; the server, a real unit under the profile's
own unit name with User= its own account (servers.py), on loopback, serves
it as the protocol's own client (openssl s_client -starttls ...) sees; a renewal makes
it serve the new one after the profile's action, and the old key is then
unreadable (ACL mode). One negative case per rule a profile encodes.
"""
import os
import pwd
import re
import ssl
import subprocess

import pytest

from certbot_wwu import tlscheck
from certbot_wwu.errors import ServiceError
from tests.services import servers
from tests.services.conftest import need
from tests.support import host

pytestmark = pytest.mark.e2e

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def live_fingerprint(certbot, name):
    with open(certbot.live(name, "cert")) as f:
        return tlscheck.fingerprint(ssl.PEM_cert_to_DER_cert(f.read()))


def client_sees(server, starttls=None, port=None):
    """SHA-256 of the leaf the protocol's own client gets (openssl s_client
    with -starttls and the right SNI / XMPP host)."""
    argv = ["openssl", "s_client", "-connect", "{}:{}".format(
        servers.HOST, port or server.port), "-servername", server.name]
    if starttls:
        argv += ["-starttls", starttls]
    if starttls == "xmpp":
        argv += ["-xmpphost", server.name]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True)
    out = proc.communicate(timeout=30)[0]
    found = _PEM.search(out)
    assert found, "openssl s_client got no certificate:\n" + out[-2000:]
    return tlscheck.fingerprint(ssl.PEM_cert_to_DER_cert(found.group(0)))


@pytest.fixture
def started(request):
    """Servers to stop at the end of the test."""
    running = []
    yield running.append
    for server in running:
        server.control("stop")


def obtain(certbot, name, *options, **kwargs):
    return certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", name,
                        "--cert-name", name, *options, **kwargs)


def use_live(server, certbot, name):
    server.use(certbot.live(name, "cert"), certbot.live(name, "privkey"),
               certbot.live(name, "fullchain"))


def acl_profile_cycle(certbot, server, profile, starttls, action, started,
                      check_port=None):
    """The sysadmin's way: the server runs on its snakeoil certificate; its
    configuration names certbot's live files; certbot obtains with the
    profile (whose unit, action, user and check protocol are used as they
    are); the server serves it; a renewal is served after the action; the
    old key is unreadable."""
    name = server.name
    assert server.control("start") == 0, server.logged()
    started(server)
    snakeoil = client_sees(server, starttls, check_port)
    server.use(os.path.join(certbot.config_dir, "live", name, "cert.pem"),
               os.path.join(certbot.config_dir, "live", name, "privkey.pem"),
               os.path.join(certbot.config_dir, "live", name, "fullchain.pem"))
    result = obtain(certbot, name, "--wwu-acl-service", profile, "--wwu-acl-check",
                    "{}:{}".format(servers.HOST, check_port or server.port), check=False)
    assert result.code == 0, repr(result) + server.logged()[-3000:]
    first = live_fingerprint(certbot, name)
    assert first != snakeoil
    assert client_sees(server, starttls, check_port) == first
    assert "{} {}".format(action, server.unit) in certbot.systemctl.actions()
    conf = certbot.read_renewal_conf(name)
    assert "wwu_acl_service = {}".format(profile) in conf
    certbot.systemctl.clear()
    result = certbot.renew("--force-renewal", check=False)
    assert result.code == 0, repr(result) + server.logged()[-3000:]
    assert certbot.systemctl.actions() == ["{} {}".format(action, server.unit)]
    second = live_fingerprint(certbot, name)
    assert second != first
    assert client_sees(server, starttls, check_port) == second
    if server.user:
        assert host.read_as(server.user, certbot.live(name, "privkey"))
        assert not host.read_as(server.user, certbot.archive(name, "privkey", 1))
    assert not host.read_as(host.OTHER_USER, certbot.live(name, "privkey"))
    return result


def refuses_plain_tls(server, port=None):
    """A check that speaks TLS from the first byte fails on a STARTTLS port
    (the profile's check protocol is the rule)."""
    with pytest.raises(ServiceError) as failure:
        tlscheck.confirm_served(servers.HOST, port or server.port, server.name,
                                "0" * 64, 2)
    assert "STARTTLS" in str(failure.value)


# --- PostgreSQL ------------------------------------------------------------------

def test_postgresql_profile(certbot, scratch, started):
    need("postgresql")
    server = servers.PostgreSQL(scratch, certbot.systemctl, "pg.example.org")
    acl_profile_cycle(certbot, server, "postgresql", "postgres", "reload", started)
    refuses_plain_tls(server)
    assert "invalid length of startup packet" in server.logged()


def test_postgresql_refuses_a_group_readable_key_it_owns(certbot, scratch, started):
    """docs/copy-mode's owner:group 0640 pattern: PostgreSQL's own words
    without the profile; with the profile that pattern is refused before
    anything changes, and the profile's copy (postgres, 0600) is served."""
    need("postgresql")
    name = "pgcopy.example.org"
    server = servers.PostgreSQL(scratch, certbot.systemctl, name)
    copies = os.path.join(scratch, "pgtls")
    server.use(os.path.join(copies, "cert.pem"), os.path.join(copies, "privkey.pem"),
               os.path.join(copies, "fullchain.pem"))
    started(server)
    result = obtain(certbot, name, "--wwu-acl-copy-to", copies, "--wwu-acl-copy-owner",
                    "postgres:postgres", "--wwu-acl-copy-mode", "0640",
                    "--wwu-acl-unit", server.unit, check=False)
    assert result.code != 0
    assert "has group or world access" in server.logged()
    # the same stored settings with the profile: refused, naming the options
    result = certbot("install", "--cert-name", name, "-i", "wwu-acl",
                     "--wwu-acl-service", "postgresql", check=False)
    assert result.code != 0
    assert "--wwu-acl-copy-mode 0600" in result.err, repr(result)
    # the profile's own copy settings, on a server running on its snakeoil
    server.use(*server.snakeoil_files)
    assert server.control("start") == 0, server.logged()[-2000:]
    copies = os.path.join(scratch, "pgtls2")
    server.use(os.path.join(copies, "cert.pem"), os.path.join(copies, "privkey.pem"),
               os.path.join(copies, "fullchain.pem"))
    name = "pgcopy2.example.org"
    result = obtain(certbot, name, "--wwu-acl-service", "postgresql", "--wwu-acl-copy-to",
                    copies, "--wwu-acl-check", "{}:{}".format(servers.HOST, server.port),
                    check=False)
    assert result.code == 0, repr(result) + server.logged()[-3000:]
    assert client_sees(server, "postgres") == live_fingerprint(certbot, name)
    key = os.stat(os.path.join(copies, "privkey.pem"))
    assert (key.st_uid, key.st_mode & 0o777) == (pwd.getpwnam("postgres").pw_uid, 0o600)
    assert "reload {}".format(server.unit) in certbot.systemctl.actions()


# --- the other ACL and root-read profiles -----------------------------------------
# profile, server class, Debian package, openssl -starttls, the profile's action

ACL_CASES = [
    ("mosquitto", servers.Mosquitto, "mosquitto", None, "reload"),
    ("redis", servers.Redis, "redis-server", None, "restart"),
    ("slapd", servers.Slapd, "slapd", "ldap", "restart"),
    ("prosody", servers.Prosody, "prosody", "xmpp", "reload"),
    ("dovecot", servers.Dovecot, "dovecot-imapd", "imap", "reload"),
    ("postfix", servers.Postfix, "postfix", "smtp", "reload"),
]


def make(cls, scratch, certbot, profile):
    name = "{}.example.org".format(profile)
    if cls is servers.Prosody:
        cls = type("ProsodyFor", (cls,), {"domain": name})
    return cls(scratch, certbot.systemctl, name)


@pytest.mark.parametrize("profile,cls,package,starttls,action", ACL_CASES,
                         ids=[case[0] for case in ACL_CASES])
def test_profile(certbot, scratch, started, profile, cls, package, starttls, action):
    need(package)
    server = make(cls, scratch, certbot, profile)
    acl_profile_cycle(certbot, server, profile, starttls, action, started)
    if starttls:
        refuses_plain_tls(server)


RESTART_CASES = [case for case in ACL_CASES if case[4] == "restart"]


@pytest.mark.parametrize("profile,cls,package,starttls,action", RESTART_CASES,
                         ids=[case[0] for case in RESTART_CASES])
def test_reload_does_not_load_the_new_certificate(certbot, scratch, started, profile,
                                                  cls, package, starttls, action):
    """The rule behind 'restart': a reload (SIGHUP, what the unit's reload
    would send) does not load the new certificate: Redis still serves the
    old one, slapd shuts down (cleanly: systemd has the unit inactive, not
    failed, and the settle window catches it); the deployment fails and
    says so, with slapd's own last words."""
    need(package)
    server = make(cls, scratch, certbot, profile)
    acl_profile_cycle(certbot, server, profile, starttls, action, started)
    old = live_fingerprint(certbot, server.name)
    result = certbot.renew("--force-renewal", "--wwu-acl-action", "reload",
                           "--wwu-acl-timeout", "3", check=False)
    assert result.code != 0
    if profile == "redis":  # keeps serving the old certificate
        assert "still serves another certificate" in result.err, repr(result)
        assert client_sees(server, starttls) == old
    else:  # slapd shuts down on SIGHUP
        # gone before the product's first look, or within its settle window
        assert re.search(r"slapd\.service (is inactive|did not stay up) after "
                         r"'systemctl reload'", result.err), repr(result)
        assert "inactive" in result.err and "slapd stopped" in result.err, repr(result)
        assert server.instance.state(server.unit) == "inactive"


def test_dovecot_pop3_starttls(certbot, scratch, started):
    need("dovecot-pop3d")
    server = make(servers.Dovecot, scratch, certbot, "dovecot")
    acl_profile_cycle(certbot, server, "dovecot", "imap", "reload", started)
    assert client_sees(server, "pop3", server.pop3_port) == \
        live_fingerprint(certbot, server.name)
    tlscheck.confirm_served(servers.HOST, server.pop3_port, server.name,
                            live_fingerprint(certbot, server.name), 10, "pop3")
    refuses_plain_tls(server, server.pop3_port)


# --- copy profiles ----------------------------------------------------------------

def copy_cycle(certbot, server, profile, copies, started, *options):
    """Obtain with the profile's copies, served after its action; renew."""
    name = server.name
    snakeoil = client_sees(server)
    result = obtain(certbot, name, "--wwu-acl-service", profile, "--wwu-acl-copy-to",
                    copies, "--wwu-acl-check", "{}:{}".format(servers.HOST, server.port),
                    *options, check=False)
    assert result.code == 0, repr(result) + server.logged()[-3000:]
    first = live_fingerprint(certbot, name)
    assert first != snakeoil and client_sees(server) == first
    certbot.systemctl.clear()
    result = certbot.renew("--force-renewal", check=False)
    assert result.code == 0, repr(result) + server.logged()[-3000:]
    second = live_fingerprint(certbot, name)
    assert second != first and client_sees(server) == second
    return certbot.systemctl.actions()


def test_haproxy_profile(certbot, scratch, started):
    """One combined PEM, read by the master as root; reload (SIGUSR2)."""
    need("haproxy")
    server = servers.HAProxy(scratch, certbot.systemctl, "haproxy.example.org")
    copies = os.path.join(scratch, "haproxy-certs")
    assert server.control("start") == 0, server.logged()[-2000:]
    started(server)
    server.use(os.path.join(copies, "cert.pem"), os.path.join(copies, "privkey.pem"),
               os.path.join(copies, "combined.pem"))
    assert copy_cycle(certbot, server, "haproxy", copies, started) == [
        "reload haproxy.service"]
    key = os.stat(os.path.join(copies, "combined.pem"))
    assert (key.st_uid, key.st_mode & 0o777) == (0, 0o600)
    assert not host.read_as(host.OTHER_USER, os.path.join(copies, "combined.pem"))


def test_haproxy_refuses_the_certificate_without_its_key(certbot, scratch):
    """The rule behind the combined format: pem copies (no profile) leave
    HAProxy with a certificate file that holds no key, in its own words."""
    need("haproxy")
    name = "haproxy-pem.example.org"
    copies = os.path.join(scratch, "haproxy-pem")
    obtain(certbot, name, "--wwu-acl-copy-to", copies)
    server = servers.HAProxy(scratch, certbot.systemctl, name)
    server.use(os.path.join(copies, "cert.pem"), os.path.join(copies, "privkey.pem"),
               os.path.join(copies, "fullchain.pem"))
    said = server.config_check()
    assert "No Private Key found" in said or "unable to load" in said.lower(), said


def p12_info(store, password_file):
    proc = subprocess.Popen(["openssl", "pkcs12", "-info", "-noout", "-in", store,
                             "-passin", "file:" + password_file],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    return proc.communicate(timeout=30)[0]


def keytool_list(store, password_file, user):
    """keytool -list as the store's reader: Java itself opens the bundle."""
    with open(password_file) as f:
        password = f.read().strip()
    proc = subprocess.Popen(["runuser", "-u", user, "--", "keytool", "-list",
                             "-storetype", "PKCS12", "-keystore", store,
                             "-storepass:env", "WWU_P12_PASSWORD"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True,
                            env=dict(os.environ, WWU_P12_PASSWORD=password))
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    return out


def password_file(scratch):
    path = os.path.join(scratch, "p12.pass")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("changeit-wwu\n")
    return path


def test_tomcat_profile(certbot, scratch, started):
    """A PKCS#12 store owned by tomcat, AES-256/PBES2, read by Tomcat 10.1 on
    Java 17 after a restart, listed by keytool."""
    need("tomcat10", "default-jre-headless")
    secret = password_file(scratch)
    cls = type("TomcatWith", (servers.Tomcat,), {"password_file": secret})
    server = cls(scratch, certbot.systemctl, "tomcat.example.org")
    copies = os.path.join(scratch, "tomcat-tls")
    assert server.control("start") == 0, server.logged()[-2000:]
    started(server)
    server.use(os.path.join(copies, "cert.pem"), os.path.join(copies, "privkey.pem"),
               os.path.join(copies, "bundle.p12"))
    actions = copy_cycle(certbot, server, "tomcat", copies, started,
                         "--wwu-acl-p12-password-file", secret)
    assert actions == ["restart tomcat10.service"]
    store = os.path.join(copies, "bundle.p12")
    assert "PrivateKeyEntry" in keytool_list(store, secret, "tomcat")
    info = p12_info(store, secret)
    assert "AES-256-CBC" in info and "MAC: sha256" in info, info


def test_legacy_p12_for_old_java(certbot, scratch):
    """tomcat-legacy-java: 3DES with a SHA-1 MAC, what JREs before 8u301 and
    11.0.12 read (no such JRE is in Debian 12: the algorithms are shown by
    openssl, and Java 17's keytool reads the bundle too)."""
    need("default-jre-headless")
    secret = password_file(scratch)
    copies = os.path.join(scratch, "legacy-tls")
    obtain(certbot, "legacy.example.org", "--wwu-acl-service", "tomcat-legacy-java",
           "--wwu-acl-copy-to", copies, "--wwu-acl-p12-password-file", secret,
           "--wwu-acl-action", "none")
    store = os.path.join(copies, "bundle.p12")
    info = p12_info(store, secret)
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in info and "MAC: sha1" in info, info
    assert "AES" not in info, info
    assert "PrivateKeyEntry" in keytool_list(store, secret, "tomcat")
    assert "wwu_acl_p12_encryption" not in certbot.read_renewal_conf("legacy.example.org") \
        or "legacy" in certbot.read_renewal_conf("legacy.example.org")
