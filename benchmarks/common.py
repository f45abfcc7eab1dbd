"""Shared pieces of the benchmarks: timing, child rusage, results, machine info."""
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def out(*parts):
    """Progress line, flushed at once (make bench runs for minutes)."""
    print(*parts, flush=True)


def median(values):
    return statistics.median(values)


def quartiles(values):
    """(lower quartile, median, upper quartile)."""
    if len(values) < 2:
        return (values[0],) * 3
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[1], q[2]


def paired(a_runs, b_runs, how):
    """Quartiles of ``how(a, b)`` over the rounds, each A paired with the B
    of its own round: a spread that shows whether a difference is real."""
    return quartiles([how(a, b) for a, b in zip(a_runs, b_runs)])


class Child(object):
    """What one finished child process cost."""

    def __init__(self, argv, code, wall, cpu, maxrss_kb, output):
        self.argv = argv
        self.code = code
        self.wall = wall
        #: user + system CPU seconds; less sensitive to other load than wall
        self.cpu = cpu
        self.maxrss_kb = maxrss_kb
        self.output = output

    def check(self):
        if self.code != 0:
            raise RuntimeError("exit {}: {}\n{}".format(
                self.code, " ".join(self.argv), self.output[-4000:]))
        return self


def spawn(argv, env=None, cwd=None):
    """Run ``argv`` to completion; wall time and the child's peak RSS.

    The child is reaped with os.wait4 so its own rusage (ru_maxrss, KiB on
    Linux) is what we report, not the sum over all children of this process.
    Output goes to a temporary file (a pipe would need reading while waiting).
    """
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    return Child(argv, proc.returncode, wall, usage.ru_utime + usage.ru_stime,
                 usage.ru_maxrss, text)


def timed(func):
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def ms(seconds):
    return "{:.2f} ms".format(seconds * 1000.0)


def secs(seconds):
    return "{:.3f} s".format(seconds)


def mib(kib):
    return "{:.1f} MiB".format(kib / 1024.0)


class Row(object):
    """One line of the final table.

    ``holds`` is True/False for a target, None for a figure given for
    information only.
    """

    def __init__(self, bench, what, a, b, compare, target="", holds=None):
        self.bench = bench
        self.what = what
        self.a = a
        self.b = b
        self.compare = compare
        self.target = target
        self.holds = holds


def table(rows):
    head = ("benchmark", "measure", "A", "B", "A vs B", "target", "holds")
    cells = [head] + [
        (r.bench, r.what, r.a, r.b, r.compare, r.target or "-",
         {True: "yes", False: "NO", None: "info"}[r.holds]) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = []
    for n, c in enumerate(cells):
        lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _first(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _fs_type(path):
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                mount = fields[1]
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) \
                        and len(mount) >= len(best):
                    best, kind = mount, "{} ({})".format(fields[2], fields[0])
    except OSError:
        pass
    return kind


def code_state(rev=None):
    """The commit benchmarked, and which package files differ from it."""
    try:
        if rev:
            head = subprocess.check_output(
                ["git", "-C", REPO, "log", "-1", "--format=%h %s", rev],
                universal_newlines=True).strip()
            return "certbot_wwu exported from commit {}; the working tree was not used".format(
                head)
        head = subprocess.check_output(["git", "-C", REPO, "log", "-1", "--format=%h %s"],
                                       universal_newlines=True).strip()
        dirty = subprocess.check_output(
            ["git", "-C", REPO, "status", "--porcelain", "--", "certbot_wwu", "setup.py"],
            universal_newlines=True).split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return head + ("; uncommitted changes in " + ", ".join(dirty) if dirty else "")


def machine(work_dir, rev=None):
    import certbot
    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    try:
        mem = "{:.1f} GiB".format(int(mem_kb) / 1024.0 / 1024.0)
    except ValueError:
        mem = mem_kb
    return [
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("CPU", _first("/proc/cpuinfo", "model name")),
        ("memory", mem),
        ("Python", "{} ({})".format(platform.python_version(), os.path.relpath(
            sys.executable, REPO) if sys.executable.startswith(REPO) else sys.executable)),
        ("certbot", certbot.__version__),
        ("kernel", platform.release()),
        ("filesystem of the work dir", "{} on {}".format(work_dir, _fs_type(work_dir))),
        ("date", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("code", code_state(rev)),
    ]
