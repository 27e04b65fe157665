"""Publishing records in the local DNS server by RFC 2136 dynamic update with TSIG.

What a member does at their DNS provider (a TXT record for the DNS-change
method, a CAA record), the demo and the tests do here against the stack's
authoritative server, signed with the stack's TSIG key, exactly as an ACME
client's `rfc2136` plugin would. The validating resolver is then asked to
forget what it cached for the name, so the next lookup sees the change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from collections.abc import Mapping

import dns.asyncquery
import dns.name
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update

# The zones the local server hosts that accept updates (longest first: the most specific zone wins).
UPDATABLE_ZONES = ("signed.test.", "bogus.test.", "example.org.", "example.", "test.")


class ZoneUpdateError(RuntimeError):
    """The server refused an update (the message names the rcode)."""


@dataclasses.dataclass(frozen=True)
class LocalZone:
    server: str
    port: int
    tsig_name: str
    tsig_algorithm: str
    tsig_secret: str = dataclasses.field(repr=False)
    control_config: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LocalZone:
        """From the CACERT_DNS_* variables the stack exports (devstack.endpoints)."""
        values = os.environ if env is None else env
        try:
            host, _, port = values["CACERT_DNS_AUTH"].rpartition(":")
            return cls(host, int(port), values["CACERT_DNS_TSIG_NAME"], values["CACERT_DNS_TSIG_ALGORITHM"],
                       values["CACERT_DNS_TSIG_SECRET"], values.get("CACERT_DNS_CONTROL_CONFIG") or None)
        except (KeyError, ValueError) as exc:
            raise ZoneUpdateError(f"the local DNS server's settings are missing ({exc}): is the stack up?") from exc

    @staticmethod
    def zone_of(name: str) -> str:
        fqdn = name.rstrip(".").lower() + "."
        for zone in UPDATABLE_ZONES:
            if fqdn == zone or fqdn.endswith("." + zone):
                return zone
        raise ZoneUpdateError(f"{name} is in none of the local updatable zones {', '.join(UPDATABLE_ZONES)}")

    async def _send(self, name: str, rdtype: str, values: list[str], ttl: int) -> None:
        """Replace the RRset (no values: delete it)."""
        zone = self.zone_of(name)
        keyring = dns.tsigkeyring.from_text({self.tsig_name: self.tsig_secret})
        update = dns.update.UpdateMessage(zone, keyring=keyring, keyname=dns.name.from_text(self.tsig_name),
                                          keyalgorithm=dns.name.from_text(self.tsig_algorithm))
        owner = dns.name.from_text(name)
        update.delete(owner, rdtype)
        for value in values:
            update.add(owner, ttl, rdtype, value)
        response = await dns.asyncquery.tcp(update, self.server, port=self.port, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            raise ZoneUpdateError(f"update of {name} {rdtype} refused: {dns.rcode.to_text(response.rcode())}")
        await self.flush(name)

    async def publish(self, name: str, rdtype: str, *values: str, ttl: int = 1) -> None:
        """Make `values` the whole `rdtype` RRset at `name` (TXT values quoted as in a zone file)."""
        await self._send(name, rdtype, list(values), ttl)

    async def remove(self, name: str, rdtype: str) -> None:
        await self._send(name, rdtype, [], 0)

    async def flush(self, name: str) -> None:
        """Forget what the validating resolver cached at `name` (when unbound-control is reachable)."""
        control = shutil.which("unbound-control")
        if not control or not self.control_config:
            return
        # `flush` alone forgets only A, AAAA, NS, SOA, CNAME, DNAME, MX, PTR, SRV and NAPTR, not TXT or CAA;
        # `flush_zone` forgets every type at and below the name (a walk of the whole cache, tiny here).
        process = await asyncio.create_subprocess_exec(
            control, "-c", self.control_config, "flush_zone", name,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await process.wait()
        process = await asyncio.create_subprocess_exec(
            control, "-c", self.control_config, "flush_negative",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await process.wait()

    async def split_view(self, name: str, rdtype: str, value: str, *, view: str = "perspective-split") -> None:
        """Give queries from the split view's source address (one perspective) a different answer."""
        await self._control("view_local_data", view, f"{name.rstrip('.')}. 1 IN {rdtype} {value}")

    async def clear_split_view(self, name: str, *, view: str = "perspective-split") -> None:
        await self._control("view_local_data_remove", view, name.rstrip(".") + ".")

    async def _control(self, *args: str) -> None:
        control = shutil.which("unbound-control")
        if not control or not self.control_config:
            raise ZoneUpdateError("unbound-control or CACERT_DNS_CONTROL_CONFIG is missing")
        process = await asyncio.create_subprocess_exec(control, "-c", self.control_config, *args,
                                                       stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.STDOUT)
        out, _ = await process.communicate()
        if process.returncode != 0 or b"error" in out.lower():
            raise ZoneUpdateError(f"unbound-control {' '.join(args[:2])} failed: {out.decode(errors='replace')}")
