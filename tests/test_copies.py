"""certbot_wwu.copies on real files, real owners and real certificates."""
import datetime
import fcntl
import grp
import ipaddress
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from certbot_wwu import copies
from certbot_wwu.copies import CopyError, CopySpec
from certbot_wwu.errors import WwuError
from tests.conftest import needs_root
from tests.support.host import (KEY_GROUP, KEY_GROUP_MEMBER, OTHER_USER,
                                SERVICE_USER, read_as)

NAMES = ["copy.example.org", "www.copy.example.org"]
ALL_FILES = ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem",
             "combined.pem", "bundle.p12"]


# --- material ----------------------------------------------------------------

def _key():
    return ec.generate_private_key(ec.SECP256R1(), default_backend())


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject, issuer, public_key, signing_key, names=(), ca=False):
    now = datetime.datetime.utcnow()
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
    if names:
        sans = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    return builder.sign(signing_key, hashes.SHA256(), default_backend())


def make_material(names=NAMES):
    """A leaf for ``names`` signed by a fresh CA: cert, chain, fullchain, privkey."""
    ca_key, leaf_key = _key(), _key()
    ca = _cert("wwu test CA", "wwu test CA", ca_key.public_key(), ca_key, ca=True)
    leaf = _cert(names[0], "wwu test CA", leaf_key.public_key(), ca_key, names)
    cert_pem = leaf.public_bytes(serialization.Encoding.PEM)
    chain_pem = ca.public_bytes(serialization.Encoding.PEM)
    return {"cert": cert_pem, "chain": chain_pem, "fullchain": cert_pem + chain_pem,
            "privkey": _key_pem(leaf_key)}


@pytest.fixture(scope="module")
def material():
    return make_material()


@pytest.fixture(scope="module")
def material2():
    return make_material()


def uid(name):
    return pwd.getpwnam(name).pw_uid


def gid(name):
    return grp.getgrnam(name).gr_gid


