"""Copy mode with real certbot: formats, owners, renewal, rollback, refusals."""
import os
import subprocess

import pytest

from tests.e2e.snapshot import snapshot
from tests.support.host import OTHER_USER, SERVICE_USER, getfacl, read_as

pytestmark = pytest.mark.e2e


def openssl(*args, **kwargs):
    return subprocess.check_output(["openssl"] + list(args), **kwargs)


def pubkey_of_cert(path):
    return openssl("x509", "-in", path, "-noout", "-pubkey")


def pubkey_of_key(path):
    return openssl("pkey", "-in", path, "-pubout")


@pytest.fixture
def dest(scratch):
    os.mkdir(os.path.join(scratch, "srv"))  # the parent must exist
    return os.path.join(scratch, "srv", "tls")


@pytest.fixture
def password_file(scratch):
    path = os.path.join(scratch, "p12-password")
    with open(path, "w") as f:
        f.write("s3cret-for-tests\n")
    os.chmod(path, 0o600)
    return path


def copy_run(certbot, name, dest, *options):
    return certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", name + ".example.org",
                        "--cert-name", name, "--wwu-acl-copy-to", dest,
                        "--wwu-acl-copy-owner", SERVICE_USER, *options)


def test_every_format_with_owner_modes_and_content(certbot, dest, password_file):
    copy_run(certbot, "c", dest, "--wwu-acl-copy-formats", "pem,combined,pkcs12",
             "--wwu-acl-p12-password-file", password_file, "--wwu-acl-unit", "web")
    for name in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem",
                 "combined.pem", "bundle.p12"):
        path = os.path.join(dest, name)
        assert os.path.islink(path) and os.readlink(path) == "current/" + name
        st = os.stat(path)
        assert st.st_uid == int(subprocess.check_output(["id", "-u", SERVICE_USER]))
        secret = name in ("privkey.pem", "combined.pem", "bundle.p12")
        assert oct(st.st_mode & 0o777) == oct(0o600 if secret else 0o644), name
        assert read_as(SERVICE_USER, path)
        assert read_as(OTHER_USER, path) != secret, name
    with open(certbot.live("c", "cert"), "rb") as f:
        assert open(os.path.join(dest, "cert.pem"), "rb").read() == f.read()
    assert pubkey_of_cert(os.path.join(dest, "cert.pem")) == \
        pubkey_of_key(os.path.join(dest, "privkey.pem"))
    combined = open(os.path.join(dest, "combined.pem")).read()
    assert combined.startswith("-----BEGIN PRIVATE KEY-----")
    assert combined.index("PRIVATE KEY-----") < combined.index("BEGIN CERTIFICATE")
    assert combined.endswith(open(certbot.live("c", "fullchain")).read())
    dump = openssl("pkcs12", "-in", os.path.join(dest, "bundle.p12"), "-nodes",
                   "-passin", "file:" + password_file, universal_newlines=True)
    assert dump.count("BEGIN CERTIFICATE") == open(
        certbot.live("c", "fullchain")).read().count("BEGIN CERTIFICATE")
    assert "PRIVATE KEY" in dump
    wrong = subprocess.call(["openssl", "pkcs12", "-in", os.path.join(dest, "bundle.p12"),
                             "-nodes", "-passin", "pass:wrong"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wrong != 0
    conf = certbot.read_renewal_conf("c")
    assert "s3cret" not in conf and "wwu_acl_p12_password_file = " + password_file in conf
    assert "s3cret" not in open(os.path.join(certbot.logs_dir, "letsencrypt.log")).read()
    assert certbot.systemctl.actions() == ["restart web.service"]


def certbots_own(certbot):
    """The tree without our own state directory and the renewal confs (whose
    installer lines we own; other tests check the rest stays as it was)."""
    ours = os.path.join(certbot.config_dir, "wwu-acl")
    return {p: v for p, v in snapshot(certbot.config_dir).items()
            if "/renewal/" not in p and p != ours and not p.startswith(ours + "/")}


def test_copy_mode_alone_leaves_certbots_tree_as_certbot_made_it(certbot, dest):
    certbot.acme("certonly", "-a", "standalone", "-d", "t.example.org", "--cert-name", "t")
    before = certbots_own(certbot)
    certbot("install", "--cert-name", "t", "-i", "wwu-acl", "--wwu-acl-copy-to", dest,
            "--wwu-acl-copy-owner", SERVICE_USER, "--wwu-acl-action", "none")
    assert certbots_own(certbot) == before
    assert "user:" not in getfacl(os.path.realpath(certbot.live("t"))).replace("user::", "")
    assert read_as(SERVICE_USER, os.path.join(dest, "privkey.pem"))


def test_renewal_refreshes_the_copies_and_keeps_two_versions(certbot, dest):
    copy_run(certbot, "r", dest, "--wwu-acl-user", SERVICE_USER)
    for _ in range(3):
        certbot.renew("--force-renewal")
        with open(certbot.live("r", "cert"), "rb") as f:
            assert open(os.path.join(dest, "cert.pem"), "rb").read() == f.read()
        assert pubkey_of_cert(os.path.join(dest, "cert.pem")) == \
            pubkey_of_key(os.path.join(dest, "privkey.pem"))
    assert sorted(os.listdir(os.path.join(dest, ".versions"))) == ["3", "4"]
    assert read_as(SERVICE_USER, certbot.live("r"))


def test_deleted_or_stale_copies_are_rewritten_by_the_timer(certbot, dest):
    copy_run(certbot, "h", dest)
    os.unlink(os.path.realpath(os.path.join(dest, "privkey.pem")))
    certbot.renew()
    assert read_as(SERVICE_USER, os.path.join(dest, "privkey.pem"))
    os.chmod(os.path.realpath(os.path.join(dest, "privkey.pem")), 0o644)
    certbot.renew()
    assert not read_as(OTHER_USER, os.path.join(dest, "privkey.pem"))


def test_failed_unit_rolls_the_copies_back(certbot, dest):
    copy_run(certbot, "b", dest, "--wwu-acl-unit", "web")
    old = open(os.path.join(dest, "cert.pem"), "rb").read()
    certbot.systemctl.fail("web.service")
    result = certbot.renew("--force-renewal", check=False)
    assert result.code != 0, result
    assert "'systemctl restart web.service' failed" in result.output
    assert "previous certificate is back in place in " + dest in result.output
    assert open(os.path.join(dest, "cert.pem"), "rb").read() == old
    assert pubkey_of_cert(os.path.join(dest, "cert.pem")) == \
        pubkey_of_key(os.path.join(dest, "privkey.pem"))


def test_destination_under_a_group_writable_directory_is_refused(certbot, scratch):
    shared = os.path.join(scratch, "shared")
    os.makedirs(shared)
    os.chmod(shared, 0o775)
    certbot.acme("certonly", "-a", "standalone", "-d", "g.example.org", "--cert-name", "g")
    result = certbot("install", "--cert-name", "g", "-i", "wwu-acl",
                     "--wwu-acl-copy-to", os.path.join(shared, "tls"),
                     "--wwu-acl-copy-owner", SERVICE_USER, check=False)
    assert result.code != 0, result
    assert shared in result.err and "writable" in result.err
    assert "Traceback" not in result.output
    assert not os.path.exists(os.path.join(shared, "tls"))


def test_symlink_planted_at_the_destination_is_refused(certbot, dest, scratch):
    copy_run(certbot, "p", dest)
    target = os.path.join(scratch, "stolen.pem")
    link = os.path.join(dest, "privkey.pem")
    os.unlink(link)
    os.symlink(target, link)
    result = certbot.renew("--force-renewal", check=False)
    assert result.code != 0, result
    assert link in result.output
    assert not os.path.exists(target)
