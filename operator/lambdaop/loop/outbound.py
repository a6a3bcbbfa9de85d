"""The outbound policy: where calls may go.

Secure by default: an address that is loopback, private, link-local, CGNAT,
multicast, unspecified or reserved is refused, and so is one of those hidden
in an IPv4-mapped, IPv4-compatible, NAT64 or 6to4 IPv6 address; so are host
names like `localhost`, `*.localhost` and `metadata.*` (cloud metadata). An allow-list
(`--allow-hosts`: CIDRs and host patterns) opens targets on purpose.

`check_url` judges a URL as written (apply time: a literal address, in any
of the forms libc accepts such as `2130706433` or `0177.0.0.1`, or a refused
name answers at once); `check_address` judges each address a name resolved to
(call time: the invoker connects only to an address this module passed).
Called by service (apply), cli (validate) and invoker (every call and hop).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_BLOCKED: list[tuple[Network, str]] = [
    (ipaddress.ip_network(n), why)
    for n, why in (
        ("0.0.0.0/8", "an unspecified address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address (cloud metadata lives here)"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "a reserved address"),
        ("192.0.2.0/24", "a reserved address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a reserved address"),
        ("198.51.100.0/24", "a reserved address"),
        ("203.0.113.0/24", "a reserved address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("fc00::/7", "a private address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
        ("100::/64", "a discard address"),
        ("2001:db8::/32", "a documentation address"),
    )
]
_NAMES = ("localhost", "*.localhost", "metadata", "metadata.*", "instance-data", "instance-data.*")


class Refused(Exception):
    """The outbound policy refuses this target; the message says why and how to allow it."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    packed = ip.packed
    if packed[:12] == bytes(12) and packed[12:] != bytes(4):  # ::a.b.c.d (compatible)
        return ipaddress.IPv4Address(packed[12:])
    if ip in ipaddress.ip_network("64:ff9b::/96") or ip in ipaddress.ip_network("64:ff9b:1::/48"):
        return ipaddress.IPv4Address(packed[12:])
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a host part names literally, in every form libc would connect to (or None for a name)."""
    text = host.strip("[]").split("%", 1)[0]  # an IPv6 zone (fe80::1%eth0) does not change the address
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and all(c in "0123456789abcdefxABCDEFX." for c in text):
        try:  # 127.1, 2130706433, 0x7f000001, 0177.0.0.1: inet_aton reads them all
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class Policy:
    """Which targets calls may reach. `allow` holds CIDRs and host patterns (`*.corp.example`)."""

    networks: tuple[Network, ...] = ()
    patterns: tuple[str, ...] = ()
    open_all: bool = False  # `--allow-hosts '*'`: every target (for a trusted network only)
    public: bool = True  # False: only the allow-list (tests and fuzzing keep every call on 127.0.0.1)
    problems: list[str] = field(default_factory=list, compare=False)

    @classmethod
    def parse(cls, text: str | Iterable[str] | None, public: bool = True) -> Policy:
        """From `--allow-hosts` / LAMBDAOP_ALLOW_HOSTS: comma-separated CIDRs, addresses and host patterns."""
        items = [p.strip() for p in (text.split(",") if isinstance(text, str) else (text or [])) if p.strip()]
        networks: list[Network] = []
        patterns: list[str] = []
        problems: list[str] = []
        open_all = False
        for item in items:
            if item == "*":
                open_all = True
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if all(c.isalnum() or c in "-.*_" for c in item):
                patterns.append(item.lower())
            else:
                problems.append(f"{item!r} is neither an address, a CIDR nor a host pattern")
        return cls(tuple(networks), tuple(patterns), open_all, public, problems)

    def describe(self) -> str:
        if self.open_all:
            return "every target (allow-hosts '*')"
        allowed = [str(n) for n in self.networks] + list(self.patterns)
        return "public addresses" + (f", and {', '.join(allowed)}" if allowed else " only")

    def _name_allowed(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, p) for p in self.patterns)

    def check_address(self, ip: IPAddress, host: str = "") -> None:
        """Refuse a resolved address the policy does not allow (raises Refused)."""
        if self.open_all or (host and self._name_allowed(host.lower())):
            return
        if any(ip in n for n in self.networks if n.version == ip.version):
            return
        inner = _embedded_v4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        for candidate in (ip, inner):
            if candidate is None:
                continue
            if any(candidate in n for n in self.networks if n.version == candidate.version):
                return
            for network, why in _BLOCKED:
                if network.version == candidate.version and candidate in network:
                    shown = f"{ip} (carrying {candidate})" if candidate is not ip else str(ip)
                    raise Refused(
                        f"{host + ' resolves to ' if host and host != str(ip) else ''}{shown}, {why}; "
                        f"calls go only to public addresses: allow it with --allow-hosts {host or ip} "
                        "(or LAMBDAOP_ALLOW_HOSTS), for serve and validate alike"
                    )
        if not self.public:
            raise Refused(f"{host or ip} is not on the allow-list, and this policy allows nothing else")

    def check_url(self, url: str) -> None:
        """Judge a URL as written: a refused literal address or host name raises Refused (no DNS here)."""
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        if not host:
            raise Refused(f"{url!r} has no host")
        if self.open_all or self._name_allowed(host):
            return
        ip = literal_address(host)
        if ip is not None:
            self.check_address(ip, host)
            return
        for pattern in _NAMES:
            if fnmatch.fnmatchcase(host, pattern):
                raise Refused(
                    f"{host} is an internal name ({pattern}); calls go only to public addresses: allow it "
                    f"with --allow-hosts {host} (or LAMBDAOP_ALLOW_HOSTS), for serve and validate alike"
                )
        if not self.public:
            raise Refused(f"{host} is not on the allow-list, and this policy allows nothing else")


SECURE = Policy()


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses a name resolves to (the system resolver), in its order."""
    ip = literal_address(host)
    if ip is not None:
        return [ip]
    seen: list[IPAddress] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if family in (socket.AF_INET, socket.AF_INET6):
            addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if addr not in seen:
                seen.append(addr)
    return seen
