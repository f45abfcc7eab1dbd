"""certbot_wwu.settings: every raw value becomes a Settings or one SettingsError."""
import copy
import os

import configobj
import pytest

from certbot_wwu import renewalconf, settings
from certbot_wwu.errors import SettingsError
from certbot_wwu.settings import (ACTIONS, DEFAULT_ACTION, UNIT_TYPES, Settings,
                                  account_names, action_name, comma_list,
                                  unit_name)


# --- comma_list (the argparse type of the list options) ----------------------

@pytest.mark.parametrize("raw, expected", [
    ("svc", "svc"),
    ("a,b,c", "a,b,c"),
    (" a , b ,, c ,", "a,b,c"),
    ("", ""),
    (None, ""),
    # configobj turns an unquoted ``a, b`` in a renewal conf into a list
    (["a", "b"], "a,b"),
    (["a", " b ", ""], "a,b"),
    (["a,b", "c"], "a,b,c"),
    ([], ""),
])
def test_comma_list_normalises(raw, expected):
    assert comma_list(raw) == expected


@pytest.mark.parametrize("raw", [True, False, 0, 7, 1.5, {"a": "b"}, ["a", True]])
def test_comma_list_rejects_non_strings(raw):
    with pytest.raises(SettingsError, match="comma-separated list"):
        comma_list(raw)


# --- account_names -----------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("www-data", ("www-data",)),
    ("svc,_svc2,a.b", ("svc", "_svc2", "a.b")),
    ("svc, svc ,other,svc", ("svc", "other")),  # duplicates dropped, order kept
    (["svc", "grp"], ("svc", "grp")),
    ("machine$", ("machine$",)),  # Samba machine accounts
    ("a" * 32, ("a" * 32,)),
    (None, ()),
    ("", ()),
])
def test_account_names_accepts(raw, expected):
    assert account_names(raw, "User") == expected


@pytest.mark.parametrize("raw", [
    "-svc",            # would look like an option to useradd & co
    ".svc",
    "a" * 33,
    "svc;reboot",
    "svc name",
    "svc/x",
    "$(id)",
    "s$vc",
    "sv\u00e9",
])
def test_account_names_rejects(raw):
    with pytest.raises(SettingsError, match="not a valid user or group name") as info:
        account_names(raw, "Group")
    assert str(info.value).startswith("Group ")


# --- unit_name ---------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("nginx", "nginx.service"),
    ("nginx.service", "nginx.service"),
    ("foo@bar.service", "foo@bar.service"),
    ("foo@bar", "foo@bar.service"),
    ("getty@tty1.service", "getty@tty1.service"),
    ("my-app_2:x\\x2d.service", "my-app_2:x\\x2d.service"),
    # an unknown suffix is part of the name: systemctl appends .service too
    ("nginx.conf", "nginx.conf.service"),
    ("a" * 247, "a" * 247 + ".service"),  # 255 characters exactly
])
def test_unit_name_accepts(raw, expected):
    assert unit_name(raw) == expected


@pytest.mark.parametrize("suffix", UNIT_TYPES)
def test_unit_name_keeps_every_unit_type_suffix(suffix):
    assert unit_name("thing." + suffix) == "thing." + suffix
    assert unit_name("thing@inst." + suffix) == "thing@inst." + suffix


@pytest.mark.parametrize("raw", [
    "",
    None,
    True,
    3,
    "foo@.service",          # template without an instance
    "foo@",
    "@bar.service",
    "-nginx",                # would be parsed as an option by systemctl
    "--now",
    "web;reboot",
    "web&&reboot",
    "web|cat",
    "web reboot",
    "$(reboot)",
    "`reboot`",
    "web>x",
    "a/b.service",
    "a@b@c.service",
    ".service",
    "a" * 248,               # 256 characters with .service
    "a" * 250 + ".socket",   # 257
])
def test_unit_name_rejects(raw):
    with pytest.raises(SettingsError, match="unit name"):
        unit_name(raw)


@pytest.mark.parametrize("raw", ["nginx\n", "foo@bar\n", "nginx\n.service",
                                 "nginx.service\n", "\nnginx"])
def test_unit_name_rejects_trailing_newline(raw):
    # '$' would also match before a final newline; the pattern must not
    with pytest.raises(SettingsError, match="unit name"):
        unit_name(raw)


