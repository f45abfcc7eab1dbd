"""certbot_wwu.presets: built-in presets, site preset files, proxy values."""
import json
import textwrap

import pytest

from certbot_wwu import presets
from certbot_wwu.presets import (PresetError, get_preset, load_presets,
                                 normalize_no_proxy, normalize_proxy,
                                 proxy_environment, redact_proxy)

HARICA_URL = ("https://acme-v02.harica.gr/acme/"
              "962d61f0-7815-46cc-9c42-8e8aa25443d1/directory")
SEED_PROXY = "wwwproxy.uni-muenster.de:3128"


@pytest.fixture(autouse=True)
def no_site_presets(monkeypatch, tmp_path):
    """Tests never read the host's /etc/certbot-wwu."""
    monkeypatch.delenv(presets.DIR_ENV, raising=False)
    monkeypatch.setattr(presets, "DEFAULT_DIR", str(tmp_path / "absent"))


def site(tmp_path, text, name="site.conf"):
    directory = tmp_path / "presets.d"
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return str(directory), str(path)


def one_sentence(message):
    return "\n" not in message and message.endswith(".") and "Traceback" not in message


# --- built-in presets ---------------------------------------------------------

BUILTINS = {
    # name: server, eab, email, prevalidated, timeout, proxy
    "sectigo-ov": ("https://acme.sectigo.com/v2/OV", True, False, True, 300, None),
    "sectigo-ev": ("https://acme.sectigo.com/v2/EV", True, False, True, 300, None),
    "sectigo-dv": ("https://acme.sectigo.com/v2/DV", True, False, False, 300, None),
    "sectigo-geantov": ("https://acme.sectigo.com/v2/GEANTOV", True, False, True, 300,
                        None),
    "harica": (None, True, True, True, None, None),
    "letsencrypt": ("https://acme-v02.api.letsencrypt.org/directory",
                    False, False, False, None, None),
    "letsencrypt-staging": ("https://acme-staging-v02.api.letsencrypt.org/directory",
                            False, False, False, None, None),
    "wwu": (None, True, True, True, 300, "http://wwwproxy.uni-muenster.de:3128"),
}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_preset(name):
    server, eab, email, prevalidated, timeout, proxy = BUILTINS[name]
    preset = get_preset(name)
    assert (preset.server, preset.eab_required, preset.email_required,
            preset.prevalidated, preset.issuance_timeout, preset.proxy) == (
        server, eab, email, prevalidated, timeout, proxy)
    assert preset.source == "built-in"
    assert preset.description
    preset.description.encode("ascii")  # printable under LANG=C on Python 3.6
    if server:
        assert preset.server_url(None) == server


def test_builtins_are_exactly_these():
    assert list(load_presets()) == list(BUILTINS)


def test_seed_server_is_sectigo_ov():
    assert get_preset("sectigo-ov").server_url() == "https://acme.sectigo.com/v2/OV"


def test_wwu_preset_bypasses_the_proxy_for_university_hosts():
    preset = get_preset("wwu")
    assert "uni-muenster.de" in preset.no_proxy.split(",")
    assert preset.server is None and preset.server_pattern is None


def test_builtins_are_fresh_objects():
    get_preset("wwu").proxy = "http://evil:1"
    assert get_preset("wwu").proxy == "http://wwwproxy.uni-muenster.de:3128"


# --- server_url ---------------------------------------------------------------

def test_harica_accepts_a_portal_url():
    assert get_preset("harica").server_url(" " + HARICA_URL + "\n") == HARICA_URL
    upper = HARICA_URL.replace("962d61f0", "962D61F0")
    assert get_preset("harica").server_url(upper) == upper


@pytest.mark.parametrize("url", [
    "https://acme-v02.harica.gr/acme/not-a-uuid/directory",
    "https://acme-v02.harica.gr/acme/962d61f0-7815-46cc-9c42/directory",
    HARICA_URL + "/",
    HARICA_URL.replace("/directory", ""),
    HARICA_URL.replace("acme-v02.harica.gr", "acme-v02.harica.gr.evil.example"),
    "https://acme.sectigo.com/v2/OV",
])
def test_harica_rejects_malformed_urls(url):
    with pytest.raises(PresetError) as info:
        get_preset("harica").server_url(url)
    message = str(info.value)
    assert "https://acme-v02.harica.gr/acme/<uuid>/directory" in message
    assert one_sentence(message)


