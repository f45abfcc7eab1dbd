"""The real servers of tests/services, each as a sysadmin would configure it.

A Server writes its configuration below a test's scratch directory (under
/var/tmp, which the test's systemd instance shares with the host), then a
real unit into that instance (tests/support/realunits.py), named as the
Debian package names it, so the service profile's own unit name reaches a
real process. The unit is what a sysadmin would write, after the Debian
package's own: the server in the foreground with User= (its own account),
or as root where the daemon itself starts as root and opens the key before
dropping privileges; ExecReload as the package has it. Like every test unit
it records its starts and reloads in the instance's ledger. An
ExecStartPost waits until the server accepts connections on its loopback
port, as the packages' Type=notify/forking units do.
"""
import os
import pwd
import shutil
import subprocess
from typing import Dict, List, Optional

from tests.support.certbot import certbot_version
from tests.support.pebble import free_port
from tests.support.realunits import RECORD, RECORD_RELOAD, RealSystemctl

HOST = "127.0.0.1"

#: Debian package -> what tests/services needs of it (setup-services-test)
PACKAGES = {
    "postgresql": "/usr/lib/postgresql/15/bin/postgres",
    "mosquitto": "/usr/sbin/mosquitto", "redis-server": "/usr/bin/redis-server",
    "haproxy": "/usr/sbin/haproxy", "tomcat10": "/usr/share/tomcat10/bin/catalina.sh",
    "default-jre-headless": "/usr/bin/keytool", "slapd": "/usr/sbin/slapd",
    "prosody": "/usr/bin/prosody", "dovecot-imapd": "/usr/lib/dovecot/imap",
    "dovecot-pop3d": "/usr/lib/dovecot/pop3", "postfix": "/usr/sbin/postfix",
}

#: ExecStartPost: "started" means the port accepts connections (bash's
#: /dev/tcp); a server that exits instead fails the start at once
WAIT_PORT = ("/bin/bash -c 'for i in $(seq {tries}); do "
             "(exec 3<>/dev/tcp/{host}/{port}) 2>/dev/null && exit 0; "
             "[ -d /proc/$$MAINPID ] || {{ echo \"the server exited\" >&2; exit 1; }}; "
             "sleep 0.1; done; "
             "echo \"nothing listens on {host}:{port}\" >&2; exit 1'")


def package_version(package: str) -> str:
    try:
        return subprocess.check_output(
            ["dpkg-query", "-W", "-f=${Version}", package],
            universal_newlines=True, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError):
        return ""


def snakeoil_key() -> List[str]:
    """openssl's -newkey for the key type certbot makes by default (RSA
    before 2.0, ECDSA since): Mosquitto's SIGHUP adds a certificate of
    another key type beside the old one and goes on serving the old one."""
    if certbot_version() >= (2, 0, 0):
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    return ["-newkey", "rsa:2048"]


def owned_dir(path: str, user: str, mode: int = 0o700) -> str:
    """A directory the server's user owns (its data, never a key)."""
    os.makedirs(path, exist_ok=True)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, mode)
    return path


