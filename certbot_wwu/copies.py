"""Copy mode: owned, atomic, verified copies of a certificate for a service.

Layout of a destination DEST that the administrator names::

    DEST/.lock                 flock'ed by one deployment at a time
    DEST/.versions/<n>/        one complete set of files per deployment
    DEST/current -> .versions/<n>
    DEST/<file> -> current/<file>   the stable paths a service is pointed at

A new set is written into a fresh version directory with every file created
at its final owner and mode before any byte is written, fsync'ed, verified,
and then made current by renaming one symlink over ``DEST/current``. A
reader that resolves ``current`` once sees the old set or the new one, never
a mix or a partial file; combined.pem and bundle.p12 are single files and
always consistent. The previous set stays until pruned, so a deployment can
roll back when the service does not come back.

Destinations are checked in the spirit of sshd's StrictModes: no symlinks
and no directory that another user could write on the way to DEST.
"""
import contextlib
import errno
import fcntl
import grp
import ipaddress
import json
import os
import pwd
import re
import shutil
import stat
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from certbot_wwu.errors import CopyError
from certbot_wwu.files import write_atomic

FORMATS = ("pem", "combined", "pkcs12")
PEM_FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
COMBINED_FILE = "combined.pem"
PKCS12_FILE = "bundle.p12"
VERSIONS = ".versions"
CURRENT = "current"
LOCK_FILE = ".lock"
CERT_MODE = 0o644

_FORMAT_FILES = {"pem": PEM_FILES, "combined": (COMBINED_FILE,),
                 "pkcs12": (PKCS12_FILE,)}
