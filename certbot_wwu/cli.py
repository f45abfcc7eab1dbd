"""The ``certbot-wwu`` command: presets, proxy environment, renewal timer.

Each subcommand is one ``add_NAME(subparsers)`` function that registers its
parser with ``func=cmd_NAME``, and one handler ``cmd_NAME(args) -> int``; add
new ones to ``SUBCOMMANDS``. Handlers raise WwuError for anything the user
can fix: ``main`` prints it as one line (``certbot-wwu: <sentence>``), exit 1,
without a traceback; any other exception also becomes one line and exit 1
(where it happened only with --verbose). Usage mistakes are argparse's (exit 2).
"""
import argparse
import json
import logging
import os
import shlex
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

from certbot_wwu import (__version__, presets, register, renewalconf, settings, status,
                         timer)
from certbot_wwu.cluster_cli import add_cluster
from certbot_wwu.errors import WwuError
from certbot_wwu.files import write_atomic
from certbot_wwu.lineage import Lineage

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


# --- deploy and attach: the installer's work, from a shell or a deploy hook ------

CERTBOT_DIRS = (("config-dir", "/etc/letsencrypt", "certbot's configuration directory"),
                ("work-dir", "/var/lib/letsencrypt", "certbot's working directory"),
                ("logs-dir", "/var/log/letsencrypt", "certbot's log directory"))


def certbot_dir_options(parser: argparse.ArgumentParser) -> None:
    """--config-dir, --work-dir, --logs-dir with certbot's meanings and defaults."""
    for name, default, what in CERTBOT_DIRS:
        parser.add_argument("--" + name, default=default, metavar="DIR",
                            help="{} (default: {})".format(what, default))


def _installer_options(parser: argparse.ArgumentParser) -> None:
    """The installer's options without the --wwu-acl- prefix (one definition
    in settings.py serves both front doors)."""
    group = parser.add_argument_group(
        "deployment settings (as the installer's --wwu-acl-* options)")
    for name, text in settings.OPTIONS:
        group.add_argument("--" + name, dest="opt_" + name.replace("-", "_"),
                           metavar=settings.METAVARS[name], help=text,
                           type=settings.comma_list if name in settings.LIST_OPTIONS
                           else None)
    for name, text in settings.FLAGS:
        group.add_argument("--" + name, dest="opt_" + name.replace("-", "_"),
                           action="store_const", const=True, help=text)


def _given_options(args: argparse.Namespace) -> Dict[str, Any]:
    return {key[4:]: value for key, value in vars(args).items()
            if key.startswith("opt_") and value is not None}


def _lineage(args: argparse.Namespace) -> Lineage:
    """--cert-name, or the lineage a certbot deploy hook names."""
    if args.cert_name:
        return Lineage(args.config_dir, args.cert_name)
    renewed = os.environ.get("RENEWED_LINEAGE")
    if renewed:
        return Lineage.from_live_path(os.path.join(renewed, "cert.pem"))
    raise UsageError("Say which certificate: give --cert-name NAME (certbot sets "
                     "RENEWED_LINEAGE for a deploy hook).")


def _settings_for(args: argparse.Namespace, lineage: Lineage) -> settings.Settings:
    """Options on the command line, else the lineage's stored settings."""
    given = _given_options(args)
    if given:
        return settings.Settings.from_options(given.get)
    installer, stored = renewalconf.stored(lineage.renewal_conf)
    if not stored:
        raise UsageError(
            "Certificate {} has no stored wwu-acl settings; give options such as "
            "--user or --copy-to, or attach them with 'certbot-wwu attach'."
            .format(lineage.name))
    return settings.Settings.from_options(stored.get)


def add_deploy(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "deploy", help="deploy a certificate as the wwu-acl installer does",
        description="Grant access and/or write copies, then act on the units: "
                    "the installer's deployment, for a shell or a deploy hook "
                    "(--deploy-hook 'certbot-wwu deploy --user nginx --unit "
                    "nginx'). Without options it uses the certificate's stored "
                    "settings.")
    parser.add_argument("--cert-name", metavar="NAME",
                        help="the certificate (default: $RENEWED_LINEAGE, as "
                             "certbot sets it for deploy hooks)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan: who gets which access on which "
                             "files, which copies, which unit actions; change "
                             "nothing")
    _installer_options(parser)
    certbot_dir_options(parser)
    parser.set_defaults(func=cmd_deploy)


