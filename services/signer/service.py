"""Wiring of the signer's two modes.

* **issuing** holds the CA keys, consumes `csr.approved` and
  `cert.revoke_requested`, publishes `cert.*`, keeps CRLs fresh, and serves
  only health and metrics: no member or public traffic reaches it.
* **status** holds the CA certificates and OCSP signing keys only and serves
  CRLs and OCSP to the public from the signer's database.

Both follow the delegated OCSP signers the issuing mode renews (``ocsp_signers.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from services.signer import monitoring
from services.signer import store as store_module
from services.signer.ca.hierarchy import Hierarchy, OCSPSigner, load_hierarchy
from services.signer.ca.hsm import FILE_KEYS
from services.signer.issuing import CertificateIssuer
from services.signer.ocsp_signers import OCSPSigners, RenewalPolicy
from services.signer.revoking import CompromisedKeys, CRLPublisher, Revoker
from services.signer.settings import ISSUING, STATUS, SignerSettings
from services.signer.signing import SigningConfig, SigningPool
from services.signer.status import OCSPSignerExpiry, StatusEndpoints
from shared.audit import AuditLog
from shared.events import BY_NAME
from shared.events.access import SERVICES
from shared.http import create_app
from shared.kafka import ConsumerRunner, EventProducer, Subscription, ensure_topics
from shared.logging import get_logger
from shared.mongo import connect, ensure_indexes, ping
from shared.service import Lifecycle, close_http, start_http

log = get_logger("services.signer")


class SignerService:
    def __init__(self, settings: SignerSettings, *, mode: str = ISSUING, lint: bool = True) -> None:
        if mode not in (ISSUING, STATUS):
            raise ValueError(f"unknown signer mode {mode!r}")
        settings.check_passphrases(mode)
        self.settings = settings
        self.mode = mode
        self._lint = lint
        # Issuing acts only on what the RA signed: without its public key(s) the mode does not start.
        self._approvals = settings.approval_verifier() if mode == ISSUING else None
        # Only the issuing mode holds CA keys; a token key it cannot use stops it here, one line naming the key.
        self._ca_keys = settings.ca_key_source() if mode == ISSUING else FILE_KEYS
        self._ca_keys.check()
        self.http_port: int | None = None
        self._lifecycle = Lifecycle(f"signer-{mode}")

    async def start(self) -> None:
        common = self.settings.common
        self._client, db = connect(common.mongo, service="signer")
        self._lifecycle.started("mongodb", self._client.close)
        await ensure_indexes(db, store_module.INDEXES)
        self.store = store_module.CertificateStore(db)
        hierarchy = load_hierarchy(
            self.settings.ca_dir, self.settings.ca_passphrase or None, ca_keys=self.mode == ISSUING,
            ocsp_passphrase=self.settings.ocsp_key_passphrase, key_source=self._ca_keys,
        )
        if hierarchy.online_root_keys:
            log.warning("root keys are in the online CA directory although issuing CAs sign the leaves: move them "
                        "offline (BR 6.1.7, docs/operations.md 'Issuing CAs')", roots=list(hierarchy.online_root_keys))
        monitoring.export_certificate_expiry(hierarchy)
        readiness: dict[str, Any] = {"mongodb": lambda: ping(self._client)}
        endpoints = (
            StatusEndpoints(
                hierarchy, self.store, ocsp_validity=dt.timedelta(hours=self.settings.ocsp_validity_hours)
            )
            if self.mode == STATUS
            else None
        )
        await self._start_ocsp_signers(hierarchy, endpoints, readiness)
        if self.mode == ISSUING:
            await self._start_issuing(hierarchy, readiness)
        else:
            crl_freshness = monitoring.CRLFreshness(hierarchy, self.store)
            crl_freshness.start()
            self._lifecycle.started("CRL freshness", crl_freshness.stop)
        app = create_app(f"signer-{self.mode}", readiness=readiness)
        if endpoints is not None:
            endpoints.add_routes(app)
        self._http = await start_http(app, common.http.host, common.http.port)
        http, drain = self._http, common.http.drain_seconds
        self._lifecycle.started("http", lambda: close_http(http, drain))
        self.http_port = self._http.addresses[0][1]
        log.info("signer started", mode=self.mode, port=self.http_port)

    async def _start_ocsp_signers(
        self, hierarchy: Hierarchy, endpoints: StatusEndpoints | None, readiness: dict[str, Any]
    ) -> None:
        """Both modes follow the current OCSP signer of each CA (metrics, readiness warning; the status mode
        answers with it); the issuing mode also renews them (``ocsp_signers.py``)."""
        settings = self.settings
        window = dt.timedelta(days=settings.ocsp_signer_renew_before_days)
        expiry = OCSPSignerExpiry(hierarchy, margin=window)
        expiry.export_metrics()
        readiness["ocsp_signers"] = expiry.readiness

        def signer_changed(label: str, signer: OCSPSigner) -> None:
            monitoring.ocsp_signer_expiry(label, signer)
            expiry.use(label, signer)
            if endpoints is not None:
                endpoints.use_signer(label, signer)

        self.ocsp_signers = OCSPSigners(
            hierarchy,
            self.store,
            passphrase=settings.ocsp_key_passphrase,
            on_change=signer_changed,
            every=settings.ocsp_signer_check_seconds,
            renewal=RenewalPolicy(window, settings.ocsp_signer_validity_days) if self.mode == ISSUING else None,
        )
        await self.ocsp_signers.check()
        self.ocsp_signers.start()
        self._lifecycle.started("OCSP signers", self.ocsp_signers.stop)

    async def _start_issuing(self, hierarchy: Hierarchy, readiness: dict[str, Any]) -> None:
        common = self.settings.common
        if common.create_topics:
            await ensure_topics(common.kafka)
        # No linger (shared/kafka/producer.py): a pass publishes its certificates together, in one request.
        self.producer = EventProducer(common.kafka, client_id="signer")
        await self.producer.start()
        self._lifecycle.started("producer", self.producer.stop)
        readiness["kafka"] = self.producer.ping
        self.signing = SigningPool(
            SigningConfig(
                ca_dir=self.settings.ca_dir,
                passphrase=self.settings.ca_passphrase,
                ocsp_passphrase=self.settings.ocsp_key_passphrase,
                public_base_url=self.settings.public_base_url,
                lint_profiles=frozenset(self.settings.lint_profiles),
                lint=self._lint,
                log_level=common.log_level,
                crl_shards=self.settings.crl_shards,
                key_source=self._ca_keys,
            ),
            workers=self.settings.signing_workers,
        )
        signing = self.signing
        self._lifecycle.started("signing workers", lambda: asyncio.to_thread(signing.close))  # safe unstarted
        await self.signing.start()
        audit = AuditLog(self.store.db)
        assert self._approvals is not None
        self.crls = CRLPublisher(
            hierarchy,
            self.store,
            validity=dt.timedelta(hours=self.settings.crl_validity_hours),
            refresh_before=dt.timedelta(hours=self.settings.crl_refresh_before_hours),
            public_base_url=self.settings.public_base_url,
            shards=self.settings.crl_shards,
        )
        await self.crls.refresh_due()
        self.crls.start()
        self._lifecycle.started("CRL refresh", self.crls.stop)
        revoker = Revoker(self.store, self.producer, self.crls, self._approvals, audit)
        compromised_keys = CompromisedKeys(self.store, revoker, audit)
        self.issuer = CertificateIssuer(self.signing, self.store, self.producer, self._approvals, audit=audit,
                                        compromised_keys=compromised_keys)
        approved = BY_NAME["csr.approved"].type
        self.runner = ConsumerRunner(
            common.kafka,
            group_id=SERVICES["signer"].consumer_group,
            producer=self.producer,
            subscriptions=[
                # Requests are independent and answered idempotently: consecutive fetches overlap
                # (one is stored and published while the next is signed).
                Subscription("csr", {approved: self.issuer.handle}, {approved: self.issuer.handle_batch},
                             ordered=False),
                # A burst of revocation requests is revoked together, with one CRL rebuild per CRL shard.
                Subscription("cert", {BY_NAME["cert.revoke_requested"].type: revoker.handle,
                                      BY_NAME["cert.key_compromised"].type: compromised_keys.handle},
                             {BY_NAME["cert.revoke_requested"].type: revoker.handle_batch}),
            ],
            # Passes of at most 250: larger ones left the last pass of a burst signing alone while
            # everything else idled (P-256 load test: ratio 0.29-0.35 at 500, 0.34-0.36 at 250).
            # A fetch returns as soon as a request is there (the runner's fetch_min_bytes 1): waiting
            # for a fuller one (32 KiB, up to 50 ms) saved the broker CPU but put up to 50 ms on every
            # certificate below saturation (docs/decisions.md, "The signer fetches without waiting").
            max_batch=250,
            max_in_flight=3,
        )
        await self.runner.start()
        self._lifecycle.started("consumer", self.runner.stop)

    async def stop(self) -> None:
        await self._lifecycle.stop()
        log.info("signer stopped", mode=self.mode)
