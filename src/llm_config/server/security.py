"""Who is calling from where: client address (trusted proxies), CIDR lists, bans, keys in query strings.

- **Client address**: the TCP peer, unless the peer is one of the `--trusted-proxy` networks; then
  `X-Forwarded-For` is walked from the right and the first hop that is not a trusted proxy is the
  client (the left part of the header is whatever the client chose to send, so it never counts).
  A hop may carry a port (`203.0.113.7:4711`, `[2001:db8::1]:443`); a hop that is not an address at
  all (`010.0.0.1`, `unknown`, garbage) becomes an opaque identity of its own (`hop:<text>`), rate
  limited and banned like any client — never the proxy, whose ban would lock everyone out.
- **CIDR lists** (`--allow-cidr`, `--deny-cidr`, IPv4 and IPv6): checked before anything else;
  IPv4-mapped IPv6 addresses are compared as IPv4.
- **Bans**: 10 failed authentications from one address within 10 minutes ban it for an hour
  (403 on every route). Loopback is exempt unless `--ban-loopback`, so local tooling and the
  project's own fuzzing cannot lock themselves out. `BanList` keeps failures and bans in this
  process; with `--redis-url` the server uses `bans.RedisBanList` instead, which shares them with
  every worker and replica through Redis (and falls back to this process's own while Redis is down).
"""

from __future__ import annotations

import builtins
import ipaddress
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import unquote_plus

from llm_config.errors import ValidationError

__all__ = [
    "BAN_SECONDS",
    "BAN_THRESHOLD",
    "BAN_WINDOW",
    "QUERY_KEY_PARAMS",
    "Ban",
    "BanList",
    "IPFilter",
    "Network",
    "client_address",
    "hop_address",
    "normalize_ip",
    "parse_networks",
    "parse_origins",
    "query_carries_key",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

BAN_THRESHOLD: Final = 10
BAN_WINDOW: Final = 600.0
BAN_SECONDS: Final = 3600.0
_MAX_TRACKED: Final = 100_000

QUERY_KEY_PARAMS: Final = frozenset({
    "api_key", "apikey", "api-key", "x-api-key", "key", "token", "access_token", "auth", "authorization",
    "bearer", "llmc_key",
})


def parse_networks(cidrs: Iterable[str], what: str) -> tuple[Network, ...]:
    """CIDRs (or single addresses) → networks; a bad one is a ValidationError naming the option."""
    out: list[Network] = []
    for text in cidrs:
        item = text.strip()
        if not item:
            continue
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValidationError(f"Invalid {what}: {item[:60]!r} is not an IPv4/IPv6 address or CIDR") from None
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None \
                and net.prefixlen >= 96:
            net = ipaddress.ip_network(f"{net.network_address.ipv4_mapped}/{net.prefixlen - 96}", strict=False)
        out.append(net)
    return tuple(out)


def parse_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """`--cors-origin` values: exact `scheme://host[:port]` origins (no wildcard), trailing slash dropped."""
    out: list[str] = []
    for origin in origins:
        text = origin.strip().rstrip("/")
        if not text:
            continue
        if text == "*" or not text.startswith(("http://", "https://")) or any(c in text for c in " ,\t*") \
                or "/" in text.split("://", 1)[1]:
            raise ValidationError(f"Invalid cors-origin {text[:60]!r}: use exact origins like https://app.example.com")
        out.append(text)
    return tuple(out)


def normalize_ip(text: str | None) -> Address | None:
    """An address object (IPv4-mapped IPv6 as IPv4, zone ids dropped), or None if `text` is not one."""
    if not text:
        return None
    item = text.strip()
    if item.startswith("[") and "]" in item:
        item = item[1:item.index("]")]
    item = item.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(item)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _in(addr: Address, networks: tuple[Network, ...]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)


_OPAQUE_PREFIX: Final = "hop:"
_MAX_OPAQUE: Final = 64


def hop_address(hop: str) -> Address | None:
    """An `X-Forwarded-For` hop as an address: `ip`, `ip:port`, `[v6]` or `[v6]:port`; None otherwise."""
    text = hop.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1:] if end != -1 else "x"
        if end == -1 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # an IPv6 address has at least two colons
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
        text = host
    return normalize_ip(text)


def _opaque(hop: str) -> str:
    """A hop that is no address, as an identity of its own (printable ASCII, bounded)."""
    shown = "".join(c if 33 <= ord(c) < 127 else "?" for c in hop.strip())[:_MAX_OPAQUE]
    return _OPAQUE_PREFIX + (shown or "empty")


