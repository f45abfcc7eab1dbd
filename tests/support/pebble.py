"""Run a throwaway Pebble ACME test server that requires External Account Binding.

Self-contained, standard library only, Python 3.6 compatible.  Needs the
``pebble`` binary (Debian package ``pebble``; override the path with the
``PEBBLE_BIN`` environment variable) and the ``openssl`` command.

Typical use::

    with Pebble(str(tmp_path), eab_keys=3) as pebble:
        env = dict(os.environ, **pebble.env())
        kid, hmac_key = pebble.new_eab()
        subprocess.check_call(["certbot", "register", "--server", pebble.url,
                               "--eab-kid", kid, "--eab-hmac-key", hmac_key, ...],
                              env=env)

Notes:

* Pebble keeps all state in memory: every ``start()`` begins with no accounts,
  no certificates and a brand-new issuing root/intermediate.
* Certificates issued by Pebble 2.4.0 are valid for 5 years by default
  (config key ``certificateValidityPeriod``, in seconds, not set here), so
  ``certbot renew`` does not consider them due unless ``--force-renewal``.
* ``PEBBLE_VA_ALWAYS_VALID=1`` is set, so challenges always succeed; nothing
  has to answer on :attr:`Pebble.http_port`.
"""

import atexit
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from typing import Dict, List, Optional, Tuple

__all__ = ["Pebble", "free_port"]

# Environment for the pebble process.  All four are honoured by Pebble 2.4.0
# (see /usr/share/doc/pebble/README.md.gz).
PEBBLE_PROCESS_ENV = {
    "PEBBLE_VA_ALWAYS_VALID": "1",  # every challenge validation succeeds
    "PEBBLE_VA_NOSLEEP": "1",  # no random 0-15 s sleep before validating
    "PEBBLE_WFE_NONCEREJECT": "0",  # never reject a valid nonce (default 5%)
    "PEBBLE_AUTHZREUSE": "100",  # always reuse valid authorizations
}

_LIVE = weakref.WeakSet()  # type: weakref.WeakSet


def _stop_all_at_exit():
    # type: () -> None
    for pebble in list(_LIVE):
        try:
            pebble.stop()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass


atexit.register(_stop_all_at_exit)


