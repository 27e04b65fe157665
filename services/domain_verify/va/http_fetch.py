"""A GET for domain validation that cannot be turned against the CA's own network.

What BR 3.2.2.4.18 / 3.2.2.4.19 allow and what a validation server must
refuse, in one place:

* the host is resolved with the validation resolver (DNSSEC as everywhere
  else), and the connection goes to an address we checked, not to whatever
  a second lookup inside the HTTP client returns (no DNS rebinding);
* private, loopback, link-local, multicast and reserved addresses are
  refused (`private_address`) unless an allow-list CIDR covers them (dev and
  test serve challenges on 127.0.0.1);
* redirects are followed at most 10 times and only to `http`/`https` on
  port 80 or 443 (BR 3.2.2.4.18 and .19: "redirects ... MUST be to ... port
  80 or 443"); `http_port` stands in for 80 when dev/test serve elsewhere;
* the body is capped (`max_bytes`) and the whole fetch, redirects
  included, has one time limit.

TLS certificates of an `https` redirect target are not checked: the
challenge proves control by its content, as in ACME (RFC 8555 8.3).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from services.domain_verify.va.resolver import LookupFailure, Resolver

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 10


class FetchFailure(Exception):
    """The fetch gave no usable response: `reason` is a short code, `detail` the rest."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Fetched:
    url: str
    """The URL that answered (after redirects)."""
    status: int
    body: bytes
    address: str
    redirects: list[str]


def _refused_address(address: str, allowed: Sequence[Network]) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allowed):
        return False
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Pinned(AbstractResolver):
    """Hands aiohttp the addresses we already resolved and checked, and nothing else."""

    def __init__(self, addresses: list[str]) -> None:
        self._addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        return [{"hostname": host, "host": a, "port": port,
                 "family": socket.AF_INET6 if ":" in a else socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST} for a in self._addresses]

    async def close(self) -> None:
        return None


class Fetcher:
    def __init__(self, resolver: Resolver, *, http_port: int = 80, allow_private: Sequence[Network] = (),
                 timeout: float = 10.0, max_bytes: int = 64 * 1024) -> None:
        self.resolver = resolver
        self.http_port = http_port
        self.allow_private = list(allow_private)
        self.timeout = timeout
        self.max_bytes = max_bytes

    def url_for(self, domain: str, path: str) -> str:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{domain}{port}{path}"

    async def get(self, url: str) -> Fetched:
        """GET `url`, following allowed redirects; FetchFailure for anything not a response."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._follow(url)
        except TimeoutError:
            raise FetchFailure("timeout", f"no complete answer in {self.timeout:g}s") from None

    async def _follow(self, url: str) -> Fetched:
        redirects: list[str] = []
        while True:
            status, body, address, location = await self._hop(url)
            if status in (301, 302, 303, 307, 308) and location is not None:
                if len(redirects) >= MAX_REDIRECTS:
                    raise FetchFailure("too_many_redirects", f"more than {MAX_REDIRECTS}")
                target = urljoin(url, location)
                self._check_redirect(target)
                redirects.append(target)
                url = target
                continue
            return Fetched(url=url, status=status, body=body, address=address, redirects=redirects)

    def _check_redirect(self, target: str) -> None:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https"):
            raise FetchFailure("redirect_refused", f"to scheme {parts.scheme or '(none)'}")
        try:
            port = parts.port
        except ValueError:
            raise FetchFailure("redirect_refused", "to an invalid port") from None
        if port is not None and port not in (80, 443, self.http_port):
            raise FetchFailure("redirect_refused", f"to port {port} (only 80 and 443)")

    async def _addresses(self, host: str) -> list[str]:
        if _is_address(host):
            candidates = [host]
        else:
            try:
                candidates = await self.resolver.addresses(host)
            except LookupFailure as exc:
                raise FetchFailure(exc.reason, f"{host}: {exc.detail}") from None
            if not candidates:
                raise FetchFailure("no_address", f"{host} has no A or AAAA record")
        usable = [a for a in candidates if not _refused_address(a, self.allow_private)]
        if not usable:
            raise FetchFailure("private_address", f"{host} resolves only to {', '.join(candidates)}")
        return usable

    async def _hop(self, url: str) -> tuple[int, bytes, str, str | None]:
        parts = urlsplit(url)
        if not parts.hostname:
            raise FetchFailure("bad_url", url)
        addresses = await self._addresses(parts.hostname)
        if parts.port is None and parts.scheme == "http" and self.http_port != 80:
            url = parts._replace(netloc=f"{parts.hostname}:{self.http_port}").geturl()
        connector = aiohttp.TCPConnector(resolver=_Pinned(addresses), ssl=False, use_dns_cache=False,
                                         force_close=True)
        headers = {"User-Agent": "cacert-domain-verify (+BR 3.2.2.4)", "Accept": "*/*"}
        try:
            async with aiohttp.ClientSession(connector=connector) as session, session.get(
                    url, allow_redirects=False, headers=headers, auto_decompress=False) as response:
                body = bytearray()
                async for chunk in response.content.iter_chunked(4096):
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise FetchFailure("response_too_large", f"more than {self.max_bytes} bytes")
                peer = response.connection.transport.get_extra_info("peername") if (
                    response.connection and response.connection.transport) else None
                address = str(peer[0]) if peer else addresses[0]
                return response.status, bytes(body), address, response.headers.get("Location")
        except aiohttp.ClientConnectorError as exc:
            raise FetchFailure("connection_failed", f"{parts.hostname}: {exc.os_error.strerror or exc}") from None
        except aiohttp.ClientError as exc:
            raise FetchFailure("http_error", f"{parts.hostname}: {type(exc).__name__}") from None
