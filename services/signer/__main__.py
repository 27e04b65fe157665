"""Entry point of the signer.

    python -m services.signer init-ca    create the Class 1 / Class 3 hierarchy (refuses to overwrite)
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

from services.signer.settings import ISSUING, STATUS, CeremonySettings
from shared.config import ConfigError, load_or_exit
from shared.logging import configure
from shared.service import run, run_until_stopped


def _init_ca(argv: list[str]) -> int:
    from services.signer.ca.ceremony import bootstrap
    from services.signer.ca.hierarchy import HierarchyError, class3_root_path
    from services.signer.ca.keys import ALGORITHMS, KeyFileError
    from services.signer.ca.urls import CAUrls
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
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        hierarchy = bootstrap(
            directory,
            settings.ca_passphrase,
            args.algorithm or settings.ca_algorithm,
            class1_urls=CAUrls.under(settings.public_base_url, "class1"),
        )
    except (HierarchyError, KeyFileError) as exc:
        print(f"init-ca refused: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"init-ca failed: cannot write {directory}: {exc.strerror}", file=sys.stderr)
        return 1
    for ca in hierarchy.cas.values():
        print(f"{ca.label}: {ca.certificate.subject.rfc4514_string()} ({ca.key_algorithm})")
    print("class3-root: the same Class 3 subject and key, self-signed (the anchor for assured-only trust)")
    print(f"written to {directory} (keys encrypted with CACERT_CA_PASSPHRASE)")
    return 0


def _self_sign_class3_in(settings: CeremonySettings, command: str) -> int:
    from cryptography.hazmat.primitives import hashes

    from services.signer.ca.ceremony import self_sign_class3
    from services.signer.ca.hierarchy import HierarchyError, class3_root_path
    from services.signer.ca.keys import KeyFileError

    try:
        twin = self_sign_class3(settings.ca_dir, settings.ca_passphrase)
    except (HierarchyError, KeyFileError) as exc:
        print(f"{command} refused: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{command} failed: cannot write {settings.ca_dir}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"written {class3_root_path(settings.ca_dir)}: {twin.subject.rfc4514_string()}, self-signed, "
          f"until {twin.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC, "
          f"SHA-256 {twin.fingerprint(hashes.SHA256()).hex(':').upper()}")
    print("publish it: mount it into the status mode (it serves /class3-root.crt), see docs/operations.md")
    return 0


def _self_sign_class3(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="python -m services.signer self-sign-class3",
        description="add class3-root.crt.pem (the self-signed Class 3 root) to CACERT_CA_DIR; refuses to overwrite",
    ).parse_args(argv)
    return _self_sign_class3_in(load_or_exit(CeremonySettings), "self-sign-class3")


def _serve(mode: str, argv: list[str]) -> int:
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
    return run(lambda stop: run_until_stopped(service, stop))


def _renew_ocsp(argv: list[str]) -> int:
    from services.signer.ca.ceremony import renew_ocsp_signer
    from services.signer.ca.hierarchy import CertClass, HierarchyError, load_hierarchy
    from services.signer.ca.keys import KeyFileError
    from services.signer.settings import CeremonySettings

    argparse.ArgumentParser(prog="python -m services.signer renew-ocsp").parse_args(argv)
    settings = load_or_exit(CeremonySettings)
    try:
        load_hierarchy(settings.ca_dir, settings.ca_passphrase)  # refuses an inconsistent directory first
        for cert_class in CertClass:
            renew_ocsp_signer(settings.ca_dir, settings.ca_passphrase, cert_class)
            print(f"renewed OCSP signer of {cert_class.label}")
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
        "self-sign-class3": _self_sign_class3,
    }
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
