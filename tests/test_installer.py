"""certbot_wwu.installer without running certbot (DESIGN §3)."""
import argparse
import json
import os
import subprocess
import sys

import pytest

from certbot_wwu import installer
from certbot_wwu.installer import Installer
from certbot_wwu.settings import OPTION_TABLE, option
from tests.conftest import needs_root
from tests.e2e.snapshot import snapshot

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fresh_python(code):
    """Run ``code`` in a new interpreter of this venv; its stdout."""
    return subprocess.check_output([sys.executable, "-c", code], cwd=HERE,
                                   universal_newlines=True).strip()


def test_import_is_cheap():
    """No posix1e, no deployment code, and no zope unless certbot itself loads it
    (certbot 1.x does; certbot 5 may run without zope installed)."""
    certbot_alone = json.loads(fresh_python(
        "import json, sys, certbot.interfaces, certbot.plugins.common; "
        "print(json.dumps(sorted(sys.modules)))"))
    out = fresh_python(
        "import json, sys, certbot_wwu.installer; "
        "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(out)
    assert "certbot_wwu.installer" in loaded
    assert "posix1e" not in loaded
    if "zope.interface" not in certbot_alone:
        assert "zope" not in loaded and "zope.interface" not in loaded
    assert "certbot_wwu.grants" not in loaded
    assert "certbot_wwu.deploy" not in loaded


def test_import_works_without_posix1e():
    # a poisoned sys.modules entry makes 'import posix1e' fail in the child
    out = fresh_python(
        "import sys; sys.modules['posix1e'] = None; "
        "import certbot_wwu.installer as i; print(i.Installer.__name__)")
    assert out == "Installer"


def entry_points(group):
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        metadata = None
    if metadata is not None:
        eps = metadata.entry_points()
        if hasattr(eps, "select"):
            return list(eps.select(group=group))
        return list(eps.get(group, []))
    import pkg_resources
    return list(pkg_resources.iter_entry_points(group))


def test_entry_point_resolves_to_the_installer():
    found = [ep for ep in entry_points("certbot.plugins") if ep.name == "wwu-acl"]
    assert len(found) == 1
    assert found[0].load() is Installer


def test_certbot_finds_the_plugin():
    from certbot._internal.plugins import disco
    plugins = disco.PluginsRegistry.find_all()
    assert "wwu-acl" in plugins
    assert plugins["wwu-acl"].plugin_cls is Installer
    from certbot import interfaces
    for iface in (interfaces.Installer, interfaces.RenewDeployer,
                  interfaces.GenericUpdater):
        assert issubclass(Installer, iface), iface


def test_add_parser_arguments():
    calls = []
    Installer.add_parser_arguments(lambda name, **kw: calls.append((name, kw)))
    assert [name for name, _ in calls] == [o.name for o in OPTION_TABLE]
    kwargs = dict(calls)
    assert kwargs["p12-empty-password"]["action"] == "store_true"
    for entry in OPTION_TABLE:
        if entry.flag:
            continue
        name = entry.name
        # every value is checked when certbot parses it (before the CA) and
        # when renew restores it
        assert kwargs[name]["type"] is entry.type, name
        assert kwargs[name]["default"] is None, name
        assert kwargs[name]["metavar"] == entry.metavar
        assert "action" not in kwargs[name]  # no action="append" (DESIGN §3)
    for name, kw in calls:
        assert kw["help"], name


def test_options_on_a_real_parser():
    parser = argparse.ArgumentParser()
    Installer.inject_parser_options(parser, "wwu-acl")
    args = parser.parse_args(["--wwu-acl-user", " root , daemon,,", "--wwu-acl-unit",
                              "web", "--wwu-acl-action", "reload"])
    assert args.wwu_acl_user == "root,daemon"
    assert args.wwu_acl_group is None
    assert args.wwu_acl_unit == "web.service"
    assert args.wwu_acl_action == "reload"


@pytest.fixture
def certbot_config(tmp_path):
    """certbot's own parser and NamespaceConfig for an install command."""
    from certbot import configuration
    from certbot._internal import cli
    from certbot._internal.plugins import disco

    def make(*extra):
        plugins = disco.PluginsRegistry.find_all()
        root = str(tmp_path)
        args = cli.prepare_and_parse_args(plugins, [
            "install", "-i", "wwu-acl",
            "--config-dir", os.path.join(root, "etc"),
            "--work-dir", os.path.join(root, "work"),
            "--logs-dir", os.path.join(root, "logs")] + list(extra))
        config = configuration.NamespaceConfig(args)
        return config, plugins["wwu-acl"]
    return make


def test_certbot_parses_and_restores_list_options(certbot_config):
    from certbot._internal import cli
    config, _ = certbot_config("--wwu-acl-user", "root, daemon", "--wwu-acl-group", "root")
    assert config.wwu_acl_user == "root,daemon"
    assert config.wwu_acl_group == "root"
    assert config.wwu_acl_unit is None
    # renew restores stored values through the option's argparse type
    assert cli.argparse_type("wwu_acl_user") is option("user").type
    assert cli.argparse_type("wwu_acl_unit") is option("unit").type
    assert cli.argparse_type("wwu_acl_user")(["root", " daemon"]) == "root,daemon"


@pytest.mark.parametrize("extra, restored", [
    ((), {}),
    (("--wwu-acl-user", "root"), {}),
    ((), {"wwu_acl_user": "wwu-no-such-user", "wwu_acl_unit": "web;reboot",
          "wwu_acl_action": "explode"}),
    # values certbot restores literally from a renewal conf
    ((), {"wwu_acl_user": True, "wwu_acl_group": False, "wwu_acl_unit": None,
          "wwu_acl_action": 7}),
    ((), {"wwu_acl_user": ["a", True], "wwu_acl_action": ["restart"]}),
])
def test_prepare_without_cert_name_never_raises(certbot_config, monkeypatch, tmp_path, extra, restored):
    monkeypatch.setenv("PATH", str(tmp_path))  # no systemctl either
    config, entry = certbot_config(*extra)
    for name, value in restored.items():
        setattr(config.namespace, name, value)
    plugin = entry.init(config)
    assert isinstance(plugin, Installer)
    plugin.prepare()
    entry.prepare()
    assert entry.problem is None
    assert not os.path.exists(os.path.join(str(tmp_path), "etc", "wwu-acl"))


def test_prepare_on_a_bare_instance():
    # certbot calls generic_updates on an unprepared instance; prepare must
    # not depend on anything __init__ would set up either
    plugin = Installer.__new__(Installer)
    assert plugin.prepare() is None


def test_bad_options_surface_as_plugin_errors(certbot_config):
    from certbot import errors
    config, entry = certbot_config("--wwu-acl-unit", "web")
    plugin = entry.init(config)
    wrapped = installer.loud(lambda self: self._settings())
    with pytest.raises(errors.PluginError, match="Nobody to grant access to"):
        wrapped(plugin)


def test_unexpected_errors_become_plugin_errors():
    from certbot import errors

    def boom(self):
        raise KeyError("x")
    with pytest.raises(errors.PluginError, match="failed unexpectedly \\(KeyError"):
        installer.loud(boom)(None)


def test_installer_describes_itself():
    assert "POSIX ACL" in Installer.description
    plugin = Installer.__new__(Installer)
    assert plugin.get_all_names() == []
    assert plugin.supported_enhancements() == []


@needs_root
def test_unstorable_value_fails_install_before_anything_changes(certbot_config,
                                                                 lineage_dir, scratch,
                                                                 capsys):
    """certbot install used to deploy the copies first, then fail "unexpectedly"
    on the renewal conf and record nothing; now certbot's parser refuses it."""
    target = os.path.join(scratch, "tls#1")
    before = snapshot(lineage_dir)
    with pytest.raises(SystemExit) as info:
        certbot_config("--config-dir", lineage_dir, "--cert-name", "unit",
                       "--wwu-acl-copy-to", target)
    assert info.value.code == 2
    assert ("argument --wwu-acl-copy-to: '{}' cannot be stored in the renewal "
            "configuration: '#' starts a comment there; choose a value without "
            "it.".format(target)) in capsys.readouterr().err
    assert not os.path.exists(target)
    assert snapshot(lineage_dir) == before
