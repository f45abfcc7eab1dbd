"""CA presets and the HTTP proxy certbot should use (DESIGN §7).

A preset bundles what an administrator otherwise copies from a CA's portal or
from the university's recipe: the ACME directory URL (or how a per-account URL
looks), whether EAB and an e-mail address are required, whether the CA hands
out pre-validated authorizations (then ``--standalone`` never binds a port),
how long finalisation may take, and which proxy reaches the CA.

Built-in presets are defined below. Sites add or replace presets with INI
files (``*.conf`` or ``*.ini``, read in name order; hidden files and others
such as ``*.dpkg-old`` are skipped) in ``/etc/certbot-wwu/presets.d/``, or the
directory named by ``CERTBOT_WWU_PRESETS_DIR`` or by the caller::

    [preset lab]
    inherit = harica
    description = Physics lab servers
    proxy = wwwproxy.uni-muenster.de:3128
    no_proxy = .uni-muenster.de

Only sections named ``[preset NAME]`` are read here; every other section
(``[cluster]`` and the like) belongs to other features and is ignored. A site
preset starts from the built-in named by ``inherit``; one that reuses a
built-in's name must say ``override = yes`` and then starts from that
built-in. An empty value (``proxy =``) clears what was inherited.

Proxy values are always written as ``http://host:port``: the seed's bare
``wwwproxy.uni-muenster.de:3128`` breaks on Python >= 3.9 with requests < 2.27
(Debian 11, EL 9, Ubuntu 22.04). SOCKS proxies are refused: requests needs
PySocks for them, which certbot's packages do not ship, so the renewal would
fail at night. ``user:password@`` is accepted (percent-encoded), since some
proxies need it, and is shown as ``user:***@`` everywhere except in the
environment itself.
"""
import ast
import configparser
import ipaddress
import logging
import os
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from certbot_wwu.addresses import host_name
from certbot_wwu.errors import WwuError

logger = logging.getLogger(__name__)

DEFAULT_DIR = "/etc/certbot-wwu/presets.d"
DIR_ENV = "CERTBOT_WWU_PRESETS_DIR"
FILE_SUFFIXES = (".conf", ".ini")

#: both spellings: requests reads the lower-case ones first, curl and other
#: tools in hooks only some of them; ACME traffic needs https_proxy
PROXY_KEYS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
NO_PROXY_KEYS = ("no_proxy", "NO_PROXY")
ENV_KEYS = PROXY_KEYS + NO_PROXY_KEYS

HARICA_PATTERN = (r"https://acme-v02\.harica\.gr/acme/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-"
                  r"[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/directory")
HARICA_EXAMPLE = "https://acme-v02.harica.gr/acme/<uuid>/directory"
WWU_PROXY = "http://wwwproxy.uni-muenster.de:3128"
WWU_NO_PROXY = "localhost,127.0.0.1,::1,uni-muenster.de"
MAX_ISSUANCE_TIMEOUT = 86400

KEYS = ("description", "server", "server_pattern", "server_example",
        "eab_required", "email_required", "prevalidated", "issuance_timeout",
        "proxy", "no_proxy", "inherit", "override")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
#: percent-encoded user info: nothing a shell, systemd or an env file would
#: read differently
_USERINFO = re.compile(r"^[A-Za-z0-9._~%!*+,;=-]+(:[A-Za-z0-9._~%!*+,;=-]*)?\Z")
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
_EXAMPLE_PROXY = "wwwproxy.uni-muenster.de:3128"


class PresetError(WwuError):
    """A preset, a site preset file or a proxy value is not valid."""


