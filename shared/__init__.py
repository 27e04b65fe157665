"""The project's own shared code: config, logging, events, Kafka, MongoDB, HTTP scaffolding."""