# --- action_name -------------------------------------------------------------

@pytest.mark.parametrize("action", ACTIONS)
def test_action_name_accepts_every_action(action):
    assert action_name(action) == action


@pytest.mark.parametrize("raw", [None, ""])
def test_action_name_defaults_to_restart(raw):
    assert action_name(raw) == DEFAULT_ACTION == "restart"


@pytest.mark.parametrize("raw", ["stop", "Restart", "restart ", "start",
                                 True, False, 0, ["restart"]])
def test_action_name_rejects(raw):
    with pytest.raises(SettingsError, match="Unknown action"):
        action_name(raw)


# --- Settings.from_options / to_values ---------------------------------------

def getter(**values):
    return lambda name: values.get(name)


def test_from_options_full():
    got = Settings.from_options(getter(
        user="svc, svc2", group=["readers", "more"], unit="nginx,foo@bar.socket,nginx",
        action="reload"))
    assert got.users == ("svc", "svc2")
    assert got.groups == ("readers", "more")
    assert got.units == ("nginx.service", "foo@bar.socket")
    assert got.action == "reload"


def test_from_options_defaults():
    got = Settings.from_options(getter(user="svc"))
    assert got == Settings(users=["svc"], action="restart")
    assert got.groups == () and got.units == ()


def test_from_options_group_alone_is_enough():
    assert Settings.from_options(getter(group="readers")).groups == ("readers",)


@pytest.mark.parametrize("values", [
    {},
    {"user": None, "group": None},
    {"user": "", "group": ""},
    {"user": " , ", "unit": "web"},
    {"user": [], "group": []},
])
def test_from_options_nobody_to_grant(values):
    with pytest.raises(SettingsError, match="Nobody to grant access to"):
        Settings.from_options(getter(**values))


# certbot restores "True", "False" and "None" from a renewal conf literally;
# anything else of a wrong type must be a SettingsError, never a TypeError.
HOSTILE = [True, False, 0, 1, 2.5, {"x": 1}, ["svc", True], [None, 3]]


@pytest.mark.parametrize("option", ["user", "group", "unit", "action"])
@pytest.mark.parametrize("value", HOSTILE)
def test_from_options_hostile_values(option, value):
    values = {"user": "svc", "group": "readers", "unit": "web", "action": "reload"}
    values[option] = value
    with pytest.raises(SettingsError):
        Settings.from_options(getter(**values))


@pytest.mark.parametrize("option, value, message", [
    ("user", "bad user", "User 'bad user' is not a valid"),
    ("group", "-g", "Group '-g' is not a valid"),
    ("unit", "web;reboot", "not a valid systemd unit name"),
    ("action", "stop", "Unknown action 'stop'"),
])
def test_from_options_names_the_bad_value(option, value, message):
    values = {"user": "svc", "group": "readers", "unit": "web", "action": "reload"}
    values[option] = value
    with pytest.raises(SettingsError) as info:
        Settings.from_options(getter(**values))
    assert message in str(info.value)


def test_from_options_none_values_with_a_user():
    # all three restored as None, as certbot does for "None" in the conf
    got = Settings.from_options(getter(user="svc", group=None, unit=None, action=None))
    assert got == Settings(users=["svc"])


@pytest.mark.parametrize("original", [
    Settings(users=["svc"]),
    Settings(groups=["readers"], action="none"),
    Settings(users=["svc", "svc2"], groups=["readers", "keys"],
             units=["nginx.service", "foo@bar.socket"], action="try-restart"),
    Settings(users=["svc"], units=["web.service"], action="reload-or-restart"),
])
def test_to_values_round_trip(original):
    values = original.to_values()
    assert all(isinstance(v, str) and v for v in values.values())
    assert set(values) <= {o.key for o in settings.OPTION_TABLE}
    assert Settings.from_options(values.get) == original


def test_to_values_round_trip_through_comma_list():
    # what certbot does on renew: the argparse type on each stored string
    original = Settings(users=["a", "b"], groups=["g"], units=["x.service", "y.timer"])
    restored = {k: comma_list(v) if k != "action" else v
                for k, v in original.to_values().items()}
    assert Settings.from_options(restored.get) == original


