"""Booking rules: the contact checks, the settings file, no-shows by count and by points."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from models import booking as bookings
from models.booking import Booking, BookingPoints
from models.booking_rules import (
    BOOKING_FILE,
    NoShowPolicy,
    NotEnoughPoints,
    Suspended,
    id_digest,
    is_valid_id_number,
    is_valid_mobile,
    load_rules,
    parse_contact,
)
from tests.models.test_booking import MONDAY_8, NINE, TUESDAY, book, local, rules_with

# Made-up numbers with a correct GB 11643 check character.
VALID_ID = "11010519491231002X"
VALID_ID_2 = "440300199001011238"


@pytest.mark.parametrize(
    ("text", "name", "mobile"),
    [
        ("张三 13800138000", "张三", "13800138000"),
        ("张三，138-0013-8000", "张三", "13800138000"),
        ("+86 138 0013 8000 李四", "李四", "13800138000"),
        ("姓名：王小明 手机：13912345678", "王小明", "13912345678"),
        ("Zhang San 13912345678", "Zhang San", "13912345678"),
        ("１３８００１３８０００ 张三", "张三", "13800138000"),  # full-width digits
    ],
)
def test_contact_is_read_in_the_ways_people_type_it(text: str, name: str, mobile: str) -> None:
    contact = parse_contact(text)

    assert (contact.name, contact.mobile) == (name, mobile)
    assert not contact.has_bad_mobile


@pytest.mark.parametrize(
    "text", ["张三 12345", "张三 23800138000", "张三 1380013800", "张三 12800138000"]
)
def test_a_wrong_mobile_is_reported_not_taken(text: str) -> None:
    contact = parse_contact(text)

    assert contact.mobile == ""
    assert contact.has_bad_mobile


def test_id_number_is_read_beside_the_mobile_in_groups() -> None:
    contact = parse_contact("赵六 138 0013 8000 110105 19491231 002x")

    assert (contact.name, contact.mobile, contact.id_number) == (
        "赵六", "13800138000", VALID_ID.lower()
    )  # fmt: skip


def test_id_number_with_a_wrong_check_character_is_refused() -> None:
    contact = parse_contact("赵六 13800138000 110105194912310021")

    assert contact.id_number == "" and contact.has_bad_id
    assert contact.mobile == "13800138000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (VALID_ID, True),
        (VALID_ID.lower(), True),
        (VALID_ID_2, True),
        ("110105194912310021", False),  # check character
        ("110105194913310027", False),  # month 13
        ("11010519491231002", False),  # 17 characters
        ("1101051949123100xX", False),
    ],
)
def test_id_number_checksum(value: str, expected: bool) -> None:
    assert is_valid_id_number(value) is expected


def test_id_digest_is_salted_and_never_the_number() -> None:
    digest = id_digest(VALID_ID, "salt-a")

    assert VALID_ID not in digest and VALID_ID[-4:] not in digest
    assert digest == id_digest(VALID_ID.lower(), "salt-a")
    assert digest != id_digest(VALID_ID, "salt-b")


@pytest.mark.parametrize(
    ("mobile", "expected"),
    [("13800138000", True), ("19912345678", True), ("12800138000", False), ("1380013800", False)],
)
def test_mobile_numbers_are_mainland_eleven_digits(mobile: str, expected: bool) -> None:
    assert is_valid_mobile(mobile) is expected


def test_the_shipped_settings_are_the_documented_defaults() -> None:
    rules = load_rules(BOOKING_FILE)

    assert (rules.slot_min, rules.days_ahead, rules.checkin_early_min) == (30, 7, 30)
    assert rules.checkin_late_min == 15
    assert rules.no_show.policy == "count" and rules.no_show.count_limit == 3
    assert rules.capacity_of("main", "livelihood") == 6
    assert rules.capacity_of("main", "unknown") == rules.default_capacity


def test_an_unknown_policy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "booking.toml"
    path.write_text('[no_show]\npolicy = "stars"\n', encoding="utf-8")

    with pytest.raises(ValueError, match="policy"):
        load_rules(path)


# No-shows counted: 3 within 30 days suspend booking.


async def miss(openid: str, day: date) -> Booking:
    """Book a slot on `day` (from the day before) and record it as missed after it."""
    now = local(day.year, day.month, day.day, 8) - timedelta(days=1)
    rules = rules_with(days_ahead=30, release_at=None)
    made = await book(openid, day=day, now=now, rules=rules)
    after = local(day.year, day.month, day.day, 10)
    return await bookings.mark_missed(made, after, rules)


async def test_third_no_show_within_the_window_suspends_booking(db: str) -> None:
    rules = rules_with(no_show=NoShowPolicy(count_limit=3, window_days=30, suspend_days=30))
    for day in (date(2026, 2, 2), date(2026, 2, 10), date(2026, 2, 26)):
        await miss("o1", day)

    with pytest.raises(Suspended) as refused:
        await book("o1", rules=rules)

    assert refused.value.context["until"] == date(2026, 3, 28)
    assert (await book("o2", rules=rules)).status == "booked"


async def test_suspension_ends_on_its_day(db: str) -> None:
    rules = rules_with(
        no_show=NoShowPolicy(count_limit=3, window_days=30, suspend_days=10),
        days_ahead=30,
        release_at=None,
    )
    for day in (date(2026, 2, 2), date(2026, 2, 10), date(2026, 2, 26)):
        await miss("o1", day)

    assert await bookings.suspended_until("o1", date(2026, 3, 7), rules) == date(2026, 3, 8)
    assert await bookings.suspended_until("o1", date(2026, 3, 8), rules) is None


async def test_no_shows_spread_over_more_than_the_window_do_not_suspend(db: str) -> None:
    rules = rules_with(no_show=NoShowPolicy(count_limit=3, window_days=30, suspend_days=30))
    for day in (date(2026, 1, 5), date(2026, 2, 10), date(2026, 2, 26)):
        await miss("o1", day)

    assert (await book("o1", rules=rules)).status == "booked"


async def test_no_show_cannot_be_marked_before_the_check_in_window_closes(db: str) -> None:
    rules = rules_with()
    made = await book("o1", rules=rules)

    with pytest.raises(bookings.WrongBookingState):
        await bookings.mark_missed(made, local(2026, 3, 3, 9, 14), rules)
    missed = await bookings.mark_missed(made, local(2026, 3, 3, 9, 16), rules)

    assert (missed.status, missed.active_key, missed.end_reason) == ("missed", None, "no_show")


# No-shows in points: Dongguan's scheme.

POINTS = NoShowPolicy(policy="points")


MONDAY = MONDAY_8.date()


async def points(openid: str, today: date = MONDAY) -> int:
    return await bookings.points_of(openid, today, rules_with(no_show=POINTS))


async def test_a_booking_holds_one_point_given_back_at_check_in(db: str) -> None:
    rules = rules_with(no_show=POINTS)
    made = await book("o1", rules=rules)
    assert await points("o1") == 9

    assert await bookings.claim_check_in(made, local(2026, 3, 3, 8, 45))
    await bookings.attach_ticket(made, 1, local(2026, 3, 3, 8, 45), rules)

    assert await points("o1") == 10


async def test_cancelling_costs_two_points_and_a_no_show_five(db: str) -> None:
    rules = rules_with(no_show=POINTS)
    first = await book("o1", rules=rules)
    await bookings.cancel(first, MONDAY_8, rules)
    assert await points("o1") == 8  # the held point came back, two went

    second = await book("o1", start=NINE + 60, rules=rules)
    await bookings.mark_missed(second, local(2026, 3, 3, 11), rules)

    assert await points("o1", TUESDAY) == 4  # 7, one grew back overnight, +1 held, -5


async def test_at_zero_points_no_booking_and_one_point_a_day_comes_back(db: str) -> None:
    rules = rules_with(no_show=POINTS)
    await BookingPoints.create(openid="o1", points=0, grown_on=MONDAY)

    with pytest.raises(NotEnoughPoints) as refused:
        await book("o1", rules=rules)
    assert refused.value.context["back_on"] == TUESDAY

    tomorrow = local(2026, 3, 3, 8)
    made = await book("o1", day=date(2026, 3, 4), now=tomorrow, rules=rules)
    assert made.status == "booked"
    assert await points("o1", TUESDAY) == 0


async def test_points_grow_back_to_ten_and_no_further(db: str) -> None:
    await BookingPoints.create(openid="o1", points=7, grown_on=MONDAY)

    assert await points("o1", MONDAY + timedelta(days=2)) == 9
    assert await points("o1", MONDAY + timedelta(days=30)) == 10


async def test_points_never_go_below_zero(db: str) -> None:
    rules = rules_with(no_show=replace(POINTS, points_no_show=50))
    made = await book("o1", rules=rules)

    await bookings.mark_missed(made, local(2026, 3, 3, 11), rules)

    assert await points("o1", TUESDAY) == 0
