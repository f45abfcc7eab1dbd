"""Deploy cost: one lineage, the installer's deployment in-process (A) vs the
original recipe's three setfacl commands and a getfacl check (B).

The lineage is a real one made by certbot against Pebble. Primary figure
("fresh"): before every timed iteration, untimed, every ACL (access and
default) is removed from the lineage's files and directories and their
modes are restored, and the deployment state (CONFIG/wwu-acl) is deleted,
so both sides really grant every time. For information ("steady"): both
run again on a lineage that is already deployed.

A = certbot_wwu.deploy.secure_key + certbot_wwu.deploy.deploy with
Settings(users=[USER]) (plan, grants, verification as the user in a forked
child, state file). B = the recipe's commands exec'd directly, without a
shell (the shell would only add to B).
"""
import glob
import os
import subprocess

import fixtures
import profiling
from common import Row, median, ms, out, timed
from tests.support import host

from certbot_wwu import deploy
from certbot_wwu.lineage import Lineage
from certbot_wwu.settings import Settings

FACTOR = 10.0


def recipe(config_dir, name, user):
    live, archive = (os.path.join(config_dir, d) for d in ("live", "archive"))
    commands = [
        ["setfacl", "-R", "-m", "u:{}:rX".format(user),
         os.path.join(live, name), os.path.join(archive, name)],
        ["setfacl", "-m", "u:{}:rX".format(user), live, archive],
        ["setfacl", "-m", "d:u:{}:rX".format(user),
         os.path.join(live, name), os.path.join(archive, name)],
    ]

    def run():
        for argv in commands:
            subprocess.run(argv, stdin=subprocess.DEVNULL, check=True)
        keys = sorted(glob.glob(os.path.join(archive, name, "priv*")))
        shown = subprocess.run(["getfacl"] + keys, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               universal_newlines=True, check=True).stdout
        if "user:{}:r".format(user) not in shown:
            raise RuntimeError("the recipe did not grant:\n" + shown)
    return run


def run(ws, rounds, profile="auto"):
    root = ws.path("deploy")
    config = fixtures.copy_tree(ws, root)
    name = fixtures.TEMPLATE_NAME
    lineage = Lineage(config, name)
    settings = Settings(users=[fixtures.USER])
    modes = fixtures.snapshot_modes(fixtures.lineage_paths(config, name))
    state_dir = os.path.join(config, "wwu-acl")
    key = lineage.live_path("privkey")

    def a():
        deploy.secure_key(lineage)
        deploy.deploy(settings, lineage)
    sides = {"A": a, "B": recipe(config, name, fixtures.USER)}

    def reset():
        fixtures.reset_acls(modes, state_dir)

    # warm-up, and proof that each side alone lets the user read the key
    for side in "AB":
        reset()
        if host.read_as(fixtures.USER, key):
            raise RuntimeError("the user reads the key before any grant")
        sides[side]()
        if not host.read_as(fixtures.USER, key):
            raise RuntimeError("side {} did not grant access".format(side))

    results = {}
    for mode in ("fresh", "steady"):
        times = {"A": [], "B": []}
        for n in range(rounds):
            for side in ("AB" if n % 2 == 0 else "BA"):
                if mode == "fresh":
                    reset()
                else:
                    reset()
                    sides[side]()  # deployed once already, untimed
                times[side].append(timed(sides[side]))
        results[mode] = {s: median(times[s]) for s in "AB"}
        for s in "AB":
            out("  deploy {} {}: {} ms".format(mode, s, " ".join(
                "{:.2f}".format(t * 1000) for t in times[s])))
    reset()

    fresh, steady = results["fresh"], results["steady"]
    factor = fresh["B"] / fresh["A"]
    rows = [
        Row("deploy", "1 lineage, fresh (ACLs+state removed each time)",
            ms(fresh["A"]), ms(fresh["B"]), "B/A = {:.2f}".format(factor),
            "B/A >= {:.0f} (A 10x cheaper)".format(FACTOR), factor >= FACTOR),
        Row("deploy", "1 lineage, steady (already deployed)", ms(steady["A"]),
            ms(steady["B"]), "B/A = {:.2f}".format(steady["B"] / steady["A"])),
    ]
    if profile == "always" or (profile == "auto" and factor < FACTOR):
        explain(a, reset)
    return rows


def explain(a, reset, repeat=20):
    """Where A's time goes: cProfile, then exact inclusive times."""
    out(profiling.profile_call(a, "fresh deploy (A), {} times".format(repeat),
                               repeat=repeat, setup=reset))
    total = []
    with profiling.CallTimer(profiling.wwu_targets()) as timer:
        for _ in range(repeat):
            reset()
            total.append(timed(a))
    reset()
    out("  fresh deploy (A) under the call timer: median {}".format(ms(median(total))))
    out(timer.report("fresh deploy (A)", repeat, "deployment", whole=sum(total)))
