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


# --- STARTTLS and SNI (issue 12) -------------------------------------------------
# The real servers (tests/services) prove each dialogue against Debian's
# daemons; these scripted peers prove the sentences for refusals.

def _scripted(replies):
    """A server that sends replies[0], then one reply per line it receives;
    returns (port, thread whose join() closes it, what it received)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = []

    def serve():  # every connection gets the same dialogue (checks retry)
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed by the test
            with conn:
                conn.sendall(replies[0])
                for reply in replies[1:]:
                    received.append(conn.recv(4096))
                    conn.sendall(reply)
                conn.recv(4096)
    thread = threading.Thread(target=serve, daemon=True)
    thread.join = lambda timeout=None: listener.close()
    thread.start()
    return listener.getsockname()[1], thread, received


@pytest.mark.parametrize("protocol,replies,words", [
    ("smtp", [b"220 mx ESMTP\r\n", b"250-mx\r\n250 SIZE 100\r\n"],
     "does not offer STARTTLS (its EHLO reply is '250-mx 250 SIZE 100')"),
    ("smtp", [b"220 mx\r\n", b"250-mx\r\n250 STARTTLS\r\n", b"454 TLS not available\r\n"],
     "refused STARTTLS: '454 TLS not available'"),
    ("imap", [b"* OK ready\r\n", b"wwu1 BAD unknown command\r\n"],
     "refused STARTTLS: 'wwu1 BAD unknown command'"),
    ("pop3", [b"+OK ready\r\n", b"-ERR no TLS\r\n"], "refused STLS: '-ERR no TLS'"),
    ("postgres", [b"", b"N"], "answered N to the SSLRequest"),
    ("xmpp", [b"", b"<?xml version='1.0'?><stream:stream><stream:features>"
                   b"<mechanisms/></stream:features>"], "does not offer STARTTLS for"),
    ("ldap", [b"", bytes.fromhex("300c02010178070a010204000400")],
     "refused StartTLS with result code 2"),
])
def test_starttls_refusals_quote_the_server(protocol, replies, words):
    port, thread, _ = _scripted(replies)
    with pytest.raises(tlscheck.StartTlsError) as failure:
        tlscheck.served_certificate("127.0.0.1", port, "mx.example.org", 5, protocol)
    thread.join(5)
    assert words in str(failure.value), str(failure.value)
    assert str(failure.value).endswith(".") and "\n" not in str(failure.value)


def test_confirm_served_speaks_the_protocol_and_says_what_failed():
    port, thread, received = _scripted([b"* OK ready\r\n", b"wwu1 NO [ALERT] off\r\n"])
    with pytest.raises(ServiceError) as failure:
        tlscheck.confirm_served("127.0.0.1", port, "mx.example.org", "0" * 64, 1,
                                "imap")
    thread.join(5)
    assert received[0] == b"wwu1 STARTTLS\r\n"
    assert "does not start TLS (The IMAP server refused STARTTLS: 'wwu1 NO [ALERT] " \
           "off')" in str(failure.value)


def test_a_plain_check_on_a_starttls_port_names_the_option():
    port, thread, _ = _scripted([b"220 mx ESMTP ready\r\n"])
    with pytest.raises(ServiceError) as failure:
        tlscheck.confirm_served("127.0.0.1", port, "mx.example.org", "0" * 64, 1)
    thread.join(5)
    assert "--wwu-acl-check-protocol" in str(failure.value), str(failure.value)


@pytest.mark.parametrize("host,names,expected", [
    ("127.0.0.1", ["a.example.org", "b.example.org"], "a.example.org"),
    ("b.example.org", ["a.example.org", "b.example.org"], "b.example.org"),
    ("mail.example.org.", ["*.example.org"], "mail.example.org"),
    ("localhost", ["*.example.org", "example.org"], "example.org"),
    ("::1", ["*.example.org"], "wwu-check.example.org"),
    ("127.0.0.1", [], None),
])
def test_server_name_is_what_a_client_would_send(host, names, expected):
    assert tlscheck.server_name_for(host, names) == expected
