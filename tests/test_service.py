"""certbot_wwu.service with the recording systemctl stand-in (DESIGN §6): the
argv it builds. What systemd does with them (actions, CanReload, units that
die in the settle window) is tested against a real systemd in tests/systemd/."""
import logging
import os

import pytest

from certbot_wwu import service
from certbot_wwu.errors import ServiceError, SettingsError
from certbot_wwu.settings import ACTIONS, Settings, settle_seconds



@pytest.mark.parametrize("action", [a for a in ACTIONS if a not in ("none", "auto")])
def test_action_argv_is_recorded(recorder, action):
    service.reload_unit("web", action)
    assert recorder.calls() == ["{} web.service".format(action),
                                "is-active web.service",
                                "show -p ActiveState,MainPID web.service"]


def test_no_settle_window_asks_nothing_more(recorder):
    service.reload_unit("web", "restart", settle_window=0)
    assert recorder.calls() == ["restart web.service", "is-active web.service"]


def test_try_action_on_an_inactive_unit_does_not_settle(recorder):
    recorder.fail("web.service", "inactive")
    service.reload_unit("web", "try-restart")
    assert recorder.calls() == ["try-restart web.service", "is-active web.service"]


@pytest.mark.parametrize("value,expected", [
    (None, 2.0), ("", 2.0), ("0", 0.0), ("0.5", 0.5), (3, 3.0), ("600", 600.0)])
def test_settle_values(value, expected):
    assert settle_seconds(value) == expected


@pytest.mark.parametrize("value", ["-1", "601", "nan", "inf", "soon", True])
def test_bad_settle_values_are_one_sentence(value):
    with pytest.raises(SettingsError, match="is not a number of seconds from 0 to 600"):
        settle_seconds(value)


def test_settle_survives_the_renewal_conf():
    chosen = Settings.from_options({"user": "root", "settle": "0.5"}.get)
    assert chosen.settle == 0.5 and chosen.to_values()["settle"] == "0.5"
    again = Settings.from_options(chosen.to_values().get)
    assert again == chosen
    assert "settle" not in Settings.from_options({"user": "root"}.get).to_values()


def test_unit_names_are_completed_and_kept(recorder):
    service.act(["web", "db.socket", "getty@tty1"], "restart")
    assert recorder.actions() == ["restart web.service", "restart db.socket",
                                  "restart getty@tty1.service"]
    assert recorder.calls()[1] == "is-active web.service"


def test_no_units_runs_nothing(recorder):
    service.act([], "restart")
    assert recorder.calls() == []


def test_none_runs_nothing(recorder):
    recorder.fail("web.service")
    service.reload_unit("web", "none")
    service.act(["web", "db"], "none")
    assert recorder.calls() == []


def test_none_still_validates_the_unit_name(recorder):
    with pytest.raises(SettingsError):
        service.reload_unit("web;reboot", "none")


def test_invalid_unit_name_runs_nothing(recorder):
    with pytest.raises(SettingsError, match="not a valid systemd unit name"):
        service.reload_unit("-H root@host", "restart")
    assert recorder.calls() == []


def test_failing_unit(recorder):
    recorder.fail("web.service")
    with pytest.raises(ServiceError) as info:
        service.reload_unit("web", "restart")
    message = str(info.value)
    assert "'systemctl restart web.service' failed (exit 1)" in message
    assert "Job for web.service failed" in message  # systemctl's own last line
    assert "see 'journalctl -u web.service'" in message
    # no is-active after a failed action
    assert recorder.calls() == ["restart web.service"]


def test_dead_unit_is_reported_with_its_state(recorder):
    recorder.fail("web.service", "dead")
    with pytest.raises(ServiceError) as info:
        service.reload_unit("web", "reload")
    message = str(info.value)
    assert "web.service is failed after 'systemctl reload'" in message
    assert "journalctl -u web.service" in message
    assert recorder.calls() == ["reload web.service", "is-active web.service"]


def test_healed_unit_is_fine_again(recorder):
    recorder.fail("web.service")
    with pytest.raises(ServiceError):
        service.reload_unit("web", "restart")
    recorder.heal("web.service")
    service.reload_unit("web", "restart")


def test_try_restart_of_a_dead_unit_is_an_error(recorder):
    # is-active says 'failed' (not 'inactive'): that is a failure for try- too
    recorder.fail("web.service", "dead")
    with pytest.raises(ServiceError, match="web.service is failed after 'systemctl try-restart'"):
        service.reload_unit("web", "try-restart")


def test_try_restart_of_an_inactive_unit_is_fine(recorder):
    recorder.fail("web.service", "inactive")
    service.reload_unit("web", "try-restart")
    assert recorder.actions() == ["try-restart web.service"]


def test_restart_that_leaves_a_unit_inactive_is_an_error(recorder):
    recorder.fail("web.service", "inactive")
    with pytest.raises(ServiceError, match="web.service is inactive after 'systemctl restart'"):
        service.reload_unit("web", "restart")


def test_unsupported_action_is_a_service_error(recorder):
    with pytest.raises(ServiceError, match=r"'systemctl stop web.service' failed \(exit 2\)"):
        service.reload_unit("web", "stop")


def test_systemctl_missing_from_path(recorder, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError) as info:
        service.reload_unit("web", "restart")
    message = str(info.value)
    assert "Cannot run systemctl" in message
    assert "--wwu-acl-action none" in message
    assert recorder.calls() == []
    # act() reports it as well, once per unit
    with pytest.raises(ServiceError) as info:
        service.act(["web", "db"], "reload")
    assert str(info.value).count("Cannot run systemctl") == 2


def test_systemctl_missing_does_not_matter_for_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    service.act(["web"], "none")


def test_act_continues_after_a_failure_and_reports_all(recorder):
    recorder.fail("a.service")
    recorder.fail("c.service", "dead")
    with pytest.raises(ServiceError) as info:
        service.act(["a", "b", "c", "d"], "restart")
    assert recorder.actions() == ["restart a.service", "restart b.service",
                                  "restart c.service", "restart d.service"]
    message = str(info.value)
    assert "'systemctl restart a.service' failed" in message
    assert "c.service is failed after 'systemctl restart'" in message
    assert "journalctl -u a.service" in message
    assert "journalctl -u c.service" in message
    assert "b.service" not in message and "d.service" not in message


def test_act_success_logs(recorder, caplog):
    with caplog.at_level(logging.INFO, logger="certbot_wwu.service"):
        service.act(["web"], "reload-or-restart")
    assert "Ran systemctl reload-or-restart web.service; the unit is active" in caplog.text


def test_the_stand_in_is_what_runs(recorder):
    # guard: the tests above really go through tests/support/bin/systemctl
    assert os.environ["PATH"].split(os.pathsep)[0].endswith(os.path.join("support", "bin"))
    service.reload_unit("x", "restart")
    assert os.path.exists(os.path.join(recorder.dir, "calls"))
