"""certbot_wwu.lineage on a real lineage made by certbot against Pebble."""
import os
import shutil
import time

import pytest

from certbot_wwu.errors import LineageError
from certbot_wwu.lineage import KINDS, Lineage, find_by_names
from tests.conftest import needs_root

NAME = "unit.example.org"


@pytest.fixture
def lineage(lineage_dir):
    return Lineage(lineage_dir, "unit")


@needs_root
def test_paths(lineage, lineage_dir):
    assert lineage.config_dir == lineage_dir
    assert lineage.live_dir == os.path.join(lineage_dir, "live", "unit")
    assert lineage.live_path("privkey") == os.path.join(
        lineage_dir, "live", "unit", "privkey.pem")
    assert lineage.renewal_conf == os.path.join(lineage_dir, "renewal", "unit.conf")
    assert os.path.isfile(lineage.renewal_conf)
    assert "unit" in repr(lineage)


@needs_root
def test_relative_config_dir_is_made_absolute(lineage_dir, monkeypatch):
    monkeypatch.chdir(os.path.dirname(lineage_dir))
    lineage = Lineage(os.path.basename(lineage_dir), "unit")
    assert lineage.config_dir == lineage_dir
    assert lineage.version() == 2


@needs_root
def test_current_points_at_the_newest_archive_files(lineage, lineage_dir):
    files = lineage.current()
    assert sorted(files) == sorted(KINDS)
    archive = os.path.join(lineage_dir, "archive", "unit")
    for kind in KINDS:
        assert files[kind] == os.path.join(archive, "{}2.pem".format(kind))
        assert os.path.isfile(files[kind])
    assert lineage.archive_dir == archive


@needs_root
def test_version_and_versions(lineage):
    assert lineage.version() == 2
    assert lineage.versions() == [1, 2]
    assert lineage.archive_file("privkey", 1) == os.path.join(
        lineage.archive_dir, "privkey1.pem")


@needs_root
def test_version_follows_the_live_links(lineage):
    for kind in KINDS:
        link = lineage.live_path(kind)
        os.unlink(link)
        os.symlink("../../archive/unit/{}1.pem".format(kind), link)
    assert lineage.version() == 1
    assert lineage.current()["cert"].endswith("cert1.pem")
    assert lineage.versions() == [1, 2]


@needs_root
def test_version_of_given_files(lineage):
    files = lineage.current()
    files["privkey"] = lineage.archive_file("privkey", 7)
    assert lineage.version(files) == 7


@needs_root
def test_versions_ignores_other_files(lineage):
    for name in ("privkey10.pem~", "README", "privkey.pem", "other3.pem"):
        with open(os.path.join(lineage.archive_dir, name), "w") as f:
            f.write("x")
    with open(os.path.join(lineage.archive_dir, "cert10.pem"), "w") as f:
        f.write("x")
    assert lineage.versions() == [1, 2, 10]


@needs_root
def test_version_of_an_unversioned_key_is_an_error(lineage):
    link = lineage.live_path("privkey")
    target = os.path.join(lineage.archive_dir, "key.pem")
    shutil.copy(lineage.archive_file("privkey", 2), target)
    os.unlink(link)
    os.symlink(target, link)
    with pytest.raises(LineageError, match="privkeyN.pem"):
        lineage.version()


@needs_root
def test_names(lineage):
    assert lineage.names() == [NAME]


@needs_root
def test_from_live_path(lineage_dir):
    found = Lineage.from_live_path(os.path.join(lineage_dir, "live", "unit", "cert.pem"))
    assert found.name == "unit"
    assert found.config_dir == lineage_dir
    assert found.version() == 2


@needs_root
@pytest.mark.parametrize("relative", [
    "archive/unit/cert2.pem",
    "renewal/unit.conf",
    "cert.pem",
    "live/cert.pem",
])
def test_from_live_path_outside_live_is_an_error(lineage_dir, relative):
    with pytest.raises(LineageError, match="not inside a certbot 'live' directory"):
        Lineage.from_live_path(os.path.join(lineage_dir, relative))


def test_from_live_path_of_a_copy_elsewhere_is_an_error(tmp_path):
    path = os.path.join(str(tmp_path), "certs", "unit", "cert.pem")
    with pytest.raises(LineageError, match="only deploys certificates that certbot manages"):
        Lineage.from_live_path(path)


@needs_root
@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/unit"])
def test_bad_names_are_rejected(lineage_dir, name):
    with pytest.raises(LineageError, match="is not a certificate name"):
        Lineage(lineage_dir, name)


@needs_root
def test_missing_lineage_is_an_error(lineage_dir):
    lineage = Lineage(lineage_dir, "nope")
    with pytest.raises(LineageError) as info:
        lineage.current()
    assert str(info.value).startswith("There is no certificate nope in ")
    assert str(info.value).startswith("There is no certificate nope in ")
    with pytest.raises(LineageError):
        lineage.version()


@needs_root
def test_dangling_live_link_is_an_error(lineage):
    os.unlink(lineage.archive_file("chain", 2))
    with pytest.raises(LineageError, match="has no chain"):
        lineage.current()


@needs_root
def test_find_by_names(lineage_dir):
    found = find_by_names(lineage_dir, [NAME])
    assert found is not None
    assert found.name == "unit"
    assert found.config_dir == lineage_dir


@needs_root
@pytest.mark.parametrize("names", [[], ["other.example.org"],
                                   [NAME, "www.unit.example.org"]])
def test_find_by_names_needs_exactly_the_names(lineage_dir, names):
    assert find_by_names(lineage_dir, names) is None


@needs_root
def test_find_by_names_ignores_duplicates_and_order(lineage_dir):
    assert find_by_names(lineage_dir, [NAME, NAME]).name == "unit"


def test_find_by_names_without_live_dir(tmp_path):
    assert find_by_names(str(tmp_path), [NAME]) is None


def copy_lineage(config_dir, source, target):
    shutil.copytree(os.path.join(config_dir, "archive", source),
                    os.path.join(config_dir, "archive", target))
    live = os.path.join(config_dir, "live", target)
    os.mkdir(live)
    for kind in KINDS:
        os.symlink("../../archive/{}/{}2.pem".format(target, kind),
                   os.path.join(live, kind + ".pem"))
    return Lineage(config_dir, target)


@needs_root
def test_find_by_names_picks_the_newest(lineage_dir):
    old = Lineage(lineage_dir, "unit")
    new = copy_lineage(lineage_dir, "unit", "unit-0001")
    now = time.time()
    os.utime(old.live_path("cert"), (now - 100, now - 100))
    os.utime(new.live_path("cert"), (now, now))
    assert find_by_names(lineage_dir, [NAME]).name == "unit-0001"
    os.utime(old.live_path("cert"), (now + 100, now + 100))
    assert find_by_names(lineage_dir, [NAME]).name == "unit"


@needs_root
def test_find_by_names_skips_broken_lineages(lineage_dir):
    broken = copy_lineage(lineage_dir, "unit", "broken")
    with open(os.path.join(broken.archive_dir, "cert2.pem"), "w") as f:
        f.write("not a certificate\n")
    os.utime(broken.live_path("cert"), (time.time() + 100,) * 2)
    # a dangling lineage and a stray file in live/ are skipped too
    os.mkdir(os.path.join(lineage_dir, "live", "empty"))
    assert os.path.isfile(os.path.join(lineage_dir, "live", "README"))
    assert find_by_names(lineage_dir, [NAME]).name == "unit"
