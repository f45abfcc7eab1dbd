"""certbot-wwu status for monitoring (issue 14): severities, the Nagios
plugin output, the Prometheus text format, served versus current, systemd
asked once per unit. Real lineages, users, ACLs and TLS servers on loopback;
the outputs are checked against the Monitoring Plugins guidelines' grammar
here and by the real consumers in tests/test_monitoring_consumers.py."""
import os
import pwd
import re
import shutil
import socket
import ssl
import stat
import subprocess
import threading

import pytest

from certbot_wwu import status, timer
from certbot_wwu.lineage import Lineage
from certbot_wwu.presets import proxy_environment
from certbot_wwu.settings import Settings
from tests.support.host import SERVICE_USER
from tests.test_status import (SVC_WEB, attach, deploy_and_act, lineage, main,  # noqa: F401
                               root, run, run_json, timer_root)

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (real users and ACLs)")

# --- the Monitoring Plugins guidelines' grammar --------------------------------

#: 'label'=value[UOM];[warn];[crit];[min];[max]; a range is [@][start:][end]
_RANGE = r"(@?(~|-?[0-9.]+)?:?(-?[0-9.]+)?)"
_PERF = re.compile(r"^('[^'=]+'|[^'= ]+)=(-?[0-9.]+)(s|ms|us|%|B|KB|MB|TB|c)?"
                   r"(;{r}?(;{r}?(;(-?[0-9.]+)?(;(-?[0-9.]+)?)?)?)?)?$".format(r=_RANGE))
_STATUS = re.compile(r"^CERTBOT-WWU (OK|WARNING|CRITICAL|UNKNOWN) - ([^|\n]+?)"
                     r"(\|(.*))?$")
CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def parse_plugin(code, out):
    """(state, text, perfdata dict, long output lines); asserts the grammar
    and that the exit code is the state's."""
    lines = out.rstrip("\n").split("\n")
    match = _STATUS.match(lines[0])
    assert match, lines[0]
    state, text, perf_text = match.group(1), match.group(2), match.group(4) or ""
    assert code == CODES[state], (code, lines[0])
    perf = {}
    for token in re.findall(r"'[^']*'=\S*|\S+", perf_text):
        assert _PERF.match(token), token
        label, value = token.split("=", 1)
        perf[label.strip("'")] = value.split(";")
    assert all("|" not in line for line in lines[1:])
    return state, text, perf, lines[1:]


@pytest.fixture
def nagios(run):
    def nagios_(*argv, **kwargs):
        code, out, err = run("--nagios", *argv, **kwargs)
        assert "Traceback" not in err
        return parse_plugin(code, out)
    return nagios_


def test_plugin_grammar_rejects_what_nagios_would_misread():
    """The checker itself: a bare threshold, a pipe in the text, a wrong code."""
    with pytest.raises(AssertionError):
        parse_plugin(0, "CERTBOT-WWU OK - fine|'a'=1;;x;0")
    with pytest.raises(AssertionError):
        parse_plugin(1, "CERTBOT-WWU OK - fine|'a'=1;;;0")
    with pytest.raises(AssertionError):
        parse_plugin(0, "CERTBOT-WWU OK - fine\nlong | text")
    assert parse_plugin(2, "CERTBOT-WWU CRITICAL - x|'n a'=1;14:;7:;0 b=2")[2] == {
        "n a": ["1", "14:", "7:", "0"], "b": ["2"]}


# --- each severity from a scenario that really produces it ----------------------

def test_nagios_ok(lineage, nagios):
    deploy_and_act(lineage)
    state, text, perf, long_ = nagios()
    assert state == "OK"
    assert text.startswith("1 certificate usable by its service; next to expire: unit "
                           "in ")
    days = int(perf["unit_days"][0])
    assert days > 365 and perf["unit_days"][1:] == ["14:", "7:", "0"]
    assert perf["problems_critical"][0] == "0" and perf["certificates"][0] == "1"
    assert long_[0].startswith("unit: expires in {} days".format(days))
    assert "no check endpoint" in long_[0]