class Preset(object):
    """What certbot needs to know about one CA account type (and its site)."""

    def __init__(self, name: str, description: str = "",
                 server: Optional[str] = None,
                 server_pattern: Optional[str] = None,
                 server_example: Optional[str] = None,
                 eab_required: bool = False, email_required: bool = False,
                 prevalidated: bool = False,
                 issuance_timeout: Optional[int] = None,
                 proxy: Optional[str] = None, no_proxy: Optional[str] = None,
                 source: str = "built-in") -> None:
        self.name = name
        self.description = description
        #: fixed directory URL, or None when the user supplies it
        self.server = server
        #: regular expression a supplied URL must match in full, or None
        self.server_pattern = server_pattern
        #: how a supplied URL looks, for people (HARICA_EXAMPLE)
        self.server_example = server_example
        self.eab_required = eab_required
        self.email_required = email_required
        #: authorizations come back valid: no challenge, no port bound
        self.prevalidated = prevalidated
        #: recommended --issuance-timeout in seconds (certbot >= 1.22)
        self.issuance_timeout = issuance_timeout
        self.proxy = proxy
        self.no_proxy = no_proxy
        #: "built-in" or the file that defined it
        self.source = source

    def copy(self, name: str, source: str) -> "Preset":
        values = dict(vars(self))
        values.update(name=name, source=source)
        return Preset(**values)

    def server_url(self, supplied: Optional[str] = None) -> str:
        """The directory URL to use; ``supplied`` is what the user gave.

        A fixed server accepts the same URL (up to a trailing slash) or none;
        a different one is refused rather than silently ignored, because an
        account registered at the wrong CA only fails much later.
        """
        if supplied is not None and not supplied.strip():
            supplied = None
        if self.server:
            same = supplied is None or (
                supplied.strip().rstrip("/") == self.server.rstrip("/"))
            if same:
                return self.server
            raise PresetError(
                "Preset {} always uses {}, not {}; drop the server URL or "
                "choose a preset that takes one (harica, wwu).".format(
                    self.name, self.server, supplied.strip()))
        if supplied is None:
            raise PresetError(
                "Preset {} needs the ACME directory URL of your account{}; "
                "pass it with --server.".format(
                    self.name, " ({})".format(self.server_example)
                    if self.server_example else " from your CA's portal"))
        try:
            url = _https_url(supplied)
        except ValueError as err:
            raise PresetError("Server URL {}.".format(err))
        if self.server_pattern and not re.fullmatch(self.server_pattern, url):
            raise PresetError(
                "{!r} is not a {} ACME directory URL; it must look like {}, as "
                "shown in your CA's portal.".format(
                    url, self.name, self.server_example or self.server_pattern))
        return url

    def to_dict(self, secrets: bool = False) -> Dict[str, Any]:
        """For JSON; the proxy password is masked unless ``secrets``."""
        return OrderedDict([
            ("name", self.name),
            ("description", self.description),
            ("server", self.server),
            ("server_pattern", self.server_pattern),
            ("server_example", self.server_example),
            ("eab_required", self.eab_required),
            ("email_required", self.email_required),
            ("prevalidated", self.prevalidated),
            ("issuance_timeout", self.issuance_timeout),
            ("proxy", self.proxy if secrets else redact_proxy(self.proxy)),
            ("no_proxy", self.no_proxy),
            ("source", self.source),
        ])

    def __repr__(self) -> str:
        return "Preset({!r}, server={!r})".format(self.name, self.server)


def _sectigo(name: str, path: str, kind: str, prevalidated: bool) -> Preset:
    return Preset(
        name, "Sectigo {}, GEANT TCS until 2025-01-10: EAB from the portal, "
              "e-mail recommended, slow finalisation{}".format(
                  kind, "" if prevalidated else
                  "; a challenge is needed unless the domain is pre-validated"),
        server="https://acme.sectigo.com/v2/" + path, eab_required=True,
        email_required=False, prevalidated=prevalidated, issuance_timeout=300)


def builtin_presets() -> List[Preset]:
    """Fresh objects on every call, so a caller cannot change the originals."""
    return [
        _sectigo("sectigo-ov", "OV", "OV (the original WWU recipe's server)", True),
        _sectigo("sectigo-ev", "EV", "EV", True),
        _sectigo("sectigo-dv", "DV", "DV", False),
        _sectigo("sectigo-geantov", "GEANTOV", "GEANT OV", True),
        Preset("harica", "HARICA (GEANT TCS since 2025): per-account directory "
                         "URL, EAB key id and HMAC key from cm.harica.gr; "
                         "Enterprise OV accounts are pre-validated, DV and "
                         "personal accounts need a challenge",
               server_pattern=HARICA_PATTERN, server_example=HARICA_EXAMPLE,
               eab_required=True, email_required=True, prevalidated=True),
        Preset("letsencrypt", "Let's Encrypt; challenges, no EAB",
               server="https://acme-v02.api.letsencrypt.org/directory"),
        Preset("letsencrypt-staging", "Let's Encrypt staging (untrusted test "
                                      "certificates); challenges, no EAB",
               server="https://acme-staging-v02.api.letsencrypt.org/directory"),
        Preset("wwu", "University of Muenster: server URL, EAB key id and HMAC "
                      "key from the IT portal's ACME-ID; wwwproxy for hosts on "
                      "private addresses",
               eab_required=True, email_required=True, prevalidated=True,
               issuance_timeout=300, proxy=WWU_PROXY, no_proxy=WWU_NO_PROXY),
    ]


