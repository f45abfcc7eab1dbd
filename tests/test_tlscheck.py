"""certbot_wwu.tlscheck against a real TLS server on loopback."""
import datetime
import os
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certbot_wwu import tlscheck
from certbot_wwu.errors import ServiceError


def self_signed(directory, name):
    key = ec.generate_private_key(ec.SECP256R1(), default_backend())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
            .sign(key, hashes.SHA256(), default_backend()))
    cert_path = os.path.join(directory, name + ".crt")
    key_path = os.path.join(directory, name + ".key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path, tlscheck.fingerprint(
        cert.public_bytes(serialization.Encoding.DER))


@pytest.fixture
def server(tmp_path):
    """A TLS server thread presenting one certificate; records SNI names."""
    cert, key, fp = self_signed(str(tmp_path), "served.example.org")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen = []
    context.set_servername_callback(lambda sock, name, ctx: seen.append(name))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok\n")
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], fp, seen, str(tmp_path)
    stop.set()
    thread.join(2)
    listener.close()


def test_fingerprint_of_the_served_certificate_and_sni(server):
    port, fp, seen, _ = server
    assert tlscheck.served_fingerprint("127.0.0.1", port, "served.example.org", 5) == fp
    assert seen == ["served.example.org"]


def test_ip_names_are_not_sent_as_sni(server):
    port, fp, seen, _ = server
    assert tlscheck.served_fingerprint("127.0.0.1", port, "127.0.0.1", 5) == fp
    assert seen == [None]


def test_confirm_served_accepts_the_expected_certificate(server):
    port, fp, _, _ = server
    tlscheck.confirm_served("127.0.0.1", port, "served.example.org", fp, 5)


def test_confirm_served_fails_on_another_certificate(server):
    port, _, _, directory = server
    _, _, other = self_signed(directory, "new.example.org")
    with pytest.raises(ServiceError, match=r"127.0.0.1:{} still serves another "
                       r"certificate .* after 1 s".format(port)):
        tlscheck.confirm_served("127.0.0.1", port, "served.example.org", other, 1)


def test_confirm_served_fails_when_nothing_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServiceError, match="does not complete a TLS handshake"):
        tlscheck.confirm_served("127.0.0.1", port, None, "00", 1)
