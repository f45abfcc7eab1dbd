"""Host names, ports and ssh targets, checked in one place.

A proxy (presets), a peer (cluster settings, ``--wwu-acl-push-to``) and a
no-proxy entry all name hosts; they are checked here, so that a value one of
them accepts is one the others accept too. Each function raises ValueError
with a fragment ("'web..x' is not a host name or address") that the caller
puts into its sentence with the option or file the value came from.
"""
import ipaddress
import re
from typing import Optional, Tuple

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
#: what useradd accepts (and ssh passes on)
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")
_TARGET = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]*\]|[^:\[\]@\s]+)"
                     r"(?::(?P<port>[^:]*))?\Z")


def host_name(value: str, ipv6: bool = False) -> str:
    """A host name (one trailing dot allowed) or IPv4 address, lower-cased;
    with ``ipv6`` also an IPv6 address in brackets. ValueError if not."""
    if ipv6 and value.startswith("["):
        try:
            if not value.endswith("]"):
                raise ValueError(value)
            return "[{}]".format(ipaddress.IPv6Address(value[1:-1]))
        except ValueError:
            raise ValueError("{!r} is not an IPv6 address in brackets".format(value))
    host = value.lower()
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    labels = (host[:-1] if host.endswith(".") else host).split(".")
    if not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValueError("{!r} is not a host name or address".format(value))
    return ".".join(labels)


def port_number(value: str) -> int:
    """A TCP port from 1 to 65535; ValueError if not."""
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("{!r} is not a port number from 1 to 65535".format(value))
    return int(text)


def user_name(value: str) -> str:
    """A login name as useradd makes them; ValueError if not."""
    if not _USER.match(value.strip()):
        raise ValueError("{!r} is not a user name".format(value))
    return value.strip()


def split_target(value: str) -> Tuple[Optional[str], str, Optional[int]]:
    """``[user@]host[:port]`` -> (user or None, host, port or None), each
    part checked; ValueError if not."""
    match = _TARGET.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("{!r} is not [user@]host[:port]".format(value))
    user = match.group("user")
    if user is not None and not _USER.match(user):
        raise ValueError("{!r} has the user name {!r}, which is not valid".format(
            value, user))
    host = host_name(match.group("host"), ipv6=True)
    port = None if match.group("port") is None else port_number(match.group("port"))
    return user, host, port


def parse_target(value: str, default_user: str = "root",
                 default_port: int = 22) -> Tuple[str, str, int]:
    """``[user@]host[:port]`` -> (user, host, port); ValueError if not."""
    user, host, port = split_target(value)
    return (default_user if user is None else user, host,
            default_port if port is None else port)
