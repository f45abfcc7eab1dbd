"""certbot_wwu.timer: the renewal timer's proxy, per distribution, under a fake root.

Every test works in a temporary root; systemctl is a stand-in that records
its argv (the shared tests/support one knows no 'enable', see Systemctl).
"""
import os
import stat
import sys

import pytest

from certbot_wwu import certbot_host, timer
from certbot_wwu.presets import proxy_environment
from certbot_wwu.timer import TimerError

PROXY = "http://wwwproxy.uni-muenster.de:3128"
ENV = proxy_environment("wwwproxy.uni-muenster.de:3128", "localhost,uni-muenster.de")
SECRET_ENV = proxy_environment("me:s%40cret@proxy.example:8080")

OS_RELEASE = {
    "el": 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n',
    "debian": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n',
    "snap": 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n',
    "pip": 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n',
}

STANDIN = """#!/bin/sh
# systemctl stand-in for enable/is-enabled/daemon-reload: records argv
printf '%s\\n' "$*" >> "$STANDIN_DIR/calls"
case " $* " in
  *" is-enabled "*)
    if [ -e "$STANDIN_DIR/enabled" ]; then echo enabled; exit 0; fi
    echo disabled; exit 1 ;;
  *" is-active "*)
    if [ -e "$STANDIN_DIR/enabled" ]; then echo active; exit 0; fi
    echo inactive; exit 3 ;;
  *" enable "*|*" daemon-reload "*)
    if [ -e "$STANDIN_DIR/fail" ]; then
      echo "Failed to enable unit: Unit file certbot.timer does not exist." >&2
      exit 1
    fi
    case " $* " in *" enable "*) : > "$STANDIN_DIR/enabled" ;; esac ;;
  *) echo "stand-in: unsupported call: $*" >&2; exit 2 ;;
esac
"""


class Systemctl(object):
    """A systemctl first on PATH that records its argv (one line per call)."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(os.path.join(directory, "bin"))
        path = os.path.join(directory, "bin", "systemctl")
        with open(path, "w") as f:
            f.write(STANDIN)
        os.chmod(path, 0o755)

    def install(self, monkeypatch):
        monkeypatch.setenv("STANDIN_DIR", self.dir)
        monkeypatch.setenv("PATH", os.path.join(self.dir, "bin") + os.pathsep
                           + os.environ.get("PATH", ""))
        return self

    def calls(self):
        try:
            with open(os.path.join(self.dir, "calls")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def fail(self):
        open(os.path.join(self.dir, "fail"), "w").close()

    def enabled(self):
        open(os.path.join(self.dir, "enabled"), "w").close()


def make_root(base, distro, certbot=True):
    """A root tree that looks like ``distro`` to detect_distro."""
    root = os.path.join(str(base), "root-" + distro)
    os.makedirs(os.path.join(root, "etc"))
    with open(os.path.join(root, "etc", "os-release"), "w") as f:
        f.write(OS_RELEASE[distro])
    if distro == "el":
        _touch(root, "usr/lib/systemd/system/certbot-renew.timer")
        _touch(root, "usr/lib/systemd/system/certbot-renew.service")
    elif distro == "debian":
        _touch(root, "lib/systemd/system/certbot.timer")
    elif distro == "snap":
        os.makedirs(os.path.join(root, "snap", "bin"))
        os.symlink("/usr/bin/snap", os.path.join(root, "snap", "bin", "certbot"))
    elif distro == "pip" and certbot:
        _touch(root, "usr/local/bin/certbot", 0o755)
    return root


def _touch(root, path, mode=0o644):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    open(full, "w").close()
    os.chmod(full, mode)


def read(root, path):
    with open(os.path.join(root, path.lstrip("/"))) as f:
        return f.read()


def mode(root, path):
    return stat.S_IMODE(os.stat(os.path.join(root, path.lstrip("/"))).st_mode)


def tree(root):
    """Every path and content under root, to show that nothing changed."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    found[path] = f.read()
            else:
                found[path] = None
    return found


DROPINS = {
    "debian": "/etc/systemd/system/certbot.service.d/certbot-wwu-proxy.conf",
    "snap": "/etc/systemd/system/snap.certbot.renew.service.d/certbot-wwu-proxy.conf",
    "pip": "/etc/systemd/system/certbot-renew.service.d/certbot-wwu-proxy.conf",
}


