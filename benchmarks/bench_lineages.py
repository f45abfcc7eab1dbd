"""Many lineages: a ``certbot renew`` that finds none of 500 lineages due,
with the wwu-acl installer attached to each (A) and without it (B).

The one real lineage is cloned 500 times (archive, live links and renewal
conf with the name replaced) into two certbot trees; in A's, each renewal
conf gets ``installer = wwu-acl`` and ``wwu_acl_user`` exactly as
``certbot install -i wwu-acl`` records them (certbot_wwu.renewalconf.attach).
``certbot certificates`` must list all 500 in both trees, and one untimed
``certbot renew`` deploys every lineage of A once, so the timed runs take the
path of a host that has been deployed before (state files exist). Both run
with the plugin installed (.venv); the ARI check is deferred in every conf,
so neither talks to a CA. For information, free of the machine's noise: the
installer's own work per lineage, Installer.generic_updates run in-process
on every lineage of A as certbot calls it.
"""
import glob
import os
import shutil

import fixtures
import profiling
from common import Row, median, out, paired, secs, spawn, timed
from tests.support import host

from certbot_wwu import renewalconf

PER_LINEAGE_MS = 2.0


def _tree(ws, label, count, attach):
    root = ws.path(label)
    config = fixtures.copy_tree(ws, root)
    names = fixtures.clone_lineages(config, count)
    if attach:
        for name in names:
            renewalconf.attach(os.path.join(config, "renewal", name + ".conf"),
                               {"user": fixtures.USER})
    return root, config, names


def run(ws, rounds, count=500, profile="auto"):
    trees = {}
    names = []
    for side, attach in (("A", True), ("B", False)):
        trees[side] = _tree(ws, "many-" + side, count, attach)
        names = trees[side][2]
    venvs = {"A": fixtures.MAIN_VENV, "B": fixtures.MAIN_VENV}
    roots = {"A": trees["A"][0], "B": trees["B"][0]}

    def certbot(side, *args):
        root = roots[side]
        shutil.rmtree(os.path.join(root, "logs"), ignore_errors=True)
        argv = fixtures.certbot_argv(venvs[side], *args) + fixtures.config_args(root)
        return spawn(argv, env=ws.env, cwd=root).check()

    renew = ("renew", "--no-random-sleep-on-renew")
    for side in "AB":
        listed = certbot(side, "certificates").output.count("Certificate Name: lin-")
        if listed != count:
            raise RuntimeError("certbot certificates lists {} of {} lineages in {}".format(
                listed, count, side))
    first = certbot("A", *renew)
    states = glob.glob(os.path.join(trees["A"][1], "wwu-acl", "*.json"))
    out("  {} lineages listed by certbot certificates in A and B; first renew of A "
        "(deploys each once) took {}, {} state files".format(
            count, secs(first.wall), len(states)))
    readable = [host.read_as(fixtures.USER, os.path.join(
        trees["A"][1], "live", name, "privkey.pem")) for name in (names[0], names[-1])]
    if len(states) != count or readable != [True, True] \
            or "No renewals were attempted" not in first.output:
        raise RuntimeError("the first renew of A did not deploy every lineage:\n" +
                           first.output[-3000:])
    for side in "AB":
        certbot(side, *renew)  # warm-up (A: its first renew with state)

    runs = {"A": [], "B": []}
    for n in range(rounds):
        for side in ("AB" if n % 2 == 0 else "BA"):
            runs[side].append(certbot(side, *renew))
    for side in "AB":
        out("  renew x{} {}: {} s".format(count, side, " ".join(
            "{:.2f}".format(c.wall) for c in runs[side])))
    out("  per-round (A - B) / {} in ms, quartiles: wall {:.2f} {:.2f} {:.2f}, CPU "
        "{:.2f} {:.2f} {:.2f}".format(count, *(
            paired(runs["A"], runs["B"], lambda a, b: (a.wall - b.wall) / count * 1000) +
            paired(runs["A"], runs["B"], lambda a, b: (a.cpu - b.cpu) / count * 1000))))
    wall = {s: median([c.wall for c in runs[s]]) for s in runs}
    rss = {s: median([c.maxrss_kb for c in runs[s]]) for s in runs}
    added = (wall["A"] - wall["B"]) / count * 1000.0
    own, timer = installer_work(roots["A"], trees["A"][1], names, list(renew))
    out("  Installer(...).generic_updates in-process over {} lineages: {:.3f} ms per "
        "lineage (median of 3 passes)".format(count, own))
    cpu = {s: median([c.cpu for c in runs[s]]) for s in runs}
    rows = [
        Row("lineages", "renew x{}, not due: installer attached vs not".format(count),
            secs(wall["A"]), secs(wall["B"]), "{:+.2f} ms/lineage".format(added),
            "<= +{:.0f} ms/lineage".format(PER_LINEAGE_MS), added <= PER_LINEAGE_MS),
        Row("lineages", "  same runs: CPU (user+sys)", secs(cpu["A"]), secs(cpu["B"]),
            "{:+.2f} ms/lineage".format((cpu["A"] - cpu["B"]) / count * 1000.0)),
        Row("lineages", "  same runs: peak RSS", "{:.1f} MB".format(rss["A"] * 1024 / 1e6),
            "{:.1f} MB".format(rss["B"] * 1024 / 1e6),
            "{:+.1f} MB".format((rss["A"] - rss["B"]) * 1024 / 1e6)),
        Row("lineages", "  the installer's own work (generic_updates), in-process",
            "{:.2f} ms/lineage".format(own), "-", ""),
        Row("lineages", "first renew of A: deploys all {} (untimed setup)".format(count),
            secs(first.wall), "-", "{:.1f} ms/lineage".format(first.wall / count * 1000)),
    ]
    if profile == "always" or (profile == "auto" and added > PER_LINEAGE_MS):
        explain(ws, roots["A"], count, list(renew), added, own, timer)
    return rows