@pytest.mark.parametrize("url, fragment", [
    (HARICA_URL.replace("https:", "http:"), "not an https:// URL"),
    ("https://user:pw@acme-v02.harica.gr/acme/x/directory", "plain https://host/path"),
    ("https://exa mple.org/dir", "spaces"),
    ("https://host:99999/dir", "not a valid URL"),
])
def test_supplied_urls_must_be_plain_https(url, fragment):
    with pytest.raises(PresetError, match=fragment):
        get_preset("wwu").server_url(url)


@pytest.mark.parametrize("name", ["harica", "wwu"])
def test_presets_without_a_server_need_one(name):
    with pytest.raises(PresetError, match="pass it with --server"):
        get_preset(name).server_url(None)
    with pytest.raises(PresetError, match="pass it with --server"):
        get_preset(name).server_url("  ")


def test_wwu_takes_any_https_url_from_the_portal():
    assert get_preset("wwu").server_url(HARICA_URL) == HARICA_URL
    assert get_preset("wwu").server_url("https://acme.sectigo.com/v2/OV") == \
        "https://acme.sectigo.com/v2/OV"


def test_fixed_server_accepts_itself_and_refuses_another():
    preset = get_preset("sectigo-ov")
    assert preset.server_url("https://acme.sectigo.com/v2/OV/") == preset.server
    with pytest.raises(PresetError, match="always uses https://acme.sectigo.com/v2/OV"):
        preset.server_url("https://acme.sectigo.com/v2/EV")
    with pytest.raises(PresetError, match="always uses"):
        get_preset("letsencrypt").server_url(HARICA_URL)


def test_to_dict_is_json_and_masks_the_password():
    preset = get_preset("wwu").copy("lab", "test")
    preset.proxy = "http://me:s3cret@proxy.example:8080"
    data = json.loads(json.dumps(preset.to_dict()))
    assert data["proxy"] == "http://me:***@proxy.example:8080"
    assert data["name"] == "lab" and data["issuance_timeout"] == 300
    assert preset.to_dict(secrets=True)["proxy"] == preset.proxy
    assert set(data) >= {"name", "description", "server", "server_pattern",
                         "eab_required", "email_required", "prevalidated",
                         "issuance_timeout", "proxy", "no_proxy"}


# --- proxy values -------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    (SEED_PROXY, "http://wwwproxy.uni-muenster.de:3128"),           # the seed's
    (" " + SEED_PROXY + "\n", "http://wwwproxy.uni-muenster.de:3128"),
    ("http://wwwproxy.uni-muenster.de:3128", "http://wwwproxy.uni-muenster.de:3128"),
    ("HTTP://WWWProxy.Uni-Muenster.DE:03128/", "http://wwwproxy.uni-muenster.de:3128"),
    ("https://proxy.example:8443", "https://proxy.example:8443"),
    ("10.0.0.1:8080", "http://10.0.0.1:8080"),
    ("[2001:db8::1]:3128", "http://[2001:db8::1]:3128"),
    ("http://[2001:DB8:0::1]:3128", "http://[2001:db8::1]:3128"),
    ("proxy:3128", "http://proxy:3128"),
    ("me:p%40ss@proxy.example:3128", "http://me:p%40ss@proxy.example:3128"),
    ("http://me@proxy.example:3128", "http://me@proxy.example:3128"),
])
def test_normalize_proxy(raw, expected):
    assert normalize_proxy(raw) == expected
    assert normalize_proxy(expected) == expected


