"""certbot_wwu.renewalconf: only our keys change, configobj reads the result."""
import os
import stat

import configobj
import pytest

from certbot_wwu import renewalconf
from certbot_wwu.errors import LineageError, SettingsError
from certbot_wwu.renewalconf import attach, edit
from tests.conftest import needs_root

# What certbot 5.8 writes (see tests/conftest.py lineage_template), plus a
# comment, odd spacing and a webroot_map subsection that must survive.
CONF = (
    "# renew_before_expiry = 30 days\n"
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
    "  server   =   https://acme.example/dir  \n"
    "# a comment the admin wrote\n"
    "authenticator = webroot\n"
    "webroot_path = /var/www/html,\n"
    "key_type = ecdsa\n"
    "[[webroot_map]]\n"
    "unit.example.org = /var/www/html\n"
)

VALUES = {"user": "svc", "group": "readers", "unit": "web.service", "action": "reload"}


def parse_text(text, tmp_path):
    """Read ``text`` as certbot reads a renewal conf (from a file, utf-8)."""
    path = os.path.join(str(tmp_path), "parse.conf")
    with open(path, "w", newline="") as f:
        f.write(text)
    return configobj.ConfigObj(path, encoding="utf-8", default_encoding="utf-8")


def ours(line):
    return line.startswith("installer =") or line.startswith("wwu_acl_")


# --- edit --------------------------------------------------------------------

def test_edit_changes_only_our_lines():
    new = edit(CONF, VALUES)
    old_lines = CONF.splitlines(True)
    new_lines = new.splitlines(True)
    assert [line for line in new_lines if not ours(line)] == old_lines
    assert [line for line in new_lines if ours(line)] == [
        "installer = wwu-acl\n",
        "wwu_acl_action = reload\n",
        "wwu_acl_group = readers\n",
        "wwu_acl_unit = web.service\n",
        "wwu_acl_user = svc\n",
    ]


def test_edit_puts_keys_in_renewalparams_before_the_subsection(tmp_path):
    conf = parse_text(edit(CONF, VALUES), tmp_path)
    params = conf["renewalparams"]
    assert params["installer"] == "wwu-acl"
    assert params["wwu_acl_user"] == "svc"
    assert params["wwu_acl_group"] == "readers"
    assert params["wwu_acl_unit"] == "web.service"
    assert params["wwu_acl_action"] == "reload"
    # certbot's own values and the subsection are untouched
    assert params["server"] == "https://acme.example/dir"
    assert params["webroot_path"] == ["/var/www/html"]
    assert params["webroot_map"] == {"unit.example.org": "/var/www/html"}
    assert "wwu_acl_user" not in params["webroot_map"]
    assert conf["version"] == "5.8.0"


def test_edit_keeps_comments():
    new = edit(CONF, VALUES)
    for comment in ("# renew_before_expiry = 30 days\n",
                    "# Options used in the renewal process\n",
                    "# a comment the admin wrote\n"):
        assert comment in new.splitlines(True)


def test_edit_replaces_an_existing_installer_and_old_options():
    text = ("[renewalparams]\n"
            "authenticator = standalone\n"
            "installer = nginx\n"
            "wwu_acl_user = old\n"
            "wwu_acl_unit = gone.service\n"
            "server = x\n")
    new = edit(text, {"user": "svc"})
    assert new == ("[renewalparams]\n"
                   "authenticator = standalone\n"
                   "server = x\n"
                   "installer = wwu-acl\n"
                   "wwu_acl_user = svc\n")


def test_edit_adds_a_missing_section(tmp_path):
    text = "version = 5.8.0\ncert = /x/cert.pem"  # and no final newline
    new = edit(text, {"user": "svc"})
    assert new == ("version = 5.8.0\ncert = /x/cert.pem\n"
                   "[renewalparams]\n"
                   "installer = wwu-acl\n"
                   "wwu_acl_user = svc\n")
    conf = parse_text(new, tmp_path)
    assert conf["cert"] == "/x/cert.pem"
    assert conf["renewalparams"]["wwu_acl_user"] == "svc"


def test_edit_of_an_empty_file():
    assert edit("", {"user": "svc"}) == (
        "[renewalparams]\ninstaller = wwu-acl\nwwu_acl_user = svc\n")


def test_edit_keeps_later_sections(tmp_path):
    text = ("version = 1\n"
            "[renewalparams]\n"
            "authenticator = standalone\n"
            "\n"
            "\n"
            "[other]\n"
            "wwu_acl_user = not-ours\n"
            "installer = also-not-ours\n")
    new = edit(text, {"user": "svc"})
    assert new == ("version = 1\n"
                   "[renewalparams]\n"
                   "authenticator = standalone\n"
                   "installer = wwu-acl\n"
                   "wwu_acl_user = svc\n"
                   "\n"
                   "\n"
                   "[other]\n"
                   "wwu_acl_user = not-ours\n"
                   "installer = also-not-ours\n")
    conf = parse_text(new, tmp_path)
    assert conf["other"] == {"wwu_acl_user": "not-ours",
                             "installer": "also-not-ours"}
    assert edit(new, None).count("not-ours") == 2