# --- detection ------------------------------------------------------------------

@pytest.mark.parametrize("distro", sorted(OS_RELEASE))
def test_detect_fake_roots(tmp_path, distro):
    assert timer.detect_distro(make_root(tmp_path, distro)) == distro


@pytest.mark.parametrize("os_id, id_like, expected", [
    ("rhel", "fedora", "el"),
    ("centos", "rhel fedora", "el"),
    ("fedora", "", "el"),
    ("almalinux", "rhel centos fedora", "el"),
    ("ol", "fedora", "el"),
    ("rocky", "rhel centos fedora", "el"),
    ("amzn", "centos rhel fedora", "el"),
    ("debian", "", "debian"),
    ("ubuntu", "debian", "debian"),
    ("linuxmint", "ubuntu debian", "debian"),
    ("arch", "", None),
    ("opensuse-leap", "suse opensuse", None),
])
def test_detect_by_os_release(tmp_path, os_id, id_like, expected):
    root = str(tmp_path)
    _touch(root, "etc/os-release")
    with open(os.path.join(root, "etc", "os-release"), "w") as f:
        f.write("ID={}\nID_LIKE=\"{}\"\n".format(os_id, id_like))
    assert timer.detect_distro(root) == "pip"  # no packaged timer yet
    for unit in ("certbot.timer", "certbot-renew.timer"):
        _touch(root, "usr/lib/systemd/system/" + unit)
    assert timer.detect_distro(root) == (expected or "pip")


def test_debian_timer_under_usr_lib_and_os_release_fallback(tmp_path):
    root = str(tmp_path)
    _touch(root, "usr/lib/os-release")
    with open(os.path.join(root, "usr/lib/os-release"), "w") as f:
        f.write("# comment\nID='debian'\nVERSION_ID=\"13\"\n")
    _touch(root, "usr/lib/systemd/system/certbot.timer")
    assert timer.detect_distro(root) == "debian"


def test_snap_wins_over_the_distribution(tmp_path):
    root = make_root(tmp_path, "debian")
    _touch(root, "etc/systemd/system/snap.certbot.renew.timer")
    assert timer.detect_distro(root) == "snap"


def test_no_os_release_is_pip(tmp_path):
    assert timer.detect_distro(str(tmp_path)) == "pip"


def test_our_own_pip_timer_does_not_turn_el(tmp_path):
    root = make_root(tmp_path, "pip")
    timer.configure("pip", ENV, root)
    assert timer.detect_distro(root) == "pip"


@pytest.mark.parametrize("distro, unit", [
    ("el", "certbot-renew.timer"), ("debian", "certbot.timer"),
    ("snap", "snap.certbot.renew.timer"), ("pip", "certbot-renew.timer")])
def test_timer_unit(distro, unit):
    assert timer.timer_unit(distro) == unit


def test_unknown_distro():
    with pytest.raises(TimerError, match="use one of el, debian, snap, pip"):
        timer.timer_unit("arch")
    with pytest.raises(TimerError):
        timer.configure("arch", ENV, "/nonexistent")


# --- el: /etc/sysconfig/certbot -------------------------------------------------

EPEL_SYSCONFIG = """\
## NOTE ##
# If a hook is set here then it will be used for all
# certificates and will override any per certificate
# hook configuration in place.

# Command to be run in a shell before obtaining any
# certificates.
PRE_HOOK=""
POST_HOOK="--post-hook 'systemctl reload nginx'"
# http_proxy=http://old.example:8080
CERTBOT_ARGS=""
"""


def test_el_creates_sysconfig(tmp_path):
    root = make_root(tmp_path, "el")
    changes = timer.configure("el", ENV, root)
    assert changes == ["wrote {}/etc/sysconfig/certbot (proxy {} for "
                       "certbot-renew.service)".format(root, PROXY)]
    assert read(root, "/etc/sysconfig/certbot") == (
        "# certbot-wwu: proxy for the renewal timer (certbot-wwu setup)\n"
        "http_proxy={p}\nhttps_proxy={p}\nHTTP_PROXY={p}\nHTTPS_PROXY={p}\n"
        "no_proxy=localhost,uni-muenster.de\nNO_PROXY=localhost,uni-muenster.de\n"
        .format(p=PROXY))
    assert mode(root, "/etc/sysconfig/certbot") == 0o644
    assert timer.configure("el", ENV, root) == []