@pytest.mark.parametrize("raw, fragment", [
    ("", "is empty"),
    ("   ", "is empty"),
    ("wwwproxy.uni-muenster.de", "has no port"),
    ("http://wwwproxy.uni-muenster.de", "has no port"),
    ("wwwproxy.uni-muenster.de:", "has no port"),
    (":3128", "has no host"),
    ("http://:3128", "has no host"),
    ("proxy:0", "not a number from 1 to 65535"),
    ("proxy:65536", "not a number from 1 to 65535"),
    ("proxy:31x8", "not a number from 1 to 65535"),
    ("proxy:-1", "not a number from 1 to 65535"),
    ("wwwproxy uni-muenster.de:3128", "spaces"),
    ("proxy:3128\nexport X=1", "spaces or control"),
    ("socks5://proxy:1080", "SOCKS"),
    ("socks5h://proxy:1080", "SOCKS"),
    ("ftp://proxy:21", "scheme 'ftp'"),
    ("http://proxy:3128/path", "has a path"),
    ("http://proxy:3128?x=1", "has a path"),
    ("pro_xy:3128", "invalid host name"),
    ("-proxy:3128", "invalid host name"),
    ("300.1.1.1:3128", "invalid host name"),
    ("2001:db8::1:3128", "without brackets"),
    ("[2001:db8::zz]:3128", "invalid IPv6"),
    ("[2001:db8::1]3128", "invalid IPv6"),
    ("me:p@ss@proxy:3128", "percent-encoded"),
    ("me:pa$s@proxy:3128", "percent-encoded"),
    ("$(reboot):3128", "invalid host name"),
])
def test_normalize_proxy_rejects(raw, fragment):
    with pytest.raises(PresetError) as info:
        normalize_proxy(raw)
    message = str(info.value)
    assert fragment in message
    assert message.startswith("Proxy ") and one_sentence(message)


def test_proxy_password_never_appears_in_errors():
    with pytest.raises(PresetError) as info:
        normalize_proxy("me:TopSecret@proxy.example")  # no port
    assert "TopSecret" not in str(info.value)
    assert "me:***@proxy.example" in str(info.value)


@pytest.mark.parametrize("raw, expected", [
    ("http://u:pw@h:1", "http://u:***@h:1"),
    ("u:pw@h:1", "u:***@h:1"),
    ("http://u@h:1", "http://u:***@h:1"),
    ("http://h:1", "http://h:1"),
    (None, None),
])
def test_redact_proxy(raw, expected):
    assert redact_proxy(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("", ""),
    ("localhost", "localhost"),
    ("localhost, .Uni-Muenster.DE  example.org,,", "localhost,.uni-muenster.de,example.org"),
    ("*.example.org", ".example.org"),
    ("10.1.2.3/8,10.0.0.0/8", "10.0.0.0/8"),
    ("127.0.0.1,::1,[::1]", "127.0.0.1,::1"),
    ("host.example:8080", "host.example:8080"),
    ("*", "*"),
    ("a,a,A", "a"),
])
def test_normalize_no_proxy(raw, expected):
    assert normalize_no_proxy(raw) == expected


@pytest.mark.parametrize("raw, fragment", [
    ("http://intranet.example", "is a URL"),
    ("10.0.0.0/33", "CIDR"),
    ("a/b", "CIDR"),
    ("-bad.example", "not a host name"),
    ("host:99999", "invalid port"),
    ("$(id)", "not a host name"),
])
def test_normalize_no_proxy_rejects(raw, fragment):
    with pytest.raises(PresetError, match=fragment) as info:
        normalize_no_proxy(raw)
    assert one_sentence(str(info.value))


def test_proxy_environment():
    env = proxy_environment(SEED_PROXY, "uni-muenster.de, localhost")
    proxy = "http://wwwproxy.uni-muenster.de:3128"
    assert env == {"http_proxy": proxy, "https_proxy": proxy, "HTTP_PROXY": proxy,
                   "HTTPS_PROXY": proxy, "no_proxy": "uni-muenster.de,localhost",
                   "NO_PROXY": "uni-muenster.de,localhost"}
    assert list(env) == list(presets.ENV_KEYS)


def test_proxy_environment_without_no_proxy():
    assert set(proxy_environment("p:1")) == set(presets.PROXY_KEYS)
    assert set(proxy_environment("p:1", "")) == set(presets.PROXY_KEYS)


