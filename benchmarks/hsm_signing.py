"""CA signing with the key on a SoftHSM2 token against the same key in its encrypted file, in one run.

    python -m benchmarks.hsm_signing --algorithms p256,rsa4096 --seconds 3 --rounds 3 --out FILE.json

For each CA algorithm it makes a throw-away hierarchy (``ceremony.bootstrap``) and a SoftHSM2 installation
of its own in a temporary directory (``SOFTHSM2_CONF``; never a system token), moves the Class 3 CA key and
its OCSP delegate's key onto a token (``hsm.import_private_key``), and loads the hierarchy twice: file keys,
and token keys (``hsm.CAKeySource``). Then, in rounds (each round measures every case once, file and
token keys alternating in ten slices so the host's drift and other processes weigh on both alike), it counts for
``--seconds`` per backend each of:

- ``certificate``: a server leaf of the real profile from a CSR, prepared and signed (``issuance``);
- ``crl``: a CRL of 100 entries (``crl.build_crl``);
- ``ocsp_response``: an answer to one OCSP request (``ocsp.OCSPResponder``), signed by the delegate.

and prints JSON: per algorithm and operation the median rate of each backend over the rounds
(``file_per_s``, ``softhsm_per_s``), ``ratio`` = softhsm / file of those medians, and every round's figures;
``machine`` (cores, CPU, ``loadavg_start``) and ``loadavg_end``. The signatures are checked once per case
before timing, so a run that prints figures signed correctly with both keys.

In the service the OCSP delegates' keys stay in software (the issuing mode renews them): the ``ocsp_response``
row shows what a delegate on a token would cost, not today's configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import NameOID

from benchmarks.e2e_system import loadavg, machine
from services.signer.ca import ceremony, crl, hsm, issuance, ocsp, revocation
from services.signer.ca.hierarchy import CertClass, Hierarchy, IssuingCA, OCSPSigner, load_hierarchy
from services.signer.ca.keys import ALGORITHMS
from services.signer.ca.profiles import get_profile
from services.signer.ca.serials import new_serial_number
from services.signer.ca.urls import CAUrls

PASSPHRASE = b"hsm-benchmark-only"
PIN = b"2718"
TOKEN = "hsm-benchmark"  # noqa: S105 (a token label)
PUBLIC_URL = "http://pki.example.net"
OPERATIONS = ("certificate", "crl", "ocsp_response")
CRL_ENTRIES = 100
SLICES = 10


def softhsm_installation(directory: Path) -> Path:
    """A SoftHSM2 configuration with its own token directory and one initialised token; ``SOFTHSM2_CONF`` set.
    SoftHSM2 reads it when the module is first loaded in this process, so this runs before any key is opened."""
    if shutil.which("softhsm2-util") is None or not hsm.SOFTHSM2_MODULE.exists():
        raise SystemExit("SoftHSM2 is not installed: apt-get install softhsm2")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN.decode(),
                    "--so-pin", "314159"], check=True, capture_output=True, timeout=60)
    return conf


def hierarchies(directory: Path, algorithm: str) -> dict[str, Hierarchy]:
    """The same hierarchy twice: ``file`` keys, and ``softhsm`` with the Class 3 CA key and its OCSP delegate's
    key on the token."""
    ca_dir = directory / algorithm
    ca_dir.mkdir()
    ceremony.bootstrap(ca_dir, PASSPHRASE, algorithm, class1_urls=CAUrls.under(PUBLIC_URL, "class1"))
    on_file = load_hierarchy(ca_dir, PASSPHRASE)
    class3 = on_file.issuing_ca(CertClass.CLASS3)
    ca_key = hsm.HSMKeyReference(hsm.PKCS11URI(token=TOKEN, object=f"class3-{algorithm}"), hsm.SOFTHSM2_MODULE, PIN)
    delegate = hsm.HSMKeyReference(hsm.PKCS11URI(token=TOKEN, object=f"ocsp-class3-{algorithm}"),
                                   hsm.SOFTHSM2_MODULE, PIN)
    hsm.import_private_key(ca_key, class3.signing_key, f"{algorithm}-ca".encode())
    hsm.import_private_key(delegate, class3.ocsp_signer.private_key, f"{algorithm}-ocsp".encode())
    on_token = load_hierarchy(ca_dir, PASSPHRASE, key_source=hsm.CAKeySource({class3.label: ca_key}))
    token_class3 = on_token.issuing_ca(CertClass.CLASS3)
    signer = OCSPSigner(token_class3.ocsp_signer.certificate, delegate.open(f"ocsp-{class3.label}"))
    cas = {**on_token.cas, token_class3.label: dataclasses.replace(token_class3, ocsp_signer=signer)}
    return {"file": on_file, "softhsm": dataclasses.replace(on_token, cas=cas)}


def operations(pki: Hierarchy) -> dict[str, Callable[[], object]]:
    """One call of each measured operation, with the Class 3 CA of ``pki``; each result is checked once."""
    ca = pki.issuing_ca(CertClass.CLASS3)
    urls = CAUrls.under(PUBLIC_URL, ca.label)
    subscriber = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hsm.example.org")]))
           .sign(subscriber, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    request = issuance.ApprovedRequest(
        request_id="bench", member_id="member-1", cert_class=3, profile="server", csr_pem=csr,
        subject={}, dns_names=["hsm.example.org"], ip_addresses=[], emails=[], validity_days=30,
    )
    profile = get_profile("server")
    now = dt.datetime.now(dt.UTC)
    revoked = [(n + 1, now - dt.timedelta(minutes=n), "key_compromise") for n in range(CRL_ENTRIES)]

    def certificate() -> x509.Certificate:
        builder = issuance.prepare_certificate(request, ca, profile, urls, now, new_serial_number())
        return issuance.sign_certificate(builder, ca)

    leaf = certificate()
    ocsp_request = (x509_ocsp.OCSPRequestBuilder().add_certificate(leaf, ca.certificate, hashes.SHA1())  # noqa: S303 (RFC 6960 CertID)
                    .build().public_bytes(serialization.Encoding.DER))
    responder = ocsp.OCSPResponder(ca, lambda serial: revocation.GOOD)

    leaf.verify_directly_issued_by(ca.certificate)
    ca_public = ca.signing_key.public_key()
    assert x509.load_der_x509_crl(crl.build_crl(ca, revoked, crl_number=1, now=now)).is_signature_valid(ca_public)
    answer = x509_ocsp.load_der_ocsp_response(responder.respond(ocsp_request, now))
    assert answer.response_status is x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    _check_ocsp_signature(ca, answer)
    return {
        "certificate": certificate,
        "crl": lambda: crl.build_crl(ca, revoked, crl_number=2, now=now),
        "ocsp_response": lambda: responder.respond(ocsp_request, now),
    }


def _check_ocsp_signature(ca: IssuingCA, answer: x509_ocsp.OCSPResponse) -> None:
    """``InvalidSignature`` unless the delegate's certificate verifies the answer's signature."""
    digest = answer.signature_hash_algorithm
    public = ca.ocsp_signer.certificate.public_key()
    assert digest is not None
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(answer.signature, answer.tbs_response_bytes, padding.PKCS1v15(), digest)
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(answer.signature, answer.tbs_response_bytes, ec.ECDSA(digest))


def timed(call: Callable[[], object], seconds: float) -> tuple[int, float]:
    """How many calls fit in ``seconds`` (at least one), and the time they took."""
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or done == 0:
        call()
        done += 1
    return done, elapsed


def rates(backends: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Each backend's rate over ``seconds``, measured in ``SLICES`` alternating slices (the order flips every
    slice), so the host's drift, other processes included, weighs on both backends alike."""
    counts = {backend: [0, 0.0] for backend in backends}
    order = list(backends)
    for _ in range(SLICES):
        for backend in order:
            done, elapsed = timed(backends[backend], seconds / SLICES)
            counts[backend][0] += done
            counts[backend][1] += elapsed
        order.reverse()
    return {backend: done / elapsed for backend, (done, elapsed) in counts.items()}


