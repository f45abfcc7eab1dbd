"""certbot as installed on this host: where its command is, which
directories it uses, and the command-line options that name them.

Every certbot-wwu command that works on certbot's tree takes ``--config-dir``,
``--work-dir`` and ``--logs-dir`` from ``certbot_dir_options``. Their defaults
are certbot's own: what certbot's ``cli.ini`` files set (``/etc/letsencrypt/
cli.ini``, then ``$XDG_CONFIG_HOME/letsencrypt/cli.ini``, the later winning,
read with certbot's own parser, configargparse), else certbot's built-in
directories. A host whose cli.ini moves the config dir then needs no option
for any command.
"""
import argparse
import logging
import os
import shutil
import sys
from typing import Dict, Optional, Sequence, Type

from certbot_wwu.errors import WwuError

logger = logging.getLogger(__name__)

#: certbot's defaults on Linux (certbot.compat.misc.get_default_folder)
DEFAULT_CONFIG_DIR = "/etc/letsencrypt"
DEFAULT_WORK_DIR = "/var/lib/letsencrypt"
DEFAULT_LOGS_DIR = "/var/log/letsencrypt"
#: option, certbot's default, what it is
CERTBOT_DIRS = (("config-dir", DEFAULT_CONFIG_DIR, "certbot's configuration directory"),
                ("work-dir", DEFAULT_WORK_DIR, "certbot's working directory"),
                ("logs-dir", DEFAULT_LOGS_DIR, "certbot's log directory"))
#: where certbot reads default options, later files winning (constants.py)
CERTBOT_CLI_INI = os.path.join(DEFAULT_CONFIG_DIR, "cli.ini")
#: a pip install's certbot when PATH does not say (certbot's instructions
#: use /opt/certbot)
CERTBOT_PATHS = ("/usr/local/bin/certbot", "/usr/bin/certbot",
                 "/opt/certbot/bin/certbot")


def cli_ini_files() -> Sequence[str]:
    """certbot's cli.ini files, in the order certbot reads them."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return (CERTBOT_CLI_INI, os.path.join(xdg, "letsencrypt", "cli.ini"))


def _ini_values(path: str) -> Dict[str, str]:
    """The settings of one cli.ini, parsed as certbot parses it."""
    if not os.path.isfile(path):
        return {}
    try:
        import configargparse  # certbot's dependency: its own cli.ini parser
    except ImportError:  # certbot-wwu --help or --version without certbot
        logger.debug("Not reading %s: configargparse (certbot's) is missing", path)
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return dict(configargparse.DefaultConfigFileParser().parse(f))
    except (OSError, UnicodeDecodeError, configargparse.ConfigFileParserException) as err:
        logger.debug("Not reading %s: %s", path, err)
        return {}


def default_dirs() -> Dict[str, str]:
    """{option: directory} for config-dir, work-dir and logs-dir, as certbot
    would choose them without options on its command line."""
    found = {name: default for name, default, _ in CERTBOT_DIRS}
    for path in cli_ini_files():
        values = _ini_values(path)
        for name in found:
            if isinstance(values.get(name), str) and values[name].strip():
                found[name] = os.path.expanduser(values[name].strip())
    return found


def certbot_dir_options(parser: argparse.ArgumentParser,
                        names: Sequence[str] = ("config-dir", "work-dir", "logs-dir")
                        ) -> None:
    """--config-dir, --work-dir, --logs-dir with certbot's meanings and
    defaults (those of certbot's cli.ini where it sets them)."""
    defaults = default_dirs()
    for name, builtin, what in CERTBOT_DIRS:
        if name in names:
            parser.add_argument(
                "--" + name, default=defaults[name], metavar="DIR",
                help="{} (default: {}{})".format(
                    what, defaults[name],
                    "" if defaults[name] == builtin else ", from certbot's cli.ini"))


def find_certbot(path: Optional[str] = None, root: str = "/",
                 error: Type[WwuError] = WwuError,
                 remedy: str = ", or give its path with --certbot PATH") -> str:
    """The certbot to run: ``path`` if given, else the one next to this
    Python (the one this package's plugin is installed for), on PATH or in
    CERTBOT_PATHS; under another ``root`` (an image) only CERTBOT_PATHS, as
    a path on that system. ``error`` and ``remedy`` are the caller's."""
    if path:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.abspath(path)
        raise error("{} is not an executable certbot; give the right path with "
                    "--certbot PATH.".format(path))
    live = os.path.realpath(root) == "/"
    if live:
        for candidate in (os.path.join(os.path.dirname(sys.executable), "certbot"),
                          shutil.which("certbot")):
            if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return os.path.abspath(candidate)
    for candidate in CERTBOT_PATHS:
        real = os.path.join(root, candidate.lstrip("/"))
        if os.path.isfile(real) and os.access(real, os.X_OK):
            return candidate
    where = ("next to {}, on PATH or in {}".format(sys.executable, ", ".join(CERTBOT_PATHS))
             if live else "in {} under {}".format(", ".join(CERTBOT_PATHS), root))
    raise error("No certbot {}; install certbot (pip install certbot, or the "
                "distribution's package){}.".format(where, remedy))