_KEY_FILES = ("privkey.pem", COMBINED_FILE, PKCS12_FILE)
_PEM_CERT = re.compile(
    b"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CopySpec(object):
    """Where the copies go, who owns them and in which formats.

    ``gid`` None means no group may read the key: the copies belong to
    root's group 0 and the key mode loses its group bits.
    """

    def __init__(self, dest: str, uid: int, gid: Optional[int], key_mode: int,
                 formats: Sequence[str] = ("pem",),
                 p12_password: Optional[bytes] = None) -> None:
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


def default_key_mode(gid: Optional[int]) -> int:
    return 0o640 if gid is not None else 0o600


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
        return "{} ({})".format(uid, pwd.getpwuid(uid).pw_name)
    except KeyError:
        return str(uid)


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


def check_destination(dest: str, uid: int) -> None:
    """Refuse a DEST that someone other than root or ``uid`` could redirect.

    Every existing directory from / down to DEST must be a real directory
    owned by root or ``uid`` and not writable by group or others, except
    that an ancestor may be sticky (like /tmp). DEST itself may not be
    sticky-writable: another user could plant the stable names in it.
    """
    dest = os.path.abspath(dest)
    path = "/"
    parts = [p for p in dest.split("/") if p]
    for index in range(len(parts) + 1):
        if index:
            path = os.path.join(path, parts[index - 1])
        is_dest = index == len(parts)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as err:
            raise _os_error("examine", path, err)
        if stat.S_ISLNK(st.st_mode):
            raise CopyError(
                "{} is a symbolic link, which could redirect the copies; name "
                "the real directory {} instead.".format(path, os.path.realpath(dest)))
        if not stat.S_ISDIR(st.st_mode):
            raise CopyError("{} is not a directory; name a directory for the "
                            "copies.".format(path))
        if st.st_uid not in (0, uid):
            raise CopyError(
                "{} is owned by uid {}, who could redirect the copies; make root "
                "its owner (chown root {}).".format(path, _owner(st.st_uid), path))
        sticky = bool(st.st_mode & stat.S_ISVTX) and not is_dest
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
            raise CopyError(
                "{} is writable by its group or by others, who could redirect the "
                "copies; remove that (chmod go-w {}).".format(path, path))


def prepare_destination(spec: CopySpec) -> None:
    """Check DEST and create it if missing (root:group, no write for others)."""
    check_destination(spec.dest, spec.uid)
    missing = []
    path = spec.dest
    while not os.path.lexists(path):
        missing.insert(0, path)
        path = os.path.dirname(path)
    try:
        for path in missing:
            os.mkdir(path, 0o700)
            if path == spec.dest:
                os.chown(path, 0, spec.group)
                os.chmod(path, spec.dir_mode)
            else:
                os.chmod(path, 0o755)
    except OSError as err:
        raise _os_error("create the copy directory", path, err)
    # again: a sticky ancestor lets someone else win the race to create it
    check_destination(spec.dest, spec.uid)


@contextlib.contextmanager
def lock(dest: str) -> Iterator[None]:
    """Hold an exclusive flock on DEST/.lock; waits for another holder."""
    path = os.path.join(dest, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise CopyError("{} is a symbolic link; remove it, certbot-wwu "
                            "creates its own lock file there.".format(path))
        raise _os_error("open the lock file", path, err)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CopyError("{} is not a regular file; remove it, certbot-wwu "
                            "creates its own lock file there.".format(path))
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- material ----------------------------------------------------------------

def _crypto():
    from cryptography import x509
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import serialization
    return x509, default_backend(), serialization


def _load_cert(data: bytes, what: str):
    x509, backend, _ = _crypto()
    try:
        return x509.load_pem_x509_certificate(data, backend)
    except ValueError:
        raise CopyError("The {} is not a PEM certificate; check the lineage's "
                        "files.".format(what))


def _load_chain(data: bytes) -> list:
    blocks = _PEM_CERT.findall(data)
    if data.strip() and not blocks:
        raise CopyError("The chain holds no PEM certificate; check the lineage's "
                        "chain.pem.")
    return [_load_cert(block, "chain") for block in blocks]


def _load_key(data: bytes):
    from cryptography.exceptions import UnsupportedAlgorithm
    _, backend, serialization = _crypto()
    try:
        return serialization.load_pem_private_key(data, None, backend)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CopyError("The private key is not an unencrypted PEM key that "
                        "cryptography can read; check the lineage's privkey.pem.")


def _public_der(public_key) -> bytes:
    _, _, serialization = _crypto()
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _cert_names(cert) -> Tuple[List[str], list]:
    x509, _, _ = _crypto()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [], []
    return (san.value.get_values_for_type(x509.DNSName),
            san.value.get_values_for_type(x509.IPAddress))


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
    dns, ips = _cert_names(cert)
    missing = [str(n) for n in names if not _covers(dns, ips, str(n))]
    if missing:
        held = dns + [str(ip) for ip in ips]
        raise CopyError(
            "The certificate does not cover {} (it holds {}); nothing was copied, "
            "renew it with those names or correct the names of the copy.".format(
                ", ".join(missing), ", ".join(held) or "no names"))


def _pkcs12(spec: CopySpec, material: Dict[str, bytes], names: Sequence[str]) -> bytes:
    from cryptography.hazmat.primitives.serialization import pkcs12
    _, _, serialization = _crypto()
    password = spec.p12_password
    if password == b"":
        encryption = serialization.NoEncryption()
    else:
        encryption = serialization.BestAvailableEncryption(password)
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

def _fsync_dir(path: str) -> None:
    fd = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(dir_fd: int, name: str, uid: int, gid: int, mode: int) -> int:
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
    fd = _create(dir_fd, name, uid, gid, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _numbers(entries: Sequence[str]) -> List[int]:
    return sorted(int(e) for e in entries if e.isdigit() and e == str(int(e)))


def _open_versions(dest: str, spec: Optional[CopySpec]) -> int:
    """fd of DEST/.versions, created when ``spec`` is given; checked root-owned."""
    path = os.path.join(dest, VERSIONS)
    try:
        dest_fd = os.open(dest, _DIR_FLAGS)
    except OSError as err:
        raise CopyError("Cannot open the copy directory {} ({}); run "
                        "prepare_destination first or name a real directory."
                        .format(dest, err.strerror or err))
    try:
        if spec is not None:
            try:
                os.mkdir(VERSIONS, 0o700, dir_fd=dest_fd)
            except FileExistsError:
                pass
        fd = os.open(VERSIONS, _DIR_FLAGS, dir_fd=dest_fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CopyError("{} is not a directory; remove it, certbot-wwu keeps "
                            "its versions there.".format(path))
        raise _os_error("open", path, err)
    finally:
        os.close(dest_fd)
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


def write_version(spec: CopySpec, material: Dict[str, bytes],
                  names: Sequence[str]) -> str:
    """Write a complete, verified set into a fresh DEST/.versions/<n>.

    ``material`` holds the PEM bytes of cert, chain, fullchain and privkey.
    Nothing is current until :func:`switch`. Returns the version directory.
    """
    if "pkcs12" in spec.formats and spec.p12_password is None:
        raise CopyError("The PKCS#12 copy in {} needs a password; give one (an "
                        "empty password only if the service cannot use any)."
                        .format(spec.dest))
    verify_material(material["cert"], material["chain"], material["privkey"], names)
    contents = _contents(spec, material, names)
    versions_fd = _open_versions(spec.dest, spec)
    created = ""
    try:
        number = (_numbers(os.listdir(versions_fd)) or [0])[-1] + 1
        while True:
            try:
                os.mkdir(str(number), 0o700, dir_fd=versions_fd)
                break
            except FileExistsError:
                number += 1
        created = os.path.join(spec.dest, VERSIONS, str(number))
        version_fd = os.open(str(number), _DIR_FLAGS, dir_fd=versions_fd)
        try:
            os.fchown(version_fd, 0, spec.group)
            os.fchmod(version_fd, spec.dir_mode)
            for name, data, mode in contents:
                _write_file(version_fd, name, data, spec.uid, spec.group, mode)
            os.fsync(version_fd)
        finally:
            os.close(version_fd)
        os.fsync(versions_fd)
    except OSError as err:
        if created:
            shutil.rmtree(created, ignore_errors=True)
        raise _os_error("write the copies into", created or spec.dest, err)
    except BaseException:
        if created:
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        os.close(versions_fd)
    return created


def _version_of(dest: str, target: str) -> Optional[str]:
    """DEST/.versions/<n> for a link target ``.versions/<n>``, else None."""
    parts = target.split("/")
    if len(parts) == 2 and parts[0] == VERSIONS and _numbers(parts[1:]):
        return os.path.join(dest, VERSIONS, parts[1])
    return None


def current_version(dest: str) -> Optional[str]:
    """The version directory DEST/current points at, or None."""
    dest = os.path.abspath(dest)
    path = os.path.join(dest, CURRENT)
    try:
        target = os.readlink(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.EINVAL:
            target = ""
        else:
            raise _os_error("read", path, err)
    version = _version_of(dest, target)
    if version is None:
        raise CopyError("{} is not a link certbot-wwu made (to .versions/<n>); "
                        "move it away so the copies can be switched.".format(path))
    return version


def _stable_links(dest: str, files: Sequence[str]) -> List[str]:
    """Stable names still to create; refuses anything but our own link."""
    missing = []
    for name in files:
        path = os.path.join(dest, name)
        try:
            target = os.readlink(path)
        except FileNotFoundError:
            missing.append(name)
            continue
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise _os_error("read", path, err)
            target = None
        if target != CURRENT + "/" + name:
            raise CopyError(
                "{} exists and is not a link to {}/{}; move it away so that "
                "certbot-wwu can manage it.".format(path, CURRENT, name))
    return missing


def _replace_current(dest: str, target: Optional[str]) -> None:
    path = os.path.join(dest, CURRENT)
    if target is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    while True:
        tmp = os.path.join(dest, ".current." + os.urandom(6).hex())
        try:
            os.symlink(target, tmp)
            break
        except FileExistsError:
            continue
    try:
        os.replace(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise


def _switch(dest: str, version_dir: Optional[str], files: Sequence[str],
            strict: bool) -> Optional[str]:
    dest = os.path.abspath(dest)
    target = None
    if version_dir is not None:
        version_dir = os.path.abspath(version_dir)
        target = VERSIONS + "/" + os.path.basename(version_dir)
        if _version_of(dest, target) != version_dir:
            raise CopyError("{} is not a version directory of {}; switch only to "
                            "what write_version returned.".format(version_dir, dest))
        if not os.path.isdir(version_dir) or os.path.islink(version_dir):
            raise CopyError("{} is missing; it may have been pruned, write a new "
                            "version instead.".format(version_dir))
        absent = [n for n in files if not os.path.lexists(os.path.join(version_dir, n))]
        if absent and strict:
            raise CopyError("{} has no {}; write a version with those formats "
                            "before switching to it.".format(version_dir, ", ".join(absent)))
    previous = current_version(dest)
    missing = _stable_links(dest, files)
    try:
        for name in missing:
            try:
                os.symlink(CURRENT + "/" + name, os.path.join(dest, name))
            except FileExistsError:
                _stable_links(dest, [name])
        _replace_current(dest, target)
        _fsync_dir(dest)
    except OSError as err:
        raise _os_error("switch the copies in", dest, err)
    return previous


def switch(dest: str, version_dir: str, files: Sequence[str]) -> Optional[str]:
    """Make ``version_dir`` current in one rename; returns the previous one.

    Each stable DEST/<file> is (made) a link to current/<file>; anything else
    there is refused, before anything changes.
    """
    return _switch(dest, version_dir, files, strict=True)


def rollback(dest: str, previous: Optional[str], files: Sequence[str]) -> None:
    """Make ``previous`` current again (None: no version is current).

    Stable links for files the previous version lacks are left dangling
    rather than refused, so a rollback after a format change still works.
    """
    _switch(dest, previous, files, strict=False)


def prune(dest: str, keep: int = 2) -> List[str]:
    """Remove the oldest versions beyond the newest ``keep``, never the current."""
    if keep < 1:
        raise CopyError("Keeping {} versions would remove the current copies; "
                        "keep at least 1.".format(keep))
    dest = os.path.abspath(dest)
    current = current_version(dest)
    if not os.path.lexists(os.path.join(dest, VERSIONS)):
        return []
    versions_fd = _open_versions(dest, None)
    try:
        numbers = _numbers(os.listdir(versions_fd))
        removed = []
        for number in numbers[:-keep]:
            path = os.path.join(dest, VERSIONS, str(number))
            if path == current:
                continue
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                continue
            shutil.rmtree(path)
            removed.append(path)
        if removed:
            os.fsync(versions_fd)
    except OSError as err:
        raise _os_error("prune old copies in", os.path.join(dest, VERSIONS), err)
    finally:
        os.close(versions_fd)
    return removed


# --- what a version holds ----------------------------------------------------

SOURCE_FILE = "source.json"


def write_source(version_dir: str, source: Dict[str, object]) -> None:
    """Record what a version was made from, so a later run can tell whether
    the current copies are still what the settings and the lineage ask for."""
    write_atomic(os.path.join(version_dir, SOURCE_FILE),
                 json.dumps(source, sort_keys=True) + "\n", 0o644)


def current_source(dest: str) -> Optional[Dict[str, object]]:
    current = current_version(dest)
    if current is None:
        return None
    try:
        with open(os.path.join(current, SOURCE_FILE)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def intact(spec: CopySpec) -> bool:
    """Every stable file resolves to a regular file with its owner and mode."""
    for name in file_names(spec.formats):
        try:
            st = os.stat(os.path.join(spec.dest, name))
        except OSError:
            return False
        mode = spec.key_mode if name in _KEY_FILES else CERT_MODE
        if not stat.S_ISREG(st.st_mode) or st.st_uid != spec.uid \
                or st.st_gid != spec.group or stat.S_IMODE(st.st_mode) != mode:
            return False
    return True
