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

from certbot_wwu import (__version__, certbot_host, presets, register, renewalconf,
                         settings, status, timer)
from certbot_wwu.cluster_cli import add_cluster
from certbot_wwu.errors import WwuError
from certbot_wwu.files import write_atomic
from certbot_wwu.lineage import Lineage, no_such_certificate

logger = logging.getLogger(__name__)

PROG = "certbot-wwu"


class UsageError(WwuError):
    """Options that do not fit together (exit 2, as argparse's own)."""


class NotRoot(WwuError):
    """A command that works on root's files was run by another user."""


#: subcommands that read or change root's files (certbot's tree, ACLs, units)
ROOT_COMMANDS = ("deploy", "attach", "setup")

#: how certbot-wwu spells the installer's options in its messages
PREFIX = "--"


def _presets_dir_option(parser: argparse.ArgumentParser) -> None:
    presets.presets_dir_option(parser)


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
    parser.add_argument("--services", action="store_true",
                        help="list the service profiles (--service NAME) and "
                             "the options each one sets, instead of the CA "
                             "presets")
    _presets_dir_option(parser)
    parser.set_defaults(func=cmd_presets)


def _service_rows(found: Dict[str, Any]) -> List[Tuple[str, ...]]:
    """One row per profile: what it sets, as the options spell it."""
    rows = [("NAME", "MODE", "READS AS", "UNIT", "ACTION", "CHECK", "COPIES")]
    for profile in found.values():
        options = profile.defaults
        copies = "{} {} {}{}".format(
            options.get("copy_formats", "pem"), options.get("copy_owner", "root"),
            options.get("copy_mode", "-"),
            " " + options["p12_encryption"] if "p12_encryption" in options else "")
        reader = "root" if profile.reads_as_root else options.get("copy_owner") \
            if profile.mode == "copy" else ",".join(
                x for x in (options.get("user"), options.get("group")) if x) or "(--user)"
        rows.append((profile.name, profile.mode, reader, options.get("unit", "(--unit)"),
                     options.get("action", "-"), options.get("check_protocol", "tls"),
                     copies))
    return rows


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _server_column(preset: presets.Preset) -> str:
    if preset.server:
        return preset.server
    if preset.server_example or preset.server_pattern:
        return preset.server_example or "matching " + preset.server_pattern
    return "(yours: --server URL)"


def cmd_presets(args: argparse.Namespace) -> int:
    found = (presets.load_services if args.services else presets.load_presets)(
        args.presets_dir)
    if args.json:
        print(json.dumps([p.to_dict() for p in found.values()], indent=2))
        return 0
    rows = [("NAME", "SERVER", "EAB", "E-MAIL", "PRE-VALIDATED", "TIMEOUT", "PROXY")]
    if args.services:
        rows, found = _service_rows(found), {}
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

#: --config-dir, --work-dir, --logs-dir, defined once for every command:
#: certbot's defaults, or those of certbot's cli.ini
CERTBOT_DIRS = certbot_host.CERTBOT_DIRS
certbot_dir_options = certbot_host.certbot_dir_options


def _installer_options(parser: argparse.ArgumentParser) -> None:
    """The installer's options without the --wwu-acl- prefix (one definition
    in settings.py serves both front doors)."""
    group = parser.add_argument_group(
        "deployment settings (as the installer's --wwu-acl-* options)")
    for option in settings.OPTION_TABLE:
        if option.flag:
            group.add_argument("--" + option.name, dest="opt_" + option.key,
                               action="store_const", const=True,
                               help=option.help_for("--"))
        else:
            group.add_argument("--" + option.name, dest="opt_" + option.key,
                               metavar=option.metavar, help=option.help_for("--"),
                               type=option.type)


def _removal_options(parser: argparse.ArgumentParser) -> None:
    """--no-user X and friends, and --replace: the explicit ways to take
    something away from the stored settings."""
    group = parser.add_argument_group(
        "changing the stored settings (given options add to them)")
    for key in settings.ADDITIVE:
        name = key.replace("_", "-")
        group.add_argument("--no-" + name, dest="no_" + key, metavar=settings.option(name).metavar,
                           type=settings.comma_list,
                           help="take these out of the stored --{} list".format(name))
    group.add_argument("--replace", action="store_true",
                       help="use exactly the options given, not the stored "
                            "settings plus them (default: the stored settings "
                            "are the base)")


def _given_options(args: argparse.Namespace) -> Dict[str, Any]:
    return {key[4:]: value for key, value in vars(args).items()
            if key.startswith("opt_") and value is not None}


