"""Faults a breaking pass found in the batched remote takes (models/queue_takes.py,
take_tickets), each pinned by a test named after it, and behaviour it checked and kept."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from models import queue
from models.queue import Ticket
from models.queue_rules import AlreadyHolding, QuotaUsedUp, queue_rules
from models.queue_takes import RemoteTakes
from tests.conftest import TEST_DATABASE_URL
from tests.models.test_queue import MONDAY_10, category_of, hall_of, local, take
from tests.models.test_queue_takes import BATCH, FakeConnection, request

PG_URL = TEST_DATABASE_URL.replace("postgres://", "postgresql://", 1)


@pytest.fixture
def postgres(db: str) -> str:
    if not TEST_DATABASE_URL:
        pytest.skip("remote takes are batched on PostgreSQL only")
    return db


def rules_with_quota(quota: int) -> Any:
    return replace(queue_rules(), quotas={"main": {"livelihood": quota}})


def start_take(openid: str, rules: Any, at: datetime = MONDAY_10) -> asyncio.Future[Any]:
    async def one() -> Any:
        hall, category = await hall_of(), await category_of()
        return await queue.issue_and_read_wait(hall, category, at, openid=openid, rules=rules)

    return asyncio.ensure_future(one())


async def blocked_calls(watcher: asyncpg.Connection) -> list[int]:
    rows = await watcher.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE 'CALL take_tickets%'"
    )
    return [row["pid"] for row in rows]


async def until_blocked(watcher: asyncpg.Connection, count: int = 1) -> list[int]:
    for _ in range(300):
        pids = await blocked_calls(watcher)
        if len(pids) >= count:
            return pids
        await asyncio.sleep(0.02)
    raise AssertionError("no take_tickets call got blocked")


def waiting_in_flight() -> int:
    flights = queue.queue_takes.remote_takes._flights.values()
    return sum(len(flight.waiting) for flight in flights)


async def start_in_order(openids: list[str], rules: Any, at: datetime = MONDAY_10) -> list[Any]:
    """Start takes one after another, each waiting in the flight before the next starts."""
    started = []
    for i, openid in enumerate(openids, 1):
        started.append(start_take(openid, rules, at))
        await until_waiting(i)
    return started


async def until_waiting(count: int) -> None:
    for _ in range(300):
        if waiting_in_flight() >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {count} takes waiting, {waiting_in_flight()} are")


async def batch_behind_a_call(
    openids: list[str], rules: Any, at: datetime = MONDAY_10, first: str = "o-first"
) -> list[Any]:
    """Hold `first`'s call on the counter's lock while `openids` queue behind it in order,
    then let go: they meet in one batch. Return every outcome, `first`'s first."""
    watcher = await asyncpg.connect(PG_URL)
    try:
        async with locked("number_counter", "EXCLUSIVE") as locker:
            held = start_take(first, rules, at)
            await until_blocked(watcher)
            rest = await start_in_order(openids, rules, at)
            await locker.execute("ROLLBACK")
            return await asyncio.gather(held, *rest, return_exceptions=True)
    finally:
        await watcher.close()


async def readings_failing_twice(stop: str, rules: Any, batched: int) -> list[Any]:
    """Fail the readings of o-first's call, then of the batch of `batched` takes behind it.

    A lock on the citizen table holds each call at its last reading, after its commit; `stop`
    (pg_cancel_backend or pg_terminate_backend) ends it there. Return the batch's outcomes.
    """
    watcher = await asyncpg.connect(PG_URL)
    try:
        async with locked("citizen", "ACCESS EXCLUSIVE"):
            first = start_take("o-first", rules)
            pids = await until_blocked(watcher)
            rest = await start_in_order([f"o-{i}" for i in range(batched)], rules)
            await watcher.execute(f"SELECT {stop}($1)", pids[0])
            await first
            pids = await until_blocked(watcher)
            await watcher.execute(f"SELECT {stop}($1)", pids[0])
            return await asyncio.gather(*rest, return_exceptions=True)
    finally:
        await watcher.close()


