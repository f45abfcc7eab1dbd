"""The real consumers of ``certbot-wwu status`` (issue 14): Nagios 4 runs
the plugin as service checks and parses state, output, long output and
performance data; ``promtool check metrics`` accepts the Prometheus text;
node_exporter's textfile collector reads the file ``--textfile`` writes and
serves it on loopback. scripts/setup-monitoring-test installs them (Debian's
nagios4-core, prometheus, prometheus-node-exporter); without them these tests
skip with the reason."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import certbot_wwu
from certbot_wwu import status
from certbot_wwu.lineage import Lineage
from certbot_wwu.settings import Settings
from tests.e2e.test_status import SCRIPT
from tests.support.host import SERVICE_USER
from tests.support.pebble import free_port
from tests.test_monitoring import TlsEndpoint, parse_plugin, with_check
from tests.test_status import attach, deploy_and_act, timer_root

NAGIOS = "/usr/sbin/nagios4"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(certbot_wwu.__file__)))
SETUP = "scripts/setup-monitoring-test installs it"


def _needs(path, package):
    return pytest.mark.skipif(not os.access(path, os.X_OK),
                              reason="needs {} ({}; {})".format(path, package, SETUP))


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (real users and ACLs)")


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting for " + what)
        time.sleep(0.1)


# --- scenarios: one config tree each ---------------------------------------------

class Scenario(object):
    """A copy of the real lineage, a system root, and a check script that
    runs certbot-wwu status on them with this test's recording systemctl."""

    def __init__(self, base, template, recorder, name, enabled=True):
        self.name = name
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "etc")
        shutil.copytree(template.config_dir, self.config, symlinks=True)
        self.lineage = Lineage(self.config, "unit")
        self.root = timer_root(os.path.join(self.dir, "system"), enabled=enabled)
        self.script = os.path.join(self.dir, "check")
        env = recorder.env()
        with open(os.path.join(self.dir, "status.py"), "w") as f:
            f.write(SCRIPT)
        with open(self.script, "w") as f:
            f.write("#!/bin/sh\nexport WWU_SYSTEMCTL_DIR='{}' PATH='{}' PYTHONPATH='{}'\n"
                    "exec '{}' -W ignore '{}' status \"$@\" --config-dir '{}' "
                    "--work-dir '{}' --logs-dir '{}' --root '{}'\n".format(
                        env["WWU_SYSTEMCTL_DIR"], env["PATH"], CODE_ROOT,
                        sys.executable, os.path.join(self.dir, "status.py"),
                        self.config, self.dir, self.dir, self.root))
        os.chmod(self.script, 0o755)

    def run(self, *args):
        proc = subprocess.run([self.script] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, proc.stdout


# --- Nagios 4 ------------------------------------------------------------------

NAGIOS_CFG = """\
log_file={d}/nagios.log
cfg_file={d}/objects.cfg
object_cache_file={d}/objects.cache
precached_object_file={d}/objects.precache
status_file={d}/status.dat
status_update_interval=1
nagios_user=root
nagios_group=root
check_external_commands=0
command_file={d}/nagios.cmd
lock_file={d}/nagios.lock
temp_file={d}/nagios.tmp
temp_path={d}
check_result_path={d}/results
state_retention_file={d}/retention.dat
retain_state_information=0
interval_length=1
enable_notifications=0
service_check_timeout=60
"""

OBJECTS = """\
define timeperiod {
  timeperiod_name always
  alias always
  sunday 00:00-24:00
  monday 00:00-24:00
  tuesday 00:00-24:00
  wednesday 00:00-24:00
  thursday 00:00-24:00
  friday 00:00-24:00
  saturday 00:00-24:00
}
define command {
  command_name nothing
  command_line /bin/true
}
define contact {
  contact_name nobody
  host_notifications_enabled 0
  service_notifications_enabled 0
  host_notification_period always
  service_notification_period always
  host_notification_options n
  service_notification_options n
  host_notification_commands nothing
  service_notification_commands nothing
}
define host {
  host_name localhost
  address 127.0.0.1
  max_check_attempts 1
  active_checks_enabled 0
  check_period always
  contacts nobody
}
"""

SERVICE = """\
define command {{
  command_name check_{name}
  command_line {script} --nagios{args}
}}
define service {{
  host_name localhost
  service_description {name}
  check_command check_{name}
  max_check_attempts 1
  check_interval 2
  retry_interval 2
  check_period always
  notifications_enabled 0
  contacts nobody
}}
"""


def status_dat(path):
    """{service: {key: value}} of the servicestatus blocks of status.dat."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    services = {}
    for block in re.findall(r"servicestatus \{\n(.*?)\n\s*\}", text, re.S):
        values = dict(line.strip().split("=", 1) for line in block.splitlines()
                      if "=" in line)
        services[values["service_description"]] = values
    return services


@_needs(NAGIOS, "nagios4-core")
def test_nagios4_runs_each_severity(lineage_template, recorder, scratch):
    base = os.path.join(scratch, "nagios")
    scenarios = {}

    def scenario(name, **kwargs):
        scenarios[name] = Scenario(base, lineage_template, recorder, name, **kwargs)
        return scenarios[name]

    deploy_and_act(scenario("ok").lineage)
    unreadable = scenario("unreadable_key").lineage
    deploy_and_act(unreadable)
    subprocess.check_call(["setfacl", "-b", unreadable.archive_file("privkey", 2)])
    stale = scenario("stale_served").lineage
    server = TlsEndpoint(stale, 1)
    with_check(stale, server.port)
    deploy_and_act(scenario("timer_disabled", enabled=False).lineage)
    scenario("unknown")
    args = {"unknown": " --cert-name nope"}
    expected = {"ok": 0, "timer_disabled": 1, "unreadable_key": 2, "stale_served": 2,
                "unknown": 3}

    directory = os.path.join(base, "nagios4")
    os.makedirs(os.path.join(directory, "results"))
    with open(os.path.join(directory, "nagios.cfg"), "w") as f:
        f.write(NAGIOS_CFG.format(d=directory))
    with open(os.path.join(directory, "objects.cfg"), "w") as f:
        f.write(OBJECTS + "".join(SERVICE.format(name=name, script=s.script,
                                                 args=args.get(name, ""))
                                  for name, s in sorted(scenarios.items())))
    log = open(os.path.join(directory, "stdout"), "w")
    proc = subprocess.Popen([NAGIOS, os.path.join(directory, "nagios.cfg")],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        seen = wait_for(lambda: (lambda found: found if len(found) == len(scenarios)
                                 and all(v["has_been_checked"] == "1"
                                         for v in found.values()) else None)(
            status_dat(os.path.join(directory, "status.dat"))), 90, "Nagios' checks")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    try:
        outputs = {name: s.run("--nagios", *args.get(name, "").split())
                   for name, s in scenarios.items()}
    finally:
        server.close()
    for name, s in scenarios.items():
        code, out = outputs[name]
        state, text, perf, long_ = parse_plugin(code, out)
        nagios = seen[name]
        # what Nagios understood is what the plugin said
        assert int(nagios["current_state"]) == expected[name] == code, (name, nagios)
        # (Nagios shows ';' in the status line, its field separator, as ':')
        assert nagios["plugin_output"] == out.split("\n")[0].split("|")[0].strip(
            ).replace(";", ":")
        assert nagios["long_plugin_output"].replace("\\n", "\n").strip() == \
            "\n".join(long_).strip()
        nagios_perf = dict(token.split("=", 1) for token in re.findall(
            r"'[^']*'=\S*|\S+", nagios["performance_data"]))
        assert {k.strip("'"): v.split(";") for k, v in nagios_perf.items()} == perf
    assert "1 critical" in seen["unreadable_key"]["plugin_output"]
    assert "serves version 1, not the current version 2" in \
        seen["stale_served"]["plugin_output"]
    assert "certbot.timer is not enabled" in seen["timer_disabled"]["plugin_output"]
    assert seen["unknown"]["plugin_output"].startswith(
        "CERTBOT-WWU UNKNOWN - There is no certificate nope in ")
    assert "'unit_days'" in seen["ok"]["performance_data"]


# --- Prometheus -------------------------------------------------------------------

def promtool(text):
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    return proc.returncode, proc.stdout


@_needs(PROMTOOL, "prometheus")
def test_promtool_accepts_every_state(lineage_template, recorder, scratch):
    good = Scenario(scratch, lineage_template, recorder, "good")
    server = TlsEndpoint(good.lineage, 2)
    try:
        with_check(good.lineage, server.port)
        bad = Scenario(scratch, lineage_template, recorder, "bad", enabled=False)
        deploy_and_act(bad.lineage)
        attach(bad.lineage, Settings(users=[SERVICE_USER, "wwu-test-gone"],
                                     units=["web.service"]))
        texts = []
        for s in (good, bad):
            code, out = s.run("--prometheus")
            assert code == 0
            texts.append(out)
    finally:
        server.close()
    assert 'certbot_wwu_served_matches_current{lineage="unit",endpoint=' in texts[0]
    assert 'certbot_wwu_access_ok{lineage="unit",kind="user",principal="wwu-test-gone"} 0' \
        in texts[1]
    for text in texts:
        code, out = promtool(text)
        assert (code, out) == (0, ""), out
    # the check itself: promtool refuses what it should
    assert promtool("certbot_wwu_x{a=\"b} 1\n")[0] != 0


def escaped_report(lineage_dir):
    """A report whose lineage name needs every escape of the text format."""
    section = status.check_lineage(lineage_dir, "unit")
    section.title = 'we"ird\\name\nx'
    return status.Report([section], status.Section("timer"))


@_needs(PROMTOOL, "prometheus")
def test_promtool_accepts_escaped_labels(lineage_dir, recorder):
    text = status.to_prometheus(escaped_report(lineage_dir))
    assert 'lineage="we\\"ird\\\\name\\nx"' in text
    assert promtool(text) == (0, "")


@_needs(NODE_EXPORTER, "prometheus-node-exporter")
def test_node_exporter_reads_the_textfile(lineage_dir, recorder, scratch):
    lineage = Lineage(lineage_dir, "unit")
    deploy_and_act(lineage)
    textfiles = os.path.join(scratch, "textfile")
    os.mkdir(textfiles, 0o755)
    s_root = timer_root(os.path.join(scratch, "system"))
    script = os.path.join(scratch, "status.py")
    with open(script, "w") as f:
        f.write(SCRIPT)
    env = dict(os.environ, PYTHONPATH=CODE_ROOT, **recorder.env())
    subprocess.check_call([sys.executable, "-W", "ignore", script, "status",
                           "--prometheus", "--textfile",
                           os.path.join(textfiles, "certbot-wwu.prom"),
                           "--config-dir", lineage_dir, "--root", s_root], env=env)
    with open(os.path.join(textfiles, "escaped.prom"), "w") as f:
        f.write(status.to_prometheus(escaped_report(lineage_dir)).replace(
            "certbot_wwu_", "certbot_wwu_escaped_"))
    port = free_port()
    log = open(os.path.join(scratch, "node_exporter.log"), "w")
    proc = subprocess.Popen([NODE_EXPORTER, "--web.listen-address=127.0.0.1:{}".format(port),
                             "--collector.disable-defaults", "--collector.textfile",
                             "--collector.textfile.directory=" + textfiles],
                            stdout=log, stderr=subprocess.STDOUT)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def scrape():
        try:
            with opener.open("http://127.0.0.1:{}/metrics".format(port), timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None
    try:
        text = wait_for(scrape, 30, "node_exporter on 127.0.0.1:{}".format(port))
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    assert "node_textfile_scrape_error 0" in text
    assert 'certbot_wwu_certificate_version{lineage="unit"} 2' in text
    assert 'certbot_wwu_access_ok{kind="user",lineage="unit",principal="wwu-test-svc"} 1' \
        in text
    assert 'certbot_wwu_timer_enabled{timer="certbot.timer"} 1' in text
    assert 'certbot_wwu_escaped_certificate_version{lineage="we\\"ird\\\\name\\nx"} 2' \
        in text
    assert "# HELP certbot_wwu_access_ok 1 if the configured user or group" in text
