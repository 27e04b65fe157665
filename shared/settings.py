"""Settings every service shares; each service nests these in its own typed settings."""

from __future__ import annotations

import dataclasses

from shared.config import HttpSettings, KafkaSettings, MongoSettings, setting


@dataclasses.dataclass(frozen=True)
class CommonSettings:
    kafka: KafkaSettings
    mongo: MongoSettings
    http: HttpSettings
    log_level: str = setting("CACERT_LOG_LEVEL", "INFO")
    create_topics: bool = setting("CACERT_KAFKA_CREATE_TOPICS", True,
                                  help="create topics at start-up (dev); false where Strimzi owns them")