def spec_for(dest, group=KEY_GROUP, formats=("pem",), password=None, key_mode=None):
    """Copies owned by SERVICE_USER; ``group`` None: no group reads the key."""
    g = gid(group) if group else None
    mode = (0o640 if g is not None else 0o600) if key_mode is None else key_mode
    return CopySpec(dest, uid(SERVICE_USER), g, mode, formats, password)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def owner_mode(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def deploy(spec, material, names=NAMES):
    """What a deployment does: prepare, write, switch."""
    copies.prepare_destination(spec)
    version = copies.write_version(spec, material, names)
    previous = copies.switch(spec.dest, version, copies.file_names(spec.formats))
    return version, previous


@pytest.fixture
def dest(request):
    """DEST under a traversable scratch dir; needs root for real owners."""
    if os.geteuid() != 0:
        pytest.skip("needs root (real users and owners)")
    request.getfixturevalue("accounts")
    return os.path.join(request.getfixturevalue("scratch"), "copies")


# --- pure helpers ------------------------------------------------------------

def test_file_names():
    assert copies.file_names(["pem"]) == ["cert.pem", "chain.pem", "fullchain.pem",
                                          "privkey.pem"]
    assert copies.file_names(["combined", "pkcs12"]) == ["combined.pem", "bundle.p12"]
    assert copies.file_names(copies.FORMATS) == ALL_FILES
    assert copies.file_names(["pem", "pem"]) == copies.file_names(["pem"])
    with pytest.raises(CopyError, match="'jks' is unknown"):
        copies.file_names(["jks"])


def test_spec_without_group_is_root_group_and_no_group_bits():
    spec = CopySpec("rel/dir", 1000, None, 0o640)
    assert (spec.group, spec.key_mode, spec.formats) == (0, 0o600, ("pem",))
    assert spec.dest == os.path.abspath("rel/dir")
    spec = CopySpec("/x", 1000, 50, 0o640, ("pem", "pkcs12"), b"pw")
    assert (spec.group, spec.key_mode, spec.p12_password) == (50, 0o640, b"pw")


@pytest.mark.parametrize("kwargs, match", [
    ({"key_mode": 0o644}, "0644 would let every user"),
    ({"key_mode": 0o4640}, "4640"),
    ({"formats": ("pem", "der")}, "'der' is unknown"),
    ({"formats": ()}, "No copy format"),
])
def test_spec_refuses(kwargs, match):
    args = {"dest": "/x", "uid": 1, "gid": 2, "key_mode": 0o640}
    args.update(kwargs)
    with pytest.raises(CopyError, match=match) as info:
        CopySpec(**args)
    assert isinstance(info.value, WwuError)


# --- verify_material ---------------------------------------------------------

def test_verify_material_accepts_matching_material(material):
    copies.verify_material(material["cert"], material["chain"], material["privkey"],
                           NAMES)
    copies.verify_material(material["cert"], material["chain"], material["privkey"],
                           ["COPY.example.org."])
    copies.verify_material(material["cert"], material["chain"], material["privkey"], [])


def test_verify_material_refuses_another_key(material, material2):
    with pytest.raises(CopyError, match="does not match the certificate"):
        copies.verify_material(material["cert"], material["chain"],
                               material2["privkey"], NAMES)


def test_verify_material_refuses_names_not_covered(material):
    with pytest.raises(CopyError, match="does not cover other.example.org, "
                                        r"10.0.0.1 \(it holds copy.example.org"):
        copies.verify_material(material["cert"], material["chain"],
                               material["privkey"],
                               NAMES + ["other.example.org", "10.0.0.1"])


def test_verify_material_wildcards_and_addresses():
    m = make_material(["*.wild.example.org", "192.0.2.7", "2001:db8::1"])
    ok = ["*.wild.example.org", "a.wild.example.org", "192.0.2.7", "2001:db8:0::1"]
    copies.verify_material(m["cert"], m["chain"], m["privkey"], ok)
    for name in ("wild.example.org", "a.b.wild.example.org", "192.0.2.8"):
        with pytest.raises(CopyError, match="does not cover"):
            copies.verify_material(m["cert"], m["chain"], m["privkey"], [name])


def test_verify_material_refuses_garbage(material):
    with pytest.raises(CopyError, match="certificate is not a PEM certificate"):
        copies.verify_material(b"nonsense", material["chain"], material["privkey"], [])
    with pytest.raises(CopyError, match="private key is not"):
        copies.verify_material(material["cert"], material["chain"], material["cert"], [])
    with pytest.raises(CopyError, match="chain holds no PEM certificate"):
        copies.verify_material(material["cert"], b"nonsense", material["privkey"], [])
    with pytest.raises(CopyError, match="chain is not a PEM certificate"):
        copies.verify_material(material["cert"],
                               b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                               material["privkey"], [])


# --- destination checks ------------------------------------------------------

def test_prepare_creates_dest_root_owned(dest):
    os.mkdir(dest, 0o755)  # the parent must exist: no silent tree creation
    spec = spec_for(os.path.join(dest, "deeper"), group=SERVICE_USER)
    copies.prepare_destination(spec)
    assert owner_mode(dest) == (0, 0, 0o755)
    assert owner_mode(spec.dest) == (0, gid(SERVICE_USER), 0o750)
    copies.prepare_destination(spec)  # twice is fine


@pytest.mark.parametrize("group", [None, KEY_GROUP])
def test_prepare_lets_an_owner_outside_the_group_traverse(dest, group):
    copies.prepare_destination(spec_for(dest, group=group))
    assert owner_mode(dest) == (0, gid(group) if group else 0, 0o755)


def test_accepts_sticky_ancestor_with_root_owned_entry(dest):
    scratch = os.path.dirname(dest)
    # scratch lives under /var/tmp (1777): that ancestor is allowed
    sticky = os.path.join(scratch, "sticky")
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)
    copies.check_destination(os.path.join(sticky, "copies"))
    copies.prepare_destination(spec_for(os.path.join(sticky, "copies")))
    copies.check_destination(os.path.join(sticky, "copies", "missing"))


