"""Pre-issuance linting with pkilint, the way Let's Encrypt's Boulder does it.

A certificate that breaks the Baseline Requirements cannot be recalled once signed: it must be
revoked and reported. So before the CA key signs anything, the exact to-be-signed certificate
is signed with a throw-away key of the same algorithm as the CA's (so the signature algorithm
fields are the real ones), and that copy is linted. The caller refuses on any error finding.

pkilint builds a tree of validators per certificate type; building it costs far more than
running it, so each validator tree is built once per type and reused. Throw-away keys are made
once per algorithm (RSA-4096 generation alone takes about a second).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pkilint import finding_filter, loader, validation
from pkilint.cabf import serverauth, smime
from pkilint.pkix import certificate, extension, name

from services.signer.ca import keys
from services.signer.ca.keys import PrivateKey
from services.signer.ca.profiles import CertificateProfile, LinterKind

Severity = validation.ValidationFindingSeverity


@dataclass(frozen=True)
class LintFinding:
    """One pkilint finding on one node of the certificate."""

    severity: str
    code: str
    message: str | None
    path: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


@dataclass(frozen=True)
class LintResult:
    """Findings by severity. ``errors`` holds FATAL and ERROR findings: any one means do not sign."""

    errors: list[str]
    warnings: list[str]
    notices: list[str] = field(default_factory=list)
    linter: str = ""
    findings: list[LintFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _rfc5280_validator() -> validation.ValidatorContainer:
    # What pkilint's lint_pkix_cert CLI builds.
    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def _serverauth_validator(cert_type: Any) -> validation.ValidatorContainer:
    # What lint_cabf_serverauth_cert builds for a given type.
    return certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(cert_type)
    )


def _smime_validator(level_and_generation: tuple[Any, Any]) -> validation.ValidatorContainer:
    # What lint_cabf_smime_cert builds for a given validation level and generation.
    level, generation = level_and_generation
    return certificate.create_pkix_certificate_validator_container(
        smime.create_decoding_validators(), smime.create_subscriber_validators(level, generation)
    )


# Same signature AlgorithmIdentifier (sha256WithRSAEncryption), much cheaper signature: pkilint never
# reads the signature value of a lone certificate, and the copy never leaves the process. RSA-1024 is
# the smallest key `cryptography` makes; it signs in 0.15 ms here, an RSA-4096 key in 2.3-2.9 ms.
THROWAWAY_ALGORITHM = {"rsa4096": "rsa1024", "rsa2048": "rsa1024"}


class _ValidatorIndex:
    """Which validators of one container can match a node, by the node's path and ASN.1 type.

    pkilint's ``ValidatorContainer`` asks every validator whether it matches every node: about 6,600
    ``match`` calls per certificate, a third of the lint's time. Most validators declare what they
    visit by a fixed path, a path pattern or an ASN.1 class, which depend only on the node's path and
    the class of its value; a certificate of a given shape has the same paths each time. So the
    validators whose declared path, pattern and class fit ``(path, type)`` are worked out once and
    cached; each of those is then asked ``match`` as before (its predicate, supertype and any override
    of ``match`` still decide). Every ``match`` override in pkilint 0.13 only narrows
    ``NodeVisitor.match`` (``super().match(node) and ...``), which is what makes skipping the others
    exact; ``tests/signer/test_lint_index.py`` compares the findings with pkilint's own walk.
    """

    LIMIT = 20_000  # cached (path, type) pairs per container before starting over

    def __init__(self, validators: list[validation.Validator]) -> None:
        self._validators = validators
        self._fits: dict[tuple[str, type], list[validation.Validator]] = {}

    def candidates(self, node: Any) -> list[validation.Validator]:
        key = (node.path, type(node.pdu))
        fits = self._fits.get(key)
        if fits is None:
            if len(self._fits) >= self.LIMIT:
                self._fits.clear()
            fits = self._fits[key] = [v for v in self._validators if _declared_fit(v, node)]
        return fits


def _declared_fit(visitor: Any, node: Any) -> bool:
    """The part of ``NodeVisitor.match`` that depends only on the node's path and value class."""
    if visitor._path is not None and visitor._path != node.path:
        return False
    if visitor._path_re is not None and visitor._path_re.match(node.path) is None:
        return False
    return visitor._pdu_class is None or isinstance(node.pdu, visitor._pdu_class)


def _indexed(container: validation.ValidatorContainer) -> validation.ValidatorContainer:
    """Give ``container`` and every container inside it an indexed walk (same results, same order)."""
    index = _ValidatorIndex(container.validators)

    def validate_rec(node: Any, results: list[validation.ValidationResult]) -> None:
        for v in index.candidates(node):
            if v.match(node):
                result = v.validate_wrapper(node)
                if isinstance(result, list):
                    results += result
                else:
                    results.append(result)
        for child in node.children.values():
            validate_rec(child, results)

    container._validate_rec = validate_rec  # type: ignore[method-assign]
    for inner in container.validators:
        if isinstance(inner, validation.ValidatorContainer):
            _indexed(inner)
    return container