def run(algorithms: list[str], seconds: float, rounds: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "benchmark": "hsm_signing", "machine": machine(), "seconds_per_measure": seconds, "rounds": rounds,
        "softhsm2_module": str(hsm.SOFTHSM2_MODULE), "python_pkcs11": importlib.metadata.version("python-pkcs11"),
        "crl_entries": CRL_ENTRIES, "results": {},
    }
    with tempfile.TemporaryDirectory(prefix="hsm-benchmark-") as scratch:
        softhsm_installation(Path(scratch))
        cases = {algorithm: {backend: operations(pki) for backend, pki in hierarchies(Path(scratch), algorithm).items()}
                 for algorithm in algorithms}
        measured: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(rounds):
            for algorithm, backends in cases.items():
                for operation in OPERATIONS:
                    figures = rates({backend: calls[operation] for backend, calls in backends.items()}, seconds)
                    measured.setdefault((algorithm, operation), []).append(figures)
    for (algorithm, operation), runs in measured.items():
        file_rate = statistics.median(r["file"] for r in runs)
        token_rate = statistics.median(r["softhsm"] for r in runs)
        report["results"].setdefault(algorithm, {})[operation] = {
            "file_per_s": round(file_rate, 1),
            "softhsm_per_s": round(token_rate, 1),
            "ratio": round(token_rate / file_rate, 3),
            "each_round": [{"file_per_s": round(r["file"], 1), "softhsm_per_s": round(r["softhsm"], 1),
                            "ratio": round(r["softhsm"] / r["file"], 3)} for r in runs],
        }
    report["loadavg_end"] = loadavg()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hsm_signing", description=__doc__.split("\n")[0])
    parser.add_argument("--algorithms", default="p256,rsa4096", help=f"comma list of {', '.join(ALGORITHMS)}")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown or not algorithms or args.rounds < 1 or args.seconds <= 0:
        parser.error(f"algorithms from {', '.join(ALGORITHMS)}, rounds >= 1, seconds > 0")
    report = run(algorithms, args.seconds, args.rounds)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