def test_refuses_dest_owned_by_the_copy_owner(dest):
    """The copy owner owns only the files it reads, never a directory root
    writes in (it could swap names between root's check and root's use)."""
    os.mkdir(dest, 0o750)
    os.chown(dest, uid(SERVICE_USER), 0)
    with pytest.raises(CopyError, match=re.escape(
            "{} is owned by uid {} ({})".format(dest, uid(SERVICE_USER), SERVICE_USER))
            + ".*chown root:root {0} && chmod 755 {0}".format(re.escape(dest))):
        copies.check_destination(dest)


def test_refuses_parent_owned_by_the_copy_owner(dest):
    parent = os.path.dirname(dest)
    os.chown(parent, uid(SERVICE_USER), 0)
    try:
        with pytest.raises(CopyError, match=re.escape(parent) + " is owned by"):
            copies.prepare_destination(spec_for(dest))
        assert not os.path.exists(dest)
    finally:
        os.chown(parent, 0, 0)


@pytest.mark.parametrize("mode, sticky_ok", [(0o775, False), (0o757, False),
                                             (0o1777, True)])
def test_refuses_writable_ancestor(dest, mode, sticky_ok):
    scratch = os.path.dirname(dest)
    parent = os.path.join(scratch, "open")
    os.mkdir(parent)
    os.chmod(parent, mode)
    target = os.path.join(parent, "copies")
    if sticky_ok:
        copies.prepare_destination(spec_for(target))
        return
    with pytest.raises(CopyError, match=re.escape(
            parent + " is writable by its group or by others") + ".*" + re.escape(
                "(chown root:root {0} && chmod 755 {0})".format(parent))):
        copies.prepare_destination(spec_for(target))
    assert not os.path.exists(target)


def test_refuses_writable_or_sticky_dest_itself(dest):
    os.mkdir(dest)
    os.chmod(dest, 0o770)
    with pytest.raises(CopyError, match="writable by its group or by others"):
        copies.check_destination(dest)
    os.chmod(dest, 0o1777)
    with pytest.raises(CopyError, match="is a shared directory.*name a directory "
                                        "of its own below it"):
        copies.check_destination(dest)


def test_tmp_itself_is_refused_without_asking_to_chmod_it():
    with pytest.raises(CopyError) as caught:
        copies.check_destination("/tmp")
    assert "of its own below it (such as /tmp/certbot-wwu)" in str(caught.value)
    assert "chmod" not in str(caught.value)


def test_refuses_dest_that_is_a_symlink(dest):
    scratch = os.path.dirname(dest)
    real = os.path.join(scratch, "real")
    os.mkdir(real)
    os.symlink(real, dest)
    with pytest.raises(CopyError, match=re.escape(dest) + " is a symbolic link.*"
                                        "name the real directory instead"):
        copies.prepare_destination(spec_for(dest))


def test_refuses_symlinked_ancestor(dest):
    scratch = os.path.dirname(dest)
    real = os.path.join(scratch, "real")
    os.mkdir(real)
    link = os.path.join(scratch, "link")
    os.symlink(real, link)
    with pytest.raises(CopyError, match=link + " is a symbolic link"):
        copies.check_destination(os.path.join(link, "copies"))
    assert os.listdir(real) == []


def test_refuses_dest_owned_by_someone_else(dest):
    os.mkdir(dest, 0o755)
    os.chown(dest, uid(OTHER_USER), 0)
    with pytest.raises(CopyError, match="owned by uid {} \\({}\\)".format(
            uid(OTHER_USER), OTHER_USER)):
        copies.check_destination(dest)


def test_refuses_dest_that_is_a_file(dest):
    with open(dest, "w"):
        pass
    with pytest.raises(CopyError, match="is not a directory"):
        copies.check_destination(dest)


# --- writing versions --------------------------------------------------------