def test_nagios_critical_when_the_service_cannot_read_its_key(lineage, nagios):
    deploy_and_act(lineage)
    subprocess.check_call(["setfacl", "-b", lineage.archive_file("privkey", 2)])
    state, text, perf, long_ = nagios()
    assert state == "CRITICAL"
    assert text.startswith("1 critical, 1 warning: unit: user {} cannot read {}".format(
        SERVICE_USER, lineage.live_path("privkey")))
    assert long_ == [
        "[CRITICAL] unit: user {} cannot read {}".format(SERVICE_USER,
                                                         lineage.live_path("privkey")),
        "[WARNING] unit: the deployment drifted: the renewal timer's check would "
        "redeploy"]
    assert perf["problems_critical"][0] == "1" and perf["problems_warning"][0] == "1"


def test_nagios_warning_when_the_timer_is_disabled(lineage, nagios, tmp_path):
    deploy_and_act(lineage)
    state, _, _, long_ = nagios(root=timer_root(tmp_path / "off", enabled=False))
    assert state == "WARNING"
    assert long_[0].startswith("[WARNING] renewal timer certbot.timer (debian): "
                               "certbot.timer is not enabled")


def test_nagios_unknown_when_status_cannot_look(lineage, nagios):
    state, text, perf, long_ = nagios("--cert-name", "nope")
    assert state == "UNKNOWN" and perf == {} and long_ == []
    assert text.startswith("There is no certificate nope in ")


@pytest.mark.parametrize("argv", [["--warning", "soon"], ["--format", "nagios", "--critical", "-1"],
                                  ["--served-timeout", "0"]])
def test_nagios_usage_errors_are_unknown(lineage, run, argv):
    code, out, err = run(*(argv if "--format" in argv else ["--nagios"] + argv))
    assert code == 3 and "usage:" in err
    assert out.startswith("CERTBOT-WWU UNKNOWN - certbot-wwu status: argument --")
    # without --nagios they stay argparse's usage errors
    if "--format" not in argv:
        assert run(*argv)[0] == 2


def test_unit_state_unknown_is_unknown(lineage, nagios, monkeypatch):
    deploy_and_act(lineage)
    monkeypatch.setattr(status.service, "SYSTEMCTL", "/nonexistent/systemctl")
    state, _, _, long_ = nagios()
    assert state == "UNKNOWN"
    assert long_[0].startswith("[UNKNOWN] unit: state of web.service unknown: Cannot "
                               "run /nonexistent/systemctl")


def test_critical_outranks_unknown(lineage, nagios, monkeypatch):
    deploy_and_act(lineage)
    monkeypatch.setattr(status.service, "SYSTEMCTL", "/nonexistent/systemctl")
    subprocess.check_call(["setfacl", "-b", lineage.archive_file("privkey", 2)])
    assert nagios()[0] == "CRITICAL"


def test_expiry_thresholds(lineage, nagios, run):
    deploy_and_act(lineage)
    state, _, perf, long_ = nagios("--warning", "3000",
                                   "--critical", "10")
    assert state == "WARNING"
    assert perf["unit_days"][1:3] == ["3000:", "10:"]
    assert long_[0].startswith("[WARNING] unit: expires in ")
    state, _, _, long_ = nagios("--warning", "3000", "--critical", "2000")
    assert state == "CRITICAL" and long_[0].startswith("[CRITICAL] unit: expires in ")
    # the table and JSON use the same thresholds
    assert run("--warning", "3000")[0] == 1
    code, out, err = run("--warning", "10", "--critical", "20")
    assert code == 1 and err.startswith("certbot-wwu: --critical 20 is more days "
                                        "than --warning 10")
    assert nagios("--warning", "10", "--critical", "20")[0] == "UNKNOWN"


