"""Errors of certbot-wwu; the installer turns each into certbot's PluginError.

Each message is one sentence for a system administrator: what went wrong and
what to do about it.
"""


class WwuError(Exception):
    """Base class: a deployment cannot go on."""


class SettingsError(WwuError):
    """An option or renewal-conf value is not valid."""


class LineageError(WwuError):
    """The certificate lineage on disk is missing or not what certbot writes."""


class GrantError(WwuError):
    """ACL grants cannot be applied or do not give the access they should."""


class ServiceError(WwuError):
    """A systemd unit action failed or the unit did not come back."""


class CopyError(WwuError):
    """Copies of a certificate cannot be written or switched safely."""


class LockError(WwuError):
    """Another process held a lock for longer than a deployment may wait."""