def test_to_values_leaves_out_empty_options():
    assert Settings(users=["svc"]).to_values() == {"user": "svc", "action": "restart"}


def test_settings_equality_and_repr():
    a = Settings(users=["svc"], units=["web.service"])
    assert a == Settings(users=("svc",), units=("web.service",))
    assert a != Settings(users=["svc"])
    assert a != "Settings"
    assert "users=('svc',)" in repr(a)


@pytest.mark.parametrize("value, expected", [
    (None, 30), ("", 30), ("5", 5), (7, 7), ("3600", 3600)])
def test_timeout_values(value, expected):
    assert settings.timeout_seconds(value) == expected


@pytest.mark.parametrize("value", ["0", "-1", "3601", "abc", "1.5", True, False, [], "5 s"])
def test_bad_timeouts_are_one_sentence(value):
    with pytest.raises(SettingsError, match="is not a whole number of seconds"):
        settings.timeout_seconds(value)


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("localhost:443", ("localhost", 443)),
    ("127.0.0.1:8443", ("127.0.0.1", 8443)), ("[::1]:443", ("::1", 443))])
def test_check_addresses(value, expected):
    assert settings.check_address(value) == expected


@pytest.mark.parametrize("value", ["localhost", "localhost:", ":443", "h:0", "h:65536",
                                   "a b:443", "h:44x", "::1:443", True, ["h:1"]])
def test_bad_check_addresses_are_one_sentence(value):
    with pytest.raises(SettingsError, match="is not HOST:PORT"):
        settings.check_address(value)


def test_timeout_and_check_round_trip_through_the_renewal_conf():
    original = settings.Settings.from_options(
        {"user": "svc", "timeout": "5", "check": "[::1]:8443"}.get)
    values = original.to_values()
    assert values["timeout"] == "5" and values["check"] == "[::1]:8443"
    assert settings.Settings.from_options(values.get) == original


# --- storable: one validator for every value a renewal conf must hold ----------

COPY = {"copy_to": "/srv/tls"}


@pytest.mark.parametrize("values, fragment", [
    ({"copy_to": "/srv/tls#1"}, "--wwu-acl-copy-to '/srv/tls#1' cannot be stored "
                                "in the renewal configuration: '#' starts a comment"),
    ({"copy_to": "/srv/tls "}, "--wwu-acl-copy-to '/srv/tls ' cannot be stored "
                               "in the renewal configuration: a leading or trailing "
                               "space is dropped there"),
    ({"copy_to": "/srv/tls\t"}, "control character U+0009"),
    ({"copy_to": "/srv/tls\x1b[2J"}, "control character U+001B"),
    ({"copy_to": '/srv/"tls"'}, "--wwu-acl-copy-to '/srv/\"tls\"' cannot be stored "
                                "in the renewal configuration: '\"' is a quote"),
    ({"copy_to": "/srv/'tls'"}, "\"'\" is a quote character"),
    ({"copy_to": "/srv/%(server)s"}, "'%(NAME)s' is replaced by the value of NAME"),
    ({"copy_to": "/srv/zertifik\u00e4t"}, "non-ASCII character U+00E4"),
    (dict(COPY, p12_password_file="/etc/p12#pass", copy_formats="pkcs12"),
     "--wwu-acl-p12-password-file '/etc/p12#pass' cannot be stored"),
    (dict(COPY, p12_password_file="/etc/p12 ", copy_formats="pkcs12"),
     "--wwu-acl-p12-password-file '/etc/p12 ' cannot be stored"),
    (dict(COPY, p12_password_file="/etc/'p12'", copy_formats="pkcs12"),
     "quote character"),
    (dict(COPY, p12_password_file="/etc/p12\r", copy_formats="pkcs12"),
     "control character U+000D"),
    ({"user": "None"}, "--wwu-acl-user 'None' cannot be stored in the renewal "
                       "configuration: certbot reads it back as the Python value None"),
    ({"group": "True"}, "--wwu-acl-group 'True' cannot be stored"),
    ({"push_to": "None"}, "--wwu-acl-push-to 'None' cannot be stored"),
    (dict(COPY, copy_owner="None"), "--wwu-acl-copy-owner 'None' cannot be stored"),
])
def test_from_options_refuses_values_the_renewal_conf_cannot_hold(values, fragment):
    with pytest.raises(SettingsError) as info:
        Settings.from_options(getter(**values))
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and message.endswith(".")


