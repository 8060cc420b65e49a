"""Where deliveries may go: only to public addresses, unless an address range is explicitly allowed.

Loopback, private (RFC 1918), carrier-grade NAT, link-local (cloud metadata 169.254.169.254 included),
unspecified, multicast, reserved, IPv6 loopback/ULA/link-local, the IPv6 forms that carry any of these
(mapped, compatible, translated, NAT64, 6to4, Teredo) and the local-use NAT64 prefix are all refused: an
address passes when it is globally routable and not multicast, or when it lies in an allowed range.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from yarl import URL

from assethooks.errors import BlockedDestinationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The allowed ranges, parsed (host bits are ignored: ``127.0.0.1/8`` means ``127.0.0.0/8``)."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")  # IPv4-translated (RFC 2765; mapped is ::ffff:0:0/96)
# Never a public destination, although the ``ipaddress`` of some Python versions calls them global: the
# local-use NAT64 prefix (RFC 8215), which can carry any IPv4 address at several offsets.
_NEVER_PUBLIC = (ipaddress.ip_network("64:ff9b:1::/48"),)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: mapped, compatible, translated, NAT64, 6to4 and Teredo
    forms."""
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if (
        address in _NAT64
        or address in _SIIT
        or (address in _IPV4_COMPATIBLE and int(address) > 1)  # :: and ::1 are IPv6's own
    ):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [embedded for embedded in found if embedded is not None]


def address_allowed(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> bool:
    """True when deliveries may connect to ``address``."""
    ranges = tuple(allowed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address.version == network.version and address in network for network in ranges):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in _NEVER_PUBLIC):
            return False
        embedded = _embedded_ipv4(address)
        if embedded and not all(address_allowed(inner, ranges) for inner in embedded):
            return False
    return address.is_global and not address.is_multicast


def check_address(host: str, address: str, allowed: Iterable[IPNetwork]) -> None:
    """Raise ``BlockedDestinationError`` when ``address`` (resolved from ``host``) is not allowed."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if not address_allowed(ip, allowed):
        shown = host if host == address else f"{host} ({address})"
        raise BlockedDestinationError(
            f"refused to connect to {shown}: not a public address "
            "(allow a range with ASSETHOOKS_ALLOWED_CIDRS for local development)"
        )


def ip_literal(host: str) -> str | None:
    """``host`` without brackets when it is an IP address literal, else ``None``."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        return None
    return bare


def check_host(host: str, allowed: Iterable[IPNetwork]) -> None:
    """Check an IP-literal host (names are checked by ``assethooks.http`` when it connects)."""
    literal = ip_literal(host)
    if literal is not None:
        check_address(host, literal, allowed)


def check_destination(url: str, allowed: Iterable[IPNetwork]) -> str | None:
    """Check, when a webhook is saved, where its URL leads: raise ``BlockedDestinationError`` when the host
    is or resolves to a refused address; return a warning when it cannot be resolved now (it is checked
    again at every delivery)."""
    ranges = tuple(allowed)
    host = URL(url).raw_host or ""  # IDNA-normalised, as deliveries will use it
    if ip_literal(host) is not None:
        check_host(host, ranges)
        return None
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return f"cannot resolve {host} now ({exc}); deliveries will check it when they are sent"
    for *_, address in found:
        check_address(host, str(address[0]), ranges)
    return None