def test_pem_set(dest, material):
    version, previous = deploy(spec_for(dest), material)
    assert previous is None
    assert version == os.path.join(dest, ".versions", "1")
    assert copies.current_version(dest) == version
    for kind in ("cert", "chain", "fullchain", "privkey"):
        assert read(os.path.join(dest, kind + ".pem")) == material[kind]
    assert sorted(os.listdir(version)) == sorted(copies.file_names(["pem"]))
    cert = x509.load_pem_x509_certificate(read(os.path.join(dest, "cert.pem")),
                                          default_backend())
    key = serialization.load_pem_private_key(read(os.path.join(dest, "privkey.pem")),
                                             None, default_backend())
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


@pytest.mark.parametrize("group, key_mode, dir_mode", [
    (SERVICE_USER, 0o640, 0o750),   # the owner's own group: it traverses by group
    (KEY_GROUP, 0o640, 0o755),      # owner outside the group: others may traverse
    (None, 0o600, 0o755),
])
def test_owners_and_modes(dest, material, group, key_mode, dir_mode):
    spec = spec_for(dest, group=group, formats=copies.FORMATS, password=b"secret")
    version, _ = deploy(spec, material)
    svc, g = uid(SERVICE_USER), (gid(group) if group else 0)
    for name in ("cert.pem", "chain.pem", "fullchain.pem"):
        assert owner_mode(os.path.join(version, name)) == (svc, g, 0o644)
    for name in ("privkey.pem", "combined.pem", "bundle.p12"):
        assert owner_mode(os.path.join(version, name)) == (svc, g, key_mode)
    assert owner_mode(version) == (0, g, dir_mode)
    assert owner_mode(os.path.join(dest, ".versions")) == (0, g, dir_mode)
    assert owner_mode(dest) == (0, g, dir_mode)
    assert not os.path.lexists(os.path.join(dest, ".lock"))  # locks are root's, elsewhere


def test_create_helper_has_final_owner_and_mode_before_any_byte(dest):
    os.mkdir(dest)
    dir_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = copies.create_file(dir_fd, "privkey.pem", uid(SERVICE_USER), gid(KEY_GROUP),
                            0o640)
        try:
            st = os.fstat(fd)
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_size) == \
                (uid(SERVICE_USER), gid(KEY_GROUP), 0o640, 0)
        finally:
            os.close(fd)
        with pytest.raises(FileExistsError):  # O_EXCL: never reuses a file
            copies.create_file(dir_fd, "privkey.pem", 0, 0, 0o600)
        os.symlink("/etc/passwd", os.path.join(dest, "planted"))
        with pytest.raises(OSError):  # O_NOFOLLOW
            copies.create_file(dir_fd, "planted", 0, 0, 0o600)
    finally:
        os.close(dir_fd)
    assert read("/etc/passwd")  # untouched


def test_combined_is_key_then_fullchain(dest, material):
    deploy(spec_for(dest, formats=("combined",)), material)
    path = os.path.join(dest, "combined.pem")
    assert read(path) == material["privkey"] + material["fullchain"]
    assert not os.path.lexists(os.path.join(dest, "privkey.pem"))
    if shutil.which("openssl"):
        key = subprocess.check_output(["openssl", "pkey", "-in", path, "-pubout"])
        cert = subprocess.check_output(["openssl", "x509", "-in", path, "-noout",
                                        "-pubkey"])
        assert key == cert


def test_pkcs12_with_password(dest, material):
    deploy(spec_for(dest, formats=("pkcs12",), password=b"s3cret"), material)
    data = read(os.path.join(dest, "bundle.p12"))
    key, cert, chain = pkcs12.load_key_and_certificates(data, b"s3cret",
                                                        default_backend())
    pem = serialization.Encoding.PEM
    assert _key_pem(key) == material["privkey"]
    assert cert.public_bytes(pem) == material["cert"]
    assert [c.public_bytes(pem) for c in chain] == [material["chain"]]
    for wrong in (b"wrong", None):
        with pytest.raises((ValueError, TypeError)):
            pkcs12.load_key_and_certificates(data, wrong, default_backend())
    if shutil.which("openssl"):
        out = subprocess.check_output(
            ["openssl", "pkcs12", "-in", os.path.join(dest, "bundle.p12"),
             "-passin", "pass:s3cret", "-nodes"], stderr=subprocess.DEVNULL)
        assert out.count(b"BEGIN CERTIFICATE") == 2 and b"PRIVATE KEY" in out


