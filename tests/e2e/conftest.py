"""The end-to-end tests run certbot and certbot-wwu inside one real systemd
per session (tests/support/realsystemd.py), against real units
(tests/support/realunits.py): no recording stand-in.

Where no systemd can boot the tests skip with the reason, except in CI
(CI=true), where that reason fails them: the suite never passes by not running.
"""
import pytest

from tests.support.realunits import booted_units


@pytest.fixture(scope="session")
def e2e_units(accounts):
    """One booted systemd with the test units for all end-to-end tests (the
    test users exist before it boots: /etc is an overlay inside)."""
    yield from booted_units("wwu-e2e", "end-to-end tests")


@pytest.fixture
def systemctl(e2e_units):
    """Real units, reset for this test: web.service and db.service active,
    no faults, no unit of an earlier test, an empty ledger."""
    e2e_units.reset()
    return e2e_units
