"""A real systemd for tests: PID 1 of its own namespaces, sharing the host's
filesystem and network (DESIGN §11, docs/testing.rst).

Instance(name).boot() starts Debian's /lib/systemd/systemd as PID 1 of new
PID, mount, UTS, IPC and cgroup namespaces. Inside the mount namespace, before
systemd runs, the boot script

* mounts a fresh /proc, read-only binds of /proc/sys and /sys, a minimal /dev,
  a tmpfs on /run and cgroup2 (the instance's own subtree of the host's
  /sys/fs/cgroup/unified) on /sys/fs/cgroup;
* puts overlays with upper layers in that /run tmpfs over /etc, /usr,
  /var/lib, /var/log and /var/cache, so that units, drop-ins, /etc/letsencrypt,
  /etc/sysconfig, dpkg's state and a .deb's files vanish when it stops; /tmp,
  /var/tmp (the tests' scratch directories) and the network stay shared;
* masks, in /run, every generator, every timer but certbot's, and the boot
  units that would write to the host (tmpfiles, sysctl, modules, binfmt,
  timesyncd, random seed, ...), and boots wwu-test.target, which wants
  basic.target only (never multi-user.target: its daemons stay off).

Tests act inside with run() (nsenter into every namespace) and write files
into the overlays through path() (/proc/PID/root). stop() sends SIGRTMIN+4
(a container's poweroff) and waits; the unshare process dies with the test
process (PR_SET_PDEATHSIG) and takes the whole PID namespace with it, so an
interrupted session leaves nothing running.
"""
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Dict, List, Optional, Sequence

SYSTEMD = "/lib/systemd/systemd"
TARGET = "wwu-test.target"
CGROUP_PARENT = "/sys/fs/cgroup/unified"
OVERLAID = ("/etc", "/usr", "/var/lib", "/var/log", "/var/cache")
#: boot units that would touch the host or are useless in a container
#: sockets systemd itself (and the bus it needs) brings; every other is masked
OWN_SOCKETS = ("systemd-", "dbus.", "syslog.")
MASKED = (
    "systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-clean.service", "systemd-tmpfiles-clean.timer",
    "systemd-sysctl.service", "systemd-modules-load.service",
    "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount", "systemd-timesyncd.service",
    "systemd-random-seed.service", "systemd-pstore.service",
    "systemd-sysusers.service", "systemd-firstboot.service",
    "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
    "systemd-journal-flush.service", "systemd-journal-catalog-update.service",
    "systemd-machine-id-commit.service", "systemd-update-done.service",
    "ldconfig.service", "systemd-remount-fs.service", "systemd-repart.service",
    "systemd-pcrphase.service", "systemd-pcrphase-sysinit.service",
    "systemd-hwdb-update.service", "kmod-static-nodes.service",
    "systemd-udevd.service", "systemd-udev-trigger.service",
    "systemd-udev-settle.service", "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket", "apparmor.service", "swap.target",
    "dev-hugepages.mount", "dev-mqueue.mount", "sys-fs-fuse-connections.mount",
    "sys-kernel-config.mount", "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount", "systemd-ask-password-console.path",
    "systemd-ask-password-wall.path", "cryptsetup.target",
    "integritysetup.target", "veritysetup.target", "keyboard-setup.service",
    "console-setup.service", "systemd-fsck-root.service",
    "systemd-journald-audit.socket", "e2scrub_reap.service",
)
#: timers that may run (Debian's and EPEL's certbot); every other is masked
KEPT_TIMERS = ("certbot.timer", "certbot-renew.timer")
UNIT_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system")
GENERATOR_DIRS = ("/lib/systemd/system-generators", "/usr/lib/systemd/system-generators",
                  "/etc/systemd/system-generators")

TARGET_UNIT = """[Unit]
Description=certbot-wwu test instance (basic.target only, never multi-user.target)
Requires=basic.target
After=basic.target
AllowIsolate=yes
"""

JOURNALD_CONF = "[Journal]\nStorage=volatile\nRateLimitBurst=0\n"

