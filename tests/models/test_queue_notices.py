"""Who is told what after a queue change: near, called, missed, expired at closing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
import time_machine
from aiohttp.test_utils import TestClient

from bot import notices
from bot.app import SERVICES
from bot.services import Services
from bot.standin import StandIn
from models import queue, queue_flow
from models.citizen import Citizen
from models.hall import Category, Hall
from models.notice import Notice
from models.queue import Ticket
from models.queue_rules import queue_rules
from tests.conftest import claimed_notice, client_with_worker, make_settings
from tests.models.test_queue import MONDAY_10, local, opened, take

RULES = queue_rules()


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(MONDAY_10, tick=False) as traveller:
        yield traveller


def ctx_of(services: Services) -> dict[str, Any]:
    return {"services": services}


async def near_told() -> list[str]:
    """Return the openids told "almost your turn", in ticket order."""
    refs = await Notice.filter(kind="queue_near").values_list("ref", flat=True)
    ids = [int(str(ref).split(":")[1]) for ref in refs]
    return list(await Ticket.filter(id__in=ids).order_by("id").values_list("openid", flat=True))


async def test_holders_within_the_threshold_are_told_once(
    services: Services, clock: time_machine.Coordinates
) -> None:
    tickets = [await take(f"o{i}") for i in range(6)]

    told = await queue_flow.queue_changed(
        ctx_of(services), tickets[0].hall_id, tickets[0].category_id
    )

    assert told == 4  # 0, 1, 2 and 3 ahead
    assert await near_told() == ["o0", "o1", "o2", "o3"]
    assert (
        await queue_flow.queue_changed(
            ctx_of(services), tickets[0].hall_id, tickets[0].category_id
        )
        == 0
    )


async def test_a_call_brings_the_next_holder_to_the_threshold(
    services: Services, clock: time_machine.Coordinates
) -> None:
    tickets = [await take(f"o{i}") for i in range(6)]
    hall_id, category_id = tickets[0].hall_id, tickets[0].category_id
    await queue_flow.queue_changed(ctx_of(services), hall_id, category_id)
    window = await opened("W01")

    await queue.call_next(window, MONDAY_10, "W01")
    told = await queue_flow.queue_changed(ctx_of(services), hall_id, category_id)

    assert told == 1
    assert (await near_told())[-1] == "o4"


async def test_cancellations_that_jump_a_holder_past_the_threshold_still_tell(
    services: Services, clock: time_machine.Coordinates
) -> None:
    """o7 goes from 7 ahead to 2 ahead at once: it never stood at 3, and is told all the same."""
    tickets = [await take(f"o{i}") for i in range(8)]
    hall_id, category_id = tickets[0].hall_id, tickets[0].category_id
    await queue_flow.queue_changed(ctx_of(services), hall_id, category_id)
    for ticket in tickets[2:7]:
        await queue.cancel(ticket, MONDAY_10)

    await queue_flow.queue_changed(ctx_of(services), hall_id, category_id)

    assert "o7" in await near_told()


async def test_citizen_threshold_is_read_from_their_setting(
    services: Services, clock: time_machine.Coordinates
) -> None:
    await Citizen.create(openid="o2", near_ahead=1)
    await Citizen.create(openid="o4", near_ahead=5)
    tickets = [await take(f"o{i}") for i in range(6)]

    await queue_flow.queue_changed(ctx_of(services), tickets[0].hall_id, tickets[0].category_id)

    assert await near_told() == ["o0", "o1", "o3", "o4"]


async def test_near_at_take_is_not_told_twice(
    services: Services, clock: time_machine.Coordinates
) -> None:
    """Taken with 1 ahead: the "taken" notice says so, and no "near" one follows."""
    hall, category = await Hall.get(code="main"), await Category.get(code="livelihood")
    await take("o-first")
    taken = await queue_flow.take(services, "o-me", hall, category)

    await queue_flow.queue_changed(ctx_of(services), hall.id, category.id)

    assert taken.estimate.ahead == 1
    assert await near_told() == ["o-first"]
    assert await claimed_notice(services, taken.ticket.ref, "ticket_taken")


async def test_onsite_tickets_are_counted_but_nobody_is_told(
    services: Services, clock: time_machine.Coordinates
) -> None:
    onsite = await take(None, source="onsite")
    await take("o1")

    await queue_flow.queue_changed(ctx_of(services), onsite.hall_id, onsite.category_id)

    assert await near_told() == ["o1"]


async def test_call_next_tells_the_holder_which_window(
    services: Services, clock: time_machine.Coordinates
) -> None:
    ticket = await take("o1")
    window = await opened("W02")

    await queue_flow.call_next(services, window, "W02")

    notice = await claimed_notice(services, ticket.ref, "ticket_called")
    assert (notice.openid, notice.template_id) == ("o1", "tmpl_ticket_called_0001")


async def test_waiting_and_missed_tickets_expire_at_closing_and_are_told(
    services: Services, clock: time_machine.Coordinates
) -> None:
    missed = await take("o-missed", local(2, 16))
    at_window = await take("o-at-window", local(2, 16, 1))
    waiting = await take("o-waiting", local(2, 16, 2))
    window = await opened("W01")
    await queue.call_next(window, local(2, 16, 5), "W01")
    await queue.mark_missed(window, missed.id, local(2, 16, 6), "W01", queue_rules())
    await queue.call_next(window, local(2, 16, 7), "W01")

    clock.move_to(local(2, 17, 59))
    assert await queue_flow.expire_at_closing(ctx_of(services)) == 0
    clock.move_to(local(2, 18, 0, 30))
    expired = await queue_flow.expire_at_closing(ctx_of(services))

    assert expired == 2
    statuses = {t.openid: t.status for t in await Ticket.all()}
    assert statuses == {"o-missed": "expired", "o-at-window": "called", "o-waiting": "expired"}
    for ref in (missed.ref, waiting.ref):
        await claimed_notice(services, ref, "ticket_expired")
    told = await Notice.filter(kind="ticket_expired").values_list("ref", flat=True)
    assert sorted(told) == sorted([missed.ref, waiting.ref])
    assert at_window.ref not in told
    assert await queue_flow.expire_at_closing(ctx_of(services)) == 0


async def test_tickets_left_from_yesterday_expire_in_the_morning(
    services: Services, clock: time_machine.Coordinates
) -> None:
    """Closing passed while no worker ran: the next run ends yesterday's tickets."""
    old = await take("o1", local(1, 10))  # Sunday
    today = await take("o2", local(2, 9, 30))

    assert await queue_flow.expire_at_closing(ctx_of(services)) == 1

    assert (await Ticket.get(id=old.id)).status == "expired"
    assert (await Ticket.get(id=today.id)).status == "waiting"


