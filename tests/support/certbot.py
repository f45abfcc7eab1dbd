"""Real certbot in a subprocess, against Pebble, with a config tree of its own.

With a systemd adapter that has ``inside(argv)`` (tests/support/realunits.py)
certbot runs inside the test's own systemd instance, so the installer's
``systemctl`` is the real one; with the recording stand-in (unit tests only)
or none (certbot without an installer) it runs here.
"""
import os
import re
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

from tests.support.pebble import Pebble, free_port


def certbot_executable() -> str:
    """certbot of the running venv, or WWU_CERTBOT (e.g. /usr/bin/certbot)."""
    return os.environ.get("WWU_CERTBOT") or os.path.join(
        os.path.dirname(sys.executable), "certbot")


_VERSION = []  # type: List[Tuple[int, ...]]


def certbot_version() -> Tuple[int, ...]:
    """Version of the certbot under test, e.g. (1, 22, 0)."""
    if not _VERSION:
        out = subprocess.check_output([certbot_executable(), "--version"],
                                      stderr=subprocess.STDOUT,
                                      universal_newlines=True)
        numbers = re.search(r"certbot (\d+)\.(\d+)\.(\d+)", out).groups()
        _VERSION.append(tuple(int(n) for n in numbers))
    return _VERSION[0]


class Result(object):
    def __init__(self, argv: List[str], code: int, out: str, err: str) -> None:
        self.argv, self.code, self.out, self.err = argv, code, out, err

    @property
    def output(self) -> str:
        return self.out + self.err

    def __repr__(self) -> str:
        return "certbot exited {}\nargv: {}\n--- stdout\n{}\n--- stderr\n{}".format(
            self.code, " ".join(self.argv), self.out, self.err)


class Certbot(object):
    """One certbot installation state: config, work and logs directories."""

    def __init__(self, root: str, pebble: Pebble, systemctl: Any = None,
                 extra_env: Optional[Dict[str, str]] = None) -> None:
        self.root = root
        self.pebble = pebble
        self.systemctl = systemctl
        self.config_dir = os.path.join(root, "etc")
        self.work_dir = os.path.join(root, "work")
        self.logs_dir = os.path.join(root, "logs")
        self.env = dict(os.environ)
        self.env.update(pebble.env())
        if systemctl is not None:
            self.env.update(systemctl.env())
        self.env.update(extra_env or {})

    def __call__(self, *args: str, check: bool = True,
                 env: Optional[Dict[str, str]] = None) -> Result:
        argv = self.argv(*args)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True,
                                env=dict(self.env, **(env or {})))
        out, err = proc.communicate(timeout=300)
        result = Result(argv, proc.returncode, out, err)
        if check and result.code != 0:
            raise AssertionError(repr(result))
        return result

    def argv(self, *args: str) -> List[str]:
        """certbot's argv for this state (for tests that start it themselves)."""
        return self.inside([certbot_executable()] + list(args) + [
            "--config-dir", self.config_dir, "--work-dir", self.work_dir,
            "--logs-dir", self.logs_dir, "--non-interactive"])

    def inside(self, argv: List[str]) -> List[str]:
        """``argv`` where this certbot runs: inside the test's systemd when
        there is one (e.g. certbot-wwu started by a test), else unchanged."""
        inside = getattr(self.systemctl, "inside", None)
        return inside(argv) if inside is not None else list(argv)

    def outside(self) -> "Certbot":
        """The same state, run on the host (for tests that mount something
        the instance cannot see and act on no unit: a systemctl call would
        hit tests/support/outside/ and fail)."""
        bot = Certbot.__new__(Certbot)
        bot.__dict__.update(self.__dict__)
        bot.systemctl = None
        return bot

    def register(self) -> Result:
        kid, hmac = self.pebble.new_eab()
        return self("register", "--server", self.pebble.url, "--eab-kid", kid,
                    "--eab-hmac-key=" + hmac, "--email", "admin@example.org",
                    "--agree-tos", "--no-eff-email")

    def acme(self, verb: str, *args: str, **kwargs) -> Result:
        """A verb that talks to the CA: server and standalone port filled in."""
        return self(verb, "--server", self.pebble.url, "--agree-tos",
                    "--http-01-port", str(free_port()), *args, **kwargs)

    def renew(self, *args: str, **kwargs) -> Result:
        return self("renew", "--no-random-sleep-on-renew", *args, **kwargs)

    def live(self, name: str, kind: str = "privkey") -> str:
        return os.path.join(self.config_dir, "live", name, kind + ".pem")

    def archive(self, name: str, kind: str, version: int) -> str:
        return os.path.join(self.config_dir, "archive", name,
                            "{}{}.pem".format(kind, version))

    def renewal_conf(self, name: str) -> str:
        return os.path.join(self.config_dir, "renewal", name + ".conf")

    def read_renewal_conf(self, name: str) -> str:
        with open(self.renewal_conf(name)) as f:
            return f.read()
