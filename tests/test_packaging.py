"""Packaging: one version everywhere, what the sdist carries and what the
wheel leaves out.

The first tests check the tree the tests run from, so that in an unpacked
sdist they check the sdist itself. The others need a git checkout: they copy
the tracked files (as they are in the work tree, committed or not) to a
scratch directory, build an sdist and a wheel there with the setuptools of
this interpreter (offline, no build isolation) and compare.
"""
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOP_LEVEL = ("LICENSE", "README.md", "CHANGELOG.md", "MANIFEST.in", "Makefile",
             "pytest.ini", "setup.py", "pyproject.toml")
#: directories the sdist carries whole (MANIFEST.in grafts them)
GRAFTED = ("certbot_wwu/", "tests/", "docs/", "scripts/", "debian/", "rpm/")
SPEC = "rpm/certbot-wwu.spec"
SYSTEMCTL = "tests/support/bin/systemctl"
PROBE = """
import sys
try:
    import setuptools, pip
except ImportError as e:
    print(e)
    sys.exit(1)
try:
    import wheel
except ImportError:
    try:
        import setuptools.command.bdist_wheel
    except ImportError:
        print("no wheel")
        sys.exit(1)
"""


def _read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def _code_version():
    """certbot_wwu/__init__.py: the single source of the version."""
    found = re.findall(r'^__version__ = "([^"]+)"$', _read("certbot_wwu/__init__.py"), re.M)
    assert len(found) == 1, "certbot_wwu/__init__.py must set __version__ once"
    return found[0]


def test_version_is_a_release_number():
    assert re.match(r"^\d+\.\d+\.\d+$", _code_version())


def test_debian_changelog_has_the_code_version():
    first = _read("debian/changelog").splitlines()[0]
    match = re.match(r"^certbot-wwu \(([^)]+)\) ", first)
    assert match, "debian/changelog does not start with an entry: " + first
    # a native package: the Debian version is the upstream version
    assert match.group(1) == _code_version(), \
        "debian/changelog says {}, certbot_wwu/__init__.py {}".format(
            match.group(1), _code_version())


def test_rpm_spec_has_the_code_version():
    spec = _read(SPEC)
    versions = re.findall(r"^Version:\s*(\S+)\s*$", spec, re.M)
    assert versions == [_code_version()], \
        "{} Version: {}, certbot_wwu/__init__.py {}".format(SPEC, versions, _code_version())
    # the newest %changelog entry is for this version too
    entries = re.findall(r"^\* .* - (\S+)-\d+\S*$", spec.split("%changelog", 1)[1], re.M)
    assert entries and entries[0] == _code_version(), entries


def test_changelog_md_has_the_code_version_on_top():
    headings = re.findall(r"^## (\S+)", _read("CHANGELOG.md"), re.M)
    assert headings and headings[0] == _code_version(), \
        "CHANGELOG.md's newest section is {}, certbot_wwu/__init__.py {}".format(
            headings[:1], _code_version())


def test_docs_and_man_page_read_the_code_version():
    namespace = {"__file__": os.path.join(ROOT, "docs", "conf.py")}
    exec(compile(_read("docs/conf.py"), namespace["__file__"], "exec"), namespace)
    assert namespace["release"] == namespace["version"] == _code_version()
    assert [m[1] for m in namespace["man_pages"]] == ["certbot-wwu"]


def test_setup_py_reads_the_version_from_the_package():
    source = _read("setup.py")
    assert "version=VERSION" in source and '"__init__.py"' in source
    assert not re.search(r"version\s*=\s*['\"]\d", source)


def test_command_reports_the_code_version():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from certbot_wwu.cli import main; "
         "sys.exit(main(['--version']))"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True)
    assert proc.stdout.strip() == "certbot-wwu " + _code_version(), proc.stdout


def test_tree_has_what_the_sdist_carries():
    wanted = list(TOP_LEVEL) + [
        "docs/conf.py", "docs/index.rst", "docs/man/certbot-wwu.rst",
        "debian/control", "debian/tests/control", SPEC,
        "tests/conftest.py", SYSTEMCTL, "tests/e2e/__init__.py",
        "tests/faults/__init__.py", "tests/cluster/__init__.py",
        "scripts/make-venv", "scripts/setup-host",
    ]
    missing = [p for p in wanted if not os.path.isfile(os.path.join(ROOT, p))]
    assert missing == []


