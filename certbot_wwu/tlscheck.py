"""Confirm that a service serves the certificate we just deployed."""
import hashlib
import ipaddress
import re
import socket
import ssl
import struct
import time
from typing import Callable, Dict, List, Optional, Sequence

from certbot_wwu.errors import ServiceError

RETRY_INTERVAL = 0.5


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


# --- STARTTLS -----------------------------------------------------------------
# Each function takes a connected socket to the point where the server
# expects a TLS ClientHello, or raises StartTlsError quoting what the server
# said. Replies are read up to MAX_REPLY bytes; the socket's timeout (set
# from the caller's deadline) bounds every read.

MAX_REPLY = 65536
#: what an XMPP client announces before STARTTLS
_XMPP_TLS_NS = b"urn:ietf:params:xml:ns:xmpp-tls"
#: LDAP's StartTLS extended operation (RFC 4511 4.14)
_LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
#: PostgreSQL's SSLRequest code (protocol 3, "SSL negotiation")
_PG_SSL_REQUEST = 80877103


class StartTlsError(ServiceError):
    """The server did not agree to start TLS; the message quotes it."""


def _said(data: bytes) -> str:
    """A server's reply for a sentence: one line, printable, bounded."""
    text = " ".join(data.decode("ascii", "replace").split())
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return repr(text if len(text) <= 160 else text[:157] + "...")


class _Reader(object):
    """Bounded reads of a plain-text dialogue before the handshake."""

    def __init__(self, sock: socket.socket, what: str) -> None:
        self.sock = sock
        self.what = what
        self.buffer = b""

    def _more(self) -> None:
        if len(self.buffer) > MAX_REPLY:
            raise StartTlsError("The {} server sent more than {} bytes without the "
                                "reply expected: {}.".format(self.what, MAX_REPLY,
                                                             _said(self.buffer[:200])))
        data = self.sock.recv(4096)
        if not data:
            raise StartTlsError("The {} server closed the connection{}.".format(
                self.what, ", after saying " + _said(self.buffer)
                if self.buffer.strip() else " without a word"))
        self.buffer += data

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            self._more()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def until(self, pattern: "re.Pattern") -> bytes:
        """Everything up to the end of the first match of ``pattern``."""
        while True:
            found = pattern.search(self.buffer)
            if found:
                data, self.buffer = (self.buffer[:found.end()],
                                     self.buffer[found.end():])
                return data
            self._more()

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._more()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def done(self) -> None:
        """Nothing may follow the go-ahead: a server that keeps talking
        would be read as the start of its TLS handshake."""
        if self.buffer:
            raise StartTlsError("The {} server sent {} after agreeing to start TLS."
                                .format(self.what, _said(self.buffer)))


def _smtp_reply(reader: _Reader) -> List[bytes]:
    """The lines of one SMTP reply ("250-..." up to "250 ...")."""
    lines = []
    while True:
        line = reader.line()
        lines.append(line)
        if not re.match(br"^\d{3}-", line):
            return lines


def _smtp(sock: socket.socket, server_name: Optional[str], deadline: float) -> None:
    reader = _Reader(sock, "SMTP")
    greeting = _smtp_reply(reader)
    if not greeting[-1].startswith(b"220"):
        raise StartTlsError("The SMTP server greeted with {} instead of 220.".format(
            _said(b" ".join(greeting))))
    local = sock.getsockname()[0]
    ehlo = "[IPv6:{}]".format(local) if ":" in local else "[{}]".format(local)
    sock.sendall("EHLO {}\r\n".format(ehlo).encode("ascii"))
    reply = _smtp_reply(reader)
    if not reply[0].startswith(b"250"):
        raise StartTlsError("The SMTP server answered EHLO with {}.".format(
            _said(b" ".join(reply))))
    if not any(line[4:].strip().upper() == b"STARTTLS" for line in reply[1:]):
        raise StartTlsError("The SMTP server does not offer STARTTLS (its EHLO reply "
                            "is {}); configure its TLS certificate and key.".format(
                                _said(b" ".join(reply))))
    sock.sendall(b"STARTTLS\r\n")
    reply = _smtp_reply(reader)
    if not reply[-1].startswith(b"220"):
        raise StartTlsError("The SMTP server refused STARTTLS: {}.".format(
            _said(b" ".join(reply))))
    reader.done()


def _imap(sock: socket.socket, server_name: Optional[str], deadline: float) -> None:
    reader = _Reader(sock, "IMAP")
    greeting = reader.line()
    if not greeting.upper().startswith(b"* OK"):
        raise StartTlsError("The IMAP server greeted with {} instead of * OK.".format(
            _said(greeting)))
    sock.sendall(b"wwu1 STARTTLS\r\n")
    while True:
        line = reader.line()
        if line.startswith(b"wwu1 "):
            break
    if not line[5:].upper().startswith(b"OK"):
        raise StartTlsError("The IMAP server refused STARTTLS: {}.".format(_said(line)))
    reader.done()


