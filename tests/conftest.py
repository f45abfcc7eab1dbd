"""Shared fixtures: Pebble, real users, real certbot, real lineages.

Tests that need root or Pebble skip with a reason when those are missing, so
an unpacked sdist's tests still run offline as a normal user.
"""
import os
import shutil
import tempfile

import pytest

from tests.support import host
from tests.support.certbot import Certbot, certbot_executable
from tests.support.pebble import Pebble
from tests.support.systemd import RecordingSystemctl

#: traversable by the service users (pytest's own tmp dirs are 0700)
TEST_BASE = os.environ.get("WWU_TEST_BASE", "/var/tmp/certbot-wwu-tests")

needs_root = pytest.mark.skipif(not host.is_root(), reason="needs root (real users and ACLs)")


def _missing_pebble():
    """Why Pebble cannot run here, or None: PEBBLE_BIN if set, else pebble on
    PATH (not Pebble's own /usr/bin fallback, so that a PATH without pebble
    skips instead of erroring or quietly using another binary)."""
    explicit = os.environ.get("PEBBLE_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            return "needs pebble: PEBBLE_BIN={} is not executable".format(explicit)
        return None
    if shutil.which("pebble") is None:
        return "needs pebble (make test installs it)"
    return None


def _missing_e2e_tools():
    if not host.is_root():
        return "needs root (real users and ACLs)"
    reason = _missing_pebble()
    if reason:
        return reason
    for tool in ("openssl", "runuser", "getfacl"):
        if shutil.which(tool) is None:
            return "needs {} (make test installs it)".format(tool)
    if not os.access(certbot_executable(), os.X_OK):
        return "needs certbot at {}".format(certbot_executable())
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: needs root, Pebble and certbot")
    config.addinivalue_line("markers", "systemd: runs under a real systemd booted "
                            "in namespaces (tests/systemd, make test-systemd)")


def pytest_collection_modifyitems(config, items):
    reason = _missing_e2e_tools()
    if reason:
        for item in items:
            if "e2e" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def pebble():
    # checked before starting it: lineage_template (used by unit tests that
    # are not marked e2e) asks for Pebble before its own check
    reason = _missing_e2e_tools()
    if reason:
        pytest.skip(reason)
    workdir = tempfile.mkdtemp(prefix="pebble-")
    server = Pebble(workdir, eab_keys=400).start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def accounts():
    if not host.is_root():
        pytest.skip("needs root (real users and ACLs)")
    host.ensure_test_accounts()


@pytest.fixture
def scratch():
    """A directory the service users can traverse, removed afterwards."""
    os.makedirs(TEST_BASE, exist_ok=True)
    os.chmod(TEST_BASE, 0o755)
    path = tempfile.mkdtemp(dir=TEST_BASE)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def systemctl(scratch):
    """The recording stand-in, for unit tests of the argv we build; the
    end-to-end tests override this with real units (tests/e2e/conftest.py)."""
    return RecordingSystemctl(os.path.join(scratch, "systemctl"))


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    """The recording systemctl first on PATH of this process (unit tests)."""
    systemctl = RecordingSystemctl(os.path.join(str(tmp_path), "systemctl"))
    for name, value in systemctl.env().items():
        monkeypatch.setenv(name, value)
    return systemctl


@pytest.fixture
def certbot(scratch, pebble, systemctl, accounts):
    """Real certbot with a fresh config tree and an EAB-registered account."""
    bot = Certbot(scratch, pebble, systemctl)
    bot.register()
    return bot


@pytest.fixture(scope="session")
def lineage_template(pebble, accounts):
    """A real lineage with two versions, made once by certbot."""
    if _missing_e2e_tools():
        pytest.skip(_missing_e2e_tools())
    os.makedirs(TEST_BASE, exist_ok=True)
    root = tempfile.mkdtemp(dir=TEST_BASE)
    bot = Certbot(root, pebble)  # no installer: acts on no unit
    bot.register()
    bot.acme("certonly", "-a", "standalone", "-d", "unit.example.org",
             "--cert-name", "unit")
    bot.renew("--force-renewal")
    yield bot
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def lineage_dir(lineage_template, scratch):
    """A private copy of the template's config dir (symlinks and modes kept)."""
    config_dir = os.path.join(scratch, "etc")
    shutil.copytree(lineage_template.config_dir, config_dir, symlinks=True)
    return config_dir
