"""What the benchmarks run on: the venv without the plugin, one real lineage
made by certbot against Pebble, and fast copies of it (clones, long archives).
"""
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile

from common import REPO, out

from tests.support import host
from tests.support.certbot import Certbot
from tests.support.pebble import Pebble
from tests.support.systemd import RecordingSystemctl

KINDS = ("cert", "chain", "fullchain", "privkey")
USER = host.SERVICE_USER
TEMPLATE_NAME = "bench"
WORK_BASE = os.environ.get("WWU_BENCH_BASE", "/var/tmp")

MAIN_VENV = os.path.join(REPO, ".venv")
WITHOUT_VENV = os.path.join(REPO, ".venvs", "bench-without")
_STAMP = ".bench-source"


# -- the venv without certbot-wwu ----------------------------------------------

def _site_packages(venv):
    lib = os.path.join(venv, "lib")
    for entry in sorted(os.listdir(lib)):
        path = os.path.join(lib, entry, "site-packages")
        if os.path.isdir(path):
            return path
    raise RuntimeError("no site-packages in {}".format(venv))


def _ours(entry):
    """site-packages entries that make certbot-wwu installed (editable)."""
    low = entry.lower()
    return low.startswith(("__editable__.certbot_wwu", "__editable___certbot_wwu",
                           "certbot_wwu-")) or low in ("certbot_wwu.egg-link",)


def _fingerprint(venv):
    """Everything installed in ``venv`` except certbot-wwu, with versions."""
    site = _site_packages(venv)
    names = [e for e in os.listdir(site)
             if e.endswith((".dist-info", ".egg-info", ".pth")) and not _ours(e)]
    with open(os.path.join(venv, "pyvenv.cfg")) as f:
        cfg = f.read()
    return cfg + "\n".join(sorted(names)) + "\n"


