"""make bench: what certbot-wwu costs, A (with) against B (without), alternately.

Run as root from the repository with the project venv:

    .venv/bin/python benchmarks/run.py [--only load deploy archive lineages]

See benchmarks/README.md for what each benchmark measures and its target.
Exit status 0 even when a target is missed (the table says so); 2 when the
benchmark itself could not run.
"""
import argparse
import io
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402  (puts the repository root on sys.path)
from common import out  # noqa: E402

BENCHES = ("load", "deploy", "archive", "lineages", "cluster", "status")


class Tee(io.TextIOBase):
    """stdout, also kept for RESULTS.md."""

    def __init__(self, stream):
        self.stream = stream
        self.kept = io.StringIO()

    def write(self, text):
        self.stream.write(text)
        self.kept.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()


def preflight():
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (real users, ACLs, runuser)")
    for tool in ("pebble", "openssl", "runuser", "setfacl", "getfacl"):
        if shutil.which(tool) is None:
            problems.append("needs {} (make setup installs it)".format(tool))
    if "cluster" in parse().only:
        from tests.cluster import conftest
        why = conftest.missing()
        if why:
            problems.append("cluster: " + why)
    import fixtures
    if not os.path.exists(os.path.join(fixtures.MAIN_VENV, "bin", "certbot")):
        problems.append("needs {} (make setup)".format(fixtures.MAIN_VENV))
    elif os.path.realpath(sys.prefix) != os.path.realpath(fixtures.MAIN_VENV):
        problems.append("run with {}/bin/python (in-process benchmarks import "
                        "certbot_wwu from it)".format(fixtures.MAIN_VENV))
    return problems


def parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES))
    parser.add_argument("--rounds", type=int, default=51,
                        help="alternating A/B rounds of the certbot runs (load)")
    parser.add_argument("--lineage-rounds", type=int, default=11,
                        help="alternating rounds of the 500-lineage renews")
    parser.add_argument("--lineages", type=int, default=500)
    parser.add_argument("--deploy-rounds", type=int, default=21)
    parser.add_argument("--archive-rounds", type=int, default=11)
    parser.add_argument("--cluster-rounds", type=int, default=3,
                        help="alternating rounds of the cluster renews")
    parser.add_argument("--cluster-sizes", type=int, nargs="+", default=[10, 100, 400],
                        help="lineage counts L of the cluster renews")
    parser.add_argument("--cluster-peers", type=int, nargs="+", default=[2, 8],
                        help="peer counts P of the cluster renews")
    parser.add_argument("--cluster-silent-max", type=int, metavar="L",
                        help="the silent-peer renew only for L up to this (default: all)")
    parser.add_argument("--first-sizes", type=int, nargs="+", default=[100, 400, 800],
                        help="lineage counts of the first renew after attach")
    parser.add_argument("--status-rounds", type=int, default=7,
                        help="alternating rounds of the status benchmark")
    parser.add_argument("--status-lineages", type=int, default=200,
                        help="lineages in each tree of the status benchmark")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="cProfile summary: when a target is missed (auto)")
    parser.add_argument("--results", metavar="FILE",
                        help="also write this run's output as markdown (RESULTS.md)")
    parser.add_argument("--code", metavar="REV",
                        help="benchmark certbot_wwu as committed in REV (git "
                             "archive into the work dir) instead of the working tree")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory under /var/tmp")
    return parser.parse_args()