@pytest.mark.parametrize("value", ["svc,svc2", "a, b", "a,", "web.service,db.socket"])
def test_values_with_commas_are_quoted_and_read_back_as_strings(value, tmp_path):
    new = edit(CONF, {"user": value})
    assert 'wwu_acl_user = "{}"\n'.format(value) in new
    read = parse_text(new, tmp_path)["renewalparams"]["wwu_acl_user"]
    assert isinstance(read, str)
    assert read == value


def test_dashes_in_option_names_become_underscores():
    assert "wwu_acl_key_group = x\n" in edit(CONF, {"key-group": "x"})


def test_detach_removes_only_our_lines(tmp_path):
    attached = edit(CONF, VALUES)
    detached = edit(attached, None)
    assert detached == CONF
    params = parse_text(detached, tmp_path)["renewalparams"]
    assert "installer" not in params
    assert not [k for k in params if k.startswith("wwu_acl_")]


def test_detach_without_our_keys_changes_nothing():
    assert edit(CONF, None) == CONF


def test_edit_is_idempotent():
    once = edit(CONF, VALUES)
    assert edit(once, VALUES) == once
    assert edit(once, dict(VALUES)) == once


@pytest.mark.parametrize("value, char", [
    ("a\nb", "U+000A"), ("svc\n", "U+000A"), ("svc # comment", "'#'"), ("#", "'#'"),
    ('a"b', "'\"'"), ('"svc"', "'\"'"), ("a\tb", "U+0009"), ("a\x7fb", "U+007F"),
    ("a\u2028b", "U+2028"), ("a\x85b", "U+0085")])
def test_unsafe_values_are_a_settings_error_naming_the_character(value, char):
    with pytest.raises(SettingsError) as info:
        edit(CONF, {"group": "g", "user": value})
    message = str(info.value)
    assert message.startswith("--wwu-acl-user ")
    assert "cannot be stored in the renewal configuration: " in message
    assert char in message and "\n" not in message


@pytest.mark.parametrize("value", ["a\rb", "svc\r", "'svc", "'svc'", "a'b"])
def test_values_configobj_cannot_read_back_are_rejected(value, tmp_path):
    # '\r' splits the line for edit() but not for configobj; a leading quote
    # makes the value unreadable for configobj: neither may be written
    with pytest.raises(SettingsError, match="^--wwu-acl-user .* cannot be stored"):
        edit(CONF, {"user": value})
    with pytest.raises(SettingsError, match="^--wwu-acl-user .* cannot be stored"):
        edit(edit(CONF, VALUES), {"user": value})


@pytest.mark.parametrize("option, value, reason", [
    ("copy-to", "/srv/tls#1", "'#' starts a comment"),
    ("copy_to", "/srv/tls ", "trailing space"),
    ("copy_to", " /srv/tls", "leading or trailing space"),
    ("p12_password_file", "/etc/p12 pass'", "quote character"),
    ("p12_password_file", "/etc/%(server)s", "'%(NAME)s' is replaced"),
    ("user", "None", "the Python value None"),
    ("group", "True", "the Python value True"),
    ("copy_to", "/srv/zertifik\u00e4t", "non-ASCII character U+00E4"),
])
def test_edit_refuses_what_certbot_reads_back_differently(option, value, reason):
    with pytest.raises(SettingsError) as info:
        edit(CONF, {option: value})
    message = str(info.value)
    assert message.startswith("--wwu-acl-{} ".format(option.replace("_", "-")))
    assert reason in message and message.endswith(".")


def test_edit_refuses_a_value_that_is_not_text():
    with pytest.raises(SettingsError, match="^--wwu-acl-timeout 5 .* not text"):
        edit(CONF, {"timeout": 5})


@pytest.mark.parametrize("option, value", [
    ("copy_to", "/srv/a,b"), ("copy_to", "/srv/tls,"), ("p12_password_file", "/etc/a, b"),
    ("copy_to", "/srv/100%"), ("copy_to", "/srv/$HOME"), ("copy_to", "/srv/a\\b"),
    ("p12_empty_password", "True")])
def test_commas_and_other_characters_read_back_as_one_string(option, value, tmp_path):
    """A comma is the list separator for configobj: edit() quotes the value,
    and certbot reads back the one string (decided: commas in paths are fine)."""
    params = parse_text(edit(CONF, {option: value}), tmp_path)["renewalparams"]
    assert params["wwu_acl_" + option] == value


def test_section_header_with_a_comment_is_found(tmp_path):
    text = "version = 5.8.0\n[renewalparams]  # edited by hand\nauthenticator = standalone\n"
    assert parse_text(text, tmp_path)["renewalparams"]["authenticator"] == "standalone"
    new = edit(text, {"user": "svc"})
    assert new.count("[renewalparams]") == 1
    assert "[renewalparams]  # edited by hand\n" in new
    params = parse_text(new, tmp_path)["renewalparams"]
    assert params["wwu_acl_user"] == "svc"
    assert params["authenticator"] == "standalone"
    # and detaching gives the hand-edited text back
    assert edit(new, None) == text


