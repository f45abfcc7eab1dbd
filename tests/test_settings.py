"""certbot_wwu.settings: every raw value becomes a Settings or one SettingsError."""
import pytest

from certbot_wwu import settings
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
    assert set(values) <= {name for name, _ in settings.OPTIONS}
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