def without_venv():
    """``.venvs/bench-without``: a copy of ``.venv`` minus certbot-wwu.

    scripts/make-venv always installs this package (editable), so the second
    venv is made by copying the first and removing the package's
    site-packages entries: the same interpreter and byte-identical
    dependencies, offline. Rebuilt when ``.venv``'s installed set changes.
    """
    want = _fingerprint(MAIN_VENV)
    stamp = os.path.join(WITHOUT_VENV, _STAMP)
    try:
        with open(stamp) as f:
            if f.read() == want:
                return WITHOUT_VENV
    except OSError:
        pass
    out("building {} (a copy of .venv without certbot-wwu)".format(WITHOUT_VENV))
    tmp = WITHOUT_VENV + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    subprocess.check_call(["cp", "-a", MAIN_VENV, tmp])
    site = _site_packages(tmp)
    for entry in os.listdir(site):
        if _ours(entry):
            path = os.path.join(site, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
    for script in ("certbot-wwu",):
        path = os.path.join(tmp, "bin", script)
        if os.path.lexists(path):
            os.unlink(path)
    with open(os.path.join(tmp, _STAMP), "w") as f:
        f.write(want)
    shutil.rmtree(WITHOUT_VENV, ignore_errors=True)
    os.rename(tmp, WITHOUT_VENV)
    return WITHOUT_VENV


_PROBE = ("import importlib.metadata as m, importlib.util as u;"
          "print(sorted(e.name for e in m.entry_points(group='certbot.plugins')"
          " if e.name == 'wwu-acl'), u.find_spec('certbot_wwu') is not None)")
_WHERE = "import certbot_wwu; print(certbot_wwu.__file__)"


def check_venvs(cwd, env):
    """The plugin is visible in .venv and invisible in the copy (the copy is
    checked without PYTHONPATH: with --code the export is on it, but B's
    certbot never looks for the package without its entry point); A's
    children import the package benchmarked."""
    seen = {}
    clean = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    for venv in (MAIN_VENV, WITHOUT_VENV):
        text = subprocess.check_output(
            [os.path.join(venv, "bin", "python"), "-c", _PROBE], cwd=cwd,
            universal_newlines=True, env=clean).strip()
        seen[venv] = text
    if seen[MAIN_VENV] != "['wwu-acl'] True" or seen[WITHOUT_VENV] != "[] False":
        raise RuntimeError("plugin visibility is not as expected: {}".format(seen))
    import certbot_wwu
    where = subprocess.check_output([os.path.join(MAIN_VENV, "bin", "python"), "-c",
                                     _WHERE], cwd=cwd, universal_newlines=True,
                                    env=env).strip()
    if os.path.dirname(where) != os.path.dirname(certbot_wwu.__file__):
        raise RuntimeError("A's certbot would import {}, this process {}".format(
            where, certbot_wwu.__file__))


def certbot_argv(venv, *args):
    """certbot of ``venv``, started the same way for both venvs (the copy's
    bin/certbot still names .venv's python in its #! line)."""
    return [os.path.join(venv, "bin", "python"),
            os.path.join(venv, "bin", "certbot")] + list(args)


# -- the real lineage -------------------------------------------------------------

class Workspace(object):
    """A 0755 directory under /var/tmp (the service user must traverse it)
    holding one lineage that certbot obtained from Pebble."""

    def __init__(self, keep=False):
        self.keep = keep
        self.root = tempfile.mkdtemp(prefix="certbot-wwu-bench-", dir=WORK_BASE)
        os.chmod(self.root, 0o755)
        self.systemctl = RecordingSystemctl(os.path.join(self.root, "systemctl"))
        self.template = os.path.join(self.root, "template")
        self.env = dict(os.environ)
        self.env.update(self.systemctl.env())
        # Both venvs load compiled bytecode, as an installed package does: a
        # bytecode cache of our own, written by the warm-up runs (with
        # PYTHONDONTWRITEBYTECODE=1 in the environment and no .pyc files next
        # to an edited module, the plugin's modules would be compiled from
        # source in every run of A).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = os.path.join(self.root, "pycache")

    def obtain(self):
        """Pebble up, register with EAB, certonly one lineage, Pebble down.

        Later certbot runs are ``renew`` of certificates that are not due,
        with the ARI retry time pushed into the future, so they never
        talk to the CA.
        """
        host.ensure_test_accounts()
        pebble = Pebble(os.path.join(self.root, "pebble")).start()
        try:
            bot = Certbot(self.template, pebble, self.systemctl)
            bot.register()
            bot.acme("certonly", "-a", "standalone", "-d", "bench.example.org",
                     "--cert-name", TEMPLATE_NAME)
        finally:
            pebble.stop()
        conf = os.path.join(self.template, "etc", "renewal", TEMPLATE_NAME + ".conf")
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(no_ari(text))

    def use_revision(self, rev):
        """Benchmark certbot_wwu as committed in ``rev`` instead of the
        working tree (which may be edited while the benchmark runs): the
        package is exported into the work dir and put first on the path of
        this process and of every child (PYTHONPATH finds it before the
        editable install's finder, which Python consults last)."""
        commit = subprocess.check_output(["git", "-C", REPO, "rev-parse", "--verify",
                                          rev + "^{commit}"], universal_newlines=True).strip()
        code = self.path("code")
        os.makedirs(code)
        archive = subprocess.check_output(["git", "-C", REPO, "archive", commit,
                                           "certbot_wwu"])
        subprocess.run(["tar", "-x", "-C", code], input=archive, check=True)
        sys.path.insert(0, code)
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (code, self.env.get("PYTHONPATH")) if p)
        import certbot_wwu
        if not certbot_wwu.__file__.startswith(code + os.sep):
            raise RuntimeError("certbot_wwu still comes from {}".format(certbot_wwu.__file__))
        self.code_dir = code
        self.commit = commit
        return commit

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def cleanup(self):
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def no_ari(text):
    """Renewal conf text whose ARI check is deferred by 30 days."""
    later = (datetime.datetime.now() + datetime.timedelta(days=30)).isoformat(
        timespec="seconds")
    text = re.sub(r"\n\[acme_renewal_info\]\n(?:[^\[\n][^\n]*\n?)*", "\n", text)
    return text.rstrip("\n") + "\n[acme_renewal_info]\nari_retry_after = {}\n".format(later)


def config_args(root):
    """certbot's directories under ``root`` (what tests.support.certbot uses)."""
    return ["--config-dir", os.path.join(root, "etc"),
            "--work-dir", os.path.join(root, "work"),
            "--logs-dir", os.path.join(root, "logs"), "--non-interactive"]


def copy_tree(ws, root):
    """A copy of the template's certbot tree at ``root`` (links kept, stored
    directories rewritten)."""
    shutil.copytree(os.path.join(ws.template, "etc"), os.path.join(root, "etc"),
                    symlinks=True)
    os.chmod(root, 0o755)
    for conf in os.listdir(os.path.join(root, "etc", "renewal")):
        path = os.path.join(root, "etc", "renewal", conf)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace(ws.template + "/", root + "/"))
    return os.path.join(root, "etc")


