"""Fixtures for the tests under a real systemd (tests/support/realsystemd.py).

Each test module gets its own instance (boot ≈ 0.5 s). Where no systemd can
boot, the tests skip with the reason -- except in CI (CI=true), where that
reason fails them: the suite never passes by not running.
"""
import os

import pytest

from tests.support import host
from tests.support.realsystemd import BootError, Instance, cannot_boot


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("real-systemd tests cannot run in CI: " + reason, pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here + os.sep):
            item.add_marker(pytest.mark.systemd)


@pytest.fixture(scope="module")
def instance(request):
    """A booted systemd for this module, powered off afterwards."""
    reason = cannot_boot()
    if reason:
        unavailable(reason)
    if host.is_root():
        host.ensure_test_accounts()  # before boot: /etc is an overlay inside
    name = "wwu-" + request.module.__name__.rsplit(".", 1)[-1].replace("test_", "")[:20]
    booted = Instance(name.replace("_", "-"))
    try:
        booted.boot()
    except BootError as err:
        unavailable(str(err))
    yield booted
    booted.stop()