def _removed_options(args: argparse.Namespace) -> Dict[str, Any]:
    return {key: getattr(args, "no_" + key, None) for key in settings.ADDITIVE
            if getattr(args, "no_" + key, None)}


def _lineage(args: argparse.Namespace) -> Lineage:
    """--cert-name, or the lineage a certbot deploy hook names."""
    if args.cert_name:
        return Lineage(args.config_dir, args.cert_name)
    renewed = os.environ.get("RENEWED_LINEAGE")
    if renewed:
        return Lineage.from_live_path(os.path.join(renewed, "cert.pem"))
    raise UsageError("Say which certificate: give --cert-name NAME (certbot sets "
                     "RENEWED_LINEAGE for a deploy hook).")


def _settings_for(args: argparse.Namespace, lineage: Lineage
                  ) -> Tuple[settings.Settings, List[str], bool]:
    """The lineage's stored settings changed by the options given (only
    those given with --replace, or when nothing is stored), the changes,
    and whether the renewal conf holds the installer (and so must learn
    them: no command takes away what it still promises)."""
    given = _given_options(args)
    removed = _removed_options(args)
    installer, stored = renewalconf.stored(lineage.renewal_conf)
    attached = installer == renewalconf.INSTALLER
    if args.replace and removed:
        raise UsageError("--replace already drops what is not given; leave out "
                         "the --no-* options.")
    if not stored or args.replace:
        if removed:
            raise UsageError(
                "Certificate {} has no stored wwu-acl settings to take {} out of; "
                "leave out the --no-* options.".format(lineage.name, ", ".join(
                    "--no-" + k.replace("_", "-") for k in sorted(removed))))
        if not given:
            raise UsageError(
                "Certificate {} has no stored wwu-acl settings; give options such as "
                "--user or --copy-to, or attach them with 'certbot-wwu attach'."
                .format(lineage.name))
        chosen = settings.Settings.from_options(given.get, PREFIX)
        changes = []  # type: List[str]
        if stored and attached:
            old = settings.Settings.from_options(stored.get, PREFIX).to_values()
            changes = ["{}: {} -> {}".format(k.replace("_", "-"), old.get(k, "(none)"),
                                             v or "(none)")
                       for k, v in sorted(_diff(old, chosen.to_values()).items())]
        return chosen, changes, attached
    values, changes = settings.merge(stored, given, removed, PREFIX)
    return settings.Settings.from_options(values.get, PREFIX), changes, attached


def _diff(old: Dict[str, str], new: Dict[str, str]) -> Dict[str, str]:
    return {k: new.get(k, "") for k in set(old) | set(new) if old.get(k) != new.get(k)}


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
    _removal_options(parser)
    certbot_dir_options(parser)
    parser.set_defaults(func=cmd_deploy)


def cmd_deploy(args: argparse.Namespace) -> int:
    from certbot_wwu import deploy
    lineage = _lineage(args)
    if not args.dry_run:
        deploy.secure_key(lineage)
    chosen, changes, attached = _settings_for(args, lineage)
    prefix = "would change" if args.dry_run else "changed"
    for change in changes:
        print("{} {}".format(prefix, change))
    report = deploy.deploy(chosen, lineage, dry_run=args.dry_run)
    for line in report.lines:
        print(line)
    if args.dry_run:
        if chosen.units and chosen.action != "none":
            print("would run systemctl {} {}".format(chosen.action, " ".join(chosen.units)))
        return 0
    if changes and attached and renewalconf.attach(lineage.renewal_conf,
                                                   chosen.to_values()):
        print("recorded the new settings in {}".format(lineage.renewal_conf))
    deploy.act(chosen, lineage, report.copied)
    print(deploy.summary(chosen, lineage))
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
    parser.add_argument("--take-over", action="store_true",
                        help="also remove what the manual recipe left behind: "
                             "hooks that restart a unit the installer acts on, "
                             "default ACLs, ACL grants on older keys (default: "
                             "only list them)")
    _installer_options(parser)
    certbot_dir_options(parser)
    parser.set_defaults(func=cmd_attach)


