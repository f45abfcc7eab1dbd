"""Load cost: certbot with certbot-wwu installed (A) or not installed (B).

Same config tree (one real lineage, no installer in its renewal conf), same
interpreter and dependencies: A is ``.venv``, B is ``.venvs/bench-without``,
a copy of ``.venv`` without the package (fixtures.without_venv). Both are
started as ``VENV/bin/python VENV/bin/certbot ...``. Measured: wall time and
the child's peak RSS (ru_maxrss from os.wait4) of ``certbot plugins`` and of
a ``certbot renew`` whose only certificate is not due.
"""
import os
import shutil

import fixtures
import profiling
from common import Row, median, out, paired, spawn

TIME_RATIO = 1.05
MEM_BYTES = 5 * 1000 * 1000

COMMANDS = (
    ("certbot plugins", ["plugins"]),
    ("certbot renew (1 lineage, not due)", ["renew", "--no-random-sleep-on-renew"]),
)


def mb(kib):
    return "{:.1f} MB".format(kib * 1024 / 1e6)


#: what certbot-wwu adds to a certbot start, timed inside one process (A):
#: importing the plugin module as certbot's plugin discovery does, and
#: registering its options; certbot's own modules are imported first
_OWN_WORK = """
import argparse, json, time
import certbot._internal.main
from certbot._internal.plugins import disco
t0 = time.perf_counter()
from certbot_wwu.installer import Installer
t1 = time.perf_counter()
parser = argparse.ArgumentParser()
Installer.add_parser_arguments(
    lambda name, **kw: parser.add_argument("--wwu-acl-" + name, **kw))
t2 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1]))
"""


def own_work(ws, root, runs=7):
    """Median ms of (import, options, the editable finder's own import at
    interpreter start), measured in A without a profiler."""
    import json
    import subprocess
    python = os.path.join(fixtures.MAIN_VENV, "bin", "python")
    imports, options, finder = [], [], []
    for _ in range(runs):
        text = subprocess.check_output([python, "-c", _OWN_WORK], env=ws.env, cwd=root,
                                       universal_newlines=True)
        a, b = json.loads(text.strip().splitlines()[-1])
        imports.append(a)
        options.append(b)
        err = subprocess.run([python, "-X", "importtime", "-c", "pass"], env=ws.env,
                             cwd=root, stderr=subprocess.PIPE, universal_newlines=True).stderr
        for line in err.splitlines():
            if "__editable__" in line and "|" in line:
                finder.append(int(line.split(":", 1)[1].split("|")[0]) / 1e6)
    return (median(imports) * 1000, median(options) * 1000,
            median(finder) * 1000 if finder else 0.0)


def run(ws, rounds, profile="auto"):
    venvs = {"A": fixtures.MAIN_VENV, "B": fixtures.without_venv()}
    root = ws.path("load")
    fixtures.copy_tree(ws, root)
    fixtures.check_venvs(root, ws.env)
    logs = os.path.join(root, "logs")

    def once(side, args):
        shutil.rmtree(logs, ignore_errors=True)  # certbot rotates its logs: no drift
        argv = fixtures.certbot_argv(venvs[side], *args) + fixtures.config_args(root)
        return spawn(argv, env=ws.env, cwd=root).check()

    rows = []
    walls_b = []
    for label, args in COMMANDS:
        # warm-up (bytecode caches, page cache) and the plugin's visibility
        seen = {side: "wwu-acl" in once(side, args).output for side in "AB"}
        if args[0] == "plugins" and seen != {"A": True, "B": False}:
            raise RuntimeError("certbot plugins lists wwu-acl: {}".format(seen))
        runs = {"A": [], "B": []}
        for n in range(rounds):
            for side in ("AB" if n % 2 == 0 else "BA"):
                runs[side].append(once(side, args))
        wall = {s: median([c.wall for c in runs[s]]) for s in "AB"}
        rss = {s: median([c.maxrss_kb for c in runs[s]]) for s in "AB"}
        cpu = {s: median([c.cpu for c in runs[s]]) for s in "AB"}
        ratio = wall["A"] / wall["B"]
        walls_b.append(wall["B"])
        delta = rss["A"] - rss["B"]
        for s in "AB":
            out("  {} {}: wall {} ms".format(label, s, " ".join(
                "{:.0f}".format(c.wall * 1000) for c in runs[s])))
        out("  {}: per-round A/B ratio, quartiles: wall {:.3f} {:.3f} {:.3f}, CPU "
            "{:.3f} {:.3f} {:.3f}".format(label, *(
                paired(runs["A"], runs["B"], lambda a, b: a.wall / b.wall) +
                paired(runs["A"], runs["B"], lambda a, b: a.cpu / b.cpu))))
        out("  {}: median wall A {:.0f} ms, B {:.0f} ms, ratio {:.3f}; median CPU "
            "A {:.0f} ms, B {:.0f} ms; median peak RSS A {}, B {}".format(
                label, wall["A"] * 1000, wall["B"] * 1000, ratio, cpu["A"] * 1000,
                cpu["B"] * 1000, mb(rss["A"]), mb(rss["B"])))
        rows.append(Row("load", label + ": wall", "{:.0f} ms".format(wall["A"] * 1000),
                        "{:.0f} ms".format(wall["B"] * 1000), "ratio {:.3f}".format(ratio),
                        "ratio <= {:.2f}".format(TIME_RATIO), ratio <= TIME_RATIO))
        rows.append(Row("load", label + ": CPU (user+sys)",
                        "{:.0f} ms".format(cpu["A"] * 1000),
                        "{:.0f} ms".format(cpu["B"] * 1000),
                        "ratio {:.3f}".format(cpu["A"] / cpu["B"])))
        rows.append(Row("load", label + ": peak RSS", mb(rss["A"]), mb(rss["B"]),
                        "{:+.2f} MB".format(delta * 1024 / 1e6), "<= +5 MB",
                        delta * 1024 <= MEM_BYTES))
        if profile == "always" or (profile == "auto" and False in [
                r.holds for r in rows[-3:]]):
            explain(ws, root, venvs["A"], args)
    imports, options, finder = own_work(ws, root)
    total = imports + options + finder
    out("  certbot-wwu's own start-up work in A (no profiler, median of 7): import of "
        "certbot_wwu.installer {:.2f} ms, its options {:.2f} ms, the editable finder "
        "{:.2f} ms".format(imports, options, finder))
    rows.append(Row("load", "certbot-wwu's own start-up work, in-process",
                    "{:.1f} ms".format(total), "-",
                    "{:.1%} of B's plugins run".format(total / 1000.0 / walls_b[0])))
    return rows


def explain(ws, root, venv, args):
    python = os.path.join(venv, "bin", "python")
    script = os.path.join(venv, "bin", "certbot")
    argv = list(args) + fixtures.config_args(root)
    ours, total = profiling.import_times(python, script, argv, env=ws.env, cwd=root)
    out("  -X importtime, certbot_wwu modules (of {:.0f} ms of top-level imports):".format(
        total / 1000.0))
    for cum, own, name in ours:
        out("    {:8.2f} ms cumulative {:8.2f} ms own  {}".format(cum / 1000.0, own / 1000.0, name))
    out(profiling.profile_command(python, script, argv, "certbot " + args[0] + " (A)",
                                  env=ws.env, cwd=root))