def test_systemctl_helper_keeps_its_exec_bit():
    assert os.stat(os.path.join(ROOT, SYSTEMCTL)).st_mode & stat.S_IXUSR


def _tracked():
    if not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("needs a git checkout (an unpacked sdist has no .git)")
    if shutil.which("git") is None:
        pytest.skip("needs git")
    out = subprocess.check_output(["git", "-C", ROOT, "ls-files", "-z"])
    return [p for p in out.decode("utf-8").split("\0")
            if p and os.path.isfile(os.path.join(ROOT, p))]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist members without the top directory -> mode, wheel names,
    wheel entry_points.txt, tracked files)."""
    tracked = _tracked()
    # probed in a child: importing setuptools here would replace distutils
    # under pytest's feet
    probe = subprocess.run([sys.executable, "-c", PROBE], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, universal_newlines=True)
    if probe.returncode != 0:
        pytest.skip("needs setuptools, pip and wheel (or setuptools >= 70.1) in "
                    "this interpreter to build: " + probe.stdout.strip())
    base = tmp_path_factory.mktemp("packaging")
    src, dist = str(base / "src"), str(base / "dist")
    for path in tracked:
        target = os.path.join(src, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, path), target)
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    for argv in ([sys.executable, "setup.py", "-q", "sdist", "--formats=gztar", "-d", dist],
                 [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                  "--no-build-isolation", "-w", dist, src]):
        proc = subprocess.run(argv, cwd=src, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True)
        assert proc.returncode == 0, proc.stdout
    names = os.listdir(dist)
    sdist = [n for n in names if n.endswith(".tar.gz")]
    wheel = [n for n in names if n.endswith(".whl")]
    assert len(sdist) == 1 and len(wheel) == 1, names
    with tarfile.open(os.path.join(dist, sdist[0])) as tar:
        members = {m.name.split("/", 1)[1]: m.mode for m in tar.getmembers()
                   if m.isfile()}
    with zipfile.ZipFile(os.path.join(dist, wheel[0])) as whl:
        wheel_names = whl.namelist()
        entry_points = next(whl.read(n).decode("utf-8") for n in wheel_names
                            if n.endswith(".dist-info/entry_points.txt"))
    return members, wheel_names, entry_points, tracked


def test_sdist_carries_every_tracked_file_it_should(built):
    members, _, _, tracked = built
    wanted = [p for p in tracked if p in TOP_LEVEL or p.startswith(GRAFTED)]
    assert [p for p in wanted if p not in members] == []


def test_sdist_carries_no_build_leftovers(built):
    members = built[0]
    assert [m for m in members if m.startswith("docs/_build/")
            or "__pycache__" in m or m.endswith((".pyc", ".pyo"))] == []


def test_sdist_keeps_exec_bits(built):
    members, _, _, tracked = built
    assert members[SYSTEMCTL] & stat.S_IXUSR
    for path in tracked:
        if path.startswith("scripts/") and os.access(os.path.join(ROOT, path), os.X_OK):
            assert members[path] & stat.S_IXUSR, path


def test_built_files_carry_the_code_version(built):
    members, names, _, _ = built
    assert "PKG-INFO" in members
    assert "certbot_wwu-{}.dist-info/METADATA".format(_code_version()) in names


def test_wheel_is_the_package_only(built):
    _, names, _, _ = built
    outside = [n for n in names if not n.startswith("certbot_wwu/")
               and ".dist-info/" not in n]
    assert outside == []
    assert "certbot_wwu/__init__.py" in names
    assert [n for n in names if n.startswith("tests/")] == []


def test_wheel_entry_points(built):
    entry_points = built[2].replace(" ", "")
    assert "[certbot.plugins]\nwwu-acl=certbot_wwu.installer:Installer" in entry_points
    assert "[console_scripts]\ncertbot-wwu=certbot_wwu.cli:main" in entry_points
