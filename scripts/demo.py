"""The main job, end to end, against a local Pebble with External Account Binding.

Walks the manual recipe with the wwu-acl installer instead of three setfacl
commands: register with EAB, obtain with ``certbot run -a standalone -i
wwu-acl``, show the ACLs, prove the service user can read the key and another
user cannot, renew, prove it again. Run as root (``make demo``).
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests.support import host  # noqa: E402
from tests.support.pebble import Pebble, free_port  # noqa: E402

DEMO_USER = "wwu-demo-svc"
OTHER_USER = "wwu-demo-other"
CERT_NAME = "demo"


def step(text):
    print("\n== " + text, flush=True)


def main():
    if os.geteuid() != 0:
        sys.exit("make demo needs root (it creates users and sets ACLs).")
    base = tempfile.mkdtemp(prefix="certbot-wwu-demo-", dir="/var/tmp")
    os.chmod(base, 0o755)
    config_dir = os.path.join(base, "etc")
    certbot = [os.path.join(os.path.dirname(sys.executable), "certbot"),
               "--config-dir", config_dir, "--work-dir", os.path.join(base, "work"),
               "--logs-dir", os.path.join(base, "logs"), "--non-interactive"]
    key = os.path.join(config_dir, "live", CERT_NAME, "privkey.pem")
    results = []

    def run(*args):
        argv = certbot[:1] + list(args) + certbot[1:]
        shown = ["--eab-hmac-key=<secret>" if a.startswith("--eab-hmac-key=") else a
                 for a in argv]
        print("$ " + " ".join(shown), flush=True)
        subprocess.check_call(argv, env=env)

    def prove(label):
        version = os.path.basename(os.path.realpath(key))
        ok = host.read_as(DEMO_USER, key)
        refused = not host.read_as(OTHER_USER, key)
        print("{} can read {} ({}): {}".format(DEMO_USER, key, version, ok))
        print("{} is refused: {}".format(OTHER_USER, refused))
        results.append((label, version, ok and refused))

    step("Starting Pebble (External Account Binding required)")
    pebble = Pebble(os.path.join(base, "pebble")).start()
    try:
        env = dict(os.environ, **pebble.env())
        print("ACME directory:", pebble.url)
        step("Creating the service user {} and another user {}".format(
            DEMO_USER, OTHER_USER))
        host.ensure_user(DEMO_USER)
        host.ensure_user(OTHER_USER)

        step("Registering with EAB (the recipe's 'certbot register')")
        kid, hmac = pebble.new_eab()
        run("register", "--server", pebble.url, "--eab-kid", kid,
            "--eab-hmac-key=" + hmac, "--email", "admin@example.org",
            "--agree-tos", "--no-eff-email")

        step("Obtaining and deploying with the wwu-acl installer")
        run("run", "-a", "standalone", "--http-01-port", str(free_port()),
            "-i", "wwu-acl", "--wwu-acl-user", DEMO_USER, "--wwu-acl-action", "none",
            "--server", pebble.url, "-d", "demo.example.org", "--cert-name", CERT_NAME)

        step("The ACLs the installer set")
        for path in (os.path.join(config_dir, "live"), os.path.join(config_dir, "archive"),
                     os.path.realpath(key)):
            print(host.getfacl(path, numeric=False))
        prove("after certbot run")

        step("Renewing (certbot renew --force-renewal: a new private key)")
        run("renew", "--force-renewal", "--no-random-sleep-on-renew")
        print(host.getfacl(os.path.realpath(key), numeric=False))
        prove("after certbot renew")
    finally:
        pebble.stop()

    step("Summary")
    for label, version, ok in results:
        print("{:<22} {:<14} {}".format(label, version, "OK" if ok else "FAILED"))
    print("Config tree kept for inspection: {} (remove with rm -r)".format(base))
    if not all(ok for _, _, ok in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