def test_json_carries_severity_and_state(lineage, run_json):
    deploy_and_act(lineage)
    subprocess.check_call(["setfacl", "-b", lineage.archive_file("privkey", 2)])
    code, doc = run_json()
    assert code == 1 and doc["state"] == "critical"
    assert doc["problems"] == {"critical": 1, "warning": 1, "unknown": 0}
    unit = doc["lineages"][0]
    severities = {i["item"]: i["severity"] for i in unit["items"]}
    assert severities["user"] == "critical" and severities["drift"] == "warning"
    assert severities["expiry"] == "ok" and severities["server"] == "info"


# --- issue 18's findings mapped to severities -------------------------------------

def setfacl(*args):
    subprocess.check_call(("setfacl",) + args)


def test_stray_reader_is_critical_and_leftover_defaults_warn(lineage, nagios):
    from tests.support.host import OTHER_USER
    deploy_and_act(lineage)
    setfacl("-d", "-m", "u:{}:rX".format(OTHER_USER),
            os.path.dirname(lineage.archive_file("privkey", 2)))
    state, _, _, long_ = nagios()
    assert state == "WARNING"
    assert long_[0].startswith("[WARNING] unit: leftover default ACL entries")
    setfacl("-m", "u:{}:r".format(OTHER_USER), lineage.archive_file("privkey", 2))
    state, _, _, long_ = nagios()
    assert state == "CRITICAL"
    assert long_[0].startswith("[CRITICAL] unit: user {} can read".format(OTHER_USER))


def test_unsafe_copy_directory_is_critical(lineage, nagios, scratch):
    copy_dir = os.path.join(scratch, "copies", "web")
    os.makedirs(os.path.dirname(copy_dir))
    deploy_and_act(lineage, Settings(copy_to=copy_dir, copy_owner=(SERVICE_USER, "")))
    os.chown(os.path.dirname(copy_dir), pwd.getpwnam(SERVICE_USER).pw_uid, 0)
    state, _, _, long_ = nagios()
    assert state == "CRITICAL"
    assert long_[0].startswith("[CRITICAL] unit: the next deployment will refuse the "
                               "copy directory")


def test_recipe_deploy_hook_left_next_to_the_installer_warns(lineage, nagios, run_json):
    deploy_and_act(lineage)
    with open(lineage.renewal_conf) as f:
        text = f.read()
    with open(lineage.renewal_conf, "w") as f:
        f.write(text.replace("[renewalparams]\n", "[renewalparams]\nrenew_hook = "
                             "systemctl restart web\n"))
    state, _, _, long_ = nagios()
    assert state == "WARNING"
    assert long_ == ["[WARNING] unit: the manual recipe left {}: renew_hook = "
                     "systemctl restart web also acts on web.service, which the "
                     "installer restarts or reloads itself; 'certbot-wwu attach "
                     "--cert-name unit --take-over' removes it".format(
                         lineage.renewal_conf)]
    hooks = os.path.join(lineage.config_dir, "renewal-hooks", "deploy")
    os.makedirs(hooks, exist_ok=True)
    with open(os.path.join(hooks, "acl.sh"), "w") as f:
        f.write("#!/bin/sh\nsetfacl -R -m u:{}:rX /etc/letsencrypt/live\n".format(
            SERVICE_USER))
    code, doc = run_json()
    hooks_found = [i for i in doc["lineages"][0]["items"] if i["item"] == "hook"]
    assert len(hooks_found) == 2 and hooks_found[1]["severity"] == "warning"
    assert hooks_found[1]["message"] == (
        "the manual recipe left {}: runs setfacl after every renewal, which the "
        "installer does itself; remove the script".format(os.path.join(hooks, "acl.sh")))


