"""Unit files for tests under a real systemd, and running the product inside.

``tlsserver_unit`` is a real service: tests/support/tlsserver.py as an
unprivileged user (User=), reading the live certificate and key with that
user's rights, reloading them on SIGHUP (ExecReload). ``product`` runs
certbot_wwu code of this checkout inside the instance, as root.
"""
import json
import os
import shutil
import socket
import ssl
import sys
import time
from typing import Dict, List, Optional

import certbot_wwu
from tests.support.realsystemd import Instance

SUPPORT = os.path.dirname(os.path.abspath(__file__))
#: where the checkout's certbot_wwu lives (the code under test)
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(certbot_wwu.__file__)))
TLSSERVER = "/usr/local/lib/wwu-test/tlsserver.py"  # inside (the /usr overlay)

#: a main process that logs SIGHUP: restart changes MainPID, reload does not
LOOP = ("/bin/sh -c 'trap \"echo reloaded\" HUP; echo started; "
        "while :; do sleep 1 & wait $!; done'")


def unit(description: str, service: str, extra_unit: str = "") -> str:
    """Without a start rate limit: tests restart units more often than
    systemd's default of 5 starts in 10 s allows."""
    return "[Unit]\nDescription={}\nStartLimitIntervalSec=0\n{}\n[Service]\n{}\n".format(
        description, extra_unit, service)


def loop_unit(reload: bool = True, extra: str = "") -> str:
    """Type=simple; with ExecReload (CanReload=yes) or without."""
    service = "Type=simple\nExecStart={}\n".format(LOOP)
    if reload:
        service += "ExecReload=/bin/kill -HUP $MAINPID\n"
    return unit("wwu test loop", service + extra)


def dies_unit(after: float = 0.5) -> str:
    """Type=simple, active at once, exits with an error ``after`` seconds."""
    return unit("wwu test: dies after starting", (
        "Type=simple\nExecStart=/bin/sh -c 'sleep {}; echo \"cannot load the "
        "new key, exiting\" >&2; exit 1'\n").format(after))


def failing_pre_unit() -> str:
    return unit("wwu test: ExecStartPre fails", (
        "Type=simple\nExecStartPre=/bin/sh -c 'echo \"key check failed\" >&2; exit 1'\n"
        "ExecStart={}\n").format(LOOP))


def install_tlsserver(instance: Instance) -> None:
    with open(os.path.join(SUPPORT, "tlsserver.py")) as f:
        instance.write(TLSSERVER, f.read(), 0o755)


def tlsserver_unit(user: str, cert: str, key: str, port: int,
                   python: str = "/usr/bin/python3") -> str:
    """The TLS server as ``user``, reading ``cert``/``key`` itself."""
    return unit("wwu test TLS server", (
        "Type=simple\nUser={user}\nRuntimeDirectory=%N\n"
        "ExecStart={python} {server} --cert {cert} --key {key} --port {port} "
        "--pidfile /run/%N/pid\nExecReload=/bin/kill -HUP $MAINPID\n").format(
            user=user, python=python, server=TLSSERVER, cert=cert, key=key, port=port))


def served_fingerprint(port: int, timeout: float = 10.0) -> str:
    """SHA-256 of the certificate 127.0.0.1:port serves now."""
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                with context.wrap_socket(sock) as tls:
                    der = tls.getpeercert(binary_form=True)
            import hashlib
            return hashlib.sha256(der).hexdigest()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def pem_fingerprint(pem: str) -> str:
    import hashlib
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


ACT = r"""
import json, sys
from certbot_wwu import service
from certbot_wwu.errors import WwuError
unit, action, settle = sys.argv[1], sys.argv[2], float(sys.argv[3])
try:
    # a checkout from before the settle window had no such parameter
    import inspect
    kwargs = ({"settle_window": settle} if "settle_window" in
              inspect.signature(service.reload_unit).parameters else {})
    ran = service.reload_unit(unit, action, 30, **kwargs)
    print(json.dumps({"ok": True, "ran": ran}))
except WwuError as err:
    print(json.dumps({"ok": False, "error": str(err)}))
"""


def product_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The code under test first on sys.path; no recording systemctl on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.rstrip("/").endswith(os.path.join("support", "bin")))
    env["PYTHONPATH"] = CODE_ROOT
    env.pop("WWU_SYSTEMCTL_DIR", None)
    env.update(extra or {})
    return env


def act(instance: Instance, unit_name: str, action: str, settle: float = 2.0) -> dict:
    """certbot_wwu.service.reload_unit inside the instance: {"ok", "ran"|"error"}."""
    result = instance.run([sys.executable, "-c", ACT, unit_name, action, str(settle)],
                          env=product_env(), check=False)
    try:
        return json.loads(result.out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(repr(result))