# --- values -------------------------------------------------------------------
# The _check functions raise ValueError with a fragment ("'x' has no port;
# write ...") that the public functions and the file reader put into a sentence.

def redact_proxy(value: Optional[str]) -> Optional[str]:
    """``http://user:***@host:port``: safe for logs, tables and errors."""
    if not value or "@" not in value:
        return value
    head, _, rest = value.rpartition("@")
    scheme, sep, userinfo = head.rpartition("://")
    return "{}{}{}:***@{}".format(scheme, sep, userinfo.split(":", 1)[0], rest)


def _check_proxy(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is empty; write host:port, e.g. " + _EXAMPLE_PROXY)
    value = value.strip()
    shown = repr(redact_proxy(value))
    if _BAD_CHARS.search(value):
        raise ValueError("{} contains spaces or control characters; write "
                         "host:port or http://host:port".format(shown))
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "http", value
    scheme = scheme.lower()
    if scheme.startswith("socks"):
        raise ValueError("{} is a SOCKS proxy, which certbot can only use with "
                         "PySocks installed; give the HTTP proxy as "
                         "http://host:port".format(shown))
    if scheme not in ("http", "https"):
        raise ValueError("{} has the scheme {!r}; certbot takes http:// or "
                         "https:// proxies, e.g. http://{}".format(
                             shown, scheme, _EXAMPLE_PROXY))
    if rest.endswith("/"):
        rest = rest[:-1]
    if any(c in rest for c in "/?#"):
        raise ValueError("{} has a path; give only host:port".format(shown))
    userinfo, at, hostport = rest.rpartition("@")
    if at and not _USERINFO.match(userinfo):
        raise ValueError("{} has user information that is not user:password "
                         "with special characters percent-encoded (@ as %40)".format(
                             shown))
    if hostport.startswith("["):
        end = hostport.find("]")
        host, after = hostport[1:end], hostport[end + 1:]
        try:
            if end < 0 or (after and not after.startswith(":")):
                raise ValueError(hostport)
            host = "[{}]".format(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError("{} has an invalid IPv6 address; write "
                             "[address]:port".format(shown))
        colon, port = after[:1], after[1:]
    else:
        host, colon, port = hostport.rpartition(":")
        if not colon:
            host = hostport
        if ":" in host:
            raise ValueError("{} looks like an IPv6 address without brackets; "
                             "write http://[address]:port".format(shown))
        if not host:
            raise ValueError("{} has no host; write host:port, e.g. {}".format(
                shown, _EXAMPLE_PROXY))
        try:
            host = host_name(host)
        except ValueError:
            raise ValueError("{} has an invalid host name {!r}; write host:port, "
                             "e.g. {}".format(shown, host, _EXAMPLE_PROXY))
    if not colon or not port:
        raise ValueError("{} has no port; write host:port, e.g. {}".format(
            shown, _EXAMPLE_PROXY))
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("{} has the port {!r}, which is not a number from 1 to "
                         "65535".format(shown, port))
    return "{}://{}{}:{}".format(scheme, userinfo + "@" if at else "", host,
                                 int(port))


def normalize_proxy(value: str) -> str:
    """``host:port`` -> ``http://host:port``; PresetError for anything else."""
    try:
        return _check_proxy(value)
    except ValueError as err:
        raise PresetError("Proxy {}.".format(err))


def _no_proxy_entry(entry: str) -> str:
    if entry == "*":
        return entry
    if entry.startswith("*."):
        entry = entry[1:]  # nobody matches wildcards; a leading dot means that
    if "://" in entry:
        raise ValueError("{!r} is a URL; list host names, domains, addresses or "
                         "CIDR ranges".format(entry))
    if "/" in entry:
        try:
            return str(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError("{!r} is not a CIDR range like 10.0.0.0/8".format(entry))
    try:
        return str(ipaddress.ip_address(entry.strip("[]")))
    except ValueError:
        pass
    host, colon, port = entry.rpartition(":")
    if not colon:
        host, port = entry, ""
    elif not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("{!r} has an invalid port".format(entry))
    dot = "." if host.startswith(".") else ""
    try:
        host = host_name(host[len(dot):])
    except ValueError:
        raise ValueError("{!r} is not a host name, domain, address or CIDR "
                         "range".format(entry))
    return "{}{}{}".format(dot, host, ":" + str(int(port)) if port else "")


def _check_no_proxy(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("{!r} is not a comma-separated list".format(value))
    entries = []  # type: List[str]
    for entry in re.split(r"[,\s]+", value.strip().lower()):
        if entry:
            entry = _no_proxy_entry(entry)
            if entry not in entries:
                entries.append(entry)
    return ",".join(entries)


def normalize_no_proxy(value: str) -> str:
    """A comma list of hosts, .domains, addresses and CIDRs ('' if none)."""
    try:
        return _check_no_proxy(value)
    except ValueError as err:
        raise PresetError("No-proxy entry {}.".format(err))


def proxy_environment(proxy: Optional[str],
                      no_proxy: Optional[str] = None) -> Dict[str, str]:
    """The proxy variables for certbot (requests) and the tools its hooks
    run, as a new dict; nothing in os.environ changes (status's
    proxy_variables_set_to applies such a dict to this process)."""
    if not proxy:
        if no_proxy:
            raise PresetError("A no-proxy list without a proxy means nothing; "
                              "give the proxy as well or leave the list out.")
        return OrderedDict()
    proxy = normalize_proxy(proxy)
    env = OrderedDict((key, proxy) for key in PROXY_KEYS)  # type: Dict[str, str]
    no_proxy = normalize_no_proxy(no_proxy or "")
    if no_proxy:
        env.update((key, no_proxy) for key in NO_PROXY_KEYS)
    return env


def _https_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is empty; give the https:// URL of the ACME directory")
    url = value.strip()
    if _BAD_CHARS.search(url):
        raise ValueError("{!r} contains spaces or control characters".format(url))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("{!r} is not a valid URL".format(url))
    if parts.scheme.lower() != "https":
        raise ValueError("{!r} is not an https:// URL; ACME directories are "
                         "always https".format(url))
    if not parts.hostname or "@" in parts.netloc or parts.fragment or port == 0:
        raise ValueError("{!r} is not a plain https://host/path URL".format(url))
    return url


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError("{!r} is not a valid regular expression ({})".format(
            value, err))
    return value


def parse_boolean(value: str) -> bool:
    """yes/no, true/false, on/off, 1/0 as site files write them."""
    try:
        return configparser.ConfigParser.BOOLEAN_STATES[value.strip().lower()]
    except KeyError:
        raise ValueError("{!r} is not yes or no".format(value))


def _check_timeout(value: str) -> int:
    seconds = int(value) if value.strip().isdigit() else 0
    if not 0 < seconds <= MAX_ISSUANCE_TIMEOUT:
        raise ValueError("{!r} is not a number of seconds from 1 to {}".format(
            value, MAX_ISSUANCE_TIMEOUT))
    return seconds


# --- site preset files ----------------------------------------------------------

def presets_dir(directory: Optional[str] = None) -> Tuple[str, bool]:
    """The directory to read and whether someone chose it (then it must exist)."""
    if directory:
        return directory, True
    if os.environ.get(DIR_ENV):
        return os.environ[DIR_ENV], True
    return DEFAULT_DIR, False


def presets_dir_option(parser: Any, what: str = "site preset files") -> None:
    """``--presets-dir`` for a certbot-wwu command, with the default spelled
    out."""
    parser.add_argument("--presets-dir", metavar="DIR",
                        help="directory of {} (default: ${} or {})".format(
                            what, DIR_ENV, DEFAULT_DIR))


def load_presets(directory: Optional[str] = None) -> Dict[str, Preset]:
    """Built-in presets, then those of the site files, by name."""
    presets = OrderedDict((p.name, p) for p in builtin_presets())
    builtins = dict(presets)
    defined_in = {}  # type: Dict[str, str]
    for filepath in site_files(directory):
        for preset in _read_file(filepath, builtins):
            if preset.name in defined_in:
                raise PresetError(
                    "Preset {} is defined in both {} and {}; remove one of "
                    "them.".format(preset.name, defined_in[preset.name], filepath))
            defined_in[preset.name] = filepath
            presets[preset.name] = preset
            logger.debug("Preset %s from %s", preset.name, filepath)
    return presets


def site_files(directory: Optional[str] = None) -> List[str]:
    """The site files to read, in name order (none if the default
    directory does not exist)."""
    path, chosen = presets_dir(directory)
    if not os.path.isdir(path):
        if chosen:
            raise PresetError(
                "The presets directory {} does not exist; create it or name the "
                "right one (--presets-dir or {}).".format(path, DIR_ENV))
        return []
    try:
        names = sorted(os.listdir(path))
    except OSError as err:
        raise PresetError("Cannot list the presets directory {}: {}; check its "
                          "permissions.".format(path, err.strerror or err))
    return [os.path.join(path, filename) for filename in names
            if not filename.startswith(".") and filename.endswith(FILE_SUFFIXES)]


def get_preset(name: str, directory: Optional[str] = None) -> Preset:
    presets = load_presets(directory)
    try:
        return presets[name]
    except KeyError:
        raise PresetError("Unknown preset {!r}; choose one of {} (or define it in "
                          "{}).".format(name, ", ".join(presets),
                                        presets_dir(directory)[0]))


def _read_file(path: str, builtins: Dict[str, Preset]) -> List[Preset]:
    return [_preset(path, section, name, values, builtins)
            for section, name, values in _sections(path, "preset")]


def _sections(path: str, kind: str) -> List[Tuple[str, str, Any]]:
    """(section, name, values) of every ``[KIND NAME]`` section of ``path``."""
    # no [DEFAULT] magic: its keys would leak into every section
    parser = configparser.ConfigParser(interpolation=None, strict=True,
                                       delimiters=("=",),
                                       default_section="\0 no default")
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f, source=path)
    except OSError as err:
        raise PresetError("Cannot read the presets file {}: {}; check its "
                          "permissions.".format(path, err.strerror or err))
    except UnicodeDecodeError:
        raise PresetError("The presets file {} is not UTF-8 text; save it as "
                          "UTF-8.".format(path))
    except configparser.Error as err:
        raise PresetError("In {}, {}; fix that line.".format(path, ini_problem(err)))
    found = []  # type: List[Tuple[str, str, Any]]
    names = {}  # type: Dict[str, str]
    for section in parser.sections():
        words = section.split()
        if not words or words[0].lower() != kind:
            continue  # e.g. [cluster]: read by other features
        if len(words) != 2 or not _NAME.match(words[1]):
            raise PresetError(
                "In {}, section [{}] is not [{} NAME] with one name of "
                "letters, digits, '.', '_' and '-'; rename it.".format(
                    path, section, kind))
        name = words[1]
        if name in names:
            raise PresetError("In {}, sections [{}] and [{}] define the same "
                              "{}; remove one.".format(
                                  path, names[name], section,
                                  "preset" if kind == "preset" else "service profile"))
        names[name] = section
        found.append((section, name, parser[section]))
    return found


def ini_problem(err: configparser.Error) -> str:
    """configparser's multi-line messages as one clause."""
    if isinstance(err, configparser.DuplicateOptionError):
        return "line {}: key {} appears twice in section [{}]".format(
            err.lineno, err.option, err.section)
    if isinstance(err, configparser.DuplicateSectionError):
        return "line {}: section [{}] appears twice".format(err.lineno, err.section)
    if isinstance(err, configparser.MissingSectionHeaderError):
        return "line {}: {!r} comes before the first [section]".format(
            err.lineno, err.line.strip())
    if isinstance(err, configparser.ParsingError) and err.errors:
        lineno, line = err.errors[0]
        try:
            line = ast.literal_eval(line)  # configparser keeps repr(line)
        except (ValueError, SyntaxError):
            pass
        return "line {}: {!r} is neither [section] nor key = value".format(
            lineno, line.strip())
    return "not a valid INI file ({})".format(" ".join(str(err).split()))


def _preset(path: str, section: str, name: str, values: Any,
            builtins: Dict[str, Preset]) -> Preset:
    def fail(key: str, message: str) -> PresetError:
        return PresetError("In {}, section [{}], key {}: {}.".format(
            path, section, key, message))

    for key in values:
        if key not in KEYS:
            raise fail(key, "unknown key; use {}".format(", ".join(KEYS)))
    try:
        override = parse_boolean(values.get("override", "no"))
    except ValueError as err:
        raise fail("override", str(err))
    if name in builtins and not override:
        raise PresetError(
            "In {}, section [{}]: {} is a built-in preset; add 'override = yes' "
            "to replace it or choose another name.".format(path, section, name))
    base = builtins.get(name, Preset(name))
    inherit = values.get("inherit", "").strip()
    if inherit:
        if inherit not in builtins:
            raise fail("inherit", "{!r} is not a built-in preset; use one of {}".format(
                inherit, ", ".join(builtins)))
        base = builtins[inherit]
    preset = base.copy(name, path)
    checks = (("server", _https_url), ("server_pattern", _check_regex),
              ("server_example", str), ("eab_required", parse_boolean),
              ("email_required", parse_boolean), ("prevalidated", parse_boolean),
              ("issuance_timeout", _check_timeout), ("proxy", _check_proxy),
              ("no_proxy", _check_no_proxy))
    for key, check in checks:
        if key not in values:
            continue
        raw = values[key].strip()
        flag = key in ("eab_required", "email_required", "prevalidated")
        try:
            value = check(raw) if raw or flag else None
        except ValueError as err:
            raise fail(key, str(err))
        setattr(preset, key, value if flag else value or None)
    if "description" in values:
        preset.description = values["description"].strip()
    if preset.server and preset.server_pattern and not re.fullmatch(
            preset.server_pattern, preset.server):
        raise fail("server", "{!r} does not match the server_pattern {!r}".format(
            preset.server, preset.server_pattern))
    if preset.no_proxy and not preset.proxy:
        raise fail("no_proxy", "the preset has no proxy; add proxy = host:port or "
                               "remove no_proxy")
    return preset


# --- service profiles -------------------------------------------------------------
# A service profile is what an administrator otherwise learns from a daemon's
# documentation and its Debian package (DESIGN §12): the account it reads the
# key as, the unit, the action that really makes it load a new certificate,
# the protocol a check must speak, and the copy formats and key modes it
# accepts. Its values are defaults of the installer's options; options given
# explicitly win. Sites add or replace profiles in the presets files:
#
#     [service pg-replica]
#     inherit = postgresql
#     unit = postgresql@15-replica.service

#: profile keys that are defaults of the installer's options (the settings'
#: option names with "_")
PROFILE_OPTIONS = ("user", "group", "unit", "action", "check_protocol",
                   "copy_owner", "copy_mode", "copy_formats", "p12_encryption")
#: of those, what applies only in ACL mode and only to copies
_ACL_ONLY = ("user", "group")
_COPY_ONLY = ("copy_owner", "copy_mode", "copy_formats", "p12_encryption")
SERVICE_KEYS = ("description", "inherit", "override", "mode", "reads_as_root",
                "strict_key_mode") + PROFILE_OPTIONS
MODES = ("acl", "copy")
#: Debian's clusters: /etc/postgresql/VERSION/CLUSTER/postgresql.conf
PG_CLUSTERS = "/etc/postgresql/*/*/postgresql.conf"


class ServiceProfile(object):
    """Defaults and rules for one kind of daemon (DESIGN §12)."""

    def __init__(self, name: str, description: str = "", mode: str = "acl",
                 reads_as_root: bool = False, strict_key_mode: bool = False,
                 defaults: Optional[Dict[str, str]] = None,
                 source: str = "built-in") -> None:
        self.name = name
        self.description = description
        #: "acl": grant the live files; "copy": the daemon needs copies
        #: (--wwu-acl-copy-to is then required)
        self.mode = mode
        #: the daemon opens the key as root before it drops privileges, so
        #: nobody needs a grant (postfix, dovecot, haproxy)
        self.reads_as_root = reads_as_root
        #: the daemon refuses a key its own user owns with group or other
        #: bits (PostgreSQL: "has group or world access")
        self.strict_key_mode = strict_key_mode
        #: option key -> value as stored in a renewal conf
        self.defaults = OrderedDict(defaults or {})  # type: Dict[str, str]
        self.source = source

    def copy(self, name: str, source: str) -> "ServiceProfile":
        return ServiceProfile(name, self.description, self.mode, self.reads_as_root,
                              self.strict_key_mode, dict(self.defaults), source)

    def default(self, key: str, copying: bool) -> Optional[str]:
        """The profile's value for option ``key`` (None: it sets none).
        Grants are ACL mode's, owner, modes and formats the copies'."""
        if key in (_ACL_ONLY if copying else _COPY_ONLY):
            return None
        return self.defaults.get(key) or None

    def key_mode_problem(self, owner: str, mode: int) -> Optional[str]:
        """Why the daemon would refuse a key copy owned by ``owner`` with
        ``mode``, as a clause; None if it accepts it."""
        if self.strict_key_mode and owner != "root" and mode & 0o077:
            return ("{} refuses a private key that its own user owns with group "
                    "or other access (its log says \"has group or world "
                    "access\")".format(self.name))
        return None

    def to_dict(self) -> Dict[str, Any]:
        return OrderedDict([
            ("name", self.name), ("description", self.description),
            ("mode", self.mode), ("reads_as_root", self.reads_as_root),
            ("strict_key_mode", self.strict_key_mode),
            ("options", OrderedDict(self.defaults)), ("source", self.source)])

    def __repr__(self) -> str:
        return "ServiceProfile({!r}, {!r})".format(self.name, dict(self.defaults))


def postgresql_unit(pattern: str = PG_CLUSTERS) -> str:
    """``postgresql@15-main.service`` when this host has one Debian cluster;
    else ``postgresql.service``, which reloads every cluster on Debian
    (ReloadPropagatedFrom) and is the server's unit on EL and Fedora."""
    import glob
    clusters = sorted(glob.glob(pattern))
    if len(clusters) != 1:
        return "postgresql.service"
    cluster_dir = os.path.dirname(clusters[0])
    return "postgresql@{}-{}.service".format(
        os.path.basename(os.path.dirname(cluster_dir)), os.path.basename(cluster_dir))


def _profile(name: str, description: str, mode: str = "acl", **values: Any
             ) -> ServiceProfile:
    flags = {key: values.pop(key) for key in ("reads_as_root", "strict_key_mode")
             if key in values}
    return ServiceProfile(name, description, mode, defaults=values, **flags)


def builtin_services() -> List[ServiceProfile]:
    """Fresh objects on every call. Each one's rules are proven against the
    Debian 12 package in tests/services (docs/services)."""
    return [
        _profile("tls-server", "any daemon that rereads its certificate when "
                               "restarted; give --wwu-acl-user and --wwu-acl-unit",
                 action="restart", check_protocol="tls"),
        _profile("postgresql", "PostgreSQL: reads the key as postgres, reloads it on "
                               "SIGHUP, refuses a postgres-owned key with group "
                               "bits, TLS after its SSLRequest",
                 strict_key_mode=True, user="postgres", unit=postgresql_unit(),
                 action="reload", check_protocol="postgres",
                 copy_owner="postgres", copy_mode="0600"),
        _profile("mosquitto", "Mosquitto 2: reads the files as mosquitto and "
                              "reloads them on SIGHUP",
                 user="mosquitto", unit="mosquitto.service", action="reload",
                 check_protocol="tls", copy_owner="mosquitto", copy_mode="0600"),
        _profile("redis", "Redis (tls-port): reads the files as redis, at start "
                          "only (restart)",
                 user="redis", unit="redis-server.service", action="restart",
                 check_protocol="tls", copy_owner="redis", copy_mode="0600"),
        _profile("haproxy", "HAProxy: one combined PEM (key and full chain), read "
                            "as root by the master; reload (SIGUSR2) loads it",
                 mode="copy", reads_as_root=True, unit="haproxy.service",
                 action="reload", check_protocol="tls", copy_owner="root",
                 copy_mode="0600", copy_formats="combined"),
        _profile("tomcat", "Tomcat 10 / Java 17: a PKCS#12 store (AES-256, "
                           "PBES2) owned by tomcat; only a restart loads it",
                 mode="copy", unit="tomcat10.service", action="restart",
                 check_protocol="tls", copy_owner="tomcat", copy_mode="0600",
                 copy_formats="pkcs12", p12_encryption="modern"),
        _profile("tomcat-legacy-java", "Tomcat on a JRE older than 8u301 or "
                                       "11.0.12: PKCS#12 with 3DES and a SHA-1 MAC",
                 mode="copy", unit="tomcat.service", action="restart",
                 check_protocol="tls", copy_owner="tomcat", copy_mode="0600",
                 copy_formats="pkcs12", p12_encryption="legacy"),
        _profile("slapd", "OpenLDAP slapd: reads the files as openldap at start "
                          "(restart); StartTLS on the ldap port",
                 user="openldap", unit="slapd.service", action="restart",
                 check_protocol="ldap", copy_owner="openldap", copy_mode="0600"),
        _profile("prosody", "Prosody: reads the files as prosody and reloads "
                            "them on SIGHUP; STARTTLS on the client port",
                 user="prosody", unit="prosody.service", action="reload",
                 check_protocol="xmpp", copy_owner="prosody", copy_mode="0600"),
        _profile("dovecot", "Dovecot: reads the key as root, reload loads it; "
                            "STARTTLS on the IMAP port",
                 reads_as_root=True, unit="dovecot.service", action="reload",
                 check_protocol="imap", copy_owner="root", copy_mode="0600"),
        _profile("postfix", "Postfix: reads the key as root, reload loads it; "
                            "STARTTLS on the SMTP port",
                 reads_as_root=True, unit="postfix.service", action="reload",
                 check_protocol="smtp", copy_owner="root", copy_mode="0600"),
    ]


def _check_option(key: str, raw: str) -> str:
    """A profile's option value, checked by the option's own rules (syntax
    only: the accounts are looked up when a deployment uses them) and as
    storable in a renewal conf; ValueError with the settings' sentence."""
    from certbot_wwu import settings
    try:
        value = settings.profile_value(key, raw)
        settings.storable(key, value)
    except settings.SettingsError as err:
        raise ValueError(str(err).rstrip("."))
    return value


def load_services(directory: Optional[str] = None) -> Dict[str, ServiceProfile]:
    """Built-in service profiles, then those of the site files, by name."""
    services = OrderedDict((p.name, p) for p in builtin_services())
    builtins = dict(services)
    defined_in = {}  # type: Dict[str, str]
    for filepath in site_files(directory):
        for section, name, values in _sections(filepath, "service"):
            if name in defined_in:
                raise PresetError(
                    "Service profile {} is defined in both {} and {}; remove one "
                    "of them.".format(name, defined_in[name], filepath))
            defined_in[name] = filepath
            services[name] = _service(filepath, section, name, values, builtins)
            logger.debug("Service profile %s from %s", name, filepath)
    return services


def get_service(name: str, directory: Optional[str] = None) -> ServiceProfile:
    services = load_services(directory)
    try:
        return services[name]
    except KeyError:
        raise PresetError("Unknown service profile {!r}; choose one of {} (or "
                          "define it in {}).".format(
                              name, ", ".join(services), presets_dir(directory)[0]))


def _service(path: str, section: str, name: str, values: Any,
             builtins: Dict[str, ServiceProfile]) -> ServiceProfile:
    def fail(key: str, message: str) -> PresetError:
        return PresetError("In {}, section [{}], key {}: {}.".format(
            path, section, key, message))

    for key in values:
        if key not in SERVICE_KEYS:
            raise fail(key, "unknown key; use {}".format(", ".join(SERVICE_KEYS)))
    flags = {}  # type: Dict[str, bool]
    for key in ("override", "reads_as_root", "strict_key_mode"):
        if key in values:
            try:
                flags[key] = parse_boolean(values[key])
            except ValueError as err:
                raise fail(key, str(err))
    if name in builtins and not flags.get("override"):
        raise PresetError(
            "In {}, section [{}]: {} is a built-in service profile; add 'override "
            "= yes' to replace it or choose another name.".format(path, section, name))
    base = builtins.get(name, ServiceProfile(name))
    inherit = values.get("inherit", "").strip()
    if inherit:
        if inherit not in builtins:
            raise fail("inherit", "{!r} is not a built-in service profile; use one "
                                  "of {}".format(inherit, ", ".join(builtins)))
        base = builtins[inherit]
    profile = base.copy(name, path)
    for key in ("reads_as_root", "strict_key_mode"):
        if key in flags:
            setattr(profile, key, flags[key])
    if "description" in values:
        profile.description = values["description"].strip()
    if "mode" in values:
        mode = values["mode"].strip().lower()
        if mode not in MODES:
            raise fail("mode", "{!r} is neither acl nor copy".format(values["mode"]))
        profile.mode = mode
    for key in PROFILE_OPTIONS:
        if key not in values:
            continue
        raw = values[key].strip()
        if not raw:
            profile.defaults.pop(key, None)  # an empty value clears the inherited
            continue
        try:
            profile.defaults[key] = _check_option(key, raw)
        except ValueError as err:
            raise fail(key, str(err))
    return profile