def test_el_keeps_the_rest_of_the_file(tmp_path):
    root = make_root(tmp_path, "el")
    path = os.path.join(root, "etc/sysconfig/certbot")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:  # the seed's lines, without a scheme
        f.write(EPEL_SYSCONFIG + "http_proxy=wwwproxy.uni-muenster.de:3128\n"
                "export https_proxy=wwwproxy.uni-muenster.de:3128\n"
                "DEPLOY_HOOK=\"\"")
    os.chmod(path, 0o640)
    assert timer.timer_status("el", root)["problems"]
    assert timer.configure("el", ENV, root)
    text = read(root, "/etc/sysconfig/certbot")
    assert text.startswith(EPEL_SYSCONFIG + 'DEPLOY_HOOK=""\n# certbot-wwu: ')
    assert "wwwproxy.uni-muenster.de:3128\n" not in text.replace(PROXY, "")
    assert "# http_proxy=http://old.example:8080\n" in text
    assert text.count("https_proxy=") == 1
    assert mode(root, "/etc/sysconfig/certbot") == 0o640
    assert timer.configure("el", ENV, root) == []
    status = timer.timer_status("el", root)
    assert status["configured"] and status["proxy"] == PROXY
    assert status["problems"] == []
    # an empty environment takes our lines out again, nothing else
    assert timer.configure("el", {}, root) == [
        "wrote {} (proxy settings removed)".format(path)]
    assert read(root, "/etc/sysconfig/certbot") == EPEL_SYSCONFIG + 'DEPLOY_HOOK=""\n'
    assert timer.configure("el", {}, root) == []
    assert not timer.timer_status("el", root)["configured"]


def test_el_proxy_change(tmp_path):
    root = make_root(tmp_path, "el")
    timer.configure("el", ENV, root)
    other = proxy_environment("other.example:8080")
    assert timer.configure("el", other, root)
    assert timer.timer_status("el", root)["environment"] == other
    assert "uni-muenster" not in read(root, "/etc/sysconfig/certbot")


def test_el_nothing_to_remove(tmp_path):
    root = make_root(tmp_path, "el")
    before = tree(root)
    assert timer.configure("el", {}, root) == []
    assert tree(root) == before


def test_el_password_makes_the_file_private(tmp_path):
    root = make_root(tmp_path, "el")
    changes = timer.configure("el", SECRET_ENV, root)
    assert "s%40cret" not in " ".join(changes) and "me:***@" in changes[0]
    assert mode(root, "/etc/sysconfig/certbot") == 0o600
    assert "http_proxy=http://me:s%40cret@proxy.example:8080\n" in read(
        root, "/etc/sysconfig/certbot")
    assert timer.timer_status("el", root)["proxy"] == "http://me:***@proxy.example:8080"


# --- systemd drop-ins: debian, snap, pip -----------------------------------------

@pytest.mark.parametrize("distro", ["debian", "snap", "pip"])
def test_dropin(tmp_path, distro):
    root = make_root(tmp_path, distro)
    changes = timer.configure(distro, ENV, root)
    dropin = DROPINS[distro]
    assert "wrote {}{} (proxy {} for {})".format(
        root, dropin, PROXY, timer.SERVICES[distro]) in changes
    assert read(root, dropin) == (
        "# Written by certbot-wwu setup; certbot-wwu setup without a proxy "
        "removes it.\n[Service]\n"
        'Environment="http_proxy={p}"\nEnvironment="https_proxy={p}"\n'
        'Environment="HTTP_PROXY={p}"\nEnvironment="HTTPS_PROXY={p}"\n'
        'Environment="no_proxy=localhost,uni-muenster.de"\n'
        'Environment="NO_PROXY=localhost,uni-muenster.de"\n'.format(p=PROXY))
    assert mode(root, dropin) == 0o644
    assert timer.configure(distro, ENV, root) == []
    status = timer.timer_status(distro, root)
    assert status["configured"] and status["proxy"] == PROXY
    assert status["no_proxy"] == "localhost,uni-muenster.de"
    assert status["environment"] == ENV and status["problems"] == []
    assert status["timer"] == timer.timer_unit(distro)


