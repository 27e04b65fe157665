"""Sign-up rules live in one place (services/registration/signup.py) and both front ends answer from it.

Each bad field is refused once, by the shared rule; the JSON API and the portal then word that same
problem as they always did (the API's error and the portal's line are pinned here);
tests/integration/test_registration_signup.py posts the same bad sign-ups to both front ends over HTTP.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from services.registration.api.accounts import first_for_api
from services.registration.signup import SignupProblem, SignupRefused, parse_signup
from services.registration.web.pages_accounts import signup_error_line
from tests.registration.harness import PASSWORD

TODAY = date(2026, 1, 15)
GOOD = {"name": "Ada Lovelace", "email": "ada@example.org", "date_of_birth": "1990-05-17", "password": PASSWORD}


def refused(**changed: str) -> SignupRefused:
    with pytest.raises(SignupRefused) as caught:
        parse_signup(**{**GOOD, **changed}, today=TODAY)
    return caught.value


def only_problem(**changed: str) -> SignupProblem:
    (problem,) = refused(**changed).problems
    return problem


def api_answer(problem: SignupProblem) -> tuple[int, str, str, Any]:
    return problem.error.status, problem.error.code, problem.error.message, problem.error.details


def test_a_good_signup_is_normalised() -> None:
    signup = parse_signup(**{**GOOD, "name": "  Ada \t Lovelace ", "email": "Ada@Example.ORG"}, today=TODAY)
    assert (signup.name, signup.email, signup.date_of_birth, signup.password) == (
        "Ada Lovelace", "ada@example.org", date(1990, 5, 17), PASSWORD,
    )


def test_a_blank_name_is_refused_by_one_rule_for_both_front_ends() -> None:
    problem = only_problem(name=" \t ")
    assert (problem.field, problem.rule, problem.problem) == ("name", "blank_name", "blank")
    assert api_answer(problem) == (
        422, "validation_failed", "name must not be blank", [{"field": "name", "problem": "blank"}],
    )
    assert signup_error_line(problem) == "Enter your name as it appears on your identity documents."


def test_an_unusable_email_is_refused_by_one_rule_for_both_front_ends() -> None:
    problem = only_problem(email="not-an-address")
    finding = "'not-an-address' is not an email address"
    assert (problem.field, problem.rule, problem.problem) == ("email", "unusable_email", finding)
    assert api_answer(problem) == (
        422, "validation_failed", "email is not a usable email address", [{"field": "email", "problem": finding}],
    )
    assert signup_error_line(problem) == f"Email: {finding}."


def test_a_date_of_birth_that_is_not_a_date_is_refused_by_one_rule_for_both_front_ends() -> None:
    problem = only_problem(date_of_birth="1990-02-31")
    assert (problem.field, problem.rule) == ("date_of_birth", "not_a_date")
    assert api_answer(problem) == (
        422,
        "validation_failed",
        "date_of_birth must be a date YYYY-MM-DD",
        [{"field": "date_of_birth", "problem": "'1990-02-31' is not a valid date"}],
    )
    assert signup_error_line(problem) == "Date of birth: use the form YYYY-MM-DD."


@pytest.mark.parametrize("born", ["1899-12-31", TODAY.isoformat(), (TODAY + timedelta(days=1)).isoformat()])
def test_an_implausible_date_of_birth_is_refused_by_one_rule_for_both_front_ends(born: str) -> None:
    problem = only_problem(date_of_birth=born)
    assert (problem.field, problem.rule, problem.problem) == (
        "date_of_birth", "implausible_date", "must be after 1900 and in the past",
    )
    assert api_answer(problem) == (
        422,
        "validation_failed",
        "date_of_birth is not plausible",
        [{"field": "date_of_birth", "problem": "must be after 1900 and in the past"}],
    )
    assert signup_error_line(problem) == "Date of birth: it must be after 1900 and in the past."


def test_a_weak_password_is_refused_by_one_rule_for_both_front_ends() -> None:
    problem = only_problem(password="short")
    finding = "password must have at least 10 characters"
    assert (problem.field, problem.rule, problem.problem) == ("password", "weak_password", finding)
    assert api_answer(problem) == (422, "weak_password", finding, [{"field": "password", "problem": finding}])
    assert signup_error_line(problem) == f"Password: {finding}"


def test_every_bad_field_is_reported_and_the_api_answers_the_one_it_always_answered_first() -> None:
    everything = refused(name=" ", email="nope", date_of_birth="1800-01-01", password="short")
    assert [p.field for p in everything.problems] == ["name", "email", "date_of_birth", "password"]
    # The API used to stop at the first failed check: email, date format, name, date plausibility, password.
    assert first_for_api(everything).rule == "unusable_email"
    assert first_for_api(refused(name=" ", date_of_birth="x", password="short")).rule == "not_a_date"
    assert first_for_api(refused(name=" ", date_of_birth="1800-01-01", password="short")).rule == "blank_name"
    assert first_for_api(refused(date_of_birth="1800-01-01", password="short")).rule == "implausible_date"