def test_pkcs12_empty_password_only_when_given(dest, material):
    with pytest.raises(CopyError, match="needs a password"):
        deploy(spec_for(dest, formats=("pem", "pkcs12")), material)
    assert not os.path.exists(os.path.join(dest, ".versions"))
    assert copies.current_version(dest) is None
    deploy(spec_for(dest, formats=("pkcs12",), password=b""), material)
    data = read(os.path.join(dest, "bundle.p12"))
    key, cert, _ = pkcs12.load_key_and_certificates(data, None, default_backend())
    assert _key_pem(key) == material["privkey"]


@pytest.mark.parametrize("bad", ["key", "names"])
def test_bad_material_switches_nothing(dest, material, material2, bad):
    spec = spec_for(dest, formats=copies.FORMATS, password=b"pw")
    first, _ = deploy(spec, material)
    wrong = dict(material2, privkey=material["privkey"]) if bad == "key" else material2
    names = NAMES + (["elsewhere.example.org"] if bad == "names" else [])
    with pytest.raises(CopyError, match="does not match" if bad == "key" else "does not cover"):
        deploy(spec, wrong, names)
    assert os.listdir(os.path.join(dest, ".versions")) == ["1"]
    assert copies.current_version(dest) == first
    assert read(os.path.join(dest, "privkey.pem")) == material["privkey"]


def test_refuses_planted_versions_link(dest, material):
    scratch = os.path.dirname(dest)
    spec = spec_for(dest)
    copies.prepare_destination(spec)
    elsewhere = os.path.join(scratch, "elsewhere")
    os.mkdir(elsewhere)
    os.symlink(elsewhere, os.path.join(dest, ".versions"))
    with pytest.raises(CopyError, match=".versions is not a directory"):
        copies.write_version(spec, material, NAMES)
    assert os.listdir(elsewhere) == []


# --- switch, rollback, prune -------------------------------------------------

def test_switch_rollback_prune(dest, material, material2):
    spec = spec_for(dest)
    files = copies.file_names(spec.formats)
    v1, previous = deploy(spec, material)
    assert previous is None
    for name in files:
        link = os.path.join(dest, name)
        assert os.readlink(link) == "current/" + name
    assert os.readlink(os.path.join(dest, "current")) == ".versions/1"

    v2, previous = deploy(spec, material2)
    assert (v2, previous) == (os.path.join(dest, ".versions", "2"), v1)
    assert read(os.path.join(dest, "privkey.pem")) == material2["privkey"]
    assert read(os.path.join(dest, "cert.pem")) == material2["cert"]
    # no temporary links left behind
    assert sorted(os.listdir(dest)) == sorted([".versions", "current"] + files)

    copies.rollback(dest, previous, files)
    assert copies.current_version(dest) == v1
    assert read(os.path.join(dest, "privkey.pem")) == material["privkey"]
    assert read(os.path.join(dest, "cert.pem")) == material["cert"]

    v3, _ = deploy(spec, material2)
    v4, _ = deploy(spec, material)
    assert v4 == os.path.join(dest, ".versions", "4")
    copies.rollback(dest, v1, files)
    # 1 is current and nothing is older: the newest below it is none, so
    # every other set goes
    assert copies.prunable(dest)
    assert copies.prune(dest) == [v2, v3, v4]
    assert not copies.prunable(dest)
    v5, previous = deploy(spec, material2)
    v6, previous = deploy(spec, material)
    assert previous == v5
    # just switched from v5: keep v6 (current) and v5 (to roll back to)
    assert copies.prune(dest, previous) == [v1]
    assert copies.prune(dest) == []
    assert sorted(os.listdir(os.path.join(dest, ".versions"))) == sorted(
        os.path.basename(v) for v in (v5, v6))
    assert copies.current_version(dest) == v6
    with pytest.raises(CopyError, match="is missing"):
        copies.switch(dest, v1, files)


