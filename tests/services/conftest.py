"""tests/services: the service profiles against the real Debian servers,
each a real unit of one real systemd per session (tests/support/realsystemd.py,
the end-to-end tests' harness); certbot runs inside it, so the profile's
action reaches the real unit.

A server whose package is missing skips with a reason locally; in CI
(CI=true) it fails, since `make test-services` installs them all
(scripts/setup-services-test). Where no systemd can boot, the tests skip
with the reason, except in CI, where that reason fails them.
"""
import os

import pytest

from tests.services.servers import PACKAGES
from tests.support.realunits import booted_units, in_ci


def need(*packages):
    """Skip (fail in CI) unless these Debian packages are installed."""
    missing = [p for p in packages if not os.path.exists(PACKAGES[p])]
    if missing:
        message = "needs the Debian package(s) {} (make test-services installs " \
                  "them)".format(", ".join(missing))
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)




@pytest.fixture(scope="session")
def services_units(accounts):
    """One booted systemd for all service tests (the test users and the
    servers' accounts exist before it boots: /etc is an overlay inside)."""
    yield from booted_units("wwu-services", "the service tests")


@pytest.fixture
def systemctl(services_units):
    """Real units, reset for this test: the servers of earlier tests stopped
    and removed, an empty ledger."""
    services_units.reset()
    return services_units
