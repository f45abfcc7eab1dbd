"""Disk full, no ACL support, read-only, permission denied: a clear error,
and what the service uses stays intact."""
import os
import subprocess

import pytest

from certbot_wwu import deploy
from certbot_wwu.errors import CopyError, GrantError
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import Settings
from tests.conftest import needs_root
from tests.e2e.snapshot import snapshot
from tests.support.host import OTHER_USER, SERVICE_USER, read_as

pytestmark = needs_root


def files_of(lineage, version):
    return {kind: lineage.archive_file(kind, version) for kind in KINDS}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def copy_settings(dest):
    return Settings(copy_to=dest, copy_owner=(SERVICE_USER, ""), copy_formats=("pem",))


def test_disk_full_keeps_the_previous_copies_in_use(lineage_dir, mount):
    lineage = Lineage(lineage_dir, "unit")
    dest = os.path.join(mount("tmpfs", "size=256k,mode=0755"), "tls")
    spec = deploy.copy_spec(copy_settings(dest))
    deploy.write_copies(spec, lineage, files_of(lineage, 1))
    filler = os.path.join(os.path.dirname(dest), "filler")
    subprocess.call(["dd", "if=/dev/zero", "of=" + filler, "bs=4k"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with pytest.raises(CopyError, match="the disk is full"):
        deploy.write_copies(spec, lineage, files_of(lineage, 2))
    assert read(os.path.join(dest, "cert.pem")) == read(lineage.archive_file("cert", 1))
    assert read(os.path.join(dest, "privkey.pem")) == read(lineage.archive_file("privkey", 1))
    assert read_as(SERVICE_USER, os.path.join(dest, "privkey.pem"))
    assert sorted(os.listdir(os.path.join(dest, ".versions"))) == ["1"]
    os.unlink(filler)
    deploy.write_copies(spec, lineage, files_of(lineage, 2))
    assert read(os.path.join(dest, "cert.pem")) == read(lineage.archive_file("cert", 2))


def test_no_acl_support_suggests_copy_mode(lineage_template, mount):
    ramfs = mount("ramfs", "mode=0755")
    config_dir = os.path.join(ramfs, "etc")
    subprocess.check_call(["cp", "-a", lineage_template.config_dir, config_dir])
    lineage = Lineage(config_dir, "unit")
    before = snapshot(config_dir)
    with pytest.raises(GrantError, match=r"does not support POSIX ACLs.*--wwu-acl-copy-to"):
        deploy.deploy(Settings(users=[SERVICE_USER]), lineage)
    assert snapshot(config_dir) == before


def test_read_only_certbot_tree_is_one_sentence(lineage_dir, bind_ro):
    lineage = Lineage(lineage_dir, "unit")
    before = snapshot(lineage_dir)
    bind_ro(lineage_dir)
    with pytest.raises(GrantError, match="mounted read-only"):
        deploy.deploy(Settings(users=[SERVICE_USER]), lineage)
    assert snapshot(lineage_dir) == before


def test_read_only_copy_destination_keeps_the_copies(lineage_dir, scratch, bind_ro):
    lineage = Lineage(lineage_dir, "unit")
    dest = os.path.join(scratch, "srv", "tls")
    os.makedirs(os.path.dirname(dest), exist_ok=True)  # the parent must exist
    spec = deploy.copy_spec(copy_settings(dest))
    deploy.write_copies(spec, lineage, files_of(lineage, 1))
    bind_ro(dest)
    with pytest.raises(CopyError, match="read-only"):
        deploy.write_copies(spec, lineage, files_of(lineage, 2))
    assert read(os.path.join(dest, "cert.pem")) == read(lineage.archive_file("cert", 1))


def test_permission_denied_on_the_copy_destination(lineage_dir, scratch):
    lineage = Lineage(lineage_dir, "unit")
    dest = os.path.join(scratch, "srv", "tls")
    os.makedirs(os.path.dirname(dest), exist_ok=True)  # the parent must exist
    spec = deploy.copy_spec(copy_settings(dest))
    deploy.write_copies(spec, lineage, files_of(lineage, 1))
    versions = os.path.join(dest, ".versions")
    if subprocess.call(["chattr", "+i", versions], stderr=subprocess.DEVNULL) != 0:
        pytest.skip("this filesystem has no immutable attribute (chattr)")
    try:
        with pytest.raises(CopyError, match="permission denied even for root"):
            deploy.write_copies(spec, lineage, files_of(lineage, 2))
    finally:
        subprocess.call(["chattr", "-i", versions])
    assert read(os.path.join(dest, "cert.pem")) == read(lineage.archive_file("cert", 1))
    assert not read_as(OTHER_USER, os.path.join(dest, "privkey.pem"))