def client_address(peer: str | None, forwarded_for: list[bytes], trusted: tuple[Network, ...]) -> str | None:
    """The real client: the peer, or the right-most untrusted `X-Forwarded-For` hop behind trusted proxies."""
    if peer is None:
        return None
    if not trusted:
        if ":" not in peer:  # dotted IPv4 from the server is canonical already
            return peer
        canonical = normalize_ip(peer)
        return str(canonical) if canonical is not None else peer
    addr = normalize_ip(peer)
    if addr is None or not _in(addr, trusted):
        return str(addr) if addr is not None else peer
    hops = [h for raw in forwarded_for for h in raw.decode("latin-1").split(",")]
    client = str(addr)
    for hop in reversed(hops):
        hop_addr = hop_address(hop)
        if hop_addr is None:
            return _opaque(hop)  # not an address: its own identity, never the proxy's
        client = str(hop_addr)
        if not _in(hop_addr, trusted):
            break
    return client


class IPFilter:
    """`--allow-cidr` (if any, only those) and `--deny-cidr` (never those)."""

    __slots__ = ("allow", "deny")

    def __init__(self, allow: tuple[Network, ...], deny: tuple[Network, ...]) -> None:
        self.allow = allow
        self.deny = deny

    @property
    def active(self) -> bool:
        return bool(self.allow or self.deny)

    def refuses(self, ip: str | None) -> bool:
        if not self.allow and not self.deny:
            return False
        addr = normalize_ip(ip)
        if addr is None:
            return bool(self.allow)  # no usable address: only an allow-list can say no
        if self.deny and _in(addr, self.deny):
            return True
        return bool(self.allow) and not _in(addr, self.allow)


def query_carries_key(query: bytes) -> bool:
    """Whether a query string names a credential parameter or holds something shaped like an API key."""
    if not query:
        return False
    lowered = query.lower()
    if b"llmc_" in lowered or b"llmc%5f" in lowered:
        return True
    for part in query.split(b"&"):
        name = part.split(b"=", 1)[0]
        if not name:
            continue
        text = unquote_plus(name.decode("latin-1")).strip().lower()
        if text in QUERY_KEY_PARAMS:
            return True
    return False


@dataclass(slots=True)
class Ban:
    """One banned address."""

    ip: str
    banned_at: float
    expires_at: float
    failures: int

    def to_json(self) -> dict[str, object]:
        return {"ip": self.ip, "banned_at": _rfc3339(self.banned_at), "expires_at": _rfc3339(self.expires_at),
                "failures": self.failures}


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BanList:
    """Failed authentications per address and the bans they earn (in this process)."""

    def __init__(
        self, *, threshold: int = BAN_THRESHOLD, window: float = BAN_WINDOW, duration: float = BAN_SECONDS,
        ban_loopback: bool = False, clock: Callable[[], float] = time.time,
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.duration = duration
        self.ban_loopback = ban_loopback
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._bans: dict[str, Ban] = {}

    def banned(self, ip: str | None) -> Ban | None:
        """The live ban of `ip`, if any (cheap when nobody is banned)."""
        if not self._bans or ip is None:
            return None
        ban = self._bans.get(ip)
        if ban is None:
            return None
        if ban.expires_at <= self._clock():
            del self._bans[ip]
            return None
        return ban

    def _exempt(self, ip: str) -> bool:
        if self.ban_loopback:
            return False
        addr = normalize_ip(ip)
        return addr is not None and addr.is_loopback

    def record_failure(self, ip: str | None) -> Ban | None:
        """Count a failed authentication; returns the new ban if this one crossed the threshold."""
        if ip is None or self.threshold <= 0 or self._exempt(ip):
            return None
        now = self._clock()
        seen = self._failures.get(ip)
        if seen is None:
            if len(self._failures) >= _MAX_TRACKED:
                self._forget_old(now)
            seen = self._failures[ip] = deque(maxlen=self.threshold)
        seen.append(now)
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) < self.threshold or self.banned(ip) is not None:
            return None
        ban = Ban(ip=ip, banned_at=now, expires_at=now + self.duration, failures=len(seen))
        self._bans[ip] = ban
        seen.clear()
        return ban

    def _forget_old(self, now: float) -> None:
        for ip in [ip for ip, seen in self._failures.items() if not seen or seen[-1] <= now - self.window]:
            del self._failures[ip]
        if len(self._failures) >= _MAX_TRACKED:  # under a flood from many addresses: start over
            self._failures.clear()

    def list(self) -> list[Ban]:
        now = self._clock()
        for ip in [ip for ip, ban in self._bans.items() if ban.expires_at <= now]:
            del self._bans[ip]
        return sorted(self._bans.values(), key=lambda b: b.banned_at)

    def lift(self, ip: str) -> bool:
        """Lift a ban (and forget the failures behind it); False if `ip` was not banned."""
        self._failures.pop(ip, None)
        return self._bans.pop(ip, None) is not None

    # the edge and the admin routes call these; `RedisBanList` shares the state behind them

    async def arecord_failure(self, ip: str | None) -> Ban | None:
        """`record_failure`: the new ban only to the one caller that should announce (audit) it."""
        return self.record_failure(ip)

    async def alist(self) -> builtins.list[Ban]:
        return self.list()

    async def alift(self, ip: str) -> bool:
        return self.lift(ip)

    async def aclose(self) -> None:
        """Nothing to release in this process."""
