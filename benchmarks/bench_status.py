"""status: ``certbot-wwu status --nagios`` over many lineages (issues 13, 14).

Two certbot trees of N clones of the real lineage (default 200), each with
the wwu-acl installer attached for the service user and deployed once by a
``certbot renew`` (untimed): in A every lineage names the same unit
(``web.service``, through the recording systemctl), in B none. Timed,
alternately (A B, then B A): ``certbot-wwu status --nagios
--no-served-check`` on A and on B, and ``certbot certificates`` on B (the
cost a check run every minute is held against, issue 14).

Targets: status over N lineages that share one unit within 1.2x of N without
units (systemd is asked once per distinct unit: the calls are counted);
``status --nagios`` without network checks no dearer than ``certbot
certificates`` on the same tree.

Run alone: ``.venv/bin/python benchmarks/bench_status.py [--rounds 7]
[--lineages 200]``, or from run.py as ``bench_status.run(ws, rounds,
lineages)``.
"""
import argparse
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402  (puts the repository root on sys.path)
import fixtures  # noqa: E402
from common import Row, median, out, paired, secs, spawn  # noqa: E402

from certbot_wwu import renewalconf  # noqa: E402
from tests.test_status import timer_root  # noqa: E402

SHARED_RATIO = 1.2
UNIT = "web.service"


def _tree(ws, label, count, units):
    root = ws.path(label)
    config = fixtures.copy_tree(ws, root)
    names = fixtures.clone_lineages(config, count)
    values = {"user": fixtures.USER}
    if units:
        values["unit"] = UNIT
    for name in names:
        renewalconf.attach(os.path.join(config, "renewal", name + ".conf"), values)
    return root


def _is_active_calls(ws):
    return [c for c in ws.systemctl.calls() if c.startswith("is-active")]


def run(ws, rounds=7, count=200):
    roots = {"A": _tree(ws, "status-A", count, True),
             "B": _tree(ws, "status-B", count, False)}
    system = timer_root(ws.path("status-system"))
    python = os.path.join(fixtures.MAIN_VENV, "bin", "python")

    def certbot(side, *args):
        root = roots[side]
        shutil.rmtree(os.path.join(root, "logs"), ignore_errors=True)
        argv = fixtures.certbot_argv(fixtures.MAIN_VENV, *args) + fixtures.config_args(root)
        return spawn(argv, env=ws.env, cwd=root)

    def status(side):
        root = roots[side]
        argv = [python, os.path.join(fixtures.MAIN_VENV, "bin", "certbot-wwu"), "status",
                "--nagios", "--no-served-check", "--distro", "debian", "--root", system,
                "--config-dir", os.path.join(root, "etc"),
                "--work-dir", os.path.join(root, "work"),
                "--logs-dir", os.path.join(root, "logs")]
        child = spawn(argv, env=ws.env, cwd=root)
        if child.code != 0 or not child.output.startswith("CERTBOT-WWU OK - {} "
                                                          "certificates".format(count)):
            raise RuntimeError("status --nagios on {} did not say OK:\n{}".format(
                side, child.output[:3000]))
        return child

    for side in "AB":  # deploy every lineage once, as a host that ran before
        first = certbot(side, "renew", "--no-random-sleep-on-renew").check()
        if "No renewals were attempted" not in first.output:
            raise RuntimeError("renew of {} failed:\n{}".format(side, first.output[-3000:]))
    listed = certbot("B", "certificates").check().output.count("Certificate Name: lin-")
    if listed != count:
        raise RuntimeError("certbot certificates lists {} of {}".format(listed, count))
    ws.systemctl.clear()
    status("A")
    calls = len(_is_active_calls(ws))
    out("  status --nagios over {} lineages naming {}: {} 'systemctl is-active' "
        "call(s)".format(count, UNIT, calls))
    status("B")
    certbot("B", "certificates").check()  # warm-up

    runs = {"A": [], "B": [], "C": []}
    for n in range(rounds):
        for side in ("ABC" if n % 2 == 0 else "CBA"):
            runs[side].append(status(side) if side != "C"
                              else certbot("B", "certificates").check())
    wall = {s: median([c.wall for c in runs[s]]) for s in runs}
    cpu = {s: median([c.cpu for c in runs[s]]) for s in runs}
    for side, what in (("A", "status, shared unit"), ("B", "status, no units"),
                       ("C", "certbot certificates")):
        out("  {} x{}: {} s".format(what, count, " ".join(
            "{:.2f}".format(c.wall) for c in runs[side])))
    out("  per-round A/B wall quartiles: {:.3f} {:.3f} {:.3f}".format(
        *paired(runs["A"], runs["B"], lambda a, b: a.wall / b.wall)))
    shared = wall["A"] / wall["B"]
    cheap = wall["B"] / wall["C"]
    return [
        Row("status", "status --nagios x{}: one shared unit (A) vs no units (B)".format(
            count), secs(wall["A"]), secs(wall["B"]), "{:.2f}x".format(shared),
            "<= {:.1f}x".format(SHARED_RATIO), shared <= SHARED_RATIO),
        Row("status", "  same runs: CPU (user+sys)", secs(cpu["A"]), secs(cpu["B"]),
            "{:.2f}x".format(cpu["A"] / cpu["B"])),
        Row("status", "  systemctl is-active calls in one run of A", str(calls), "0",
            "", "<= 1", calls <= 1),
        Row("status", "status --nagios x{} (A: B's tree) vs certbot certificates "
            "(B)".format(count), secs(wall["B"]), secs(wall["C"]),
            "{:.2f}x".format(cheap), "<= 1.0x", cheap <= 1.0),
        Row("status", "  same runs: CPU (user+sys)", secs(cpu["B"]), secs(cpu["C"]),
            "{:.2f}x".format(cpu["B"] / cpu["C"])),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lineages", type=int, default=200)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_status: needs root (real users, ACLs)", file=sys.stderr)
        return 2
    ws = fixtures.Workspace(keep=args.keep)
    try:
        out("== setup: Pebble, one real lineage, work dir {}".format(ws.root))
        ws.obtain()
        out("== status: {} lineages, {} alternating rounds".format(args.lineages,
                                                                   args.rounds))
        rows = run(ws, args.rounds, args.lineages)
    finally:
        ws.cleanup()
    out("")
    out(common.table(rows))
    for key, value in common.machine(fixtures.WORK_BASE):
        out("{}: {}".format(key, value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
