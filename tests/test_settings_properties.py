"""Property: any value Settings accepts survives the renewal conf round trip
(renewalconf.edit, configobj as certbot reads it, Settings.from_options)."""
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings as hsettings, strategies as st  # noqa: E402,E501

from certbot_wwu import settings  # noqa: E402
from certbot_wwu.errors import SettingsError  # noqa: E402
from certbot_wwu.settings import Settings  # noqa: E402
from tests.test_settings import renew_config, restore, store  # noqa: E402,F401

#: characters that a renewal conf treats specially, and ordinary ones
TRICKY = "#\"' ,\t\n\r\x00\x1b\x7f%()s$\\[]=:;@\u00e4\u2028\x85"
NAME = st.from_regex(r"\A[a-z_][a-z0-9_.-]{0,8}\Z")
JUNK = st.text(alphabet=TRICKY + "abc/", max_size=3)


def noisy(strategy):
    """Mostly valid values, some with a tricky character added somewhere."""
    return st.one_of(strategy, st.tuples(strategy, JUNK, st.booleans()).map(
        lambda t: t[0] + t[1] if t[2] else t[1] + t[0]))


#: accounts every Debian host has: the options' types check that they exist
USER = st.sampled_from(["root", "daemon", "bin", "sys", "nobody"])
GROUP = st.sampled_from(["root", "daemon", "bin", "sys", "nogroup"])


def names_list(names):
    return st.one_of(st.lists(names, min_size=1, max_size=3).map(",".join),
                     st.sampled_from(["None", "True", "False"]))
PATH = st.lists(st.text(alphabet="abcxyz019-_.,:@%()$ ", min_size=1, max_size=6),
                min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
RAW = st.fixed_dictionaries({}, optional={
    "user": noisy(names_list(USER)),
    "group": noisy(names_list(GROUP)),
    "unit": noisy(st.sampled_from(["nginx", "web@a.service", "db.socket",
                                   "x\\x2d.timer"])),
    "action": st.sampled_from(list(settings.ACTIONS)),
    "timeout": st.integers(1, 3600).map(str),
    "check": st.sampled_from(["localhost:443", "[::1]:8443", "h.example:1"]),
    "copy_to": noisy(PATH),
    "copy_owner": st.one_of(USER, st.tuples(USER, st.sampled_from(
        ["root", "daemon", "nogroup"])).map(":".join)),
    "copy_mode": st.sampled_from(["0600", "640", "0400"]),
    "copy_formats": st.sampled_from(["pem", "pem,combined", "pkcs12", "combined"]),
    "p12_password_file": noisy(PATH),
    "p12_empty_password": st.booleans(),
    "push_to": noisy(st.lists(NAME, min_size=1, max_size=2).map(",".join)),
})


@hsettings(max_examples=300, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture,
                                  HealthCheck.too_slow])
@given(RAW)
def test_whatever_settings_accepts_survives_the_renewal_conf(tmp_path, renew_config, raw):
    try:
        original = Settings.from_options(raw.get)
    except SettingsError as err:
        event("refused")
        assert "\n" not in str(err) and "Traceback" not in str(err)
        return
    event("accepted")
    assert restore(store(original, tmp_path), renew_config) == original