def test_proxy_missing_where_the_preset_needs_one(lineage, nagios, tmp_path,
                                                  monkeypatch):
    deploy_and_act(lineage)
    with open(lineage.renewal_conf) as f:
        server = re.search(r"^server = (.*)$", f.read(), re.M).group(1)
    presets_dir = tmp_path / "presets"
    presets_dir.mkdir()
    (presets_dir / "site.conf").write_text(
        "[preset lab]\nserver = {}\nproxy = proxy.example:3128\n".format(server))
    monkeypatch.setenv("CERTBOT_WWU_PRESETS_DIR", str(presets_dir))
    state, _, _, long_ = nagios()
    assert state == "WARNING"
    assert long_ == ["[WARNING] renewal timer certbot.timer (debian): {} is the CA of "
                     "preset lab, which is reached through the proxy "
                     "http://proxy.example:3128, but the renewal service gets no "
                     "proxy, so renewals fail where only the proxy reaches it; give "
                     "it with 'certbot-wwu setup --preset lab'".format(server)]
    proxied = timer_root(tmp_path / "proxied")
    timer.configure("debian", proxy_environment("proxy.example:3128"), proxied)
    assert nagios(root=proxied)[0] == "OK"


# --- served versus current ----------------------------------------------------

class TlsEndpoint(object):
    """A real TLS server on loopback presenting one version of a lineage
    (a thread of this process, root: it reads any version)."""

    def __init__(self, lineage, version):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(lineage.archive_file("fullchain", version),
                                     lineage.archive_file("privkey", version))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.names = []
        self.context.set_servername_callback(lambda s, name, c: self.names.append(name))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(5)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok\n")
            except (OSError, ssl.SSLError):
                pass

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def endpoint(lineage):
    servers = []

    def start(version):
        servers.append(TlsEndpoint(lineage, version))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def with_check(lineage, port):
    """Deployed and acted on, then the check endpoint attached (acting with
    it would wait for the stale server to serve the current version)."""
    deploy_and_act(lineage)
    attach(lineage, Settings(users=[SERVICE_USER], units=["web.service"],
                             check=("127.0.0.1", port)))


def test_stale_served_certificate_is_critical(lineage, endpoint, nagios, run_json):
    old = endpoint(1)
    with_check(lineage, old.port)
    state, text, _, long_ = nagios()
    assert state == "CRITICAL"
    assert long_ == ["[CRITICAL] unit: 127.0.0.1:{} serves version 1, not the current "
                     "version 2: the service has not loaded the renewed certificate; "
                     "reload it ('systemctl reload-or-restart web.service')".format(
                         old.port)]
    assert old.names == ["unit.example.org"]  # SNI: the certificate's first name
    code, doc = run_json()
    served = doc["lineages"][0]["served"]
    assert served["matches"] is False and served["served_version"] == 1
    assert served["current_version"] == 2 and served["protocol"] == "tls"

    current = endpoint(2)
    with_check(lineage, current.port)
    state, _, _, long_ = nagios()
    assert state == "OK"
    assert "127.0.0.1:{} serves the current certificate (version 2)".format(
        current.port) in long_[0]


def test_endpoint_that_does_not_answer_is_critical(lineage, nagios):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with_check(lineage, port)
    state, _, _, long_ = nagios()
    assert state == "CRITICAL"
    assert long_[0].startswith("[CRITICAL] unit: 127.0.0.1:{} does not complete a TLS "
                               "handshake within 5 s (Connection refused); is "
                               "web.service running and listening there?".format(port))


def test_no_served_check_does_not_connect(lineage, endpoint, nagios):
    old = endpoint(1)
    with_check(lineage, old.port)
    state, _, _, long_ = nagios("--no-served-check")
    assert state == "OK" and old.names == []
    assert "127.0.0.1:{} not checked (--no-served-check)".format(old.port) in long_[0]


