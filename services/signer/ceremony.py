"""The key ceremony tool: one step of a CA's life per YAML file, on the offline machine.

    python -m services.signer.ceremony <step.yaml>

Like Boulder's ``cmd/ceremony``, creating CA keys and certificates is kept apart from the code that loads
issuers (``ca/hierarchy.py``): every step names everything it makes (subject, validity, pathLen, the
issuer's URLs) instead of deriving it, so the record of a ceremony is its config files plus what this prints.
Steps (``ceremony-type``):

* ``root``: a new key and its self-signed root certificate;
* ``intermediate``: a new key and its certificate signed by an existing CA (a Class 3 root under Class 1, an
  issuing CA under its root);
* ``cross-certificate``: a certificate for an *existing* CA certificate's subject and key, signed by another
  CA (the self-signed Class 3 root's twin under Class 1, or a new generation of roots under the old one);
* ``ocsp-signer``: a new key and a delegated OCSP responder certificate (RFC 6960 4.2.2.2) of a CA;
* ``crl``: a root's CRL (an ARL: the CA certificates it revoked; the issuing CAs' CRLs are the signer's).

Every key has a passphrase of its own, read from a file (``passphrase-file``); a new key is written
encrypted, mode 0600, and never over an existing file; no output file is ever replaced. Every CA certificate
made is linted with pkilint's RFC 5280 validator before anything is written (an error-level finding refuses
the step), its SHA-256 fingerprint is printed, and each step appends a record to the ceremony's hash-chained
audit log (``audit-log``, JSON lines, ``python -m shared.audit verify --file``). Relative paths are relative
to the config file. docs/operations.md, "Key ceremonies", has a whole hierarchy as configs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from services.signer.ca import keys
from services.signer.ca.ceremony import ca_certificate, ocsp_signer_certificate
from services.signer.ca.crl import build_arl
from services.signer.ca.hierarchy import HierarchyError, read_certificate
from services.signer.ca.keys import PrivateKey
from services.signer.ca.lint import PreIssuanceLinter
from services.signer.ca.profiles import LinterKind
from services.signer.ca.revocation import parse_reason
from services.signer.ca.urls import CAUrls
from shared.audit import AuditFile

TYPES = ("root", "intermediate", "cross-certificate", "ocsp-signer", "crl")
NAME_ATTRIBUTES = {"C": x509.NameOID.COUNTRY_NAME, "O": x509.NameOID.ORGANIZATION_NAME,
                   "OU": x509.NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": x509.NameOID.COMMON_NAME}


class CeremonyError(Exception):
    """The step is refused: a config field (named in the message), a key, a file, or a lint finding."""


# ------------------------------------------------------------------------------------------ config


@dataclasses.dataclass(frozen=True)
class Config:
    """One YAML document, with the path of the field being read for messages."""

    data: Mapping[str, Any]
    base: Path
    where: str = ""

    def _name(self, key: str) -> str:
        return f"{self.where}{key}"

    def section(self, key: str) -> Config:
        value = self.data.get(key)
        if not isinstance(value, Mapping):
            raise CeremonyError(f"{self._name(key)}: required, a mapping")
        return Config(value, self.base, f"{self._name(key)}.")

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or not value:
            raise CeremonyError(f"{self._name(key)}: required, a non-empty string")
        return value

    def integer(self, key: str, *, optional: bool = False) -> int | None:
        value = self.data.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CeremonyError(f"{self._name(key)}: required, a whole number >= 0")
        return value

    def path(self, key: str) -> Path:
        return (self.base / self.text(key)).resolve()

    def moment(self, key: str) -> dt.datetime:
        value = self.data.get(key)
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise CeremonyError(f"{self._name(key)}: not an ISO 8601 time: {value!r}") from None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise CeremonyError(f"{self._name(key)}: required, an ISO 8601 time with a zone (2026-12-04T00:00:00Z)")
        return value.astimezone(dt.UTC).replace(microsecond=0)

    def name(self, key: str) -> x509.Name:
        subject = self.section(key)
        unknown = set(subject.data) - set(NAME_ATTRIBUTES)
        if unknown or "CN" not in subject.data:
            raise CeremonyError(f"{self._name(key)}: attributes {', '.join(NAME_ATTRIBUTES)} only, CN required"
                                + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
        try:
            return x509.Name([x509.NameAttribute(NAME_ATTRIBUTES[a], subject.text(a))
                              for a in NAME_ATTRIBUTES if a in subject.data])
        except ValueError as exc:  # e.g. a country that is not two letters
            raise CeremonyError(f"{self._name(key)}: {exc}") from None


def _passphrase(config: Config) -> bytes:
    path = config.path("passphrase-file")
    try:
        secret = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise CeremonyError(f"{config.where}passphrase-file: cannot read {path}: {exc.strerror}") from None
    if not secret:
        raise CeremonyError(f"{config.where}passphrase-file: {path} is empty")
    return secret


def _existing_key(config: Config) -> PrivateKey:
    try:
        return keys.read_private_key(config.path("file"), _passphrase(config))
    except keys.KeyFileError as exc:
        raise CeremonyError(f"{config.where}file: {exc}") from None


@dataclasses.dataclass(frozen=True)
class NewKey:
    algorithm: str
    file: Path
    passphrase: bytes

    @classmethod
    def of(cls, config: Config) -> NewKey:
        algorithm = config.text("algorithm")
        if algorithm not in keys.ALGORITHMS:
            raise CeremonyError(f"{config.where}algorithm: one of {', '.join(keys.ALGORITHMS)}, got {algorithm!r}")
        new = cls(algorithm, config.path("file"), _passphrase(config))
        _refuse_existing(new.file, f"{config.where}file")
        return new

    def make(self) -> PrivateKey:
        return keys.generate_private_key(self.algorithm)

    def write(self, key: PrivateKey) -> None:
        try:
            keys.write_private_key(self.file, key, self.passphrase)
        except keys.KeyFileExists as exc:
            raise CeremonyError(str(exc)) from None


def _refuse_existing(path: Path, field: str) -> None:
    if path.exists():
        raise CeremonyError(f"{field}: refusing to overwrite {path}")
    if not path.parent.is_dir():
        raise CeremonyError(f"{field}: directory {path.parent} does not exist")


def _validity(config: Config) -> tuple[dt.datetime, dt.datetime]:
    not_before, not_after = config.moment("not-before"), config.moment("not-after")
    if not_after <= not_before:
        raise CeremonyError(f"{config.where}not-after: must be after not-before")
    return not_before, not_after


def _issuer_urls(config: Config) -> CAUrls:
    try:
        return CAUrls(config.text("crl-url"), config.text("ocsp-url"), config.text("ca-issuers-url"))
    except ValueError as exc:
        raise CeremonyError(f"{config.where.rstrip('.')}: {exc}") from None


def _issuer(config: Config) -> tuple[x509.Certificate, PrivateKey]:
    """The signing CA: its certificate and key, which must belong together."""
    path = config.path("issuer-certificate")
    try:
        certificate = read_certificate(path)
    except HierarchyError as exc:
        raise CeremonyError(f"{config.where}issuer-certificate: {exc}") from None
    key = _existing_key(config.section("signing-key"))
    if not keys.public_keys_equal(certificate.public_key(), key.public_key()):  # type: ignore[arg-type]
        raise CeremonyError(f"{config.where}signing-key: not the key of {path}")
    return certificate, key


# ------------------------------------------------------------------------------------------- steps


@dataclasses.dataclass
class Made:
    """What a step produced: files to write (path -> bytes, in order) and what to print and record."""

    files: dict[Path, bytes] = dataclasses.field(default_factory=dict)
    key: tuple[NewKey, PrivateKey] | None = None
    certificate: x509.Certificate | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


def _lint(certificate: x509.Certificate, linter: PreIssuanceLinter) -> None:
    result = linter.lint_certificate(certificate, LinterKind.RFC5280)
    if not result.ok:
        raise CeremonyError("pkilint (RFC 5280) refuses the certificate, nothing written: "
                            + "; ".join(str(e) for e in result.errors))


def _ca_step(config: Config, linter: PreIssuanceLinter, *, kind: str) -> Made:
    cert = config.section("certificate")
    output = config.section("outputs").path("certificate")
    _refuse_existing(output, "outputs.certificate")
    not_before, not_after = _validity(cert)
    path_length = cert.integer("path-length", optional=True)
    made = Made()
    if kind == "root":
        new = NewKey.of(config.section("key"))
        key = new.make()
        made.key = (new, key)
        certificate = ca_certificate(subject=cert.name("subject"), public_key=key.public_key(), signing_key=key,
                                     not_before=not_before, not_after=not_after, path_length=path_length)
    else:
        issuer, issuer_key = _issuer(config)
        urls = _issuer_urls(cert.section("issuer-urls"))
        if kind == "intermediate":
            new = NewKey.of(config.section("key"))
            key = new.make()
            made.key = (new, key)
            subject, ski = cert.name("subject"), None
            public: keys.PublicKey = key.public_key()
        else:  # cross-certificate: the subject, key and SKI of an existing CA certificate
            try:
                existing = read_certificate(config.path("subject-certificate"))
            except HierarchyError as exc:
                raise CeremonyError(f"subject-certificate: {exc}") from None
            existing_key = existing.public_key()
            if not isinstance(existing_key, keys.PublicKey):
                raise CeremonyError("subject-certificate: not a key algorithm of this CA")
            subject, public = existing.subject, existing_key
            ski = existing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        if not_after > issuer.not_valid_after_utc:
            raise CeremonyError(f"certificate.not-after: after the issuer's ({issuer.not_valid_after_utc:%Y-%m-%d})")
        certificate = ca_certificate(subject=subject, public_key=public, signing_key=issuer_key,
                                     not_before=not_before, not_after=not_after, path_length=path_length,
                                     issuer=issuer, issuer_urls=urls, ski=ski)
    _lint(certificate, linter)
    made.certificate = certificate
    made.files[output] = certificate.public_bytes(serialization.Encoding.PEM)
    return made


def _ocsp_signer_step(config: Config, linter: PreIssuanceLinter) -> Made:
    issuer, issuer_key = _issuer(config)
    cert = config.section("certificate")
    output = config.section("outputs").path("certificate")
    _refuse_existing(output, "outputs.certificate")
    not_before, not_after = _validity(cert)
    if not_after > issuer.not_valid_after_utc:
        raise CeremonyError(f"certificate.not-after: after the issuer's ({issuer.not_valid_after_utc:%Y-%m-%d})")
    new = NewKey.of(config.section("key"))
    key = new.make()
    certificate = ocsp_signer_certificate(subject=cert.name("subject"), issuer=issuer, issuer_key=issuer_key,
                                          public_key=key.public_key(), not_before=not_before, not_after=not_after)
    _lint(certificate, linter)
    return Made(files={output: certificate.public_bytes(serialization.Encoding.PEM)}, key=(new, key),
                certificate=certificate)


def _crl_step(config: Config, linter: PreIssuanceLinter) -> Made:
    issuer, issuer_key = _issuer(config)
    crl = config.section("crl")
    output = config.section("outputs").path("crl")
    _refuse_existing(output, "outputs.crl")
    this_update, next_update = crl.moment("this-update"), crl.moment("next-update")
    number = crl.integer("number")
    revoked = []
    for index, entry in enumerate(crl.data.get("revoked") or []):
        item = Config(entry, config.base, f"crl.revoked[{index}].") if isinstance(entry, Mapping) else None
        if item is None:
            raise CeremonyError(f"crl.revoked[{index}]: a mapping with serial, revoked-at and reason")
        try:
            serial = int(item.text("serial").replace(":", ""), 16)
            reason = parse_reason(item.data.get("reason"), ca_certificate=True)
        except ValueError as exc:
            raise CeremonyError(f"crl.revoked[{index}]: {exc}") from None
        revoked.append((serial, item.moment("revoked-at"), reason))
    try:  # offline CRLs are the roots' ARLs (CA certificates): nextUpdate within twelve months, BR 4.9.7
        der = build_arl(issuer, issuer_key, revoked, crl_number=number or 0, now=this_update,
                        next_update_in=next_update - this_update)
    except ValueError as exc:
        raise CeremonyError(f"crl: {exc}") from None
    return Made(files={output: der}, details={"crl_number": number, "revoked": len(revoked),
                                               "next_update": next_update.isoformat()})


STEPS: dict[str, Callable[[Config, PreIssuanceLinter], Made]] = {
    "root": lambda c, lint: _ca_step(c, lint, kind="root"),
    "intermediate": lambda c, lint: _ca_step(c, lint, kind="intermediate"),
    "cross-certificate": lambda c, lint: _ca_step(c, lint, kind="cross-certificate"),
    "ocsp-signer": _ocsp_signer_step,
    "crl": _crl_step,
}


def run(path: Path, *, linter: PreIssuanceLinter | None = None, now: dt.datetime | None = None) -> Made:
    """Carry out the step in ``path``: check everything, make it, write it, record it. Nothing is written
    when a check fails."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CeremonyError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CeremonyError(f"{path} is not YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise CeremonyError(f"{path}: a mapping of settings expected")
    config = Config(data, path.parent.resolve())
    kind = config.text("ceremony-type")
    if kind not in STEPS:
        raise CeremonyError(f"ceremony-type: one of {', '.join(TYPES)}, got {kind!r}")
    audit = AuditFile(config.path("audit-log"))
    verification = audit.verify()
    if not verification.ok:
        raise CeremonyError(f"audit-log: {verification.describe()}")
    made = STEPS[kind](config, linter or PreIssuanceLinter())
    if made.key is not None:
        new, key = made.key
        new.write(key)
    for output, data_bytes in made.files.items():
        try:
            with output.open("xb") as out:
                out.write(data_bytes)
        except FileExistsError:
            raise CeremonyError(f"refusing to overwrite {output}") from None
    details: dict[str, Any] = {"config": str(path.resolve()), **made.details,
                               "files": [str(p) for p in made.files]}
    if made.key is not None:
        details["key_file"] = str(made.key[0].file)
        details["key_algorithm"] = made.key[0].algorithm
    subject = str(next(iter(made.files)))
    if made.certificate is not None:
        subject = made.certificate.subject.rfc4514_string()
        details |= {"serial": format(made.certificate.serial_number, "x"),
                    "sha256": made.certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
                    "issuer": made.certificate.issuer.rfc4514_string(),
                    "not_before": made.certificate.not_valid_before_utc.isoformat(),
                    "not_after": made.certificate.not_valid_after_utc.isoformat()}
    audit.append(actor="ceremony", action=f"ceremony.{kind}", subject=subject, details=details, at=now)
    made.details = details
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.signer.ceremony",
                                     description="carry out one key ceremony step described by a YAML file")
    parser.add_argument("config", type=Path)
    args = parser.parse_args(argv)
    try:
        made = run(args.config)
    except CeremonyError as exc:
        print(f"ceremony refused: {exc}", file=sys.stderr)
        return 1
    for name in made.details["files"]:
        print(f"written {name}")
    if "key_file" in made.details:
        print(f"key {made.details['key_file']} ({made.details['key_algorithm']}), encrypted with its passphrase")
    if "sha256" in made.details:
        print(f"certificate: {made.details['issuer']} -> subject {made.certificate.subject.rfc4514_string()}"  # type: ignore[union-attr]
              f", serial {made.details['serial']}, {made.details['not_before']} .. {made.details['not_after']}")
        print(f"SHA-256 fingerprint: {made.details['sha256']}")
    print("recorded in the ceremony audit log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
