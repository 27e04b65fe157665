"""The delegated OCSP signers renew themselves (issue 18, item 5).

Each issuing CA answers OCSP through a short-lived delegated signer (``ca/hierarchy.py``). The one
``init-ca`` (or ``renew-ocsp``) wrote into the CA directory is the first; after that:

* the **issuing mode** (which holds the CA keys) checks at start and every
  ``CACERT_OCSP_SIGNER_CHECK_SECONDS`` whether the current signer of each CA is inside its renewal window
  (``CACERT_OCSP_SIGNER_RENEW_BEFORE_DAYS`` before it ends) and if so re-issues it
  (``ceremony.reissue_ocsp_signer``: a new key, the init-ca profile, signed by the CA) into the signer
  database's ``ocsp_signers`` collection, the key encrypted (PKCS#8) under ``CACERT_OCSP_SIGNER_PASSPHRASE``;
* the **status mode** (which has no CA key, but reads the signer database) reloads the stored signers at
  start and as often, checks each (issued by its CA, its own key, id-kp-OCSPSigning) and answers with the
  current one (``hierarchy.current_ocsp_signer``: the newest valid one), without a restart.

The old certificate is not revoked and keeps verifying until it ends. ``on_change`` is told each time a CA's
current signer changes (metrics, the readiness warning, the OCSP responders).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from services.signer.ca import ceremony, keys
from services.signer.ca.hierarchy import (
    Hierarchy,
    HierarchyError,
    IssuingCA,
    OCSPSigner,
    check_ocsp_signer,
    current_ocsp_signer,
)
from services.signer.ca.serials import serial_hex
from services.signer.store import CertificateStore, Document
from shared.events import utcnow
from shared.logging import get_logger
from shared.periodic import Periodic

log = get_logger("services.signer.ocsp_signers")
KEEP_ENDED = dt.timedelta(days=7)
"""Stored signers that ended longer ago than this are removed by the issuing mode."""

SignerChanged = Callable[[str, OCSPSigner], None]


@dataclass(frozen=True)
class RenewalPolicy:
    """When the issuing mode re-issues a signer, and for how long the new one lives."""

    renew_before: dt.timedelta
    validity_days: int

    def due(self, signer: OCSPSigner, now: dt.datetime) -> bool:
        return signer.expires_soon(now, self.renew_before)


def signer_document(ca: IssuingCA, replaces: OCSPSigner, new: OCSPSigner, passphrase: bytes,
                    now: dt.datetime) -> Document:
    """The ``ocsp_signers`` document of ``new``, the successor of ``replaces``."""
    cert = new.certificate
    return {
        "_id": f"{ca.label}:after:{serial_hex(replaces.certificate.serial_number)}",
        "issuer": ca.label,
        "serial": serial_hex(cert.serial_number),
        "certificate_der": cert.public_bytes(Encoding.DER),
        "key_pem": keys.encrypt_private_key(new.private_key, passphrase),
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "created_at": now,
    }


def signer_from_document(doc: Document, ca: IssuingCA, passphrase: bytes) -> OCSPSigner:
    """Decrypt and check a stored signer; ``HierarchyError`` / ``KeyFileError`` / ``ValueError`` if unusable."""
    signer = OCSPSigner(
        x509.load_der_x509_certificate(bytes(doc["certificate_der"])),
        keys.decrypt_private_key(bytes(doc["key_pem"]), passphrase),
    )
    check_ocsp_signer(signer, ca.certificate, f"stored OCSP signer {doc['_id']}")
    return signer


def _version(doc: Document) -> str:
    """A stored signer's identity for the caches: its ``_id`` and its certificate's serial (replaceable)."""
    return f"{doc['_id']}/{doc.get('serial', '')}"


class OCSPSigners:
    """The current OCSP signer of each CA: the CA directory's plus the stored ones, re-read periodically;
    with a ``renewal`` policy (issuing mode) it also re-issues the ones that are due."""

    def __init__(
        self,
        hierarchy: Hierarchy,
        store: CertificateStore,
        *,
        passphrase: bytes,
        on_change: SignerChanged,
        every: float,
        renewal: RenewalPolicy | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._cas = {ca.label: ca for ca in hierarchy.cas.values()}
        self._store = store
        self._passphrase = passphrase
        self._on_change = on_change
        self._renewal = renewal
        self._clock = clock
        self.current: dict[str, OCSPSigner] = {label: ca.ocsp_signer for label, ca in self._cas.items()}
        self._decoded: dict[str, OCSPSigner] = {}
        self._refused: set[str] = set()
        self._periodic = Periodic("ocsp-signers", self.check, every)

    async def check(self) -> None:
        now = self._clock()
        for label, ca in self._cas.items():
            current = await self._current(ca, now)
            # A root whose key is offline renews its signer at a ceremony (`renew-ocsp`), not here.
            if self._renewal is not None and ca.private_key is not None and self._renewal.due(current, now):
                await self._renew(ca, current, now)
                current = await self._current(ca, now)
            self._use(label, current)
        if self._renewal is not None:
            await self._store.remove_ocsp_signers_ended_before(now - KEEP_ENDED)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _current(self, ca: IssuingCA, now: dt.datetime) -> OCSPSigner:
        signers = [ca.ocsp_signer]
        for doc in await self._store.ocsp_signers_of(ca.label):
            signer = await self._decode(doc, ca)
            if signer is not None:
                signers.append(signer)
        return current_ocsp_signer(signers, now)

    async def _decode(self, doc: Document, ca: IssuingCA) -> OCSPSigner | None:
        doc_id = _version(doc)
        if doc_id in self._decoded or doc_id in self._refused:
            return self._decoded.get(doc_id)
        try:
            signer = await asyncio.to_thread(signer_from_document, doc, ca, self._passphrase)
        except (HierarchyError, keys.KeyFileError, ValueError, KeyError) as exc:
            self._refused.add(doc_id)
            log.error("stored OCSP signer refused; answering with the others", alert=True, issuer=ca.label,
                      signer=str(doc["_id"]), error=str(exc))
            return None
        self._decoded[doc_id] = signer
        return signer

    async def _renew(self, ca: IssuingCA, current: OCSPSigner, now: dt.datetime) -> None:
        assert self._renewal is not None
        new = await asyncio.to_thread(
            ceremony.reissue_ocsp_signer, ca, now=now, validity_days=self._renewal.validity_days
        )
        doc = signer_document(ca, current, new, self._passphrase, now)
        renewed = dict(issuer=ca.label, replaces=serial_hex(current.certificate.serial_number),
                       serial=doc["serial"], not_after=doc["not_after"].isoformat())
        if await self._store.save_ocsp_signer(doc):
            log.info("OCSP signer renewed", **renewed)
            return
        existing = await self._store.ocsp_signer(doc["_id"])
        if existing is not None and _version(existing) in self._refused:
            # A successor this signer cannot use (say, stored under an earlier OCSP signer passphrase) would
            # block renewal for good: the issuing mode, which made it, replaces it.
            await self._store.replace_ocsp_signer(doc)
            log.warning("OCSP signer renewed over an unusable stored one", **renewed)
        else:
            log.info("OCSP signer already renewed by another issuing signer", issuer=ca.label)

    def _use(self, label: str, signer: OCSPSigner) -> None:
        if signer is self.current[label]:
            return
        previous = self.current[label]
        self.current[label] = signer
        if signer.certificate != previous.certificate:
            log.info("OCSP signer in use", issuer=label, serial=serial_hex(signer.certificate.serial_number),
                     not_after=signer.certificate.not_valid_after_utc.isoformat())
        self._on_change(label, signer)
