"""A real TLS service behind the recording systemctl stand-in, for tests.

TlsService runs tests/support/tlsserver.py as an unprivileged user (runuser),
so the server reads the deployed certificate and key with that user's rights,
exactly as a real daemon would. It is controlled as a systemd unit: install()
writes a control script $WWU_SYSTEMCTL_DIR/units/<unit>, which bin/systemctl
runs for restart/try-restart/reload-or-restart/try-reload-or-restart
("restart"), reload ("reload") and is-active ("status").

Files of one unit, all under the stand-in's directory (which must be
traversable by the user, e.g. below the ``scratch`` fixture, not pytest's
0700 tmp_path):

    units/<unit>                     the control script (root, 0755)
    services/<unit>/tlsserver.py     a copy of the server (0644)
    services/<unit>/server.log       stdout+stderr of every server run
    services/<unit>/run/pid          written by the server once listening
                                     (run/ is owned by the user)
    services/<unit>/failed           the last start failed
"""
import hashlib
import os
import pwd
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
from typing import List, Optional

from tests.support.systemd import RecordingSystemctl

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tlsserver.py")

#: tried in this order after the ``python`` given, for the user to run the
#: server with (the venvs' pythons live below /root, which users cannot enter)
FALLBACK_PYTHONS = ("/usr/bin/python3",)

START_TIMEOUT = 10.0

CONTROL_SCRIPT = r"""#!/bin/sh
# Control script of unit {unit}: tlsserver.py as user {user}, written by
# tests/support/service.py (TlsService) for the recording systemctl stand-in.
# Usage: $0 start|restart|stop|reload|status
unit={q_unit}
user={q_user}
python={q_python}
server={q_server}
cert={q_cert}
key={q_key}
port={port}
svc={q_svc}
pidfile="$svc/run/pid"
log="$svc/server.log"
failed="$svc/failed"
ticks=100  # waits are bounded: this many times 0.1 s

alive() {{  # a live, non-zombie process
  case "$1" in ''|*[!0-9]*) return 1 ;; esac
  st=$(sed -n 's/^State:[[:space:]]*\([A-Za-z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}}

mainpid() {{
  pid=$(head -n 1 "$pidfile" 2>/dev/null)
  case "$pid" in ''|*[!0-9]*) pid= ;; esac
}}

do_stop() {{
  mainpid
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    i=0
    while alive "$pid"; do
      i=$((i + 1))
      if [ "$i" -eq "$ticks" ]; then kill -KILL "$pid" 2>/dev/null; fi
      if [ "$i" -ge $((ticks * 2)) ]; then
        echo "$unit: pid $pid does not die" >&2; return 1
      fi
      sleep 0.1
    done
  fi
  rm -f "$pidfile"
}}

do_start() {{
  rm -f "$pidfile" "$failed"
  echo "--- $unit: start as $user ($python)" >> "$log"
  # daemonised: own session, no terminal, output to the log; setsid -w keeps
  # the launcher alive as long as the server, so its death is seen at once
  setsid -w nohup runuser -u "$user" -- "$python" "$server" \
    --cert "$cert" --key "$key" --port "$port" --pidfile "$pidfile" \
    >> "$log" 2>&1 < /dev/null &
  launcher=$!
  i=0
  while [ "$i" -lt "$ticks" ]; do
    mainpid
    if alive "$pid"; then return 0; fi   # the pidfile is written once listening
    alive "$launcher" || break
    sleep 0.1
    i=$((i + 1))
  done
  kill -TERM "$launcher" 2>/dev/null     # runuser passes it on to the server
  touch "$failed"
  echo "$unit: tlsserver did not come up; last lines of $log:" >&2
  tail -n 5 "$log" >&2
  return 1
}}

reloads() {{
  n=$(grep -c '^tlsserver: reload' "$log" 2>/dev/null)
  echo "${{n:-0}}"
}}

do_reload() {{
  mainpid
  if ! alive "$pid"; then
    echo "$unit: not active, cannot reload" >&2; return 1
  fi
  before=$(reloads)
  kill -HUP "$pid"
  i=0
  while [ "$i" -lt "$ticks" ]; do
    if [ "$(reloads)" -gt "$before" ]; then
      last=$(grep '^tlsserver: reload' "$log" | tail -n 1)
      case "$last" in
        "tlsserver: reloaded"*) return 0 ;;
        *) echo "$unit: $last" >&2; return 1 ;;
      esac
    fi
    alive "$pid" || break
    sleep 0.1
    i=$((i + 1))
  done
  echo "$unit: no answer to SIGHUP from pid $pid" >&2
  return 1
}}

case "$1" in
  start) mainpid; alive "$pid" || do_start ;;
  restart) do_stop && do_start ;;
  stop) do_stop ;;
  reload) do_reload ;;
  status)
    mainpid
    if alive "$pid"; then echo active; exit 0; fi
    if [ -e "$failed" ] || [ -n "$pid" ]; then echo failed; else echo inactive; fi
    exit 3 ;;
  *) echo "usage: $0 start|restart|stop|reload|status" >&2; exit 2 ;;
esac
"""


