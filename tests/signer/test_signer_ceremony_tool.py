"""The key ceremony tool (issue 18 item 2): a whole hierarchy made step by step from YAML files, which the
signer then loads and OpenSSL verifies; each key under its own passphrase; refusals that write nothing; the
hash-chained record of the ceremony."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from services.signer import ceremony as tool
from services.signer.ca import keys
from services.signer.ca.hierarchy import load_hierarchy
from services.signer.ca.lint import PreIssuanceLinter
from shared.audit import AuditFile

ROOT = Path(__file__).resolve().parents[2]
BASE = "http://pki.example.net"
START = dt.datetime.now(dt.UTC).replace(microsecond=0)
LINTER = PreIssuanceLinter()


def _at(days: float) -> str:
    return (START + dt.timedelta(days=days)).isoformat().replace("+00:00", "Z")


def _urls(label: str) -> dict[str, str]:
    return {"crl-url": f"{BASE}/{label}.crl", "ocsp-url": f"{BASE}/ocsp/{label}",
            "ca-issuers-url": f"{BASE}/{label}.crt"}


def _subject(cn: str) -> dict[str, str]:
    return {"O": "CAcert Community CA", "CN": f"CAcert Community {cn}"}


class Ceremony:
    """A ceremony directory: step files, a passphrase file per key, keys (offline), certificates (public)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        for sub in ("keys", "public", "secrets", "steps"):
            (directory / sub).mkdir()

    def passphrase(self, name: str) -> str:
        path = self.dir / "secrets" / f"{name}.pass"
        if not path.exists():
            path.write_text(f"passphrase of {name} only\n")
        return f"../secrets/{name}.pass"

    def key(self, name: str, *, new: bool) -> dict[str, str]:
        spec = {"file": f"../keys/{name}.key.pem", "passphrase-file": self.passphrase(name)}
        return {"algorithm": "p256", **spec} if new else spec

    def step(self, name: str, settings: dict[str, Any]) -> tool.Made:
        path = self.dir / "steps" / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**settings, "audit-log": "../ceremony-audit.jsonl"}))
        return tool.run(path, linter=LINTER)

    def public(self, name: str) -> str:
        return f"../public/{name}"


def _make_hierarchy(c: Ceremony, g: str = "") -> None:
    """What `init-ca` makes, as ceremony steps: roots, the Class 3 root's two certificates, issuing CAs, OCSP
    signers and the roots' ARLs; with ``g`` (``-g2``) what `new-generation` makes besides the cross-certificates:
    labels ending in it, names in `` G2``."""
    name = f" {g[1:].upper()}" if g else ""
    c1, c3 = f"class1{g}", f"class3{g}"
    c.step(f"{c1}-root", {"ceremony-type": "root", "key": c.key(c1, new=True),
                          "certificate": {"subject": _subject(f"Class 1 Root{name}"), "not-before": _at(0),
                                          "not-after": _at(7305), "path-length": 2},
                          "outputs": {"certificate": c.public(f"{c1}.crt.pem")}})
    c.step(f"{c3}-root", {"ceremony-type": "root", "key": c.key(c3, new=True),
                          "certificate": {"subject": _subject(f"Class 3 Root{name}"), "not-before": _at(0),
                                          "not-after": _at(3652), "path-length": 1},
                          "outputs": {"certificate": c.public(f"class3-root{g}.crt.pem")}})
    c.step(f"{c3}-cross", {"ceremony-type": "cross-certificate", "signing-key": c.key(c1, new=False),
                           "issuer-certificate": c.public(f"{c1}.crt.pem"),
                           "subject-certificate": c.public(f"class3-root{g}.crt.pem"),
                           "certificate": {"not-before": _at(0), "not-after": _at(3652), "path-length": 1,
                                           "issuer-urls": _urls(c1)},
                           "outputs": {"certificate": c.public(f"{c3}.crt.pem")}})
    for cls, parent in (("1", c1), ("3", c3)):
        label = f"class{cls}-issuing{g}"
        c.step(label, {"ceremony-type": "intermediate", "signing-key": c.key(parent, new=False),
                       "issuer-certificate": c.public(f"{parent}.crt.pem"), "key": c.key(label, new=True),
                       "certificate": {"subject": _subject(f"Class {cls} Issuing CA{name}"),
                                       "not-before": _at(0), "not-after": _at(1826), "path-length": 0,
                                       "issuer-urls": _urls(parent)},
                       "outputs": {"certificate": c.public(f"{label}.crt.pem")}})
    for label in (c1, c3, f"class1-issuing{g}", f"class3-issuing{g}"):
        c.step(f"ocsp-{label}", {"ceremony-type": "ocsp-signer", "signing-key": c.key(label, new=False),
                                 "issuer-certificate": c.public(f"{label}.crt.pem"),
                                 "key": c.key(f"ocsp-{label}", new=True),
                                 "certificate": {"subject": _subject(f"{label} OCSP Responder"),
                                                 "not-before": _at(0), "not-after": _at(90)},
                                 "outputs": {"certificate": c.public(f"ocsp-{label}.crt.pem")}})
    for label in (c1, c3):
        c.step(f"arl-{label}", {"ceremony-type": "crl", "signing-key": c.key(label, new=False),
                                "issuer-certificate": c.public(f"{label}.crt.pem"),
                                "crl": {"number": 1, "this-update": _at(0), "next-update": _at(365)},
                                "outputs": {"crl": c.public(f"arl-{label}.der")}})


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Ceremony:
    ceremony = Ceremony(tmp_path_factory.mktemp("ceremony"))
    _make_hierarchy(ceremony)
    return ceremony


