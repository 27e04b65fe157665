"""A resolver that answers from a dict, for the pure unit tests of va/ (the real DNS is in tests/integration)."""

from __future__ import annotations

from services.domain_verify.va.resolver import Answer, LookupFailure, Resolver


class TableResolver(Resolver):
    """`records[(name, rdtype)]` is a list of records, or a LookupFailure to raise; anything else NXDOMAIN."""

    def __init__(self, records: dict[tuple[str, str], list[str] | LookupFailure], *,
                 authenticated: bool = False) -> None:
        super().__init__([("127.0.0.1", 53)])
        self.records = records
        self.authenticated = authenticated
        self.asked: list[tuple[str, str]] = []

    async def lookup(self, name: str, rdtype: str) -> Answer:
        key = (name.rstrip(".").lower(), rdtype)
        self.asked.append(key)
        found = self.records.get(key)
        if isinstance(found, LookupFailure):
            raise found
        return Answer(name=name, rdtype=rdtype, records=list(found or []), authenticated=self.authenticated,
                      nxdomain=found is None)
