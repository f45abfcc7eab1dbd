#!/usr/bin/env python3
"""Control script of one real server, as a unit of the recording systemctl.

tests/support/bin/systemctl runs ``units/<unit> restart|reload|status``;
the script written by servers.Server.install runs this file with the
server's JSON spec. Standalone on purpose (the recording systemctl runs it
with any Python 3): no imports from the project.

Spec keys: argv (the server in the foreground), user (None: root; else the
server is exec'd with that user's uid, gid and groups, so the pid we keep is
the daemon's own and signals reach it), env, cwd, log, pidfile (ours, or
the server's own when it daemonises: start_argv/stop_argv/reload_argv),
reload_signal, host, port, start_timeout.
"""
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time


def _alive(pid):
    try:
        with open("/proc/{}/status".format(pid)) as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1] not in ("Z", "X")
    except (OSError, ValueError):
        return False
    return False


def _pid(spec):
    try:
        with open(spec["pidfile"]) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _listening(spec):
    try:
        socket.create_connection((spec["host"], spec["port"]), timeout=1).close()
        return True
    except OSError:
        return False


def _drop(user):
    def demote():
        entry = pwd.getpwnam(user)
        os.initgroups(user, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    return demote


def start(spec):
    log = open(spec["log"], "ab")
    env = dict(os.environ, **spec.get("env", {}))
    if spec.get("start_argv"):
        subprocess.check_call(spec["start_argv"], stdout=log, stderr=log,
                              stdin=subprocess.DEVNULL, env=env)
        pid = None
    else:
        user = spec.get("user")
        if user:
            env["HOME"] = spec.get("cwd") or "/"
            env["USER"] = env["LOGNAME"] = user
        proc = subprocess.Popen(spec["argv"], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env=env,
                                cwd=spec.get("cwd"), start_new_session=True,
                                preexec_fn=_drop(user) if user else None)
        pid = proc.pid
        with open(spec["pidfile"], "w") as f:
            f.write("{}\n".format(pid))
    deadline = time.monotonic() + spec.get("start_timeout", 30)
    while time.monotonic() < deadline:
        current = pid or _pid(spec)
        if pid is not None and not _alive(pid):
            break
        if current and _alive(current) and _listening(spec):
            return 0
        time.sleep(0.1)
    sys.stderr.write("{} did not come up on port {}; see {}\n".format(
        spec["argv"][0] if spec.get("argv") else spec["start_argv"][0],
        spec["port"], spec["log"]))
    stop(spec)
    return 1


def stop(spec):
    if spec.get("stop_argv"):
        subprocess.call(spec["stop_argv"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    pid = _pid(spec)
    if pid and _alive(pid):
        try:
            os.killpg(pid, signal.SIGTERM) if not spec.get("start_argv") \
                else os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _listening(spec) and time.monotonic() < deadline:
        time.sleep(0.1)
    return 0


def reload(spec):
    pid = _pid(spec)
    if not pid or not _alive(pid):
        sys.stderr.write("not active, cannot reload\n")
        return 1
    if spec.get("reload_argv"):
        return subprocess.call(spec["reload_argv"])
    if not spec.get("reload_signal"):
        sys.stderr.write("this server has no reload\n")
        return 1
    os.kill(pid, getattr(signal, "SIG" + spec["reload_signal"]))
    return 0


def status(spec):
    pid = _pid(spec)
    print("active" if pid and _alive(pid) else "failed")
    return 0


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    action = sys.argv[2]
    if action == "restart":
        stop(spec)
        return start(spec)
    return {"start": start, "stop": stop, "reload": reload,
            "status": status}[action](spec)


if __name__ == "__main__":
    sys.exit(main())
