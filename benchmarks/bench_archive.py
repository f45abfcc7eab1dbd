"""Archive scaling: a renewal's deployment on lineages with 10, 1,000 and
10,000 archived versions.

Each lineage is a copy of the real one whose archive is filled with
versions 2..N (copies of version 1's files, certbot's modes), live links on
version N. Its first deployment (no state: the full sweep of every archived
version) is timed for information and leaves the state a previous deployment
leaves. Then, per round and lineage, untimed: version N+1 appears as certbot
writes it (the new key gets the previous key's group bits, as certbot's
compute_private_key_mode does) and the live links move to it; timed: what
the installer does for that renewal with no units (renew_deploy's
secure_key + deploy, then restart's batch flush, i.e. mark_acted); untimed:
the oldest version is deleted so the archive keeps N versions. The sizes
take turns within each round, in rotating order.
"""
import os

import fixtures
import profiling
from common import Row, median, ms, out, secs, timed
from tests.support import host

from certbot_wwu import batch, deploy
from certbot_wwu.lineage import Lineage
from certbot_wwu.settings import Settings

SIZES = (10, 1000, 10000)
LIMIT = 1.5
#: first deployments (information only; the 10,000 one takes seconds)
SWEEP_ROUNDS = {10: 3, 1000: 3, 10000: 1}


class Scaled(object):
    def __init__(self, ws, size):
        self.size = size
        root = ws.path("archive-{}".format(size))
        self.config = fixtures.copy_tree(ws, root)
        self.name = fixtures.TEMPLATE_NAME
        self.material = fixtures.synthesize_archive(self.config, self.name, size)
        self.lineage = Lineage(self.config, self.name)
        self.oldest = 1
        self.newest = size
        self.state_dir = os.path.join(self.config, "wwu-acl")

    def current_paths(self):
        return [os.path.join(self.config, "live"), os.path.join(self.config, "archive"),
                self.lineage.live_dir, fixtures.archive_dir(self.config, self.name)] + \
            list(self.lineage.current().values())

    def new_version(self):
        mode = fixtures.next_key_mode(self.config, self.name, self.newest)
        self.newest += 1
        fixtures.write_version(self.config, self.name, self.newest, self.material, mode)
        fixtures.point_live(self.config, self.name, self.newest)

    def drop_oldest(self):
        fixtures.remove_version(self.config, self.name, self.oldest)
        self.oldest += 1


def run(ws, rounds, profile="auto"):
    settings = Settings(users=[fixtures.USER])
    scaled = []
    for size in SIZES:
        t = timed(lambda: scaled.append(Scaled(ws, size)))
        out("  synthesized {} versions in {:.1f} s".format(size, t))

    def deployment(s):
        def work():
            deploy.secure_key(s.lineage)
            deploy.deploy(settings, s.lineage)
            batch.mark_acted(s.lineage)
        return work

    # first deployment, no state: the full sweep (for information)
    pristine = {s.size: fixtures.snapshot_modes(s.current_paths()) for s in scaled}
    sweep = {s.size: [] for s in scaled}
    for n in range(max(SWEEP_ROUNDS.values())):
        for s in scaled[n % len(scaled):] + scaled[:n % len(scaled)]:
            if n < SWEEP_ROUNDS.get(s.size, 1):
                fixtures.reset_acls(pristine[s.size], s.state_dir)
                sweep[s.size].append(timed(deployment(s)))
    for s in scaled:
        out("  first deployment (full sweep) of {}: {} ms".format(s.size, " ".join(
            "{:.1f}".format(t * 1000) for t in sweep[s.size])))

    steady = {s.size: [] for s in scaled}
    for n in range(rounds):
        for s in scaled[n % len(scaled):] + scaled[:n % len(scaled)]:
            s.new_version()
            steady[s.size].append(timed(deployment(s)))
            s.drop_oldest()
    for s in scaled:
        out("  renewal deployment at {}: {} ms".format(s.size, " ".join(
            "{:.2f}".format(t * 1000) for t in steady[s.size])))
        key = s.lineage.live_path("privkey")
        old_key = s.lineage.archive_file("privkey", s.newest - 1)
        if not host.read_as(fixtures.USER, key) or host.read_as(fixtures.USER, old_key):
            raise RuntimeError("{}: the grants did not follow the renewal".format(s.size))

    med = {size: median(t) for size, t in steady.items()}
    first = {size: median(t) for size, t in sweep.items()}
    small, big = SIZES[0], SIZES[-1]
    ratio = med[big] / med[small]
    rows = []
    for size in SIZES:
        rows.append(Row("archive", "renewal deployment, {} versions (steady)".format(size),
                        ms(med[size]), ms(med[small]),
                        "ratio {:.2f}".format(med[size] / med[small]),
                        "ratio <= {}".format(LIMIT) if size == big else "",
                        ratio <= LIMIT if size == big else None))
    for size in SIZES:
        rows.append(Row("archive", "first deployment, {} versions (full sweep)".format(size),
                        secs(first[size]), secs(first[small]),
                        "ratio {:.1f}".format(first[size] / first[small])))
    if profile == "always" or (profile == "auto" and ratio > LIMIT):
        s = scaled[-1]

        def turn():
            s.drop_oldest()
            s.new_version()
        out(profiling.profile_call(deployment(s), "renewal deployment at {} versions, "
                                   "10 times".format(big), repeat=10, setup=turn))
        spent = 0.0
        with profiling.CallTimer(profiling.wwu_targets()) as timer:
            for _ in range(10):
                turn()
                spent += timed(deployment(s))
        out(timer.report("renewal deployment at {} versions".format(big), 10,
                         "deployment", whole=spent))
    if profile == "always":
        s = scaled[1]
        fixtures.reset_acls(pristine[s.size], s.state_dir)
        with profiling.CallTimer(profiling.wwu_targets()) as timer:
            spent = timed(deployment(s))
        out(timer.report("first deployment (full sweep) at {} versions".format(s.size),
                         1, "deployment", whole=spent))
    return rows