def clone_lineages(config_dir, count, source=TEMPLATE_NAME, prefix="lin"):
    """``count`` copies of lineage ``source`` (archive, live links, renewal
    conf with the name replaced); ``source`` itself is removed. Names sort in
    creation order."""
    archive = os.path.join(config_dir, "archive", source)
    live = os.path.join(config_dir, "live", source)
    conf = os.path.join(config_dir, "renewal", source + ".conf")
    with open(conf) as f:
        text = f.read()
    names = ["{}-{:04d}".format(prefix, i) for i in range(count)]
    for name in names:
        shutil.copytree(archive, os.path.join(config_dir, "archive", name))
        new_live = os.path.join(config_dir, "live", name)
        os.mkdir(new_live, os.stat(live).st_mode & 0o7777)
        for entry in os.listdir(live):
            src = os.path.join(live, entry)
            dst = os.path.join(new_live, entry)
            if os.path.islink(src):
                target = os.readlink(src).replace(
                    "/archive/{}/".format(source), "/archive/{}/".format(name))
                os.symlink(target, dst)
            else:
                shutil.copy2(src, dst)
        new_text = (text.replace("/archive/{}\n".format(source),
                                 "/archive/{}\n".format(name))
                    .replace("/live/{}/".format(source), "/live/{}/".format(name)))
        if new_text.count("/live/{}/".format(name)) != 4 \
                or "/archive/{}\n".format(name) not in new_text:
            raise RuntimeError("unexpected renewal conf layout:\n" + text)
        with open(os.path.join(config_dir, "renewal", name + ".conf"), "w") as f:
            f.write(new_text)
    shutil.rmtree(archive)
    shutil.rmtree(live)
    os.unlink(conf)
    return names


# -- long archives -----------------------------------------------------------

def archive_dir(config_dir, name):
    return os.path.join(config_dir, "archive", name)


def _read_version(config_dir, name, version):
    material = {}
    for kind in KINDS:
        path = os.path.join(archive_dir(config_dir, name), "{}{}.pem".format(kind, version))
        with open(path, "rb") as f:
            material[kind] = (f.read(), os.stat(path).st_mode & 0o7777)
    return material


def write_version(config_dir, name, version, material, key_mode=None):
    """Archive files of ``version`` with the given content and modes."""
    for kind in KINDS:
        data, mode = material[kind]
        if kind == "privkey" and key_mode is not None:
            mode = key_mode
        path = os.path.join(archive_dir(config_dir, name), "{}{}.pem".format(kind, version))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.chmod(path, mode)


def point_live(config_dir, name, version):
    """Move the live links to ``version`` as certbot does (symlink + rename)."""
    live = os.path.join(config_dir, "live", name)
    for kind in KINDS:
        link = os.path.join(live, kind + ".pem")
        tmp = link + ".new"
        os.symlink("../../archive/{}/{}{}.pem".format(name, kind, version), tmp)
        os.replace(tmp, link)


def remove_version(config_dir, name, version):
    for kind in KINDS:
        os.unlink(os.path.join(archive_dir(config_dir, name),
                               "{}{}.pem".format(kind, version)))


def synthesize_archive(config_dir, name, versions):
    """Versions 2..``versions`` as copies of version 1; live links at the newest."""
    material = _read_version(config_dir, name, 1)
    for version in range(2, versions + 1):
        write_version(config_dir, name, version, material)
    point_live(config_dir, name, versions)
    return material


def next_key_mode(config_dir, name, version):
    """The mode certbot gives a new key: base 0600 plus the previous key's
    group bits and others' read bit (certbot.compat.filesystem)."""
    old = os.path.join(archive_dir(config_dir, name), "privkey{}.pem".format(version))
    return 0o600 | (os.stat(old).st_mode & 0o074)


# -- ACL reset -------------------------------------------------------------------

_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")


def lineage_paths(config_dir, name):
    """Every real file and directory the recipe or a deployment may touch."""
    paths = [os.path.join(config_dir, "live"), os.path.join(config_dir, "archive")]
    for top in ("live", "archive"):
        base = os.path.join(config_dir, top, name)
        paths.append(base)
        for entry in sorted(os.listdir(base)):
            path = os.path.join(base, entry)
            if not os.path.islink(path):
                paths.append(path)
    return paths


def snapshot_modes(paths):
    return {p: os.lstat(p).st_mode & 0o7777 for p in paths}


def reset_acls(modes, state_dir=None):
    """Back to no ACLs at all and the recorded modes; no deployment state."""
    for path, mode in modes.items():
        for attr in _XATTRS:
            try:
                os.removexattr(path, attr)
            except OSError:
                pass
        os.chmod(path, mode)
    if state_dir:
        shutil.rmtree(state_dir, ignore_errors=True)


def python_name():
    return "{}.{}".format(*sys.version_info[:2])
