"""Calling tickets: the order, the claim between windows, and every later change."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from models import queue
from models.queue import Ticket, TicketEvent, Window
from models.queue_rules import (
    AlreadyHolding,
    NotAtThisWindow,
    RequeueUsed,
    WindowBusy,
    WindowClosed,
    WrongState,
    queue_rules,
)
from models.queue_wait import estimate, handling_min, people_ahead
from tests.models.test_queue import MONDAY_10, category_of, hall_of, local, opened, take

RULES = queue_rules()


async def test_call_next_takes_the_earliest_waiting_ticket(db: str) -> None:
    first = await take("o1")
    await take("o2")
    window = await opened("W01")

    called = await queue.call_next(window, MONDAY_10, "window:W01")

    assert called is not None and called.id == first.id
    stored = await Ticket.get(id=first.id)
    assert (stored.status, stored.window_id, stored.window_slot) == (
        "called",
        window.id,
        window.id,
    )


async def test_checked_in_bookings_come_before_walk_ins(db: str) -> None:
    await take("o1")
    booking = await take("o2", source="booking", priority=queue.BOOKING_PRIORITY)
    window = await opened("W01")

    called = await queue.call_next(window, MONDAY_10, "window:W01")

    assert called is not None and called.id == booking.id


async def test_window_calls_only_the_categories_it_serves(db: str) -> None:
    await take("o1", category="tax")
    window = await opened("W01")  # livelihood only

    assert await queue.call_next(window, MONDAY_10, "window:W01") is None


async def test_window_serving_two_categories_calls_the_earliest_of_both(db: str) -> None:
    utilities = await take("o1", MONDAY_10, category="public_utilities")
    await take("o2", MONDAY_10 + timedelta(minutes=1))
    window = await opened("W03")  # livelihood and public_utilities

    called = await queue.call_next(window, MONDAY_10, "window:W03")

    assert called is not None and called.id == utilities.id


async def test_closed_window_cannot_call(db: str) -> None:
    await take("o1")
    window = await Window.get(code="W01")

    with pytest.raises(WindowClosed):
        await queue.call_next(window, MONDAY_10, "window:W01")


async def test_window_holding_a_ticket_cannot_call_another(db: str) -> None:
    await take("o1")
    await take("o2")
    window = await opened("W01")
    await queue.call_next(window, MONDAY_10, "window:W01")

    with pytest.raises(WindowBusy):
        await queue.call_next(window, MONDAY_10, "window:W01")


async def test_double_press_at_one_window_calls_one_ticket(db: str) -> None:
    for i in range(3):
        await take(f"o{i}")
    window = await opened("W01")

    results = await asyncio.gather(
        *(queue.call_next(window, MONDAY_10, "window:W01") for _ in range(3)),
        return_exceptions=True,
    )

    called = [r for r in results if isinstance(r, Ticket)]
    assert len(called) == 1
    assert all(isinstance(r, WindowBusy) for r in results if not isinstance(r, Ticket))
    assert await Ticket.filter(status="called").count() == 1


async def test_two_windows_pressing_at_once_get_different_tickets(db: str) -> None:
    for i in range(6):
        await take(f"o{i}")
    windows = [await opened("W01"), await opened("W02"), await opened("W03")]

    called = await asyncio.gather(*(queue.call_next(w, MONDAY_10, w.code) for w in windows))

    ids = [t.id for t in called if t is not None]
    assert len(ids) == 3 and len(set(ids)) == 3


async def test_every_change_is_recorded_with_its_window_and_actor(db: str) -> None:
    ticket = await take("o1")
    window = await opened("W01")
    await queue.call_next(window, local(2, 10, 5), "staff:zhang")
    await queue.start(window, ticket.id, local(2, 10, 6), "staff:zhang")
    await queue.finish(window, ticket.id, local(2, 10, 20), "staff:zhang")

    events = await TicketEvent.filter(ticket_id=ticket.id).order_by("id")

    assert [(e.action, e.from_status, e.to_status) for e in events] == [
        ("take", "", "waiting"),
        ("call", "waiting", "called"),
        ("start", "called", "serving"),
        ("finish", "serving", "done"),
    ]
    assert [e.actor for e in events[1:]] == ["staff:zhang"] * 3
    assert {e.window_code for e in events[1:]} == {"W01"}
    assert events[-1].at == local(2, 10, 20)
    done = await Ticket.get(id=ticket.id)
    assert (done.active_key, done.window_slot) == (None, None)


async def test_only_the_calling_window_acts_on_a_ticket(db: str) -> None:
    ticket = await take("o1")
    w1, w2 = await opened("W01"), await opened("W02")
    await queue.call_next(w1, MONDAY_10, "W01")

    with pytest.raises(NotAtThisWindow):
        await queue.start(w2, ticket.id, MONDAY_10, "W02")


async def test_recall_counts_and_keeps_the_ticket_called(db: str) -> None:
    ticket = await take("o1")
    window = await opened("W01")
    await queue.call_next(window, MONDAY_10, "W01")

    recalled = await queue.recall(window, ticket.id, local(2, 10, 2), "W01")

    assert (recalled.status, recalled.recalls) == ("called", 1)


async def test_missed_ticket_requeues_once_at_the_back(db: str) -> None:
    missed = await take("o1", local(2, 9, 30))
    behind = await take("o2", local(2, 9, 31))
    window = await opened("W01")
    await queue.call_next(window, local(2, 10), "W01")
    await queue.mark_missed(window, missed.id, local(2, 10, 3), "W01", RULES)
    hall = await hall_of()

    again = await queue.requeue(missed, hall, local(2, 10, 10), RULES)

    assert again.status == "waiting" and again.number == missed.number
    assert await people_ahead(await Ticket.get(id=missed.id)) == 1
    called = await queue.call_next(window, local(2, 10, 11), "W01")
    assert called is not None and called.id == behind.id


async def test_second_miss_ends_the_ticket_and_frees_the_category(db: str) -> None:
    ticket = await take("o1")
    window = await opened("W01")
    hall = await hall_of()
    await queue.call_next(window, MONDAY_10, "W01")
    await queue.mark_missed(window, ticket.id, MONDAY_10, "W01", RULES)
    ticket = await queue.requeue(ticket, hall, local(2, 10, 1), RULES)
    await queue.call_next(window, local(2, 10, 2), "W01")
    ticket = await queue.mark_missed(window, ticket.id, local(2, 10, 3), "W01", RULES)

    with pytest.raises(RequeueUsed):
        await queue.requeue(ticket, hall, local(2, 10, 4), RULES)

    assert (await take("o1")).number == "A002"


async def test_missed_ticket_keeps_the_place_while_a_requeue_is_left(db: str) -> None:
    ticket = await take("o1")
    window = await opened("W01")
    await queue.call_next(window, MONDAY_10, "W01")
    await queue.mark_missed(window, ticket.id, MONDAY_10, "W01", RULES)

    with pytest.raises(AlreadyHolding) as refused:
        await take("o1")

    assert refused.value.context["status"] == "missed"


async def test_requeue_is_refused_once_the_hall_closes_soon(db: str) -> None:
    ticket = await take("o1", local(2, 17, 0))
    window = await opened("W01")
    await queue.call_next(window, local(2, 17, 1), "W01")
    await queue.mark_missed(window, ticket.id, local(2, 17, 2), "W01", RULES)

    with pytest.raises(queue.HallClosing):
        await queue.requeue(ticket, await hall_of(), local(2, 17, 40), RULES)


async def test_finish_straight_from_called_counts_from_the_call(db: str) -> None:
    ticket = await take("o1")
    window = await opened("W01")
    await queue.call_next(window, MONDAY_10, "W01")

    done = await queue.finish(window, ticket.id, local(2, 10, 12), "W01")

    assert done.started_at == MONDAY_10 and done.status == "done"


async def test_a_finished_ticket_cannot_be_finished_again(db: str) -> None:
    ticket = await take("o1")
    window = await opened("W01")
    await queue.call_next(window, MONDAY_10, "W01")
    await queue.finish(window, ticket.id, MONDAY_10, "W01")

    with pytest.raises(NotAtThisWindow):
        await queue.finish(window, ticket.id, MONDAY_10, "W01")
    with pytest.raises(WrongState):
        await queue.cancel(await Ticket.get(id=ticket.id), MONDAY_10)


async def test_cancel_and_call_at_once_leave_one_outcome(db: str) -> None:
    ticket = await take("o1")
    window = await opened("W01")

    results = await asyncio.gather(
        queue.cancel(ticket, MONDAY_10),
        queue.call_next(window, MONDAY_10, "W01"),
        return_exceptions=True,
    )

    stored = await Ticket.get(id=ticket.id)
    assert stored.status in ("cancelled", "called")
    assert not any(isinstance(r, Exception) for r in results)
    assert await TicketEvent.filter(ticket_id=ticket.id).count() == 2


async def test_transfer_keeps_the_number_and_comes_before_walk_ins(db: str) -> None:
    early = await take("o1", local(2, 9, 10))
    await take("o2", local(2, 9, 20), category="public_utilities")
    window = await opened("W01")
    await queue.call_next(window, MONDAY_10, "W01")

    moved = await queue.transfer(
        window, early.id, await category_of("public_utilities"), local(2, 10, 5), "W01"
    )

    assert (moved.number, moved.status, moved.window_slot) == ("A001", "waiting", None)
    assert await people_ahead(moved) == 0
    utilities_window = await opened("W10")
    called = await queue.call_next(utilities_window, local(2, 10, 6), "W10")
    assert called is not None and called.id == early.id


async def test_transfer_number_collision(db: str) -> None:
    """A001 moved into F's queue must not collide with F001: numbers keep their own counter."""
    livelihood = await take("o1")
    await take("o2", category="public_utilities")
    window = await opened("W01")
    await queue.call_next(window, MONDAY_10, "W01")

    moved = await queue.transfer(
        window, livelihood.id, await category_of("public_utilities"), MONDAY_10, "W01"
    )
    issued = await take("o3", category="public_utilities")

    assert (moved.number, issued.number) == ("A001", "F002")


