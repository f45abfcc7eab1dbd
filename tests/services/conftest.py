"""tests/services: the service profiles against the real Debian servers.

A server whose package is missing skips with a reason locally; in CI
(CI=true) it fails, since `make test-services` installs them all
(scripts/setup-services-test).
"""
import os

import pytest

from tests.services.servers import PACKAGES


def need(*packages):
    """Skip (fail in CI) unless these Debian packages are installed."""
    missing = [p for p in packages if not os.path.exists(PACKAGES[p])]
    if missing:
        message = "needs the Debian package(s) {} (make test-services installs " \
                  "them)".format(", ".join(missing))
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
