"""Every action of certbot_wwu.service against a real systemd: what the
recording stand-in could only guess (DESIGN §6, §11)."""
import pytest

from tests.support import units


@pytest.fixture(scope="module")
def loops(instance):
    instance.write("/etc/systemd/system/canreload.service", units.loop_unit(True))
    instance.write("/etc/systemd/system/noreload.service", units.loop_unit(False))
    instance.write("/etc/systemd/system/dies.service", units.dies_unit(0.5))
    instance.write("/etc/systemd/system/failpre.service", units.failing_pre_unit())
    instance.daemon_reload()
    return instance


def _start(instance, unit):
    instance.systemctl("restart", unit)
    assert instance.state(unit) == "active"
    return instance.main_pid(unit)


def _stop(instance, unit):
    instance.systemctl("stop", unit)
    instance.systemctl("reset-failed", unit, check=False)
    assert instance.state(unit) == "inactive"


@pytest.mark.parametrize("action,new_process", [
    ("restart", True), ("reload", False), ("reload-or-restart", False),
    ("try-restart", True), ("try-reload-or-restart", False)])
def test_actions_on_an_active_unit(loops, action, new_process):
    pid = _start(loops, "canreload.service")
    result = units.act(loops, "canreload", action, settle=0.3)
    assert result == {"ok": True, "ran": action}
    assert loops.state("canreload.service") == "active"
    now = loops.main_pid("canreload.service")
    assert (now != pid) == new_process
    if not new_process:
        assert "reloaded" in loops.journal("canreload.service", 3)


@pytest.mark.parametrize("action,started", [
    ("restart", True), ("reload-or-restart", True),
    ("try-restart", False), ("try-reload-or-restart", False)])
def test_actions_on_an_inactive_unit(loops, action, started):
    _stop(loops, "canreload.service")
    assert units.act(loops, "canreload", action, settle=0.3)["ok"]
    assert loops.state("canreload.service") == ("active" if started else "inactive")


def test_reload_of_an_inactive_unit_fails_with_systemctls_reason(loops):
    _stop(loops, "canreload.service")
    result = units.act(loops, "canreload", "reload", settle=0.3)
    assert not result["ok"]
    assert "'systemctl reload canreload.service' failed (exit 1)" in result["error"]
    # systemd's own words, which the stand-in never produced
    assert "canreload.service is not active, cannot reload" in result["error"]


@pytest.mark.parametrize("unit,expected,new_process", [
    ("canreload", "reload", False), ("noreload", "restart", True)])
def test_auto_reads_the_real_canreload(loops, unit, expected, new_process):
    assert loops.show(unit + ".service", "CanReload")["CanReload"] == (
        "yes" if expected == "reload" else "no")
    pid = _start(loops, unit + ".service")
    assert units.act(loops, unit, "auto", settle=0.3) == {"ok": True, "ran": expected}
    assert (loops.main_pid(unit + ".service") != pid) == new_process


def test_failing_exec_start_pre_is_reported_with_state_and_journal(loops):
    result = units.act(loops, "failpre", "restart", settle=0.3)
    assert not result["ok"]
    error = result["error"]
    assert "'systemctl restart failpre.service' failed (exit 1)" in error
    # systemctl's reason is its first line; its last only says "See ..."
    assert ("Job for failpre.service failed because the control process "
            "exited with error code") in error
    assert "key check failed" in error  # a real journal line
    assert "journalctl -u failpre.service" in error
    assert loops.state("failpre.service") == "failed"


def test_a_unit_that_dies_half_a_second_after_starting_fails(loops):
    """The settle window (issue 16): systemctl restart succeeds and the unit
    is 'active' at once, but it exits 0.5 s later. Without the window this
    counted as "came back"."""
    _stop(loops, "dies.service")
    result = units.act(loops, "dies", "restart", settle=2.0)
    assert not result["ok"], "a unit that died 0.5 s after starting passed as back"
    error = result["error"]
    assert "dies.service did not stay up after 'systemctl restart'" in error
    assert "it is failed" in error or "it is activating" in error or "it is inactive" in error
    assert "cannot load the new key, exiting" in error  # its real journal line


def test_a_unit_that_stays_up_passes_the_window(loops):
    pid = _start(loops, "noreload.service")
    assert units.act(loops, "noreload", "restart", settle=1.0)["ok"]
    assert loops.main_pid("noreload.service") not in (0, pid)


def test_a_restarted_main_process_inside_the_window_fails(loops):
    """Restart=always hides a crash from is-active: the MainPID changes."""
    loops.write("/etc/systemd/system/respawn.service", units.unit(
        "wwu test: crashes and is restarted", "Type=simple\nRestart=always\n"
        "RestartSec=0.1\nExecStart=/bin/sh -c 'sleep 0.5; echo crashed >&2; exit 1'\n"))
    loops.daemon_reload()
    result = units.act(loops, "respawn", "restart", settle=2.0)
    assert not result["ok"]
    assert "respawn.service did not stay up" in result["error"]
    loops.systemctl("stop", "respawn.service")
