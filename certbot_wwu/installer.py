"""The certbot adapter: installer ``wwu-acl``.

Thin on purpose: options become Settings, certbot's calls become deployments
(certbot_wwu.deploy). What certbot calls when (DESIGN §3):

* run / install: prepare, deploy_cert once per name, save, restart
* certonly -i: prepare and (certbot >= 1.27) restart only
* renew, due: prepare, renew_deploy, restart, generic_updates
* renew, not due: generic_updates only, on an unprepared instance

``prepare`` never raises: certbot would silently drop the installer from the
renewal conf. Errors are raised where we act, as PluginError with one
sentence, so they reach certbot's exit code.
"""
import functools
import glob
import logging
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from certbot import errors, interfaces
from certbot.plugins import common

from certbot_wwu import __version__, _compat
from certbot_wwu.errors import WwuError
from certbot_wwu.settings import FLAGS, LIST_OPTIONS, METAVARS, OPTIONS, comma_list

logger = logging.getLogger(__name__)


def _loud(method: Callable) -> Callable:
    """Turn every failure into a PluginError certbot reports and counts."""
    @functools.wraps(method)
    def wrapper(self: "Installer", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except errors.Error:
            raise
        except WwuError as err:
            raise errors.PluginError(str(err))
        except Exception as err:  # pylint: disable=broad-except
            logger.debug("wwu-acl failed", exc_info=True)
            raise errors.PluginError(
                "The wwu-acl installer failed unexpectedly ({}: {}); the "
                "details are in certbot's log.".format(type(err).__name__, err))
    return wrapper


def _push(settings: Any, lineage: Any) -> None:
    """--wwu-acl-push-to: peers get the lineage and deploy it themselves."""
    if settings.push_to:
        from certbot_wwu import cluster
        cluster.push_lineage(lineage, settings.push_to)


class _RunUnits(object):
    """Which units the renewal confs of a config directory name, read once
    per process (one certbot run): for each unit, the last conf (in
    certbot's sorted order) that names it."""

    _runs = {}  # type: Dict[str, _RunUnits]

    def __init__(self, config_dir: str) -> None:
        from certbot_wwu.renewalconf import installer_units
        self.last = {}  # type: Dict[str, str]
        for conf in sorted(glob.glob(os.path.join(config_dir, "renewal", "*.conf"))):
            for unit in installer_units(conf):
                self.last[unit] = conf  # sorted: the last one wins

    @classmethod
    def of(cls, config_dir: str) -> "_RunUnits":
        if config_dir not in cls._runs:
            cls._runs[config_dir] = cls(config_dir)
        return cls._runs[config_dir]

    def after(self, conf: str, among: Iterable[str]) -> set:
        """Those of ``among`` named by a conf that sorts after ``conf``."""
        return {unit for unit in among if self.last.get(unit, "") > conf}


class Installer(common.Installer, interfaces.RenewDeployer,
                interfaces.GenericUpdater):
    """Let a non-root service read the certificate, then reload its unit."""

    description = ("Grant non-root services read access to the certificate "
                   "with POSIX ACLs and restart their systemd units "
                   "(certbot-wwu {})".format(__version__))

    @classmethod
    def add_parser_arguments(cls, add: Callable[..., None]) -> None:
        for name, text in OPTIONS:
            add(name, default=None, metavar=METAVARS[name], help=text,
                **({"type": comma_list} if name in LIST_OPTIONS else {}))
        for name, text in FLAGS:
            add(name, action="store_true", default=False, help=text)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super(Installer, self).__init__(*args, **kwargs)
        self._deployed = {}  # type: Dict[str, Tuple[Any, Any, Any]]

    def prepare(self) -> None:
        """Nothing to prepare; checks happen where we act (see module doc)."""

    def more_info(self) -> str:
        return ("Grants users or groups read access to the current certificate "
                "and key with POSIX ACLs on every deployment and renewal, "
                "verifies the access as those users, and restarts or reloads "
                "the named systemd units.")

    def get_all_names(self) -> List[str]:
        return []

    def supported_enhancements(self) -> List[str]:
        return []

    def enhance(self, domain: str, enhancement: str,
                options: Optional[Any] = None) -> None:
        raise errors.PluginError(
            "The wwu-acl installer supports no enhancements such as {}.".format(
                enhancement))

    def save(self, title: Optional[str] = None, temporary: bool = False) -> None:
        """Changes are made (and verified) when deploying; nothing to save."""

    def rollback_checkpoints(self, rollback: int = 1) -> None:
        """ACL grants are not checkpointed; a later deployment corrects them."""

    def recovery_routine(self) -> None:
        """Nothing is held in a temporary state."""

    def config_test(self) -> None:
        """There is no server configuration to test."""

    @_loud
    def deploy_cert(self, domain: str, cert_path: str, key_path: str,
                    chain_path: Optional[str] = None,
                    fullchain_path: Optional[str] = None) -> None:
        from certbot_wwu.lineage import Lineage
        lineage = Lineage.from_live_path(cert_path)
        if lineage.name in self._deployed:
            return
        settings = self._deploy(lineage)
        if self.config.verb in ("install", "run") and not self.config.dry_run:
            from certbot_wwu import renewalconf
            if renewalconf.attach(lineage.renewal_conf, settings.to_values()):
                logger.info("Recorded the wwu-acl installer and its options in %s",
                            lineage.renewal_conf)

    @_loud
    def restart(self) -> None:
        if self.config.dry_run:
            return
        if not self._deployed and self.config.verb == "certonly":
            self._deploy(self._certonly_lineage())
        from certbot_wwu import batch
        for settings, lineage, copied in self._deployed.values():
            if not batch.RUN.has(lineage):
                batch.RUN.add(settings, lineage, copied)
        lineages = [lineage for _, lineage, _ in self._deployed.values()]
        self._act(lineages[-1] if lineages else None)
        for settings, lineage, _ in self._deployed.values():
            _push(settings, lineage)

    @_loud
    def renew_deploy(self, lineage: Any, *args: Any, **kwargs: Any) -> None:
        from certbot_wwu.lineage import Lineage
        self._deploy(Lineage.from_live_path(lineage.cert_path))

    @_loud
    def generic_updates(self, lineage: Any, *args: Any, **kwargs: Any) -> None:
        if self.config.dry_run:
            return
        from certbot_wwu import batch, deploy
        from certbot_wwu.lineage import Lineage
        target = Lineage.from_live_path(lineage.cert_path)
        deploy.secure_key(target)
        settings = self._settings()
        report = deploy.redeploy_if_drifted(settings, target)
        if deploy.needs_action(target) and not batch.RUN.has(target):
            batch.RUN.add(settings, target, report.copied if report else None)
        self._act(target)
        _push(settings, target)

    def _act(self, current: Any) -> None:
        """Act on pending units, except those a later lineage of this
        ``certbot renew`` also names: its turn comes (see batch)."""
        from certbot_wwu import batch
        keep = set()  # type: set
        if self.config.verb == "renew" and current is not None and batch.RUN.units():
            keep = self._later_units(current, batch.RUN.units())
            if keep:
                batch.defer_until_exit()
        batch.RUN.flush(keep)

    def _later_units(self, current: Any, among: Iterable[str]) -> set:
        """Those of ``among`` that a lineage names which this renew processes
        after ``current`` (certbot goes through renewal/*.conf in sorted
        order). The renewal confs are read once per run (_RunUnits), not once
        per lineage, and each call costs O(len(among))."""
        if self.config.certname:
            return set()
        return _RunUnits.of(current.config_dir).after(current.renewal_conf, among)

    def _settings(self) -> Any:
        from certbot_wwu.settings import Settings
        return Settings.from_options(self.conf)

    def _deploy(self, lineage: Any) -> Any:
        from certbot_wwu import deploy
        if not self.config.dry_run:
            deploy.secure_key(lineage)
        settings = self._settings()
        report = deploy.deploy(settings, lineage, dry_run=self.config.dry_run)
        self._deployed[lineage.name] = (settings, lineage, report.copied)
        return settings

    def _certonly_lineage(self) -> Any:
        from certbot_wwu.lineage import Lineage, find_by_names
        if self.config.certname:
            return Lineage(self.config.config_dir, self.config.certname)
        names = _compat.requested_names(self.config)
        found = find_by_names(self.config.config_dir, names)
        if found is None:
            raise errors.PluginError(
                "Cannot tell which certificate certonly obtained for {}; run "
                "'certbot install --cert-name NAME -i wwu-acl ...'.".format(
                    ", ".join(names)))
        return found


_compat.declare_plugin(Installer)
