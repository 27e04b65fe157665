"""`ocsp_signers.OCSPSigners` over an in-memory store: the issuing mode renews a due signer once (two
replicas store one successor), the status mode switches to it, a stored signer that does not check out is
refused with an alert, and the readiness warning stops once the signer is renewed."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.signer.ca import ceremony
from services.signer.ca.hierarchy import Hierarchy, OCSPSigner
from services.signer.ocsp_signers import OCSPSigners, RenewalPolicy, signer_document
from services.signer.status import OCSPSignerExpiry

OCSP_PASSPHRASE = b"ocsp keys only"
WINDOW = RenewalPolicy(dt.timedelta(days=45), 90)


class MemoryStore:
    """The ``CertificateStore`` methods ``OCSPSigners`` calls."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    async def save_ocsp_signer(self, doc: dict[str, Any]) -> bool:
        if doc["_id"] in self.docs:
            return False
        self.docs[doc["_id"]] = doc
        return True

    async def ocsp_signer(self, signer_id: str) -> dict[str, Any] | None:
        return self.docs.get(signer_id)

    async def replace_ocsp_signer(self, doc: dict[str, Any]) -> None:
        self.docs[doc["_id"]] = doc

    async def ocsp_signers_of(self, issuer: str) -> list[dict[str, Any]]:
        return [d for d in self.docs.values() if d["issuer"] == issuer]

    async def remove_ocsp_signers_ended_before(self, moment: dt.datetime) -> int:
        ended = [k for k, d in self.docs.items() if d["not_after"] < moment]
        for k in ended:
            del self.docs[k]
        return len(ended)


def watcher(pki: Hierarchy, store: MemoryStore, now: list[dt.datetime], changes: list[tuple[str, OCSPSigner]],
            *, renewal: RenewalPolicy | None, passphrase: bytes = OCSP_PASSPHRASE) -> OCSPSigners:
    return OCSPSigners(pki, store, passphrase=passphrase,  # type: ignore[arg-type]
                       on_change=lambda label, signer: changes.append((label, signer)),
                       every=60, renewal=renewal, clock=lambda: now[0])


def test_renewed_once_by_two_replicas_and_picked_up_by_the_status_mode(tmp_path: Path, h) -> None:
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    pki = ceremony.bootstrap(tmp_path / "ca", h.passphrase, "p256", class1_urls=h.urls_for(1), now=created)
    status_view = Hierarchy({c: dataclasses.replace(ca, private_key=None) for c, ca in pki.cas.items()})
    store = MemoryStore()
    now = [created + dt.timedelta(days=40)]
    issuing_changes: list[tuple[str, OCSPSigner]] = []
    status_changes: list[tuple[str, OCSPSigner]] = []
    replicas = [watcher(pki, store, now, issuing_changes, renewal=WINDOW) for _ in range(2)]
    status = watcher(status_view, store, now, status_changes, renewal=None)

    asyncio.run(replicas[0].check())
    assert store.docs == {} and issuing_changes == []  # 50 days left: not due

    now[0] = created + dt.timedelta(days=46)  # 44 days left: inside the 45-day window
    for replica in replicas:
        asyncio.run(replica.check())
    assert sorted(d["issuer"] for d in store.docs.values()) == ["class1", "class3"]  # one successor each
    asyncio.run(status.check())
    for label in ("class1", "class3"):
        new = status.current[label]
        assert new.certificate != {ca.label: ca for ca in pki.cas.values()}[label].ocsp_signer.certificate
        assert new.certificate.not_valid_before_utc == now[0]
        assert (label, new) in status_changes
        assert {r.current[label].certificate for r in replicas} == {new.certificate}  # the stored winner
    asyncio.run(replicas[0].check())
    assert len(store.docs) == 2  # the new signers are not due: nothing more

    now[0] = created + dt.timedelta(days=46 + 90 + 1)  # every signer has ended (no issuing signer ran)
    asyncio.run(status.check())  # the one ending last still answers
    assert status.current["class3"].certificate.not_valid_before_utc == created + dt.timedelta(days=46)
    now[0] += dt.timedelta(days=7)
    asyncio.run(replicas[0].check())  # the issuing mode renews them and removes those ended a week ago
    assert len(store.docs) == 2
    assert all(d["not_before"] == now[0] for d in store.docs.values())


