"""The ACME web front end (RFC 8555 section 7): request checks, problem documents, one handler per resource."""
