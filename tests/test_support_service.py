"""tests/support/service.py: a real TLS service behind the recording systemctl."""
import datetime
import os
import pwd
import shutil
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import host
from tests.support.service import SERVER, TlsService, fingerprint, free_port
from tests.support.systemd import RecordingSystemctl

UNIT = "wwu-tls.service"
NAME = "site.example.org"

needs_runuser = pytest.mark.skipif(
    not host.is_root() or shutil.which("runuser") is None or shutil.which("setsid") is None,
    reason="needs root, runuser and setsid (a real service user)")


def run_systemctl(systemctl, *args):
    """The stand-in as the package runs it: 'systemctl' found on PATH."""
    env = dict(os.environ)
    env.update(systemctl.env())
    return subprocess.run(["systemctl"] + list(args), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, public_key, signing_key, ca):
    now = datetime.datetime.utcnow()
    return (x509.CertificateBuilder()
            .subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signing_key, hashes.SHA256()))


class Lineage(object):
    """A certbot-like lineage: archive/<name>/*N.pem and live/<name>/*.pem symlinks."""

    def __init__(self, base, user):
        self.archive = os.path.join(base, "archive", NAME)
        self.live = os.path.join(base, "live", NAME)
        for d in (base, os.path.dirname(self.archive), self.archive,
                  os.path.dirname(self.live), self.live):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        self.gid = pwd.getpwnam(user).pw_gid
        self.version = 0
        self.fullchain = os.path.join(self.live, "fullchain.pem")
        self.privkey = os.path.join(self.live, "privkey.pem")

    def new_version(self, key_readable=True):
        """Issue and link version N+1; return the leaf's SHA-256 fingerprint."""
        self.version += 1
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("wwu test CA {}".format(self.version), "wwu test CA {}".format(self.version),
                   ca_key.public_key(), ca_key, True)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _cert(NAME, "wwu test CA {}".format(self.version), key.public_key(), ca_key, False)
        pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
        files = {
            "cert": pem(leaf), "chain": pem(ca), "fullchain": pem(leaf) + pem(ca),
            "privkey": key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()),
        }
        for kind, data in files.items():
            path = os.path.join(self.archive, "{}{}.pem".format(kind, self.version))
            with open(path, "wb") as f:
                f.write(data)
            if kind == "privkey":
                os.chown(path, 0, self.gid if key_readable else 0)
                os.chmod(path, 0o640 if key_readable else 0o600)
            else:
                os.chmod(path, 0o644)
            link = os.path.join(self.live, kind + ".pem")
            tmp = link + ".new"
            os.symlink(os.path.join("..", "..", "archive", NAME,
                                    "{}{}.pem".format(kind, self.version)), tmp)
            os.rename(tmp, link)
        return fingerprint(leaf.public_bytes(serialization.Encoding.DER))


@pytest.fixture
def lineage(scratch, accounts):
    return Lineage(os.path.join(scratch, "etc"), host.SERVICE_USER)


@pytest.fixture
def tls_service(systemctl, lineage):
    svc = TlsService(systemctl, UNIT, host.SERVICE_USER, lineage.fullchain, lineage.privkey,
                     free_port())
    svc.install()
    yield svc
    svc.stop()


def uids(pid):
    with open("/proc/{}/status".format(pid)) as f:
        for line in f:
            if line.startswith("Uid:"):
                return set(int(u) for u in line.split()[1:])
    raise AssertionError("no Uid line")