def test_proxy_environment_without_proxy():
    assert proxy_environment(None) == {}
    with pytest.raises(PresetError, match="without a proxy"):
        proxy_environment(None, "localhost")
    with pytest.raises(PresetError, match="no port"):
        proxy_environment("proxy", None)


# --- site preset files --------------------------------------------------------

def test_site_presets(tmp_path):
    directory, path = site(tmp_path, """\
        # site presets
        [preset lab]
        inherit = harica
        description = Physics lab
        proxy = wwwproxy.uni-muenster.de:3128
        no_proxy = .Uni-Muenster.de, 10.0.0.0/8
        issuance_timeout = 600

        [preset wwu]
        override = yes
        server = https://acme.sectigo.com/v2/OV
        prevalidated = no

        [cluster]
        peers = a, b
        whatever = not ours

        [preset plain]
        description = every default
        """)
    found = load_presets(directory)
    assert list(found) == list(BUILTINS) + ["lab", "plain"]
    lab = found["lab"]
    assert lab.source == path
    assert lab.server_pattern == presets.HARICA_PATTERN
    assert lab.email_required and lab.eab_required and lab.prevalidated
    assert lab.proxy == "http://wwwproxy.uni-muenster.de:3128"
    assert lab.no_proxy == ".uni-muenster.de,10.0.0.0/8"
    assert lab.issuance_timeout == 600
    assert lab.server_url(HARICA_URL) == HARICA_URL
    with pytest.raises(PresetError, match="<uuid>"):
        lab.server_url("https://acme-v02.harica.gr/acme/1/directory")
    wwu = found["wwu"]  # the override starts from the built-in
    assert wwu.server == "https://acme.sectigo.com/v2/OV"
    assert wwu.prevalidated is False and wwu.eab_required is True
    assert wwu.proxy == "http://wwwproxy.uni-muenster.de:3128"
    plain = found["plain"]
    assert (plain.server, plain.eab_required, plain.proxy, plain.issuance_timeout) == (
        None, False, None, None)
    assert found["letsencrypt"].source == "built-in"


@pytest.mark.parametrize("raw, expected", [
    ("yes", True), ("YES", True), ("true", True), ("1", True), ("on", True),
    ("no", False), ("False", False), ("0", False), ("off", False),
])
def test_site_booleans(tmp_path, raw, expected):
    directory, _ = site(tmp_path, "[preset b]\neab_required = {}\n".format(raw))
    assert get_preset("b", directory).eab_required is expected


def test_empty_value_clears_what_was_inherited(tmp_path):
    directory, _ = site(tmp_path, """\
        [preset quiet]
        inherit = wwu
        proxy =
        no_proxy =
        issuance_timeout =
        """)
    preset = get_preset("quiet", directory)
    assert (preset.proxy, preset.no_proxy, preset.issuance_timeout) == (None, None, None)
    assert preset.eab_required


def test_site_server_pattern(tmp_path):
    directory, _ = site(tmp_path, r"""
        [preset ca]
        server_pattern = https://acme\.example/[a-z]+/directory
        server_example = https://acme.example/<name>/directory
        """)
    preset = get_preset("ca", directory)
    assert preset.server_url("https://acme.example/abc/directory")
    with pytest.raises(PresetError, match="<name>"):
        preset.server_url("https://acme.example/123/directory")


def test_only_conf_and_ini_files_are_read(tmp_path):
    site(tmp_path, "[preset a]\n", "a.conf")
    site(tmp_path, "[preset b]\n", "b.ini")
    site(tmp_path, "[preset c]\n", "c.conf.dpkg-old")
    directory, _ = site(tmp_path, "[preset d]\n", ".hidden.conf")
    assert list(load_presets(directory))[-2:] == ["a", "b"]
    assert "c" not in load_presets(directory)


def test_directory_from_the_environment(tmp_path, monkeypatch):
    directory, _ = site(tmp_path, "[preset envdir]\n")
    monkeypatch.setenv(presets.DIR_ENV, directory)
    assert "envdir" in load_presets()
    assert presets.presets_dir() == (directory, True)


