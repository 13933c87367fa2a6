"""Opening days and the offered dates and slots, by the clock of a server running in UTC."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

import pytest

from models import booking as bookings
from models import calendar
from models.booking import Booking, OfferedDay
from models.calendar import Closure, day_kind, load_closures, opening_on
from models.hall import Category, Hall
from tests.conftest import make_settings
from tests.models.test_booking import BEIJING, PERSON, frozen_at, local, rules_with


@pytest.fixture(autouse=True)
def utc_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run as on a server whose own zone is UTC, whatever the machine running the tests uses."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    assert time.localtime().tm_gmtoff == 0
    yield
    monkeypatch.undo()
    time.tzset()


def hall_now() -> datetime:
    """Return the hall's time as the services compute it: the UTC clock in the hall's zone."""
    return datetime.now(UTC).astimezone(make_settings().tz)


async def offered(hall: str = "main", category: str = "livelihood") -> list[OfferedDay]:
    place = await Hall.get(code=hall), await Category.get(code=category)
    return await bookings.offered_days(*place, hall_now(), rules_with())


def dates(days: list[OfferedDay]) -> list[str]:
    return [d.day.isoformat()[5:] for d in days]


def starts(day: OfferedDay) -> list[str]:
    return [bookings.clock(s.start_min) for s in day.slots]


# The national calendar.


def test_days_are_classified_by_the_state_councils_calendar() -> None:
    assert day_kind(date(2025, 10, 1)).kind == "holiday"
    assert day_kind(date(2025, 10, 1)).holiday == "国庆节"
    assert day_kind(date(2025, 9, 28)).kind == "makeup"  # a Sunday worked for the holiday
    assert day_kind(date(2025, 10, 11)).kind == "makeup"  # a Saturday
    assert day_kind(date(2025, 10, 12)).kind == "weekend"
    assert day_kind(date(2025, 9, 29)).kind == "workday"


def test_days_the_calendar_does_not_cover_fall_back_to_weekday_hours() -> None:
    assert day_kind(date(2099, 10, 1)).kind == "unknown"


async def test_holiday_shuts_even_a_hall_open_at_weekends(db: str) -> None:
    main = await Hall.get(code="main")

    assert not (await opening_on(main, date(2025, 10, 4))).is_open  # Saturday, National Day
    assert (await opening_on(main, date(2025, 10, 12))).span == (clock_time(9), clock_time(17))


async def test_makeup_day_keeps_weekday_hours(db: str) -> None:
    """2025-09-28 is a Sunday worked: the main hall keeps 9-18, a weekday-only branch opens."""
    main = await Hall.get(code="main")
    branch = await Hall.get(code="community")

    assert (await opening_on(main, date(2025, 9, 28))).span == (clock_time(9), clock_time(18))
    assert (await opening_on(branch, date(2025, 9, 28))).span == (
        clock_time(9), clock_time(17, 30)
    )  # fmt: skip
    assert not (await opening_on(branch, date(2025, 9, 27))).is_open


async def test_uncovered_year_uses_the_halls_weekday_hours(db: str) -> None:
    branch = await Hall.get(code="community")

    assert (await opening_on(branch, date(2099, 10, 1))).is_open  # a Thursday
    assert not (await opening_on(branch, date(2099, 10, 3))).is_open  # a Saturday


async def test_closures_in_the_api_table_shut_one_hall_or_all(db: str) -> None:
    main, south = await Hall.get(code="main"), await Hall.get(code="south")
    await Closure.create(hall_code="south", day=date(2026, 3, 4), reason="设备检修")
    await Closure.create(hall_code="*", day=date(2026, 3, 5), reason="")

    assert (await opening_on(south, date(2026, 3, 4))).closure == "设备检修"
    assert (await opening_on(main, date(2026, 3, 4))).is_open
    assert (await opening_on(main, date(2026, 3, 5))).closure == ""
    assert not (await opening_on(main, date(2026, 3, 5))).is_open


async def test_closures_in_the_config_file_shut_days(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "closures.toml"
    path.write_text(
        '[[closures]]\nhall = "main"\nfrom = 2026-03-04\nto = 2026-03-05\nreason = "培训"\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(calendar, "configured_closures", lambda: load_closures(path))
    main = await Hall.get(code="main")

    found = await calendar.openings(main, [date(2026, 3, d) for d in (3, 4, 5, 6)])

    assert [found[date(2026, 3, d)].is_open for d in (3, 4, 5, 6)] == [True, False, False, True]


def test_the_shipped_closures_file_is_valid() -> None:
    assert isinstance(load_closures(), tuple)


# The clock: Beijing times on a UTC server. 2 March 2026 is a Monday.


async def test_five_past_midnight_offers_todays_slots_and_not_the_unreleased_day(
    db: str,
) -> None:
    """00:05 in Beijing is 16:05 the day before in UTC; the day 7 ahead opens at 09:00."""
    with frozen_at(local(2026, 3, 2, 0, 5)):
        assert datetime.now().date() == date(2026, 3, 1)  # the host's own date
        days = await offered()

    assert dates(days) == ["03-02", "03-03", "03-04", "03-05", "03-06", "03-07", "03-08"]
    assert starts(days[0])[0] == "09:00" and starts(days[0])[-1] == "17:30"
    assert starts(days[-1])[-1] == "16:30"  # Sunday: the main hall closes at 17:00


async def test_half_past_seven_offers_nine_oclock_but_not_after_the_cut_off(db: str) -> None:
    with frozen_at(local(2026, 3, 2, 7, 30)):
        early = await offered()
    with frozen_at(local(2026, 3, 2, 8, 5)):
        later = await offered()

    assert starts(early[0])[:2] == ["09:00", "09:30"]
    assert dates(early)[-1] == "03-08"
    assert starts(later[0])[0] == "09:30"  # 09:00 is inside the 60-minute cut-off


async def test_five_to_midnight_offers_tomorrow_on_and_the_day_released_at_nine(db: str) -> None:
    with frozen_at(local(2026, 3, 2, 23, 55)):
        assert datetime.now().date() == date(2026, 3, 2)  # 15:55 UTC
        days = await offered()

    assert dates(days) == ["03-03", "03-04", "03-05", "03-06", "03-07", "03-08", "03-09"]


async def test_before_the_release_hour_the_farthest_day_is_not_offered(db: str) -> None:
    with frozen_at(local(2026, 3, 2, 8, 59)):
        before = await offered()
    with frozen_at(local(2026, 3, 2, 9, 0)):
        after = await offered()

    assert dates(before)[-1] == "03-08" and dates(after)[-1] == "03-09"


@pytest.mark.parametrize(("hour", "minute"), [(0, 5), (7, 30), (23, 55)])
async def test_a_booking_made_reads_back_at_the_same_instant(
    db: str, hour: int, minute: int
) -> None:
    with frozen_at(local(2026, 3, 2, hour, minute)):
        now = hall_now()
        day = await offered()
        first = day[0]
        slot = first.slots[0]
        place = await Hall.get(code="main"), await Category.get(code="livelihood")
        made = await bookings.book(
            "o1", *place, first.day, slot.start_min, PERSON, now, rules_with()
        )
        listed = await bookings.upcoming_of("o1", now.date())
        again = await bookings.offered_days(*place, now, rules_with(), with_full=True)

    stored = await Booking.get(id=made.id)
    assert [b.id for b in listed] == [made.id]
    assert stored.local_day == first.day
    assert stored.starts_at.astimezone(BEIJING) == datetime.combine(
        first.day, clock_time(slot.start_min // 60, slot.start_min % 60), BEIJING
    )
    taken = next(s for s in again[0].slots if s.start_min == slot.start_min)
    assert taken.booked == 1


async def test_a_holiday_is_never_offered(db: str) -> None:
    """On 30 September 2025 the next week is the National Day holiday: only today is left."""
    with frozen_at(local(2025, 9, 30, 10)):
        days = await offered()

    assert dates(days) == ["09-30"]


async def test_a_makeup_working_day_is_offered_with_weekday_hours(db: str) -> None:
    with frozen_at(local(2025, 9, 26, 10)):
        main = await offered()
        branch = await offered("community")

    assert dates(main) == ["09-26", "09-27", "09-28", "09-29", "09-30"]
    sunday = next(d for d in main if d.day == date(2025, 9, 28))
    assert sunday.opening.kind.kind == "makeup"
    assert starts(sunday)[-1] == "17:30"  # weekday closing 18:00, not Sunday's 17:00
    assert dates(branch) == ["09-26", "09-28", "09-29", "09-30"]


async def test_after_the_holiday_the_makeup_saturday_is_offered(db: str) -> None:
    with frozen_at(local(2025, 10, 5, 10)):
        branch = await offered("community")

    assert dates(branch) == ["10-09", "10-10", "10-11"]
    assert branch[-1].opening.kind.kind == "makeup"


async def test_a_day_without_places_left_is_not_offered(db: str) -> None:
    rules = rules_with(default_capacity=1)
    place = await Hall.get(code="party_masses"), await Category.get(code="livelihood")
    with frozen_at(local(2026, 3, 2, 10)):
        now = hall_now()
        tuesday = date(2026, 3, 3)
        for i, start in enumerate(bookings.slot_starts((clock_time(9), clock_time(17, 30)), 30)):
            await bookings.book(f"o{i}", *place, tuesday, start, PERSON, now, rules)
        days = await bookings.offered_days(*place, now, rules)

    assert tuesday not in [d.day for d in days]
    assert tuesday + timedelta(days=1) in [d.day for d in days]
