"""Bookings: capacity held by the database, one a day per category, cancel and move."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine

from models import booking as bookings
from models.booking import Booking, BookingProfile, BookingSlot, Person
from models.booking_rules import (
    AlreadyBooked,
    BookingRules,
    DayNotOpen,
    NotBookable,
    SlotFull,
    SlotNotOffered,
    TooLateToChange,
    WrongBookingState,
    booking_rules,
)
from models.hall import Category, Hall

BEIJING = ZoneInfo("Asia/Shanghai")
PERSON = Person("张三", "13800138000")
NINE = 9 * 60


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """Return a time in the hall's zone."""
    return datetime(year, month, day, hour, minute, tzinfo=BEIJING)


UTC_HOST = ZoneInfo("UTC")


def frozen_at(at: datetime) -> time_machine.travel:
    """Freeze the clock at a hall time on a host whose own zone is UTC.

    time-machine sets the host's zone to the destination's: handing it UTC keeps it UTC.
    """
    return time_machine.travel(at.astimezone(UTC_HOST), tick=False)


# Monday 2 March 2026, 08:00 in the hall; the booked slot is Tuesday 09:00.
MONDAY_8 = local(2026, 3, 2, 8)
TUESDAY = date(2026, 3, 3)


def rules_with(**changes: Any) -> BookingRules:
    """The configured rules, with the capacity of every slot fixed (3 unless told)."""
    changes.setdefault("default_capacity", 3)
    return replace(booking_rules(), capacity={}, **changes)


async def place(hall: str = "main", category: str = "livelihood") -> tuple[Hall, Category]:
    return await Hall.get(code=hall), await Category.get(code=category)


async def book(
    openid: str,
    day: date = TUESDAY,
    start: int = NINE,
    *,
    now: datetime = MONDAY_8,
    rules: BookingRules | None = None,
    hall: str = "main",
    category: str = "livelihood",
) -> Booking:
    where = await place(hall, category)
    return await bookings.book(openid, *where, day, start, PERSON, now, rules or rules_with())


async def booked_count(day: date = TUESDAY, start: int = NINE) -> int:
    slot = await BookingSlot.get_or_none(local_day=day, start_min=start)
    return slot.booked if slot else 0


@pytest.mark.parametrize("capacity", [1, 3, 5])
async def test_capacity_n_takes_n_bookings_and_refuses_the_next(db: str, capacity: int) -> None:
    rules = rules_with(default_capacity=capacity)
    for i in range(capacity - 1):
        await book(f"o{i}", rules=rules)
    assert await booked_count() == capacity - 1

    await book("o-last", rules=rules)
    assert await booked_count() == capacity

    with pytest.raises(SlotFull):
        await book("o-one-too-many", rules=rules)
    assert await booked_count() == capacity
    assert await Booking.filter(status="booked").count() == capacity


async def test_cancellation_frees_exactly_one_place_and_a_second_changes_nothing(
    db: str,
) -> None:
    rules = rules_with(default_capacity=2)
    first = await book("o1", rules=rules)
    await book("o2", rules=rules)

    await bookings.cancel(first, MONDAY_8, rules)
    assert await booked_count() == 1
    again = await Booking.get(id=first.id)
    with pytest.raises(WrongBookingState):
        await bookings.cancel(again, MONDAY_8, rules)

    assert await booked_count() == 1
    await book("o3", rules=rules)
    with pytest.raises(SlotFull):
        await book("o4", rules=rules)


async def test_a_stale_copy_cannot_cancel_twice(db: str) -> None:
    """Two requests holding the same row: the conditional UPDATE lets one through."""
    rules = rules_with()
    mine = await book("o1", rules=rules)
    copy = await Booking.get(id=mine.id)

    await bookings.cancel(mine, MONDAY_8, rules)
    with pytest.raises(WrongBookingState):
        await bookings.cancel(copy, MONDAY_8, rules)

    assert await booked_count() == 0


async def test_same_citizen_books_again_after_cancelling(db: str) -> None:
    rules = rules_with()
    first = await book("o1", rules=rules)
    await bookings.cancel(first, MONDAY_8, rules)

    second = await book("o1", start=NINE + 60, rules=rules)

    assert second.status == "booked"
    assert second.active_key == bookings.active_key("o1", second.category_id, TUESDAY)
    assert (await Booking.get(id=first.id)).active_key is None
    assert await booked_count() == 0
    assert await booked_count(start=NINE + 60) == 1


