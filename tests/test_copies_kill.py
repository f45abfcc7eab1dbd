"""Copy deployments killed with SIGKILL: DEST always resolves to one complete
set (old or new), never a mix; the next run repairs it.

Two ways to choose the moment: before each file-system call of one
deployment in turn (deterministic: every step is hit, and the set DEST
shows must flip from old to new exactly once, at the switch), and at random
delays in a loop of deployments (what a real kill looks like).
``WWU_KILL_ITERATIONS`` sets the number of random kills (``make faults``
runs more).
"""
import os
import random
import signal
import subprocess
import sys
import time


from certbot_wwu import deploy
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import Settings
from tests.conftest import needs_root
from tests.support.host import OTHER_USER, SERVICE_USER, read_as

pytestmark = needs_root
ITERATIONS = int(os.environ.get("WWU_KILL_ITERATIONS", "30"))

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


#: one deployment that stops itself (SIGSTOP) before its file-system step
#: number argv[5] (counting from 1; 0: never, and print how many it made)
STOPPING_CHILD = r"""
import os, signal, sys
from certbot_wwu import deploy
from certbot_wwu.lineage import KINDS, Lineage
from certbot_wwu.settings import Settings
lineage = Lineage(sys.argv[1], "unit")
spec = deploy.copy_spec(Settings(copy_to=sys.argv[2], copy_owner=(sys.argv[3], ""),
                                 copy_formats=("pem", "combined")))
files = {k: lineage.archive_file(k, int(sys.argv[4])) for k in KINDS}
stop_at, calls = int(sys.argv[5]), [0]
def hooked(call):
    def step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == stop_at:
            os.kill(os.getpid(), signal.SIGSTOP)
        return call(*args, **kwargs)
    return step
# every call that changes what is on disk, or makes it durable (not the
# many open/write/close in between, which change nothing a reader sees)
for name in ("fsync", "fchmod", "fchown", "mkdir", "symlink", "rename", "replace",
             "unlink", "rmdir"):
    setattr(os, name, hooked(getattr(os, name)))
deploy.write_copies(spec, lineage, files)
print(calls[0], flush=True)
"""


def make_dest(scratch):
    parent = os.path.join(scratch, "srv")
    os.mkdir(parent, 0o755)
    return os.path.join(parent, "tls")


def check_key(dest):
    key = os.path.join(dest, "privkey.pem")
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert read_as(SERVICE_USER, key) and not read_as(OTHER_USER, key)


def test_sigkill_before_each_step_flips_once_at_the_switch(lineage_dir, scratch):
    lineage = Lineage(lineage_dir, "unit")
    dest = make_dest(scratch)
    spec = deploy.copy_spec(Settings(copy_to=dest, copy_owner=(SERVICE_USER, ""),
                                     copy_formats=("pem", "combined")))
    sets = {v: {k: read(lineage.archive_file(k, v)) for k in KINDS} for v in (1, 2)}
    old = {k: lineage.archive_file(k, 1) for k in KINDS}
    argv = [sys.executable, "-c", STOPPING_CHILD, lineage_dir, dest, SERVICE_USER, "2"]
    deploy.write_copies(spec, lineage, old)
    steps = int(subprocess.check_output(argv + ["0"]))
    assert steps > 5, "the hook saw no file-system calls"
    shown = []
    for stop_at in range(1, steps + 1):
        deploy.write_copies(spec, lineage, old)  # the next run repairs it
        assert consistent(dest, sets) == 1
        child = subprocess.Popen(argv + [str(stop_at)], stdout=subprocess.DEVNULL)
        _, status = os.waitpid(child.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), "step {} of {} was not reached".format(
            stop_at, steps)
        child.send_signal(signal.SIGKILL)
        child.wait()
        shown.append(consistent(dest, sets))
        check_key(dest)
    print("kill test: killed before each of {} steps: {}".format(steps, shown))
    assert None not in shown
    flip = shown.index(2) if 2 in shown else len(shown)
    assert shown == [1] * flip + [2] * (steps - flip)
    assert 0 < flip < steps, "both sides of the switch are hit"


def test_sigkill_at_random_points_never_leaves_a_mix(lineage_dir, scratch):
    lineage = Lineage(lineage_dir, "unit")
    dest = make_dest(scratch)
    os.makedirs(os.path.dirname(dest), exist_ok=True)  # the parent must exist
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
        check_key(dest)
    print("kill test: {} kills, {} showed version 1, {} version 2, {} inconsistent".format(
        ITERATIONS, seen[1], seen[2], inconsistent))
    assert inconsistent == 0  # which side was hit: the deterministic test above
    spec = deploy.copy_spec(settings)
    current = {k: lineage.archive_file(k, 2) for k in KINDS}
    deploy.write_copies(spec, lineage, current)
    assert deploy.copies_current(spec, lineage, current)
    assert consistent(dest, sets) == 2