def _pop3(sock: socket.socket, server_name: Optional[str], deadline: float) -> None:
    reader = _Reader(sock, "POP3")
    greeting = reader.line()
    if not greeting.startswith(b"+OK"):
        raise StartTlsError("The POP3 server greeted with {} instead of +OK.".format(
            _said(greeting)))
    sock.sendall(b"STLS\r\n")
    line = reader.line()
    if not line.startswith(b"+OK"):
        raise StartTlsError("The POP3 server refused STLS: {}.".format(_said(line)))
    reader.done()


def _ber_length(reader: _Reader) -> int:
    first = reader.exactly(1)[0]
    if first < 0x80:
        return first
    count = first & 0x7f
    if not 0 < count <= 3:
        raise StartTlsError("The LDAP server's reply is not an LDAP message.")
    return int.from_bytes(reader.exactly(count), "big")


def _ber_elements(data: bytes) -> List[tuple]:
    """(tag, value) of the BER elements in ``data`` (definite lengths)."""
    elements = []
    while data:
        if len(data) < 2:
            raise ValueError("truncated")
        tag, length, rest = data[0], data[1], data[2:]
        if length & 0x80:
            count = length & 0x7f
            length, rest = int.from_bytes(rest[:count], "big"), rest[count:]
        if len(rest) < length:
            raise ValueError("truncated")
        elements.append((tag, rest[:length]))
        data = rest[length:]
    return elements


def _ldap(sock: socket.socket, server_name: Optional[str], deadline: float) -> None:
    oid = b"\x80" + bytes([len(_LDAP_STARTTLS_OID)]) + _LDAP_STARTTLS_OID
    operation = b"\x77" + bytes([len(oid)]) + oid
    message = b"\x02\x01\x01" + operation
    sock.sendall(b"\x30" + bytes([len(message)]) + message)
    reader = _Reader(sock, "LDAP")
    if reader.exactly(1) != b"\x30":
        raise StartTlsError("The LDAP server's reply is not an LDAP message: {}."
                            .format(_said(reader.buffer)))
    body = reader.exactly(_ber_length(reader))
    try:
        (_, msgid), (tag, response) = _ber_elements(body)[:2]
        fields = _ber_elements(response)
        code = int.from_bytes(fields[0][1], "big")
        diagnostic = fields[2][1] if len(fields) > 2 else b""
    except (ValueError, IndexError):
        raise StartTlsError("The LDAP server's reply to StartTLS cannot be read.")
    if tag != 0x78:
        raise StartTlsError("The LDAP server did not answer the StartTLS request "
                            "(reply type {:#x}).".format(tag))
    if code != 0:
        raise StartTlsError("The LDAP server refused StartTLS with result code "
                            "{}{}.".format(code, ": " + _said(diagnostic)
                                           if diagnostic else ""))
    reader.done()


def _postgres(sock: socket.socket, server_name: Optional[str], deadline: float
              ) -> None:
    sock.sendall(struct.pack("!II", 8, _PG_SSL_REQUEST))
    reader = _Reader(sock, "PostgreSQL")
    answer = reader.exactly(1)
    if answer == b"N":
        raise StartTlsError("The PostgreSQL server does not offer TLS (it answered "
                            "N to the SSLRequest); set ssl = on, ssl_cert_file and "
                            "ssl_key_file in postgresql.conf.")
    if answer != b"S":
        raise StartTlsError("The PostgreSQL server answered the SSLRequest with "
                            "{}.".format(_said(answer + reader.buffer)))
    reader.done()


_XMPP_FEATURES = re.compile(br"</(stream:)?features>|<(stream:)?error", re.I)
_XMPP_ANSWER = re.compile(br"<(proceed|failure)\b[^>]*>|<(stream:)?error", re.I)


def _xmpp(sock: socket.socket, server_name: Optional[str], deadline: float) -> None:
    if not server_name:
        raise StartTlsError("An XMPP check needs the server's domain, but the "
                            "certificate's first name is an address.")
    sock.sendall("<?xml version='1.0'?><stream:stream to='{}' version='1.0' "
                 "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
                 "streams'>".format(server_name).encode("ascii"))
    reader = _Reader(sock, "XMPP")
    features = reader.until(_XMPP_FEATURES)
    if re.search(br"<(stream:)?error", features, re.I):
        raise StartTlsError("The XMPP server ended the stream for {}: {}.".format(
            server_name, _said(features[features.lower().find(b"error"):]
                               + reader.buffer)))
    if _XMPP_TLS_NS not in features:
        raise StartTlsError("The XMPP server does not offer STARTTLS for {} (its "
                            "features are {}).".format(server_name, _said(features)))
    sock.sendall(b"<starttls xmlns='" + _XMPP_TLS_NS + b"'/>")
    answer = reader.until(_XMPP_ANSWER)
    if not re.search(br"<proceed\b", answer):
        raise StartTlsError("The XMPP server refused STARTTLS: {}.".format(
            _said(answer)))
    reader.done()