class Server(object):
    """One server process behind a real unit of the test's systemd."""

    package = ""
    unit = ""
    user = None  # type: Optional[str]
    #: the unit's ExecReload, as the Debian package has it (None: no reload)
    reload = "/bin/kill -HUP $MAINPID"  # type: Optional[str]
    start_timeout = 30

    def __init__(self, scratch: str, systemctl: RealSystemctl, name: str) -> None:
        """Configured with a self-signed certificate for ``name`` (what the
        package ships as snakeoil), not yet started."""
        self.systemctl = systemctl
        self.instance = systemctl.instance
        self.name = name
        self.dir = os.path.join(scratch, "srv-" + self.package)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        #: the server's own log file, where it writes one (else the journal)
        self.log = os.path.join(self.dir, "server.log")
        self.argv = []  # type: List[str]
        self.cwd = "/"
        self.env = {}  # type: Dict[str, str]
        self.snakeoil()
        self.use(self.cert, self.key, self.fullchain)

    def snakeoil(self) -> None:
        cert = os.path.join(self.dir, "snakeoil.pem")
        key = os.path.join(self.dir, "snakeoil.key")
        subprocess.check_call(
            ["openssl", "req", "-x509"] + snakeoil_key() + ["-nodes", "-days", "2", "-subj",
             "/CN=" + self.name, "-addext", "subjectAltName=DNS:" + self.name,
             "-keyout", key, "-out", cert], stderr=subprocess.DEVNULL)
        entry = pwd.getpwnam(self.user or "root")
        os.chown(key, entry.pw_uid, entry.pw_gid)
        os.chmod(key, 0o600)
        self.cert, self.key, self.fullchain = cert, key, cert
        self.snakeoil_files = (cert, key, cert)

    def use(self, cert: str, key: str, fullchain: str) -> None:
        """Point the configuration at these files (as the sysadmin edits it)."""
        self.cert, self.key, self.fullchain = cert, key, fullchain
        self.configure()
        self.install()

    def configure(self) -> None:
        raise NotImplementedError

    def service(self) -> str:
        """The [Service] section: the server in the foreground."""
        lines = ["Type=simple"]
        if self.user:
            lines.append("User=" + self.user)
        lines += ["WorkingDirectory=" + self.cwd, RECORD.rstrip("\n"),
                  "ExecStart=" + " ".join(self.argv),
                  "ExecStartPost=" + WAIT_PORT.format(tries=self.start_timeout * 10,
                                                      host=HOST, port=self.port),
                  "TimeoutStartSec={}".format(self.start_timeout + 10)]
        lines += ['Environment="{}={}"'.format(k, v) for k, v in sorted(self.env.items())]
        if self.reload:
            lines += [RECORD_RELOAD.rstrip("\n"), "ExecReload=" + self.reload]
        return "\n".join(lines) + "\n"

    def unit_text(self) -> str:
        return ("[Unit]\nDescription={} for certbot-wwu's service tests\n"
                "StartLimitIntervalSec=0\n\n[Service]\n{}").format(
                    self.package, self.service())

    def install(self) -> None:
        self.systemctl.add_unit(self.unit, self.unit_text())

    def control(self, action: str) -> int:
        """``systemctl ACTION`` on the unit, inside the instance: its exit code."""
        return self.instance.systemctl(action, self.unit, check=False).code

    def logged(self) -> str:
        """The unit's journal (what the server wrote to stdout and stderr)
        and the server's own log file."""
        text = self.instance.journal(self.unit, 400) if self.instance.running else ""
        try:
            with open(self.log, errors="replace") as f:
                text += f.read()
        except FileNotFoundError:
            pass
        return text

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        return path


class PostgreSQL(Server):
    package = "postgresql"
    unit = "postgresql@15-main.service"
    user = "postgres"
    bin = "/usr/lib/postgresql/15/bin/"

    def configure(self) -> None:
        data = os.path.join(self.dir, "data")
        if not os.path.exists(data):
            owned_dir(data, "postgres")
            subprocess.check_call(["runuser", "-u", "postgres", "--",
                                   self.bin + "initdb", "-D", data, "--auth=trust",
                                   "-U", "postgres"], stdout=subprocess.DEVNULL, cwd="/")
            with open(os.path.join(data, "postgresql.conf"), "a") as f:
                f.write("include = '{}/tls.conf'\n".format(self.dir))
        with open(os.path.join(self.dir, "tls.conf"), "w") as f:
            f.write("listen_addresses = '{}'\nport = {}\nunix_socket_directories = '{}'\n"
                    "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n".format(
                        HOST, self.port, data, self.fullchain, self.key))
        self.argv, self.cwd = [self.bin + "postgres", "-D", data], data


