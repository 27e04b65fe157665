"""The validation library: DNS lookups through a validating resolver, safe HTTP fetches, the BR methods and CAA.

Like the signer's `ca/`, this package talks to no Kafka and no MongoDB: it
does only the network I/O a validation needs (DNS and HTTP, from this
process's own view of the network) and pure decisions (quorum, reuse
periods). `checks.py` runs it; the service wires the results into events.
"""
