"""Remote takes batched per process: who shares a call, and what each take is told."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
from tortoise.exceptions import IntegrityError, OperationalError

from models import queue
from models.queue import NumberCounter, Ticket
from models.queue_rules import AlreadyHolding, QuotaUsedUp, queue_rules
from models.queue_takes import Batch, RemoteTakes, Request
from tests.conftest import TEST_DATABASE_URL
from tests.models.test_queue import MONDAY_10, category_of, hall_of, take

BATCH = Batch(1, 2, date(2026, 3, 2), True, 100, "A", "livelihood", 20)
AT = datetime(2026, 3, 2, 2, tzinfo=UTC)


class FakeConnection:
    """Answers take_tickets as PostgreSQL would, one call at a time, when let go."""

    def __init__(self, *, quota: int = 10**6, held: frozenset[str] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.held = held
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: Exception | None = None
        self.quota = quota
        self.seq = 0

    async def execute_query_dict(self, sql: str, values: list[Any]) -> list[dict[str, Any]]:
        if sql.startswith("SELECT active_key"):
            return [{"active_key": key} for key in values[0] if key in self.held]
        openids = list(values[6])
        self.batches.append(openids)
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if len(set(openids)) < len(openids) or self.held & set(values[7]):
            raise IntegrityError("duplicate key value violates unique constraint")
        granted = max(0, min(len(openids), self.quota - self.seq))
        if not granted:
            return [dict.fromkeys(("ids", "seqs", "numbers", "places", "aheads", "windows"))]
        seqs = list(range(self.seq + 1, self.seq + granted + 1))
        self.seq += granted
        return [
            {
                "ids": seqs,
                "seqs": seqs,
                "numbers": [f"A{s:03d}" for s in seqs],
                "places": seqs,
                "aheads": [s - 1 for s in seqs],
                "handling_min": None,
                "windows": "[]",
                "near_aheads": [None] * granted,
            }
        ]


def request(openid: str) -> Request:
    return Request(openid, f"{openid}:2", AT)


async def start_takes(
    takes: RemoteTakes, conn: FakeConnection, openids: list[str]
) -> list[asyncio.Task[Any]]:
    started = [
        asyncio.ensure_future(takes.take(conn, BATCH, request(o)))  # type: ignore[arg-type]
        for o in openids
    ]
    await asyncio.sleep(0)
    return started


async def test_takes_arriving_during_a_call_share_the_next_one() -> None:
    takes, conn = RemoteTakes(), FakeConnection()
    conn.gate.clear()
    first = await start_takes(takes, conn, ["o-first"])
    rest = await start_takes(takes, conn, [f"o-{i}" for i in range(5)])

    conn.gate.set()
    rows = await asyncio.gather(*first, *rest)

    assert conn.batches == [["o-first"], [f"o-{i}" for i in range(5)]]
    assert [row["number"] for row in rows] == [f"A{s:03d}" for s in range(1, 7)]


async def test_a_quiet_take_goes_straight_through_alone() -> None:
    takes, conn = RemoteTakes(), FakeConnection()

    row = await takes.take(conn, BATCH, request("o-alone"))  # type: ignore[arg-type]

    assert (conn.batches, row and row["number"]) == ([["o-alone"]], "A001")


async def test_a_backlog_goes_in_calls_of_at_most_max_batch() -> None:
    takes, conn = RemoteTakes(max_batch=4), FakeConnection()
    conn.gate.clear()
    started = await start_takes(takes, conn, [f"o-{i}" for i in range(11)])

    conn.gate.set()
    await asyncio.gather(*started)

    assert [len(batch) for batch in conn.batches] == [4, 4, 3]


async def test_takes_past_the_quota_get_none_and_the_first_their_numbers() -> None:
    takes, conn = RemoteTakes(), FakeConnection(quota=3)
    conn.gate.clear()
    started = await start_takes(takes, conn, [f"o-{i}" for i in range(5)])

    conn.gate.set()
    rows = await asyncio.gather(*started)

    assert [row and row["number"] for row in rows] == ["A001", "A002", "A003", None, None]


async def test_a_holder_in_a_batch_is_refused_alone_and_the_others_keep_their_order() -> None:
    takes, conn = RemoteTakes(), FakeConnection(held=frozenset({"o-holder:2"}))
    conn.gate.clear()
    started = await start_takes(takes, conn, ["o-a", "o-holder", "o-b"])

    conn.gate.set()
    outcomes = await asyncio.gather(*started, return_exceptions=True)

    assert conn.batches == [["o-a", "o-holder", "o-b"], ["o-a", "o-b"]]
    assert isinstance(outcomes[1], IntegrityError)
    assert [outcomes[0]["number"], outcomes[2]["number"]] == ["A001", "A002"]


async def test_a_citizens_second_take_waits_for_the_next_call() -> None:
    takes, conn = RemoteTakes(), FakeConnection()
    conn.gate.clear()
    started = await start_takes(takes, conn, ["o-twice", "o-other", "o-twice"])

    conn.gate.set()
    await asyncio.gather(*started, return_exceptions=True)

    assert conn.batches == [["o-twice", "o-other"], ["o-twice"]]


async def test_a_failed_call_fails_each_of_its_takes_and_the_next_call_goes_on() -> None:
    takes, conn = RemoteTakes(), FakeConnection()
    conn.gate.clear()
    conn.fail_with = OperationalError("connection lost")
    first = await start_takes(takes, conn, ["o-a"])
    failing = await start_takes(takes, conn, ["o-b", "o-c"])

    conn.gate.set()
    outcomes = await asyncio.gather(*first, *failing, return_exceptions=True)
    conn.fail_with = None
    after = await takes.take(conn, BATCH, request("o-after"))  # type: ignore[arg-type]

    assert all(isinstance(outcome, OperationalError) for outcome in outcomes)
    assert after is not None and after["number"] == "A001"


async def test_a_take_that_gave_up_before_its_call_takes_no_number() -> None:
    takes, conn = RemoteTakes(), FakeConnection()
    conn.gate.clear()
    started = await start_takes(takes, conn, ["o-first", "o-leaving", "o-staying"])
    started[1].cancel()

    conn.gate.set()
    outcomes = await asyncio.gather(*started, return_exceptions=True)

    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert [outcomes[0]["number"], outcomes[2]["number"]] == ["A001", "A002"]
    assert conn.batches == [["o-first", "o-staying"]]


async def test_a_flight_stopped_with_its_loop_leaves_no_take_stuck_behind_it() -> None:
    """A flight cancelled mid-call (its event loop closing) kept its batch marked as in
    flight: every later take of that batch would have queued behind it for ever."""
    takes, conn = RemoteTakes(), FakeConnection()
    conn.gate.clear()
    started = await start_takes(takes, conn, ["o-first", "o-waiting"])
    for task in list(takes._tasks):
        task.cancel()
    outcomes = await asyncio.gather(*started, return_exceptions=True)

    conn.gate.set()
    after = await asyncio.wait_for(
        takes.take(conn, BATCH, request("o-after")),  # type: ignore[arg-type]
        timeout=1.0,
    )

    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
    assert after is not None


# On PostgreSQL, through the queue's own take.


@pytest.fixture
def postgres(db: str) -> str:
    if not TEST_DATABASE_URL:
        pytest.skip("remote takes are batched on PostgreSQL only")
    return db


async def remote_takes_at_once(openids: list[str], **rules: Any) -> list[Any]:
    hall, category = await hall_of(), await category_of()
    chosen = replace(queue_rules(), **rules)
    return await asyncio.gather(
        *(
            queue.issue_and_read_wait(hall, category, MONDAY_10, openid=o, rules=chosen)
            for o in openids
        ),
        return_exceptions=True,
    )


async def test_concurrent_remote_takes_share_calls_and_each_is_told_its_own_place(
    postgres: str,
) -> None:
    calls_before = queue.queue_takes.remote_takes.calls

    outcomes = await remote_takes_at_once([f"o-rush-{i}" for i in range(30)])

    numbers = sorted(ticket.number for ticket, _ in outcomes)
    assert numbers == [f"A{s:03d}" for s in range(1, 31)]
    assert all(readings.ahead == ticket.seq - 1 for ticket, readings in outcomes)
    assert queue.queue_takes.remote_takes.calls - calls_before < 30
    assert await Ticket.filter(number__in=numbers).count() == 30


async def test_a_batch_past_the_quota_numbers_the_first_and_refuses_the_rest(
    postgres: str,
) -> None:
    outcomes = await remote_takes_at_once(
        [f"o-q-{i}" for i in range(8)], quotas={"main": {"livelihood": 5}}
    )

    numbers = sorted(o[0].number for o in outcomes if not isinstance(o, BaseException))
    refused = [o for o in outcomes if isinstance(o, QuotaUsedUp)]
    counter = await NumberCounter.get()
    assert (numbers, len(refused)) == ([f"A{s:03d}" for s in range(1, 6)], 3)
    assert (counter.seq, counter.remote_taken) == (5, 5)


async def test_a_holder_in_a_batch_is_refused_alone_and_no_number_is_skipped(
    postgres: str,
) -> None:
    await take("o-holder")

    outcomes = await remote_takes_at_once(["o-b1", "o-holder", "o-b2", "o-holder"])

    assert [type(o) for o in outcomes].count(AlreadyHolding) == 2
    numbers = sorted(o[0].number for o in outcomes if not isinstance(o, BaseException))
    assert numbers == ["A002", "A003"]


async def test_one_citizen_twice_in_a_batch_gets_one_number(postgres: str) -> None:
    outcomes = await remote_takes_at_once(["o-first", "o-double", "o-double"])

    held = [o for o in outcomes if not isinstance(o, BaseException)]
    assert [type(o) for o in outcomes].count(AlreadyHolding) == 1
    assert sorted(ticket.number for ticket, _ in held) == ["A001", "A002"]
    assert await Ticket.filter(openid="o-double").count() == 1
