"""Which service reads and writes which topic: the single source for Kafka ACLs.

The Strimzi KafkaUser ACLs in deploy/k8s are checked against this table, and
a test checks that each service's code subscribes and publishes only within
it, so the table, the code and the cluster's permissions cannot drift apart.
Every reader may also write the dead-letter twin of what it reads.
"""

from __future__ import annotations

import dataclasses

from shared.events.catalog import DLQ_SUFFIX


@dataclasses.dataclass(frozen=True)
class TopicAccess:
    reads: frozenset[str]
    writes: frozenset[str]
    consumer_group: str

    @property
    def dead_letters(self) -> frozenset[str]:
        return frozenset(t + DLQ_SUFFIX for t in self.reads)


SERVICES: dict[str, TopicAccess] = {
    "registration": TopicAccess(
        reads=frozenset({"domain", "cert"}),
        writes=frozenset({"member", "domain", "csr", "cert", "mail.commands"}),
        consumer_group="registration",
    ),
    "domain_verify": TopicAccess(
        reads=frozenset({"domain"}),
        writes=frozenset({"domain", "mail.commands"}),
        consumer_group="domain_verify",
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
}