def test_p12_password_file_must_be_absolute():
    with pytest.raises(SettingsError, match="must be an absolute path"):
        Settings.from_options(getter(copy_to="/srv/tls", copy_formats="pkcs12",
                                     p12_password_file="p12.pass"))


@pytest.mark.parametrize("option, value", [("copy_to", "/srv/a,b"),
                                           ("copy_to", "/srv/a, b,"),
                                           ("p12_password_file", "/etc/p12,pass")])
def test_commas_in_paths_survive_the_renewal_conf(option, value, tmp_path,
                                                  renew_config):
    """Decided: a comma is fine in the two path options; renewalconf quotes the
    value, so configobj reads it back as one string, not a list."""
    raw = dict(COPY, copy_formats="pkcs12", p12_password_file="/etc/p12")
    raw[option] = value
    original = Settings.from_options(getter(**raw))
    assert getattr(original, option) == value
    assert restore(store(original, tmp_path), renew_config) == original


def test_storable_names_the_option_with_its_installer_prefix():
    assert settings.storable("copy_to", "/srv/tls") == "/srv/tls"
    assert settings.storable("p12_empty_password", "True") == "True"
    with pytest.raises(SettingsError, match="^--wwu-acl-copy-to '#' "):
        settings.storable("copy-to", "#")


# --- the renewal conf round trip (also for tests/test_settings_properties.py) ---

#: a renewal conf as certbot writes it (standalone: no webroot_map to restore)
CERTBOT_CONF = (
    "version = 5.8.0\n"
    "archive_dir = /etc/letsencrypt/archive/unit\n"
    "cert = /etc/letsencrypt/live/unit/cert.pem\n"
    "privkey = /etc/letsencrypt/live/unit/privkey.pem\n"
    "chain = /etc/letsencrypt/live/unit/chain.pem\n"
    "fullchain = /etc/letsencrypt/live/unit/fullchain.pem\n"
    "\n"
    "# Options used in the renewal process\n"
    "[renewalparams]\n"
    "account = ea311d4b74474b2a5f581a040f0ae509\n"
    "authenticator = standalone\n"
    "server = https://acme.example/dir\n"
    "key_type = ecdsa\n"
)


@pytest.fixture(scope="module")
def renew_config(tmp_path_factory):
    """certbot's configuration for ``certbot renew``, parsed by certbot itself
    with the wwu-acl plugin's options (copied for each restore)."""
    from certbot import configuration
    from certbot._internal import cli
    from certbot._internal.plugins import disco
    root = str(tmp_path_factory.mktemp("renew"))
    detector = getattr(cli, "set_by_cli", None)  # certbot < 2.7 caches one
    if detector is not None:
        detector.detector = None
    args = cli.prepare_and_parse_args(disco.PluginsRegistry.find_all(), [
        "renew", "--config-dir", os.path.join(root, "etc"),
        "--work-dir", os.path.join(root, "work"),
        "--logs-dir", os.path.join(root, "logs")])
    yield args if isinstance(args, configuration.NamespaceConfig) \
        else configuration.NamespaceConfig(args)
    if detector is not None:
        detector.detector = None


def store(original, tmp_path):
    """``original`` attached to a certbot renewal conf, as attach writes it."""
    path = str(tmp_path / "round-trip.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(renewalconf.edit(CERTBOT_CONF, original.to_values()))
    return path


def restore(path, renew_config):
    """Settings as ``certbot renew`` gives them to the installer: the conf read
    as certbot's storage reads it, restored by certbot's own renewal code,
    then Settings.from_options on the installer's ``conf``; certbot-wwu's own
    commands (renewalconf.stored) must agree."""
    from certbot._internal import renewal
    params = configobj.ConfigObj(path, encoding="utf-8",
                                 default_encoding="utf-8")["renewalparams"]
    assert params["installer"] == renewalconf.INSTALLER
    config = copy.deepcopy(renew_config)
    renewal._restore_plugin_configs(config, params)
    via_certbot = Settings.from_options(
        lambda name: getattr(config, renewalconf.PREFIX + name))
    _, stored = renewalconf.stored(path)
    assert Settings.from_options(stored.get) == via_certbot
    return via_certbot