@contextlib.asynccontextmanager
async def locked(table: str, mode: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold a lock on `table` until the block ends (or `release` is awaited)."""
    locker = await asyncpg.connect(PG_URL)
    tx = locker.transaction()
    await tx.start()
    await locker.execute(f"LOCK TABLE {table} IN {mode} MODE")
    try:
        yield locker
    finally:
        with contextlib.suppress(Exception):
            await tx.rollback()
        await locker.close()


async def test_takes_past_the_quota_in_a_batch_whose_readings_fail_are_told_the_quota_is_used_up(
    postgres: str,
) -> None:
    """A batch past the quota whose readings fail after the commit: the numbered take gets
    its number (via _committed_take), but the takes refused for the quota got the database's
    error instead of QuotaUsedUp ("today's remote numbers are gone")."""
    outcomes = await readings_failing_twice("pg_cancel_backend", rules_with_quota(2), 3)

    assert outcomes[0][0].number == "A002"
    assert [type(o).__name__ for o in outcomes[1:]] == ["QuotaUsedUp", "QuotaUsedUp"], outcomes


async def test_a_holder_from_an_earlier_day_first_in_a_batch_at_the_quota_gets_the_number(
    postgres: str,
) -> None:
    """[o-stale (active ticket from Sunday), o-b, o-c] meet in one call with 2 units of the
    quota left. The batch hit o-stale's old active key and was redone one by one: o-b and o-c
    took both units, then o-stale's expired-and-retried take found the quota gone. The batch's
    first take was refused and its last numbered: the reverse of 'number the first ones'."""
    await take("o-stale", local(1, 16))  # Sunday, never closed
    outcomes = await batch_behind_a_call(["o-stale", "o-b", "o-c"], rules_with_quota(3))

    given = {
        o: (r[0].number if isinstance(r, tuple) else type(r).__name__)
        for o, r in zip(("o-first", "o-stale", "o-b", "o-c"), outcomes, strict=True)
    }
    assert given["o-first"] == "A001"
    assert isinstance(outcomes[1], tuple), given  # o-stale was first of its batch
    assert isinstance(outcomes[3], QuotaUsedUp), given


async def test_the_take_that_made_the_flight_and_gave_up_before_its_call_takes_no_number() -> None:
    """The waiting takes that gave up were left out of the next call, but the take that made
    the flight was sent even when it gave up before its call began: a number (and a unit of
    the quota) taken for a request no longer there."""
    takes, conn = RemoteTakes(), FakeConnection()
    leaving = asyncio.ensure_future(takes.take(conn, BATCH, request("o-leaving")))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the take has made its flight; the call has not begun
    leaving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await leaving
    for task in list(takes._tasks):
        await task

    assert conn.batches == []


async def test_a_batch_refused_for_a_holder_keeps_its_order_for_the_last_numbers(
    postgres: str,
) -> None:
    """[o-h (holds today's number), o-b, o-c] meet with one unit of the quota left. The batch is
    refused for o-h's key and redone one by one, all three calls at once: whichever reached the
    counter first got the unit. Seen: o-c numbered while o-b (before it) was refused, and o-h,
    who holds a number, told the quota is used up instead of 'already holding'."""
    seen: list[dict[str, str]] = []
    for day in range(2, 7):  # Monday to Friday: a fresh counter and quota each round
        at = local(day, 10)
        h, b, c = f"o-h{day}", f"o-b{day}", f"o-c{day}"
        await take(h, at)
        outcomes = await batch_behind_a_call(
            [h, b, c], rules_with_quota(3), at, first=f"o-first{day}"
        )
        seen.append(
            {
                o: (r[0].number if isinstance(r, tuple) else type(r).__name__)
                for o, r in zip(("first", "h", "b", "c"), outcomes, strict=True)
            }
        )
    expected = {"first": "A002", "h": "AlreadyHolding", "b": "A003", "c": "QuotaUsedUp"}
    assert [s for s in seen if s != expected] == [], seen


# What the pass tried and found held.


async def test_a_batch_killed_after_its_commit_still_gives_every_take_its_number(
    postgres: str,
) -> None:
    """The connection of a batch's call terminated during its readings (after the commit):
    each take of the batch is told its own number, none an error."""
    outcomes = await readings_failing_twice("pg_terminate_backend", queue_rules(), 4)

    assert sorted(o[0].number for o in outcomes) == ["A002", "A003", "A004", "A005"], outcomes


async def test_each_of_a_batch_is_told_who_is_ahead_among_bookings_transfers_and_requeues(
    postgres: str,
) -> None:
    """Before the batch: a checked-in booking (priority), an on-site walk-in, a cancelled
    ticket, a ticket still waiting from Sunday, another category's. Each take of the batch
    must be told the waiting tickets called before it, as the single take counted them."""
    await take("o-sunday", local(1, 16))
    await take("o-booked", source="booking", priority=queue.BOOKING_PRIORITY)
    await take(None, source="onsite")
    gone = await take("o-gone")
    await queue.cancel(gone, MONDAY_10)
    await take("o-tax", category="tax")
    outcomes = await batch_behind_a_call([f"o-{i}" for i in range(5)], queue_rules())

    for ticket, readings in outcomes:
        waiting = await Ticket.filter(
            hall_id=ticket.hall_id, category_id=ticket.category_id, status="waiting",
            local_day=ticket.local_day,
        ).order_by(*queue.QUEUE_ORDER)  # fmt: skip
        assert readings.ahead == [t.id for t in waiting].index(ticket.id), ticket.number


async def test_takes_either_side_of_beijing_midnight_never_share_a_batch(postgres: str) -> None:
    """23:59:59 and 00:00:01 in Beijing (16:00 UTC): each side numbers its own day from 1."""
    rules = queue_rules()
    watcher = await asyncpg.connect(PG_URL)
    try:
        async with locked("number_counter", "EXCLUSIVE") as locker:
            late = start_take("o-late", rules, local(2, 23, 59, 59))
            early = start_take("o-early", rules, local(3, 0, 0, 1))
            await until_blocked(watcher, 2)
            more = [start_take(f"o-late{i}", rules, local(2, 23, 59, 59)) for i in range(2)]
            more += [start_take(f"o-early{i}", rules, local(3, 0, 0, 1)) for i in range(2)]
            await until_waiting(4)
            await locker.execute("ROLLBACK")
            outcomes = await asyncio.gather(late, early, *more)
    finally:
        await watcher.close()

    by_day: dict[str, list[str]] = {}
    for ticket, _ in outcomes:
        by_day.setdefault(str(ticket.local_day), []).append(ticket.number)
    assert {d: sorted(n) for d, n in by_day.items()} == {
        "2026-03-02": ["A001", "A002", "A003"],
        "2026-03-03": ["A001", "A002", "A003"],
    }


async def test_other_processes_calling_take_tickets_meanwhile_never_share_a_number(
    postgres: str,
) -> None:
    """Three other 'processes' (raw connections) call take_tickets in batches of 4 while this
    one's batcher takes 30 and a ticket machine prints 10 on-site numbers: 52 distinct,
    gap-free numbers, and the quota (40) counted for the remote ones only, then refused."""
    hall, category = await hall_of(), await category_of()
    rules = rules_with_quota(40)
    others = [await asyncpg.connect(PG_URL) for _ in range(3)]

    async def other(conn: asyncpg.Connection, n: int) -> list[Any]:
        out = []
        for round_ in range(2):
            openids = [f"p{n}-{round_}-{i}" for i in range(4)]
            row = await conn.fetchrow(
                "CALL take_tickets($1, $2, $3, 1, $4, 'A', $5, $6, $7, 20, 'livelihood')",
                hall.id, category.id, MONDAY_10.date(), 40, openids,
                [f"{o}:{category.id}" for o in openids], [MONDAY_10] * 4,
            )  # fmt: skip
            out.extend(row["numbers"] or [])
        return out

    try:
        results = await asyncio.gather(
            *(other(c, n) for n, c in enumerate(others)),
            *(start_take(f"o-{i}", rules) for i in range(30)),
            *(take(None, source="onsite") for _ in range(10)),
            return_exceptions=True,
        )
    finally:
        for conn in others:
            await conn.close()

    numbers = [n for r in results[:3] for n in r]  # type: ignore[union-attr]
    numbers += [r[0].number for r in results[3:33] if isinstance(r, tuple)]
    numbers += [r.number for r in results[33:]]
    refused = [r for r in results[3:33] if isinstance(r, QuotaUsedUp)]
    assert len(numbers) == len(set(numbers)) == 24 + 30 - len(refused) + 10
    assert sorted(numbers) == [f"A{s:03d}" for s in range(1, len(numbers) + 1)]
    assert len(numbers) - 10 == 40


async def test_the_migration_steps_back_to_take_ticket_and_forward_again() -> None:
    """0009 backwards drops take_tickets and brings back 0008's take_ticket; forwards again."""
    if not TEST_DATABASE_URL:
        pytest.skip("the procedures are PostgreSQL's")
    from tortoise import Tortoise
    from tortoise.migrations.api.migrate import migrate as run_migrations

    from models.db import migrate, tortoise_config

    admin = await asyncpg.connect(PG_URL)
    try:
        with contextlib.suppress(asyncpg.DuplicateDatabaseError):
            await admin.execute("CREATE DATABASE breaker_mig")
    finally:
        await admin.close()
    url = TEST_DATABASE_URL.rsplit("/", 1)[0] + "/breaker_mig"
    scratch = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))

    async def routines() -> set[str]:
        rows = await scratch.fetch(
            "SELECT proname FROM pg_proc WHERE proname IN"
            " ('take_ticket', 'take_tickets', 'issue_ticket')"
        )
        return {row["proname"] for row in rows}

    try:
        await scratch.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        await migrate(url)
        assert await routines() == {"issue_ticket", "take_tickets"}
        try:
            await run_migrations(
                config=tortoise_config(url), target="models.0008_issue_ticket_function"
            )
        finally:
            await Tortoise.close_connections()
        assert await routines() == {"issue_ticket", "take_ticket"}
        await migrate(url)
        assert await routines() == {"issue_ticket", "take_tickets"}
    finally:
        await scratch.close()


async def test_a_stale_holder_twice_in_one_batch_gets_one_number_and_none_is_skipped(
    postgres: str,
) -> None:
    """o-stale (active ticket from Sunday) sends 取号 twice; both meet o-b and o-c in a batch:
    Sunday's ticket expires, o-stale gets one number and one 'already holding', no gap."""
    await take("o-stale", local(1, 16))
    outcomes = await batch_behind_a_call(["o-stale", "o-b", "o-stale", "o-c"], queue_rules())

    numbers = sorted(o[0].number for o in outcomes if isinstance(o, tuple))
    assert [type(o) for o in outcomes].count(AlreadyHolding) == 1, outcomes
    assert numbers == ["A001", "A002", "A003", "A004"]
    assert await Ticket.filter(openid="o-stale", status="waiting").count() == 1
    assert (await Ticket.get(openid="o-stale", local_day=local(1, 16).date())).status == "expired"
