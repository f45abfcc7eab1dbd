"""A certificate lineage as certbot keeps it on disk.

``live/NAME/*.pem`` are symlinks into ``archive/NAME/KINDn.pem``; the current
version is whatever the live links point at. Only the current files are looked
at, so the cost does not grow with the archive.
"""
import datetime
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from certbot_wwu.errors import LineageError

KINDS = ("cert", "chain", "fullchain", "privkey")
_VERSIONED = re.compile(r"^(cert|chain|fullchain|privkey)(\d+)\.pem$")
#: what starts a PEM certificate block
PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PEM_BLOCK = re.compile(PEM_CERTIFICATE + b".+?-----END CERTIFICATE-----", re.S)


def load_certificates(data: bytes) -> List[Any]:
    """Every certificate of a PEM file (cert, chain or fullchain), in order,
    as cryptography objects; ValueError when one is unreadable or none is
    there. The one certificate parser of the package."""
    from cryptography import x509
    load_all = getattr(x509, "load_pem_x509_certificates", None)
    if load_all is not None:
        return load_all(data)
    # cryptography < 39 (EPEL 8/9, Debian 11) has no load_pem_x509_certificates
    from cryptography.hazmat.backends import default_backend
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        raise ValueError("no PEM certificate")
    return [x509.load_pem_x509_certificate(block, default_backend())
            for block in blocks]


def read_certificate(path: str) -> Any:
    """The (first) certificate of the PEM file ``path`` (OSError, ValueError)."""
    with open(path, "rb") as f:
        return load_certificates(f.read())[0]


def subject_alt_names(cert: Any) -> Tuple[List[str], List[Any]]:
    """(DNS names, IP addresses as ipaddress objects) of a certificate."""
    from cryptography import x509
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [], []
    return (ext.value.get_values_for_type(x509.DNSName),
            ext.value.get_values_for_type(x509.IPAddress))


def certificate_validity(cert: Any) -> Tuple[datetime.datetime, datetime.datetime]:
    """notBefore and notAfter of a certificate, in UTC."""
    if hasattr(cert, "not_valid_after_utc"):  # cryptography >= 42
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    utc = datetime.timezone.utc
    return (cert.not_valid_before.replace(tzinfo=utc),
            cert.not_valid_after.replace(tzinfo=utc))


def no_such_certificate(config_dir: str, name: str) -> LineageError:
    """The one wording for a certificate that is not there."""
    return LineageError(
        "There is no certificate {} in {}; 'certbot certificates' lists the "
        "names (give --config-dir if certbot uses another directory).".format(
            name, os.path.abspath(config_dir)))


class Lineage(object):
    """Paths of one lineage under a certbot configuration directory."""

    def __init__(self, config_dir: str, name: str) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise LineageError("{!r} is not a certificate name.".format(name))
        self.config_dir = os.path.abspath(config_dir)
        self.name = name
        self.live_root = os.path.join(self.config_dir, "live")
        self.archive_root = os.path.join(self.config_dir, "archive")
        self.live_dir = os.path.join(self.live_root, name)
        self.renewal_conf = os.path.join(self.config_dir, "renewal",
                                         name + ".conf")

    @classmethod
    def from_live_path(cls, path: str) -> "Lineage":
        """The lineage of a ``CONFIG/live/NAME/FILE.pem`` path."""
        live_dir = os.path.dirname(os.path.abspath(path))
        live_root = os.path.dirname(live_dir)
        if os.path.basename(live_root) != "live":
            raise LineageError(
                "{} is not inside a certbot 'live' directory; the wwu-acl "
                "installer only deploys certificates that certbot manages."
                .format(path))
        return cls(os.path.dirname(live_root), os.path.basename(live_dir))

    def live_path(self, kind: str) -> str:
        return os.path.join(self.live_dir, kind + ".pem")

    def target(self, kind: str) -> str:
        """The archive file ``live/NAME/KIND.pem`` points at now.

        One readlink, not a realpath: the timer runs this for every
        certificate twice a day.
        """
        link = self.live_path(kind)
        try:
            target = os.path.normpath(os.path.join(self.live_dir, os.readlink(link)))
        except OSError:
            target = link
        if not os.path.exists(target):
            if not os.path.isdir(self.live_dir) and os.access(self.live_root, os.X_OK):
                raise no_such_certificate(self.config_dir, self.name)
            raise LineageError(
                "Certificate {!r} has no {} (looked for {}); is the "
                "certificate name right?".format(self.name, kind, link))
        return target

    def current(self) -> Dict[str, str]:
        """kind -> archive file the live link points at now."""
        return {kind: self.target(kind) for kind in KINDS}

    @property
    def archive_dir(self) -> str:
        return os.path.dirname(self.target("privkey"))

    def version(self, files: Optional[Dict[str, str]] = None) -> int:
        """Version number of the current private key (``privkeyN.pem``)."""
        key = files["privkey"] if files else self.target("privkey")
        match = _VERSIONED.match(os.path.basename(key))
        if not match:
            raise LineageError(
                "{} does not point to a versioned archive file (privkeyN.pem)."
                .format(self.live_path("privkey")))
        return int(match.group(2))

    def archive_file(self, kind: str, version: int) -> str:
        return os.path.join(self.archive_dir, "{}{}.pem".format(kind, version))

    def versions(self) -> List[int]:
        """All archived key versions, oldest first (reads the whole archive)."""
        found = set()
        for entry in os.listdir(self.archive_dir):
            match = _VERSIONED.match(entry)
            if match:
                found.add(int(match.group(2)))
        return sorted(found)

    def names(self) -> List[str]:
        """DNS names and IP addresses of the current certificate."""
        dns, ips = subject_alt_names(read_certificate(self.live_path("cert")))
        return dns + [str(ip) for ip in ips]

    def __repr__(self) -> str:
        return "Lineage({!r}, {!r})".format(self.config_dir, self.name)


def find_by_names(config_dir: str, names: List[str]) -> Optional[Lineage]:
    """The newest lineage whose certificate holds exactly ``names``."""
    live_root = os.path.join(config_dir, "live")
    wanted = set(names)
    best = None
    best_mtime = -1.0
    for entry in sorted(os.listdir(live_root)) if os.path.isdir(live_root) else []:
        lineage = Lineage(config_dir, entry)
        if not os.path.isdir(lineage.live_dir):
            continue
        try:
            if set(lineage.names()) != wanted:
                continue
            mtime = os.stat(lineage.live_path("cert")).st_mtime
        except (OSError, ValueError):
            continue
        if mtime > best_mtime:
            best, best_mtime = lineage, mtime
    return best