#: run by /bin/sh as PID 1 of the new namespaces, then exec'd into systemd;
#: $1 is a newline-separated list of paths to mask, $2 of generators
BOOT_SCRIPT = r"""
set -eu
mount -t proc -o nosuid,nodev,noexec proc /proc
for p in /proc/sys /proc/sysrq-trigger; do
  [ -e "$p" ] || continue
  mount --bind "$p" "$p"; mount -o remount,bind,ro "$p"
done
mount --bind /sys /sys; mount -o remount,bind,ro,nosuid,nodev,noexec /sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=755,nosuid,nodev,size=256m tmpfs /run
mkdir -p /run/wwu-overlay
for d in $WWU_OVERLAID; do
  u=/run/wwu-overlay$d
  mkdir -p "$u/upper" "$u/work"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$u/upper,workdir=$u/work" "$d"
done
mount -t tmpfs -o mode=755,nosuid,size=4m tmpfs /dev
for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $n; mknod -m 666 "/dev/$1" c "$2" "$3"
done
mkdir /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
mkdir -p /run/systemd/system /run/systemd/system-generators \
         /run/systemd/journald.conf.d
printf '%s' "$WWU_TARGET_UNIT" > /run/systemd/system/wwu-test.target
printf '%s' "$WWU_JOURNALD_CONF" > /run/systemd/journald.conf.d/wwu-test.conf
for u in $WWU_MASK; do ln -sf /dev/null "/run/systemd/system/$u"; done
for g in $WWU_GENERATORS; do ln -sf /dev/null "/run/systemd/system-generators/$g"; done
hostname "$WWU_NAME"
exec /lib/systemd/systemd --unit=wwu-test.target --log-target=console
"""


class BootError(Exception):
    """The instance did not come up; the message says why."""


def cannot_boot() -> Optional[str]:
    """Why a real systemd cannot boot here, or None."""
    if os.geteuid() != 0:
        return "a real systemd needs root (namespaces, cgroups, mounts)"
    for tool in (SYSTEMD, "/usr/bin/unshare", "/usr/bin/nsenter"):
        if not os.access(tool, os.X_OK):
            return "{} is missing (scripts/setup-systemd-test installs it)".format(tool)
    if not os.path.exists(os.path.join(CGROUP_PARENT, "cgroup.procs")):
        return "no cgroup2 hierarchy at {} to give systemd a subtree".format(CGROUP_PARENT)
    return None


def _masked_units() -> List[str]:
    names = set(MASKED)
    for directory in UNIT_DIRS:
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        names.update(e for e in entries
                     if e.endswith(".timer") and e not in KEPT_TIMERS)
        # a package's socket (dovecot.socket, ssh.socket, ...) enabled on the
        # host would bind the host's ports: the network is shared
        names.update(e for e in entries if e.endswith(".socket")
                     and not e.startswith(OWN_SOCKETS))
    return sorted(names)


def _generators() -> List[str]:
    names = set()  # type: set
    for directory in GENERATOR_DIRS:
        try:
            names.update(os.listdir(directory))
        except OSError:
            pass
    return sorted(names)


def _die_with_parent_and_join(cgroup: str):
    """preexec_fn: SIGKILL when the test process dies; into our cgroup."""
    def prepare() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    return prepare


class Result(object):
    def __init__(self, argv: Sequence[str], code: int, out: str, err: str) -> None:
        self.argv, self.code, self.out, self.err = list(argv), code, out, err

    def __repr__(self) -> str:
        return "exit {}: {}\n--- stdout\n{}\n--- stderr\n{}".format(
            self.code, " ".join(self.argv), self.out, self.err)