SIGNER_KEYS = ("class1-issuing", "class3-issuing", "ocsp-class1", "ocsp-class3", "ocsp-class1-issuing",
               "ocsp-class3-issuing")


def _signer_directory(c: Ceremony, target: Path, passphrase: bytes, labels: tuple[str, ...] = SIGNER_KEYS) -> Path:
    """The CA directory a signer reads, from the ceremony's output: certificates, ARLs, and the keys it needs
    re-encrypted under its passphrase (never the roots')."""
    target.mkdir()
    for path in (c.dir / "public").iterdir():
        shutil.copy(path, target / path.name)
    for label in labels:
        secret = (c.dir / "secrets" / f"{label}.pass").read_text().rstrip("\n").encode()
        key = keys.read_private_key(c.dir / "keys" / f"{label}.key.pem", secret)
        keys.write_private_key(target / f"{label}.key.pem", key, passphrase)
    return target


def test_a_hierarchy_made_step_by_step_is_what_the_signer_loads(made: Ceremony, tmp_path: Path) -> None:
    ca_dir = _signer_directory(made, tmp_path / "ca", b"signer passphrase")
    hierarchy = load_hierarchy(ca_dir, b"signer passphrase")  # checks every signature, key and the twin
    assert [hierarchy.issuing_ca(c).label for c in (1, 3)] == ["class1-issuing", "class3-issuing"]
    assert hierarchy.class3_root is not None and hierarchy.online_root_keys == ()
    assert set(hierarchy.arls) == {"class1", "class3"}
    issuing3, class3 = hierarchy.issuing_ca(3).certificate, hierarchy.class_ca(3).certificate
    files = {n: str(ca_dir / f"{n}.crt.pem") for n in ("class1", "class3", "class3-root", "class3-issuing")}
    for anchor, untrusted in ((files["class1"], files["class3"]), (files["class3-root"], None)):
        args = ["openssl", "verify", "-x509_strict", "-CAfile", anchor]
        if untrusted:
            args += ["-untrusted", untrusted]
        result = subprocess.run([*args, files["class3-issuing"]], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    assert issuing3.issuer == class3.subject


def test_each_key_has_its_own_passphrase(made: Ceremony) -> None:
    keys.read_private_key(made.dir / "keys" / "class1.key.pem", b"passphrase of class1 only")
    with pytest.raises(keys.KeyFileError):
        keys.read_private_key(made.dir / "keys" / "class1.key.pem", b"passphrase of class3 only")


def test_the_record_is_a_verifiable_chain_with_fingerprints(made: Ceremony) -> None:
    log = AuditFile(made.dir / "ceremony-audit.jsonl")
    assert log.verify().ok and log.verify().entries == 11
    entries = log.entries()
    assert [e["action"] for e in entries[:3]] == ["ceremony.root", "ceremony.root", "ceremony.cross-certificate"]
    root = x509.load_pem_x509_certificate((made.dir / "public" / "class1.crt.pem").read_bytes())
    assert entries[0]["details"]["sha256"] == root.fingerprint(hashes.SHA256()).hex(":").upper()
    assert "passphrase" not in json.dumps(entries).replace("passphrase-file", "")
    verify = subprocess.run([sys.executable, "-m", "shared.audit", "verify", "--file", str(log.path)], cwd=ROOT,
                            capture_output=True, text=True, check=False, timeout=60)
    assert verify.returncode == 0 and "intact: 11 entries" in verify.stdout


def test_refusals_write_nothing(made: Ceremony) -> None:
    before = sorted(p.name for p in (made.dir / "public").iterdir()) + sorted(
        p.name for p in (made.dir / "keys").iterdir())

    def refused(name: str, settings: dict[str, Any], match: str) -> None:
        with pytest.raises(tool.CeremonyError, match=match):
            made.step(name, settings)

    root: dict[str, Any] = {"ceremony-type": "root", "key": made.key("again", new=True),
            "certificate": {"subject": _subject("Again"), "not-before": _at(0), "not-after": _at(10)},
            "outputs": {"certificate": made.public("again.crt.pem")}}
    refused("overwrite", {**root, "outputs": {"certificate": made.public("class1.crt.pem")}},
            "outputs.certificate: refusing to overwrite")
    refused("bad-time", {**root, "certificate": {**root["certificate"], "not-after": "tomorrow"}},
            "certificate.not-after: not an ISO 8601 time")
    refused("bad-type", {**root, "ceremony-type": "sub-ca"}, "ceremony-type: one of root")
    long_ou = {**_subject("Long"), "OU": "x" * 70}
    refused("lint", {**root, "certificate": {**root["certificate"], "subject": long_ou},
                     "outputs": {"certificate": made.public("long.crt.pem")}}, "pkilint")
    wrong = {"file": "../keys/class1.key.pem", "passphrase-file": made.passphrase("class3")}
    refused("wrong-passphrase", {"ceremony-type": "crl", "signing-key": wrong,
                                 "issuer-certificate": made.public("class1.crt.pem"),
                                 "crl": {"number": 2, "this-update": _at(0), "next-update": _at(30)},
                                 "outputs": {"crl": made.public("arl-class1-2.der")}}, "signing-key.file")
    refused("too-long-arl", {"ceremony-type": "crl", "signing-key": made.key("class1", new=False),
                             "issuer-certificate": made.public("class1.crt.pem"),
                             "crl": {"number": 2, "this-update": _at(0), "next-update": _at(400)},
                             "outputs": {"crl": made.public("arl-class1-2.der")}}, "next_update_in")
    after = sorted(p.name for p in (made.dir / "public").iterdir()) + sorted(
        p.name for p in (made.dir / "keys").iterdir())
    assert after == before
    assert AuditFile(made.dir / "ceremony-audit.jsonl").verify().entries == 11  # refusals are not recorded


def test_a_tampered_record_stops_the_next_step(tmp_path: Path) -> None:
    c = Ceremony(tmp_path)
    settings = {"ceremony-type": "root", "key": c.key("r", new=True),
                "certificate": {"subject": _subject("R"), "not-before": _at(0), "not-after": _at(10)},
                "outputs": {"certificate": c.public("r.crt.pem")}}
    c.step("r", settings)
    log = tmp_path / "ceremony-audit.jsonl"
    log.write_text(log.read_text().replace("ceremony.root", "ceremony.rooT"))
    with pytest.raises(tool.CeremonyError, match="audit-log: audit chain BROKEN"):
        c.step("s", {**settings, "key": c.key("s", new=True), "outputs": {"certificate": c.public("s.crt.pem")}})


def test_the_command_prints_the_fingerprint(tmp_path: Path) -> None:
    c = Ceremony(tmp_path)
    path = c.dir / "steps" / "root.yaml"
    path.write_text(yaml.safe_dump({
        "ceremony-type": "root", "key": c.key("cli", new=True), "audit-log": "../audit.jsonl",
        "certificate": {"subject": _subject("CLI"), "not-before": _at(0), "not-after": _at(10), "path-length": 0},
        "outputs": {"certificate": c.public("cli.crt.pem")}}))
    ran = subprocess.run([sys.executable, "-m", "services.signer.ceremony", str(path)], cwd=ROOT,
                         capture_output=True, text=True, check=False, timeout=120)
    assert ran.returncode == 0, ran.stderr
    cert = x509.load_pem_x509_certificate((c.dir / "public" / "cli.crt.pem").read_bytes())
    assert f"SHA-256 fingerprint: {cert.fingerprint(hashes.SHA256()).hex(':').upper()}" in ran.stdout
    again = subprocess.run([sys.executable, "-m", "services.signer.ceremony", str(path)], cwd=ROOT,
                           capture_output=True, text=True, check=False, timeout=120)
    assert again.returncode == 1 and again.stderr.startswith("ceremony refused: ")


def test_a_second_generation_of_roots_made_step_by_step_is_what_the_signer_loads(tmp_path: Path) -> None:
    """A root rollover at a ceremony (docs/operations.md, "Root rollover"): G2 roots, their issuing CAs, and each
    G2 issuing CA cross-certified by the G1 root of its class; the signer then issues under G2, with chains to
    both generations."""
    (tmp_path / "ceremony").mkdir()
    c = Ceremony(tmp_path / "ceremony")
    _make_hierarchy(c)
    _make_hierarchy(c, "-g2")
    for cls in ("class1", "class3"):  # each G2 issuing CA under the G1 root of its class too
        label = f"{cls}-issuing-g2"
        c.step(f"cross-{label}", {"ceremony-type": "cross-certificate", "signing-key": c.key(cls, new=False),
                                  "issuer-certificate": c.public(f"{cls}.crt.pem"),
                                  "subject-certificate": c.public(f"{label}.crt.pem"),
                                  "certificate": {"not-before": _at(0), "not-after": _at(1826), "path-length": 0,
                                                  "issuer-urls": _urls(cls)},
                                  "outputs": {"certificate": c.public(f"cross-{label}.crt.pem")}})
    g2_keys = ("class1-issuing-g2", "class3-issuing-g2", "ocsp-class1-g2", "ocsp-class3-g2",
               "ocsp-class1-issuing-g2", "ocsp-class3-issuing-g2")
    ca_dir = _signer_directory(c, tmp_path / "ca", b"signer passphrase", SIGNER_KEYS + g2_keys)
    hierarchy = load_hierarchy(ca_dir, b"signer passphrase")  # every signature, key, twin and cross-certificate
    assert hierarchy.generations == (1, 2) and hierarchy.online_root_keys == ()
    assert [hierarchy.issuing_ca(c).label for c in (1, 3)] == ["class1-issuing-g2", "class3-issuing-g2"]
    assert hierarchy.trust_anchors_for(3) == ("class1", "class3", "class1-g2", "class3-g2")
    cross3 = hierarchy.cross_certificates["class3-issuing-g2"]
    assert hierarchy.chain_for(3) == (cross3, hierarchy.class_ca(3).certificate)
    files = {n: str(ca_dir / f"{n}.crt.pem") for n in ("class1", "class3", "class1-g2", "class3-g2",
                                                       "cross-class3-issuing-g2", "class3-issuing-g2")}
    for anchor, untrusted, ca in ((files["class1"], files["class3"], files["cross-class3-issuing-g2"]),
                                  (files["class1-g2"], files["class3-g2"], files["class3-issuing-g2"])):
        result = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", anchor, "-untrusted", untrusted, ca],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