async def test_transfer_to_a_category_already_held_is_refused(db: str) -> None:
    ticket = await take("o1")
    await take("o1", category="public_utilities")
    window = await opened("W01")
    await queue.call_next(window, MONDAY_10, "W01")

    with pytest.raises(AlreadyHolding):
        await queue.transfer(
            window, ticket.id, await category_of("public_utilities"), MONDAY_10, "W01"
        )

    assert (await Ticket.get(id=ticket.id)).status == "called"


async def test_closing_a_window_holding_a_ticket_is_refused(db: str) -> None:
    await take("o1")
    window = await opened("W01")
    await queue.call_next(window, MONDAY_10, "W01")

    with pytest.raises(WindowBusy):
        await queue.close_window(window)


async def test_people_ahead_counts_priority_then_time(db: str) -> None:
    walk_in = await take("o1", local(2, 9, 10))
    later = await take("o2", local(2, 9, 20))
    await take("o3", local(2, 9, 30), source="booking", priority=queue.BOOKING_PRIORITY)

    assert await people_ahead(walk_in) == 1
    assert await people_ahead(later) == 2


async def test_estimate_uses_recent_handling_times_and_open_windows(db: str) -> None:
    """Three served in 10, 20 and 30 minutes give a median of 20; two open windows halve it."""
    window = await opened("W01")
    for i, minutes in enumerate((10, 20, 30)):
        ticket = await take(f"done{i}", local(2, 9, i))
        start = local(2, 9, 10)
        await queue.call_next(window, start, "W01")
        await queue.finish(window, ticket.id, start + timedelta(minutes=minutes), "W01")
    for i in range(4):
        await take(f"o{i}", local(2, 10, i))
    last = await take("me", local(2, 10, 30))
    await opened("W02")

    waits = await estimate(last, "livelihood", RULES)

    assert await handling_min(last.hall_id, last.category_id, RULES) == 20
    assert (waits.ahead, waits.wait_min) == (4, 40)
    assert waits.windows == ["1号窗口", "2号窗口"]