def cmd_attach(args: argparse.Namespace) -> int:
    from certbot_wwu import deploy, grants
    lineage = Lineage(args.config_dir, args.cert_name)
    if not os.path.exists(lineage.renewal_conf):
        raise no_such_certificate(args.config_dir, args.cert_name)
    values = None
    original = renewalconf.read(lineage.renewal_conf)
    text = original
    if not args.detach:
        chosen = settings.Settings.from_options(_given_options(args).get, PREFIX)
        if chosen.copy_to:
            deploy.copy_spec(chosen)
        values = chosen.to_values()
        keep = [p.key for p in grants.resolve(chosen.users, chosen.groups)]
        leftovers = grants.remove_stray_defaults(lineage, keep)
        if leftovers:
            print(leftovers)
        text = _recipe_leftovers(args, lineage, chosen, text)
    elif _given_options(args) or args.take_over:
        raise UsageError("--detach takes no deployment settings and no --take-over.")
    backup = lineage.renewal_conf + ".certbot-wwu.bak"
    if renewalconf.edit(text, values) == original:
        print("nothing to change in {}".format(lineage.renewal_conf))
        return 0
    write_atomic(backup, original, os.stat(lineage.renewal_conf).st_mode & 0o777)
    if text != original:
        write_atomic(lineage.renewal_conf, text,
                     os.stat(lineage.renewal_conf).st_mode & 0o777)
    renewalconf.attach(lineage.renewal_conf, values)
    if args.detach:
        print("detached wwu-acl from {} (backup: {}); grants already made stay "
              "until you remove them".format(lineage.renewal_conf, backup))
    else:
        print("attached wwu-acl to {} (backup: {}); the next 'certbot renew' "
              "deploys, or run 'certbot-wwu deploy --cert-name {}' now".format(
                  lineage.renewal_conf, backup, lineage.name))
    return 0


def _recipe_leftovers(args: argparse.Namespace, lineage: Lineage,
                      chosen: settings.Settings, text: str) -> str:
    """List the recipe's leftovers, or with --take-over remove them (one
    line each); returns the renewal conf text to write."""
    from certbot_wwu import recipe
    if not args.take_over:
        found = recipe.find(lineage, chosen.users, chosen.groups, chosen.units)
        for leftover in found:
            print("recipe leftover: {}".format(leftover))
        if found:
            print("run 'certbot-wwu attach' again with --take-over to remove them "
                  "(the renewal conf is backed up first)")
        return text
    lines, text = recipe.take_over(lineage, text, chosen.users, chosen.groups,
                                   chosen.units)
    for line in lines:
        print(line)
    return text


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
    _verbosity(parser, argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True  # add_subparsers(required=) needs Python 3.7
    for add in SUBCOMMANDS:
        add(subparsers)
    for sub in subparsers.choices.values():
        _verbosity(sub, argparse.SUPPRESS)
    return parser


def _verbosity(parser: argparse.ArgumentParser, default: Any) -> None:
    """-v/-q before or after the subcommand (SUPPRESS: the subcommand's
    parser does not reset what the main parser saw)."""
    for flags, dest, text in ((("-v", "--verbose"), "verbose", "log what happens to stderr"),
                              (("-q", "--quiet"), "quiet", "log errors only")):
        try:
            parser.add_argument(*flags, dest=dest, action="store_true", default=default,
                                help=text)
        except argparse.ArgumentError:
            continue  # the subcommand has a -v/-q of its own


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        code = exit_.code
        return 0 if code is None else code if isinstance(code, int) else 2
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    logging.basicConfig(format="{}: %(message)s".format(PROG),
                        level=logging.INFO if verbose else
                        logging.ERROR if quiet else logging.WARNING)
    try:
        _need_root(args)
        return args.func(args)
    except UsageError as err:
        print("{}: {}".format(PROG, err), file=sys.stderr)
        return 2
    except WwuError as err:
        print("{}: {}".format(PROG, err), file=sys.stderr)
        return 1
    except PermissionError as err:
        if os.geteuid() != 0:
            print("{}: {}".format(PROG, _not_root(args.command)), file=sys.stderr)
            return 1
        print("{}: {}".format(PROG, _unexpected(args.command, err)), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("{}: interrupted".format(PROG), file=sys.stderr)
        return 130
    except Exception as err:  # pylint: disable=broad-except
        print("{}: {}".format(PROG, _unexpected(args.command, err)), file=sys.stderr)
        return 1


def _not_root(command: str) -> str:
    return ("certbot-wwu {} needs root: certbot's files, their ACLs and the "
            "units are root's; run it with sudo.".format(command))


def _need_root(args: argparse.Namespace) -> None:
    """One sentence instead of a traceback or a misleading "no such
    certificate" when a user without root runs a command that needs it."""
    if args.command in ROOT_COMMANDS and os.geteuid() != 0 \
            and getattr(args, "root", "/") == "/" \
            and getattr(args, "config_dir", CERTBOT_DIRS[0][1]) == CERTBOT_DIRS[0][1]:
        raise NotRoot(_not_root(args.command))


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
