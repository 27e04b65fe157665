"""Confirmed addresses count for client certificates for CACERT_EMAIL_REUSE_DAYS, then are confirmed again:
over the member API and MongoDB, with the harness clock moved past the period."""

from __future__ import annotations

import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.registration.harness import running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]


async def test_an_address_confirmed_too_long_ago_is_confirmed_again_through_the_api(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    """The store's unverified-or-stale update over FerretDB, not only the in-memory store's."""
    from datetime import timedelta

    from tests.registration.csrs import build_csr

    async with running(kafka_settings, mongo_settings) as stack:
        api = stack.api
        _, token = await stack.member("Olga Old", "olga@example.org")
        stack.clock.advance(timedelta(days=31))
        token = await stack.login("olga@example.org")
        body = {"csr_pem": build_csr(emails=["olga@example.org"]), "profile": "client"}
        refused = await api.call("POST", "/v1/requests", token=token, json_body=body)
        assert refused.status == 422 and "confirmed too long ago" in str(refused.body["error"]), refused.body
        (email,) = (await api.call("GET", "/v1/emails", token=token)).body["emails"]
        assert email["verified"] is True and email["needs_confirmation_again"] is True
        assert (await api.call("POST", f"/v1/emails/{email['id']}/resend", token=token)).status == 202
        again = await stack.confirmation_token("olga@example.org", nth=2)
        assert (await api.call("POST", "/v1/emails/confirm", json_body={"token": again})).status == 200
        (email,) = (await api.call("GET", "/v1/emails", token=token)).body["emails"]
        assert email["needs_confirmation_again"] is False
        assert (await api.call("POST", "/v1/requests", token=token, json_body=body)).status == 202
