"""The local DNS: Knot DNS (authoritative, `dns-auth`) and Unbound (validating resolver, `dns`).

Both come from Debian packages (devstack/dns_packages.py installs them when missing) and run in the
foreground from configs that `prepare()` writes into `<state>/dns/`, as root, without chroot or
privilege drop, on loopback only:

* **dns-auth**: Knot on 127.0.0.1:5300 (CACERT_STACK_DNS_AUTH_PORT), the server dynamic updates
  (RFC 2136) go to. It hosts

  - `.`: an unsigned root zone, so a name under a TLD hosted nowhere (`foo.nosuchtld`) gets an
    authoritative NXDOMAIN from it, an answer and not a failure (no CAA record, say);
  - `example.org.`, `example.`, `test.`: unsigned;
  - `signed.test.`: signed by Knot itself (automatic DNSSEC signing, ECDSA P-256, keys never rolled),
    re-signed on every update;
  - `bogus.test.`: signed the same way, but the resolver's trust anchor for it is deliberately wrong,
    so every answer from it is BOGUS.

  Each zone accepts updates signed with the TSIG key `cacert-test` (hmac-sha256), whose secret is
  generated once per state dir into `<state>/dns/tsig.secret` (0600). Knot writes every change back
  into its zone files (`zonefile-sync: 0`), so published records survive a restart like at a real
  DNS host; devstack writes the base content (SOA, NS) only into a fresh state dir, or again, with
  the journal emptied, when that base content changed in the code. Keys stay in Knot's KASP
  database (`<state>/dns/knot/db/keys`), so a restart keeps them and the resolver's trust anchor.

* **dns**: Unbound on 127.0.0.1:5353 (CACERT_STACK_DNS_PORT), what services and tests resolve with.
  It forwards `.` to Knot (over TCP, so that while Knot is stopped a lookup fails at once rather than
  after timeouts), validates DNSSEC with two trust anchors only, computed at its start:
  the real DS of `signed.test.` (from the DNSKEY Knot serves) and the DS of a random key for
  `bogus.test.`. Everything else is insecure: there is no root anchor, so nothing here ever reaches
  for the real IANA root. With `ede: yes` a bogus answer is SERVFAIL with an Extended DNS Error
  (RFC 8914, codes 6-12). Caches are capped at 5 s (1 s negative), and `unbound-control`
  (127.0.0.1:8953, CACERT_STACK_DNS_CONTROL_PORT, no TLS: loopback) flushes them and sets local data;
  `<state>/dns/unbound/control.conf` is the config for `unbound-control -c` (CACERT_DNS_CONTROL_CONFIG).

  - View `perspective-split` (`view-first: yes`) answers clients whose source address is 127.0.0.3
    (they still connect to 127.0.0.1:5353; Linux lets a socket bind any 127/8 source): data a test
    puts there with `unbound-control view_local_data perspective-split "name. 1 IN TXT \\"x\\""` is
    what that one perspective sees, while every other name resolves for it as for everyone. (Unbound
    makes such a name a `transparent` local zone of the view: other types at that very name are
    NODATA for the view until `view_local_data_remove`.)
  - Zone `servfail.test.`: forwarded over TCP to 127.0.0.1:9, where nothing listens, so every lookup
    under it (`x.servfail.test`) fails at once with a plain SERVFAIL, no DNSSEC error: the "lookup
    failure" case (CAA must then refuse). Over UDP Unbound would wait out its timeouts (tens of
    seconds) first. Knot's `test.` zone has nothing there; it is never asked.

Production has none of this: each network perspective runs its own validating resolver, anchored at
the IANA root, in its own network; sharing one resolver and cache here is a dev convenience.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY

from devstack import dns_packages, paths, process
from devstack.component import Component, Say
from devstack.endpoints import HOST, TSIG_ALGORITHM, TSIG_KEY_NAME
from devstack.errors import StackError

NAMESERVER = "ns.devstack."
"""The NS of every zone; its address record lives in the root zone (no TLD `devstack.` is hosted)."""
SIGNED_ZONE = "signed.test."
BOGUS_ZONE = "bogus.test."
SERVFAIL_ZONE = "servfail.test."
DEAD_ADDRESS = (HOST, 9)
"""Where the resolver forwards SERVFAIL_ZONE over TCP: the discard port, which nothing here listens on."""
SPLIT_VIEW = "perspective-split"
SPLIT_VIEW_SOURCE = "127.0.0.3"
UNSIGNED_ZONES = (".", "example.org.", "example.", "test.")
SIGNED_ZONES = (SIGNED_ZONE, BOGUS_ZONE)
ZONES = (*UNSIGNED_ZONES, *SIGNED_ZONES)
POLICY = "devstack"
TTL = 60
"""TTL of the base records; the resolver caps what it caches at 5 s anyway."""


def zone_file_name(zone: str) -> str:
    return "root.zone" if zone == "." else f"{zone.rstrip('.')}.zone"


def zone_text(zone: str) -> str:
    """The base content of `zone`: SOA and NS (and, in the root, the nameserver's address)."""
    contact = "hostmaster." + ("devstack." if zone == "." else zone)
    lines = [
        f"$ORIGIN {zone}",
        f"$TTL {TTL}",
        # Negative answers are cached for min(SOA TTL, minimum) = 1 s (RFC 2308).
        f"@ SOA {NAMESERVER} {contact} 1 3600 600 86400 1",
        f"@ NS {NAMESERVER}",
    ]
    if zone == ".":
        lines.append(f"{NAMESERVER} A {HOST}")
    return "\n".join(lines) + "\n"


def query(server: tuple[str, int], name: str, rdtype: str, *, source: str | None = None, dnssec: bool = False,
          timeout: float = 2.0, tcp: bool = False) -> dns.message.Message:
    """One query to `server` (EDNS on, AD asked for, DO when `dnssec`)."""
    request = dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=dnssec)
    request.flags |= dns.flags.AD
    send = dns.query.tcp if tcp else dns.query.udp
    return send(request, server[0], port=server[1], timeout=timeout, source=source)