@needs_runuser
def test_real_service_restart_reload_and_failure(systemctl, lineage, tls_service):
    svc_uid = pwd.getpwnam(host.SERVICE_USER).pw_uid
    first = lineage.new_version()
    tls_service.start()
    assert tls_service.served_fingerprint(NAME) == first
    pid1 = tls_service.pid()
    assert pid1 is not None and uids(pid1) == {svc_uid}
    assert run_systemctl(systemctl, "is-active", UNIT).stdout == "active\n"

    # restart: a new process reads the new files
    second = lineage.new_version()
    assert tls_service.served_fingerprint(NAME) == first  # nothing reloaded yet
    proc = run_systemctl(systemctl, "restart", UNIT)
    assert proc.returncode == 0, proc.stderr
    assert tls_service.served_fingerprint(NAME) == second
    pid2 = tls_service.pid()
    assert pid2 not in (None, pid1) and uids(pid2) == {svc_uid}
    assert systemctl.actions() == ["restart " + UNIT]

    # reload: SIGHUP, same process, new certificate
    third = lineage.new_version()
    proc = run_systemctl(systemctl, "reload", UNIT)
    assert proc.returncode == 0, proc.stderr
    assert tls_service.pid() == pid2
    assert tls_service.served_fingerprint(NAME) == third

    # a key the user cannot read: reload fails and the old certificate stays
    lineage.new_version(key_readable=False)
    assert not host.read_as(host.SERVICE_USER, lineage.privkey)
    proc = run_systemctl(systemctl, "reload", UNIT)
    assert proc.returncode != 0
    assert "reload failed" in proc.stderr and "Permission denied" in proc.stderr
    assert tls_service.pid() == pid2
    assert tls_service.served_fingerprint(NAME) == third
    assert run_systemctl(systemctl, "is-active", UNIT).stdout == "active\n"

    # ... and restart fails: the new process cannot start, the unit is failed
    proc = run_systemctl(systemctl, "restart", UNIT)
    assert proc.returncode != 0
    assert "Job for {} failed".format(UNIT) in proc.stderr
    assert "Permission denied" in proc.stderr
    assert tls_service.pid() is None
    state = run_systemctl(systemctl, "is-active", UNIT)
    assert (state.stdout, state.returncode) == ("failed\n", 3)

    # readable again: try-restart brings it back
    fifth = lineage.new_version()
    proc = run_systemctl(systemctl, "try-restart", UNIT)
    assert proc.returncode == 0, proc.stderr
    assert tls_service.served_fingerprint(NAME) == fifth
    assert uids(tls_service.pid()) == {svc_uid}

    tls_service.stop()
    tls_service.stop()  # idempotent
    assert tls_service.pid() is None
    assert run_systemctl(systemctl, "is-active", UNIT).stdout == "inactive\n"


@needs_runuser
def test_markers_take_precedence_over_the_control_script(systemctl, lineage, tls_service):
    first = lineage.new_version()
    tls_service.start()
    pid = tls_service.pid()
    lineage.new_version()
    systemctl.fail(UNIT)
    proc = run_systemctl(systemctl, "restart", UNIT)
    assert proc.returncode == 1 and "Job for {} failed".format(UNIT) in proc.stderr
    assert run_systemctl(systemctl, "is-active", UNIT).stdout == "failed\n"
    systemctl.heal(UNIT)
    systemctl.fail(UNIT, "dead")
    assert run_systemctl(systemctl, "reload", UNIT).returncode == 0
    assert run_systemctl(systemctl, "is-active", UNIT).stdout == "failed\n"
    # the process was left alone throughout
    assert tls_service.pid() == pid
    assert tls_service.served_fingerprint(NAME) == first
    systemctl.heal(UNIT)
    assert run_systemctl(systemctl, "is-active", UNIT).stdout == "active\n"


def test_server_fails_fast_on_unreadable_files(tmp_path):
    proc = subprocess.run([sys.executable, SERVER, "--cert", str(tmp_path / "nope.pem"),
                           "--key", str(tmp_path / "nope.key"), "--port", str(free_port()),
                           "--pidfile", str(tmp_path / "pid")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=30)
    assert proc.returncode == 1
    assert "cannot load certificate" in proc.stderr
    assert not (tmp_path / "pid").exists()


def test_show_can_reload(tmp_path):
    systemctl = RecordingSystemctl(str(tmp_path / "systemctl"))
    proc = run_systemctl(systemctl, "show", "-p", "CanReload", "--value", UNIT)
    assert (proc.stdout, proc.returncode) == ("no\n", 0)
    systemctl.can_reload(UNIT)
    proc = run_systemctl(systemctl, "show", "-p", "CanReload", "--value", UNIT)
    assert (proc.stdout, proc.returncode) == ("yes\n", 0)
    assert run_systemctl(systemctl, "show", "--property=CanReload", UNIT).stdout == \
        "CanReload=yes\n"
    assert run_systemctl(systemctl, "show", "-p", "MainPID", UNIT).returncode == 2
    systemctl.can_reload(UNIT, False)
    assert run_systemctl(systemctl, "show", "-p", "CanReload", "--value", UNIT).stdout == "no\n"
    assert systemctl.calls()[0] == "show -p CanReload --value " + UNIT
    assert systemctl.actions() == []


def test_without_a_control_script_nothing_changes(tmp_path):
    systemctl = RecordingSystemctl(str(tmp_path / "systemctl"))
    assert run_systemctl(systemctl, "restart", UNIT).returncode == 0
    assert run_systemctl(systemctl, "is-active", UNIT).stdout == "active\n"
    # a control script that is not executable is ignored too
    with open(systemctl.unit_script(UNIT), "w") as f:
        f.write("#!/bin/sh\nexit 1\n")
    assert run_systemctl(systemctl, "reload", UNIT).returncode == 0
    assert systemctl.actions() == ["restart " + UNIT, "reload " + UNIT]