class ServiceError(RuntimeError):
    """The test service could not be set up or started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies count as dead)."""
    try:
        with open("/proc/{}/status".format(pid)) as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1] not in ("Z", "X")
    except (OSError, IndexError):
        pass
    return False


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


class TlsService(object):
    """A TLS server as `user`, controlled as systemd unit `unit` through the recording systemctl."""

    def __init__(self, systemctl: RecordingSystemctl, unit: str, user: str, cert: str,
                 key: str, port: int, python: str = sys.executable) -> None:
        self.systemctl = systemctl
        self.unit = unit
        self.user = user
        self.cert = cert
        self.key = key
        self.port = port
        self.python = python
        #: the python the user really runs the server with (set by install())
        self.server_python = None  # type: Optional[str]
        self.dir = os.path.join(systemctl.dir, "services", unit)
        self.script = os.path.join(systemctl.dir, "units", unit)
        self.server = os.path.join(self.dir, "tlsserver.py")
        self.pidfile = os.path.join(self.dir, "run", "pid")
        self.logfile = os.path.join(self.dir, "server.log")

    # -- setup ------------------------------------------------------------

    def install(self) -> None:
        """Write the control script (and the server copy it runs)."""
        entry = pwd.getpwnam(self.user)
        run = os.path.dirname(self.pidfile)
        os.makedirs(run, exist_ok=True)
        os.chmod(self.dir, 0o755)
        os.chown(run, entry.pw_uid, entry.pw_gid)
        os.chmod(run, 0o755)
        shutil.copyfile(SERVER, self.server)
        os.chmod(self.server, 0o644)
        self.server_python = self._find_python()
        text = CONTROL_SCRIPT.format(
            unit=self.unit, user=self.user, port=int(self.port),
            q_unit=shlex.quote(self.unit), q_user=shlex.quote(self.user),
            q_python=shlex.quote(self.server_python), q_server=shlex.quote(self.server),
            q_cert=shlex.quote(self.cert), q_key=shlex.quote(self.key),
            q_svc=shlex.quote(self.dir))
        os.makedirs(os.path.dirname(self.script), exist_ok=True)
        tmp = self.script + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.rename(tmp, self.script)

    def _find_python(self) -> str:
        """The first python the user can run that can import ssl and read the server."""
        probe = "import ssl, sys; open(sys.argv[1]).close()"
        candidates = []  # type: List[str]
        for python in (self.python,) + FALLBACK_PYTHONS:
            if python and python not in candidates:
                candidates.append(python)
        failures = []  # type: List[str]
        for python in candidates:
            proc = subprocess.run(["runuser", "-u", self.user, "--", python, "-c", probe,
                                   self.server],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  universal_newlines=True)
            if proc.returncode == 0:
                return python
            lines = proc.stderr.strip().splitlines()
            failures.append("{}: {}".format(
                python, lines[-1] if lines else "exit {}".format(proc.returncode)))
        raise ServiceError(
            "{} can run none of these pythons with {} (is {} traversable for it?):\n  {}".format(
                self.user, self.server, self.dir, "\n  ".join(failures)))

    # -- control ----------------------------------------------------------

    def _control(self, verb: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.script, verb], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True)

    def start(self) -> None:
        """Start through the control script; return once the port speaks TLS."""
        if not os.path.exists(self.script):
            self.install()
        proc = self._control("start")
        if proc.returncode != 0:
            raise ServiceError("{} did not start (exit {}): {}\n{}".format(
                self.unit, proc.returncode, proc.stderr.strip(), self.log()))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.served_fingerprint("localhost")
                return
            except (OSError, ssl.SSLError) as e:
                error = e
            if self.pid() is None:
                raise ServiceError("{} died while starting ({!r}); log:\n{}".format(
                    self.unit, error, self.log()))
            if time.monotonic() > deadline:
                raise ServiceError("{} does not speak TLS on port {} after {} s ({!r}); "
                                   "log:\n{}".format(self.unit, self.port, START_TIMEOUT,
                                                     error, self.log()))
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server; fine if it is not running or was never installed."""
        if os.path.exists(self.script):
            proc = self._control("stop")
            if proc.returncode == 0:
                return
        pid = self.pid()
        if pid is not None:  # no script, or it failed: do it by hand
            os.kill(pid, 15)
            deadline = time.monotonic() + START_TIMEOUT
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if process_alive(pid):
                os.kill(pid, 9)

    # -- observation --------------------------------------------------------

    def served_fingerprint(self, server_name: str) -> str:
        """SHA-256 (hex) of the DER of the leaf certificate served to ``server_name``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            with context.wrap_socket(sock, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
                try:
                    tls.recv(16)
                except (OSError, ssl.SSLError):
                    pass
        if not der:
            raise ssl.SSLError("no peer certificate")
        return fingerprint(der)

    def pid(self) -> Optional[int]:
        """The server's pid while it is alive, else None."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def log(self) -> str:
        """Everything the server ever wrote (stdout and stderr)."""
        try:
            with open(self.logfile) as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self) -> "TlsService":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
