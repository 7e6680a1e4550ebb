"""Which provider base URLs the gateway may send requests (and keys) to.

One function, used by the file loader and (through it) by the admin API, refuses targets that no
provider lives at but an attacker wants: link-local and cloud-metadata addresses and names (the
instance's credentials), userinfo (`http://user:pass@host` hides the real host from a reader),
control characters and spaces (header injection, log forging), schemes other than http(s), and IPv4
written in the odd notations the C resolver still accepts (`http://2852039166/`, `0xA9FEA9FE`,
`0251.0376.0251.0376`) that would slip past a check on the dotted form. Private and loopback addresses
stay allowed (local models are a main use) unless `client.allow_private_base_urls` is false.

Only literal addresses are classified: no DNS lookup happens at config time (a name can resolve
differently later anyway), but the well-known metadata host names are refused by name.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

# Host names of cloud instance-metadata services (compared lower-case, without a trailing dot).
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
        "metadata.packet.net",
        "metadata.oraclecloud.com",
    }
)
# Metadata addresses outside the link-local ranges (which are refused as a whole).
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("192.0.0.192"),  # Oracle Cloud (classic)
    }
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: private for our purpose
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LEGACY_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class UnsafeURL(ValueError):
    """The URL may not be used as a base URL; `str()` says why (never echoing a secret)."""


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """What inet_aton would make of `host` (`2852039166`, `0xa9.0376.43518`, ...), or None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_LEGACY_PART.match(p) for p in parts):
        return None
    numbers = []
    for p in parts:
        try:
            if p.startswith("0x"):
                numbers.append(int(p[2:] or "0", 16))
            elif len(p) > 1 and p.startswith("0"):
                numbers.append(int(p, 8))
            else:
                numbers.append(int(p))
        except ValueError:  # `09`: not octal, and no resolver reads it as an address
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible or NAT64), which is where it goes."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    packed = int(ip)
    if packed >> 32 == 0 and packed > 1:  # ::a.b.c.d (deprecated IPv4-compatible form)
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if ip in _NAT64:
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def _classify(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> str | None:
    """Why `ip` is refused, or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return _classify(inner, allow_private)
    if ip in METADATA_ADDRESSES:
        return "is a cloud metadata address"
    if ip.is_link_local:
        return "is a link-local address (where cloud metadata services live)"
    if ip.is_unspecified or ip.is_multicast or (isinstance(ip, ipaddress.IPv4Address) and ip.is_reserved):
        return "is not an address a provider can listen on"
    if not allow_private and (ip.is_loopback or ip.is_private or ip in _SHARED):
        return "is a private or loopback address, and client.allow_private_base_urls is false"
    return None


def check_base_url(url: str, *, allow_private: bool = True) -> str:
    """`url` without a trailing slash if it may be used as a provider base URL; else UnsafeURL."""
    if any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
        raise UnsafeURL("must not contain spaces, line breaks or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # validates the port
    except ValueError as exc:
        raise UnsafeURL(f"is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise UnsafeURL("expected an http:// or https:// URL")
    if "@" in parts.netloc:
        raise UnsafeURL("must not carry a user name or password before the host; send credentials as a key")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise UnsafeURL("must not have a query string or fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURL("has no host")
    del port
    if not host.isascii():  # the name the resolver will see (IDNA folds full-width look-alikes to ASCII)
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise UnsafeURL("host is not a valid name") from None
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        ip = None
    legacy = _legacy_ipv4(host) if ip is None else None
    if legacy is not None:
        raise UnsafeURL(
            f"writes an IPv4 address in a non-standard notation (it means {legacy}); write it as dotted decimal"
        )
    if ip is not None:
        reason = _classify(ip, allow_private)
        if reason:
            raise UnsafeURL(f"host {reason}")
    else:
        if host in METADATA_HOSTS:
            raise UnsafeURL("host is a cloud metadata service name")
        if not allow_private and (host == "localhost" or host.endswith(".localhost")):
            raise UnsafeURL("host is a loopback name, and client.allow_private_base_urls is false")
    return url.rstrip("/")
