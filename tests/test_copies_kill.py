"""Copy deployments killed with SIGKILL at random points: DEST always resolves
to one complete set (old or new), never a mix; the next run repairs it.

``WWU_KILL_ITERATIONS`` sets the number of kills (``make faults`` runs more).
"""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from certbot_wwu import deploy
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import Settings
from tests.conftest import needs_root
from tests.support.host import OTHER_USER, SERVICE_USER, read_as

pytestmark = needs_root
ITERATIONS = int(os.environ.get("WWU_KILL_ITERATIONS", "60"))

CHILD = r"""
import sys
from certbot_wwu import deploy
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import Settings
lineage = Lineage(sys.argv[1], "unit")
spec = deploy.copy_spec(Settings(copy_to=sys.argv[2], copy_owner=(sys.argv[3], ""),
                                 copy_formats=("pem", "combined")))
version = int(sys.argv[4])
first = True
while True:
    deploy.write_copies(spec, lineage, {k: lineage.archive_file(k, version) for k in KINDS})
    if first:  # imports and caches warm: from here on every write is a target
        print("ready", flush=True)
        first = False
    version = 3 - version
"""


def read(path):
    with open(path, "rb") as f:
        return f.read()


def consistent(dest, sets):
    """Which version DEST shows as a whole, or None for a mix or a broken set."""
    try:
        seen = {name: read(os.path.join(dest, name)) for name in
                ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem", "combined.pem")}
    except OSError:
        return None
    for version, material in sets.items():
        if (seen["cert.pem"] == material["cert"] and seen["chain.pem"] == material["chain"]
                and seen["fullchain.pem"] == material["fullchain"]
                and seen["privkey.pem"] == material["privkey"]
                and seen["combined.pem"] == material["privkey"] + material["fullchain"]):
            return version
    return None


def test_sigkill_at_random_points_never_leaves_a_mix(lineage_dir, scratch):
    lineage = Lineage(lineage_dir, "unit")
    dest = os.path.join(scratch, "srv", "tls")
    settings = Settings(copy_to=dest, copy_owner=(SERVICE_USER, ""),
                        copy_formats=("pem", "combined"))
    sets = {v: {k: read(lineage.archive_file(k, v)) for k in KINDS} for v in (1, 2)}
    deploy.write_copies(deploy.copy_spec(settings), lineage,
                        {k: lineage.archive_file(k, 1) for k in KINDS})
    rng = random.Random(int(os.environ.get("WWU_KILL_SEED", "20261126")))
    seen = {1: 0, 2: 0}
    inconsistent = 0
    for i in range(ITERATIONS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, lineage_dir, dest,
                                  SERVICE_USER, str(1 + i % 2)],
                                 stdout=subprocess.PIPE, universal_newlines=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        version = consistent(dest, sets)
        if version is None:
            inconsistent += 1
            continue
        seen[version] += 1
        key = os.path.join(dest, "privkey.pem")
        assert os.stat(key).st_mode & 0o777 == 0o600
        assert read_as(SERVICE_USER, key) and not read_as(OTHER_USER, key)
    print("kill test: {} kills, {} showed version 1, {} version 2, {} inconsistent".format(
        ITERATIONS, seen[1], seen[2], inconsistent))
    assert inconsistent == 0
    assert seen[1] and seen[2], "the kills never hit a moment after a switch"
    spec = deploy.copy_spec(settings)
    current = {k: lineage.archive_file(k, 2) for k in KINDS}
    deploy.write_copies(spec, lineage, current)
    assert deploy.copies_current(spec, lineage, current)
    assert consistent(dest, sets) == 2
