"""The corroboration deadline sweep judges answers by when they were written, not when they were read.

Found by the chaos run (`pause:domain_verify`, issue 23): the primary was stopped (SIGSTOP) for 20 s right
after asking its perspective about a CAA check; the perspective answered 5 s later, well inside the 15 s
deadline, but when the primary resumed its sweep ran before its consumer had read the answer and decided
"perspective_disagreement: no answer in time", so the member's certificate request was refused.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta
from typing import Any

from services.domain_verify.checks import CheckOutcome
from services.domain_verify.corroboration import GIVE_UP_LAG, Corroboration

T0 = datetime(2026, 12, 3, 15, 37, 16, tzinfo=UTC)
DEADLINE = T0 + timedelta(seconds=15)


class Store:
    collection = "corroborations"
    outcomes = "outcomes"

    def __init__(self) -> None:
        primary = CheckOutcome(ok=True, reason="permitted", found=[]).to_document()
        self.doc: dict[str, Any] = {"_id": "check-1", "purpose": "caa", "kind": "caa", "params": {},
                                    "subject": {"request_id": "r-1"}, "primary": primary,
                                    "perspectives": ["perspective-a"], "answers": {}, "state": "waiting",
                                    "deadline": DEADLINE}
        self.decisions: list[dict[str, Any]] = []

    async def overdue(self, now: datetime, limit: int = 200) -> list[dict[str, Any]]:
        return [self.doc] if self.doc["state"] == "waiting" and self.doc["deadline"] <= now else []

    async def settle(self, check_id: str, now: datetime, decision: dict[str, Any], event: Any) -> bool:
        self.doc["state"] = "decided"
        self.decisions.append(decision)
        return True


class Outbox:
    async def flush(self, collection: Any, key: str) -> None:
        return None


def corroboration(store: Store, now: datetime, read_until: list[datetime | None]) -> Corroboration:
    settings = types.SimpleNamespace(max_disagreements=-1, perspectives=["perspective-a"],
                                     perspective_timeout_seconds=15.0)

    async def answers_read_until() -> datetime | None:
        return read_until[0]

    return Corroboration(store, Outbox(), settings, {"caa": lambda *args: object()},  # type: ignore[arg-type,dict-item]
                         clock=lambda: now, answers_read_until=answers_read_until)


async def test_pause_domain_verify_past_a_deadline_reads_the_in_time_answer_before_deciding() -> None:
    store = Store()
    resumed = T0 + timedelta(seconds=26)  # the primary comes back 11 s after the deadline
    read_until: list[datetime | None] = [None]  # the answer (written at T0 + 5 s) is not read yet
    sweep = corroboration(store, resumed, read_until)

    assert await sweep.sweep_once() == 0, "decided before reading the answers written in time"
    read_until[0] = T0 + timedelta(seconds=10)  # read up to a moment before the deadline: still wait
    assert await sweep.sweep_once() == 0

    # the consumer reads the answer; the check has every answer and is decided on it
    store.doc["answers"]["perspective-a"] = {"ok": True, "reason": "permitted", "found": [], "details": {},
                                             "checked_at": (T0 + timedelta(seconds=5)).isoformat()}
    read_until[0] = resumed
    assert await sweep.sweep_once() == 1
    assert store.decisions == [{"ok": True, "reason": "permitted", "perspectives": {"perspective-a": True}}]


async def test_a_silent_perspective_still_fails_the_check_once_the_answers_are_read() -> None:
    store = Store()
    sweep = corroboration(store, DEADLINE + timedelta(seconds=3), [DEADLINE + timedelta(seconds=2)])
    assert await sweep.sweep_once() == 1
    assert store.decisions[0]["ok"] is False and store.decisions[0]["reason"] == "perspective_disagreement"


async def test_a_group_that_never_catches_up_decides_after_the_give_up_lag() -> None:
    store = Store()
    assert await corroboration(store, DEADLINE + GIVE_UP_LAG - timedelta(seconds=1), [None]).sweep_once() == 0
    assert await corroboration(store, DEADLINE + GIVE_UP_LAG, [None]).sweep_once() == 1
    assert store.decisions[0]["ok"] is False
