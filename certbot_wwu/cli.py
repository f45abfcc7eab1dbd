"""The ``certbot-wwu`` command: presets, proxy environment, renewal timer.

Each subcommand is one ``add_NAME(subparsers)`` function that registers its
parser with ``func=cmd_NAME``, and one handler ``cmd_NAME(args) -> int``; add
new ones to ``SUBCOMMANDS``. Handlers raise WwuError for anything the user
can fix: ``main`` prints it as one line (``certbot-wwu: <sentence>``), exit 1,
without a traceback. Usage mistakes are argparse's (exit 2).
"""
import argparse
import json
import logging
import os
import shlex
import sys
from typing import Any, Callable, List, Optional, Tuple

from certbot_wwu import __version__, presets, timer
from certbot_wwu.errors import WwuError

logger = logging.getLogger(__name__)

PROG = "certbot-wwu"


class UsageError(WwuError):
    """Options that do not fit together."""


def _presets_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--presets-dir", metavar="DIR",
        help="directory of site preset files (default: ${} or {})".format(
            presets.DIR_ENV, presets.DEFAULT_DIR))


def _proxy_options(parser: argparse.ArgumentParser, exclusive: bool) -> None:
    group = parser.add_mutually_exclusive_group() if exclusive else parser
    group.add_argument("--preset", metavar="NAME",
                       help="take the proxy from this preset (see 'presets')")
    group.add_argument("--proxy", metavar="HOST:PORT",
                       help="the HTTP proxy, host:port or http://host:port"
                            + ("" if exclusive else " (overrides the preset's)"))
    parser.add_argument("--no-proxy", metavar="LIST",
                        help="comma-separated hosts, .domains and CIDR ranges "
                             "reached without the proxy (default: the preset's)")
    _presets_dir_option(parser)


def _proxy_choice(args: argparse.Namespace) -> Tuple[Optional[str], Optional[str]]:
    """(proxy, no_proxy) from --preset, --proxy and --no-proxy, normalised."""
    preset = presets.get_preset(args.preset, args.presets_dir) if args.preset else None
    if args.proxy is not None:
        proxy = presets.normalize_proxy(args.proxy)  # type: Optional[str]
    else:
        proxy = preset.proxy if preset else None
    if args.no_proxy is not None:
        no_proxy = presets.normalize_no_proxy(args.no_proxy) or None
    else:
        no_proxy = preset.no_proxy if preset else None
    if args.no_proxy and not proxy:
        raise UsageError("--no-proxy needs a proxy; add --proxy HOST:PORT or a "
                         "--preset that has one.")
    return proxy, no_proxy


# --- presets ----------------------------------------------------------------------

def add_presets(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "presets", help="list the CA presets",
        description="List the built-in and site CA presets: server, EAB, "
                    "e-mail, pre-validation, issuance timeout, proxy.")
    parser.add_argument("--json", action="store_true",
                        help="print JSON (proxy passwords masked)")
    _presets_dir_option(parser)
    parser.set_defaults(func=cmd_presets)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _server_column(preset: presets.Preset) -> str:
    if preset.server:
        return preset.server
    if preset.server_example or preset.server_pattern:
        return preset.server_example or "matching " + preset.server_pattern
    return "(yours: --server URL)"


def cmd_presets(args: argparse.Namespace) -> int:
    found = presets.load_presets(args.presets_dir)
    if args.json:
        print(json.dumps([p.to_dict() for p in found.values()], indent=2))
        return 0
    rows = [("NAME", "SERVER", "EAB", "E-MAIL", "PRE-VALIDATED", "TIMEOUT", "PROXY")]
    for preset in found.values():
        rows.append((preset.name, _server_column(preset), _yes(preset.eab_required),
                     _yes(preset.email_required), _yes(preset.prevalidated),
                     "{} s".format(preset.issuance_timeout)
                     if preset.issuance_timeout else "-",
                     presets.redact_proxy(preset.proxy) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


# --- env --------------------------------------------------------------------------

def add_env(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "env", help="print the proxy environment as shell exports",
        description='Print export lines for the proxy, for eval "$(certbot-wwu '
                    'env --preset wwu)" before running certbot by hand.')
    _proxy_options(parser, exclusive=True)
    parser.set_defaults(func=cmd_env)


def cmd_env(args: argparse.Namespace) -> int:
    if not args.preset and args.proxy is None:
        raise UsageError("Say which proxy to print: give --preset NAME or --proxy "
                         "HOST:PORT.")
    proxy, no_proxy = _proxy_choice(args)
    if not proxy:
        raise UsageError("Preset {} sets no proxy; give --proxy HOST:PORT or "
                         "choose a preset with a proxy (such as wwu).".format(
                             args.preset))
    for key, value in presets.proxy_environment(proxy, no_proxy).items():
        print("export {}={}".format(key, shlex.quote(value)))
    return 0


# --- setup ------------------------------------------------------------------------

def add_setup(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "setup", help="give certbot's renewal timer the proxy",
        description="Write the proxy environment where this distribution's "
                    "renewal timer reads it (EL: /etc/sysconfig/certbot; "
                    "Debian, snap: a systemd drop-in; pip: certbot-wwu's own "
                    "timer). Without a proxy, removes certbot-wwu's settings. "
                    "Running it again changes nothing.")
    _proxy_options(parser, exclusive=False)
    parser.add_argument("--distro", default="auto",
                        choices=("auto",) + timer.DISTROS,
                        help="how certbot is installed (default: auto-detect)")
    parser.add_argument("--root", default="/", metavar="DIR",
                        help="configure the system under DIR, e.g. an image "
                             "(default: /)")
    parser.add_argument("--enable-timer", action="store_true",
                        help="also enable (and on / start) the renewal timer; "
                             "EPEL's certbot does not do that itself")
    parser.set_defaults(func=cmd_setup)


def cmd_setup(args: argparse.Namespace) -> int:
    root = args.root
    if not os.path.isdir(root):
        raise UsageError("--root {} is not a directory; give the root of the "
                         "system to configure.".format(root))
    proxy, no_proxy = _proxy_choice(args)
    env = presets.proxy_environment(proxy, no_proxy)
    distro = timer.detect_distro(root) if args.distro == "auto" else args.distro
    logger.info("Renewal timer: %s (%s)", timer.timer_unit(distro), distro)
    changes = timer.configure(distro, env, root)
    if changes:
        changes += timer.daemon_reload(distro, root)
    if args.enable_timer:
        changes += timer.enable_timer(distro, root)
    for change in changes:
        print(change)
    if not changes:
        print("nothing to change")
    return 0


# --- the command ------------------------------------------------------------------

#: registration functions, in the order of --help
SUBCOMMANDS = [add_presets, add_env, add_setup]  # type: List[Callable[[Any], None]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="CA presets, proxy and renewal timer for certbot with the "
                    "wwu-acl installer.")
    parser.add_argument("--version", action="version",
                        version="{} {}".format(PROG, __version__))
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log what happens to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True  # add_subparsers(required=) needs Python 3.7
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        code = exit_.code
        return 0 if code is None else code if isinstance(code, int) else 2
    logging.basicConfig(format="{}: %(message)s".format(PROG),
                        level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return args.func(args)
    except WwuError as err:
        print("{}: {}".format(PROG, err), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("{}: interrupted".format(PROG), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