def test_endpoints_are_asked_at_once_each_bounded(lineage, recorder):
    """Three lineages' endpoints: a server that answers none until all three
    have connected. Asked one after another, the first would wait in vain;
    asked at once, all three see the current certificate. Then a server that
    never answers: each check ends at its own timeout."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(lineage.archive_file("fullchain", 2),
                            lineage.archive_file("privkey", 2))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(10)
    with_check(lineage, listener.getsockname()[1])
    held = []

    def answer(conn):
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok\n")
        except (OSError, ssl.SSLError):
            pass

    def serve():
        try:
            for _ in range(3):
                held.append(listener.accept()[0])
        except OSError:
            return
        for conn in held:
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    checks = status.Checks()
    sections = [status.check_lineage(lineage.config_dir, "unit", checks=checks)
                for _ in range(3)]
    assert len(checks.pending_served) == 3
    status.check_served(checks, 5.0)
    thread.join(5)
    assert len(held) == 3
    for section in sections:
        (item,) = [i for i in section.items if i.key == "served"]
        assert item.text.endswith("serves the current certificate (version 2)"), item.text

    silent = socket.socket()  # the kernel accepts; nobody ever answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    with_check(lineage, silent.getsockname()[1])
    checks = status.Checks()
    section = status.check_lineage(lineage.config_dir, "unit", checks=checks)
    status.check_served(checks, 0.5)
    (item,) = [i for i in section.items if i.key == "served"]
    assert item.severity == "critical"
    assert "does not complete a TLS handshake within 0.5 s (timed out)" in item.text
    silent.close()
    listener.close()


# --- systemd once per distinct unit (issue 13) ------------------------------------

def clone(lineage, name):
    """Another lineage in the same config dir: a copy of ``lineage``'s
    archive, live links and renewal conf under ``name``."""
    config = lineage.config_dir
    shutil.copytree(os.path.join(config, "archive", lineage.name),
                    os.path.join(config, "archive", name))
    live = os.path.join(config, "live", name)
    os.mkdir(live)
    for entry in os.listdir(lineage.live_dir):
        source = os.path.join(lineage.live_dir, entry)
        if os.path.islink(source):
            os.symlink(os.readlink(source).replace("/" + lineage.name + "/",
                                                   "/" + name + "/"),
                       os.path.join(live, entry))
    with open(lineage.renewal_conf) as f:
        text = f.read()
    with open(os.path.join(config, "renewal", name + ".conf"), "w") as f:
        f.write(text.replace("/archive/" + lineage.name, "/archive/" + name)
                .replace("/live/" + lineage.name + "/", "/live/" + name + "/"))
    return Lineage(config, name)


def test_systemd_is_asked_once_per_distinct_unit(lineage, run, recorder):
    lineages = [lineage] + [clone(lineage, "unit{}".format(n)) for n in range(3)]
    for each in lineages:
        deploy_and_act(each, Settings(users=[SERVICE_USER],
                                      units=["web.service", "db.service"]))
    recorder.clear()
    code, out, _ = run()
    assert code == 0, out
    assert out.count("OK         web.service is active") == 4
    assert sorted(c for c in recorder.calls() if c.startswith("is-active")) == [
        "is-active db.service", "is-active web.service"]


# --- Prometheus ---------------------------------------------------------------

@pytest.fixture
def prometheus(run):
    def prometheus_(*argv, **kwargs):
        code, out, err = run("--prometheus", *argv, **kwargs)
        assert code == 0 and err == "", err
        return out
    return prometheus_


def samples(text):
    """{(name, frozenset(labels)): value} of the exposition text."""
    found = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        assert match, line
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        found[(match.group(1), labels)] = float(match.group(3))
    return found


def test_prometheus_metrics(lineage, endpoint, prometheus, tmp_path):
    old = endpoint(1)
    with_check(lineage, old.port)
    subprocess.check_call(["setfacl", "-b", lineage.archive_file("privkey", 2)])
    text = prometheus(root=timer_root(tmp_path / "off", enabled=False))
    found = samples(text)
    unit = frozenset([("lineage", "unit")])
    after = status.validity(lineage)[1]
    assert found[("certbot_wwu_certificate_expiry_timestamp_seconds", unit)] == int(
        after.timestamp())
    assert found[("certbot_wwu_certificate_version", unit)] == 2
    assert found[("certbot_wwu_access_ok", unit | {("kind", "user"),
                                                   ("principal", SERVICE_USER)})] == 0
    assert found[("certbot_wwu_served_matches_current",
                  unit | {("endpoint", "127.0.0.1:{}".format(old.port))})] == 0
    assert found[("certbot_wwu_unit_active", frozenset([("unit", "web.service")]))] == 1
    assert found[("certbot_wwu_timer_enabled", frozenset([("timer", "certbot.timer")]))] == 0
    # the deployment drifted: no "last successful deployment" while it is pending
    assert not [k for k in found if k[0] == "certbot_wwu_last_deployment_timestamp_seconds"]
    assert found[("certbot_wwu_problems", frozenset([("severity", "critical")]))] == 2
    assert found[("certbot_wwu_problems", frozenset([("severity", "warning")]))] == 2
    assert found[("certbot_wwu_lineage_problems", unit | {("severity", "critical")})] == 2
    for name, kind, _ in status.METRICS:
        assert "# TYPE {} {}\n".format(name, kind) in text

    current = endpoint(2)
    with_check(lineage, current.port)
    found = samples(prometheus())
    assert found[("certbot_wwu_access_ok", unit | {("kind", "user"),
                                                   ("principal", SERVICE_USER)})] == 1
    assert found[("certbot_wwu_served_matches_current",
                  unit | {("endpoint", "127.0.0.1:{}".format(current.port))})] == 1
    state = os.path.join(lineage.config_dir, "wwu-acl", "unit.json")
    assert found[("certbot_wwu_last_deployment_timestamp_seconds", unit)] == int(
        os.stat(state).st_mtime)
    assert found[("certbot_wwu_problems", frozenset([("severity", "critical")]))] == 0


def test_label_values_are_escaped():
    assert status.label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert status.metric_sample("m", [("l", 'x"y')], 1) == 'm{l="x\\"y"} 1'


def test_textfile_written_in_one_rename(lineage, run, scratch):
    deploy_and_act(lineage)
    directory = os.path.join(scratch, "textfile")
    os.mkdir(directory, 0o755)
    path = os.path.join(directory, "certbot-wwu.prom")
    with open(path, "w") as f:
        f.write("old\n")
    inode = os.stat(path).st_ino
    code, out, err = run("--prometheus", "--textfile", path)
    assert (code, out, err) == (0, "", "")
    st = os.stat(path)
    assert st.st_ino != inode and stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == 0
    with open(path) as f:
        assert f.read().startswith("# HELP certbot_wwu_certificate_expiry_timestamp")
    assert os.listdir(directory) == ["certbot-wwu.prom"]


def test_textfile_refusals(lineage, run, scratch):
    directory = os.path.join(scratch, "svc-owned")
    os.mkdir(directory, 0o755)
    os.chown(directory, pwd.getpwnam(SERVICE_USER).pw_uid, 0)
    code, _, err = run("--prometheus", "--textfile", os.path.join(directory, "x.prom"))
    assert code == 1 and err.startswith("certbot-wwu: Will not write --textfile ")
    assert "is owned by" in err and os.listdir(directory) == []
    code, _, err = run("--prometheus", "--textfile", os.path.join(scratch, "x.txt"))
    assert code == 1 and "does not end in .prom" in err
    code, _, err = run("--textfile", os.path.join(scratch, "x.prom"))
    assert code == 1 and "add --prometheus" in err
    code, _, err = run("--prometheus", "--textfile", os.path.join(scratch, "no", "x.prom"))
    assert code == 1 and "does not exist" in err
