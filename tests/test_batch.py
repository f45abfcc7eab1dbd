"""certbot_wwu.batch: one action per unit, after every lineage is in place."""
import os

import pytest

from certbot_wwu import batch, deploy
from certbot_wwu.errors import ServiceError
from certbot_wwu.lineage import Lineage
from certbot_wwu.settings import Settings
from certbot_wwu.state import State
from tests.conftest import needs_root
from tests.support.host import SERVICE_USER
from tests.support.systemd import RecordingSystemctl

pytestmark = needs_root


@pytest.fixture
def recorder(scratch, monkeypatch):
    systemctl = RecordingSystemctl(os.path.join(scratch, "systemctl"))
    for name, value in systemctl.env().items():
        monkeypatch.setenv(name, value)
    return systemctl


@pytest.fixture
def lineage(lineage_dir):
    return Lineage(lineage_dir, "unit")


def settings(units, action="restart", **kw):
    return Settings(users=[SERVICE_USER], units=units, action=action, **kw)


def test_one_action_per_unit_with_the_strongest_action(recorder, lineage):
    run = batch.Batch()
    for action in ("reload", "restart", "try-restart"):
        run.add(settings(["web.service"], action), lineage)
    run.add(settings(["db.service"], "reload"), lineage)
    run.flush()
    assert recorder.actions() == ["reload db.service", "restart web.service"]


def test_kept_units_wait_and_their_lineages_stay_unacted(recorder, lineage):
    deploy.deploy(settings(["web.service"]), lineage)
    run = batch.Batch()
    run.add(settings(["web.service"]), lineage)
    run.flush(keep={"web.service"})
    assert recorder.actions() == []
    assert deploy.needs_action(lineage)
    assert run.has(lineage)
    run.flush()
    assert recorder.actions() == ["restart web.service"]
    assert not deploy.needs_action(lineage)
    assert not run.has(lineage)


def test_a_failed_unit_leaves_its_lineage_unacted_and_raises(recorder, lineage):
    deploy.deploy(settings(["web.service"]), lineage)
    recorder.fail("web.service")
    run = batch.Batch()
    run.add(settings(["web.service", "db.service"]), lineage)
    with pytest.raises(ServiceError, match="'systemctl restart web.service' failed"):
        run.flush()
    assert "restart db.service" in recorder.actions()
    assert deploy.needs_action(lineage)
    assert State.load(lineage).acted_version is None


def test_auto_reloads_what_can_reload(recorder, lineage):
    recorder.can_reload("web.service")
    deploy.act(settings(["web.service", "db.service"], "auto"), lineage)
    assert recorder.calls() == [
        "show -p CanReload --value db.service", "restart db.service",
        "is-active db.service", "show -p ActiveState,MainPID db.service",
        "show -p CanReload --value web.service", "reload web.service",
        "is-active web.service", "show -p ActiveState,MainPID web.service"]