def test_missing_default_directory_is_fine():
    assert list(load_presets()) == list(BUILTINS)


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_missing_chosen_directory_is_an_error(tmp_path, monkeypatch, how):
    missing = str(tmp_path / "typo")
    if how == "environment":
        monkeypatch.setenv(presets.DIR_ENV, missing)
    with pytest.raises(PresetError, match="does not exist") as info:
        load_presets(missing if how == "argument" else None)
    assert missing in str(info.value) and one_sentence(str(info.value))


BAD_KEYS = [
    # key, value, fragment
    ("proxxy", "p:1", "unknown key"),
    ("eab_required", "maybe", "is not yes or no"),
    ("eab_required", "", "is not yes or no"),
    ("prevalidated", "ja", "is not yes or no"),
    ("override", "sure", "is not yes or no"),
    ("server", "http://acme.example/dir", "not an https:// URL"),
    ("server", "acme.example/dir", "not an https:// URL"),
    ("server", HARICA_URL.replace("962d61f0-", ""), "does not match the server_pattern"),
    ("server_pattern", "https://(unclosed", "not a valid regular expression"),
    ("issuance_timeout", "soon", "not a number of seconds"),
    ("issuance_timeout", "0", "not a number of seconds"),
    ("issuance_timeout", "-5", "not a number of seconds"),
    ("issuance_timeout", "999999", "not a number of seconds"),
    ("proxy", "wwwproxy.uni-muenster.de", "has no port"),
    ("proxy", "socks5://p:1080", "SOCKS"),
    ("proxy", "p:1 2", "spaces"),
    ("no_proxy", "http://x.example", "is a URL"),
    ("inherit", "lets-encrypt", "not a built-in preset"),
]


@pytest.mark.parametrize("key, value, fragment", BAD_KEYS)
def test_site_errors_name_file_section_and_key(tmp_path, key, value, fragment):
    text = "[preset lab]\ninherit = harica\n" if key != "inherit" else "[preset lab]\n"
    directory, path = site(tmp_path, text + "{} = {}\n".format(key, value))
    with pytest.raises(PresetError) as info:
        load_presets(directory)
    message = str(info.value)
    assert message.startswith("In {}, section [preset lab], key {}: ".format(path, key))
    assert fragment in message
    assert one_sentence(message)


def test_no_proxy_needs_a_proxy(tmp_path):
    directory, path = site(tmp_path, "[preset lab]\nno_proxy = localhost\n")
    with pytest.raises(PresetError, match="key no_proxy: the preset has no proxy"):
        load_presets(directory)


def test_site_error_masks_the_proxy_password(tmp_path):
    directory, _ = site(tmp_path, "[preset lab]\nproxy = me:Geheim@proxy\n")
    with pytest.raises(PresetError) as info:
        load_presets(directory)
    assert "Geheim" not in str(info.value) and "has no port" in str(info.value)


def test_builtin_name_needs_override(tmp_path):
    directory, path = site(tmp_path, "[preset wwu]\nproxy = other:8080\n")
    with pytest.raises(PresetError) as info:
        load_presets(directory)
    assert str(info.value) == (
        "In {}, section [preset wwu]: wwu is a built-in preset; add 'override = "
        "yes' to replace it or choose another name.".format(path))


def test_duplicate_across_files(tmp_path):
    _, first = site(tmp_path, "[preset lab]\n", "10-a.conf")
    directory, second = site(tmp_path, "[preset lab]\n", "20-b.conf")
    with pytest.raises(PresetError) as info:
        load_presets(directory)
    assert first in str(info.value) and second in str(info.value)
    assert "lab" in str(info.value) and one_sentence(str(info.value))


def test_duplicate_within_a_file(tmp_path):
    directory, path = site(tmp_path, "[preset lab]\n[preset   lab]\n")
    with pytest.raises(PresetError, match="define the same preset") as info:
        load_presets(directory)
    assert path in str(info.value)


