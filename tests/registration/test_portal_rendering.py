"""The portal's one way of showing dates, fingerprints, statuses and failure reasons (web/rendering.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.registration.web.rendering import (
    day,
    failure_words,
    fingerprint,
    reason_words,
    status_words,
    subject_attributes,
    when,
)


def test_dates_fingerprints_statuses_and_reasons_have_one_form_each() -> None:
    assert day("2026-12-03T12:39:19.123456+00:00") == day(datetime(2026, 12, 3, tzinfo=UTC)) == "3 December 2026"
    assert day("2026-01-10") == "10 January 2026"
    assert when("2026-12-03T12:39:19.123456+00:00") == "3 December 2026, 12:39 UTC"
    assert when(None) == "" and day("not a date") == "not a date"
    assert fingerprint("ab01ff") == fingerprint("AB:01:FF") == "AB:01:FF"
    assert status_words("revocation_requested") == "Revocation requested" and status_words("caa_pending") == \
        "Approved, checking CAA records"
    assert status_words("something_new") == "Something new"
    assert reason_words("key_compromise").endswith("(key compromise)")
    assert failure_words("wrong_value").startswith("The CA found a different value")
    assert failure_words("some_new_code") == "Some new code."
    assert failure_words("The contact refused the request.") == "The contact refused the request."


def test_subject_attributes_are_named_in_words_not_oids() -> None:
    """Issue 22 item 6: the signer stores RFC 4514 text, which spells surname and givenName as dotted OIDs."""
    assert subject_attributes("2.5.4.4=Hopper,2.5.4.42=Grace,CN=Grace Hopper") == [
        ("Common name", "Grace Hopper"), ("Given name", "Grace"), ("Surname", "Hopper")]
    assert subject_attributes("1.2.840.113549.1.9.1=ada@example.org,CN=Ada\\, Countess") == [
        ("Common name", "Ada, Countess"), ("Email address", "ada@example.org")]
    assert subject_attributes("") == subject_attributes(None) == []
    assert subject_attributes("not rfc 4514") == [("Subject", "not rfc 4514")]
