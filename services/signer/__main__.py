"""Entry point of the signer.

    python -m services.signer init-ca    create the hierarchy: roots (keys into the root directory, to go
                                         offline), issuing CAs, OCSP signers, ARLs (refuses to overwrite)
    python -m services.signer add-issuing
                                         add issuing CAs to a hierarchy made before them (needs the root keys)
    python -m services.signer new-generation
                                         a root rollover: G2 roots (keys into the root directory), G2 issuing
                                         CAs, cross-certificates by the G1 roots (needs the G1 root keys)
    python -m services.signer arl        sign a root's CRL of CA certificates (needs the root key)
    python -m services.signer self-sign-class3
                                         add the self-signed Class 3 root to a hierarchy made without it
    python -m services.signer issuing    issuing mode: holds CA keys, consumes Kafka, no public traffic
    python -m services.signer status     status mode: serves CRL and OCSP, holds no CA keys
    python -m services.signer renew-ocsp re-issue the delegated OCSP signer certificates

Configuration comes from the environment (see services/signer/README.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from services.signer.settings import ISSUING, STATUS, CeremonySettings
from shared.config import ConfigError, load_or_exit
from shared.logging import configure
from shared.service import run, run_until_stopped

T = TypeVar("T")


def _init_ca(argv: list[str]) -> int:
    from services.signer.ca.ceremony import create_hierarchy
    from services.signer.ca.hierarchy import class3_root_path
    from services.signer.ca.keys import ALGORITHMS
    from services.signer.settings import CeremonySettings

    parser = argparse.ArgumentParser(prog="python -m services.signer init-ca")
    parser.add_argument("--algorithm", choices=ALGORITHMS, help="overrides CACERT_CA_ALGORITHM")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="when a CA already exists, only add its self-signed Class 3 root if that is missing",
    )
    args = parser.parse_args(argv)
    settings = load_or_exit(CeremonySettings)
    directory = settings.ca_dir
    if args.if_missing and (directory / "class1.crt.pem").exists():
        if class3_root_path(directory).exists():
            print(f"CA already present in {directory}; nothing to do")
            return 0
        return _self_sign_class3_in(settings, "init-ca")
    hierarchy = _offline_step("init-ca", lambda: create_hierarchy(
        directory, settings.root_dir, settings.ca_passphrase, args.algorithm or settings.ca_algorithm,
        public_base_url=settings.public_base_url, ocsp_passphrase=settings.ocsp_key_passphrase))
    if hierarchy is None:
        return 1
    for ca in hierarchy.cas.values():
        print(f"{ca.label}: {ca.certificate.subject.rfc4514_string()} ({ca.key_algorithm}), "
              f"SHA-256 {_fingerprint(ca.certificate)}")
    print("class3-root: the same Class 3 subject and key, self-signed (the anchor for assured-only trust)")
    print(f"written to {directory}; the roots' keys to {settings.root_dir}: move that directory offline, "
          "no signer needs it (CA keys encrypted with CACERT_CA_PASSPHRASE, OCSP signers' keys with "
          "CACERT_OCSP_SIGNER_PASSPHRASE)")
    return 0


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _offline_step(command: str, step: Callable[[], T]) -> T | None:
    """Carry out a ceremony command's step; None (its refusal printed in one line) when the files or keys
    refuse it or a file cannot be written."""
    from services.signer.ca.hierarchy import HierarchyError
    from services.signer.ca.keys import KeyFileError

    try:
        return step()
    except (HierarchyError, KeyFileError) as exc:
        print(f"{command} refused: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"{command} failed: cannot write {exc.filename or 'a file'}: {exc.strerror}", file=sys.stderr)
    return None


def _add_issuing(argv: list[str]) -> int:
    from services.signer.ca.ceremony import add_issuing_cas
    from services.signer.ca.hierarchy import CertClass, HierarchyError, issuing_label, read_certificate
    from services.signer.ca.keys import KeyFileError

    argparse.ArgumentParser(
        prog="python -m services.signer add-issuing",
        description="add an issuing CA under each root of CACERT_CA_DIR that has none (the roots' keys from "
                    "CACERT_CA_ROOT_DIR, or from the CA directory of a hierarchy made before issuing CAs)",
    ).parse_args(argv)
    settings = load_or_exit(CeremonySettings)
    key_dir = settings.key_dir(CertClass.CLASS1.label) or settings.root_dir
    try:
        refused = add_issuing_cas(settings.ca_dir, key_dir, settings.ca_passphrase,
                                  public_base_url=settings.public_base_url,
                                  ocsp_passphrase=settings.ocsp_key_passphrase)
    except (HierarchyError, KeyFileError) as exc:
        print(f"add-issuing refused: {exc}", file=sys.stderr)
        return 1
    for cert_class in CertClass:
        if cert_class in refused:
            print(refused[cert_class])
            continue
        cert = read_certificate(settings.ca_dir / f"{issuing_label(cert_class)}.crt.pem")
        print(f"{issuing_label(cert_class)}: {cert.subject.rfc4514_string()}, SHA-256 {_fingerprint(cert)}")
    print("restart the signers to issue under them; then move the roots' keys offline (docs/operations.md)")
    return 0


def _new_generation(argv: list[str]) -> int:
    from services.signer.ca.ceremony import create_generation
    from services.signer.ca.hierarchy import GENERATIONS
    from services.signer.ca.keys import ALGORITHMS

    parser = argparse.ArgumentParser(
        prog="python -m services.signer new-generation",
        description="add the next generation of roots to CACERT_CA_DIR (a root rollover, docs/operations.md): its "
                    "roots' keys to CACERT_CA_ROOT_DIR, its issuing CAs, and cross-certificates of those by the "
                    "G1 roots (whose keys it reads from CACERT_CA_ROOT_DIR)",
    )
    parser.add_argument("--generation", type=int, choices=GENERATIONS[1:], default=GENERATIONS[1])
    parser.add_argument("--algorithm", choices=ALGORITHMS, help="default: the G1 Class 1 root's")
    args = parser.parse_args(argv)
    settings = load_or_exit(CeremonySettings)
    made = _offline_step("new-generation", lambda: create_generation(
        settings.ca_dir, settings.root_dir, settings.ca_passphrase, public_base_url=settings.public_base_url,
        generation=args.generation, algorithm=args.algorithm, ocsp_passphrase=settings.ocsp_key_passphrase))
    if made is None:
        return 1
    hierarchy, notes = made
    for ca in hierarchy.cas.values():
        if ca.generation == args.generation:
            print(f"{ca.label}: {ca.certificate.subject.rfc4514_string()}, SHA-256 {_fingerprint(ca.certificate)}")
    for label, cross in hierarchy.cross_certificates.items():
        print(f"cross-{label}: signed by {cross.issuer.rfc4514_string()}, SHA-256 {_fingerprint(cross)}")
    for note in notes.values():
        print(note)
    print(f"the new roots' keys are in {settings.root_dir}: move it offline again. Restart the signers: the new "
          "issuing CAs sign from then on, the G1 ones keep the CRLs and OCSP of their certificates")
    return 0


def _arl(argv: list[str]) -> int:
    import datetime as dt

    from services.signer.ca.ceremony import issue_arl
    from services.signer.ca.hierarchy import GENERATIONS, CertClass, HierarchyError, class_label
    from services.signer.ca.keys import KeyFileError
    from services.signer.ca.revocation import parse_reason

    parser = argparse.ArgumentParser(
        prog="python -m services.signer arl",
        description="sign a root's CRL (ARL) into CACERT_CA_DIR and the root directory; earlier entries stay",
    )
    parser.add_argument("--ca", choices=[class_label(c, g) for g in GENERATIONS for c in CertClass], required=True,
                        help="the root")
    parser.add_argument("--revoke", action="append", default=[], metavar="SERIAL_HEX[:REASON]",
                        help="a CA certificate to add as revoked now (reason as in cert.revoke_requested)")
    args = parser.parse_args(argv)
    settings = load_or_exit(CeremonySettings)
    now = dt.datetime.now(dt.UTC)
    try:
        revoked = []
        for item in args.revoke:
            serial, _, reason = item.partition(":")
            revoked.append((int(serial, 16), now, parse_reason(reason or None, ca_certificate=True)))
    except ValueError as exc:
        print(f"arl refused: {exc}", file=sys.stderr)
        return 1
    try:
        arl = issue_arl(settings.ca_dir, settings.key_dir(args.ca) or settings.root_dir, settings.ca_passphrase,
                        args.ca, revoked, now=now)
    except (HierarchyError, KeyFileError) as exc:
        print(f"arl refused: {exc}", file=sys.stderr)
        return 1
    number = arl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    print(f"ARL of {args.ca}: number {number}, {len(list(arl))} revoked, next update {arl.next_update_utc:%Y-%m-%d}; "
          "publish it: restart the issuing signer (it stores it for the status signers)")
    return 0


def _self_sign_class3_in(settings: CeremonySettings, command: str) -> int:
    from services.signer.ca.ceremony import self_sign_class3
    from services.signer.ca.hierarchy import class3_root_path

    twin = _offline_step(command, lambda: self_sign_class3(
        settings.ca_dir, settings.ca_passphrase, root_directory=settings.key_dir("class3") or settings.root_dir,
        ocsp_passphrase=settings.ocsp_key_passphrase))
    if twin is None:
        return 1
    print(f"written {class3_root_path(settings.ca_dir)}: {twin.subject.rfc4514_string()}, self-signed, "
          f"until {twin.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC, "
          f"SHA-256 {_fingerprint(twin)}")
    print("publish it: mount it into the status mode (it serves /class3-root.crt), see docs/operations.md")
    return 0


def _self_sign_class3(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="python -m services.signer self-sign-class3",
        description="add class3-root.crt.pem (the self-signed Class 3 root) to CACERT_CA_DIR; refuses to overwrite",
    ).parse_args(argv)
    return _self_sign_class3_in(load_or_exit(CeremonySettings), "self-sign-class3")


def _serve(mode: str, argv: list[str]) -> int:
    from services.signer.ca.hsm import HSMKeyError
    from services.signer.service import SignerService
    from services.signer.settings import SignerSettings

    parser = argparse.ArgumentParser(prog=f"python -m services.signer {mode}")
    if mode == ISSUING:
        parser.add_argument("--no-lint", action="store_true", help="disable pre-issuance linting")
    args = parser.parse_args(argv)
    settings = load_or_exit(SignerSettings)
    configure(f"signer-{mode}", settings.common.log_level)
    try:
        service = SignerService(settings, mode=mode, lint=not getattr(args, "no_lint", False))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except HSMKeyError as exc:
        print(f"signer refused to start: {exc}", file=sys.stderr)
        return 2
    return run(lambda stop: run_until_stopped(service, stop))


def _renew_ocsp(argv: list[str]) -> int:
    from services.signer.ca.ceremony import Lifetimes, renew_ocsp_signer
    from services.signer.ca.hierarchy import HierarchyError, load_hierarchy
    from services.signer.ca.keys import KeyFileError
    from services.signer.settings import CeremonySettings

    argparse.ArgumentParser(
        prog="python -m services.signer renew-ocsp",
        description="re-issue the delegated OCSP signer of every CA whose key is in CACERT_CA_DIR or the root "
                    "directory (a root's lives a year, an issuing CA's 90 days)",
    ).parse_args(argv)
    settings = load_or_exit(CeremonySettings)
    try:
        # Refuses an inconsistent directory first.
        labels = list(load_hierarchy(settings.ca_dir, settings.ca_passphrase, ca_keys=False,
                                     ocsp_passphrase=settings.ocsp_key_passphrase).cas)
        for label in labels:
            key_dir = settings.key_dir(label)
            if key_dir is None:
                print(f"not renewed: {label} (its key is in neither {settings.ca_dir} nor {settings.root_dir})")
                continue
            offline = key_dir != settings.ca_dir
            days = Lifetimes().root_ocsp_signer_days if offline else None
            signer = renew_ocsp_signer(settings.ca_dir, settings.ca_passphrase, label, key_directory=key_dir,
                                       validity_days=days, ocsp_passphrase=settings.ocsp_key_passphrase)
            print(f"renewed OCSP signer of {label} until {signer.certificate.not_valid_after_utc:%Y-%m-%d}")
    except (HierarchyError, KeyFileError) as exc:
        print(f"renew-ocsp refused: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "init-ca": _init_ca,
        ISSUING: lambda a: _serve(ISSUING, a),
        STATUS: lambda a: _serve(STATUS, a),
        "renew-ocsp": _renew_ocsp,
        "add-issuing": _add_issuing,
        "new-generation": _new_generation,
        "arl": _arl,
        "self-sign-class3": _self_sign_class3,
    }
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