@pytest.mark.parametrize("distro", ["debian", "snap"])
def test_dropin_removed_with_an_empty_environment(tmp_path, distro):
    root = make_root(tmp_path, distro)
    timer.configure(distro, ENV, root)
    assert timer.configure(distro, {}, root) == ["removed " + root + DROPINS[distro]]
    assert not os.path.exists(os.path.dirname(root + DROPINS[distro]))
    assert not os.path.exists(root + timer.SECRET_ENV)
    assert timer.configure(distro, {}, root) == []
    assert not timer.timer_status(distro, root)["configured"]


def test_other_dropins_stay(tmp_path):
    root = make_root(tmp_path, "debian")
    other = os.path.join(root, "etc/systemd/system/certbot.service.d/local.conf")
    os.makedirs(os.path.dirname(other))
    with open(other, "w") as f:
        f.write("[Service]\nNice=10\n")
    timer.configure("debian", ENV, root)
    timer.configure("debian", {}, root)
    with open(other) as f:
        assert f.read() == "[Service]\nNice=10\n"


def test_dropin_password_goes_to_a_private_file(tmp_path):
    root = make_root(tmp_path, "debian")
    changes = timer.configure("debian", SECRET_ENV, root)
    assert "s%40cret" not in " ".join(changes)
    dropin = read(root, DROPINS["debian"])
    assert "s%40cret" not in dropin and "Environment=" not in dropin.replace(
        "EnvironmentFile=", "")
    assert "EnvironmentFile=/etc/certbot-wwu/renew-proxy.env\n" in dropin
    assert mode(root, timer.SECRET_ENV) == 0o600
    assert "https_proxy=http://me:s%40cret@proxy.example:8080\n" in read(
        root, timer.SECRET_ENV)
    status = timer.timer_status("debian", root)
    assert status["proxy"] == "http://me:***@proxy.example:8080"
    assert status["environment_files"] == ["/etc/certbot-wwu/renew-proxy.env"]
    assert timer.configure("debian", SECRET_ENV, root) == []
    # back to a proxy without a password: the private file goes away
    changes = timer.configure("debian", ENV, root)
    assert "removed " + root + timer.SECRET_ENV in changes
    assert not os.path.exists(root + timer.SECRET_ENV)
    assert timer.timer_status("debian", root)["proxy"] == PROXY


def test_percent_is_escaped_for_systemd(tmp_path):
    root = make_root(tmp_path, "snap")
    env = {"http_proxy": "http://proxy.example:3128", "no_proxy": "a%b"}
    timer.configure("snap", env, root)
    assert 'Environment="no_proxy=a%%b"' in read(root, DROPINS["snap"])
    assert timer.timer_status("snap", root)["no_proxy"] == "a%b"


# --- pip: our own units ------------------------------------------------------------

def test_pip_installs_units(tmp_path):
    root = make_root(tmp_path, "pip")
    changes = timer.configure("pip", ENV, root)
    unit_dir = root + "/etc/systemd/system/"
    assert changes == [
        "wrote {}certbot-renew.service (runs /usr/local/bin/certbot renew -q)".format(
            unit_dir),
        "wrote {}certbot-renew.timer (twice daily, randomised)".format(unit_dir),
        "wrote {}{} (proxy {} for certbot-renew.service)".format(
            root, DROPINS["pip"], PROXY)]
    service = read(root, "/etc/systemd/system/certbot-renew.service")
    assert "ExecStart=/usr/local/bin/certbot renew -q\n" in service
    assert "Type=oneshot" in service
    unit = read(root, "/etc/systemd/system/certbot-renew.timer")
    assert "OnCalendar=*-*-* 00,12:00:00\n" in unit
    assert "RandomizedDelaySec=" in unit and "WantedBy=timers.target" in unit
    assert timer.configure("pip", ENV, root) == []
    assert timer.timer_status("pip", root)["units_installed"] is True


def test_pip_without_proxy_keeps_the_timer(tmp_path):
    root = make_root(tmp_path, "pip")
    timer.configure("pip", ENV, root)
    assert timer.configure("pip", {}, root) == ["removed " + root + DROPINS["pip"]]
    assert os.path.exists(root + "/etc/systemd/system/certbot-renew.timer")
    status = timer.timer_status("pip", root)
    assert status["units_installed"] and not status["configured"]


@pytest.mark.parametrize("path", certbot_host.CERTBOT_PATHS)
def test_pip_finds_certbot(tmp_path, path):
    root = make_root(tmp_path, "pip", certbot=False)
    _touch(root, path.lstrip("/"), 0o755)
    timer.configure("pip", {}, root)
    assert "ExecStart={} renew -q".format(path) in read(
        root, "/etc/systemd/system/certbot-renew.service")


