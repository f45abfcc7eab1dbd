"""Where the time goes, for a target that is not met: cProfile summaries."""
import cProfile
import io
import os
import pstats
import subprocess
import tempfile

FOCUS = "certbot_wwu"


def _rows(stats, keys, sort_index, limit):
    """(cumtime, tottime, calls, name) of ``keys``, best first."""
    rows = []
    for key in keys:
        cc, nc, tt, ct, _ = stats.stats[key]
        filename, line, func = key
        where = "{}:{}({})".format(_short(filename), line, func)
        rows.append((ct, tt, nc, where))
    rows.sort(key=lambda r: r[sort_index], reverse=True)
    return rows[:limit]


def _short(filename):
    for marker in ("/site-packages/", "/certbot_wwu/", "/lib/python"):
        if marker in filename:
            head, tail = filename.split(marker, 1)
            return (marker.strip("/") + "/" if marker == "/certbot_wwu/" else "") + tail
    return filename


def summarize(stats, label, per=1, limit=12, also=()):
    """Text: total, our functions by cumulative time, everything by own time.

    ``per``: divide times by this (e.g. the number of lineages) for a
    per-item column.
    """
    stats = pstats.Stats(stats) if not isinstance(stats, pstats.Stats) else stats
    total = stats.total_tt
    ours = [k for k in stats.stats if FOCUS in k[0]]
    lines = ["profile of {}: {:.3f} s in total (cProfile inflates small calls)".format(
        label, total)]

    def block(title, rows):
        lines.append("  " + title)
        lines.append("    {:>10} {:>10} {:>10} {:>9}  {}".format(
            "cum ms", "own ms", "cum/item", "calls", "function"))
        for ct, tt, nc, where in rows:
            lines.append("    {:10.2f} {:10.2f} {:10.3f} {:9d}  {}".format(
                ct * 1000, tt * 1000, ct * 1000 / per, nc, where))

    block("certbot_wwu functions by cumulative time:", _rows(stats, ours, 0, limit))
    if also:
        named = [k for k in stats.stats if k[2] in also]
        block("selected certbot functions:", _rows(stats, named, 0, len(named)))
    block("all functions by own time:", _rows(stats, list(stats.stats), 1, limit))
    return "\n".join(lines)


def profile_call(func, label, per=1, repeat=1, setup=None):
    """Profile ``func`` ``repeat`` times; ``setup`` runs unprofiled before each."""
    prof = cProfile.Profile()
    for _ in range(repeat):
        if setup is not None:
            setup()
        prof.runcall(func)
    stats = pstats.Stats(prof, stream=io.StringIO())
    return summarize(stats, label, per * repeat)


def profile_command(python, script, args, label, per=1, env=None, cwd=None, also=()):
    """Run ``python -m cProfile -o FILE script args`` and summarise it."""
    fd, path = tempfile.mkstemp(suffix=".prof")
    os.close(fd)
    try:
        subprocess.run([python, "-m", "cProfile", "-o", path, script] + list(args),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env, cwd=cwd, check=True)
        stats = pstats.Stats(path, stream=io.StringIO())
        return summarize(stats, label, per, also=also)
    finally:
        os.unlink(path)


def import_times(python, script, args, env=None, cwd=None):
    """``-X importtime``: microseconds spent importing certbot_wwu modules
    (self, cumulative) and the total of all top-level imports."""
    proc = subprocess.run([python, "-X", "importtime", script] + list(args),
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=env, cwd=cwd)
    ours, total = [], 0
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        try:
            self_us, cum_us, name = line[len("import time:"):].split("|")
            self_us, cum_us = int(self_us), int(cum_us)
        except ValueError:
            continue
        if len(name) - len(name.lstrip()) == 1:
            total += cum_us
        if FOCUS in name or "__editable__" in name:
            ours.append((cum_us, self_us, name.strip()))
    return ours, total


