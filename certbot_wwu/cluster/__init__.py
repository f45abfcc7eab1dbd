"""Share an ACME account or a certificate lineage with the peers of a cluster.

The recipe's advice (DESIGN §8): servers that the same people administer may
share one ACME account; servers administered by different people need
separate ACME-IDs. Two patterns follow, both over the existing tools (OpenSSH
and rsync, every command an argument list):

* shared account (accounts.py): one account directory goes to a peer, only
  on request and only when the site allows it (``share = account``);
* shared certificate (pushing.py): one node renews and pushes the lineage to
  its peers after each deployment; each peer deploys it itself, granting its
  own users by name and acting on its own units.

One module per job: config.py reads and checks ``[cluster]`` and ``[cluster
peers]``; transport.py runs ssh and rsync (one connection per peer per run,
a dead peer remembered for the run, the peers served in parallel);
staging.py writes what goes out; pushing.py and accounts.py are the two
patterns. A peer that cannot be reached does not stop the others; every
peer's outcome is one line, and the run fails (ClusterError) if any peer
failed, so the next run catches it up.

What other modules use is imported here; the submodules' other names are
theirs.
"""
from certbot_wwu.cluster.accounts import (
    EXPORT_FORMAT, Account, export_account, find_account, import_account, read_export,
    share_account)
from certbot_wwu.cluster.config import ClusterConfig, ClusterError, Peer, load_config, \
    parse_target
from certbot_wwu.cluster.pushing import (
    PeerState, has_deploy_settings, load_record, peer_renewal_conf, push, push_lineage,
    stage_lineage)
from certbot_wwu.cluster.transport import (
    OUTCOME_LIMIT, PEER_TEXT_LIMIT, Outcome, PeerFailed, Result, Transport, check,
    current_run, failed_error, new_run, printable)

__all__ = [
    "Account", "ClusterConfig", "ClusterError", "EXPORT_FORMAT", "OUTCOME_LIMIT",
    "Outcome", "PEER_TEXT_LIMIT", "Peer", "PeerFailed", "PeerState", "Result",
    "Transport", "check", "current_run", "export_account", "failed_error",
    "find_account", "has_deploy_settings", "import_account", "load_config",
    "load_record", "new_run", "parse_target", "peer_renewal_conf", "printable",
    "push", "push_lineage", "read_export", "share_account",
    "stage_lineage",
]