def test_pip_finds_certbot_in_path_on_the_live_system(monkeypatch, tmp_path):
    """On the live system: the certbot next to this Python (the one the
    plugin is installed for), else the one on PATH."""
    python = tmp_path / "venv" / "bin" / "python3"
    python.parent.mkdir(parents=True)
    on_path = tmp_path / "path" / "certbot"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert timer.pip_certbot("/") == str(on_path)
    beside = python.parent / "certbot"
    beside.write_text("#!/bin/sh\n")
    beside.chmod(0o755)
    assert timer.pip_certbot("/") == str(beside)


def test_pip_without_certbot_writes_nothing(tmp_path):
    root = make_root(tmp_path, "pip", certbot=False)
    _touch(root, "usr/bin/certbot", 0o644)  # not executable
    before = tree(root)
    with pytest.raises(TimerError, match="install certbot") as info:
        timer.configure("pip", ENV, root)
    assert "\n" not in str(info.value)
    assert tree(root) == before


# --- bad input ----------------------------------------------------------------------

@pytest.mark.parametrize("env, fragment", [
    ({"PATH": "/tmp"}, "not a proxy variable"),
    ({"http_proxy": "http://p:1\nExecStart=/bin/sh"}, "systemd would read differently"),
    ({"http_proxy": 'http://p:1" "X=1'}, "systemd would read differently"),
    ({"http_proxy": "http://p:1 x"}, "systemd would read differently"),
    ({"http_proxy": "$HOME"}, "systemd would read differently"),
])
@pytest.mark.parametrize("distro", ["el", "debian"])
def test_configure_refuses_unsafe_values(tmp_path, env, fragment, distro):
    root = make_root(tmp_path, distro)
    before = tree(root)
    with pytest.raises(TimerError, match=fragment):
        timer.configure(distro, env, root)
    assert tree(root) == before


def test_configure_needs_an_existing_root(tmp_path):
    with pytest.raises(TimerError, match="not a directory"):
        timer.configure("debian", ENV, str(tmp_path / "missing"))


# --- systemctl -----------------------------------------------------------------------

@pytest.fixture
def systemctl(tmp_path, monkeypatch):
    return Systemctl(str(tmp_path / "systemctl")).install(monkeypatch)


@pytest.mark.parametrize("distro", sorted(OS_RELEASE))
def test_enable_under_a_root(tmp_path, systemctl, distro):
    root = make_root(tmp_path, distro)
    unit = timer.timer_unit(distro)
    assert timer.enable_timer(distro, root) == [
        "enabled {} under {} (it starts at the next boot)".format(unit, root)]
    assert systemctl.calls() == ["--root={} is-enabled {}".format(root, unit),
                                 "--root={} enable {}".format(root, unit)]
    assert timer.enable_timer(distro, root) == []


def test_enable_on_the_live_system(systemctl):
    assert timer.enable_timer("el", "/") == ["enabled and started certbot-renew.timer"]
    assert systemctl.calls() == ["is-enabled certbot-renew.timer",
                                 "enable --now certbot-renew.timer"]
    assert timer.enable_timer("el", "/") == []
    assert systemctl.calls()[2:] == ["is-enabled certbot-renew.timer",
                                     "is-active certbot-renew.timer"]


def test_enable_failure(tmp_path, systemctl):
    systemctl.fail()
    root = make_root(tmp_path, "debian")
    with pytest.raises(TimerError) as info:
        timer.enable_timer("debian", root)
    message = str(info.value)
    assert message == (
        "'systemctl --root={} enable certbot.timer' failed (exit 1): Failed to "
        "enable unit: Unit file certbot.timer does not exist; check that "
        "certbot.timer is installed ('systemctl cat certbot.timer').".format(root))


def test_no_systemctl(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TimerError, match="Cannot run systemctl"):
        timer.enable_timer("debian", "/")


def test_daemon_reload(tmp_path, systemctl):
    assert timer.daemon_reload("debian", "/") == ["reloaded systemd's unit files"]
    assert timer.daemon_reload("el", "/") == []  # the env file is read at start
    assert timer.daemon_reload("debian", str(tmp_path)) == []
    assert systemctl.calls() == ["daemon-reload"]
