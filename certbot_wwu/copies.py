"""Copy mode: owned, atomic, verified copies of a certificate for a service.

Layout of a destination DEST that the administrator names::

    DEST/.versions/<n>/        one complete set of files per deployment
    DEST/current -> .versions/<n>
    DEST/<file> -> current/<file>   the stable paths a service is pointed at

A new set is written into a fresh version directory with every file created
at its final owner and mode before any byte is written, fsync'ed, verified,
and then made current by renaming one symlink over ``DEST/current``. A
reader that resolves ``current`` once sees the old set or the new one, never
a mix or a partial file; combined.pem and bundle.p12 are single files and
always consistent. The previous set stays, so a deployment can roll back
when the service does not come back; older ones are pruned.

Destinations follow sshd's StrictModes: DEST and every directory above it
are root's and writable by root alone (a sticky ancestor such as /tmp is
fine). The copy owner owns only the files it reads. Every step works
relative to directory descriptors reached from / by that check, never to
a path after checking it, so the service account cannot redirect root.
"""
import contextlib
import errno
import grp
import ipaddress
import json
import os
import pwd
import stat
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from certbot_wwu.errors import CopyError
from certbot_wwu.lineage import PEM_CERTIFICATE, load_certificates, subject_alt_names

FORMATS = ("pem", "combined", "pkcs12")
P12_ENCRYPTIONS = ("modern", "legacy")
#: PBKDF rounds of a PKCS#12 bundle (cryptography's own choice before 38)
P12_KDF_ROUNDS = 20000
PEM_FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
COMBINED_FILE = "combined.pem"
PKCS12_FILE = "bundle.p12"
VERSIONS = ".versions"
CURRENT = "current"
CERT_MODE = 0o644
SOURCE_FILE = "source.json"
MAX_PASSWORD_FILE = 4096

_FORMAT_FILES = {"pem": PEM_FILES, "combined": (COMBINED_FILE,),
                 "pkcs12": (PKCS12_FILE,)}
_KEY_FILES = ("privkey.pem", COMBINED_FILE, PKCS12_FILE)
_ALL_FILES = PEM_FILES + (COMBINED_FILE, PKCS12_FILE)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CopySpec(object):
    """Where the copies go, who owns them and in which formats.

    ``gid`` None means no group may read the key: the copies belong to
    root's group 0 and the key mode loses its group bits.
    """

    def __init__(self, dest: str, uid: int, gid: Optional[int], key_mode: int,
                 formats: Sequence[str] = ("pem",),
                 p12_password: Optional[bytes] = None,
                 p12_encryption: str = "modern") -> None:
        if p12_encryption not in P12_ENCRYPTIONS:
            raise CopyError("PKCS#12 encryption {!r} is unknown; use modern or "
                            "legacy.".format(p12_encryption))
        for fmt in formats:
            if fmt not in FORMATS:
                raise CopyError("Copy format {!r} is unknown; use one of {}.".format(
                    fmt, ", ".join(FORMATS)))
        if not formats:
            raise CopyError("No copy format was given for {}; use one or more "
                            "of {}.".format(dest, ", ".join(FORMATS)))
        if key_mode & ~0o770:
            raise CopyError(
                "Key mode {:04o} would let every user (or a set-id bit) at the "
                "private key copies; use 0640 or 0600.".format(key_mode))
        self.dest = os.path.abspath(dest)
        self.uid = uid
        self.gid = gid
        self.group = gid if gid is not None else 0
        self.key_mode = key_mode if gid is not None else key_mode & ~0o070
        self.formats = tuple(formats)
        self.p12_password = p12_password
        #: "modern" (AES-256-CBC, PBES2, SHA-256 MAC) or "legacy" (3DES, SHA-1
        #: MAC) for readers older than Java 8u301/11.0.12
        self.p12_encryption = p12_encryption

    @property
    def dir_mode(self) -> int:
        """Directories: 0750 when the owner reaches them through the group.

        Otherwise (no group, or an owner outside it) the owner could not
        enter a root:group 0750 directory, so they are 0755; that exposes
        nothing secret, the key files themselves are never readable by others.
        """
        return 0o750 if self.gid is not None and _in_group(self.uid, self.gid) else 0o755

    def __repr__(self) -> str:
        return "CopySpec({!r}, uid={}, gid={}, key_mode={:04o}, formats={})".format(
            self.dest, self.uid, self.gid, self.key_mode, self.formats)


