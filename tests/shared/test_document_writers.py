"""One writer per document in a process (shared.mongo.DocumentWriters), the guard against FerretDB v1's lost
updates (the chaos run's lost email confirmations, issue 23). Pure unit tests: no database."""

from __future__ import annotations

import asyncio

from shared.mongo import ANY_DOCUMENT, DocumentWriters, _single_id


async def _overlap(writers: DocumentWriters, first: dict[str, object], second: dict[str, object]) -> bool:
    """Whether a write of `second` could start while a write of `first` was still running."""
    inside = asyncio.Event()
    release = asyncio.Event()
    overlapped = False

    async def hold_first() -> None:
        async with writers.one_at_a_time("members", first):
            inside.set()
            await release.wait()

    async def try_second() -> None:
        nonlocal overlapped
        await inside.wait()
        async with writers.one_at_a_time("members", second):
            overlapped = not release.is_set()

    async def let_go() -> None:
        await inside.wait()
        await asyncio.sleep(0.05)
        release.set()

    await asyncio.gather(hold_first(), try_second(), let_go())
    return overlapped


async def test_two_writes_of_one_document_run_one_after_the_other() -> None:
    writers = DocumentWriters()
    assert not await _overlap(writers, {"_id": "m1", "password_hash": "x"}, {"_id": "m1"})
    assert len(writers) == 0  # nothing kept once nobody holds or waits


async def test_writes_of_two_documents_run_at_once() -> None:
    assert await _overlap(DocumentWriters(), {"_id": "m1"}, {"_id": "m2"})


async def test_writes_naming_no_single_document_run_one_after_the_other() -> None:
    assert not await _overlap(DocumentWriters(), {"status": "queued"}, {"_id": {"$in": ["a", "b"]}})
    assert _single_id({"_id": {"$in": ["a"]}}) is ANY_DOCUMENT and _single_id({"x": 1}) is ANY_DOCUMENT
    assert _single_id({"_id": 7}) == 7


async def test_a_failing_write_lets_the_next_one_in() -> None:
    writers = DocumentWriters()
    try:
        async with writers.one_at_a_time("members", {"_id": "m1"}):
            raise RuntimeError("the database refused")
    except RuntimeError:
        pass
    async with asyncio.timeout(1):
        async with writers.one_at_a_time("members", {"_id": "m1"}):
            pass
    assert len(writers) == 0


async def test_a_batch_write_holds_every_document_of_it_and_waits_for_each() -> None:
    writers = DocumentWriters()
    inside = asyncio.Event()
    release = asyncio.Event()
    order: list[str] = []

    async def single(document_id: str) -> None:
        async with writers.one_at_a_time("requests", {"_id": document_id}):
            inside.set()
            await release.wait()
            order.append(f"single {document_id}")

    async def batch() -> None:
        await inside.wait()
        async with writers.each_of("requests", [{"_id": "r2"}, {"_id": "r1"}, {"_id": "r2"}]):
            order.append("batch")

    async def let_go() -> None:
        await inside.wait()
        await asyncio.sleep(0.05)
        order.append("released")
        release.set()

    async with asyncio.timeout(2):
        await asyncio.gather(single("r1"), batch(), let_go())
    assert order == ["released", "single r1", "batch"]  # the batch waited for r1's writer; r2 named twice is fine
    assert len(writers) == 0


async def test_two_batches_of_overlapping_documents_in_any_order_never_wait_for_each_other_for_ever() -> None:
    """Batch one names (a, b), batch two (b, a), and both wait for a writer of `a`. Taken in the order given,
    batch two would hold `b` while waiting for `a`, and batch one, given `a`, would wait for `b`: a circle.
    Taken in one fixed order, both wait for `a` first and hold nothing meanwhile."""
    writers = DocumentWriters()
    holding = asyncio.Event()
    release = asyncio.Event()
    done: list[str] = []

    async def hold_a() -> None:
        async with writers.one_at_a_time("requests", {"_id": "a"}):
            holding.set()
            await release.wait()

    async def batch(name: str, ids: list[str]) -> None:
        await holding.wait()
        async with writers.each_of("requests", [{"_id": i} for i in ids]):
            await asyncio.sleep(0)
            done.append(name)

    async def let_go() -> None:
        await holding.wait()
        await asyncio.sleep(0.05)  # both batches are waiting by now
        release.set()

    async with asyncio.timeout(2):
        await asyncio.gather(hold_a(), batch("one", ["a", "b"]), batch("two", ["b", "a"]), let_go())
    assert sorted(done) == ["one", "two"]
    assert len(writers) == 0
