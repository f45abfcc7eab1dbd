"""Confirm that a service serves the certificate we just deployed."""
import hashlib
import ipaddress
import socket
import ssl
import time
from typing import Optional

from certbot_wwu.errors import ServiceError

RETRY_INTERVAL = 0.5


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def served_fingerprint(host: str, port: int, server_name: Optional[str],
                       timeout: float) -> str:
    """SHA-256 of the leaf certificate the server presents (no verification:
    we compare with the exact certificate we deployed)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        ipaddress.ip_address(server_name or "")
        server_name = None
    except ValueError:
        pass
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return fingerprint(tls.getpeercert(binary_form=True))


def confirm_served(host: str, port: int, server_name: Optional[str],
                   expected: str, timeout: float) -> None:
    """Retry until the server presents ``expected`` or ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            seen = served_fingerprint(host, port, server_name,
                                      max(1.0, deadline - time.monotonic()))
            if seen == expected:
                return
            problem = "still serves another certificate (SHA-256 {}…, expected {}…)".format(
                seen[:16], expected[:16])
        except (OSError, ssl.SSLError) as err:
            problem = "does not complete a TLS handshake ({})".format(
                getattr(err, "strerror", None) or err)
        if time.monotonic() >= deadline:
            raise ServiceError("{}:{} {} after {} s; the service has not loaded "
                               "the new certificate.".format(host, port, problem, timeout))
        time.sleep(RETRY_INTERVAL)
