"""Races and kills around real certbot: a deployment that waits for the lock
while certbot rotates the key, and SIGKILLs spread over ``certbot renew``.

``WWU_KILL_ITERATIONS`` sets the number of kills (``make faults`` runs more).
"""
import fcntl
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.support.host import OTHER_USER, SERVICE_USER, getfacl, read_as

pytestmark = pytest.mark.e2e
COMMAND = os.path.join(os.path.dirname(sys.executable), "certbot-wwu")
KILLS = int(os.environ.get("WWU_KILL_ITERATIONS", "9"))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def opened_by(pid, path):
    """Whether process ``pid`` has ``path`` open (it has reached its lock)."""
    directory = "/proc/{}/fd".format(pid)
    for fd in os.listdir(directory):
        try:
            if os.readlink(os.path.join(directory, fd)) == path:
                return True
        except OSError:
            continue
    return False


def deploy_waiting_through_a_renewal(certbot, name, *options):
    """Start ``certbot-wwu deploy`` while the lineage lock is held, let
    certbot rotate the key once the deployment is at the lock, then let it go."""
    state_dir = os.path.join(certbot.config_dir, "wwu-acl")
    lock_path = os.path.join(state_dir, name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        waiting = subprocess.Popen(
            [COMMAND, "deploy", "--cert-name", name, "--config-dir", certbot.config_dir,
             "--action", "none", "--timeout", "120"] + list(options),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
            env=certbot.env)
        deadline = time.monotonic() + 60
        while not opened_by(waiting.pid, lock_path):
            assert waiting.poll() is None, waiting.communicate()
            assert time.monotonic() < deadline, "the deployment never reached its lock"
            time.sleep(0.01)
        certbot.renew("--force-renewal", "--cert-name", name)
    finally:
        os.close(fd)
    out, err = waiting.communicate(timeout=120)
    return waiting.returncode, out, err


def test_acl_deployment_that_waited_grants_the_new_key_only(certbot):
    certbot.acme("certonly", "-a", "standalone", "-d", "race.example.org",
                 "--cert-name", "race")
    subprocess.check_call([COMMAND, "deploy", "--cert-name", "race", "--config-dir",
                           certbot.config_dir, "--user", SERVICE_USER, "--action", "none"],
                          env=certbot.env)
    code, out, err = deploy_waiting_through_a_renewal(
        certbot, "race", "--user", SERVICE_USER)
    assert code == 0, (out, err)
    assert os.path.realpath(certbot.live("race")).endswith("privkey2.pem")
    assert "can read version 2" in out
    assert read_as(SERVICE_USER, certbot.live("race"))
    assert not read_as(SERVICE_USER, certbot.archive("race", "privkey", 1))
    assert "user:{}:".format(SERVICE_USER) not in getfacl(
        certbot.archive("race", "privkey", 1), numeric=False)
    assert not read_as(OTHER_USER, certbot.live("race"))


def test_copy_deployment_that_waited_copies_the_new_certificate(certbot, scratch):
    dest = os.path.join(scratch, "srv", "tls")
    os.mkdir(os.path.dirname(dest))  # the parent must exist
    certbot.acme("certonly", "-a", "standalone", "-d", "race.example.org",
                 "--cert-name", "race")
    options = ["--copy-to", dest, "--copy-owner", SERVICE_USER]
    subprocess.check_call([COMMAND, "deploy", "--cert-name", "race", "--config-dir",
                           certbot.config_dir, "--action", "none"] + options,
                          env=certbot.env)
    code, out, err = deploy_waiting_through_a_renewal(certbot, "race", *options)
    assert code == 0, (out, err)
    assert read(os.path.join(dest, "cert.pem")) == read(certbot.live("race", "cert"))
    assert read(os.path.join(dest, "privkey.pem")) == read(certbot.live("race"))
    assert read_as(SERVICE_USER, os.path.join(dest, "privkey.pem"))


def _readlink(path):
    """The link's target, or None between certbot's unlink and symlink."""
    try:
        return os.readlink(path)
    except FileNotFoundError:
        return None


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _versions(dest):
    return sorted(int(n) for n in os.listdir(os.path.join(dest, ".versions")))


def test_sigkill_during_renew_leaves_at_most_two_sets(certbot, scratch):
    """Kills spread over ``certbot renew`` in copy mode (half of them the
    moment certbot writes the new key): the next run always leaves only the
    current and the previous set readable, and the current one is the live
    certificate."""
    dest = os.path.join(scratch, "srv", "tls")
    os.mkdir(os.path.dirname(dest))  # the parent must exist
    certbot.acme("run", "-a", "standalone", "-i", "wwu-acl", "-d", "kill.example.org",
                 "--cert-name", "kill", "--wwu-acl-copy-to", dest,
                 "--wwu-acl-copy-owner", SERVICE_USER, "--wwu-acl-action", "none")
    started = time.monotonic()
    certbot.renew("--force-renewal")
    full = time.monotonic() - started
    rng = random.Random(int(os.environ.get("WWU_KILL_SEED", "20261130")))
    moments = {"random": 0, "new key written": 0, "live links switched": 0}
    mixed = 0
    for i in range(KILLS):
        version = int(os.path.basename(os.path.realpath(certbot.live("kill")))[7:-4])
        new_key = certbot.archive("kill", "privkey", version + 1)
        new_link = "../../archive/kill/privkey{}.pem".format(version + 1)
        proc = subprocess.Popen(
            certbot.argv("renew", "--no-random-sleep-on-renew", "--force-renewal"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=certbot.env,
            start_new_session=True)
        moment = ("random", "new key written", "live links switched")[i % 3]
        moments[moment] += 1
        if moment == "random":
            time.sleep(rng.uniform(0, full))
        else:
            deadline = time.monotonic() + full * 3
            while proc.poll() is None and time.monotonic() < deadline:
                if moment == "new key written" and os.path.exists(new_key):
                    break
                if moment == "live links switched" and \
                        _readlink(certbot.live("kill")) == new_link:
                    break
                time.sleep(0.0005)
        _kill_group(proc)
        heal = certbot.renew(check=False)
        live = {kind: read(certbot.live("kill", kind)) for kind in ("cert", "privkey")}
        if heal.code != 0:
            # only a kill between certbot's link switches may leave a lineage
            # whose key and certificate disagree; certbot-wwu refuses to copy it
            assert "does not match the certificate" in heal.output, heal
            mixed += 1
            continue
        assert len(_versions(dest)) <= 2, _versions(dest)
        assert read(os.path.join(dest, "cert.pem")) == live["cert"]
        assert read(os.path.join(dest, "privkey.pem")) == live["privkey"]
        assert not read_as(OTHER_USER, os.path.join(dest, "privkey.pem"))
    print("renew kill test: {} kills over {:.2f} s renewals ({}), {} left a mixed "
          "lineage".format(KILLS, full, ", ".join(
              "{} {}".format(n, k) for k, n in sorted(moments.items())), mixed))
