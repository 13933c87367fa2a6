"""Several webhook processes on PostgreSQL and Redis: numbers and calls never collide."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from benchmarks.bench_rush import (
    AES_KEY,
    APP_ID,
    APP_SECRET,
    PREFIX,
    RUSH_WINDOWS,
    TOKEN,
    Fleet,
    rush,
    window_headers,
    write_rules,
)
from bot.platform_sim import Platform
from bot.standin import StandIn
from models.hall import Hall
from models.queue import Ticket, TicketEvent, seed_windows
from models.queue_rules import load_rules
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL and TEST_REDIS_URL),
    reason="needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL",
)

SERVERS = 4
CITIZENS = 1000
CALLS = 240
LATE_NUMBER = re.compile(rf"您的号码：({PREFIX}\d{{3,}})")
AHEAD = re.compile(r"前面还有 (\d+) 人")


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    """The WeChat API stand-in for the fleet's account."""
    stand_in = StandIn(app_id=APP_ID, app_secret=APP_SECRET)
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


@pytest.fixture
async def fleet(db: str, standin: StandIn, tmp_path: Path) -> AsyncIterator[Fleet]:
    """Four webhook processes on the test database and Redis, the main hall open all day."""
    rules_file = write_rules(tmp_path / "queue.toml", quota=10 * CITIZENS)
    await seed_windows(load_rules(rules_file))
    all_day = [{"days": [1, 2, 3, 4, 5, 6, 7], "open": "00:00", "close": "24:00"}]
    await Hall.filter(code="main").update(hours=all_day)
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    fleet = Fleet(db, TEST_REDIS_URL, standin.url, rules_file, servers=SERVERS, workers=0)
    await fleet.start()
    yield fleet
    await fleet.stop()


async def settle(is_done: Callable[[], bool], wait_s: float = 30.0) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        if is_done() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_concurrent_takes_in_one_category_get_distinct_numbers(
    fleet: Fleet, standin: StandIn
) -> None:
    platform = Platform(TOKEN, APP_ID, AES_KEY, mode=fleet.mode)

    takes, _ = await rush(fleet.urls, platform, CITIZENS, spread_s=0.0)
    # A take past the reply budget is still being answered, by a customer-service message.
    late_count = sum(1 for take in takes if not take.number)
    await settle(lambda: len(standin.sent("custom")) >= late_count)

    tickets = await Ticket.filter(openid__startswith="oRUSH").values_list("openid", "number")
    by_citizen = dict(tickets)
    assert len(tickets) == CITIZENS, fleet.logs()
    assert len(set(by_citizen.values())) == CITIZENS
    assert sorted(int(n[len(PREFIX) :]) for n in by_citizen.values()) == list(
        range(1, CITIZENS + 1)
    )
    # Every citizen is told their own number: in the reply, or (past the reply budget) by a
    # customer-service message.
    late = {
        r.body["touser"]: LATE_NUMBER.search(r.body["text"]["content"])
        for r in standin.sent("custom")
    }
    for take in takes:
        told = take.number or (late[take.openid].group(1) if late.get(take.openid) else None)
        assert told == by_citizen[take.openid], (take.openid, take.status, take.text[:60])
    # Each is told exactly how many took a number before them: the count waits for the takes
    # ahead to commit (a count in the issuing statement's own snapshot would miss some).
    for take in takes:
        if take.number:
            seq = int(take.number[len(PREFIX) :])
            ahead = AHEAD.search(take.text)
            assert (int(ahead.group(1)) if ahead else 0) == seq - 1, take.text


@pytest.mark.timeout(120)
async def test_windows_calling_at_once_never_share_a_ticket(fleet: Fleet) -> None:
    platform = Platform(TOKEN, APP_ID, AES_KEY, mode=fleet.mode)
    await rush(fleet.urls, platform, CALLS + 40, spread_s=0.0)
    called: list[int] = []

    async def window(index: int, code: str, session: aiohttp.ClientSession) -> None:
        url = fleet.urls[index % len(fleet.urls)] + f"/api/staff/windows/{code}"
        headers = window_headers(code)
        async with session.post(f"{url}/open", headers=headers) as response:
            assert response.status == 200
        while len(called) < CALLS:
            async with session.post(f"{url}/call-next", headers=headers) as response:
                assert response.status == 200, await response.text()
                ticket = (await response.json())["ticket"]
            if ticket is None:
                return
            called.append(ticket["id"])
            async with session.post(
                f"{url}/tickets/{ticket['id']}/finish", headers=headers
            ) as response:
                assert response.status == 200, await response.text()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(window(i, code, session) for i, code in enumerate(RUSH_WINDOWS)))

    assert len(called) >= CALLS
    assert len(set(called)) == len(called)
    calls = Counter(await TicketEvent.filter(action="call").values_list("ticket_id", flat=True))
    assert set(calls.values()) == {1}
    assert len(calls) == len(called)
    served = await Ticket.filter(status="done").values_list("window_id", flat=True)
    assert len(set(served)) > 1  # the windows really took turns
