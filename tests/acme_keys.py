"""The ACME service's binding sealing key pair the tests run with: one per test process, generated at import,
never written to disk by this module. Registration harnesses seal binding HMAC keys to the public key
(`ACME_SEALING_PUBLIC_PEM`); a test that reads `acme.binding_created` off the topic opens the key with
`OPENER`, as only the ACME service could (shared/acme_binding.py)."""

from __future__ import annotations

from shared.acme_binding import BindingOpener

OPENER = BindingOpener.generate()
ACME_SEALING_PRIVATE_PEM = OPENER.private_pem()
ACME_SEALING_PUBLIC_PEM = OPENER.public_pem()
ACME_SEALER = OPENER.sealer()