def cmd_deploy(args: argparse.Namespace) -> int:
    from certbot_wwu import deploy
    lineage = _lineage(args)
    if not args.dry_run:
        deploy.secure_key(lineage)
    chosen = _settings_for(args, lineage)
    report = deploy.deploy(chosen, lineage, dry_run=args.dry_run)
    for line in report.lines:
        print(line)
    if args.dry_run:
        if chosen.units and chosen.action != "none":
            print("would run systemctl {} {}".format(chosen.action, " ".join(chosen.units)))
        return 0
    deploy.act(chosen, lineage, report.copied)
    for unit in chosen.units if chosen.action != "none" else ():
        print("{} {}: active".format(chosen.action, unit))
    if chosen.push_to:
        from certbot_wwu import cluster
        outcomes = cluster.push(cluster.load_config(), lineage, list(chosen.push_to))
        for outcome in outcomes:
            print(outcome.line)
        failure = cluster.failed_error("Pushing {}".format(lineage.name), outcomes)
        if failure is not None:
            raise failure
    return 0


def add_attach(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "attach", help="record the wwu-acl installer for a certificate",
        description="Record installer = wwu-acl and the settings in "
                    "renewal/NAME.conf, so that every 'certbot renew' deploys "
                    "(certbot's own 'reconfigure' exists only from 2.3). The "
                    "settings are checked first; the file is replaced "
                    "atomically, a backup NAME.conf.certbot-wwu.bak is kept, and "
                    "every other line stays as it was.")
    parser.add_argument("--cert-name", metavar="NAME", required=True,
                        help="the certificate")
    parser.add_argument("--detach", action="store_true",
                        help="remove the installer and its settings instead")
    _installer_options(parser)
    certbot_dir_options(parser)
    parser.set_defaults(func=cmd_attach)


def cmd_attach(args: argparse.Namespace) -> int:
    from certbot_wwu import deploy, grants
    lineage = Lineage(args.config_dir, args.cert_name)
    if not os.path.exists(lineage.renewal_conf):
        raise UsageError("There is no certificate {} (no {}).".format(
            args.cert_name, lineage.renewal_conf))
    values = None
    if not args.detach:
        chosen = settings.Settings.from_options(_given_options(args).get)
        if chosen.copy_to:
            deploy.copy_spec(chosen)
        values = chosen.to_values()
        keep = [p.key for p in grants.resolve(chosen.users, chosen.groups)]
        leftovers = grants.remove_stray_defaults(lineage, keep)
        if leftovers:
            print(leftovers)
    elif _given_options(args):
        raise UsageError("--detach takes no deployment settings.")
    backup = lineage.renewal_conf + ".certbot-wwu.bak"
    original = renewalconf.read(lineage.renewal_conf)
    if renewalconf.edit(original, values) == original:
        print("nothing to change in {}".format(lineage.renewal_conf))
        return 0
    write_atomic(backup, original, os.stat(lineage.renewal_conf).st_mode & 0o777)
    renewalconf.attach(lineage.renewal_conf, values)
    if args.detach:
        print("detached wwu-acl from {} (backup: {}); grants already made stay "
              "until you remove them".format(lineage.renewal_conf, backup))
    else:
        print("attached wwu-acl to {} (backup: {}); the next 'certbot renew' "
              "deploys, or run 'certbot-wwu deploy --cert-name {}' now".format(
                  lineage.renewal_conf, backup, lineage.name))
    return 0


# --- the command ------------------------------------------------------------------

#: registration functions, in the order of --help
SUBCOMMANDS = [add_presets, add_env, add_setup, register.add_register, add_deploy,
               add_attach, status.add_status, add_cluster]  # type: List[Callable[[Any], None]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Deploy certbot's certificates to non-root services (the "
                    "wwu-acl installer's work), CA presets, proxy and renewal "
                    "timer.")
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
    except Exception as err:  # pylint: disable=broad-except
        print("{}: {}".format(PROG, _unexpected(args.command, err)), file=sys.stderr)
        return 1


def _unexpected(command: str, err: Exception) -> str:
    """One sentence for a failure that is not a WwuError (a bug, or a cause
    nobody foresaw). Where it happened goes to the --verbose log as one line:
    never a traceback."""
    if isinstance(err, OSError) and err.strerror:
        cause = err.strerror + (": {}".format(err.filename) if err.filename else "")
    else:
        cause = "{}: {}".format(type(err).__name__, err) if str(err) \
            else type(err).__name__
    cause = " ".join(cause.split()).rstrip(".")
    where = ", called from ".join(
        "{}:{} ({})".format(os.path.basename(frame[0]), frame[1], frame[2])
        for frame in reversed(traceback.extract_tb(err.__traceback__)))
    logger.info("%s: %s; in %s", type(err).__name__, " ".join(str(err).split()),
                where)
    return ("{} failed unexpectedly ({}); run it again with --verbose to see "
            "where.".format(command, cause))


if __name__ == "__main__":
    sys.exit(main())