class CallTimer(object):
    """Inclusive wall time and call count of chosen functions, without a
    profiler's per-call overhead: each is wrapped (and unwrapped on exit) at
    the place its callers look it up (module or class attribute)."""

    def __init__(self, targets):
        #: (owner, attribute, label); nested targets each count inclusively
        self.targets = targets
        self.calls = {label: 0 for _, _, label in targets}
        self.seconds = {label: 0.0 for _, _, label in targets}
        self._saved = []

    def _wrap(self, func, label):
        import functools
        import time as _time

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            start = _time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds[label] += _time.perf_counter() - start
                self.calls[label] += 1
        return wrapper

    def __enter__(self):
        for owner, attr, label in self.targets:
            raw = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
            if isinstance(raw, property):
                new = property(self._wrap(raw.fget, label))
            elif isinstance(raw, classmethod):
                new = classmethod(self._wrap(raw.__func__, label))
            elif isinstance(raw, staticmethod):
                new = staticmethod(self._wrap(raw.__func__, label))
            else:
                new = self._wrap(raw, label)
            self._saved.append((owner, attr, raw))
            setattr(owner, attr, new)
        return self

    def __exit__(self, *exc):
        for owner, attr, raw in reversed(self._saved):
            setattr(owner, attr, raw)
        self._saved = []

    def report(self, title, per, unit="item", whole=None):
        """Per ``unit``: calls and inclusive ms of every target, in order, and
        the share of ``whole`` (seconds in total, e.g. the timed work)."""
        lines = ["  {} (in-process, no profiler; inclusive times, per {}):".format(
            title, unit),
            "    {:>9} {:>10} {:>6}  {}".format("calls", "ms", "share", "function")]
        for _, _, label in self.targets:
            share = "{:5.0f}%".format(100.0 * self.seconds[label] / whole) if whole else ""
            lines.append("    {:9.1f} {:10.3f} {:>6}  {}".format(
                self.calls[label] / per, self.seconds[label] * 1000 / per, share, label))
        return "\n".join(lines)


def wwu_targets(installer=False):
    """The certbot_wwu functions a deployment or a not-due renew goes through,
    plus the system calls that dominate them. Names the package does not
    have (it changes) are left out."""
    import posixpath
    from certbot_wwu import batch, deploy, grants
    from certbot_wwu import state as state_module
    from certbot_wwu.installer import Installer
    from certbot_wwu.lineage import Lineage
    from certbot_wwu.state import State
    targets = []
    if installer:
        targets += [
            (Installer, "__init__", "Installer.__init__ (certbot makes one per lineage)"),
            (Installer, "generic_updates", "Installer.generic_updates"),
            (Installer, "_settings", "Installer._settings (Settings.from_options)"),
            (Installer, "_act", "Installer._act (batch flush)"),
        ]
    targets += [
        (deploy, "secure_key", "deploy.secure_key"),
        (deploy, "redeploy_if_drifted", "deploy.redeploy_if_drifted"),
        (deploy, "needs_deploy", "deploy.needs_deploy"),
        (deploy, "deploy", "deploy.deploy"),
        (deploy, "_plan", "deploy._plan"),
        (deploy, "needs_action", "deploy.needs_action"),
        (grants, "resolve", "grants.resolve (getpwnam)"),
        (grants, "key_group_intent", "grants.key_group_intent"),
        (grants, "check_supported", "grants.check_supported"),
        (grants, "apply", "grants.apply"),
        (grants, "missing", "grants.missing"),
        (grants, "verify", "grants.verify (reads as each principal and an outsider)"),
        (grants, "can_read", "grants.can_read"),
        (grants, "read_acl", "grants.read_acl"),
        (grants, "write_acl", "grants.write_acl"),
        (grants, "has_acl", "grants.has_acl"),
        (State, "load", "State.load"),
        (State, "save", "State.save"),
        (state_module, "write_atomic", "files.write_atomic (as State.save calls it)"),
        (batch, "mark_acted", "batch.mark_acted"),
        (Lineage, "current", "Lineage.current"),
        (Lineage, "archive_dir", "Lineage.archive_dir"),
        (Lineage, "target", "Lineage.target"),
        (Lineage, "version", "Lineage.version"),
        (posixpath, "realpath", "os.path.realpath"),
        (os, "readlink", "os.readlink (also inside realpath)"),
        (os, "fsync", "os.fsync"),
        (os, "fork", "os.fork (parent side)"),
    ]
    return [t for t in targets
            if (t[1] in t[0].__dict__ if isinstance(t[0], type) else hasattr(t[0], t[1]))]
