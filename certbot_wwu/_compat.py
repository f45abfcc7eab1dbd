"""Every difference between certbot versions, in one place."""
import re
from typing import List, Tuple

import certbot

#: certbot < 1.19 finds plugins through zope.interface declarations only.
ZOPE_BEFORE = (1, 19)


def certbot_version() -> Tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", certbot.__version__)[:3])


def declare_plugin(cls: type) -> type:
    """Add the zope declarations an old certbot needs; a no-op elsewhere.

    zope is imported only for that certbot: certbot 5 may run without it, and
    an import error in one plugin breaks every certbot command.
    """
    if certbot_version() >= ZOPE_BEFORE:
        return cls
    import zope.interface
    from certbot import interfaces
    zope.interface.implementer(interfaces.IInstaller)(cls)
    zope.interface.provider(interfaces.IPluginFactory)(cls)
    return cls


def requested_names(config: object) -> List[str]:
    """The names on certbot's command line (certbot 5 keeps SAN objects)."""
    return [str(name) for name in getattr(config, "domains", None) or []]