class Mosquitto(Server):
    package = "mosquitto"
    unit = "mosquitto.service"
    user = "mosquitto"

    def use(self, cert: str, key: str, fullchain: str) -> None:
        """Mosquitto rereads the files on SIGHUP, not its listener settings:
        the configuration names fixed links, which the sysadmin points at
        the snakeoil, then at certbot's live files."""
        links = os.path.join(self.dir, "tls")
        os.makedirs(links, exist_ok=True)
        paths = []
        for name, target in (("cert.pem", cert), ("privkey.pem", key),
                             ("fullchain.pem", fullchain)):
            link = os.path.join(links, name)
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(target, link)
            paths.append(link)
        super(Mosquitto, self).use(*paths)

    def configure(self) -> None:
        conf = self.write("mosquitto.conf", (
            "per_listener_settings true\nlistener {} {}\nallow_anonymous true\n"
            "certfile {}\nkeyfile {}\n").format(self.port, HOST, self.fullchain,
                                                self.key))
        self.argv = ["/usr/sbin/mosquitto", "-c", conf]


class Redis(Server):
    package = "redis-server"
    unit = "redis-server.service"
    user = "redis"

    def configure(self) -> None:
        data = owned_dir(os.path.join(self.dir, "data"), "redis")
        conf = self.write("redis.conf", (
            "bind {}\nport 0\ntls-port {}\ntls-cert-file {}\ntls-key-file {}\n"
            "tls-auth-clients no\nsave \"\"\nappendonly no\ndir {}\n").format(
                HOST, self.port, self.fullchain, self.key, data))
        self.argv, self.cwd = ["/usr/bin/redis-server", conf], data


