"""The renewal timers' environment under a real systemd: EPEL's
certbot-renew.service reads /etc/sysconfig/certbot (EnvironmentFile=)."""
import sys

import pytest

from tests.support import units

EL_SERVICE = """[Unit]
Description=This service automatically renews any certbot certificates found
[Service]
EnvironmentFile=/etc/sysconfig/certbot
Type=oneshot
ExecStart=/bin/sh -c 'echo "renew with https_proxy=$https_proxy"'
"""
EL_TIMER = """[Unit]
Description=This is the timer to set the schedule for automated renewals
[Timer]
OnCalendar=*-*-* 00/12:00:00
RandomizedDelaySec=12hours
Persistent=true
[Install]
WantedBy=timers.target
"""
#: what EPEL's package ships in /etc/sysconfig/certbot (abridged)
EL_SYSCONFIG = 'PRE_HOOK=""\nPOST_HOOK=""\nRENEW_HOOK=""\nCERTBOT_ARGS=""\n'


def cli(instance, *args, check=True):
    return instance.run([sys.executable, "-m", "certbot_wwu.cli"] + list(args),
                        env=units.product_env(), check=check)


def test_el_setup_reaches_the_running_service(instance):
    instance.write("/etc/systemd/system/certbot-renew.service", EL_SERVICE)
    instance.write("/etc/systemd/system/certbot-renew.timer", EL_TIMER)
    instance.write("/etc/sysconfig/certbot", EL_SYSCONFIG)
    instance.daemon_reload()
    assert instance.systemctl("is-enabled", "certbot-renew.timer",
                              check=False).out.strip() == "disabled"
    cli(instance, "setup", "--distro", "el", "--proxy", "proxy.example.org:3128",
        "--enable-timer")
    assert instance.systemctl("is-enabled", "certbot-renew.timer").out.strip() == "enabled"
    assert instance.state("certbot-renew.timer") == "active"
    instance.systemctl("start", "certbot-renew.service")
    assert "renew with https_proxy=http://proxy.example.org:3128" in \
        instance.journal("certbot-renew.service")
    # the host's /etc/sysconfig never saw it
    import os
    assert not os.path.exists("/etc/sysconfig/certbot")


def test_status_reads_the_real_timer_state(instance):
    instance.systemctl("disable", "--now", "certbot.timer")
    disabled = cli(instance, "status", check=False)
    assert disabled.code == 1
    assert "certbot.timer is not enabled (systemctl is-enabled: disabled)" in disabled.out
    instance.systemctl("enable", "--now", "certbot.timer")
    assert "certbot.timer is enabled (systemctl is-enabled: enabled)" in \
        cli(instance, "status").out


def test_status_shows_the_timers_activity_and_next_elapse(instance):
    instance.systemctl("enable", "--now", "certbot.timer")
    out = cli(instance, "status").out
    assert "certbot.timer is active, next run " in out, out
    instance.systemctl("stop", "certbot.timer")
    out = cli(instance, "status", check=False).out
    assert "certbot.timer is enabled but inactive: it runs only after the next boot" in out, out
