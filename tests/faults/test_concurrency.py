"""Two deployments of one lineage at once never interleave."""
import os
import subprocess
import sys

from certbot_wwu import deploy
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import Settings
from tests.conftest import needs_root
from tests.support.host import OTHER_USER, SERVICE_USER, read_as

pytestmark = needs_root

CHILD = r"""
import sys
from certbot_wwu import deploy
from certbot_wwu.lineage import Lineage
from certbot_wwu.settings import Settings
lineage = Lineage(sys.argv[1], "unit")
settings = Settings(users=[sys.argv[2]], copy_to=sys.argv[3], copy_owner=(sys.argv[2], ""))
for _ in range(int(sys.argv[4])):
    deploy.secure_key(lineage)
    deploy.deploy(settings, lineage)
    deploy.write_copies(deploy.copy_spec(settings), lineage, lineage.current())
print("done", flush=True)
"""


def test_two_deployments_at_once(lineage_dir, scratch):
    dest = os.path.join(scratch, "srv", "tls")
    os.makedirs(os.path.dirname(dest), exist_ok=True)  # the parent must exist
    runs = [subprocess.Popen([sys.executable, "-c", CHILD, lineage_dir, SERVICE_USER,
                              dest, "15"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True) for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, results):
        assert run.returncode == 0, err
        assert out.strip() == "done"
    lineage = Lineage(lineage_dir, "unit")
    settings = Settings(users=[SERVICE_USER], copy_to=dest, copy_owner=(SERVICE_USER, ""))
    assert not deploy.needs_deploy(settings, lineage)
    assert read_as(SERVICE_USER, lineage.live_path("privkey"))
    assert not read_as(OTHER_USER, lineage.live_path("privkey"))
    assert read_as(SERVICE_USER, os.path.join(dest, "privkey.pem"))
    with open(os.path.join(dest, "cert.pem"), "rb") as a, \
            open(lineage.live_path("cert"), "rb") as b:
        assert a.read() == b.read()
    assert len(os.listdir(os.path.join(dest, ".versions"))) == 1