def test_prune_keeps_the_set_switched_from_not_an_interrupted_newer_one(
        dest, material, material2):
    """A set an interrupted run wrote but never made current is not "the
    previous one": the set the service ran on before is."""
    spec = spec_for(dest)
    files = copies.file_names(spec.formats)
    v1, _ = deploy(spec, material)
    copies.write_version(spec, material2, NAMES)          # never switched: 2
    v3, previous = deploy(spec, material2)
    assert previous == v1
    assert copies.prune(dest, previous) == [os.path.join(dest, ".versions", "2")]
    assert sorted(os.listdir(os.path.join(dest, ".versions"))) == ["1", "3"]
    copies.rollback(dest, previous, files)
    assert read(os.path.join(dest, "cert.pem")) == material["cert"]


def test_prune_removes_links_a_killed_switch_left(dest, material):
    deploy(spec_for(dest), material)
    os.symlink(".versions/1", os.path.join(dest, ".current.0123456789ab"))
    assert copies.prunable(dest)
    copies.prune(dest)
    assert not os.path.lexists(os.path.join(dest, ".current.0123456789ab"))


def test_readers_never_see_a_partial_or_missing_file(dest, material, material2):
    """Each stable path opens to one complete file of one set, while switching."""
    spec = spec_for(dest, formats=("pem", "combined"))
    v1, _ = deploy(spec, material)
    v2, _ = deploy(spec, material2)
    files = copies.file_names(spec.formats)
    sets = [(material, material["privkey"] + material["fullchain"]),
            (material2, material2["privkey"] + material2["fullchain"])]
    wanted = {name: set() for name in files}
    for m, combined in sets:
        for kind in ("cert", "chain", "fullchain", "privkey"):
            wanted[kind + ".pem"].add(m[kind])
        wanted["combined.pem"].add(combined)
    stop = threading.Event()
    seen = []

    def reader():
        while not stop.is_set():
            for name in files:
                try:
                    seen.append(read(os.path.join(dest, name)) in wanted[name])
                except OSError as err:
                    seen.append(err)

    thread = threading.Thread(target=reader)
    thread.daemon = True
    thread.start()
    try:
        for i in range(300):
            copies.switch(dest, (v1, v2)[i % 2], files)
    finally:
        stop.set()
        thread.join(10)
    assert seen and all(ok is True for ok in seen), [e for e in seen if e is not True][:3]


def test_rollback_to_nothing_and_format_change(dest, material):
    spec = spec_for(dest)
    v1, _ = deploy(spec, material)
    wider = spec_for(dest, formats=("pem", "combined"))
    v2, previous = deploy(wider, material)
    assert read(os.path.join(dest, "combined.pem"))
    # strict switch refuses a version without the files asked for
    with pytest.raises(CopyError, match="has no combined.pem"):
        copies.switch(dest, v1, copies.file_names(wider.formats))
    copies.rollback(dest, previous, copies.file_names(wider.formats))
    assert copies.current_version(dest) == v1
    assert not os.path.exists(os.path.join(dest, "combined.pem"))  # dangles
    copies.rollback(dest, None, copies.file_names(spec.formats))
    assert copies.current_version(dest) is None
    assert copies.prune(dest) == []  # with nothing current, nothing is "old"


def test_current_version(dest):
    os.mkdir(dest)
    assert copies.current_version(dest) is None
    os.symlink(".versions/7", os.path.join(dest, "current"))
    assert copies.current_version(dest) == os.path.join(dest, ".versions", "7")
    os.unlink(os.path.join(dest, "current"))
    os.symlink("/etc", os.path.join(dest, "current"))
    with pytest.raises(CopyError, match="not a link certbot-wwu made"):
        copies.current_version(dest)
    os.unlink(os.path.join(dest, "current"))
    os.mkdir(os.path.join(dest, "current"))
    with pytest.raises(CopyError, match="not a link certbot-wwu made"):
        copies.current_version(dest)