# --- attach ------------------------------------------------------------------

@pytest.fixture
def conf_file(tmp_path):
    path = os.path.join(str(tmp_path), "unit.conf")
    with open(path, "w") as f:
        f.write(CONF)
    os.chmod(path, 0o640)
    return path


def read(path):
    with open(path) as f:
        return f.read()


def test_attach_writes_and_keeps_the_mode(conf_file):
    assert attach(conf_file, VALUES) is True
    assert read(conf_file) == edit(CONF, VALUES)
    assert stat.S_IMODE(os.stat(conf_file).st_mode) == 0o640
    # no temporary file left next to it
    assert os.listdir(os.path.dirname(conf_file)) == ["unit.conf"]


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o400])
def test_attach_preserves_other_modes(conf_file, mode):
    os.chmod(conf_file, mode)
    attach(conf_file, VALUES)
    assert stat.S_IMODE(os.stat(conf_file).st_mode) == mode


def test_attach_twice_returns_false_and_leaves_the_file_alone(conf_file):
    assert attach(conf_file, VALUES) is True
    content = read(conf_file)
    inode = os.stat(conf_file).st_ino
    assert attach(conf_file, VALUES) is False
    assert read(conf_file) == content
    assert os.stat(conf_file).st_ino == inode  # not even rewritten


def test_attach_then_detach_restores_the_original(conf_file):
    attach(conf_file, VALUES)
    assert attach(conf_file, None) is True
    assert read(conf_file) == CONF
    assert attach(conf_file, None) is False


def test_attach_missing_file_is_a_lineage_error(tmp_path):
    path = os.path.join(str(tmp_path), "nope.conf")
    with pytest.raises(LineageError, match="Cannot read the renewal configuration"):
        attach(path, VALUES)
    assert not os.path.exists(path)


def test_attach_unsafe_value_leaves_the_file_alone(conf_file):
    with pytest.raises(SettingsError, match="'#' starts a comment"):
        attach(conf_file, {"user": "a#b"})
    assert read(conf_file) == CONF
    assert os.listdir(os.path.dirname(conf_file)) == ["unit.conf"]


def test_attach_unreadable_conf_is_a_lineage_error(conf_file):
    with open(conf_file, "wb") as f:
        f.write(b"[renewalparams]\nauthenticator = standalone \xff\n")
    with pytest.raises(LineageError, match="is not UTF-8 text"):
        attach(conf_file, VALUES)


@needs_root
def test_attach_to_a_real_certbot_conf(lineage_dir):
    path = os.path.join(lineage_dir, "renewal", "unit.conf")
    before = read(path)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert attach(path, {"user": "svc,svc2", "unit": "web.service",
                         "action": "restart"}) is True
    after = read(path)
    assert [line for line in after.splitlines(True) if not ours(line)] == \
        before.splitlines(True)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    conf = configobj.ConfigObj(path, encoding="utf-8", default_encoding="utf-8")
    assert conf["renewalparams"]["installer"] == renewalconf.INSTALLER
    assert conf["renewalparams"]["wwu_acl_user"] == "svc,svc2"
    assert conf["renewalparams"]["authenticator"] == "standalone"
    assert attach(path, {"user": "svc,svc2", "unit": "web.service",
                         "action": "restart"}) is False


def test_stored_values_are_read_without_interpolation(tmp_path):
    """configobj would expand '%(...)s' (and raise on a missing name)."""
    path = tmp_path / "x.conf"
    path.write_text("[renewalparams]\ninstaller = wwu-acl\nwwu_acl_user = %()s\n"
                    "wwu_acl_unit = %(name)s\n")
    installer, values = renewalconf.stored(str(path))
    assert installer == "wwu-acl"
    assert values == {"user": "%()s", "unit": "%(name)s"}


def test_stored_on_a_conf_that_is_not_utf8_is_one_sentence(tmp_path):
    """Found merging status's reader into renewalconf: stored() let the
    UnicodeDecodeError of a Latin-1 conf through (a traceback in 'certbot-wwu
    attach' and the installer); status's copy caught it. One reader now."""
    path = tmp_path / "renewal" / "unit.conf"
    path.parent.mkdir()
    path.write_bytes(b"[renewalparams]\ninstaller = wwu-acl\nwwu_acl_user = m\xfcller\n")
    with pytest.raises(LineageError, match="Cannot parse the renewal configuration"):
        renewalconf.stored(str(path))


def test_param_keys_and_settings_restore_as_certbot_does(tmp_path):
    text = ("version = 2.0\n[renewalparams]\n# wwu_acl_user = x\ninstaller = wwu-acl\n"
            "wwu_acl_user = root\nwwu_acl_copy_to = None\n[[webroot_map]]\na = b\n")
    assert renewalconf.param_keys(text) == ["installer", "wwu_acl_user", "wwu_acl_copy_to"]
    path = tmp_path / "unit.conf"
    path.write_text(text)
    values = renewalconf.params(str(path))
    assert renewalconf.options(values) == {"user": "root", "copy_to": None}
    assert list(renewalconf.settings(values).users) == ["root"]
