"""Real units for the end-to-end tests: the small API the tests used to get
from the recording stand-in (actions, fail, heal, can_reload, clear), backed
by real units in one booted systemd (tests/support/realsystemd.py).

Every test unit is a real service. Its ExecStartPre and ExecReload (both run
as root, '+') append what systemd really did to a ledger inside the instance,
/run/wwu-e2e/actions, one line per start ("restart web.service": the product
only restarts or reloads, so a start of a stopped unit is a restart) or
reload ("reload web.service"). actions() reads that ledger: status queries
leave no line, and neither does an action systemd refused to run.

Faults are drop-ins under /etc/systemd/system/<unit>.d/ (the instance's
overlay): ``fail(unit)`` adds an ExecStartPre that exits 1 (the start fails
after the ledger line), ``fail(unit, how="dead")`` replaces ExecStart with a
process that is active at once and exits 0.5 s later (the gap the settle
window closes), ``fail(unit, how="inactive")`` stops the unit. ``heal(unit)``
removes them. ``can_reload(unit, False)`` drops the ExecReload (CanReload=no).

certbot and certbot-wwu run inside the instance through ``inside(argv)``, so
the ``systemctl`` and ``journalctl`` they find are the real ones talking to
that systemd. ``env()`` puts tests/support/outside/ first on PATH for
processes a test starts on the host: a systemctl or journalctl called there
fails loudly instead of reaching the host's systemd.
"""
import hashlib
import os
import socket
import ssl
import time
from typing import Dict, Iterator, List, Optional

from tests.support import units
from tests.support.realsystemd import BootError, Instance, cannot_boot

SUPPORT = os.path.dirname(os.path.abspath(__file__))
OUTSIDE = os.path.join(SUPPORT, "outside")
LEDGER = "/run/wwu-e2e/actions"
UNIT_DIR = "/etc/systemd/system"
#: the plain units every e2e test finds active (CanReload=yes)
STANDARD_UNITS = ("web.service", "db.service")
#: the drop-in that carries a test's fault or reload setting
DROPIN = "wwu-e2e.conf"

RECORD = ("ExecStartPre=+/bin/sh -c 'echo \"restart %n\" >> {ledger}'\n").format(ledger=LEDGER)
RECORD_RELOAD = "ExecReload=+/bin/sh -c 'echo \"reload %n\" >> {ledger}'\n".format(
    ledger=LEDGER)

FAULTS = {
    "failed": "[Service]\nExecStartPre=/bin/sh -c 'echo \"wwu e2e: the start check "
              "fails\" >&2; exit 1'\n",
    "dead": "[Service]\nExecStart=\nExecStart=/bin/sh -c 'echo started; sleep 0.5; "
            "echo \"cannot load the new key, exiting\" >&2; exit 1'\n",
}
NO_RELOAD = "[Service]\nExecReload=\n"


def clean_path() -> str:
    """PATH without the stand-in's bin/ and the outside/ tripwire."""
    hidden = (os.path.join(SUPPORT, "bin"), OUTSIDE)
    return os.pathsep.join(
        p for p in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep)
        if p and os.path.abspath(p) not in hidden)


def standard_unit() -> str:
    """A Type=simple loop that records its starts and reloads."""
    return units.unit("wwu e2e test unit", (
        "Type=simple\n" + RECORD + "ExecStart={loop}\n" + RECORD_RELOAD +
        "ExecReload=/bin/kill -HUP $MAINPID\n").format(loop=units.LOOP))


class RealSystemctl(object):
    """The e2e tests' view of real units in one instance (see module doc)."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self._extra = []  # type: List[str]

    # -- running the product inside ------------------------------------------
    def env(self) -> Dict[str, str]:
        """For certbot's environment: the tripwire first on the host's PATH."""
        return {"PATH": OUTSIDE + os.pathsep + clean_path()}

    def inside(self, argv: List[str]) -> List[str]:
        """``argv`` run inside the instance, with the real systemctl on PATH."""
        return self.instance.enter_argv() + ["env", "PATH=" + clean_path()] + list(argv)

    # -- session and per-test state -----------------------------------------
    def install(self) -> None:
        """Once per session: the standard units and the TLS server's code."""
        for name in STANDARD_UNITS:
            self.instance.write(os.path.join(UNIT_DIR, name), standard_unit())
        units.install_tlsserver(self.instance)
        self.instance.daemon_reload()

    def reset(self) -> None:
        """Before each test: no drop-ins, no test's extra unit, the standard
        units active, the ledger empty."""
        names = list(STANDARD_UNITS) + self._extra
        if self._extra:
            self.instance.systemctl("stop", *self._extra, check=False)
        for name in names:
            self.instance.remove(os.path.join(UNIT_DIR, name + ".d"))
        for name in self._extra:
            self.instance.remove(os.path.join(UNIT_DIR, name))
        self._extra = []
        self.instance.daemon_reload()
        self.instance.systemctl("reset-failed", check=False)
        self.clear()  # also creates it: the units append to it
        self.instance.systemctl("start", *STANDARD_UNITS)
        self.clear()

    def add_unit(self, name: str, text: str) -> None:
        """A unit of this test only (removed by the next reset)."""
        self.instance.write(os.path.join(UNIT_DIR, name), text)
        if name not in self._extra:
            self._extra.append(name)
        self.instance.daemon_reload()

    # -- the stand-in's API, on real units -----------------------------------
    def actions(self) -> List[str]:
        """What systemd ran since clear(): "restart U" per start, "reload U"."""
        try:
            with open(self.instance.path(LEDGER)) as f:
                return [line.rstrip("\n") for line in f]
        except FileNotFoundError:
            return []

    def clear(self) -> None:
        self.instance.write(LEDGER, "")

    def _dropin(self, unit: str, text: Optional[str]) -> None:
        path = os.path.join(UNIT_DIR, unit + ".d", DROPIN)
        if text is None:
            self.instance.remove(path)
        else:
            self.instance.write(path, text)
        self.instance.daemon_reload()

    def fail(self, unit: str, how: str = "failed") -> None:
        """Make the unit's next start fail ("failed"), die 0.5 s after
        starting ("dead"), or stop it now ("inactive")."""
        if how == "inactive":
            self.instance.systemctl("stop", unit)
            return
        self._dropin(unit, FAULTS[how])

    def heal(self, unit: str) -> None:
        """Remove the fault; the unit stays as it is until someone acts."""
        self._dropin(unit, None)

    def can_reload(self, unit: str, value: bool = True) -> None:
        """Whether the unit keeps its ExecReload (CanReload=yes)."""
        self._dropin(unit, None if value else NO_RELOAD)

    def state(self, unit: str) -> str:
        return self.instance.state(unit)

    def main_pid(self, unit: str) -> int:
        return self.instance.main_pid(unit)