@pytest.mark.parametrize("planted", ["link", "file", "other-link"])
def test_refuses_something_planted_at_a_stable_path(dest, material, planted):
    scratch = os.path.dirname(dest)
    spec = spec_for(dest)
    copies.prepare_destination(spec)
    path = os.path.join(dest, "privkey.pem")
    decoy = os.path.join(scratch, "decoy")
    with open(decoy, "w") as f:
        f.write("decoy")
    if planted == "link":
        os.symlink(decoy, path)
    elif planted == "other-link":
        os.symlink("current/cert.pem", path)
    else:
        with open(path, "w") as f:
            f.write("old key")
    with pytest.raises(CopyError, match=path + " exists and is not a link to "
                                               "current/privkey.pem"):
        deploy(spec, material)
    assert copies.current_version(dest) is None
    assert not os.path.lexists(os.path.join(dest, "cert.pem"))
    assert read(decoy) == b"decoy"
    assert os.path.islink(path) == (planted != "file")


def test_switch_refuses_foreign_version_dir(dest, material):
    scratch = os.path.dirname(dest)
    v1, _ = deploy(spec_for(dest), material)
    for bogus in (scratch, os.path.join(dest, ".versions", "x"), dest):
        with pytest.raises(CopyError, match="is not a version directory"):
            copies.switch(dest, bogus, ["cert.pem"])
    assert copies.current_version(dest) == v1


# --- lock --------------------------------------------------------------------

# --- who can read ------------------------------------------------------------

@needs_root
def test_read_as_owner_only(dest, material):
    deploy(spec_for(dest, group=None, formats=copies.FORMATS, password=b"pw"),
           material)
    for name in ("privkey.pem", "combined.pem", "bundle.p12", "cert.pem"):
        assert read_as(SERVICE_USER, os.path.join(dest, name)), name
    for name in ("privkey.pem", "combined.pem", "bundle.p12"):
        assert not read_as(OTHER_USER, os.path.join(dest, name)), name
    assert read_as(OTHER_USER, os.path.join(dest, "cert.pem"))


@needs_root
def test_read_as_owner_and_key_group(dest, material):
    deploy(spec_for(dest, group=KEY_GROUP, formats=("pem", "combined")), material)
    for name in ("privkey.pem", "combined.pem"):
        key = os.path.join(dest, name)
        assert read_as(SERVICE_USER, key)
        assert read_as(KEY_GROUP_MEMBER, key)
        assert not read_as(OTHER_USER, key)
    assert read_as(OTHER_USER, os.path.join(dest, "cert.pem"))  # 0755 dirs


@needs_root
def test_read_as_owner_and_own_group(dest, material):
    deploy(spec_for(dest, group=SERVICE_USER), material)
    assert read_as(SERVICE_USER, os.path.join(dest, "privkey.pem"))
    assert not read_as(KEY_GROUP_MEMBER, os.path.join(dest, "privkey.pem"))
    assert not read_as(OTHER_USER, os.path.join(dest, "privkey.pem"))
    assert not read_as(OTHER_USER, os.path.join(dest, "cert.pem"))  # 0750 dirs


# --- a hostile copy owner (issue: root chmod/chown anywhere, root rmtree) -----

def as_user(name, action):
    """Run ``action()`` in a child process as user ``name``; True if it worked."""
    account = pwd.getpwnam(name)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            action()
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1] == 0


@pytest.fixture
def victim(dest):
    """A root-only 0600 file the copy owner must never be able to read."""
    path = os.path.join(os.path.dirname(dest), "victim-key.pem")
    with open(path, "w") as f:
        f.write("root's secret\n")
    os.chmod(path, 0o600)
    return path


def _swap_for_link(path, target):
    os.rename(path, path + ".moved")
    os.symlink(target, path)


