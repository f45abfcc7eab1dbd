"""Property tests: whatever a user types or a renewal conf holds, the answer
is a valid setting or one clear error, never a traceback."""
import configparser
import os
import re
import tempfile

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

from certbot_wwu import presets, renewalconf  # noqa: E402
from certbot_wwu.errors import WwuError  # noqa: E402
from certbot_wwu.settings import OPTION_TABLE, Settings, unit_name  # noqa: E402

hsettings.register_profile("quick", max_examples=150, deadline=None)
hsettings.register_profile("long", max_examples=3000, deadline=None)
hsettings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

NAMES = [option.key for option in OPTION_TABLE]
#: what certbot can hand back from a renewal conf or the command line
VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                   st.lists(st.text(max_size=12), max_size=4),
                   st.sampled_from(["root", "nginx,www-data", "web", "restart", "auto",
                                    "localhost:443", "/srv/tls", "0640", "pem,pkcs12",
                                    "True", "None", "../..", "a;b", "-x"]))


def is_one_sentence(err):
    text = str(err)
    return text and "\n" not in text and "Traceback" not in text


@given(st.dictionaries(st.sampled_from(NAMES), VALUES))
def test_any_option_values_give_settings_or_one_sentence(values):
    try:
        result = Settings.from_options(values.get)
    except WwuError as err:
        assert is_one_sentence(err)
        return
    for unit in result.units:
        assert re.match(r"^[A-Za-z0-9:_.\\@-]+\.[a-z]+\Z", unit)
    assert Settings.from_options(result.to_values().get) == result


@given(st.text(max_size=60))
def test_unit_names_are_valid_or_refused(name):
    try:
        unit = unit_name(name)
    except WwuError as err:
        assert is_one_sentence(err)
        return
    assert not set(unit) & set(" ;&|$`'\"<>()\n\t*?!")
    assert not unit.startswith("-")


LINE_VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                             blacklist_characters="\n\r\x00"),
                     max_size=30)


@given(st.dictionaries(st.sampled_from(NAMES), LINE_VALUE, max_size=6))
def test_hostile_renewal_conf_values_never_raise_anything_else(values):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.conf")
        with open(path, "w") as f:
            f.write("version = 5.8.0\n[renewalparams]\ninstaller = wwu-acl\n")
            for key, value in values.items():
                f.write("wwu_acl_{} = {}\n".format(key, value))
        try:
            installer, stored = renewalconf.stored(path)
            Settings.from_options(stored.get)
        except WwuError as err:
            assert is_one_sentence(err)


@given(st.text(max_size=40))
def test_proxies_are_normalised_with_a_scheme_or_refused(value):
    try:
        proxy = presets.normalize_proxy(value)
    except WwuError as err:
        assert is_one_sentence(err)
        return
    assert re.match(r"^https?://[^\s]+:\d+/?\Z", proxy)


@given(st.dictionaries(st.sampled_from(
    ["description", "server", "server_pattern", "eab_required", "email_required",
     "prevalidated", "issuance_timeout", "proxy", "no_proxy", "inherit", "override",
     "nonsense"]), LINE_VALUE, max_size=6),
    st.sampled_from(["preset lab", "preset harica", "preset", "cluster", "preset a b"]))
def test_preset_files_load_or_name_the_problem(keys, section):
    with tempfile.TemporaryDirectory() as tmp:
        parser = configparser.RawConfigParser()
        parser.add_section(section)
        for key, value in keys.items():
            parser.set(section, key, value.replace("%", "%%"))
        with open(os.path.join(tmp, "site.conf"), "w") as f:
            parser.write(f)
        try:
            presets.load_presets(tmp)
        except WwuError as err:
            assert is_one_sentence(err)
            assert "site.conf" in str(err)