def test_a_stored_signer_that_does_not_check_out_is_refused_with_an_alert(tmp_path: Path, pki, h) -> None:
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    mine = ceremony.bootstrap(tmp_path / "ca", h.passphrase, "p256", class1_urls=h.urls_for(1), now=created)
    store = MemoryStore()
    now = [created + dt.timedelta(days=1)]
    # a signer of another hierarchy's Class 3, and one whose key is under another passphrase
    foreign = ceremony.reissue_ocsp_signer(pki.issuing_ca(3), now=now[0])
    doc = signer_document(mine.issuing_ca(3), mine.issuing_ca(3).ocsp_signer, foreign, OCSP_PASSPHRASE, now[0])
    store.docs[doc["_id"]] = doc
    other = ceremony.reissue_ocsp_signer(mine.issuing_ca(1), now=now[0])
    doc = signer_document(mine.issuing_ca(1), mine.issuing_ca(1).ocsp_signer, other, b"not it", now[0])
    store.docs[doc["_id"]] = doc
    changes: list[tuple[str, OCSPSigner]] = []
    status = watcher(mine, store, now, changes, renewal=None)
    with capture_logs() as logs:
        asyncio.run(status.check())
        asyncio.run(status.check())  # refused once, not decrypted and logged again every minute
    refused = [e for e in logs if e["event"].startswith("stored OCSP signer refused")]
    assert sorted(e["issuer"] for e in refused) == ["class1", "class3"]
    assert all(e["alert"] is True and e["log_level"] == "error" for e in refused)
    assert changes == []
    assert status.current["class3"] is mine.issuing_ca(3).ocsp_signer


def test_after_the_ocsp_signer_passphrase_changes_the_issuing_mode_renews_over_what_it_cannot_read(
        tmp_path: Path, h) -> None:
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    pki = ceremony.bootstrap(tmp_path / "ca", h.passphrase, "p256", class1_urls=h.urls_for(1), now=created)
    store = MemoryStore()
    now = [created + dt.timedelta(days=46)]
    asyncio.run(watcher(pki, store, now, [], renewal=WINDOW).check())
    first = {d["_id"]: d["serial"] for d in store.docs.values()}
    rotated = watcher(pki, store, now, [], renewal=WINDOW, passphrase=b"the new passphrase")
    with capture_logs() as logs:
        asyncio.run(rotated.check())
    assert sorted(store.docs) == sorted(first) and all(store.docs[k]["serial"] != v for k, v in first.items())
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "OCSP signer renewed over an unusable stored one"] * 2
    status: list[tuple[str, OCSPSigner]] = []
    reader = watcher(pki, store, now, status, renewal=None, passphrase=b"the new passphrase")
    asyncio.run(reader.check())
    assert {label: s.certificate for label, s in status} == {
        label: s.certificate for label, s in rotated.current.items()}


def test_the_readiness_warning_and_gauge_follow_the_renewed_signer(tmp_path: Path, h) -> None:
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    pki = ceremony.bootstrap(tmp_path / "ca", h.passphrase, "p256", class1_urls=h.urls_for(1), now=created)
    now = [created + dt.timedelta(days=50)]
    expiry = OCSPSignerExpiry(pki, clock=lambda: now[0], margin=WINDOW.renew_before)
    expiry.export_metrics()
    assert sorted(expiry.due()) == ["class1", "class3"]
    assert REGISTRY.get_sample_value("cacert_ocsp_signer_renewal_due", {"issuer": "class3"}) == 1.0
    new = ceremony.reissue_ocsp_signer(pki.issuing_ca(3), now=now[0])
    expiry.use("class3", new)
    assert expiry.due() == ["class1"]
    assert REGISTRY.get_sample_value("cacert_ocsp_signer_renewal_due", {"issuer": "class3"}) == 0.0
    assert REGISTRY.get_sample_value("cacert_ocsp_signer_not_after_seconds", {"issuer": "class3"}) == (
        new.certificate.not_valid_after_utc.timestamp())
    with capture_logs() as logs:
        assert asyncio.run(expiry.readiness()) is True
    assert [e["issuer"] for e in logs if e["log_level"] == "warning"] == ["class1"]