@needs_root
def test_copy_owner_cannot_turn_root_chmod_on_another_file(dest, victim, monkeypatch):
    """The copy owner owns the directory above DEST and swaps the fresh DEST
    for a link to a root-only file between root's mkdir and chown/chmod."""
    parent = os.path.join(os.path.dirname(dest), "svc-home")
    os.mkdir(parent, 0o755)
    os.chown(parent, uid(SERVICE_USER), gid(SERVICE_USER))
    target = os.path.join(parent, "tls")
    real_mkdir = os.mkdir
    raced = []

    def racing_mkdir(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        if os.path.basename(path) == "tls" and not raced:
            raced.append(as_user(SERVICE_USER, lambda: _swap_for_link(target, victim)))

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    with pytest.raises(CopyError, match=re.escape(parent) + " is owned by uid"):
        copies.prepare_destination(spec_for(target, group=SERVICE_USER))
    monkeypatch.undo()
    assert owner_mode(victim) == (0, 0, 0o600)
    assert not read_as(SERVICE_USER, victim)


@needs_root
def test_a_swap_after_the_check_changes_nothing_outside(dest, victim, monkeypatch):
    """Defence in depth: even a swap nobody could make (root's own parent)
    between mkdir and chmod does not reach the link's target."""
    real_mkdir = os.mkdir
    raced = []

    def racing_mkdir(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        if os.path.basename(path) == os.path.basename(dest) and not raced:
            raced.append(True)
            _swap_for_link(dest, victim)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    with pytest.raises(CopyError, match=re.escape(dest) + " is a symbolic link"):
        copies.prepare_destination(spec_for(dest, group=SERVICE_USER))
    monkeypatch.undo()
    assert raced
    assert owner_mode(victim) == (0, 0, 0o600)


@needs_root
def test_prune_never_removes_through_a_swapped_destination(dest, material, material2,
                                                           monkeypatch):
    """A swap of DEST for a link between prune's look at .versions and the
    removal must not make root delete numbered directories elsewhere."""
    spec = spec_for(dest)
    for m in (material, material2, material, material2):
        deploy(spec, m)
    elsewhere = os.path.join(os.path.dirname(dest), "elsewhere")
    for number in ("1", "2"):
        os.makedirs(os.path.join(elsewhere, ".versions", number))
        with open(os.path.join(elsewhere, ".versions", number, "data"), "w") as f:
            f.write("not certbot-wwu's\n")
    real_listdir = os.listdir
    raced = []

    def racing_listdir(path="."):
        entries = real_listdir(path)
        if not raced and set(entries) >= {"1", "2", "3", "4"}:
            raced.append(True)
            _swap_for_link(dest, elsewhere)
        return entries

    monkeypatch.setattr(os, "listdir", racing_listdir)
    try:
        copies.prune(dest)
    except CopyError:
        pass
    monkeypatch.undo()
    assert raced
    for number in ("1", "2"):
        assert os.path.exists(os.path.join(elsewhere, ".versions", number, "data"))


# --- the PKCS#12 password file ----------------------------------------------

@pytest.fixture
def password_path(dest):
    path = os.path.join(os.path.dirname(dest), "p12-password")
    with open(path, "w") as f:
        f.write("s3cret\n")
    os.chmod(path, 0o600)
    return path


def test_password_is_read_from_roots_private_file(password_path):
    assert copies.read_password(password_path) == b"s3cret"


@needs_root
@pytest.mark.parametrize("problem, match", [
    ("group-readable", "can be read or written by its group or others \\(mode 0640\\)"),
    ("owned-by-service", "is owned by uid .*, not root"),
    ("fifo", "is not a regular file"),
    ("device", "is not a regular file"),
    ("link", "it is a symbolic link"),
    ("huge", "is larger than 4096 bytes"),
])
def test_password_file_others_control_is_refused(password_path, problem, match):
    path = password_path
    if problem == "group-readable":
        os.chmod(path, 0o640)
    elif problem == "owned-by-service":
        os.chown(path, uid(SERVICE_USER), 0)
    elif problem == "fifo":
        os.unlink(path)
        os.mkfifo(path, 0o600)
    elif problem == "device":
        path = "/dev/zero"
    elif problem == "link":
        os.unlink(path)
        os.symlink("/dev/zero", path)
    elif problem == "huge":
        with open(path, "w") as f:
            f.write("x" * 5000)
    started = time.monotonic()
    with pytest.raises(CopyError, match="The PKCS#12 password file {} {}".format(
            re.escape(path), match) if problem != "link" else match):
        copies.read_password(path)
    assert time.monotonic() - started < 5