class HAProxy(Server):
    """Started as root like Debian's unit: the master reads the PEM, the
    worker runs as haproxy."""
    package = "haproxy"
    unit = "haproxy.service"
    #: Debian's: check the configuration, then SIGUSR2 to the master
    reload = "/usr/sbin/haproxy -c -q -f {conf}\nExecReload=/bin/kill -USR2 $MAINPID"

    def snakeoil(self) -> None:
        """Its snakeoil as one combined PEM, as HAProxy wants it."""
        super(HAProxy, self).snakeoil()
        cert, key, _ = self.snakeoil_files
        combined = os.path.join(self.dir, "snakeoil-combined.pem")
        with open(key, "rb") as k, open(cert, "rb") as c:
            data = k.read() + c.read()
        fd = os.open(combined, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.snakeoil_files = (cert, key, combined)
        self.cert, self.key, self.fullchain = self.snakeoil_files

    @property
    def crt(self) -> str:
        return self.fullchain

    def config_check(self) -> str:
        """haproxy -c: what HAProxy says about its configuration."""
        proc = subprocess.Popen(["/usr/sbin/haproxy", "-c", "-f", self.argv[-1]],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True)
        return proc.communicate(timeout=30)[0]

    def configure(self) -> None:
        conf = self.write("haproxy.cfg", (
            "global\n    master-worker\n    user haproxy\n    group haproxy\n"
            "defaults\n    mode http\n    timeout connect 5s\n    timeout client 5s\n"
            "    timeout server 5s\n"
            "frontend tls\n    bind {}:{} ssl crt {}\n"
            "    http-request return status 200 content-type text/plain string ok\n"
            ).format(HOST, self.port, self.crt))
        self.argv = ["/usr/sbin/haproxy", "-W", "-db", "-f", conf]
        self.reload = HAProxy.reload.format(conf=conf)


class Tomcat(Server):
    package = "tomcat10"
    unit = "tomcat10.service"
    user = "tomcat"
    start_timeout = 90
    password_file = ""

    def snakeoil(self) -> None:
        """Its snakeoil as a PKCS#12 store owned by tomcat."""
        super(Tomcat, self).snakeoil()
        cert, key, _ = self.snakeoil_files
        store = os.path.join(self.dir, "snakeoil.p12")
        subprocess.check_call(["openssl", "pkcs12", "-export", "-in", cert, "-inkey",
                               key, "-out", store, "-passout",
                               "file:" + self.password_file])
        entry = pwd.getpwnam("tomcat")
        os.chown(store, entry.pw_uid, entry.pw_gid)
        os.chmod(store, 0o600)
        self.snakeoil_files = (cert, key, store)
        self.cert, self.key, self.fullchain = self.snakeoil_files

    @property
    def keystore(self) -> str:
        return self.fullchain

    def configure(self) -> None:
        base = self.dir
        for sub in ("logs", "temp", "work", "webapps"):
            owned_dir(os.path.join(base, sub), "tomcat", 0o750)
        os.makedirs(os.path.join(base, "conf"), exist_ok=True)
        for name in ("web.xml", "logging.properties"):
            shutil.copy("/etc/tomcat10/" + name, os.path.join(base, "conf", name))
            os.chmod(os.path.join(base, "conf", name), 0o644)
        with open(self.password_file) as f:
            password = f.read().strip()
        self.write("conf/server.xml", """<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" address="{host}" SSLEnabled="true"
               protocol="org.apache.coyote.http11.Http11NioProtocol">
      <SSLHostConfig>
        <Certificate certificateKeystoreFile="{store}"
                     certificateKeystorePassword="{password}"
                     certificateKeystoreType="PKCS12"/>
      </SSLHostConfig>
    </Connector>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
""".format(port=self.port, host=HOST, store=self.keystore, password=password))
        os.chmod(os.path.join(base, "conf", "server.xml"), 0o644)
        self.argv, self.cwd = ["/usr/share/tomcat10/bin/catalina.sh", "run"], base
        self.env = {"CATALINA_HOME": "/usr/share/tomcat10", "CATALINA_BASE": base,
                    "CATALINA_TMPDIR": os.path.join(base, "temp"),
                    "JAVA_OPTS": "-Xshare:auto -XX:TieredStopAtLevel=1 -Xmx128m"}


class Slapd(Server):
    package = "slapd"
    unit = "slapd.service"
    user = "openldap"
    # Debian's init script has no reload: SIGHUP is what one would send, and
    # slapd shuts down on it

    def configure(self) -> None:
        run = owned_dir(os.path.join(self.dir, "run"), "openldap")
        conf = self.write("slapd.conf", (
            "include /etc/ldap/schema/core.schema\npidfile {}/slapd.pid\n"
            "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n").format(
                run, self.fullchain, self.key))
        self.argv, self.cwd = ["/usr/sbin/slapd", "-d", "0", "-f", conf, "-h",
                               "ldap://{}:{}/".format(HOST, self.port)], run


class Prosody(Server):
    package = "prosody"
    unit = "prosody.service"
    user = "prosody"
    domain = ""

    def configure(self) -> None:
        data = owned_dir(os.path.join(self.dir, "data"), "prosody")
        conf = self.write("prosody.cfg.lua", (
            'pidfile = "{data}/prosody.pid"\ndata_path = "{data}"\n'
            'log = {{ info = "*console" }}\ninterfaces = {{ "{host}" }}\n'
            'c2s_ports = {{ {port} }}\ns2s_ports = {{ }}\nc2s_direct_tls_ports = {{ }}\n'
            'modules_enabled = {{ "tls", "saslauth", "disco" }}\n'
            'modules_disabled = {{ "s2s" }}\nc2s_require_encryption = true\n'
            'certificates = "{data}"\n'
            'VirtualHost "{domain}"\n    ssl = {{ certificate = "{cert}", key = "{key}" }}\n'
            ).format(data=data, host=HOST, port=self.port, domain=self.domain,
                     cert=self.fullchain, key=self.key))
        self.argv, self.cwd = ["/usr/bin/prosody", "--config", conf, "-F"], data


class Dovecot(Server):
    """Started as root like Debian's unit: its config process reads the key."""
    package = "dovecot-imapd"
    unit = "dovecot.service"

    def configure(self) -> None:
        run = os.path.join(self.dir, "run")
        os.makedirs(run, exist_ok=True)
        self.pop3_port = free_port()
        conf = self.write("dovecot.conf", (
            "protocols = imap pop3\nlisten = {host}\nbase_dir = {run}\n"
            "state_dir = {run}/state\nlog_path = {log}\nssl = yes\n"
            "ssl_cert = <{cert}\nssl_key = <{key}\n"
            "passdb {{\n  driver = static\n  args = nopassword=y\n}}\n"
            "userdb {{\n  driver = static\n  args = uid=dovecot gid=dovecot home=/nonexistent\n}}\n"
            "service imap-login {{\n  inet_listener imap {{\n    port = {port}\n  }}\n"
            "  inet_listener imaps {{\n    port = 0\n  }}\n}}\n"
            "service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n"
            "  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n").format(
                host=HOST, run=run, log=self.log,
                cert=self.fullchain, key=self.key, port=self.port, pop3=self.pop3_port))
        self.argv = ["/usr/sbin/dovecot", "-F", "-c", conf]


class Postfix(Server):
    """Started as root like Debian's unit (postfix start): smtpd opens the
    key before it drops privileges."""
    package = "postfix"
    unit = "postfix.service"

    def configure(self) -> None:
        confdir = os.path.join(self.dir, "conf")
        os.makedirs(confdir, exist_ok=True)
        spool = os.path.join(self.dir, "spool")
        os.makedirs(spool, exist_ok=True)
        data = owned_dir(os.path.join(self.dir, "data"), "postfix")
        self.write("conf/main.cf", (
            "compatibility_level = 3.6\nqueue_directory = {spool}\n"
            "data_directory = {data}\ninet_interfaces = {host}\ninet_protocols = ipv4\n"
            "myhostname = mail.example.org\nmydestination =\nmaillog_file = {log}\n"
            "smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
            "smtpd_tls_security_level = may\n").format(
                spool=spool, data=data, host=HOST, log=self.log,
                cert=self.fullchain, key=self.key))
        self.write("conf/master.cf", (
            "{port} inet n - n - - smtpd\n"
            "pickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\n"
            "qmgr unix n - n 300 1 qmgr\ntlsmgr unix - - n 1000? 1 tlsmgr\n"
            "rewrite unix - - n - - trivial-rewrite\nbounce unix - - n - 0 bounce\n"
            "defer unix - - n - 0 bounce\ntrace unix - - n - 0 bounce\n"
            "verify unix - - n - 1 verify\nflush unix n - n 1000? 0 flush\n"
            "proxymap unix - - n - - proxymap\nsmtp unix - - n - - smtp\n"
            "relay unix - - n - - smtp\nshowq unix n - n - - showq\n"
            "error unix - - n - - error\nretry unix - - n - - error\n"
            "discard unix - - n - - discard\nlocal unix - n n - - local\n"
            "lmtp unix - - n - - lmtp\nanvil unix - - n - 1 anvil\n"
            "scache unix - - n - 1 scache\npostlog unix-dgram n - n - 1 postlogd\n"
            ).format(port=self.port))
        self.confdir, self.spool = confdir, spool

    def service(self) -> str:
        """Type=forking like Debian's postfix@.service: ``postfix start``
        returns once the master runs in the background."""
        postfix = "/usr/sbin/postfix -c " + self.confdir
        return "\n".join([
            "Type=forking", "PIDFile=" + os.path.join(self.spool, "pid", "master.pid"),
            RECORD.rstrip("\n"), "ExecStart={} start".format(postfix),
            "ExecStartPost=" + WAIT_PORT.format(tries=self.start_timeout * 10,
                                                host=HOST, port=self.port),
            "ExecStop={} stop".format(postfix), RECORD_RELOAD.rstrip("\n"),
            "ExecReload={} reload".format(postfix)]) + "\n"