# End to end: call next through the staff API, notices handed to the WeChat API stand-in.


@pytest.fixture
async def live(standin: StandIn, db: str) -> AsyncIterator[TestClient]:
    """The app talking to the stand-in, a job worker draining its queue."""
    settings = make_settings(database_url=db, api_base_url=standin.url)
    async with client_with_worker(settings) as client:
        yield client


async def wait_for(standin: StandIn, count: int, wait_s: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait_s
    while True:
        sent = [record.body for record in standin.sent("template")]
        if len(sent) >= count or time.monotonic() > deadline:
            return sent
        await asyncio.sleep(0.02)


async def test_call_next_reaches_the_called_and_the_now_near(
    live: TestClient, standin: StandIn, clock: time_machine.Coordinates
) -> None:
    for i in range(5):
        await take(f"o{i}")
    services = live.app[SERVICES]
    await queue_flow.queue_changed(ctx_of(services), *(await _queue_of("o0")))
    await wait_for(standin, 4)
    standin.clear()
    await live.post("/api/staff/windows/W01/open", headers={"Authorization": "Bearer tok-w1"})

    response = await live.post(
        "/api/staff/windows/W01/call-next", headers={"Authorization": "Bearer tok-w1"}
    )

    assert response.status == 200
    sent = await wait_for(standin, 2)
    by_template = {(body["template_id"], body["touser"]) for body in sent}
    assert by_template == {
        ("tmpl_ticket_called_0001", "o0"),
        ("tmpl_queue_near_0001", "o4"),
    }
    called = next(body for body in sent if body["touser"] == "o0")
    assert called["data"]["thing2"] == {"value": "1号窗口"}
    near = next(body for body in sent if body["touser"] == "o4")
    assert near["data"]["number2"] == {"value": "3"}


async def _queue_of(openid: str) -> tuple[int, int]:
    ticket = await Ticket.get(openid=openid)
    return ticket.hall_id, ticket.category_id


async def test_near_notice_sent_in_the_job_is_retried_after_a_busy_platform(
    live: TestClient,
    standin: StandIn,
    clock: time_machine.Coordinates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job sends "almost your turn" itself; a busy answer leaves it to a later send job."""
    real = notices.load_notice_book()
    fast = replace(real, delivery=replace(real.delivery, backoff_s=(0.05,), max_attempts=3))
    monkeypatch.setattr(notices, "notice_book", lambda: fast)
    ticket = await take("o1")
    standin.fail_next("template", -1)

    await queue_flow.queue_changed(ctx_of(live.app[SERVICES]), ticket.hall_id, ticket.category_id)
    clock.shift(1)  # the retry is queued after the back-off, by the (frozen) clock

    sent = await wait_for(standin, 1)
    assert [(body["template_id"], body["touser"]) for body in sent] == [
        ("tmpl_queue_near_0001", "o1")
    ]
    assert (await Notice.get(ref=ticket.ref, kind="queue_near")).attempts == 2


async def test_missed_ticket_without_a_requeue_left_expires_silently(
    services: Services, clock: time_machine.Coordinates
) -> None:
    ticket = await take("o1", local(2, 16))
    window = await opened("W01")
    hall = await Hall.get(code="main")
    for minute in (1, 3):
        await queue.call_next(window, local(2, 16, minute), "W01")
        ticket = await queue.mark_missed(window, ticket.id, local(2, 16, minute), "W01", RULES)
        if minute == 1:
            ticket = await queue.requeue(ticket, hall, local(2, 16, 2), RULES)
    clock.move_to(local(2, 18, 1))

    assert await queue_flow.expire_at_closing(ctx_of(services)) == 1

    assert (await Ticket.get(id=ticket.id)).status == "expired"
    assert not await Notice.filter(kind="ticket_expired").exists()
