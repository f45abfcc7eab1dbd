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
from certbot_wwu.settings import OPTION_TABLE

#: the verbs that deploy with this installer's options: their settings are
#: checked in prepare(), before certbot asks the CA for anything
_CHECKED_VERBS = ("run", "certonly", "install", "renew")
PREFIX = "--wwu-acl-"

logger = logging.getLogger(__name__)


def loud(method: Callable) -> Callable:
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


def _notify(line: str) -> None:
    """One line on certbot's console (certbot < 1.18 has no notify: log it)."""
    from certbot.display import util as display_util
    notify = getattr(display_util, "notify", None)
    if notify is not None:
        notify(line)
    else:
        logger.warning("%s", line)


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

    description = ("Let non-root services read the certificate (POSIX ACLs or "
                   "owned copies), then act on their systemd units as "
                   "--wwu-acl-action says (certbot-wwu {})".format(__version__))

    @classmethod
    def add_parser_arguments(cls, add: Callable[..., None]) -> None:
        for option in OPTION_TABLE:
            if option.flag:
                add(option.name, action="store_true", default=False, help=option.help)
            else:
                add(option.name, default=None, metavar=option.metavar,
                    help=option.help, type=option.type)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super(Installer, self).__init__(*args, **kwargs)
        self._deployed = {}  # type: Dict[str, Tuple[Any, Any, Any]]
        self._failed = False

    def prepare(self) -> None:
        """Check every setting before certbot asks the CA for anything.

        A bad setting raises ConfigurationError, which certbot reports and
        counts (exit 1, the lineage fails on renew). Never a PluginError:
        certbot would silently drop the installer (DESIGN §3). Problems of
        the environment (ACL support, units) are found where we act.
        """
        if getattr(getattr(self, "config", None), "verb", None) not in _CHECKED_VERBS:
            return
        try:
            lineage = None
            if self.config.verb == "install":
                if not self.config.certname:
                    return  # certbot asks which one; deploy_cert checks then
                from certbot_wwu.lineage import Lineage
                lineage = Lineage(self.config.config_dir, self.config.certname)
                if not os.path.exists(lineage.renewal_conf):
                    return  # certbot itself says there is no such certificate
            self._check(self._settings(lineage))
        except WwuError as err:
            raise errors.ConfigurationError(str(err))

    @staticmethod
    def _check(settings: Any) -> None:
        """Users, groups, copy owner and destination as they are now."""
        from certbot_wwu import deploy, grants
        grants.resolve(settings.users, settings.groups)
        if settings.copy_to:
            deploy.copy_spec(settings)

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

    @loud
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

    @loud
    def restart(self) -> None:
        """Act on the units once. certbot calls restart() again to "restore"
        after a failed one: the copies were already rolled back and the
        failure reported, so the second call does nothing (certbot would
        otherwise claim it "failed to restore your config")."""
        if self.config.dry_run or self._failed:
            return
        if not self._deployed and self.config.verb == "certonly":
            self._deploy(self._certonly_lineage())
        from certbot_wwu import batch
        for settings, lineage, copied in self._deployed.values():
            if not batch.RUN.has(lineage):
                batch.RUN.add(settings, lineage, copied)
        lineages = [lineage for _, lineage, _ in self._deployed.values()]
        try:
            keep = self._act(lineages[-1] if lineages else None)
        except Exception:
            self._failed = True
            raise
        from certbot_wwu import deploy
        for settings, lineage, _ in self._deployed.values():
            _notify(deploy.summary(settings, lineage, pending=keep))
            _push(settings, lineage)

    @loud
    def renew_deploy(self, lineage: Any, *args: Any, **kwargs: Any) -> None:
        from certbot_wwu.lineage import Lineage
        self._deploy(Lineage.from_live_path(lineage.cert_path))

    @loud
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
        if report is not None:
            _notify(deploy.summary(settings, target))
        _push(settings, target)

    def _act(self, current: Any) -> set:
        """Act on pending units, except those a later lineage of this
        ``certbot renew`` also names: its turn comes (see batch). Returns
        the units left for that later lineage."""
        from certbot_wwu import batch
        keep = set()  # type: set
        if self.config.verb == "renew" and current is not None and batch.RUN.units():
            keep = self._later_units(current, batch.RUN.units())
            if keep:
                batch.defer_until_exit()
        batch.RUN.flush(keep)
        return keep

    def _later_units(self, current: Any, among: Iterable[str]) -> set:
        """Those of ``among`` that a lineage names which this renew processes
        after ``current`` (certbot goes through renewal/*.conf in sorted
        order). The renewal confs are read once per run (_RunUnits), not once
        per lineage, and each call costs O(len(among))."""
        if self.config.certname:
            return set()
        return _RunUnits.of(current.config_dir).after(current.renewal_conf, among)

    def _given(self) -> Dict[str, Any]:
        """The options on this command line (or restored by renew)."""
        given = {}  # type: Dict[str, Any]
        for option in OPTION_TABLE:
            value = self.conf(option.key)
            if value not in (None, False):
                given[option.key] = value
        return given

    def _settings(self, lineage: Any = None) -> Any:
        """The options; for ``install`` on top of the lineage's stored
        settings, so the command certbot suggests after a failure works and
        no option silently drops what the renewal conf promises."""
        from certbot_wwu.settings import Settings, merge
        values = self._given()
        if lineage is not None and self.config.verb == "install":
            from certbot_wwu import renewalconf
            installer, stored = renewalconf.stored(lineage.renewal_conf)
            if installer == renewalconf.INSTALLER and stored:
                values, changes = merge(stored, values, prefix=PREFIX)
                for change in changes:
                    logger.info("%s: %s", lineage.name, change)
        return Settings.from_options(values.get, PREFIX)

    def _deploy(self, lineage: Any) -> Any:
        from certbot_wwu import deploy
        if not self.config.dry_run:
            deploy.secure_key(lineage)
        settings = self._settings(lineage)
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