@pytest.mark.parametrize("text, fragment", [
    ("[preset lab]\nproxy = a:1\nproxy = b:1\n",
     "line 3: key proxy appears twice in section [preset lab]; fix that line"),
    ("[preset lab]\n[preset lab]\n", "line 2: section [preset lab] appears twice"),
    ("proxy = a:1\n", "line 1: 'proxy = a:1' comes before the first [section]"),
    ("[preset lab\n", "line 1: '[preset lab' comes before the first [section]"),
    ("[preset lab]\nproxy a:1\n", "line 2: 'proxy a:1' is neither [section] nor"),
    ("[preset]\n", "is not [preset NAME]"),
    ("[preset a b]\n", "is not [preset NAME]"),
    ("[preset -x]\n", "is not [preset NAME]"),
    ("[preset lab]\n\xff\n", None),
])
def test_malformed_files(tmp_path, text, fragment):
    directory = tmp_path / "presets.d"
    directory.mkdir()
    path = directory / "bad.conf"
    if fragment is None:
        path.write_bytes(b"[preset lab]\n\xff\n")
        fragment = "not UTF-8"
    else:
        path.write_text(text)
    with pytest.raises(PresetError) as info:
        load_presets(str(directory))
    assert fragment in str(info.value)
    assert str(path) in str(info.value) and one_sentence(str(info.value))


def test_unknown_preset_lists_the_known_ones(tmp_path):
    directory, _ = site(tmp_path, "[preset lab]\n")
    with pytest.raises(PresetError) as info:
        get_preset("sectigo", directory)
    message = str(info.value)
    assert message.startswith("Unknown preset 'sectigo'; choose one of sectigo-ov, ")
    assert "lab" in message and directory in message and one_sentence(message)



# --- service profiles (issue 12) ------------------------------------------------

from certbot_wwu import settings as wwu_settings  # noqa: E402


def test_builtin_service_profiles_cover_the_issue():
    names = set(presets.load_services())
    assert {"postgresql", "mosquitto", "redis", "haproxy", "tomcat", "slapd",
            "prosody", "dovecot", "postfix", "tls-server"} <= names


def test_postgresql_unit_follows_the_debian_cluster(tmp_path):
    conf = tmp_path / "15" / "main"
    conf.mkdir(parents=True)
    (conf / "postgresql.conf").write_text("")
    pattern = str(tmp_path / "*" / "*" / "postgresql.conf")
    assert presets.postgresql_unit(pattern) == "postgresql@15-main.service"
    (tmp_path / "16" / "main").mkdir(parents=True)
    (tmp_path / "16" / "main" / "postgresql.conf").write_text("")
    assert presets.postgresql_unit(pattern) == "postgresql.service"


def test_profile_values_pass_the_options_own_checks():
    for profile in presets.load_services().values():
        for key, value in profile.defaults.items():
            assert wwu_settings.profile_value(key, value) == value
            assert wwu_settings.storable(key, value) == value


def test_site_service_inherits_and_overrides(tmp_path):
    directory, path = site(tmp_path, """
        [service pg-replica]
        inherit = postgresql
        unit = postgresql@15-replica
        [service postfix]
        override = yes
        check_protocol = smtp
        unit = postfix@-.service
        [preset lab]
        inherit = harica
    """)
    services = presets.load_services(directory)
    replica = services["pg-replica"]
    assert replica.defaults["unit"] == "postgresql@15-replica.service"
    assert replica.defaults["user"] == "postgres" and replica.strict_key_mode
    assert services["postfix"].defaults["unit"] == "postfix@-.service"
    assert services["postfix"].source == path
    assert "lab" in presets.load_presets(directory)


@pytest.mark.parametrize("text,words", [
    ("[service x]\nunit = a;b\n", "key unit: 'a;b' is not a valid systemd unit"),
    ("[service x]\naction = bounce\n", "key action: Unknown action 'bounce'"),
    ("[service x]\ncheck_protocol = gopher\n", "key check_protocol: Unknown check"),
    ("[service x]\ncopy_mode = 0644\n", "key copy_mode: Key copy mode"),
    ("[service x]\nuser = a#b\n", "key user:"),
    ("[service x]\nmode = nfs\n", "key mode: 'nfs' is neither acl nor copy"),
    ("[service x]\ncolour = red\n", "key colour: unknown key"),
    ("[service postgresql]\nuser = pg\n", "postgresql is a built-in service profile"),
    ("[service x]\ninherit = nginx\n", "key inherit: 'nginx' is not a built-in"),
])
def test_site_service_errors_name_file_section_and_key(tmp_path, text, words):
    directory, path = site(tmp_path, text)
    with pytest.raises(PresetError) as failure:
        presets.load_services(directory)
    message = str(failure.value)
    assert words in message and path in message and one_sentence(message), message


