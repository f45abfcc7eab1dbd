"""ACL deployments killed with SIGKILL at random points while certbot's live
links move between two versions: the service user can always read the old or
the new key, nobody else can read either, and the next run repairs all."""
import os
import random
import signal
import subprocess
import sys
import time

from certbot_wwu import deploy
from certbot_wwu.lineage import Lineage
from certbot_wwu.settings import Settings
from tests.conftest import needs_root
from tests.faults.conftest import ITERATIONS
from tests.support.host import KEY_GROUP_MEMBER, OTHER_USER, SERVICE_USER, read_as

pytestmark = needs_root

CHILD = r"""
import os, sys
from certbot_wwu import deploy
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import Settings
lineage = Lineage(sys.argv[1], "unit")
settings = Settings(users=[sys.argv[2]])
version = int(sys.argv[3])
deploy.deploy(settings, lineage)  # imports warm: from here on every step is a target
print("ready", flush=True)
while True:
    for kind in KINDS:   # what certbot does on renewal: one link after another
        tmp = lineage.live_path(kind) + ".tmp"
        if os.path.lexists(tmp):   # left by a killed predecessor
            os.unlink(tmp)
        os.symlink("../../archive/unit/{}{}.pem".format(kind, version), tmp)
        os.rename(tmp, lineage.live_path(kind))
    deploy.secure_key(lineage)
    deploy.deploy(settings, lineage)
    version = 3 - version
"""


def test_sigkill_during_acl_deployments(lineage_dir):
    lineage = Lineage(lineage_dir, "unit")
    settings = Settings(users=[SERVICE_USER])
    deploy.secure_key(lineage)
    deploy.deploy(settings, lineage)
    keys = [lineage.archive_file("privkey", v) for v in (1, 2)]
    rng = random.Random(int(os.environ.get("WWU_KILL_SEED", "4242")))
    readable_by_service = exposed = 0
    for i in range(ITERATIONS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, lineage_dir, SERVICE_USER,
                                  str(1 + i % 2)], stdout=subprocess.PIPE,
                                 universal_newlines=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.12))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        if any(read_as(SERVICE_USER, key) for key in keys):
            readable_by_service += 1
        for outsider in (OTHER_USER, KEY_GROUP_MEMBER):
            if any(read_as(outsider, key) for key in keys):
                exposed += 1
    print("ACL kill test: {} kills; service user could read a key after {}; "
          "outsiders could read a key after {}".format(
              ITERATIONS, readable_by_service, exposed))
    assert readable_by_service == ITERATIONS
    assert exposed == 0
    deploy.secure_key(lineage)
    deploy.deploy(settings, lineage)
    current = os.path.realpath(lineage.live_path("privkey"))
    old = [key for key in keys if key != current][0]
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert not read_as(SERVICE_USER, old)
    assert not deploy.needs_deploy(settings, lineage)