class PreIssuanceLinter:
    """Lints to-be-signed and signed certificates against their profile's pkilint linter.

    One instance per process; it is safe to share between threads (validation is serialised, as
    pkilint's validators are not documented as re-entrant).
    """

    def __init__(self, *, indexed: bool = True) -> None:
        self._indexed = indexed  # False: pkilint's own walk (what the index is tested against)
        self._validators: dict[tuple[LinterKind, Any], validation.ValidatorContainer] = {}
        self._throwaway_keys: dict[str, PrivateKey] = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------------- public API

    def lint_tbs(
        self, builder: x509.CertificateBuilder, profile: CertificateProfile, ca_key_algorithm: str
    ) -> LintResult:
        """Sign ``builder`` with a throw-away key of ``ca_key_algorithm`` and lint that copy.

        The copy has the real issuer name, serial, AKI and signature algorithm; only the signature
        bytes differ, and pkilint does not verify signatures of a lone certificate. So an RSA CA
        lints with an RSA-1024 throw-away key (``THROWAWAY_ALGORITHM``).
        """
        throwaway = self.throwaway_key(THROWAWAY_ALGORITHM.get(ca_key_algorithm, ca_key_algorithm))
        copy = builder.sign(throwaway, keys.signature_hash(throwaway))
        return self.lint_certificate(copy, profile.linter)

    def lint_certificate(self, cert: x509.Certificate | bytes, linter: LinterKind) -> LintResult:
        """Lint a certificate (object or DER) with the given linter."""
        der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
        try:
            doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
        except Exception as exc:  # pyasn1 raises its own error types for undecodable input
            return LintResult(
                errors=[f"pkilint.decode_failed: {type(exc).__name__}"], warnings=[], linter=linter.value
            )
        with self._lock:
            validator, filters = self._validator_for(linter, doc)
            results = validator.validate(doc.root)
        if filters:
            results, _ = finding_filter.filter_results(filters, results)
        return _to_result(results, linter.value)

    def throwaway_key(self, algorithm: str) -> PrivateKey:
        """The cached throw-away key for ``algorithm`` (made on first use)."""
        with self._lock:
            key = self._throwaway_keys.get(algorithm)
            if key is None:
                if algorithm == "rsa1024":  # signs only the lint copy, which never leaves the process
                    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
                else:
                    key = keys.generate_private_key(algorithm)
                self._throwaway_keys[algorithm] = key
            return key

    def warm_up(self, algorithms: list[str]) -> None:
        """Make throw-away keys and the validator trees our profiles use now (about 0.2 s per tree),
        not on the first request."""
        for algorithm in algorithms:
            self.throwaway_key(THROWAWAY_ALGORITHM.get(algorithm, algorithm))
        with self._lock:
            dv = serverauth.serverauth_constants.CertificateType.DV_FINAL_CERTIFICATE
            self._cached(LinterKind.CABF_SERVERAUTH, dv, _serverauth_validator)
            self._cached(LinterKind.RFC5280, None, lambda _: _rfc5280_validator())
            levels = smime.smime_constants.ValidationLevel
            for level in (levels.MAILBOX, levels.INDIVIDUAL):
                variant = (level, smime.smime_constants.Generation.MULTIPURPOSE)
                self._cached(LinterKind.CABF_SMIME, variant, _smime_validator)

    # ------------------------------------------------------------------------ internals

    def _cached(
        self, kind: LinterKind, variant: Any, factory: Callable[[Any], validation.ValidatorContainer]
    ) -> validation.ValidatorContainer:
        key = (kind, variant)
        found = self._validators.get(key)
        if found is None:
            found = _indexed(factory(variant)) if self._indexed else factory(variant)
            self._validators[key] = found
        return found

    def _validator_for(
        self, linter: LinterKind, doc: certificate.RFC5280Certificate
    ) -> tuple[validation.ValidatorContainer, list[Any]]:
        if linter is LinterKind.CABF_SERVERAUTH:
            cert_type = serverauth.determine_certificate_type(doc)
            return (
                self._cached(linter, cert_type, _serverauth_validator),
                serverauth.create_serverauth_finding_filters(cert_type),
            )
        if linter is LinterKind.CABF_SMIME:
            level_and_generation = smime.determine_validation_level_and_generation(doc)
            if level_and_generation is None:
                level_and_generation = smime.guess_validation_level_and_generation(doc)
            return self._cached(linter, tuple(level_and_generation), _smime_validator), []
        return self._cached(linter, None, lambda _: _rfc5280_validator()), []


def _to_result(results: list[validation.ValidationResult], linter: str) -> LintResult:
    errors: list[str] = []
    warnings: list[str] = []
    notices: list[str] = []
    findings: list[LintFinding] = []
    for result in results:
        for description in result.finding_descriptions:
            severity = description.finding.severity
            found = LintFinding(
                severity=severity.name,
                code=description.finding.code,
                message=description.message,
                path=result.node.path,
            )
            findings.append(found)
            if severity <= Severity.ERROR:
                errors.append(str(found))
            elif severity == Severity.WARNING:
                warnings.append(str(found))
            else:
                notices.append(str(found))
    return LintResult(errors=errors, warnings=warnings, notices=notices, linter=linter, findings=findings)


__all__ = ["LintFinding", "LintResult", "PreIssuanceLinter"]
