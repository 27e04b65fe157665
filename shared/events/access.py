"""Which service reads and writes which topic: the single source for Kafka ACLs.

The Strimzi KafkaUser ACLs in deploy/k8s are checked against this table
(tests/deploy/test_kafka.py), each service's consumer takes its group id from
it, and tests/faults/test_poison_messages.py checks that the group a service's
consumer really joins is the table's, so the code and the cluster's
permissions cannot drift apart.
Every reader may also write the dead-letter twin of what it reads.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TopicAccess:
    reads: frozenset[str]
    writes: frozenset[str]
    consumer_group: str
    """The group id every ConsumerRunner of the service joins (after ``CACERT_KAFKA_GROUP_PREFIX``)."""


SERVICES: dict[str, TopicAccess] = {
    "registration": TopicAccess(
        reads=frozenset({"domain", "cert", "acme"}),
        writes=frozenset({"member", "domain", "csr", "cert", "mail.commands", "acme.bindings"}),
        consumer_group="registration",
    ),
    "domain_verify": TopicAccess(
        reads=frozenset({"domain", "perspective"}),
        writes=frozenset({"domain", "mail.commands", "perspective"}),
        consumer_group="domain_verify",
    ),
    # A remote network perspective (BR 3.2.2.9): domain_verify in `perspective` mode, one Deployment per
    # region. Each perspective must see every check, so each joins its own group:
    # `<consumer_group>.<perspective name>` (see perspective_group()).
    "domain_verify_perspective": TopicAccess(
        reads=frozenset({"perspective"}),
        writes=frozenset({"perspective"}),
        consumer_group="domain_verify_perspective",
    ),
    "signer": TopicAccess(
        reads=frozenset({"csr", "cert"}),
        writes=frozenset({"cert"}),
        consumer_group="signer",
    ),
    "notifier": TopicAccess(
        reads=frozenset({"mail.commands", "member", "cert", "csr", "domain"}),
        writes=frozenset({"mail"}),
        consumer_group="notifier",
    ),
    # The ACME front door (RFC 8555): asks domain_verify for http-01 / dns-01 checks and the RA for
    # certificates and revocations; follows the answers. It alone reads `acme.bindings`.
    "acme": TopicAccess(
        reads=frozenset({"domain", "csr", "cert", "acme.bindings"}),
        writes=frozenset({"domain", "acme"}),
        consumer_group="acme",
    ),
}


def perspective_group(name: str) -> str:
    """The consumer group of the remote perspective `name` (a prefix ACL covers them all)."""
    return f"{SERVICES['domain_verify_perspective'].consumer_group}.{name}"