def _in_group(uid: int, gid: int) -> bool:
    """Whether user ``uid`` has group ``gid`` (primary or supplementary)."""
    if uid == 0:
        return True
    try:
        account = pwd.getpwuid(uid)
    except KeyError:
        return False
    if account.pw_gid == gid:
        return True
    try:
        return account.pw_name in grp.getgrgid(gid).gr_mem
    except KeyError:
        return False


def file_names(formats: Sequence[str]) -> List[str]:
    """The stable file names under DEST for ``formats``."""
    names = []  # type: List[str]
    for fmt in formats:
        if fmt not in _FORMAT_FILES:
            raise CopyError("Copy format {!r} is unknown; use one of {}.".format(
                fmt, ", ".join(FORMATS)))
        names.extend(n for n in _FORMAT_FILES[fmt] if n not in names)
    return names


# --- destination -------------------------------------------------------------

def _owner(uid: int) -> str:
    try:
        return "uid {} ({})".format(uid, pwd.getpwuid(uid).pw_name)
    except KeyError:
        return "uid {}".format(uid)


def _os_error(what: str, path: str, err: OSError) -> CopyError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        remedy = "the disk is full; free some space (the previous copies stay in use)"
    elif err.errno == errno.EROFS:
        remedy = "the filesystem is mounted read-only"
    elif err.errno in (errno.EACCES, errno.EPERM):
        remedy = ("permission denied even for root; check for an immutable "
                  "attribute (lsattr) or a security policy")
    else:
        remedy = "{}; check that the directory exists and is writable by root".format(
            err.strerror or err)
    return CopyError("Cannot {} {}: {}.".format(what, path, remedy))


def _root_only(path: str) -> str:
    return "chown root:root {} && chmod 755 {}".format(path, path)


def _check_dir(fd: int, path: str, is_dest: bool) -> None:
    """StrictModes for one directory on the way: root's, and nobody else
    can rename or replace what is in it (a sticky ancestor is fine)."""
    st = os.fstat(fd)
    if st.st_uid != 0:
        raise CopyError(
            "{} is owned by {}, who could swap what root writes below it for a "
            "link elsewhere; make it root's ({}) or name a copy directory "
            "outside it.".format(path, _owner(st.st_uid), _root_only(path)))
    if not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return
    if not is_dest and st.st_mode & stat.S_ISVTX:
        return
    if is_dest and st.st_mode & stat.S_ISVTX:
        raise CopyError(
            "{} is a shared directory that other users can write in; name a "
            "directory of its own below it (such as {}) for the copies.".format(
                path, os.path.join(path, "certbot-wwu")))
    raise CopyError(
        "{} is writable by its group or by others, who could redirect the "
        "copies; make it root's alone ({}).".format(path, _root_only(path)))