def _answers(server: tuple[str, int], name: str, rdtype: str, *, authoritative: bool) -> bool:
    try:
        response = query(server, name, rdtype, timeout=1.0)
    except (dns.exception.DNSException, OSError):
        return False
    if response.rcode() != dns.rcode.NOERROR or not response.answer:
        return False
    return not authoritative or bool(response.flags & dns.flags.AA)


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` atomically, and not at all when the file already says it (keeps mtimes meaningful)."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


def tsig_secret() -> str:
    """The TSIG secret of this state dir, generated on first use (base64 of 32 random bytes, mode 0600)."""
    path = paths.dns_tsig_secret_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_if_changed(path, base64.b64encode(secrets.token_bytes(32)).decode() + "\n", mode=0o600)
    return path.read_text().strip()


# -- Knot -----------------------------------------------------------------------------------------


class KnotServer(Component):
    """Knot DNS, authoritative for ZONES, accepting TSIG-signed dynamic updates."""

    name = "dns-auth"
    title = "Knot DNS (authoritative)"
    ready_timeout = 30.0
    stop_timeout = 10.0

    def ports(self) -> list[tuple[int, str]]:
        return [(self.endpoints.dns_auth, "CACERT_STACK_DNS_AUTH_PORT")]

    def address(self) -> str:
        return f"dns://{self.endpoints.dns_auth_server} (updates, TSIG {TSIG_KEY_NAME})"

    @property
    def root(self) -> Path:
        return paths.dns_dir() / "knot"

    @property
    def config_file(self) -> Path:
        return self.root / "knot.conf"

    @property
    def zones_dir(self) -> Path:
        return self.root / "zones"

    def data_dirs(self) -> list[Path]:
        return [self.root]

    def prepare(self, say: Say) -> None:
        dns_packages.ensure_installed(say)
        for directory in (self.root, self.zones_dir, self.root / "db", self.root / "run"):
            directory.mkdir(parents=True, exist_ok=True)
        self._base_zones()
        _write_if_changed(self.config_file, self.config(tsig_secret()), mode=0o600)
        check = subprocess.run([dns_packages.require("knotc"), "-c", str(self.config_file), "conf-check"],
                               capture_output=True, text=True, check=False, timeout=30,
                               stdin=subprocess.DEVNULL)  # fmt: skip
        if check.returncode != 0:
            raise StackError(f"Knot rejects the config devstack wrote ({self.config_file}):\n"
                             f"{check.stdout}{check.stderr}".rstrip())  # fmt: skip

    def _base_zones(self) -> None:
        """Zone files with the base content, unless Knot's own (with the updates) derive from this very base."""
        base = "".join(zone_text(zone) for zone in ZONES)
        marker = self.root / "zones.base"
        files = [self.zones_dir / zone_file_name(zone) for zone in ZONES]
        if all(path.exists() for path in files) and marker.exists() and marker.read_text() == base:
            return
        # A changed base: start the zones over (the journal's changes apply to the old files only).
        for stale in ("journal", "timers"):
            shutil.rmtree(self.root / "db" / stale, ignore_errors=True)
        for zone, path in zip(ZONES, files, strict=True):
            _write_if_changed(path, zone_text(zone))
        _write_if_changed(marker, base)

    def config(self, secret: str) -> str:
        zones = []
        for zone in ZONES:
            zones.append(f"  - domain: {zone}\n    file: {zone_file_name(zone)}")
            if zone in SIGNED_ZONES:
                zones.append(f"    dnssec-signing: on\n    dnssec-policy: {POLICY}")
        return f"""# Written by devstack (devstack/dns_server.py) at every start of dns-auth; edits are lost.
server:
    rundir: "{self.root / "run"}"
    listen: {HOST}@{self.endpoints.dns_auth}
    identity: ""
    version: ""

control:
    listen: knot.sock

log:
  - target: stdout
    any: info

database:
    storage: "{self.root / "db"}"
    journal-db-max-size: 256M
    kasp-db-max-size: 64M
    timer-db-max-size: 16M

key:
  - id: {TSIG_KEY_NAME}
    algorithm: {TSIG_ALGORITHM}
    secret: {secret}

acl:
  - id: tsig-update
    key: {TSIG_KEY_NAME}
    action: update

policy:
  - id: {POLICY}
    algorithm: ecdsap256sha256
    ksk-lifetime: 0
    zsk-lifetime: 0
    nsec3: off

template:
  - id: default
    storage: "{self.zones_dir}"
    acl: tsig-update
    semantic-checks: on
    # Every change (update, signature) is written back to the zone file at once.
    zonefile-sync: 0
    zonefile-load: whole
    journal-content: changes

zone:
{chr(10).join(zones)}
"""

    def command(self) -> list[str]:
        return [dns_packages.runnable("knotd"), "-c", str(self.config_file)]

    def healthy(self) -> bool:
        """Every zone loaded (its SOA answered authoritatively), the signed ones with their DNSKEY."""
        if not process.port_open(self.endpoints.dns_auth):
            return False  # not listening yet: skip the UDP timeouts
        server = (HOST, self.endpoints.dns_auth)
        return all(_answers(server, zone, "SOA", authoritative=True) for zone in ZONES) and all(
            _answers(server, zone, "DNSKEY", authoritative=True) for zone in SIGNED_ZONES
        )


# -- Unbound --------------------------------------------------------------------------------------


def key_signing_ds(server: tuple[str, int], zone: str) -> list[str]:
    """DS records (SHA-256) of the key-signing keys `server` publishes for `zone`, in zone-file text."""
    try:
        response = query(server, zone, "DNSKEY", dnssec=True, tcp=True, timeout=5.0)
    except (dns.exception.DNSException, OSError) as exc:
        raise StackError(f"could not read the DNSKEY of {zone} from Knot at {server[0]}:{server[1]}: {exc}") from exc
    name = dns.name.from_text(zone)
    rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    keys = [key for key in (rrset or []) if key.flags & 0x0001]  # SEP: the KSK
    if not keys:
        raise StackError(f"Knot serves no key-signing DNSKEY for {zone} yet")
    return [f"{zone} DS {dns.dnssec.make_ds(name, key, 'SHA256')}" for key in keys]


def wrong_ds(zone: str, avoid: list[str]) -> str:
    """A well-formed DS for `zone` that matches none of its keys: that of a random ECDSA P-256 key."""
    name = dns.name.from_text(zone)
    while True:
        key = dns.rdtypes.ANY.DNSKEY.DNSKEY(dns.rdataclass.IN, dns.rdatatype.DNSKEY, 257, 3,
                                            dns.dnssec.Algorithm.ECDSAP256SHA256, secrets.token_bytes(64))
        ds = f"{zone} DS {dns.dnssec.make_ds(name, key, 'SHA256')}"
        tags = {record.split()[2] for record in avoid}
        if ds.split()[2] not in tags:
            return ds


class UnboundResolver(Component):
    """Unbound: validating resolver over Knot, with the split view and remote control."""

    name = "dns"
    title = "Unbound (validating resolver)"
    requires = ("dns-auth",)
    ready_timeout = 30.0
    stop_timeout = 10.0

    def ports(self) -> list[tuple[int, str]]:
        return [
            (self.endpoints.dns, "CACERT_STACK_DNS_PORT"),
            (self.endpoints.dns_control, "CACERT_STACK_DNS_CONTROL_PORT"),
        ]

    def address(self) -> str:
        return f"dns://{self.endpoints.dns_resolver} (control {HOST}:{self.endpoints.dns_control})"

    @property
    def root(self) -> Path:
        return paths.dns_dir() / "unbound"

    @property
    def config_file(self) -> Path:
        return self.root / "unbound.conf"

    def data_dirs(self) -> list[Path]:
        return [self.root]

    def prepare(self, say: Say) -> None:
        dns_packages.ensure_installed(say)
        self.root.mkdir(parents=True, exist_ok=True)
        knot = (HOST, self.endpoints.dns_auth)
        if not _answers(knot, SIGNED_ZONE, "DNSKEY", authoritative=True):
            raise StackError(f"the resolver needs Knot (dns-auth) answering on {knot[0]}:{knot[1]}; "
                             "start both: `python -m devstack up --only dns`")  # fmt: skip
        anchors = key_signing_ds(knot, SIGNED_ZONE)
        anchors.append(wrong_ds(BOGUS_ZONE, key_signing_ds(knot, BOGUS_ZONE)))
        _write_if_changed(self.config_file, self.config(anchors))
        _write_if_changed(paths.dns_control_config(), self.control_config())
        check = subprocess.run([dns_packages.require("unbound-checkconf"), str(self.config_file)],
                               capture_output=True, text=True, check=False, timeout=30,
                               stdin=subprocess.DEVNULL)  # fmt: skip
        if check.returncode != 0:
            raise StackError(f"Unbound rejects the config devstack wrote ({self.config_file}):\n"
                             f"{check.stdout}{check.stderr}".rstrip())  # fmt: skip

    def _remote_control(self) -> str:
        return f"""remote-control:
    control-enable: yes
    control-interface: {HOST}
    control-port: {self.endpoints.dns_control}
    # Loopback only, like everything in the stack: no TLS keys to generate or lose.
    control-use-cert: no
"""

    def control_config(self) -> str:
        return f"""# For `unbound-control -c {paths.dns_control_config()} <command>`; written by devstack.
server:
    username: ""
    chroot: ""

{self._remote_control()}"""

    def config(self, anchors: list[str]) -> str:
        trust = "\n".join(f'    trust-anchor: "{anchor}"' for anchor in anchors)
        return f"""# Written by devstack (devstack/dns_server.py) at every start of dns; edits are lost.
server:
    username: ""
    chroot: ""
    directory: "{self.root}"
    pidfile: "{self.root / "unbound.pid"}"
    use-syslog: no
    logfile: ""
    log-time-ascii: yes
    verbosity: 1
    log-servfail: yes
    val-log-level: 2

    interface: {HOST}
    port: {self.endpoints.dns}
    do-ip6: no
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    # Knot and the dead forwarder are on loopback, which Unbound refuses to query by default.
    do-not-query-localhost: no

    # Tests change records and expect to see the change at once.
    cache-max-ttl: 5
    cache-max-negative-ttl: 1
    val-bogus-ttl: 1
    # How long an unreachable server (Knot while stopped) stays marked down.
    infra-host-ttl: 2
    infra-keep-probing: yes
    aggressive-nsec: no
    prefetch: no
    serve-expired: no
    msg-cache-size: 4m
    rrset-cache-size: 8m
    key-cache-size: 2m
    neg-cache-size: 1m

    # DNSSEC: only the local anchors below, none for the root (never the real IANA root key).
    module-config: "validator iterator"
    ede: yes
    trust-anchor-signaling: no
    root-key-sentinel: no
{trust}

    # Unbound answers test. itself (RFC 6761) unless told not to; here Knot hosts it.
    local-zone: "test." nodefault

    access-control-view: {SPLIT_VIEW_SOURCE}/32 {SPLIT_VIEW}

view:
    name: "{SPLIT_VIEW}"
    view-first: yes

{self._remote_control()}
forward-zone:
    name: "{SERVFAIL_ZONE}"
    forward-addr: {DEAD_ADDRESS[0]}@{DEAD_ADDRESS[1]}
    forward-tcp-upstream: yes

forward-zone:
    name: "."
    forward-addr: {HOST}@{self.endpoints.dns_auth}
    # TCP: while Knot is stopped (a fault test) lookups fail at once (connection refused) instead of
    # after UDP timeouts, and big signed answers never truncate.
    forward-tcp-upstream: yes
"""

    def command(self) -> list[str]:
        return [dns_packages.runnable("unbound"), "-d", "-c", str(self.config_file)]

    def healthy(self) -> bool:
        """Knot's data comes through, and validation works: signed.test's SOA carries the AD bit.

        The second part also fails when the resolver's anchor is stale, i.e. Knot's keys were wiped
        (`down --wipe --only dns-auth`) under a running resolver: restart `dns` then.
        """
        if not process.port_open(self.endpoints.dns):
            return False
        server = (HOST, self.endpoints.dns)
        if not _answers(server, "example.org.", "SOA", authoritative=False):
            return False
        try:
            response = query(server, SIGNED_ZONE, "SOA", timeout=1.0)
        except (dns.exception.DNSException, OSError):
            return False
        return response.rcode() == dns.rcode.NOERROR and bool(response.flags & dns.flags.AD)