#: certbot's own steps around an installer, shown from the cProfile of A
CERTBOT_STEPS = ("handle_renewal_request", "reconstitute", "_restore_plugin_configs",
                 "find_all", "should_renew", "run_generic_updaters",
                 "get_unprepared_installer", "_run_updaters", "deepcopy")


def installer_work(root, config_dir, names, renew):
    """The installer's own cost per lineage, in-process and without a
    profiler: the real Installer.generic_updates on every lineage of A,
    a fresh Installer per lineage as certbot does; median of 3 passes (ms),
    then one more pass under profiling.CallTimer."""
    import types
    from certbot import configuration
    from certbot._internal import cli
    from certbot._internal.plugins import disco
    from certbot_wwu.installer import Installer
    args = cli.prepare_and_parse_args(
        disco.PluginsRegistry.find_all(),
        renew + fixtures.config_args(root) + ["--wwu-acl-user", fixtures.USER])
    config = configuration.NamespaceConfig(args)
    lineages = [types.SimpleNamespace(cert_path=os.path.join(
        config_dir, "live", name, "cert.pem")) for name in names]

    def all_lineages():
        for lineage in lineages:
            Installer(config, "wwu-acl").generic_updates(lineage)
    all_lineages()  # warm
    plain = [timed(all_lineages) for _ in range(3)]
    timer = profiling.CallTimer(profiling.wwu_targets(installer=True))
    with timer:
        timer.whole = timed(all_lineages)
    return median(plain) / len(names) * 1000.0, timer


def explain(ws, root, count, renew, added, own, timer):
    """Where the added time per lineage goes: cProfile of one ``certbot
    renew`` of A (certbot's steps and ours), then the exact breakdown of the
    installer's own work (profiling.CallTimer)."""
    shutil.rmtree(os.path.join(root, "logs"), ignore_errors=True)
    out(profiling.profile_command(
        os.path.join(fixtures.MAIN_VENV, "bin", "python"),
        os.path.join(fixtures.MAIN_VENV, "bin", "certbot"),
        renew + fixtures.config_args(root),
        "certbot renew x{} with the installer (A)".format(count), per=count,
        env=ws.env, cwd=root, also=CERTBOT_STEPS))
    out("  of the +{:.2f} ms per lineage measured, the installer's own work "
        "(generic_updates, in-process) is {:.2f} ms; the rest is certbot handling "
        "an installer (restoring its options, choosing and creating the "
        "plugin)".format(added, own))
    out(timer.report("Installer(...).generic_updates", count, "lineage",
                     whole=timer.whole))