def _open_dir(parent_fd: int, name: str, path: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                link = stat.S_ISLNK(os.stat(name, dir_fd=parent_fd,
                                            follow_symlinks=False).st_mode)
            except OSError:
                link = False
            if link:
                raise CopyError(
                    "{} is a symbolic link, which could redirect the copies; name "
                    "the real directory instead.".format(path))
            raise CopyError("{} is not a directory; name a directory for the "
                            "copies.".format(path))
        raise


def _walk(dest: str, spec: Optional["CopySpec"] = None) -> Optional[int]:
    """fd of DEST, reached from / one checked directory at a time.

    With ``spec`` a missing DEST is made with the spec's group and mode;
    without, a missing DEST is None. A missing parent is refused either
    way: a typo must not silently become a new tree. Everything after this
    works relative to the fd, never to the path.
    """
    dest = os.path.abspath(dest)
    parts = [p for p in dest.split("/") if p]
    fd = os.open("/", _DIR_FLAGS)
    path = "/"
    try:
        _check_dir(fd, path, not parts)
        for index, part in enumerate(parts):
            path = os.path.join(path, part)
            is_dest = index == len(parts) - 1
            created = False
            try:
                child = _open_dir(fd, part, path)
            except FileNotFoundError:
                if not is_dest:
                    raise CopyError(
                        "{} does not exist, so the copy directory {} cannot be "
                        "made in it; create the parent first (mkdir -p {}) or "
                        "correct the copy directory.".format(path, dest,
                                                             os.path.dirname(dest)))
                if spec is None:
                    return None
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                    created = True
                except FileExistsError:
                    pass
                child = _open_dir(fd, part, path)
            os.close(fd)
            fd = child
            if created and os.fstat(fd).st_uid == 0:
                os.fchown(fd, 0, spec.group)
                os.fchmod(fd, spec.dir_mode)
            _check_dir(fd, path, is_dest)
        result, fd = fd, -1
        return result
    except OSError as err:
        raise _os_error("reach the copy directory", path, err)
    finally:
        if fd >= 0:
            os.close(fd)


@contextlib.contextmanager
def _destination(dest: str, spec: Optional["CopySpec"] = None) -> Iterator[Optional[int]]:
    fd = _walk(dest, spec)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def check_destination(dest: str) -> None:
    """Refuse a DEST that anyone but root could redirect (sshd's StrictModes).

    DEST and every directory above it must be root's and writable by root
    alone; an ancestor may be sticky (like /tmp), DEST itself may not. The
    copy owner owns only the files it reads, never a directory root writes
    in. A DEST that does not exist yet is fine when its ancestors are.
    """
    with _destination(dest):
        pass


def prepare_destination(spec: CopySpec) -> None:
    """Check DEST and create it if missing (root:group, no write for others)."""
    with _destination(spec.dest, spec):
        pass


def read_password(path: str) -> bytes:
    """The PKCS#12 password from ``path``: root's regular file, private and small.

    A file the copy owner controls (or a FIFO, or a device such as
    /dev/zero) could hang root or exhaust its memory, or hand it a password
    someone else chose.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        reason = ("it is a symbolic link" if err.errno == errno.ELOOP
                  else err.strerror or str(err))
        raise CopyError("Cannot read the PKCS#12 password file {}: {}; name root's "
                        "own file (chmod 600).".format(path, reason))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_uid != 0:
            problem = "is owned by {}, not root".format(_owner(st.st_uid))
        elif st.st_mode & 0o077:
            problem = "can be read or written by its group or others (mode {:04o})".format(
                stat.S_IMODE(st.st_mode))
        elif st.st_size > MAX_PASSWORD_FILE:
            problem = "is larger than {} bytes".format(MAX_PASSWORD_FILE)
        else:
            problem = ""
        if problem:
            raise CopyError(
                "The PKCS#12 password file {} {}; it must be root's private regular "
                "file (chown root:root {} && chmod 600 {}).".format(path, problem, path, path))
        data = os.read(fd, MAX_PASSWORD_FILE + 1)
    finally:
        os.close(fd)
    return data[:MAX_PASSWORD_FILE].rstrip(b"\r\n")


# --- material ----------------------------------------------------------------

def _crypto():
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import serialization
    return default_backend(), serialization


def _load_cert(data: bytes, what: str):
    try:
        return load_certificates(data)[0]
    except ValueError:
        raise CopyError("The {} is not a PEM certificate; check the lineage's "
                        "files.".format(what))


def _load_chain(data: bytes) -> list:
    if not data.strip():
        return []
    if PEM_CERTIFICATE not in data:
        raise CopyError("The chain holds no PEM certificate; check the lineage's "
                        "chain.pem.")
    try:
        return load_certificates(data)
    except ValueError:
        raise CopyError("The chain is not a PEM certificate; check the lineage's "
                        "chain.pem.")


def _load_key(data: bytes):
    from cryptography.exceptions import UnsupportedAlgorithm
    backend, serialization = _crypto()
    try:
        return serialization.load_pem_private_key(data, None, backend)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CopyError("The private key is not an unencrypted PEM key that "
                        "cryptography can read; check the lineage's privkey.pem.")


def _public_der(public_key) -> bytes:
    _, serialization = _crypto()
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _covers(dns: Sequence[str], ips: list, name: str) -> bool:
    try:
        return ipaddress.ip_address(name) in ips
    except ValueError:
        pass
    name = name.lower().rstrip(".")
    for pattern in (p.lower().rstrip(".") for p in dns):
        if pattern == name:
            return True
        if (pattern.startswith("*.") and "." in name and not name.startswith("*")
                and name.split(".", 1)[1] == pattern[2:]):
            return True
    return False


def verify_material(cert_pem: bytes, chain_pem: bytes, key_pem: bytes,
                    names: Sequence[str]) -> None:
    """The key belongs to the certificate and the certificate covers ``names``."""
    cert = _load_cert(cert_pem, "certificate")
    _load_chain(chain_pem)
    key = _load_key(key_pem)
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise CopyError("The private key does not match the certificate; nothing "
                        "was copied, check that the lineage's privkey.pem and "
                        "cert.pem belong together.")
    dns, ips = subject_alt_names(cert)
    missing = [str(n) for n in names if not _covers(dns, ips, str(n))]
    if missing:
        held = dns + [str(ip) for ip in ips]
        raise CopyError(
            "The certificate does not cover {} (it holds {}); nothing was copied, "
            "renew it with those names or correct the names of the copy.".format(
                ", ".join(missing), ", ".join(held) or "no names"))


def _pkcs12(spec: CopySpec, material: Dict[str, bytes], names: Sequence[str]) -> bytes:
    from cryptography.hazmat.primitives.serialization import pkcs12
    _, serialization = _crypto()
    password = spec.p12_password
    if password == b"":
        encryption = serialization.NoEncryption()
    elif not hasattr(serialization.PrivateFormat, "PKCS12"):
        # cryptography < 38 has one choice, OpenSSL's 3DES with a SHA-1 MAC:
        # what legacy asks for, and what every reader can read
        encryption = serialization.BestAvailableEncryption(password)
    else:
        from cryptography.hazmat.primitives import hashes
        legacy = spec.p12_encryption == "legacy"
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(P12_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC if legacy
                                else pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA1() if legacy else hashes.SHA256())
            .build(password))
    friendly = str(names[0]).encode("utf-8") if names else None
    try:
        return pkcs12.serialize_key_and_certificates(
            friendly, _load_key(material["privkey"]),
            _load_cert(material["cert"], "certificate"),
            _load_chain(material["chain"]) or None, encryption)
    except (TypeError, ValueError) as err:
        raise CopyError("cryptography cannot write this key and certificate as "
                        "PKCS#12 ({}); choose the pem or combined format instead."
                        .format(err))


def _contents(spec: CopySpec, material: Dict[str, bytes],
              names: Sequence[str]) -> List[Tuple[str, bytes, int]]:
    """(file name, bytes, mode) of every file of a version."""
    files = []  # type: List[Tuple[str, bytes, int]]
    for name in file_names(spec.formats):
        if name == COMBINED_FILE:
            key = material["privkey"]
            if not key.endswith(b"\n"):
                key += b"\n"
            data = key + material["fullchain"]
        elif name == PKCS12_FILE:
            data = _pkcs12(spec, material, names)
        else:
            data = material[name[:-len(".pem")]]
        files.append((name, data, spec.key_mode if name in _KEY_FILES else CERT_MODE))
    return files


# --- versions ----------------------------------------------------------------

def create_file(dir_fd: int, name: str, uid: int, gid: int, mode: int) -> int:
    """A new empty file, already at its final owner and mode; returns its fd.

    Nothing is in it yet, so a key is never readable by anyone else, not
    even between creation and chmod (it starts as root's 0600).
    """
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_file(dir_fd: int, name: str, data: bytes, uid: int, gid: int,
                mode: int) -> None:
    fd = create_file(dir_fd, name, uid, gid, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _numbers(entries: Sequence[str]) -> List[int]:
    return sorted(int(e) for e in entries if e.isdigit() and e == str(int(e)))


def _open_versions(dest_fd: int, dest: str, spec: Optional[CopySpec]) -> Optional[int]:
    """fd of DEST/.versions, created when ``spec`` is given (else None when
    missing); checked to be root's own directory."""
    path = os.path.join(dest, VERSIONS)
    try:
        if spec is not None:
            try:
                os.mkdir(VERSIONS, 0o700, dir_fd=dest_fd)
            except FileExistsError:
                pass
        fd = os.open(VERSIONS, _DIR_FLAGS, dir_fd=dest_fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CopyError("{} is not a directory; remove it, certbot-wwu keeps "
                            "its versions there.".format(path))
        raise _os_error("open", path, err)
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.close(fd)
        raise CopyError("{} is not root's own directory; remove it, certbot-wwu "
                        "keeps its versions there.".format(path))
    if spec is not None and (st.st_gid != spec.group
                             or stat.S_IMODE(st.st_mode) != spec.dir_mode):
        try:
            os.fchown(fd, 0, spec.group)
            os.fchmod(fd, spec.dir_mode)
        except OSError as err:
            os.close(fd)
            raise _os_error("set the owner of", path, err)
    return fd


def _remove_version(versions_fd: int, name: str) -> None:
    """Remove one version directory and the files in it, through fds only."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=versions_fd)
    except FileNotFoundError:
        return
    try:
        for entry in os.listdir(fd):
            try:
                os.unlink(entry, dir_fd=fd)
            except IsADirectoryError:
                os.rmdir(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=versions_fd)


def write_version(spec: CopySpec, material: Dict[str, bytes], names: Sequence[str],
                  source: Optional[Dict[str, object]] = None) -> str:
    """Write a complete, verified set into a fresh DEST/.versions/<n>.

    ``material`` holds the PEM bytes of cert, chain, fullchain and privkey;
    ``source`` records what the set was made from (see :func:`current_source`).
    Nothing is current until :func:`switch`. Returns the version directory.
    """
    if "pkcs12" in spec.formats and spec.p12_password is None:
        raise CopyError("The PKCS#12 copy in {} needs a password; give one (an "
                        "empty password only if the service cannot use any)."
                        .format(spec.dest))
    verify_material(material["cert"], material["chain"], material["privkey"], names)
    contents = _contents(spec, material, names)
    with _destination(spec.dest, spec) as dest_fd:
        versions_fd = _open_versions(dest_fd, spec.dest, spec)
        created = ""
        try:
            number = (_numbers(os.listdir(versions_fd)) or [0])[-1] + 1
            while True:
                try:
                    os.mkdir(str(number), 0o700, dir_fd=versions_fd)
                    break
                except FileExistsError:
                    number += 1
            created = str(number)
            version_fd = os.open(created, _DIR_FLAGS, dir_fd=versions_fd)
            try:
                os.fchown(version_fd, 0, spec.group)
                os.fchmod(version_fd, spec.dir_mode)
                for name, data, mode in contents:
                    _write_file(version_fd, name, data, spec.uid, spec.group, mode)
                if source is not None:
                    _write_file(version_fd, SOURCE_FILE, json.dumps(
                        source, sort_keys=True).encode() + b"\n", 0, 0, CERT_MODE)
                os.fsync(version_fd)
            finally:
                os.close(version_fd)
            os.fsync(versions_fd)
        except BaseException as err:
            if created:
                try:
                    _remove_version(versions_fd, created)
                except OSError:
                    pass
            if isinstance(err, OSError):
                raise _os_error("write the copies into",
                                os.path.join(spec.dest, VERSIONS, created), err)
            raise
        finally:
            os.close(versions_fd)
    return os.path.join(spec.dest, VERSIONS, created)


def _version_name(target: str) -> Optional[str]:
    """<n> for a link target ``.versions/<n>``, else None."""
    parts = target.split("/")
    if len(parts) == 2 and parts[0] == VERSIONS and _numbers(parts[1:]):
        return parts[1]
    return None


def _current(dest_fd: int, dest: str) -> Optional[str]:
    """The version name DEST/current points at, or None."""
    path = os.path.join(dest, CURRENT)
    try:
        target = os.readlink(CURRENT, dir_fd=dest_fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.EINVAL:
            target = ""
        else:
            raise _os_error("read", path, err)
    name = _version_name(target)
    if name is None:
        raise CopyError("{} is not a link certbot-wwu made (to .versions/<n>); "
                        "move it away so the copies can be switched.".format(path))
    return name


def current_version(dest: str) -> Optional[str]:
    """The version directory DEST/current points at, or None."""
    dest = os.path.abspath(dest)
    with _destination(dest) as dest_fd:
        name = _current(dest_fd, dest) if dest_fd is not None else None
    return os.path.join(dest, VERSIONS, name) if name else None


def _stable_links(dest_fd: int, dest: str, files: Sequence[str]) -> List[str]:
    """Stable names still to create; refuses anything but our own link."""
    missing = []
    for name in files:
        try:
            target = os.readlink(name, dir_fd=dest_fd)
        except FileNotFoundError:
            missing.append(name)
            continue
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise _os_error("read", os.path.join(dest, name), err)
            target = None
        if target != CURRENT + "/" + name:
            raise CopyError(
                "{} exists and is not a link to {}/{}; move it away so that "
                "certbot-wwu can manage it.".format(os.path.join(dest, name),
                                                    CURRENT, name))
    return missing


def _replace_current(dest_fd: int, target: Optional[str]) -> None:
    if target is None:
        try:
            os.unlink(CURRENT, dir_fd=dest_fd)
        except FileNotFoundError:
            pass
        return
    while True:
        tmp = ".current." + os.urandom(6).hex()
        try:
            os.symlink(target, tmp, dir_fd=dest_fd)
            break
        except FileExistsError:
            continue
    try:
        os.replace(tmp, CURRENT, src_dir_fd=dest_fd, dst_dir_fd=dest_fd)
    except OSError:
        os.unlink(tmp, dir_fd=dest_fd)
        raise


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _switch(dest: str, version_dir: Optional[str], files: Sequence[str],
            strict: bool) -> Optional[str]:
    dest = os.path.abspath(dest)
    target = name = None
    if version_dir is not None:
        version_dir = os.path.abspath(version_dir)
        name = os.path.basename(version_dir)
        target = VERSIONS + "/" + name
        if _version_name(target) is None or \
                os.path.join(dest, VERSIONS, name) != version_dir:
            raise CopyError("{} is not a version directory of {}; switch only to "
                            "what write_version returned.".format(version_dir, dest))
    with _destination(dest) as dest_fd:
        if dest_fd is None:
            raise CopyError("The copy directory {} is missing; deploy again to "
                            "write a new set.".format(dest))
        if name is not None:
            version_fd = None
            versions_fd = _open_versions(dest_fd, dest, None)
            try:
                if versions_fd is not None:
                    version_fd = os.open(name, _DIR_FLAGS, dir_fd=versions_fd)
            except OSError:
                pass
            finally:
                if versions_fd is not None:
                    os.close(versions_fd)
            if version_fd is None:
                raise CopyError("{} is missing; it may have been pruned, write a new "
                                "version instead.".format(version_dir))
            try:
                absent = [n for n in files if not _exists(version_fd, n)]
                extra = [n for n in _ALL_FILES if n not in files
                         and _exists(version_fd, n)]
            finally:
                os.close(version_fd)
            if absent and strict:
                raise CopyError("{} has no {}; write a version with those formats "
                                "before switching to it.".format(
                                    version_dir, ", ".join(absent)))
        previous = _current(dest_fd, dest)
        if not strict and name is not None:
            files = list(files) + extra
        missing = _stable_links(dest_fd, dest, files)
        try:
            for link in missing:
                try:
                    os.symlink(CURRENT + "/" + link, link, dir_fd=dest_fd)
                except FileExistsError:
                    _stable_links(dest_fd, dest, [link])
            _replace_current(dest_fd, target)
            if strict:
                for link in _unasked_links(dest_fd, files):
                    os.unlink(link, dir_fd=dest_fd)
            os.fsync(dest_fd)
        except OSError as err:
            raise _os_error("switch the copies in", dest, err)
    return os.path.join(dest, VERSIONS, previous) if previous else None


def _unasked_links(dest_fd: int, files: Sequence[str]) -> List[str]:
    """Our stable links (to current/<file>) for formats no longer asked for:
    left alone they would dangle, or point a service at a stale format."""
    stale = []
    for name in _ALL_FILES:
        if name in files:
            continue
        try:
            if os.readlink(name, dir_fd=dest_fd) == CURRENT + "/" + name:
                stale.append(name)
        except OSError:
            continue
    return stale


def switch(dest: str, version_dir: str, files: Sequence[str]) -> Optional[str]:
    """Make ``version_dir`` current in one rename; returns the previous one.

    Each stable DEST/<file> is (made) a link to current/<file>; anything else
    there is refused, before anything changes. Our links for files of
    formats no longer asked for are removed after the switch.
    """
    return _switch(dest, version_dir, files, strict=True)


def rollback(dest: str, previous: Optional[str], files: Sequence[str]) -> None:
    """Make ``previous`` current again (None: no version is current).

    Stable links for files the previous version lacks are left dangling
    rather than refused, so a rollback after a format change still works;
    links for the files it has come back.
    """
    _switch(dest, previous, files, strict=False)


def _prunable(dest_fd: int, dest: str, versions_fd: int,
              previous: Optional[str]) -> List[str]:
    """Versions other than the current one and the one before it.

    The one before is ``previous`` when the caller just switched away from
    it, else the newest below the current. Sets an interrupted run wrote but
    never made current go too: only two sets are ever readable.
    """
    current = _current(dest_fd, dest)
    if current is None:
        return []
    numbers = _numbers(os.listdir(versions_fd))
    keep = {current}
    if previous is not None:
        keep.add(os.path.basename(previous))
    else:
        older = [n for n in numbers if n < int(current)]
        if older:
            keep.add(str(older[-1]))
    return [str(n) for n in numbers if str(n) not in keep]


def _leftover_links(dest_fd: int) -> List[str]:
    """Temporary ``.current.*`` links that a killed switch left behind."""
    return [name for name in os.listdir(dest_fd) if name.startswith(".current.")
            and stat.S_ISLNK(os.stat(name, dir_fd=dest_fd,
                                     follow_symlinks=False).st_mode)]


@contextlib.contextmanager
def _existing_versions(dest: str) -> Iterator[Tuple[Optional[int], Optional[int]]]:
    """fds of DEST and DEST/.versions, (None, None) while either is missing."""
    with _destination(dest) as dest_fd:
        versions_fd = _open_versions(dest_fd, dest, None) if dest_fd is not None else None
        try:
            yield (dest_fd, versions_fd) if versions_fd is not None else (None, None)
        finally:
            if versions_fd is not None:
                os.close(versions_fd)


def prunable(dest: str) -> bool:
    """Whether DEST holds more than the current and the previous set."""
    dest = os.path.abspath(dest)
    with _existing_versions(dest) as (dest_fd, versions_fd):
        return versions_fd is not None and bool(
            _prunable(dest_fd, dest, versions_fd, None) or _leftover_links(dest_fd))


def prune(dest: str, previous: Optional[str] = None) -> List[str]:
    """Remove every version but the current one and the one before it
    (``previous`` when given); returns the removed version directories."""
    dest = os.path.abspath(dest)
    removed = []  # type: List[str]
    with _existing_versions(dest) as (dest_fd, versions_fd):
        if versions_fd is None:
            return removed
        try:
            for name in _prunable(dest_fd, dest, versions_fd, previous):
                _remove_version(versions_fd, name)
                removed.append(os.path.join(dest, VERSIONS, name))
            for name in _leftover_links(dest_fd):
                os.unlink(name, dir_fd=dest_fd)
            if removed:
                os.fsync(versions_fd)
        except OSError as err:
            raise _os_error("prune old copies in", os.path.join(dest, VERSIONS), err)
    return removed


# --- what a version holds ----------------------------------------------------

def current_source(dest: str) -> Optional[Dict[str, object]]:
    """What the current set was made from (None: unknown or no set), so a
    later run can tell whether the copies are still what the settings and
    the lineage ask for, and which lineage the directory serves."""
    dest = os.path.abspath(dest)
    with _destination(dest) as dest_fd:
        name = _current(dest_fd, dest) if dest_fd is not None else None
        if name is None:
            return None
        try:
            fd = os.open(os.path.join(VERSIONS, name, SOURCE_FILE),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dest_fd)
            with os.fdopen(fd, "rb") as f:
                data = json.loads(f.read(65536).decode("utf-8"))
        except (OSError, ValueError):
            return None
    return data if isinstance(data, dict) else None


def intact(spec: CopySpec) -> bool:
    """Every stable file resolves to a regular file with its owner and mode."""
    with _destination(spec.dest) as dest_fd:
        if dest_fd is None:
            return False
        for name in file_names(spec.formats):
            try:
                st = os.stat(name, dir_fd=dest_fd)
            except OSError:
                return False
            mode = spec.key_mode if name in _KEY_FILES else CERT_MODE
            if not stat.S_ISREG(st.st_mode) or st.st_uid != spec.uid \
                    or st.st_gid != spec.group or stat.S_IMODE(st.st_mode) != mode:
                return False
    return True