class Instance(object):
    """One booted systemd; use as a context manager or boot()/stop()."""

    def __init__(self, name: str = "wwu-test") -> None:
        self.name = name
        self.pid = 0  # systemd's PID on the host
        self.proc = None  # type: Optional[subprocess.Popen]
        self.cgroup = ""
        self.console = ""
        self._tmp = ""

    # -- lifecycle ---------------------------------------------------------
    def boot(self, timeout: float = 30.0) -> "Instance":
        reason = cannot_boot()
        if reason:
            raise BootError(reason)
        self._tmp = tempfile.mkdtemp(prefix="wwu-systemd-")
        self.console = os.path.join(self._tmp, "console.log")
        self.cgroup = os.path.join(CGROUP_PARENT, "{}-{}".format(self.name, os.getpid()))
        suffix = 0
        while os.path.exists(self.cgroup + ("" if not suffix else "-%d" % suffix)):
            suffix += 1
        self.cgroup += "" if not suffix else "-%d" % suffix
        os.mkdir(self.cgroup)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "container": self.name,
               "WWU_NAME": self.name, "WWU_OVERLAID": " ".join(OVERLAID),
               "WWU_MASK": " ".join(_masked_units()),
               "WWU_GENERATORS": " ".join(_generators()),
               "WWU_TARGET_UNIT": TARGET_UNIT, "WWU_JOURNALD_CONF": JOURNALD_CONF}
        argv = ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc",
                "--cgroup", "--propagation", "private", "--kill-child=SIGKILL",
                "--", "/bin/sh", "-c", BOOT_SCRIPT]
        with open(self.console, "wb") as console:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                env=env, preexec_fn=_die_with_parent_and_join(self.cgroup),
                close_fds=True)
        try:
            self._wait_running(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _child_pid(self) -> int:
        path = "/proc/{0}/task/{0}/children".format(self.proc.pid)
        try:
            with open(path) as f:
                pids = f.read().split()
        except OSError:
            return 0
        return int(pids[0]) if pids else 0

    def _wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BootError("systemd exited ({}) while booting: {}".format(
                    self.proc.returncode, self.console_tail()))
            if not self.pid:
                self.pid = self._child_pid()
            if self.pid and os.path.exists(self.path("/run/systemd/private")):
                result = self.run(["systemctl", "is-system-running", "--wait"],
                                  check=False, timeout=max(1.0, deadline - time.monotonic()))
                state = result.out.strip()
                if state in ("running", "degraded"):
                    if state == "degraded":
                        failed = self.run(["systemctl", "--failed", "--plain",
                                           "--no-legend"], check=False).out
                        raise BootError("systemd booted degraded: " + failed.strip())
                    return
            time.sleep(0.05)
        raise BootError("systemd did not reach 'running' in {} s (state {!r}): {}".format(
            timeout, state, self.console_tail()))

    def console_tail(self, lines: int = 20) -> str:
        try:
            with open(self.console, errors="replace") as f:
                return " | ".join(f.read().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """Power off the instance (SIGRTMIN+4) and wait; SIGKILL as a last resort."""
        if self.proc is not None and self.proc.poll() is None:
            if self.pid:
                try:
                    os.kill(self.pid, signal.SIGRTMIN + 4)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if self.pid:
                    try:
                        os.kill(self.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.kill()
                self.proc.wait(10)
        self.pid = 0
        self._remove_cgroup()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = ""

    def _remove_cgroup(self) -> None:
        if not self.cgroup or not os.path.isdir(self.cgroup):
            return
        deadline = time.monotonic() + 10
        for top, dirs, _ in os.walk(self.cgroup, topdown=False):
            for d in dirs:
                path = os.path.join(top, d)
                while True:
                    try:
                        os.rmdir(path)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
        os.rmdir(self.cgroup)

    def __enter__(self) -> "Instance":
        return self.boot()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- acting inside -----------------------------------------------------
    @property
    def running(self) -> bool:
        return bool(self.pid) and self.proc is not None and self.proc.poll() is None

    def enter_argv(self) -> List[str]:
        """Prefix that runs a command inside every namespace of the instance."""
        if not self.running:
            raise BootError("the systemd instance is not running: " + self.console_tail())
        return ["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-p", "-C", "--"]

    def run(self, argv: Sequence[str], input: Optional[str] = None, check: bool = True,
            env: Optional[Dict[str, str]] = None, timeout: float = 300) -> Result:
        full = self.enter_argv() + list(argv)
        proc = subprocess.Popen(full, stdin=subprocess.PIPE if input is not None
                                else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True,
                                env=env if env is not None else dict(os.environ))
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError("timed out after {} s: {}".format(timeout, " ".join(argv)))
        result = Result(argv, proc.returncode, out, err)
        if check and result.code != 0:
            raise AssertionError(repr(result))
        return result

    def path(self, path: str) -> str:
        """``path`` as seen inside (its overlays), reachable from the host."""
        return "/proc/{}/root{}".format(self.pid, path)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file inside the instance (e.g. into the /etc overlay)."""
        target = self.path(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write(text)
        os.chmod(target, mode)

    def remove(self, path: str) -> None:
        target = self.path(path)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.unlink(target)

    def systemctl(self, *args: str, check: bool = True) -> Result:
        return self.run(["systemctl"] + list(args), check=check)

    def daemon_reload(self) -> None:
        self.systemctl("daemon-reload")

    def show(self, unit: str, *props: str) -> Dict[str, str]:
        out = self.systemctl("show", unit, "-p", ",".join(props)).out
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pid(self, unit: str) -> int:
        return int(self.show(unit, "MainPID")["MainPID"])

    def state(self, unit: str) -> str:
        return self.systemctl("is-active", unit, check=False).out.strip()

    def journal(self, unit: str, lines: int = 50) -> str:
        return self.run(["journalctl", "-u", unit, "-n", str(lines), "--no-pager",
                         "-q", "-o", "cat"], check=False).out

    def wait_state(self, unit: str, states: Sequence[str], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(unit)
            if state in states or time.monotonic() > deadline:
                return state
            time.sleep(0.1)
