"""The pure crypto core of the signer: keys, the two-root hierarchy, profiles, issuance,
pre-issuance linting, CRLs and OCSP.

Nothing in this package talks to Kafka, MongoDB or HTTP; the service wires it in. Modules are
imported individually (``from services.signer.ca import issuance``) so that importing one does
not pull in pkilint, which is slow to import and only the linter needs.
"""
