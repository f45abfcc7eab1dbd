"""``certbot-wwu cluster``: share an ACME account or a certificate with peers.

Registered by cli.py through ``add_cluster``; ``cmd_cluster`` runs one of the
subcommands and returns the exit status (WwuError for anything the user can
fix, which cli.main prints as one line).
"""
import argparse
import os
from typing import Any, List

from certbot_wwu import certbot_host, presets

# certbot_wwu.cluster is imported when a cluster command runs, so that every
# other certbot-wwu command starts without it


def _peer_list(value: str) -> List[str]:
    peers = [p.strip() for p in value.split(",") if p.strip()]
    if not peers:
        raise argparse.ArgumentTypeError("name at least one peer")
    return peers


def _common(parser: argparse.ArgumentParser, to: bool = True) -> None:
    if to:
        parser.add_argument(
            "--to", metavar="PEER[,PEER...]", type=_peer_list, default=[],
            help="peers: names from [cluster peers] or [user@]host[:port] "
                 "(default: peers in [cluster])")
    certbot_host.certbot_dir_options(parser, ("config-dir",))
    presets.presets_dir_option(parser, "the site files with the [cluster] section")


def _account_choice(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="URL",
                        help="the account's ACME directory URL")
    parser.add_argument("--preset", metavar="NAME",
                        help="take the server from this preset (see 'presets')")
    parser.add_argument("--account", metavar="ID",
                        help="the account's ID, when there are several for the server")


def add_cluster(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cluster", help="share an ACME account or a certificate with peers",
        description="Share one ACME account or push certificates to the other "
                    "servers of a cluster over ssh and rsync. Peers and ssh "
                    "settings come from the [cluster] and [cluster peers] "
                    "sections of the site preset files. Only servers that the "
                    "same people administer may share an ACME account.")
    sub = parser.add_subparsers(dest="cluster_command", metavar="ACTION")
    sub.required = True

    push = sub.add_parser(
        "push", help="send a certificate to peers, which deploy it themselves",
        description="Send the current version of a certificate (archive, live "
                    "links, renewal conf with autorenew = False) to each peer "
                    "that does not have it yet, then run 'certbot-wwu deploy' "
                    "there. A peer that is current costs one ssh command. Every "
                    "peer's outcome is one line; the command fails if any peer "
                    "failed.")
    push.add_argument("--cert-name", metavar="NAME", required=True,
                      help="the certificate")
    push.add_argument("--force", action="store_true",
                      help="also replace a peer's own certificate of that name, "
                           "one pushed by another host, or a newer version")
    _common(push)

    share = sub.add_parser(
        "share-account", help="copy one ACME account to peers",
        description="Copy exactly one account directory (accounts/<server>/<id>/) "
                    "to each peer with rsync over ssh, so the peer can obtain "
                    "certificates under the same ACME ID without registering. "
                    "Needs share = account in [cluster]. A peer's different "
                    "account for the same server is not replaced without --force.")
    _account_choice(share)
    share.add_argument("--force", action="store_true",
                       help="move a peer's other account for this server aside "
                            "(into CONFIG/wwu-acl/replaced-accounts/)")
    _common(share)

    export = sub.add_parser(
        "export-account", help="write one ACME account to a file (a secret)",
        description="Write one account to a tar file created with mode 0600, "
                    "with a README saying what it holds, for a host that cannot "
                    "be reached by ssh. Needs share = account in [cluster].")
    _account_choice(export)
    export.add_argument("file", metavar="FILE", help="the file to create")
    _common(export, to=False)

    imp = sub.add_parser(
        "import-account", help="install an account from export-account's file",
        description="Install the account of a file written by export-account "
                    "into this host's certbot configuration.")
    imp.add_argument("file", metavar="FILE", help="the exported file")
    imp.add_argument("--force", action="store_true",
                     help="move this host's other account for the same server "
                          "aside (into CONFIG/wwu-acl/replaced-accounts/)")
    _common(imp, to=False)

    check = sub.add_parser(
        "check", help="log in to each peer and run its certbot-wwu",
        description="Check ssh (host key, login) and the remote certbot-wwu of "
                    "each peer; one line each.")
    _common(check)
    parser.set_defaults(func=cmd_cluster)


def _server(args: argparse.Namespace) -> str:
    from certbot_wwu.cluster import ClusterError
    if args.preset:
        return presets.get_preset(args.preset, args.presets_dir).server_url(args.server)
    if args.server:
        return args.server.strip()
    raise ClusterError("Say which account: give --server URL or --preset NAME.")


def _say(text: str) -> None:
    """Print one line: what peers and files sent is made printable (no
    terminal escapes) and bounded, whichever step it came through."""
    from certbot_wwu import cluster
    print(cluster.printable(text, 2 * cluster.OUTCOME_LIMIT))


def _report(outcomes: List[Any], what: str) -> int:
    from certbot_wwu import cluster
    for outcome in outcomes:
        _say(outcome.line)
    error = cluster.failed_error(what, outcomes)
    if error:
        raise error
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from certbot_wwu import cluster
    from certbot_wwu.cluster import ClusterError
    action = args.cluster_command
    if action == "import-account":
        _say(cluster.import_account(args.file, args.config_dir, args.force))
        return 0
    config = cluster.load_config(args.presets_dir)
    if action == "push":
        from certbot_wwu.lineage import Lineage, no_such_certificate
        lineage = Lineage(args.config_dir, args.cert_name)
        if not os.path.isdir(lineage.live_dir):
            raise ClusterError(str(no_such_certificate(args.config_dir, args.cert_name)))
        return _report(cluster.push(config, lineage, args.to, args.force),
                       "Pushing {}".format(args.cert_name))
    if action == "check":
        return _report(cluster.check(config, args.to), "Checking")
    account = cluster.find_account(args.config_dir, _server(args), args.account)
    if action == "share-account":
        return _report(cluster.share_account(config, account, args.to, args.force),
                       "Sharing account {}".format(account.id))
    config.require_share("account")
    cluster.export_account(account, args.file)
    _say("wrote account {} for {} to {} (mode 0600): it holds the account's "
          "private key, so move it only to servers the same people administer, "
          "import it there with 'certbot-wwu cluster import-account {}' and "
          "delete it".format(account.id, account.server, args.file,
                             os.path.basename(args.file)))
    return 0