def _mac_key() -> str:
    """A 64-character base64url MAC key that cannot be taken for an option."""
    key = secrets.token_urlsafe(48)
    return key if key[0] not in "-_" else "A" + key[1:]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is currently free.

    The port is only free at the time of the call; someone else may grab it
    before it is used.
    """
    return _free_ports(1)[0]


def _free_ports(count: int) -> List[int]:
    """Return ``count`` distinct free ports (sockets held open until all are picked)."""
    socks = []  # type: List[socket.socket]
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _run(argv: List[str], cwd: str) -> None:
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
    )
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(
            "command failed (exit {}): {}\n{}".format(proc.returncode, " ".join(argv), out)
        )


def _tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, "r", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError as exc:
        return "<cannot read {}: {}>".format(path, exc)


class Pebble:
    """A running Pebble ACME server with External Account Binding required."""

    url = ""  # type: str
    ca_bundle = ""  # type: str
    http_port = 0  # type: int

    def __init__(self, workdir: str, eab_keys: int = 1) -> None:
        if eab_keys < 1:
            raise ValueError("eab_keys must be >= 1")
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.binary = os.environ.get("PEBBLE_BIN") or shutil.which("pebble") or "/usr/bin/pebble"

        listen_port, mgmt_port, http_port, tls_port = _free_ports(4)
        self.listen_port = listen_port
        self.management_port = mgmt_port
        self.http_port = http_port
        self.tls_port = tls_port
        self.url = "https://127.0.0.1:{}/dir".format(listen_port)
        self.management_url = "https://127.0.0.1:{}".format(mgmt_port)

        self.ca_bundle = os.path.join(self.workdir, "pebble-tls-ca.pem")
        self.ca_key = os.path.join(self.workdir, "pebble-tls-ca.key")
        self.server_cert = os.path.join(self.workdir, "pebble-tls-server.pem")
        self.server_key = os.path.join(self.workdir, "pebble-tls-server.key")
        self.config_path = os.path.join(self.workdir, "pebble-config.json")
        self.log_path = os.path.join(self.workdir, "pebble.log")

        # Ordered list of (kid, base64url HMAC key); 48 random bytes -> 64 chars.
        self._eab = [
            ("kid-" + secrets.token_hex(8), _mac_key()) for _ in range(eab_keys)
        ]  # type: List[Tuple[str, str]]
        self._eab_used = set()  # type: set

        self._proc = None  # type: Optional[subprocess.Popen]
        self._log = None  # type: Optional[object]

        self._make_tls_certs()
        self._write_config()

    # -- EAB credentials -------------------------------------------------

    @property
    def eab_kid(self) -> str:
        """Key id of the first EAB key.

        Reading this (or :attr:`eab_hmac_key`) reserves the first key, so a
        later :meth:`new_eab` will not hand it out again.
        """
        self._eab_used.add(0)
        return self._eab[0][0]

    @property
    def eab_hmac_key(self) -> str:
        """base64url HMAC key belonging to :attr:`eab_kid` (reserves it too)."""
        self._eab_used.add(0)
        return self._eab[0][1]

    @property
    def eab_pairs(self) -> List[Tuple[str, str]]:
        """All configured (kid, hmac_key) pairs; does not reserve anything."""
        return list(self._eab)

    def new_eab(self) -> Tuple[str, str]:
        """Return a configured (kid, hmac_key) pair not handed out before.

        Raises RuntimeError when all ``eab_keys`` pairs are used up.
        """
        for index, pair in enumerate(self._eab):
            if index not in self._eab_used:
                self._eab_used.add(index)
                return pair
        raise RuntimeError(
            "all {} EAB keys of this Pebble are used; construct Pebble(..., eab_keys=N) "
            "with a larger N".format(len(self._eab))
        )

    # -- setup -------------------------------------------------------------

    def _make_tls_certs(self) -> None:
        """Throwaway CA plus a localhost/127.0.0.1 server cert for Pebble's HTTPS."""
        openssl = shutil.which("openssl") or "openssl"
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _run(
            [openssl, "req", "-x509"] + ec + [
                "-keyout", self.ca_key,
                "-out", self.ca_bundle,
                "-days", "30",
                "-subj", "/CN=certbot-wwu test Pebble TLS CA {}".format(secrets.token_hex(4)),
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ],
            self.workdir,
        )
        csr = os.path.join(self.workdir, "pebble-tls-server.csr")
        _run(
            [openssl, "req", "-new"] + ec + [
                "-keyout", self.server_key,
                "-out", csr,
                "-subj", "/CN=localhost",
            ],
            self.workdir,
        )
        extfile = os.path.join(self.workdir, "pebble-tls-server.ext")
        with open(extfile, "w") as fh:
            fh.write(
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
            )
        _run(
            [
                openssl, "x509", "-req",
                "-in", csr,
                "-CA", self.ca_bundle,
                "-CAkey", self.ca_key,
                "-set_serial", "0x" + secrets.token_hex(8),
                "-days", "30",
                "-sha256",
                "-extfile", extfile,
                "-out", self.server_cert,
            ],
            self.workdir,
        )

    def _write_config(self) -> None:
        config = {
            "pebble": {
                "listenAddress": "127.0.0.1:{}".format(self.listen_port),
                "managementListenAddress": "127.0.0.1:{}".format(self.management_port),
                "certificate": self.server_cert,
                "privateKey": self.server_key,
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": True,
                "externalAccountMACKeys": dict(self._eab),
            }
        }
        with open(self.config_path, "w") as fh:
            json.dump(config, fh, indent=2)
            fh.write("\n")

    # -- process control ------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_bundle)

    def _get(self, url: str, timeout: float = 5.0) -> bytes:
        """GET a Pebble URL, verifying TLS against ca_bundle and ignoring proxies."""
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=self._ssl_context()),
        )
        with opener.open(url, timeout=timeout) as resp:
            return resp.read()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> "Pebble":
        """Start pebble and wait until the directory URL answers."""
        if self.running:
            raise RuntimeError("Pebble is already running")
        env = dict(os.environ)
        env.update(PEBBLE_PROCESS_ENV)
        self._log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                [self.binary, "-config", self.config_path],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
        except Exception:
            self._log.close()
            self._log = None
            raise
        _LIVE.add(self)

        deadline = time.monotonic() + timeout
        last_error = None  # type: Optional[BaseException]
        while True:
            code = self._proc.poll()
            if code is not None:
                self.stop()
                raise RuntimeError(
                    "pebble exited with code {} during startup; tail of {}:\n{}".format(
                        code, self.log_path, _tail(self.log_path)
                    )
                )
            try:
                body = self._get(self.url, timeout=2.0)
                json.loads(body.decode("utf-8"))
                return self
            except (OSError, ValueError, ssl.SSLError, urllib.error.URLError) as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(
                    "pebble did not answer {} within {:.1f}s (last error: {!r}); "
                    "tail of {}:\n{}".format(
                        self.url, timeout, last_error, self.log_path, _tail(self.log_path)
                    )
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Terminate pebble and wait for it; safe to call repeatedly."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)

    def env(self) -> Dict[str, str]:
        """Environment additions for running certbot (or requests) against Pebble."""
        no_proxy = [
            p for p in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "").split(",")
            if p.strip()
        ]
        for host in ("127.0.0.1", "localhost"):
            if host not in no_proxy:
                no_proxy.append(host)
        joined = ",".join(no_proxy)
        return {
            "REQUESTS_CA_BUNDLE": self.ca_bundle,
            "NO_PROXY": joined,
            "no_proxy": joined,
        }

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of pebble.log, for assertion messages."""
        return _tail(self.log_path, lines)

    def __enter__(self) -> "Pebble":
        if not self.running:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    def __del__(self):
        try:
            self.stop()
        except Exception:
            pass

    def __repr__(self) -> str:
        return "<Pebble {} {}>".format(self.url, "running" if self.running else "stopped")
