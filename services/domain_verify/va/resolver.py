"""DNS lookups through a validating resolver, with DNSSEC outcomes kept apart from "no record".

The resolver we ask (a local Unbound in dev/test, the pod's own Unbound
anchored at the IANA root in production) validates DNSSEC; we ask with the
DO and AD bits and read its verdict back:

* a secure answer has the AD bit (`Answer.authenticated`),
* an insecure one (unsigned zone) has not, and is still an answer,
* a bogus one comes back SERVFAIL, usually with an Extended DNS Error (RFC
  8914) in 5..12 ("DNSSEC Bogus", "Signature Expired", "DNSKEY Missing"...):
  that is `LookupFailure("dnssec_bogus")`, never an empty answer. Since
  SC-085v2 (BR 3.2.2.8.1 and 3.2.2.4), validation and CAA lookups must
  validate DNSSEC where a zone is signed; this is where that is enforced.

NXDOMAIN is an answer (no such name), not a failure; whether it matters is
the caller's business (CAA climbs past it, the DNS-change method fails on it).
"""

from __future__ import annotations

import dataclasses
import ipaddress

import dns.asyncquery
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
from prometheus_client import Counter

# RFC 8914 codes that mean the resolver found the answer, and found it failed DNSSEC validation.
DNSSEC_EDE = frozenset({1, 2, 5, 6, 7, 8, 9, 10, 11, 12})

LOOKUPS = Counter("cacert_domain_verify_dns_lookups_total",
                  "DNS lookups of validation and CAA checks, by type and outcome (secure, insecure, nxdomain, "
                  "or the failure: dnssec_bogus, servfail, timeout, refused, ...)", ["rdtype", "outcome"])

REASONS = ("servfail", "timeout", "refused", "dnssec_bogus", "network_error", "bad_response")


class LookupFailure(Exception):
    """No usable answer: `reason` is one of REASONS, `detail` says more (EDE text, rcode, errno)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Answer:
    name: str
    rdtype: str
    records: list[str]
    """The RRset of `rdtype` at the end of the CNAME chain, in presentation form (TXT: the joined strings)."""
    authenticated: bool
    """The resolver's AD bit: every RRset in the answer validated up to a trust anchor."""
    nxdomain: bool = False
    cname_chain: list[str] = dataclasses.field(default_factory=list)

    @property
    def dnssec(self) -> str:
        return "secure" if self.authenticated else "insecure"


def _text(rdata: object) -> str:
    strings = getattr(rdata, "strings", None)
    if strings is not None:  # TXT: the strings of one record concatenated (RFC 7208 3.3 style)
        return b"".join(strings).decode("utf-8", errors="replace")
    return str(rdata)


class Resolver:
    """Asks the configured validating resolvers in order; the first definitive answer wins."""

    def __init__(self, nameservers: list[tuple[str, int]], *, source: str | None = None,
                 timeout: float = 5.0) -> None:
        if not nameservers:
            raise ValueError("at least one resolver is needed")
        for host, _ in nameservers:
            ipaddress.ip_address(host)  # a resolver given by name would need a resolver to find it
        self.nameservers = list(nameservers)
        self.source = source
        self.timeout = timeout

    def _query(self, name: str, rdtype: str) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, want_dnssec=True, use_edns=0, payload=1232)
        query.flags |= dns.flags.AD | dns.flags.RD
        return query

    async def _ask(self, host: str, port: int, query: dns.message.Message) -> dns.message.Message:
        response, _ = await dns.asyncquery.udp_with_fallback(query, host, timeout=self.timeout, port=port,
                                                            source=self.source)
        return response

    async def lookup(self, name: str, rdtype: str) -> Answer:
        """The `rdtype` RRset at `name` (CNAMEs followed by the resolver), or LookupFailure."""
        try:
            answer = await self._lookup(name, rdtype)
        except LookupFailure as exc:
            LOOKUPS.labels(rdtype, exc.reason).inc()
            raise
        LOOKUPS.labels(rdtype, "nxdomain" if answer.nxdomain else answer.dnssec).inc()
        return answer

    async def _lookup(self, name: str, rdtype: str) -> Answer:
        fqdn = dns.name.from_text(name)
        query = self._query(fqdn.to_text(), rdtype)
        failure = LookupFailure("servfail", "no resolver answered")
        for host, port in self.nameservers:
            try:
                response = await self._ask(host, port, query)
            except dns.exception.Timeout:
                failure = LookupFailure("timeout", f"{host}:{port} did not answer in {self.timeout:g}s")
                continue
            except OSError as exc:
                failure = LookupFailure("network_error", f"{host}:{port}: {exc.strerror or exc}")
                continue
            except dns.exception.DNSException as exc:
                failure = LookupFailure("bad_response", f"{host}:{port}: {type(exc).__name__}")
                continue
            rcode = response.rcode()
            if rcode == dns.rcode.NOERROR or rcode == dns.rcode.NXDOMAIN:
                return self._answer(fqdn, rdtype, response)
            errors = [e for e in response.extended_errors()]
            if rcode == dns.rcode.SERVFAIL and any(int(e.code) in DNSSEC_EDE for e in errors):
                # Definitive: the resolver validated and the data is bogus. Asking another resolver would
                # only let an attacker who controls one path win, so we stop here.
                raise LookupFailure("dnssec_bogus", "; ".join(_ede_text(e) for e in errors))
            reason = "refused" if rcode == dns.rcode.REFUSED else "servfail"
            detail = dns.rcode.to_text(rcode)
            if errors:
                detail += " (" + "; ".join(_ede_text(e) for e in errors) + ")"
            failure = LookupFailure(reason, f"{host}:{port}: {detail}")
        raise failure

    def _answer(self, fqdn: dns.name.Name, rdtype: str, response: dns.message.Message) -> Answer:
        wanted = dns.rdatatype.from_text(rdtype)
        current = fqdn
        chain: list[str] = []
        records: list[str] = []
        for _ in range(16):  # a CNAME chain longer than this is a loop
            rrset = next((r for r in response.answer if r.name == current and r.rdtype == wanted), None)
            if rrset is not None:
                records = [_text(rd) for rd in rrset]
                break
            alias = next((r for r in response.answer
                          if r.name == current and r.rdtype == dns.rdatatype.CNAME), None)
            if alias is None:
                break
            current = alias[0].target
            chain.append(current.to_text())
        return Answer(name=fqdn.to_text(), rdtype=rdtype, records=records,
                      authenticated=bool(response.flags & dns.flags.AD),
                      nxdomain=response.rcode() == dns.rcode.NXDOMAIN and not records, cname_chain=chain)

    async def addresses(self, name: str) -> list[str]:
        """A and AAAA addresses of `name` (IPv4 first); LookupFailure if neither lookup answered."""
        found: list[str] = []
        failures: list[LookupFailure] = []
        for rdtype in ("A", "AAAA"):
            try:
                found.extend((await self.lookup(name, rdtype)).records)
            except LookupFailure as exc:
                if exc.reason == "dnssec_bogus":
                    raise
                failures.append(exc)
        if not found and failures:
            raise failures[0]
        return found


def _ede_text(error: dns.edns.EDEOption) -> str:
    try:
        label = dns.edns.EDECode(int(error.code)).name.lower()
    except ValueError:
        label = f"ede_{int(error.code)}"
    return f"{label}: {error.text}" if error.text else label