def test_unknown_service_lists_the_profiles():
    with pytest.raises(PresetError) as failure:
        presets.get_service("nginx")
    assert "postgresql" in str(failure.value) and one_sentence(str(failure.value))


def _get(values):
    return lambda key: values.get(key)


def test_profile_defaults_and_explicit_options_win():
    chosen = wwu_settings.Settings.from_options(_get({
        "service": "postgresql", "user": "root", "check": "127.0.0.1:5432"}))
    assert chosen.users == ("root",)  # explicit wins
    assert chosen.action == "reload" and chosen.check_protocol == "postgres"
    assert chosen.units[0].startswith("postgresql")
    stored = chosen.to_values()
    assert stored["service"] == "postgresql" and stored["check_protocol"] == "postgres"
    again = wwu_settings.Settings.from_options(_get(stored))
    assert again == chosen


def test_profile_rule_refuses_a_group_readable_key_its_user_owns():
    # root-owned 0640 is what PostgreSQL accepts: only a key its user owns
    root_owned = wwu_settings.Settings.from_options(_get({
        "service": "postgresql", "copy_to": "/etc/wwu-pg",
        "copy_owner": "root:root", "copy_mode": "0640"}))
    assert root_owned.copy_mode == 0o640
    chosen = wwu_settings.Settings.from_options(_get({
        "service": "postgresql", "copy_to": "/etc/wwu-pg"}))
    assert (chosen.copy_owner, chosen.copy_mode) == (("postgres", ""), 0o600)
    with pytest.raises(wwu_settings.SettingsError) as failure:
        wwu_settings.Settings.from_options(_get({
            "service": "postgresql", "copy_to": "/etc/wwu-pg",
            "copy_owner": "postgres:postgres", "copy_mode": "0640"}))
    message = str(failure.value)
    assert "has group or world access" in message and "--wwu-acl-copy-mode 0600" in message


def test_copy_profile_needs_a_copy_directory():
    with pytest.raises(wwu_settings.SettingsError) as failure:
        wwu_settings.Settings.from_options(_get({"service": "haproxy"}), "--")
    assert "--copy-to DIR" in str(failure.value) and "combined" in str(failure.value)


def test_root_reading_profile_needs_no_grant():
    chosen = wwu_settings.Settings.from_options(_get({"service": "postfix"}))
    assert chosen.users == () and chosen.units == ("postfix.service",)
    with pytest.raises(wwu_settings.SettingsError):
        wwu_settings.Settings.from_options(_get({"unit": "postfix"}))


def test_check_protocol_and_p12_encryption_apply_only_where_they_mean_something():
    with pytest.raises(wwu_settings.SettingsError) as failure:
        wwu_settings.Settings.from_options(_get({"user": "root", "check_protocol": "smtp"}))
    assert "--wwu-acl-check HOST:PORT" in str(failure.value)
    with pytest.raises(wwu_settings.SettingsError) as failure:
        wwu_settings.Settings.from_options(_get({"user": "root", "p12_encryption": "legacy"}))
    assert "pkcs12" in str(failure.value)
    with pytest.raises(wwu_settings.InvalidValue):
        wwu_settings.option("check-protocol").type("gopher")
    with pytest.raises(wwu_settings.InvalidValue) as failure:
        wwu_settings.option("service").type("nginx")
    assert "Unknown service profile" in str(failure.value)


def test_presets_services_listing(capsys):
    from certbot_wwu import cli
    assert cli.main(["presets", "--services"]) == 0
    out = capsys.readouterr().out
    assert "postgresql" in out and "reload" in out and "combined root 0600" in out
    assert cli.main(["presets", "--services", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {p["name"]: p for p in listed}["tomcat"]["options"]["p12_encryption"] == "modern"