#: how each protocol gets from a connected socket to the TLS handshake (by
#: the deadline, a time.monotonic() value); "tls" speaks TLS from the
#: first byte, the others STARTTLS as ``openssl s_client -starttls`` does
_PROTOCOLS = {
    "tls": lambda sock, server_name, deadline: None,
    "smtp": _smtp, "imap": _imap, "pop3": _pop3, "ldap": _ldap,
    "postgres": _postgres, "xmpp": _xmpp,
}  # type: Dict[str, Callable[[socket.socket, Optional[str], float], None]]
DEFAULT_PROTOCOL = "tls"
PROTOCOLS = tuple(sorted(_PROTOCOLS))


def served_certificate(host: str, port: int, server_name: Optional[str],
                       timeout: float, protocol: str = DEFAULT_PROTOCOL) -> bytes:
    """DER of the leaf certificate the server presents (no verification: we
    compare it with a certificate we know). ``timeout`` bounds the whole
    exchange, connect and handshake together."""
    try:
        prepare = _PROTOCOLS[protocol]
    except KeyError:
        raise ServiceError("Unknown check protocol {!r}; choose one of {}.".format(
            protocol, ", ".join(PROTOCOLS)))
    deadline = time.monotonic() + timeout
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        ipaddress.ip_address(server_name or "")
        server_name = None
    except ValueError:
        pass
    with socket.create_connection((host, port), timeout=timeout) as raw:
        raw.settimeout(max(0.1, deadline - time.monotonic()))
        prepare(raw, server_name, deadline)
        raw.settimeout(max(0.1, deadline - time.monotonic()))
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return tls.getpeercert(binary_form=True)


def served_fingerprint(host: str, port: int, server_name: Optional[str],
                       timeout: float, protocol: str = DEFAULT_PROTOCOL) -> str:
    """SHA-256 of the leaf certificate the server presents."""
    return fingerprint(served_certificate(host, port, server_name, timeout, protocol))


def _wildcard_covers(pattern: str, name: str) -> bool:
    if not pattern.startswith("*."):
        return pattern == name
    label, _, rest = name.partition(".")
    return bool(label) and rest == pattern[2:]


def server_name_for(host: str, names: Sequence[str]) -> Optional[str]:
    """The SNI (and XMPP domain) a client of ``host`` sends for a
    certificate with ``names``: the host itself when the certificate covers
    it (as any client connecting by that name would), else the first name
    that is not a wildcard, else a name the first wildcard covers (a
    literal ``*`` is not a host name and selects no virtual host)."""
    wanted = host.lower().rstrip(".")
    names = [name.lower().rstrip(".") for name in names]
    try:
        ipaddress.ip_address(wanted.strip("[]"))
    except ValueError:
        if any(_wildcard_covers(name, wanted) for name in names):
            return wanted
    for name in names:
        if not name.startswith("*."):
            return name
    return "wwu-check" + names[0][1:] if names else None


def _hint(protocol: str, err: Exception) -> str:
    """What to do when a plain TLS check meets a server that speaks first."""
    text = str(err)
    if protocol == DEFAULT_PROTOCOL and any(
            sign in text.lower() for sign in ("wrong_version_number",
                                              "wrong version number",
                                              "unexpected_eof", "unexpected eof",
                                              "eof occurred")):
        return ("; the server does not speak TLS from the first byte: if it "
                "uses STARTTLS, set the check protocol (--wwu-acl-check-protocol "
                "smtp, imap, pop3, ldap, postgres or xmpp)")
    return ""


def confirm_served(host: str, port: int, server_name: Optional[str],
                   expected: str, timeout: float,
                   protocol: str = DEFAULT_PROTOCOL) -> None:
    """Retry until the server presents ``expected`` or ``timeout`` runs out;
    ``protocol`` is how to reach the handshake (PROTOCOLS)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            seen = served_fingerprint(host, port, server_name,
                                      max(1.0, deadline - time.monotonic()), protocol)
            if seen == expected:
                return
            problem = "still serves another certificate (SHA-256 {}…, expected {}…)".format(
                seen[:16], expected[:16])
        except StartTlsError as err:
            problem = "does not start TLS ({})".format(str(err).rstrip("."))
        except (OSError, ssl.SSLError) as err:
            problem = "does not complete a TLS handshake ({}{})".format(
                getattr(err, "strerror", None) or err, _hint(protocol, err))
        if time.monotonic() >= deadline:
            raise ServiceError("{}:{} {} after {} s; the service has not loaded "
                               "the new certificate.".format(host, port, problem, timeout))
        time.sleep(RETRY_INTERVAL)
