"""Who may sign up: one copy of the sign-up field rules for the JSON API and the web portal.

Both front ends used to re-state these checks (name not blank, a usable email address, a plausible
date of birth, a strong enough password) and could drift apart. `parse_signup` applies every rule
and reports every refused field; the front ends only word the refusal (the API answers one problem
as JSON, the portal lists them all above the form), so the two can never disagree on what is allowed.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Literal

from services.registration.api.common import email_field, parse_date
from services.registration.email_addresses import EmailAddresses
from services.registration.members import Member, Members, new_member_id
from services.registration.passwords import password_problem
from shared.http import ApiError

Rule = Literal["blank_name", "unusable_email", "not_a_date", "implausible_date", "weak_password"]
EARLIEST_BIRTH_YEAR = 1900


@dataclasses.dataclass(frozen=True)
class Signup:
    """Sign-up fields that passed every rule, normalised as the member record stores them."""

    name: str
    email: str
    date_of_birth: date
    password: str


@dataclasses.dataclass(frozen=True)
class SignupProblem:
    """One refused field: which rule refused it, and the JSON API's answer for it.

    `error` is what the API has always answered (status, code, message, details), kept here so the
    wording of each rule lives next to the rule; the portal words the same problem for its form.
    """

    field: str  # "name", "email", "date_of_birth" or "password"
    rule: Rule
    error: ApiError

    @property
    def problem(self) -> str:
        """What is wrong with the value (the `problem` of the API's details)."""
        return str(self.error.details[0]["problem"])


class SignupRefused(Exception):
    """The sign-up cannot go ahead; `problems` lists every refused field in form order."""

    def __init__(self, problems: list[SignupProblem]) -> None:
        super().__init__("; ".join(p.error.message for p in problems))
        self.problems = tuple(problems)


def _field_error(field: str, message: str, problem: str, code: str = "validation_failed") -> ApiError:
    return ApiError(422, code, message, [{"field": field, "problem": problem}])


def parse_signup(*, name: str, email: str, date_of_birth: str, password: str, today: date) -> Signup:
    """The normalised sign-up, or SignupRefused naming every field that breaks a rule.

    All fields are checked (not just the first bad one) so the portal can show every problem at once.
    """
    problems: list[SignupProblem] = []
    name = " ".join(name.split())
    if not name:
        problems.append(
            SignupProblem("name", "blank_name", _field_error("name", "name must not be blank", "blank"))
        )
    address = ""
    try:
        address = email_field(email)
    except ApiError as exc:
        problems.append(SignupProblem("email", "unusable_email", exc))
    born: date | None = None
    try:
        born = parse_date(date_of_birth, "date_of_birth")
    except ApiError as exc:
        problems.append(SignupProblem("date_of_birth", "not_a_date", exc))
    # A birth date in the future or before 1900 is a typing error, not a member.
    if born is not None and (born >= today or born.year < EARLIEST_BIRTH_YEAR):
        error = _field_error(
            "date_of_birth", "date_of_birth is not plausible", f"must be after {EARLIEST_BIRTH_YEAR} and in the past"
        )
        problems.append(SignupProblem("date_of_birth", "implausible_date", error))
    weak = password_problem(password)
    if weak:
        problems.append(
            SignupProblem("password", "weak_password", _field_error("password", weak, weak, code="weak_password"))
        )
    if problems or born is None:
        raise SignupRefused(problems)
    return Signup(name=name, email=address, date_of_birth=born, password=password)


async def enrol(signup: Signup, members: Members, emails: EmailAddresses) -> Member:
    """The new member, with the confirmation mail for its address queued in the same insert (the
    outbox), so a member never exists without its mail on the way. Both front ends enrol this way."""
    member_id = new_member_id()
    mail = await emails.confirmation_mail(member_id, signup.email, signup.name)
    return await members.create(
        name=signup.name,
        date_of_birth=signup.date_of_birth,
        address=signup.email,
        password=signup.password,
        member_id=member_id,
        pending_events=[mail],
    )
