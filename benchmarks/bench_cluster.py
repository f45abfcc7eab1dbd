"""Clusters at scale: what ``--wwu-acl-push-to`` costs a ``certbot renew``.

Real peers: the network namespaces of tests/cluster (one sshd each, their
own /etc/letsencrypt), up to 8 of them. The origin's lineages are clones of
the workspace's real lineage, attached to the installer (``wwu_acl_user``)
and, on the pushing sides, ``wwu_acl_push_to`` naming the first P peers.
The peers are made current beforehand (the lineage's files, the peer's
renewal conf and the origin's record, as a push leaves them), so every timed
run is the renewal timer's daily run: nothing due, every peer current.

Measured, side by side in one run:

* not-due renew over L lineages pushing to P = 2 and 8 peers against the
  same tree without pushing (P = 0), alternating rounds; ssh logins per run
  counted in the peers' sshd logs ("Accepted publickey");
* the same with P = 2 when one peer does not answer: its address inside the
  test's own namespaces blackholes every packet to the origin, so each
  connect waits for connect_timeout (set to CONNECT_TIMEOUT here);
* the first renew after attaching one shared unit to L lineages (deploys
  each lineage once, acts on the unit once): its cost per lineage.
"""
import json
import os
import shutil

import fixtures
from common import Row, median, out, secs, spawn

from certbot_wwu import renewalconf

CONNECT_TIMEOUT = 5
#: targets (issue 13)
FIRST_RENEW_RATIO = 1.2


def _net(count):
    """tests/cluster's namespaces with ``count`` peers, and their config."""
    from tests.cluster import conftest
    conftest.host.ensure_test_accounts()
    net = conftest.Net(count)
    try:
        net.up()
        _set_timeout(net)
    except BaseException:
        net.down()
        raise
    return net


def _set_timeout(net):
    path = os.path.join(net.presets_dir, "cluster.conf")
    with open(path) as f:
        text = f.read()
    text = text.replace("connect_timeout = 2\n",
                        "connect_timeout = {}\n".format(CONNECT_TIMEOUT))
    with open(path, "w") as f:
        f.write(text)


def _tree(ws, label, count, values):
    root = ws.path(label)
    config = fixtures.copy_tree(ws, root)
    names = fixtures.clone_lineages(config, count)
    for name in names:
        renewalconf.attach(os.path.join(config, "renewal", name + ".conf"), values)
    return root, config, names


def _seed(net, peers, config_dir, names):
    """Make ``peers`` current for every lineage, as a push leaves them: the
    files and the peer's conf there, the record here."""
    from certbot_wwu import cluster
    from certbot_wwu.lineage import Lineage
    try:
        from certbot_wwu.cluster.pushing import Local
    except ImportError:  # the code before the cluster package (--code)
        Local = cluster._Local  # pylint: disable=protected-access
    config = cluster.load_config(net.presets_dir)
    for name in names:
        lineage = Lineage(config_dir, name)
        local = Local(lineage, config)
        record = {}
        for peer in peers:
            for part in ("archive", "live"):
                dest = peer.path(part, name)
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(os.path.join(config_dir, part, name), dest, symlinks=True)
            os.makedirs(peer.path("renewal"), exist_ok=True)
            with open(peer.path("renewal", name + ".conf"), "w") as f:
                f.write(local.conf)
            record[config.peer(peer.name).key] = dict(local.entry(), deployed=local.deploys)
        workdir = os.path.join(config_dir, "wwu-acl")
        os.makedirs(workdir, 0o700, exist_ok=True)
        with open(os.path.join(workdir, name + ".cluster.json"), "w") as f:
            json.dump({"peers": record}, f)


def run(ws, rounds, sizes=(10, 100, 400), peer_counts=(2, 8),
        first_sizes=(100, 400, 800), silent_max=None):
    rows = []
    net = _net(max(peer_counts))
    env = dict(ws.env, **net.env())
    os.environ.update(net.env())
    try:
        rows += _not_due(ws, net, env, rounds, sizes, peer_counts, silent_max)
    finally:
        net.down()
    rows += _first_renew(ws, first_sizes)
    return rows


def _renew(env, root):
    shutil.rmtree(os.path.join(root, "logs"), ignore_errors=True)
    argv = fixtures.certbot_argv(fixtures.MAIN_VENV, "renew",
                                 "--no-random-sleep-on-renew") + fixtures.config_args(root)
    return spawn(argv, env=env, cwd=root)