async def test_one_active_booking_per_category_per_day(db: str) -> None:
    await book("o1")

    with pytest.raises(AlreadyBooked):
        await book("o1", start=NINE + 30)
    other_category = await book("o1", category="public_utilities")
    other_day = await book("o1", day=TUESDAY + timedelta(days=1))

    assert other_category.status == other_day.status == "booked"
    assert await booked_count(start=NINE + 30) == 0


async def test_unique_key_stops_a_second_booking_made_at_the_same_moment(db: str) -> None:
    """Both pass the read-side check; the UNIQUE active key lets one through, the place too."""
    results = await asyncio.gather(
        *(book("o1", start=NINE + 30 * i) for i in range(4)), return_exceptions=True
    )

    assert sum(isinstance(r, Booking) for r in results) == 1
    assert all(isinstance(r, Booking | AlreadyBooked) for r in results), results
    assert sum([await booked_count(start=NINE + 30 * i) for i in range(4)]) == 1


async def test_many_citizens_for_the_last_place_one_gets_it(db: str) -> None:
    rules = rules_with(default_capacity=2)
    await book("o-first", rules=rules)

    results = await asyncio.gather(
        *(book(f"o{i}", rules=rules) for i in range(12)), return_exceptions=True
    )

    assert sum(isinstance(r, Booking) for r in results) == 1
    assert sum(isinstance(r, SlotFull) for r in results) == 11
    assert await booked_count() == 2


async def test_booking_outside_the_opening_hours_is_refused(db: str) -> None:
    with pytest.raises(SlotNotOffered):
        await book("o1", start=8 * 60)  # before opening
    with pytest.raises(SlotNotOffered):
        await book("o1", start=17 * 60 + 45)  # not a slot start, and past the last slot
    with pytest.raises(SlotNotOffered):
        await book("o1", start=NINE + 10)


async def test_last_slot_ends_at_closing(db: str) -> None:
    """Main hall closes 18:00 on weekdays, 17:00 at weekends: the last slots start 17:30, 16:30."""
    assert (await book("o1", start=17 * 60 + 30)).status == "booked"
    sunday = date(2026, 3, 8)
    with pytest.raises(SlotNotOffered):
        await book("o2", day=sunday, start=16 * 60 + 45)
    assert (await book("o2", day=sunday, start=16 * 60 + 30)).status == "booked"


async def test_no_booking_in_the_past_or_inside_the_cut_off(db: str) -> None:
    now = local(2026, 3, 2, 10, 1)
    monday = now.date()
    with pytest.raises(SlotNotOffered):
        await book("o1", day=monday, start=10 * 60, now=now)  # started a minute ago
    with pytest.raises(SlotNotOffered):
        await book("o1", day=monday, start=11 * 60, now=now)  # 59 minutes ahead: cut-off 60
    assert (await book("o1", day=monday, start=11 * 60 + 30, now=now)).status == "booked"


async def test_no_booking_beyond_the_horizon(db: str) -> None:
    rules = rules_with(days_ahead=7, release_at=None)
    with pytest.raises(SlotNotOffered):
        await book("o1", day=MONDAY_8.date() + timedelta(days=8), rules=rules)
    far = await book("o1", day=MONDAY_8.date() + timedelta(days=7), rules=rules)
    assert far.status == "booked"


async def test_the_self_service_area_takes_no_bookings(db: str) -> None:
    hall = await Hall.get(code="self_service")
    category = await Category.get(code="tax")
    with pytest.raises(NotBookable):
        await bookings.book("o1", hall, category, TUESDAY, NINE, PERSON, MONDAY_8, rules_with())


async def test_branch_refuses_a_category_it_does_not_serve(db: str) -> None:
    with pytest.raises(NotBookable):
        await book("o1", hall="party_masses", category="tax")


async def test_branch_closed_at_weekends_refuses_them(db: str) -> None:
    with pytest.raises(DayNotOpen):
        await book("o1", day=date(2026, 3, 7), hall="community")


async def test_a_booking_reads_back_with_its_local_day_and_time(db: str) -> None:
    """Stored in UTC; 09:00 Beijing is 01:00 UTC, and the day is the hall's."""
    made = await book("o1")

    stored = await Booking.get(id=made.id)

    assert stored.starts_at == datetime(2026, 3, 3, 1, 0, tzinfo=UTC)
    assert stored.starts_at.astimezone(BEIJING) == local(2026, 3, 3, 9)
    assert (stored.local_day, stored.start_min) == (TUESDAY, NINE)
    assert len(stored.code) == bookings.CODE_DIGITS and stored.code.isdigit()


# Moving.