async def test_estimate_falls_back_to_the_configured_time(db: str) -> None:
    rules = replace(RULES, default_handling_min=12)
    await take("o1")
    me = await take("o2")

    waits = await estimate(me, "livelihood", rules)

    # No window open yet: the three livelihood windows (W01-W03) are expected to serve.
    assert (waits.ahead, waits.wait_min, waits.windows) == (1, 4, [])


async def test_estimate_changes_with_the_windows_open(db: str) -> None:
    for i in range(6):
        await take(f"o{i}")
    me = await take("me")
    await opened("W01")
    one = await estimate(me, "livelihood", RULES)
    await opened("W02")
    await opened("W03")

    three = await estimate(me, "livelihood", RULES)

    assert (one.wait_min, three.wait_min) == (90, 30)


async def test_transferred_ticket_frees_its_window(db: str) -> None:
    ticket = await take("o1")
    await take("o2")
    window = await opened("W01")
    await queue.call_next(window, MONDAY_10, "W01")
    await queue.transfer(window, ticket.id, await category_of("tax"), MONDAY_10, "W01")

    called = await queue.call_next(window, MONDAY_10, "W01")

    assert called is not None and called.number == "A002"


async def test_requeue_in_the_same_instant_still_goes_to_the_back(db: str) -> None:
    """A ticket taken in the very instant of a re-queue is not overtaken by the re-queued one."""
    missed = await take("o1")
    window = await opened("W01")
    await queue.call_next(window, MONDAY_10, "W01")
    await queue.mark_missed(window, missed.id, MONDAY_10, "W01", RULES)
    same_instant = await take("o2", MONDAY_10)

    again = await queue.requeue(missed, await hall_of(), MONDAY_10, RULES)

    assert await people_ahead(again) == 1
    called = await queue.call_next(window, MONDAY_10, "W01")
    assert called is not None and called.id == same_instant.id


async def test_numbers_are_called_in_number_order_whatever_the_clocks_said(db: str) -> None:
    """Two processes stamp their takes a moment apart in the other order than the counter
    gave the numbers: A001 must still be called before A002."""
    first = await take("o1", local(2, 10, 0, 2))
    second = await take("o2", local(2, 10, 0, 1))
    window = await opened("W01")
    assert await people_ahead(second) == 1

    called = await queue.call_next(window, MONDAY_10, "W01")

    assert (first.number, second.number) == ("A001", "A002")
    assert called is not None and called.id == first.id
