"""The end-to-end tests run certbot and certbot-wwu inside one real systemd
per session (tests/support/realsystemd.py), against real units
(tests/support/realunits.py): no recording stand-in.

Where no systemd can boot the tests skip with the reason, except in CI
(CI=true), where that reason fails them: the suite never passes by not running.
"""
import os

import pytest

from tests.support.realsystemd import BootError, Instance, cannot_boot
from tests.support.realunits import RealSystemctl


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("end-to-end tests need a real systemd and cannot run in CI: " + reason,
                    pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def e2e_units(accounts):
    """One booted systemd with the test units for all end-to-end tests (the
    test users exist before it boots: /etc is an overlay inside)."""
    reason = cannot_boot()
    if reason:
        _unavailable(reason)
    instance = Instance("wwu-e2e")
    try:
        instance.boot()
    except BootError as err:
        _unavailable(str(err))
    try:
        units = RealSystemctl(instance)
        units.install()
        yield units
    finally:
        instance.stop()


@pytest.fixture
def systemctl(e2e_units):
    """Real units, reset for this test: web.service and db.service active,
    no faults, no unit of an earlier test, an empty ledger."""
    e2e_units.reset()
    return e2e_units