def tls_unit(user: str, cert: str, key: str, port: int) -> str:
    """tests/support/tlsserver.py as ``user`` (User=), recording like the
    standard units; ExecReload sends SIGHUP (CanReload=yes)."""
    return units.unit("wwu e2e TLS server", (
        "Type=simple\nUser={user}\nRuntimeDirectory=%N\n" + RECORD +
        "ExecStart=/usr/bin/python3 {server} --cert {cert} --key {key} --port {port} "
        "--pidfile /run/%N/pid\n" + RECORD_RELOAD +
        "ExecReload=/bin/kill -HUP $MAINPID\n").format(
            user=user, server=units.TLSSERVER, cert=cert, key=key, port=port))


class TlsUnit(object):
    """A real TLS service: unit ``unit`` runs the server as ``user``, reading
    the live files with that user's rights, as a real daemon would."""

    START_TIMEOUT = 10.0

    def __init__(self, systemctl: RealSystemctl, unit: str, user: str, cert: str,
                 key: str, port: int) -> None:
        self.systemctl = systemctl
        self.instance = systemctl.instance
        self.unit, self.user, self.cert, self.key, self.port = unit, user, cert, key, port

    def install(self) -> None:
        self.systemctl.add_unit(self.unit, tls_unit(self.user, self.cert, self.key,
                                                    self.port))

    def start(self) -> None:
        """Start the unit; return once the port speaks TLS (then clear the ledger)."""
        result = self.instance.systemctl("start", self.unit, check=False)
        if result.code != 0:
            raise AssertionError("{} did not start: {}\n{}".format(
                self.unit, result.err.strip(), self.log()))
        deadline = time.monotonic() + self.START_TIMEOUT
        while True:
            try:
                self.served_fingerprint("localhost")
                break
            except (OSError, ssl.SSLError) as err:
                if self.pid() is None or time.monotonic() > deadline:
                    raise AssertionError("{} does not speak TLS on port {} ({!r}): {}".format(
                        self.unit, self.port, err, self.log()))
            time.sleep(0.1)
        self.systemctl.clear()

    def stop(self) -> None:
        if self.instance.running:
            self.instance.systemctl("stop", self.unit, check=False)

    def pid(self) -> Optional[int]:
        """systemd's MainPID while the unit is active, else None."""
        if self.instance.state(self.unit) != "active":
            return None
        return self.instance.main_pid(self.unit) or None

    def log(self) -> str:
        return self.instance.journal(self.unit)

    def served_fingerprint(self, server_name: str) -> str:
        """SHA-256 (hex) of the leaf certificate served to ``server_name``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            with context.wrap_socket(sock, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
        if not der:
            raise ssl.SSLError("no peer certificate")
        return hashlib.sha256(der).hexdigest()

    def __enter__(self) -> "TlsUnit":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def booted_units(name: str, suite: str) -> Iterator[RealSystemctl]:
    """A session fixture's body: one booted systemd ``name`` with the test
    units installed, stopped afterwards. Where none can boot, ``suite``'s
    tests skip with the reason, except in CI, where the reason fails them:
    a suite never passes by not running."""
    import pytest
    reason = cannot_boot()
    if not reason:
        instance = Instance(name)
        try:
            instance.boot()
        except BootError as err:
            reason = str(err)
    if reason:
        if in_ci():
            pytest.fail("{} need a real systemd and cannot run in CI: {}".format(
                suite, reason), pytrace=False)
        pytest.skip(reason)
    try:
        units = RealSystemctl(instance)
        units.install()
        yield units
    finally:
        instance.stop()