def _not_due(ws, net, env, rounds, sizes, peer_counts, silent_max):
    rows = []
    for count in sizes:
        trees = {}
        for p in (0,) + tuple(peer_counts):
            values = {"user": fixtures.USER}
            if p:
                values["push_to"] = ",".join(peer.name for peer in net.peers[:p])
            trees[p] = _tree(ws, "cluster-{}-{}".format(count, p), count, values)
            if p:
                _seed(net, net.peers[:p], trees[p][1], trees[p][2])
        for p, (root, _, _) in sorted(trees.items()):
            first = _renew(env, root)  # deploys each lineage here once
            if first.code != 0:
                raise RuntimeError("the first renew of {} lineages, P={} failed:\n{}".format(
                    count, p, first.output[-3000:]))
        walls = {p: [] for p in trees}
        logins = {p: [] for p in trees}
        order = sorted(trees)
        for n in range(rounds):
            for p in (order if n % 2 == 0 else order[::-1]):
                before = sum(peer.logins() for peer in net.peers)
                child = _renew(env, trees[p][0]).check()
                walls[p].append(child.wall)
                logins[p].append(sum(peer.logins() for peer in net.peers) - before)
        base = median(walls[0])
        out("  L={}: renew wall per side (s): {}".format(count, "; ".join(
            "P={}: {}".format(p, " ".join("{:.2f}".format(w) for w in walls[p]))
            for p in order)))
        for p in peer_counts:
            wall = median(walls[p])
            most = max(logins[p])
            rows.append(Row("cluster", "renew x{}, not due, push to P={} vs none".format(
                count, p), secs(wall), secs(base), "{:+.3f} s".format(wall - base)))
            rows.append(Row("cluster", "  same runs: ssh logins per run", str(most), "-",
                            "P = {}".format(p), "<= P", most <= p))
        if 2 in peer_counts and (silent_max is None or count <= silent_max):
            p = 2
            root = trees[p][0]
            silent = net.peers[1]
            silent.blackhole()
            try:
                before = sum(peer.logins() for peer in net.peers)
                child = _renew(env, root)
                made = sum(peer.logins() for peer in net.peers) - before
            finally:
                silent.unblackhole()
            if "peer-b (cannot connect" not in child.output:
                raise RuntimeError("the silent peer was not reported:\n" + child.output[-3000:])
            healthy = median(walls[p])
            added = child.wall - healthy
            rows.append(Row("cluster", "renew x{}, P=2, one peer silent vs all up".format(
                count), secs(child.wall), secs(healthy),
                "{:+.1f} s = {:.2f} timeouts".format(added, added / CONNECT_TIMEOUT),
                "<= 1 timeout ({} s)".format(CONNECT_TIMEOUT),
                added <= CONNECT_TIMEOUT * 1.2))
            rows.append(Row("cluster", "  same run: ssh logins", str(made), "-",
                            "to the peer that is up", "<= 1", made <= 1))
        for p, (root, _, _) in trees.items():
            shutil.rmtree(root, ignore_errors=True)
        for peer in net.peers:
            peer.reset()
    return rows


def _first_renew(ws, sizes):
    """The first renew after attaching one shared unit to L lineages."""
    per = {}
    for count in sizes:
        root, _, _ = _tree(ws, "attach-{}".format(count), count,
                           {"user": fixtures.USER, "unit": "bench.service"})
        child = _renew(ws.env, root).check()
        per[count] = child.wall / count * 1000.0
        out("  first renew after attach, L={}: {} ({:.2f} ms/lineage)".format(
            count, secs(child.wall), per[count]))
        shutil.rmtree(root, ignore_errors=True)
    rows = []
    low, high = min(sizes), max(sizes)
    for count in sizes:
        rows.append(Row("cluster", "first renew after attach (one unit), L={}".format(count),
                        "{:.2f} ms/lineage".format(per[count]), "-", ""))
    ratio = per[high] / per[low]
    rows.append(Row("cluster", "  per lineage at L={} vs L={}".format(high, low),
                    "{:.2f} ms".format(per[high]), "{:.2f} ms".format(per[low]),
                    "x{:.2f}".format(ratio), "<= x{}".format(FIRST_RENEW_RATIO),
                    ratio <= FIRST_RENEW_RATIO))
    return rows