def main():
    args = parse()
    problems = preflight()
    if problems:
        print("make bench: " + "; ".join(problems), file=sys.stderr)
        return 2
    tee = Tee(sys.stdout)
    if args.results:
        sys.stdout = tee

    import fixtures
    started = time.monotonic()
    load_start = os.getloadavg()
    ws = fixtures.Workspace(keep=args.keep)
    rows = []
    try:
        if args.code:
            args.code = ws.use_revision(args.code)  # the commit, fixed now
            out("== certbot_wwu exported from commit {} into {}".format(
                args.code, ws.code_dir))
        out("== setup: Pebble, one real lineage (register + certonly), work dir {}".format(
            ws.root))
        t = time.monotonic()
        ws.obtain()
        if "load" in args.only or "lineages" in args.only:
            fixtures.without_venv()
        out("   done in {:.1f} s".format(time.monotonic() - t))
        for name in BENCHES:
            if name not in args.only:
                continue
            t = time.monotonic()
            if name == "load":
                out("== load cost: {} alternating rounds per command".format(args.rounds))
                import bench_load
                rows += bench_load.run(ws, args.rounds, args.profile)
            elif name == "deploy":
                out("== deploy cost: {} alternating rounds".format(args.deploy_rounds))
                import bench_deploy
                rows += bench_deploy.run(ws, args.deploy_rounds, args.profile)
            elif name == "archive":
                out("== archive scaling: {} rounds".format(args.archive_rounds))
                import bench_archive
                rows += bench_archive.run(ws, args.archive_rounds, args.profile)
            elif name == "lineages":
                out("== many lineages: {} lineages, {} alternating rounds".format(
                    args.lineages, args.lineage_rounds))
                import bench_lineages
                rows += bench_lineages.run(ws, args.lineage_rounds, args.lineages,
                                           args.profile)
            elif name == "cluster":
                out("== clusters: L = {}, P = {}, {} alternating rounds; first renew "
                    "after attach at L = {}".format(args.cluster_sizes, args.cluster_peers,
                                                    args.cluster_rounds, args.first_sizes))
                import bench_cluster
                rows += bench_cluster.run(ws, args.cluster_rounds, args.cluster_sizes,
                                          args.cluster_peers, args.first_sizes,
                                          args.cluster_silent_max)
            elif name == "status":
                out("== status over {} lineages: {} alternating rounds".format(
                    args.status_lineages, args.status_rounds))
                import bench_status
                rows += bench_status.run(ws, args.status_rounds, args.status_lineages)
            out("   {} took {:.0f} s".format(name, time.monotonic() - t))
    finally:
        ws.cleanup()
    elapsed = time.monotonic() - started

    info = common.machine(fixtures.WORK_BASE, args.code)
    info.append(("load average 1/5/15 min, at start / at end", "{} / {}".format(
        " ".join("{:.2f}".format(v) for v in load_start),
        " ".join("{:.2f}".format(v) for v in os.getloadavg()))))
    out("")
    out(common.table(rows))
    out("")
    for key, value in info:
        out("{}: {}".format(key, value))
    missed = [r for r in rows if r.holds is False]
    out("total: {:.0f} s; targets met: {} of {}".format(
        elapsed, sum(1 for r in rows if r.holds), sum(1 for r in rows if r.holds is not None)))
    for r in missed:
        out("TARGET NOT MET: {} / {} ({}; target {})".format(r.bench, r.what, r.compare,
                                                             r.target))
    if args.results:
        sys.stdout = tee.stream
        write_results(args.results, rows, info, tee.kept.getvalue(), elapsed, args)
        print("wrote " + args.results)
    return 0


def write_results(path, rows, info, log, elapsed, args):
    command = ".venv/bin/python benchmarks/run.py" + (
        " --code {}".format(args.code[:12]) if args.code else "")
    lines = ["# Benchmark results", "",
             "One run of `make bench` (`{}`), {:.0f} s in total. What each line "
             "measures: README.md.".format(command, elapsed),
             "A is certbot-wwu, B the alternative named in each line; medians.", "",
             "How to read it: the machine is shared and other jobs ran meanwhile, so "
             "a ratio of two certbot runs moves by a few percent from run to run "
             "(the full output gives the per-round quartiles). The in-process rows "
             "(certbot-wwu's own start-up work, the installer's own work per "
             "lineage) and the in-process deploy and archive timings are the "
             "steadier figures.", "",
             "## Machine", ""]
    lines += ["- {}: {}".format(k, v) for k, v in info]
    lines += ["", "## Figures", "", common.table(rows), "",
              "## Full output", "", "```", log.rstrip("\n"), "```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