async def test_move_takes_the_new_place_and_frees_the_old(db: str) -> None:
    rules = rules_with()
    made = await book("o1", rules=rules)

    moved = await bookings.move(made, TUESDAY, NINE + 60, MONDAY_8, rules)

    assert (moved.start_min, moved.moves, moved.code) == (NINE + 60, 1, made.code)
    assert await booked_count() == 0
    assert await booked_count(start=NINE + 60) == 1
    stored = await Booking.get(id=made.id)
    assert stored.starts_at.astimezone(BEIJING) == local(2026, 3, 3, 10)


async def test_move_to_a_full_slot_leaves_the_booking_where_it_was(db: str) -> None:
    rules = rules_with(default_capacity=1)
    made = await book("o1", rules=rules)
    await book("o2", start=NINE + 60, rules=rules)

    with pytest.raises(SlotFull):
        await bookings.move(made, TUESDAY, NINE + 60, MONDAY_8, rules)

    stored = await Booking.get(id=made.id)
    assert (stored.start_min, stored.moves, stored.status) == (NINE, 0, "booked")
    assert await booked_count() == 1
    assert await booked_count(start=NINE + 60) == 1


async def test_move_onto_a_day_already_booked_rolls_the_new_place_back(db: str) -> None:
    """The UNIQUE key fails after the new place was taken: the transaction gives it back."""
    rules = rules_with()
    wednesday = TUESDAY + timedelta(days=1)
    tuesday = await book("o1", rules=rules)
    await book("o1", day=wednesday, rules=rules)

    with pytest.raises(AlreadyBooked):
        await bookings.move(tuesday, wednesday, NINE + 60, MONDAY_8, rules)

    assert await booked_count(day=wednesday, start=NINE + 60) == 0
    assert (await Booking.get(id=tuesday.id)).local_day == TUESDAY


async def test_move_failing_midway_leaves_the_old_booking_intact(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the new place was taken rolls back both: no place is lost or doubled."""
    rules = rules_with()
    made = await book("o1", rules=rules)

    async def broken(*args: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(bookings, "_give_back_place", broken)
    with pytest.raises(RuntimeError):
        await bookings.move(made, TUESDAY, NINE + 60, MONDAY_8, rules)

    stored = await Booking.get(id=made.id)
    assert (stored.start_min, stored.moves) == (NINE, 0)
    assert await booked_count() == 1
    assert await booked_count(start=NINE + 60) == 0


async def test_move_of_a_stale_copy_is_refused(db: str) -> None:
    rules = rules_with()
    made = await book("o1", rules=rules)
    copy = await Booking.get(id=made.id)
    await bookings.move(made, TUESDAY, NINE + 60, MONDAY_8, rules)

    with pytest.raises(WrongBookingState):
        await bookings.move(copy, TUESDAY, NINE + 90, MONDAY_8, rules)

    assert await booked_count(start=NINE + 90) == 0
    assert await booked_count(start=NINE + 60) == 1


async def test_cancel_and_move_close_at_the_deadline(db: str) -> None:
    rules = rules_with(cancel_deadline_min=120)
    made = await book("o1", rules=rules)
    late = local(2026, 3, 3, 7, 0)  # 2 hours before 09:00

    with pytest.raises(TooLateToChange):
        await bookings.cancel(made, late, rules)
    with pytest.raises(TooLateToChange):
        await bookings.move(made, TUESDAY, NINE + 120, late, rules)
    await bookings.cancel(made, late - timedelta(minutes=1), rules)

    assert (await Booking.get(id=made.id)).status == "cancelled"


# Personal data.


async def test_unfollow_frees_coming_places_and_deletes_personal_fields(db: str) -> None:
    rules = rules_with()
    coming = await book("o1", rules=rules)
    await bookings.remember("o1", PERSON)
    other = await book("o2", rules=rules)

    cancelled = await bookings.forget_citizen("o1", MONDAY_8, rules)

    assert cancelled == 1
    gone = await Booking.get(id=coming.id)
    assert (gone.status, gone.end_reason, gone.name, gone.mobile) == (
        "cancelled", "unfollow", "", ""
    )  # fmt: skip
    assert not await BookingProfile.exists(openid="o1")
    assert (await Booking.get(id=other.id)).name == PERSON.name
    assert await booked_count() == 1


async def test_personal_fields_of_long_past_bookings_are_blanked(db: str) -> None:
    rules = rules_with(keep_days=30)
    made = await book("o1", rules=rules)

    assert await bookings.blank_ended(TUESDAY + timedelta(days=30), rules) == 0
    assert await bookings.blank_ended(TUESDAY + timedelta(days=31), rules) == 1

    assert (await Booking.get(id=made.id)).mobile == ""
